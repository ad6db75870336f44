#include "api.h"

#include <cctype>
#include <charconv>

#include "commands.h"
#include "json.h"
#include "services.h"

namespace imlog::gw {
namespace {

// A signed-in user's request may query the read model: it runs on that user's query thread (in
// order with their other requests), never on the I/O thread; a full queue answers 503.
void run_on_query_thread(Services& svc, const Handler& handler, ApiRequest&& request, const Respond& respond) {
  auto req = std::make_shared<ApiRequest>(std::move(request));
  uint64_t user = req->user_id;
  bool queued = svc.queries.post(user, [&svc, &handler, req, respond] { handler(svc, *req, respond); });
  if (queued) return;
  svc.metrics.error("overloaded");
  auto reply = error_reply(503, "overloaded", "the server has too many requests queued; retry shortly");
  add_retry_after(reply, kOverloadedRetry);
  respond(std::move(reply));
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view method_name(Method m) {
  switch (m) {
    case Method::get: return "GET";
    case Method::post: return "POST";
    case Method::put: return "PUT";
    case Method::patch: return "PATCH";
    case Method::del: return "DELETE";
    case Method::head: return "HEAD";
    case Method::options: return "OPTIONS";
    case Method::other: return "OTHER";
  }
  return "OTHER";
}

ApiReply json_reply(unsigned status, std::string body) {
  ApiReply r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

ApiReply error_reply(unsigned status, std::string_view code, std::string_view message) {
  return json_reply(status, error_json(code, message));
}

ApiReply no_content() {
  ApiReply r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  size_t i = 0;
  while (i <= query.size()) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view pair = query.substr(i, amp - i);
    size_t eq = pair.find('=');
    std::string_view k = pair.substr(0, eq);
    if (k == name) {
      if (eq == std::string_view::npos) return std::string();
      return percent_decode(pair.substr(eq + 1), true);
    }
    i = amp + 1;
  }
  return std::nullopt;
}

bool query_u64(std::string_view query, std::string_view name, uint64_t& out, std::string& error) {
  auto v = query_param(query, name);
  if (!v) return true;
  uint64_t parsed = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), parsed);
  if (v->empty() || ec != std::errc() || p != v->data() + v->size()) {
    error = "query parameter `" + std::string(name) + "` must be a non-negative integer, got `" + *v + "`";
    return false;
  }
  out = parsed;
  return true;
}

std::string_view bearer_token(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size()) return {};
  for (size_t i = 0; i < kBearer.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
        std::tolower(static_cast<unsigned char>(kBearer[i]))) {
      return {};
    }
  }
  auto t = authorization.substr(kBearer.size());
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

void ApiRouter::add(Method method, std::string_view pattern, Auth auth, Handler handler) {
  Route r{method, {}, auth, std::move(handler)};
  for (auto s : split_path(pattern)) r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

void ApiRouter::dispatch(Services& svc, ApiRequest&& request, const Respond& respond) const {
  auto segments = split_path(request.path);
  std::string allow;
  for (const Route& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      if (r.segments[i] == "{}") {
        auto decoded = percent_decode(segments[i], false);
        if (!decoded) {
          svc.metrics.error("invalid");
          return respond(error_reply(400, "invalid", "path segment `" + std::string(segments[i]) + "` has a bad %-escape"));
        }
        params.push_back(std::move(*decoded));
      } else {
        match = r.segments[i] == segments[i];
      }
    }
    if (!match) continue;
    bool same_method = r.method == request.method || (request.method == Method::head && r.method == Method::get);
    if (!same_method) {
      if (!allow.empty()) allow += ", ";
      allow += method_name(r.method);
      continue;
    }
    if (r.auth == Auth::access) {
      auto claims = svc.tokens.verify(bearer_token(request.authorization), "access");
      if (!claims) {
        svc.metrics.error("unauthorized");
        auto reply = error_reply(401, "unauthorized", claims.error().message());
        reply.headers.emplace_back("WWW-Authenticate", "Bearer");
        return respond(std::move(reply));
      }
      request.user_id = claims->user_id;
    }
    request.params = std::move(params);
    if (r.auth == Auth::none) return r.handler(svc, request, respond);
    return run_on_query_thread(svc, r.handler, std::move(request), respond);
  }
  if (!allow.empty()) {
    svc.metrics.error("method_not_allowed");
    auto reply = error_reply(405, "method_not_allowed",
                             std::string(method_name(request.method)) + " is not allowed on " + request.path +
                                 "; allowed: " + allow);
    reply.headers.emplace_back("Allow", allow);
    return respond(std::move(reply));
  }
  svc.metrics.error("not_found");
  respond(error_reply(404, "not_found", "no route " + std::string(method_name(request.method)) + " " + request.path));
}

}  // namespace imlog::gw
