#include "ops_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <thread>
#include <vector>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/threads.h"
#include "imlog/core/metrics.h"

namespace imlog {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kRequestDeadline = std::chrono::seconds(10);

// As the gateway answers it: {"code":"not_ready","message":why}, written by RapidJSON, which
// escapes what must be and refuses bytes that are not UTF-8 (the reason is then a placeholder).
std::string not_ready_body(const std::string& why) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>, rapidjson::CrtAllocator,
                    rapidjson::kWriteValidateEncodingFlag>
      w(out);
  w.StartObject();
  w.Key("code");
  w.String("not_ready");
  w.Key("message");
  if (!w.String(why.data(), static_cast<rapidjson::SizeType>(why.size()))) {
    return R"json({"code":"not_ready","message":"not ready (the reason is not valid UTF-8; see the log)"})json";
  }
  w.EndObject();
  return out.GetString();
}

// One connection: read a request, answer it, until the peer closes or the deadline passes.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, const std::function<std::string()>& not_ready)
      : stream_(std::move(socket)), not_ready_(not_ready) {}

  void read() {
    req_ = {};
    stream_.expires_after(kRequestDeadline);
    http::async_read(stream_, buffer_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->close();
      self->answer();
    });
  }

 private:
  void answer() {
    res_ = {};
    res_.version(req_.version());
    res_.keep_alive(req_.keep_alive());
    res_.set(http::field::server, "imlog");
    std::string_view target = req_.target();
    target = target.substr(0, target.find('?'));
    if (req_.method() != http::verb::get && req_.method() != http::verb::head) {
      reply(http::status::method_not_allowed, "application/json", R"({"code":"method_not_allowed","message":"the ops endpoints answer GET"})");
    } else if (target == "/metrics") {
      reply(http::status::ok, metrics::kContentType, metrics::render());
    } else if (target == "/healthz") {
      reply(http::status::ok, "application/json", R"({"status":"ok"})");
    } else if (target == "/readyz") {
      auto why = not_ready_ ? not_ready_() : std::string();
      if (why.empty()) {
        reply(http::status::ok, "application/json", R"({"status":"ready"})");
      } else {
        reply(http::status::service_unavailable, "application/json", not_ready_body(why));
      }
    } else {
      reply(http::status::not_found, "application/json", R"({"code":"not_found","message":"the ops listener serves /metrics, /healthz and /readyz"})");
    }
    if (req_.method() == http::verb::head) res_.body().clear();
    http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec || !self->res_.keep_alive()) return self->close();
      self->read();
    });
  }

  void reply(http::status status, const char* type, std::string body) {
    res_.result(status);
    res_.set(http::field::content_type, type);
    res_.body() = std::move(body);
    res_.prepare_payload();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  const std::function<std::string()>& not_ready_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
};

}  // namespace

struct OpsServer::Impl {
  std::string listen;
  std::function<std::string()> not_ready;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) std::make_shared<Connection>(std::move(socket), not_ready)->read();
      accept();
    });
  }
};

OpsServer::OpsServer(std::string listen, std::function<std::string()> not_ready) : impl_(std::make_unique<Impl>()) {
  impl_->listen = std::move(listen);
  impl_->not_ready = std::move(not_ready);
}

OpsServer::~OpsServer() { stop(); }

Status OpsServer::start() {
  auto& i = *impl_;
  auto colon = i.listen.rfind(':');
  auto bad = [&](const std::string& why) {
    return fail(std::errc::invalid_argument, "cannot listen on `" + i.listen + "` (ops.listen / --ops-listen): " + why);
  };
  if (colon == std::string::npos) return bad("not host:port");
  std::string host = i.listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  beast::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) return bad("the host must be an IP address or localhost");
  unsigned long num = 0;
  try {
    num = std::stoul(i.listen.substr(colon + 1));
  } catch (const std::exception&) {
    return bad("the port is not a number");
  }
  if (num > 65535) return bad("the port is above 65535");
  tcp::endpoint ep(address, static_cast<uint16_t>(num));
  i.acceptor.open(ep.protocol(), ec);
  if (!ec) i.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) i.acceptor.bind(ep, ec);
  if (!ec) i.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return bad(ec.message());
  i.accept();
  i.thread = std::thread([&i] {
    name_this_thread("ops");
    i.io.run();
  });
  logger("server")->info("ops listener on {}:{} (/metrics, /healthz, /readyz)", host, port());
  return {};
}

void OpsServer::stop() {
  auto& i = *impl_;
  if (!i.thread.joinable()) return;
  asio::post(i.io, [&i] {
    beast::error_code ec;
    i.acceptor.close(ec);
  });
  i.io.stop();
  i.thread.join();
}

uint16_t OpsServer::port() const {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

std::string default_ops_listen(const std::vector<std::string>& roles) {
  auto has = [&](std::string_view r) {
    return std::any_of(roles.begin(), roles.end(), [&](const std::string& x) { return x == r || x == "all"; });
  };
  if (has("gateway")) return {};
  for (auto [role, port] : {std::pair{"engine", 9101}, {"projector", 9102}, {"router", 9103}, {"tasks", 9104}}) {
    if (has(role)) return "127.0.0.1:" + std::to_string(port);
  }
  return {};
}

}  // namespace imlog
