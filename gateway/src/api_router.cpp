#include "api.h"

#include <algorithm>

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

// The request's Origin when gateway.cors_origins lists it, else "" (same origin only: a browser
// then refuses the page's cross-origin request).
std::string allowed_origin(const Services& svc, const std::string& origin) {
  if (origin.empty()) return {};
  const auto& allowed = svc.config.cors_origins;
  return std::find(allowed.begin(), allowed.end(), origin) != allowed.end() ? origin : std::string();
}

// Tokens travel in Authorization, never in cookies, so no Allow-Credentials: a page must hold the
// token itself, and the origin is echoed (never `*`) so that Vary keeps caches per origin.
Respond with_cors(std::string origin, const Respond& respond) {
  auto add = [origin = std::move(origin), respond](ApiReply reply) {
    reply.headers.emplace_back("Access-Control-Allow-Origin", origin);
    reply.headers.emplace_back("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate, X-Request-Id");
    reply.headers.emplace_back("Vary", "Origin");
    respond(std::move(reply));
  };
  return Respond(std::move(add), respond.trace_id());
}

// The request's trace id: the client's X-Request-Id when valid, else a new one. Every reply names
// it in X-Request-Id, and the commands the handler submits carry it (Respond::trace_id).
Respond with_trace(std::string_view request_id, const Respond& respond) {
  std::string trace = valid_request_id(request_id) ? std::string(request_id) : new_trace_id();
  auto add = [trace, respond](ApiReply reply) {
    reply.headers.emplace_back("X-Request-Id", trace);
    respond(std::move(reply));
  };
  return Respond(std::move(add), trace);
}

// OPTIONS on a path that exists: the methods it takes, and to an allowed origin's preflight the
// request headers it may send.
ApiReply options_reply(const std::string& allow, bool cors) {
  ApiReply reply = no_content();
  reply.headers.emplace_back("Allow", allow + ", OPTIONS");
  if (cors) {
    reply.headers.emplace_back("Access-Control-Allow-Methods", allow);
    reply.headers.emplace_back("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id");
    reply.headers.emplace_back("Access-Control-Max-Age", "600");
  }
  return reply;
}

}  // namespace

ApiReply json_reply(unsigned status, std::string body) {
  ApiReply r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

ApiReply error_reply(unsigned status, std::string_view code, std::string_view message) {
  return json_reply(status, error_json(code, message));
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

ApiReply no_content() {
  ApiReply r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

void ApiRouter::dispatch(Services& svc, ApiRequest&& request, const Respond& plain_respond) const {
  std::string origin = allowed_origin(svc, request.origin);
  const bool cors = !origin.empty();
  const Respond traced = with_trace(request.request_id, plain_respond);
  const Respond respond = cors ? with_cors(std::move(origin), traced) : traced;
  Match m = match(request.method, request.path);
  if (request.method == Method::options && !m.allow.empty()) return respond(options_reply(m.allow, cors));
  if (m.bad_escape) {
    svc.metrics.error("invalid");
    return respond(error_reply(400, "invalid", "path segment `" + m.bad_segment + "` has a bad %-escape"));
  }
  if (m.route) return run(svc, *m.route, std::move(request), std::move(m.params), respond);
  if (!m.allow.empty()) {
    svc.metrics.error("method_not_allowed");
    auto reply = error_reply(405, "method_not_allowed",
                             std::string(method_name(request.method)) + " is not allowed on " + request.path +
                                 "; allowed: " + m.allow);
    reply.headers.emplace_back("Allow", m.allow);
    return respond(std::move(reply));
  }
  svc.metrics.error("not_found");
  respond(error_reply(404, "not_found", "no route " + std::string(method_name(request.method)) + " " + request.path));
}

void ApiRouter::run(Services& svc, const Route& r, ApiRequest&& request, std::vector<std::string> params,
                    const Respond& respond) {
  if (r.auth == Auth::access) {
    auto claims = svc.tokens.verify(bearer_token(request.authorization), "access");
    if (claims && svc.erased.contains(claims->user_id)) claims = erased_account(claims->user_id);
    if (!claims) {
      svc.metrics.error("unauthorized");
      auto reply = error_reply(401, "unauthorized", claims.error().message());
      reply.headers.emplace_back("WWW-Authenticate", "Bearer");
      return respond(std::move(reply));
    }
    request.user_id = claims->user_id;
    request.session_id = claims->sid;
  }
  request.params = std::move(params);
  if (r.auth == Auth::none) return r.handler(svc, request, respond);
  run_on_query_thread(svc, r.handler, std::move(request), respond);
}

}  // namespace imlog::gw
