#pragma once
// The load generator's connections (bench/README.md): HTTP/1.1 keep-alive and WebSocket clients
// on Boost.Asio coroutines, many per thread. Every object here belongs to one io_context, run by
// one thread; nothing is thread-safe. Client sockets are bound to source addresses 127.0.0.1 ..
// 127.0.0.<sources> in turn, so that more connections than one address's ephemeral ports fit.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace imlog::bench {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

// Where the server is and which source addresses to spread client sockets over.
struct Target {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int sources = 1;  // 127.0.0.1 .. 127.0.0.<sources>
  std::string subprotocol = "imlog.v1.json";  // or imlog.v1: binary frames (WsConn encodes and decodes)
};

// Microseconds on the steady clock (CLOCK_MONOTONIC: the same in every process of this machine,
// so a timestamp sent by one load generator process can be read by another).
int64_t now_us();

// Connects a TCP socket from source address number `n % sources` (TCP_NODELAY on).
net::awaitable<beast::error_code> connect_from(tcp::socket& s, const Target& t, size_t n);

struct HttpReply {
  int status = 0;  // 0: no reply (see error)
  std::string body;
  std::string error;
};

// One keep-alive HTTP/1.1 connection; reconnects when the server closed it.
class HttpConn {
 public:
  HttpConn(net::io_context& io, Target target, size_t n) : io_(io), target_(std::move(target)), n_(n) {}
  net::awaitable<HttpReply> request(beast::http::verb verb, std::string target, std::string body = {},
                                    const std::string& token = {});

 private:
  net::awaitable<HttpReply> try_request(const beast::http::request<beast::http::string_body>& req);
  net::io_context& io_;
  Target target_;
  size_t n_;
  std::unique_ptr<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
};

// One WebSocket connection. Frames received go to `on_frame`; send() queues a text frame and
// writes the queue in order. `closed` is set when reading fails (the server closed it). On an
// imlog.v1 connection the frames on the wire are binary: send() encodes the JSON frame it is given
// and each binary frame received is decoded to JSON before `on_frame` (the generator's CPU, not
// the server's), so the scenarios read and write JSON whichever form is measured.
class WsConn {
 public:
  using FrameHandler = std::function<void(WsConn&, std::string_view)>;
  explicit WsConn(net::io_context& io) : io_(io), ws_(io) {}
  // Connects, upgrades with `?token=`, then reads until closed.
  net::awaitable<beast::error_code> open(const Target& t, size_t n, const std::string& token);
  void start_reading(FrameHandler on_frame);
  void send(std::string frame);
  void close();
  [[nodiscard]] bool closed() const { return closed_; }
  [[nodiscard]] net::io_context& io() { return io_; }

  size_t index = 0;          // the scenario's number for this connection
  std::string conversation;  // the conversation it sends to
  uint64_t sends = 0;        // messages it has sent (its client_msg_ids)

 private:
  net::awaitable<void> read_loop(FrameHandler on_frame);
  net::awaitable<void> write_loop();
  net::io_context& io_;
  beast::websocket::stream<beast::tcp_stream> ws_;
  std::deque<std::string> out_;
  bool writing_ = false;
  bool closed_ = false;
  bool binary_ = false;  // imlog.v1
};

// `{"type":T,"data":{...}}` helpers for the few fields the scenarios read, without a full parse:
// the value of a string field, or of a number field, at its first occurrence.
std::string_view frame_type(std::string_view frame);
std::string_view string_field(std::string_view json, std::string_view name);
int64_t number_field(std::string_view json, std::string_view name, int64_t fallback = -1);

}  // namespace imlog::bench
