#include "imlog/testing/client.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>
#include <rapidjson/pointer.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>

#include "imlog/gateway/ws_binary.h"

namespace imlog::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
using tcp = net::ip::tcp;

rapidjson::Document parse_json(std::string_view text) {
  rapidjson::Document d;
  d.Parse(text.data(), text.size());
  if (d.HasParseError()) d.SetObject();
  return d;
}

rapidjson::Document HttpResult::json() const {
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError()) d.SetNull();
  return d;
}

HttpResult HttpClient::request(std::string_view method, std::string_view target, std::string_view body,
                               std::string_view bearer, std::chrono::milliseconds timeout) const {
  HttpResult out;
  try {
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.expires_after(timeout);
    tcp::endpoint server(net::ip::make_address(host_), static_cast<unsigned short>(port_));
    if (!source_.empty()) {
      stream.socket().open(server.protocol());
      stream.socket().bind(tcp::endpoint(net::ip::make_address(source_), 0));
    }
    stream.connect(server);
    http::request<http::string_body> req(http::string_to_verb(method), target, 11);
    req.set(http::field::host, host_);
    if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + std::string(bearer));
    for (const auto& [name, value] : headers_) req.insert(name, value);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = std::string(body);
    }
    req.prepare_payload();
    req.keep_alive(false);
    stream.expires_after(timeout);
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(stream, buf, parser);
    out.status = static_cast<int>(parser.get().result_int());
    out.body = parser.get().body();
    for (const auto& f : parser.get()) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  } catch (const std::exception& e) {
    out.status = 0;
    out.error = e.what();
  }
  return out;
}

std::vector<std::string> HttpResult::header_values(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (beast::iequals(k, name)) out.push_back(v);
  }
  return out;
}

std::string HttpResult::header(std::string_view name) const {
  auto values = header_values(name);
  return values.empty() ? std::string() : values.front();
}

const rapidjson::Value& Frame::data() const {
  static const rapidjson::Value kNull;
  if (!doc.IsObject()) return kNull;
  auto it = doc.FindMember("data");
  return it == doc.MemberEnd() ? kNull : it->value;
}

