#include "http_session.h"

#include <algorithm>
#include <iterator>
#include <memory>
#include <optional>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "json.h"
#include "ws_protocol.h"
#include "ws_session.h"

namespace imlog::gw {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

Method method_of(http::verb v) {
  switch (v) {
    case http::verb::get: return Method::get;
    case http::verb::post: return Method::post;
    case http::verb::put: return Method::put;
    case http::verb::patch: return Method::patch;
    case http::verb::delete_: return Method::del;
    case http::verb::head: return Method::head;
    case http::verb::options: return Method::options;
    default: return Method::other;
  }
}

// Lifecycle: read a request → answer it (possibly after the engine answered) → read the next, until
// the client or a timeout closes it, or an upgrade hands the stream to a WsSession. Everything runs
// on the stream's strand; Respond callbacks post back to it.
class HttpSession final : public std::enable_shared_from_this<HttpSession>, public Closable {
 public:
  HttpSession(Services& svc, tcp::socket&& socket)
      : svc_(svc), stream_(std::move(socket)), id_(svc.next_connection_id++) {
    svc_.metrics.http_connections++;
  }
  ~HttpSession() override {
    svc_.metrics.http_connections--;
    svc_.connections.remove(id_);
  }

  void run() {
    svc_.connections.add(id_, weak_from_this());
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }

