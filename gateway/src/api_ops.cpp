// Operations endpoints (DESIGN.md §8): /healthz, /readyz, /metrics, and the demo client at /.

#include <fstream>
#include <sstream>

#include "handlers.h"

namespace imlog::gw {

extern const char* const kWebPage;  // web/index.html, compiled in (web_page.cpp, generated)

namespace {

void on_healthz(Services&, ApiRequest&, Respond respond) { respond(json_reply(200, R"({"status":"ok"})")); }

void on_readyz(Services& svc, ApiRequest&, Respond respond) {
  if (svc.stopping.load()) return respond(error_reply(503, "not_ready", "the server is shutting down"));
  if (svc.not_ready) {
    if (auto why = svc.not_ready(); !why.empty()) return respond(error_reply(503, "not_ready", why));
  }
  respond(json_reply(200, R"({"status":"ready"})"));
}

void on_metrics(Services& svc, ApiRequest&, Respond respond) {
  ApiReply r;
  r.body = svc.metrics.render();
  r.content_type = "text/plain; version=0.0.4";
  respond(std::move(r));
}

void on_ws_without_upgrade(Services& svc, ApiRequest&, Respond respond) {
  svc.metrics.error("upgrade_required");
  auto r = error_reply(426, "upgrade_required",
                       "/ws is the WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket)");
  r.headers.emplace_back("Upgrade", "websocket");
  respond(std::move(r));
}

void on_index(Services& svc, ApiRequest&, Respond respond) {
  ApiReply r;
  r.content_type = "text/html; charset=utf-8";
  if (svc.config.web_dir.empty()) {
    r.body = kWebPage;
  } else {
    std::ifstream in(svc.config.web_dir + "/index.html", std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (!in) return respond(error_reply(404, "not_found", "no index.html in " + svc.config.web_dir));
    r.body = ss.str();
  }
  respond(std::move(r));
}

}  // namespace

void add_ops_routes(ApiRouter& r) {
  using A = ApiRouter::Auth;
  r.add(Method::get, "/healthz", A::none, on_healthz);
  r.add(Method::get, "/readyz", A::none, on_readyz);
  r.add(Method::get, "/metrics", A::none, on_metrics);
  r.add(Method::get, "/", A::none, on_index);
  r.add(Method::get, "/ws", A::none, on_ws_without_upgrade);
}

}  // namespace imlog::gw