std::string Frame::str(const char* field) const {
  const auto& d = data();
  if (!d.IsObject()) return {};
  auto it = d.FindMember(field);
  if (it == d.MemberEnd() || !it->value.IsString()) return {};
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

uint64_t Frame::u64(const char* field) const {
  const auto& d = data();
  if (!d.IsObject()) return 0;
  auto it = d.FindMember(field);
  if (it == d.MemberEnd() || !it->value.IsUint64()) return 0;
  return it->value.GetUint64();
}

namespace {

// docs/api/websocket.schema.json, against which every frame a WsClient receives is checked: one
// schema per server frame type (definitions/server_frame's oneOf, one branch per type), so a
// failure names the type's rule that failed rather than only "none of oneOf".
class FrameSchema {
 public:
  static const FrameSchema& get() {
    static const FrameSchema schema(IMLOG_WS_SCHEMA);
    return schema;
  }

  // "" when `raw` is a server frame of the schema; else why not.
  [[nodiscard]] std::string check(const std::string& raw) const {
    if (!error_.empty()) return error_;
    rapidjson::Document doc;
    doc.Parse(raw.data(), raw.size());
    if (doc.HasParseError() || !doc.IsObject()) return "not a JSON object";
    auto t = doc.FindMember("type");
    if (t == doc.MemberEnd() || !t->value.IsString()) return "no string type";
    auto it = by_type_.find(t->value.GetString());
    if (it == by_type_.end()) return std::string("type ") + t->value.GetString() + " is not a server frame of the schema";
    // RapidJSON's regex (the schema's patterns) keeps its search state in the compiled schema:
    // one validation at a time, whichever client's I/O thread asks.
    std::lock_guard lock(mu_);
    rapidjson::SchemaValidator v(*it->second);
    if (doc.Accept(v)) return {};
    rapidjson::StringBuffer where, rule;
    v.GetInvalidDocumentPointer().StringifyUriFragment(where);
    v.GetInvalidSchemaPointer().StringifyUriFragment(rule);
    return std::string("at ") + where.GetString() + ": fails '" + v.GetInvalidSchemaKeyword() + "' of " + rule.GetString();
  }

 private:
  explicit FrameSchema(const char* path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    rapidjson::Document file;
    file.Parse(text.str().data(), text.str().size());
    if (!in || file.HasParseError() || !file.IsObject() || !file.HasMember("definitions")) {
      error_ = std::string("cannot read the frame schema ") + path;
      return;
    }
    const auto* branches = rapidjson::Pointer("/definitions/server_frame/oneOf").Get(file);
    if (!branches || !branches->IsArray()) {
      error_ = "the frame schema has no definitions/server_frame/oneOf";
      return;
    }
    for (rapidjson::SizeType i = 0; i < branches->Size(); ++i) {
      const auto* type = rapidjson::Pointer("/properties/type/enum/0").Get((*branches)[i]);
      if (!type || !type->IsString()) continue;
      // {"$ref": "#/definitions/server_frame/oneOf/<i>", "definitions": <the file's>}, kept: a
      // compiled schema may point into the document it was compiled from.
      auto& one = *sources_.emplace_back(std::make_unique<rapidjson::Document>());
      one.SetObject();
      std::string ref = "#/definitions/server_frame/oneOf/" + std::to_string(i);
      one.AddMember("$ref", rapidjson::Value(ref.c_str(), one.GetAllocator()), one.GetAllocator());
      one.AddMember("definitions", rapidjson::Value(file["definitions"], one.GetAllocator()), one.GetAllocator());
      by_type_.emplace(type->GetString(), std::make_unique<rapidjson::SchemaDocument>(one));
    }
    if (by_type_.empty()) error_ = "the frame schema names no server frame types";
  }

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<rapidjson::Document>> sources_;
  std::map<std::string, std::unique_ptr<rapidjson::SchemaDocument>> by_type_;
  std::string error_;
};

}  // namespace

struct WsClient::Impl {
  net::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  beast::flat_buffer in;
  enum class Kind { text, binary, ping };
  std::deque<std::pair<std::string, Kind>> out;
  bool writing = false;
  std::thread thread;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<Frame> inbox;
  bool closed = false;
  uint16_t close_code = 0;
  std::string close_error;
  std::atomic<uint64_t> pongs{0};
  std::string subprotocol;  // set before the I/O thread starts, never after
  bool binary = false;        // imlog.v1: frames are FlatBuffers of docs/api/websocket.fbs
  bool check_frames = false;  // an imlog connection (/ws), not another server's (Chromium's DevTools)

  // A binary frame of an imlog.v1 connection → the JSON frame it stands for. A frame that does
  // not verify against docs/api/websocket.fbs is a test failure (and stays as received).
  void decode_binary(Frame& f) {
    std::string json;
    gw::WsBinaryError error;
    if (!gw::ws_frame_from_binary(f.raw, json, error)) {
      ADD_FAILURE() << "the server sent a binary frame outside docs/api/websocket.fbs: " << error.code << ": "
                    << error.message;
      return;
    }
    f.raw = std::move(json);
  }

  void do_read() {
    ws.async_read(in, [this](beast::error_code ec, std::size_t) {
      if (ec) {
        std::lock_guard lock(mu);
        closed = true;
        close_code = static_cast<uint16_t>(ws.reason().code);
        close_error = ec.message() + " (close code " + std::to_string(close_code) + ")";
        cv.notify_all();
        return;
      }
      Frame f;
      f.raw = beast::buffers_to_string(in.data());
      f.binary = ws.got_binary();
      in.consume(in.size());
      if (check_frames && binary && f.binary) decode_binary(f);
      if (check_frames && binary && !f.binary) ADD_FAILURE() << "the server sent a text frame on an imlog.v1 connection";
      // Every frame the server sends must be one of the protocol's schema (docs/api/
      // websocket.schema.json), in every test that uses this client; a binary one, decoded, too.
      if (check_frames && (ws.got_text() || binary)) {
        if (auto why = FrameSchema::get().check(f.raw); !why.empty()) {
          ADD_FAILURE() << "the server sent a frame outside docs/api/websocket.schema.json: " << why << "\n  "
                        << f.raw.substr(0, 2000);
        }
      }
      f.doc.Parse(f.raw.data(), f.raw.size());
      if (!f.doc.HasParseError() && f.doc.IsObject()) {
        auto t = f.doc.FindMember("type");
        if (t != f.doc.MemberEnd() && t->value.IsString()) f.type = t->value.GetString();
      }
      {
        std::lock_guard lock(mu);
        inbox.push_back(std::move(f));
      }
      cv.notify_all();
      do_read();
    });
  }

  void enqueue(std::string bytes, Kind kind) {
    net::post(ioc, [this, bytes = std::move(bytes), kind]() mutable {
      out.emplace_back(std::move(bytes), kind);
      if (!writing) do_write();
    });
  }

  void do_write() {
    if (out.empty()) {
      writing = false;
      return;
    }
    writing = true;
    auto done = [this](beast::error_code ec, std::size_t = 0) {
      out.pop_front();
      if (ec) {
        writing = false;
        return;
      }
      do_write();
    };
    if (out.front().second == Kind::ping) {
      return ws.async_ping(websocket::ping_data(out.front().first), [done](beast::error_code ec) { done(ec); });
    }
    ws.text(out.front().second == Kind::text);
    ws.async_write(net::buffer(out.front().first), done);
  }
};

WsClient::WsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WsClient::~WsClient() {
  if (!impl_) return;
  net::post(impl_->ioc, [p = impl_.get()] {
    beast::error_code ec;
    beast::get_lowest_layer(p->ws).socket().close(ec);
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::unique_ptr<WsClient> WsClient::connect(const std::string& host, int port, const std::string& target,
                                            const std::string& bearer, int* http_status, std::string* error,
                                            bool read, const std::string& subprotocols) {
  auto impl = std::make_unique<Impl>();
  beast::error_code ec;
  auto& tcp_layer = beast::get_lowest_layer(impl->ws);
  tcp_layer.expires_after(std::chrono::seconds(10));
  tcp_layer.connect(tcp::endpoint(net::ip::make_address(host), static_cast<unsigned short>(port)), ec);
  if (ec) {
    if (error) *error = "connect: " + ec.message();
    return nullptr;
  }
  // Small frames go out at once: Nagle's algorithm would hold one back for the peer's delayed ACK.
  tcp_layer.socket().set_option(tcp::no_delay(true), ec);
  impl->ws.set_option(websocket::stream_base::decorator([bearer, subprotocols](websocket::request_type& req) {
    if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
    if (!subprotocols.empty()) req.set(http::field::sec_websocket_protocol, subprotocols);
  }));
  impl->ws.read_message_max(64 << 20);
  // The asynchronous handshake hands back the server's response even when it declines the
  // upgrade (the synchronous one does not), so the test can read a 401.
  websocket::response_type res;
  impl->ws.async_handshake(res, host + ":" + std::to_string(port), target, [&ec](beast::error_code e) { ec = e; });
  impl->ioc.run();
  impl->ioc.restart();
  if (http_status) *http_status = static_cast<int>(res.result_int());
  if (ec) {
    if (error) *error = "handshake: " + ec.message() + " (HTTP " + std::to_string(res.result_int()) + ") " + res.body();
    return nullptr;
  }
  tcp_layer.expires_never();
  impl->subprotocol = std::string(res[http::field::sec_websocket_protocol]);
  impl->check_frames = target == "/ws" || target.rfind("/ws?", 0) == 0;
  impl->binary = impl->subprotocol == "imlog.v1";
  auto* p = impl.get();
  p->ws.control_callback([p](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::pong) p->pongs++;
  });
  if (read) p->do_read();
  p->thread = std::thread([p] { p->ioc.run(); });
  if (read && p->check_frames) {
    std::unique_lock lock(p->mu);
    p->cv.wait_for(lock, std::chrono::seconds(30), [p] {
      return p->closed || std::any_of(p->inbox.begin(), p->inbox.end(), [](const Frame& f) { return f.type == "hello"; });
    });
  }
  return std::unique_ptr<WsClient>(new WsClient(std::move(impl)));
}

void WsClient::send_text(std::string text) { impl_->enqueue(std::move(text), Impl::Kind::text); }
void WsClient::send_binary(std::string bytes) { impl_->enqueue(std::move(bytes), Impl::Kind::binary); }
void WsClient::send_ping(std::string payload) { impl_->enqueue(std::move(payload), Impl::Kind::ping); }
uint64_t WsClient::pongs() const { return impl_->pongs.load(); }
std::string WsClient::subprotocol() const { return impl_->subprotocol; }

void WsClient::send(std::string_view type, std::string_view data_json) {
  std::string f = "{\"type\":\"" + std::string(type) + "\",\"data\":" + std::string(data_json.empty() ? "{}" : data_json) + "}";
  if (!impl_->binary) return send_text(std::move(f));
  std::string bytes, why;
  if (!gw::ws_frame_to_binary(f, bytes, why)) {
    ADD_FAILURE() << "cannot send this frame as imlog.v1 (docs/api/websocket.fbs): " << why << "\n  " << f;
    return;
  }
  send_binary(std::move(bytes));
}

bool WsClient::binary() const { return impl_->binary; }

std::optional<Frame> WsClient::wait_for(std::string_view type, std::chrono::milliseconds timeout,
                                        const std::function<bool(const Frame&)>& pred) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(impl_->mu);
  size_t scanned = 0;
  while (true) {
    for (size_t i = scanned; i < impl_->inbox.size(); ++i) {
      Frame& f = impl_->inbox[i];
      if (f.type == type && (!pred || pred(f))) {
        Frame out = std::move(f);
        impl_->inbox.erase(impl_->inbox.begin() + static_cast<std::ptrdiff_t>(i));
        return out;
      }
    }
    scanned = impl_->inbox.size();
    if (impl_->closed) return std::nullopt;
    if (impl_->cv.wait_until(lock, deadline) == std::cv_status::timeout) {
      // One last look at what arrived with the time-out.
      for (size_t i = scanned; i < impl_->inbox.size(); ++i) {
        Frame& f = impl_->inbox[i];
        if (f.type == type && (!pred || pred(f))) {
          Frame out = std::move(f);
          impl_->inbox.erase(impl_->inbox.begin() + static_cast<std::ptrdiff_t>(i));
          return out;
        }
      }
      return std::nullopt;
    }
  }
}

std::vector<Frame> WsClient::take_all(std::string_view type) {
  std::lock_guard lock(impl_->mu);
  std::vector<Frame> out;
  for (auto it = impl_->inbox.begin(); it != impl_->inbox.end();) {
    if (it->type == type) {
      out.push_back(std::move(*it));
      it = impl_->inbox.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

std::optional<uint16_t> WsClient::wait_closed(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  if (!impl_->cv.wait_for(lock, timeout, [&] { return impl_->closed; })) return std::nullopt;
  return impl_->close_code;
}

bool WsClient::closed() const {
  std::lock_guard lock(impl_->mu);
  return impl_->closed;
}

std::string WsClient::close_error() const {
  std::lock_guard lock(impl_->mu);
  return impl_->close_error;
}

void WsClient::close() {
  net::post(impl_->ioc, [p = impl_.get()] {
    p->ws.async_close(websocket::close_code::normal, [](beast::error_code) {});
  });
}

SignedIn log_in(const HttpClient& http, const std::string& name) {
  std::string creds = R"({"username":")" + name + R"(","password":"secret-)" + name + R"("})";
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       std::chrono::steady_clock::now() < deadline;) {
    auto login = http.post("/api/v1/auth/login", creds);
    if (login.status == 200) {
      auto j = login.json();
      return SignedIn{j["user_id"].GetUint64(), j["access_token"].GetString()};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "could not log in as " << name;
  return {};
}

SignedIn join(const HttpClient& http, const std::string& name) {
  std::string creds = R"({"username":")" + name + R"(","password":"secret-)" + name + R"("})";
  auto reg = http.post("/api/v1/auth/register", creds);
  EXPECT_EQ(reg.status, 201) << reg.body;
  return log_in(http, name);
}

}  // namespace imlog::testing
