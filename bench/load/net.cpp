// The load generator's connections; see net.h.

#include "net.h"

#include <netinet/in.h>

#include <charconv>
#include <chrono>
#include <cstdio>

#include "imlog/gateway/ws_binary.h"

namespace imlog::bench {

namespace http = beast::http;
namespace websocket = beast::websocket;
using net::use_awaitable;

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

net::awaitable<beast::error_code> connect_from(tcp::socket& s, const Target& t, size_t n) {
  beast::error_code ec;
  auto server = tcp::endpoint(net::ip::make_address(t.host), t.port);
  s.open(tcp::v4(), ec);
  if (ec) co_return ec;
  if (t.sources > 1) {
    // The port is chosen at connect() time, per (source, destination), not at bind().
    int one = 1;
    ::setsockopt(s.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    auto source = net::ip::address_v4(0x7f000001u + static_cast<uint32_t>(n % static_cast<size_t>(t.sources)));
    s.bind(tcp::endpoint(source, 0), ec);
    if (ec) co_return ec;
  }
  co_await s.async_connect(server, net::redirect_error(use_awaitable, ec));
  if (!ec) s.set_option(tcp::no_delay(true), ec);
  co_return ec;
}

net::awaitable<HttpReply> HttpConn::request(http::verb verb, std::string target, std::string body,
                                           const std::string& token) {
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, target_.host);
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = std::move(body);
  req.prepare_payload();
  req.keep_alive(true);
  HttpReply r = co_await try_request(req);
  if (r.status == 0) r = co_await try_request(req);  // the server may have closed an idle connection
  co_return r;
}

net::awaitable<HttpReply> HttpConn::try_request(const http::request<http::string_body>& req) {
  HttpReply r;
  beast::error_code ec;
  if (!stream_) {
    stream_ = std::make_unique<beast::tcp_stream>(io_);
    ec = co_await connect_from(stream_->socket(), target_, n_);
    if (ec) {
      stream_.reset();
      r.error = "connect: " + ec.message();
      co_return r;
    }
  }
  co_await http::async_write(*stream_, req, net::redirect_error(use_awaitable, ec));
  http::response<http::string_body> res;
  if (!ec) co_await http::async_read(*stream_, buffer_, res, net::redirect_error(use_awaitable, ec));
  if (ec) {
    stream_.reset();
    buffer_.clear();
    r.error = ec.message();
    co_return r;
  }
  r.status = static_cast<int>(res.result_int());
  r.body = std::move(res.body());
  if (!res.keep_alive()) stream_.reset();
  co_return r;
}

net::awaitable<beast::error_code> WsConn::open(const Target& t, size_t n, const std::string& token) {
  beast::error_code ec = co_await connect_from(beast::get_lowest_layer(ws_).socket(), t, n);
  if (ec) co_return ec;
  ws_.set_option(websocket::stream_base::decorator([sp = t.subprotocol](websocket::request_type& req) {
    req.set(http::field::user_agent, "imlog-bench-load");
    req.set(http::field::sec_websocket_protocol, sp);
  }));
  binary_ = t.subprotocol == "imlog.v1";
  ws_.auto_fragment(false);
  co_await ws_.async_handshake(t.host + ":" + std::to_string(t.port), "/ws?token=" + token,
                               net::redirect_error(use_awaitable, ec));
  if (!ec) ws_.text(!binary_);
  co_return ec;
}

void WsConn::start_reading(FrameHandler on_frame) {
  net::co_spawn(io_, read_loop(std::move(on_frame)), net::detached);
}

net::awaitable<void> WsConn::read_loop(FrameHandler on_frame) {
  beast::flat_buffer buffer;
  for (;;) {
    beast::error_code ec;
    co_await ws_.async_read(buffer, net::redirect_error(use_awaitable, ec));
    if (ec) break;
    auto data = buffer.data();
    std::string_view frame(static_cast<const char*>(data.data()), data.size());
    std::string json;
    imlog::gw::WsBinaryError error;
    if (binary_ && !imlog::gw::ws_frame_from_binary(frame, json, error)) {
      std::fprintf(stderr, "a binary frame does not decode: %s\n", error.message.c_str());
      break;
    }
    on_frame(*this, binary_ ? std::string_view(json) : frame);
    buffer.consume(buffer.size());
  }
  closed_ = true;
}

void WsConn::send(std::string frame) {
  if (closed_) return;
  if (binary_) {
    std::string bytes, why;
    if (!imlog::gw::ws_frame_to_binary(frame, bytes, why)) {
      std::fprintf(stderr, "cannot encode a frame for imlog.v1: %s\n", why.c_str());
      return;
    }
    frame = std::move(bytes);
  }
  out_.push_back(std::move(frame));
  if (writing_) return;
  writing_ = true;
  net::co_spawn(io_, write_loop(), net::detached);
}

net::awaitable<void> WsConn::write_loop() {
  while (!out_.empty() && !closed_) {
    beast::error_code ec;
    co_await ws_.async_write(net::buffer(out_.front()), net::redirect_error(use_awaitable, ec));
    out_.pop_front();
    if (ec) closed_ = true;
  }
  writing_ = false;
}

void WsConn::close() {
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

std::string_view frame_type(std::string_view frame) { return string_field(frame, "type"); }

namespace {
// The position just after `"name":`, or npos.
size_t value_pos(std::string_view json, std::string_view name) {
  for (size_t at = 0; (at = json.find(name, at)) != std::string_view::npos; at += name.size()) {
    if (at == 0 || json[at - 1] != '"') continue;
    size_t end = at + name.size();
    if (end + 1 < json.size() && json[end] == '"' && json[end + 1] == ':') return end + 2;
  }
  return std::string_view::npos;
}
}  // namespace

std::string_view string_field(std::string_view json, std::string_view name) {
  size_t p = value_pos(json, name);
  if (p == std::string_view::npos || p >= json.size() || json[p] != '"') return {};
  size_t end = json.find('"', p + 1);
  if (end == std::string_view::npos) return {};
  return json.substr(p + 1, end - p - 1);
}

int64_t number_field(std::string_view json, std::string_view name, int64_t fallback) {
  size_t p = value_pos(json, name);
  if (p == std::string_view::npos) return fallback;
  int64_t v = fallback;
  std::from_chars(json.data() + p, json.data() + json.size(), v);
  return v;
}

}  // namespace imlog::bench