  void shutdown(uint16_t) override {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->closing_ = true;
      if (!self->busy_) {
        beast::error_code ec;
        self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        self->stream_.cancel();
      }
    });
  }

 private:
  void do_read() {
    if (closing_) return do_close();
    parser_.emplace();
    // The route is not known until the header is: until then, the largest body any route takes.
    // Beast checks a Content-Length against this when the header ends; on_header applies the
    // route's own limit.
    parser_->body_limit(std::max(svc_.config.max_body_bytes, avatar_body_limit()));
    parser_->header_limit(svc_.config.max_header_bytes);
    stream_.expires_after(requests_ == 0 ? svc_.config.http_timeout : svc_.config.http_idle_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&HttpSession::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    busy_ = true;
    auto& req = parser_->get();
    version_ = req.version();
    if (auto why = bad_framing(req); !why.empty()) {
      keep_alive_ = false;
      svc_.metrics.error("bad_request");
      return write_reply(error_reply(400, "bad_request", why));
    }
    uint64_t limit = body_limit_of(req.target());
    if (parser_->content_length().value_or(0) > limit) return refuse_too_large();
    parser_->body_limit(limit);  // a chunked body is counted as it comes
    stream_.expires_after(svc_.config.http_timeout);
    http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&HttpSession::on_read, shared_from_this()));
  }

  // An avatar upload may be larger than other bodies; its handler enforces avatar_max_bytes.
  [[nodiscard]] uint64_t avatar_body_limit() const { return svc_.config.avatar_max_bytes + 1; }
  [[nodiscard]] uint64_t body_limit_of(std::string_view target) const {
    if (target.substr(0, target.find('?')) == "/api/v1/users/me/avatar") {
      return std::max(svc_.config.max_body_bytes, avatar_body_limit());
    }
    return svc_.config.max_body_bytes;
  }

  // Why the request's body cannot be delimited safely, or "". Beast takes a request whose
  // Transfer-Encoding does not end in `chunked` as bodiless (and `chunked` after a Content-Length
  // or twice as an error): its body would then be read as the next request, which is request
  // smuggling past any proxy that reads it otherwise. RFC 9112 §6.1 and §6.3: such a request is
  // answered 400 and the connection closed. The one coding accepted is `chunked` alone, on HTTP/1.1.
  static std::string bad_framing(const http::request<http::string_body>& req) {
    auto [first, last] = req.equal_range(http::field::transfer_encoding);
    if (first == last) return {};
    if (req.version() < 11) return "Transfer-Encoding is not allowed in an HTTP/1.0 request: send Content-Length";
    std::string_view value(first->value().data(), first->value().size());
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (std::next(first) == last && beast::iequals(value, "chunked")) return {};
    std::string got = std::next(first) != last ? "several Transfer-Encoding fields"
                      : value.size() <= 64     ? "Transfer-Encoding `" + std::string(value) + "`"
                                               : "a long Transfer-Encoding";
    return got + " is not supported: send Content-Length, or Transfer-Encoding: chunked alone";
  }

  void refuse_too_large() {
    keep_alive_ = false;
    svc_.metrics.error("too_large");
    uint64_t limit = body_limit_of(parser_->get().target());
    write_reply(error_reply(413, "too_large", "the request body is over " + std::to_string(limit) + " bytes"));
  }

  void on_read_error(beast::error_code ec) {
    keep_alive_ = false;
    if (ec == http::error::body_limit) return refuse_too_large();
    if (ec == http::error::header_limit) {
      svc_.metrics.error("too_large");
      return write_reply(error_reply(431, "too_large",
                                     "the request header is over " + std::to_string(svc_.config.max_header_bytes) + " bytes"));
    }
    if (ec.category() == beast::error_code(http::error::end_of_stream).category() && ec != http::error::end_of_stream &&
        ec != http::error::partial_message) {
      svc_.metrics.error("bad_request");
      return write_reply(error_reply(400, "bad_request", "malformed HTTP request: " + ec.message()));
    }
    do_close();  // end of stream, time-out, reset
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec) return on_read_error(ec);
    ++requests_;
    svc_.metrics.http_requests++;
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    head_ = req.method() == http::verb::head;
    std::string_view target(req.target().data(), req.target().size());
    auto q = target.find('?');
    std::string_view path = target.substr(0, q);
    std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);

    if (beast::websocket::is_upgrade(req)) return upgrade(path, query);

    ApiRequest r;
    r.method = method_of(req.method());
    r.path = path;
    r.query = query;
    r.body = std::move(req.body());
    r.authorization = std::string(req[http::field::authorization]);
    r.origin = std::string(req[http::field::origin]);
    r.request_id = std::string(req["X-Request-Id"]);
    beast::error_code peer_ec;
    auto peer = stream_.socket().remote_endpoint(peer_ec);
    if (!peer_ec) r.remote_address = peer.address().to_string();
    for (auto [h, end] = req.equal_range("X-Forwarded-For"); h != end; ++h) {
      if (!r.forwarded_for.empty()) r.forwarded_for += ',';
      r.forwarded_for += std::string_view(h->value().data(), h->value().size());
    }
    svc_.api.dispatch(svc_, std::move(r), [self = shared_from_this()](ApiReply reply) {
      net::post(self->stream_.get_executor(),
                [self, reply = std::move(reply)]() mutable { self->write_reply(std::move(reply)); });
    });
  }

  void upgrade(std::string_view path, std::string_view query) {
    keep_alive_ = false;
    if (path != "/ws") {
      return write_reply(error_reply(404, "not_found", "WebSocket upgrades are served at /ws only"));
    }
    if (svc_.stopping.load()) return write_reply(error_reply(503, "unavailable", "the server is shutting down"));
    auto& req = parser_->get();
    std::string token(bearer_token(std::string_view(req[http::field::authorization])));
    if (token.empty()) token = query_param(query, "token").value_or("");
    auto claims = svc_.tokens.verify(token, "access");
    if (claims && svc_.erased.contains(claims->user_id)) claims = erased_account(claims->user_id);
    if (!claims) {
      svc_.metrics.error("unauthorized");
      auto reply = error_reply(401, "unauthorized", claims.error().message());
      reply.headers.emplace_back("WWW-Authenticate", "Bearer");
      return write_reply(std::move(reply));
    }
    auto subprotocol = negotiate_subprotocol(std::string_view(req[http::field::sec_websocket_protocol]));
    if (subprotocol.refused()) {
      svc_.metrics.error("unsupported_protocol");
      return write_reply(error_reply(400, "unsupported_protocol",
                                     "this server speaks WebSocket subprotocols " + std::string(kWsProtocolV1Json) +
                                         " (or none, which is the same) and " + std::string(kWsProtocolV1Binary) +
                                         " (binary); asked for: " + subprotocol.offered));
    }
    start_ws_session(svc_, std::move(stream_), parser_->release(), claims->user_id, std::move(subprotocol.selected));
  }

  void write_reply(ApiReply reply) {
    busy_ = true;
    svc_.metrics.http_status(reply.status);
    res_.emplace(static_cast<http::status>(reply.status), version_);
    res_->set(http::field::server, "imlog");
    if (!reply.content_type.empty()) res_->set(http::field::content_type, reply.content_type);
    if (reply.content_type == "application/json") res_->set(http::field::cache_control, "no-store");
    res_->set("X-Content-Type-Options", "nosniff");  // every reply is exactly its Content-Type
    for (auto& [k, v] : reply.headers) res_->set(k, v);
    res_->keep_alive(keep_alive_ && !closing_ && !svc_.stopping.load());
    res_->body() = std::move(reply.body);
    res_->prepare_payload();
    if (head_) res_->body().clear();  // Content-Length stays that of the GET reply
    stream_.expires_after(svc_.config.http_timeout);
    http::async_write(stream_, *res_, beast::bind_front_handler(&HttpSession::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    busy_ = false;
    bool keep = res_->keep_alive();
    res_.reset();
    if (ec || !keep) return do_close();
    do_read();
  }

  void do_close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  Services& svc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> res_;
  const uint64_t id_;
  uint64_t requests_ = 0;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  bool head_ = false;
  bool busy_ = false;     // a request is being read or answered
  bool closing_ = false;  // the gateway is stopping: no further requests
};

}  // namespace

void start_http_session(Services& svc, tcp::socket&& socket) {
  std::make_shared<HttpSession>(svc, std::move(socket))->run();
}

}  // namespace imlog::gw
