// Operations endpoints: /healthz, /readyz, /metrics, and the demo client: its page at /, script at
// /app.js and style at /app.css (web/, compiled in; gateway/README.md "The demo page").

#include <fstream>
#include <sstream>

#include "handlers.h"
#include "imlog/core/metrics.h"

namespace imlog::gw {

// web/index.html, app.js and app.css, compiled in (web_page.cpp, generated).
extern const char* const kWebPage;
extern const char* const kWebScript;
extern const char* const kWebStyle;

namespace {

// The demo page's policy: script, style, images and connections from this origin only, nothing
// inline (the page has no inline script, style or on…= attributes), no framing, no <base>. A
// stored name that reached the DOM as markup could still run nothing. connect-src 'self' covers
// this host's ws:/wss: in current browsers (Chrome 71+, Firefox, Safari 16+); older ones refuse
// the page's WebSocket rather than have the request's Host echoed into the policy.
constexpr const char* kWebPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

// The headers of every reply that is the page or one of its resources. X-Frame-Options is
// frame-ancestors for browsers that predate it; no-cache: an upgraded server's page is seen at once.
void add_web_headers(ApiReply& r) {
  r.headers.emplace_back("Content-Security-Policy", kWebPolicy);
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Cache-Control", "no-cache");
}

void on_healthz(Services&, ApiRequest&, Respond respond) { respond(json_reply(200, R"({"status":"ok"})")); }

void on_readyz(Services& svc, ApiRequest&, Respond respond) {
  if (svc.stopping.load()) return respond(error_reply(503, "not_ready", "the server is shutting down"));
  if (svc.not_ready) {
    if (auto why = svc.not_ready(); !why.empty()) return respond(error_reply(503, "not_ready", why));
  }
  respond(json_reply(200, R"({"status":"ready"})"));
}

// Every figure of the process (imlog/core/metrics.h): the gateway's, and those of every other role
// this process runs (the single node's engine, projectors, router, tasks).
void on_metrics(Services&, ApiRequest&, Respond respond) {
  ApiReply r;
  r.body = metrics::render();
  r.content_type = metrics::kContentType;
  respond(std::move(r));
}

void on_ws_without_upgrade(Services& svc, ApiRequest&, Respond respond) {
  svc.metrics.error("upgrade_required");
  auto r = error_reply(426, "upgrade_required",
                       "/ws is the WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)");
  r.headers.emplace_back("Upgrade", "websocket");
  respond(std::move(r));
}

// A file of the demo client: the compiled-in one, or <web_dir>/<file> when web_dir is set.
Handler web_file(std::string file, std::string content_type, const char* builtin) {
  return [file = std::move(file), content_type = std::move(content_type), builtin](Services& svc, ApiRequest&,
                                                                                   Respond respond) {
    ApiReply r;
    r.content_type = content_type;
    if (svc.config.web_dir.empty()) {
      r.body = builtin;
    } else {
      std::ifstream in(svc.config.web_dir + "/" + file, std::ios::binary);
      std::ostringstream ss;
      ss << in.rdbuf();
      if (!in) return respond(error_reply(404, "not_found", "no " + file + " in " + svc.config.web_dir));
      r.body = ss.str();
    }
    add_web_headers(r);
    respond(std::move(r));
  };
}

}  // namespace

void add_ops_routes(ApiRouter& r) {
  using A = ApiRouter::Auth;
  r.add(Method::get, "/healthz", A::none, on_healthz);
  r.add(Method::get, "/readyz", A::none, on_readyz);
  r.add(Method::get, "/metrics", A::none, on_metrics);
  r.add(Method::get, "/", A::none, web_file("index.html", "text/html; charset=utf-8", kWebPage));
  r.add(Method::get, "/app.js", A::none, web_file("app.js", "text/javascript; charset=utf-8", kWebScript));
  r.add(Method::get, "/app.css", A::none, web_file("app.css", "text/css; charset=utf-8", kWebStyle));
  r.add(Method::get, "/ws", A::none, on_ws_without_upgrade);
}

}  // namespace imlog::gw
