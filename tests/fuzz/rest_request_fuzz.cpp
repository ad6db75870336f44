// The REST request path on a client's bytes, apart from the socket:
//
//   METHOD /path?query      (line 1)
//   Authorization value     (line 2)
//   body                    (the rest)
//
// The router matches the path against the API's route table; the query's parameters and the
// bearer token are read as the handlers read them; the body is parsed (parse_client_json) and
// every typed field read the routes make is made on it.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api.h"
#include "check.h"
#include "json.h"

namespace {

using namespace imlog::gw;
using imlog::valid_utf8;

// The patterns of add_*_routes (api_auth.cpp, api_chat.cpp, api_users.cpp, api_ops.cpp).
constexpr std::pair<Method, const char*> kRoutes[] = {
    {Method::post, "/api/v1/auth/register"}, {Method::post, "/api/v1/auth/login"},
    {Method::post, "/api/v1/auth/refresh"}, {Method::post, "/api/v1/auth/logout"},
    {Method::get, "/api/v1/conversations"}, {Method::get, "/api/v1/conversations/{}/messages"},
    {Method::post, "/api/v1/conversations/{}/messages"}, {Method::post, "/api/v1/conversations/{}/read"},
    {Method::post, "/api/v1/conversations/{}/messages/{}/recall"}, {Method::post, "/api/v1/groups"},
    {Method::get, "/api/v1/groups/{}"}, {Method::patch, "/api/v1/groups/{}"},
    {Method::post, "/api/v1/groups/{}/join"}, {Method::post, "/api/v1/groups/{}/leave"},
    {Method::get, "/api/v1/groups/{}/members"}, {Method::post, "/api/v1/groups/{}/members"},
    {Method::del, "/api/v1/groups/{}/members/{}"}, {Method::put, "/api/v1/groups/{}/members/{}/role"},
    {Method::get, "/api/v1/groups/{}/bans"}, {Method::del, "/api/v1/groups/{}/bans/{}"},
    {Method::get, "/healthz"}, {Method::get, "/readyz"}, {Method::get, "/metrics"}, {Method::get, "/"},
    {Method::get, "/app.js"}, {Method::get, "/app.css"}, {Method::get, "/ws"},
    {Method::get, "/api/v1/users/me"}, {Method::patch, "/api/v1/users/me"},
    {Method::patch, "/api/v1/users/me/settings"}, {Method::get, "/api/v1/users/search"},
    {Method::get, "/api/v1/users/presence"}, {Method::put, "/api/v1/users/me/status"},
    {Method::post, "/api/v1/users/me/avatar"}, {Method::get, "/avatars/{}"}, {Method::get, "/api/v1/users/{}"},
    {Method::get, "/api/v1/friends"}, {Method::get, "/api/v1/friends/groups"},
    {Method::post, "/api/v1/friends/requests"}, {Method::post, "/api/v1/friends/requests/{}/accept"},
    {Method::post, "/api/v1/friends/requests/{}/reject"}, {Method::del, "/api/v1/friends/{}"},
    {Method::put, "/api/v1/friends/{}/group"}, {Method::get, "/api/v1/blocks"}, {Method::post, "/api/v1/blocks"},
    {Method::del, "/api/v1/blocks/{}"},
};

const ApiRouter& router() {
  static const ApiRouter r = [] {
    ApiRouter out;
    for (auto [method, pattern] : kRoutes) out.add(method, pattern, ApiRouter::Auth::none, nullptr);
    return out;
  }();
  return r;
}

Method method_of(std::string_view name) {
  for (Method m : {Method::get, Method::post, Method::put, Method::patch, Method::del, Method::head, Method::options}) {
    if (method_name(m) == name) return m;
  }
  return Method::other;
}

std::string_view take_line(std::string_view& rest) {
  size_t nl = std::min(rest.find('\n'), rest.size());
  std::string_view line = rest.substr(0, nl);
  rest.remove_prefix(std::min(nl + 1, rest.size()));
  return line;
}

void route(std::string_view line) {
  size_t space = std::min(line.find(' '), line.size());
  Method method = method_of(line.substr(0, space));
  std::string_view target = line.substr(std::min(space + 1, line.size()));
  size_t q = std::min(target.find('?'), target.size());
  std::string_view path = target.substr(0, q), query = target.substr(std::min(q + 1, target.size()));
  auto m = router().match(method, path);
  if (m.route) {
    size_t holes = std::count(m.route->segments.begin(), m.route->segments.end(), "{}");
    IMLOG_FUZZ_CHECK(m.params.size() == holes);
    IMLOG_FUZZ_CHECK(!m.bad_escape);
  }
  for (const char* name : {"limit", "after_seq", "before_seq", "q", "token", "ids", "conversation_id"}) {
    uint64_t v = 0;
    std::string error;
    (void)query_param(query, name);
    if (!query_u64(query, name, v, error)) IMLOG_FUZZ_CHECK(!error.empty());
  }
}

// The reads the handlers make on a body (the field names, kinds and limits of api_*.cpp).
void read_fields(JsonBody& body) {
  auto f = body.fields();
  std::string s;
  std::optional<std::string> os;
  uint64_t u = 0;
  std::vector<uint64_t> ids;
  std::vector<std::string> names;
  std::optional<bool> b;
  std::optional<int64_t> i;
  for (const char* name : {"client_msg_id", "content", "message_type", "name", "description", "role", "username",
                           "password", "email", "nickname", "signature", "avatar_url", "note", "status",
                           "refresh_token", "group_name"}) {
    s.clear();  // an absent optional field leaves `s` as it was: the last field's value
    if (f.str(name, s, false, 400)) IMLOG_FUZZ_CHECK(s.size() <= 400 && valid_utf8(s));
    (void)f.str(name, s, true);
  }
  for (const char* name : {"join_policy", "history", "message_policy"}) (void)f.opt_str(name, os, 32);
  for (const char* name : {"seq_id", "user_id"}) (void)f.u64(name, u, true);
  (void)f.id("message_id", u, false);
  if (f.u64_list("members", ids, 100)) IMLOG_FUZZ_CHECK(ids.size() <= 100);
  if (f.str_list("conversations", names, 100, 256)) IMLOG_FUZZ_CHECK(names.size() <= 100);
  for (const char* name : {"allow_search", "push_enabled"}) (void)f.opt_bool(name, b);
  for (const char* name : {"quiet_start_minute", "quiet_end_minute"}) (void)f.opt_i64(name, i);
  JsonFields settings(nullptr, nullptr);
  if (f.object("settings", settings, false)) (void)settings.opt_str("join_policy", os, 16);
}

void body(std::string_view text) {
  JsonBody body;
  if (!body.parse(text)) {
    IMLOG_FUZZ_CHECK(!body.error().empty());
    IMLOG_FUZZ_CHECK(valid_utf8(error_json(body.parse_error_code(), body.error())));
    return;
  }
  read_fields(body);
  IMLOG_FUZZ_CHECK(valid_utf8(error_json("invalid", body.error())));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  route(take_line(rest));
  (void)bearer_token(take_line(rest));
  body(rest);
  return 0;
}
