#pragma once
// The REST surface, free of Beast: a request as the handlers see it, the reply they give, and the
// route table that matches paths like /api/v1/conversations/{id}/messages.
//
// A handler answers exactly once through Respond, from any thread, possibly after the engine's
// answer arrived; the HTTP session posts the reply back to its strand.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace imlog::gw {

struct Services;

enum class Method { get, post, put, patch, del, head, options, other };
std::string_view method_name(Method m);

struct ApiRequest {
  Method method = Method::get;
  std::string path;            // percent-decoded segments are in params; this is the raw path
  std::string query;           // raw, after '?'
  std::string body;
  std::string authorization;   // the Authorization header
  std::string remote_address;  // the TCP peer's IP address ("" when unknown)
  std::string forwarded_for;   // every X-Forwarded-For header, joined by ','
  std::string origin;          // the Origin header ("" when absent)
  std::string request_id;      // the X-Request-Id header as sent ("" when absent); dispatch() takes it
                               //   as the trace id when valid_request_id(), else makes a new one
  std::vector<std::string> params;  // the {} segments of the matched route, percent-decoded
  uint64_t user_id = 0;        // the authenticated user (routes that require a token)
  std::string session_id;      // their login session, the access token's `sid` ("" : none)
};

struct ApiReply {
  unsigned status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// How a handler answers: exactly once, from any thread. It also carries the request's trace id,
// so that every command a handler submits (submit_and_respond, submit_command) names the trace the
// reply's X-Request-Id names. A Respond made from a plain callable has no trace id; a command
// submitted through it gets a new one.
class Respond {
 public:
  Respond() = default;
  template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, Respond> &&
                                              std::is_invocable_v<F&, ApiReply>>>
  Respond(F fn) : fn_(std::move(fn)) {}  // NOLINT: implicit, as std::function's
  Respond(std::function<void(ApiReply)> fn, std::string trace_id) : fn_(std::move(fn)), trace_id_(std::move(trace_id)) {}
  void operator()(ApiReply reply) const { fn_(std::move(reply)); }
  [[nodiscard]] const std::string& trace_id() const { return trace_id_; }

 private:
  std::function<void(ApiReply)> fn_;
  std::string trace_id_;
};
using Handler = std::function<void(Services&, ApiRequest&, Respond)>;

ApiReply json_reply(unsigned status, std::string body);
ApiReply error_reply(unsigned status, std::string_view code, std::string_view message);
ApiReply no_content();

// The decoded value of `name` in a query string, or nullopt.
std::optional<std::string> query_param(std::string_view query, std::string_view name);
// Percent-decoding ('+' is a space in queries only). nullopt on a bad escape.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);
// The closed range of values a numeric query parameter may take, as the API documents it.
struct UintRange {
  uint64_t min = 0;
  uint64_t max = UINT64_MAX;
};
// An unsigned query parameter: `out` keeps its default when absent; false when present but not an
// integer within `range` (the error is set to a message naming the parameter and the range). Every
// handler reads its numeric parameters through this, so none is silently clamped.
bool query_u64(std::string_view query, std::string_view name, uint64_t& out, std::string& error,
               UintRange range = {});

// An X-Request-Id a client may choose as the trace id: 1 to 64 of A-Z a-z 0-9 . _ - (a UUID
// fits; nothing that could break a log line).
bool valid_request_id(std::string_view id);

// "Bearer <token>" → "<token>"; empty when absent or another scheme.
std::string_view bearer_token(std::string_view authorization);

class ApiRouter {
 public:
  enum class Auth { none, access };
  // Pattern segments: literals or "{}" (one captured segment).
  void add(Method method, std::string_view pattern, Auth auth, Handler handler);
  // Matches, authenticates and runs the handler; answers 404 (no such path), 405 (path exists,
  // method does not, with Allow), 401, and OPTIONS (204 with Allow, a CORS preflight's answer
  // when the Origin is in gateway.cors_origins) itself. Replies to an allowed Origin carry
  // Access-Control-Allow-Origin. Every reply carries X-Request-Id: the request's trace id.
  void dispatch(Services& svc, ApiRequest&& request, const Respond& respond) const;

  struct Route {
    Method method;
    std::vector<std::string> segments;
    Auth auth;
    Handler handler;
  };
  // What a path and method select, without running anything.
  struct Match {
    const Route* route = nullptr;     // nullptr: no route has this path and method
    std::vector<std::string> params;  // the route's {} segments, percent-decoded
    std::string allow;                // the methods of the routes with this path (for 405)
    bool bad_escape = false;          // a {} segment had a bad %-escape (400): bad_segment
    std::string bad_segment;
  };
  // Pure: the first route (in order of add()) whose pattern and method match.
  [[nodiscard]] Match match(Method method, std::string_view path) const;
  // Every route, in order of add() (the contract test compares them with docs/api/openapi.yaml).
  [[nodiscard]] const std::vector<Route>& routes() const { return routes_; }

 private:
  static void run(Services& svc, const Route& r, ApiRequest&& request, std::vector<std::string> params,
                  const Respond& respond);
  std::vector<Route> routes_;
};

// Route registration, one per API area.
void add_auth_routes(ApiRouter& r);
// DELETE /api/v1/users/me: in api_auth.cpp (it checks the password as a login does), routed with
// the other /users/me methods by add_user_routes.
void on_erase_me(Services& svc, ApiRequest& req, Respond respond);
void add_chat_routes(ApiRouter& r);
void add_user_routes(ApiRouter& r);
void add_ops_routes(ApiRouter& r);

}  // namespace imlog::gw
