#pragma once
// A small HTTP and WebSocket client for the end-to-end tests: real sockets against a real `imlog
// serve`, every wait bounded by a deadline (no sleeps).
//
// HttpClient is synchronous, one connection per request. WsClient runs its socket on its own I/O
// thread; received messages queue up and tests take them with wait_for(type, deadline). Both are
// thread-compatible (one test thread drives each). Every text message a WsClient connected to
// imlog's /ws receives is checked against docs/api/websocket.schema.json: one that is not a server
// frame of the schema is a test failure (ADD_FAILURE) in whichever test received it. On a
// connection that negotiated the binary subprotocol (imlog.v1), every binary message must verify
// against docs/api/websocket.fbs; it is turned into the JSON frame it stands for (and checked
// against the JSON schema too), and send() encodes frames the same way, so a test reads and
// writes JSON whichever form is on the wire.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rapidjson/document.h>

namespace imlog::testing {

struct HttpResult {
  int status = 0;              // 0: no answer (connection failed or timed out)
  std::string body;
  std::string error;           // why status is 0
  std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
  rapidjson::Document json() const;  // body parsed (a null document when it is not JSON)
  // The values of header `name` (case-insensitive), in order; empty when absent.
  [[nodiscard]] std::vector<std::string> header_values(std::string_view name) const;
  // The first value of header `name`, or "" when absent.
  [[nodiscard]] std::string header(std::string_view name) const;
};

class HttpClient {
 public:
  // `source`, when given, is the local address the client's sockets bind to (any of 127.0.0.0/8
  // reaches a loopback server), so a test can be several clients of different addresses.
  HttpClient(std::string host, int port, std::string source = {})
      : host_(std::move(host)), port_(port), source_(std::move(source)) {}
  HttpResult request(std::string_view method, std::string_view target, std::string_view body = {},
                     std::string_view bearer = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(15)) const;
  HttpResult get(std::string_view target, std::string_view bearer = {}) const { return request("GET", target, {}, bearer); }
  HttpResult post(std::string_view target, std::string_view body, std::string_view bearer = {}) const {
    return request("POST", target, body, bearer);
  }
  // A client that also sends header `name: value` with every request (X-Request-Id, ...).
  [[nodiscard]] HttpClient with_header(std::string name, std::string value) const {
    HttpClient c = *this;
    c.headers_.emplace_back(std::move(name), std::move(value));
    return c;
  }

 private:
  std::string host_;
  int port_;
  std::string source_;
  std::vector<std::pair<std::string, std::string>> headers_;
};

// A signed-in test user: their id and access token.
struct SignedIn {
  uint64_t id = 0;
  std::string token;
};

// Logs `name` in with the password "secret-<name>", trying again for up to 10 s while the read
// model has not taken the registration yet; {} and a test failure when it cannot.
SignedIn log_in(const HttpClient& http, const std::string& name);
// Registers `name` (password "secret-<name>"; a failure unless 201), then log_in().
SignedIn join(const HttpClient& http, const std::string& name);

// The subprotocols every chat scenario runs over: JSON text, and binary FlatBuffers.
inline constexpr const char* kWsJson = "imlog.v1.json";
inline constexpr const char* kWsBinary = "imlog.v1";

// One received WebSocket message.
struct Frame {
  std::string raw;               // the JSON text (a binary frame's decoded form on an imlog.v1 connection)
  bool binary = false;           // it came as a binary message
  std::string type;              // "" when not a {type, data} JSON object
  // The parse, in a pool of its own with small chunks: RapidJSON's default pool takes 64 KiB a
  // document, and a client that leaves its pushes queued (tens of thousands in a load test) would
  // hold gigabytes, past the mappings a sanitizer's allocator may make.
  std::unique_ptr<rapidjson::MemoryPoolAllocator<>> pool = std::make_unique<rapidjson::MemoryPoolAllocator<>>(1024);
  rapidjson::Document doc{pool.get()};
  [[nodiscard]] const rapidjson::Value& data() const;
  [[nodiscard]] std::string str(const char* field) const;    // data[field] as a string ("" if absent)
  [[nodiscard]] uint64_t u64(const char* field) const;       // data[field] as a number (0 if absent)
};

class WsClient {
 public:
  // Connects to ws://host:port<target>, with `bearer` in an Authorization header when non-empty.
  // nullptr on failure; `http_status` gets the refusal's status (401, ...) when there was one, and
  // `error` ends with the refusal's body.
  // `read` false: never read (so never answer pings): a silent peer. `subprotocols`, when not
  // empty, goes in Sec-WebSocket-Protocol as is ("imlog.v1.json", "a, b").
  // On an imlog connection (/ws) that reads, returns once the server's `hello` came (it stays
  // queued) or the connection closed: hello means the session is registered, so what is sent to
  // the user from then on is pushed to it (docs/api/websocket.md).
  static std::unique_ptr<WsClient> connect(const std::string& host, int port, const std::string& target,
                                           const std::string& bearer = {}, int* http_status = nullptr,
                                           std::string* error = nullptr, bool read = true,
                                           const std::string& subprotocols = {});
  // The subprotocol the server selected in its upgrade answer ("" when none).
  [[nodiscard]] std::string subprotocol() const;
  ~WsClient();

  void send_text(std::string text);
  void send_binary(std::string bytes);
  // A ping control frame (payload at most 125 bytes); the server's pongs are counted.
  void send_ping(std::string payload);
  [[nodiscard]] uint64_t pongs() const;
  // {"type": type, "data": data_json}; on an imlog.v1 connection, that frame's binary form.
  void send(std::string_view type, std::string_view data_json);
  // Does this connection speak the binary subprotocol (imlog.v1)?
  [[nodiscard]] bool binary() const;

  // The oldest queued message of `type` that satisfies `pred`, waiting up to `timeout`. Other
  // messages stay queued in order.
  std::optional<Frame> wait_for(std::string_view type, std::chrono::milliseconds timeout,
                                const std::function<bool(const Frame&)>& pred = {});
  // Every queued message of `type` now, removed from the queue.
  std::vector<Frame> take_all(std::string_view type);
  // Waits until the server closed the connection; its close code (0 when closed without one).
  std::optional<uint16_t> wait_closed(std::chrono::milliseconds timeout);
  [[nodiscard]] bool closed() const;
  // Why the connection ended, as the client's read saw it ("" while open): for failure messages.
  [[nodiscard]] std::string close_error() const;
  void close();

  struct Impl;

 private:
  explicit WsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Parses one JSON text ({} on error).
rapidjson::Document parse_json(std::string_view text);

}  // namespace imlog::testing
