#include "handlers.h"

#include <algorithm>
#include <charconv>

namespace imlog::gw {

bool parse_body(Services& svc, const ApiRequest& req, const Respond& respond, JsonBody& body) {
  if (body.parse(req.body)) return true;
  respond(counted_error(svc, 400, body.parse_error_code(), body.error()));
  return false;
}

ApiReply invalid(Services& svc, std::string_view message) { return counted_error(svc, 400, "invalid", message); }

ApiReply counted_error(Services& svc, unsigned status, std::string_view code, std::string_view message) {
  svc.metrics.error(code);
  return error_reply(status, code, message);
}

ApiReply with_retry_after(ApiReply reply, int64_t seconds) {
  reply.headers.emplace_back("Retry-After", std::to_string(std::max<int64_t>(1, seconds)));
  return reply;
}

bool run_password_work(Services& svc, const Respond& respond, std::function<void()> fn) {
  if (svc.password_work.fetch_add(1) >= svc.max_password_work) {
    svc.password_work.fetch_sub(1);
    respond(with_retry_after(
        counted_error(svc, 503, "unavailable", "too many logins and registrations at once; retry in a second"), 1));
    return false;
  }
  // Counted until the hash is done, not only while queued: the bound is on hashes in flight.
  svc.run_blocking([&svc, fn = std::move(fn)] {
    struct Done {
      std::atomic<int>& work;
      ~Done() { work.fetch_sub(1); }
    } done{svc.password_work};
    fn();
  });
  return true;
}

void run_avatar_work(Services& svc, const Respond& respond, std::function<void()> fn) {
  if (svc.avatar_work.fetch_add(1) >= Services::kMaxAvatarWork) {
    svc.avatar_work.fetch_sub(1);
    return respond(counted_error(svc, 503, "unavailable", "too many avatar requests at once; retry shortly"));
  }
  svc.run_blocking([&svc, fn = std::move(fn)] {
    svc.avatar_work.fetch_sub(1);
    fn();
  });
}

bool parse_id(std::string_view s, uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && p == s.data() + s.size() && out > 0 && out < (uint64_t{1} << 53);
}

bool valid_username(std::string_view name) {
  if (name.size() < 3 || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

}  // namespace imlog::gw
