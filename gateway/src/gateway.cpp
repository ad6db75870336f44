#include "imlog/gateway/gateway.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <spdlog/spdlog.h>

#include "http_session.h"
#include "imlog/core/logging.h"
#include "imlog/core/threads.h"
#include "imlog/gateway/command_bus.h"
#include "imlog/schema/codec.h"
#include "presence.h"
#include "push.h"
#include "services.h"

namespace imlog {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

enum class GatewayErrc { bad_config = 1, bind_failed, io_error };

class GatewayCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "gateway"; }
  std::string message(int c) const override {
    switch (static_cast<GatewayErrc>(c)) {
      case GatewayErrc::bad_config: return "bad gateway config";
      case GatewayErrc::bind_failed: return "cannot listen";
      case GatewayErrc::io_error: return "I/O error";
    }
    return "gateway error";
  }
};
const std::error_category& gateway_category() {
  static const GatewayCategory c;
  return c;
}
tl::unexpected<Error> gw_fail(GatewayErrc e, std::string message) {
  return tl::unexpected<Error>(Error(std::error_code(static_cast<int>(e), gateway_category()), std::move(message)));
}

// "host:port" → endpoint, or why it is not one. Hosts are IP literals ("127.0.0.1", "0.0.0.0",
// "::1", "[::1]") or "localhost".
tl::expected<tcp::endpoint, std::string> parse_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return tl::unexpected("`" + listen + "` is not host:port");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "localhost") host = "127.0.0.1";
  unsigned port = 0;
  auto ps = std::string_view(listen).substr(colon + 1);
  auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc() || p != ps.data() + ps.size() || port > 65535) {
    return tl::unexpected("port `" + std::string(ps) + "` is not 0..65535");
  }
  boost::system::error_code aec;
  auto addr = net::ip::make_address(host, aec);
  if (aec) return tl::unexpected("`" + host + "` is not an IP address (use e.g. 127.0.0.1 or 0.0.0.0)");
  return tcp::endpoint(addr, static_cast<unsigned short>(port));
}

// Accepts connections, each on its own strand. Runs on the io_context.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, gw::Services& svc) : ioc_(ioc), svc_(svc), acceptor_(net::make_strand(ioc)), retry_(ioc) {}

  Status open(const tcp::endpoint& ep, const std::string& listen) {
    boost::system::error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return gw_fail(GatewayErrc::bind_failed, "cannot listen on " + listen + " (config key `gateway.listen` or "
                                                   "--listen): " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    return {};
  }

  void start() { net::dispatch(acceptor_.get_executor(), [self = shared_from_this()] { self->do_accept(); }); }

  void stop() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ec;
      self->acceptor_.close(ec);
      self->retry_.cancel();
    });
  }

  [[nodiscard]] uint16_t port() const { return port_; }

 private:
  void do_accept() {
    acceptor_.async_accept(net::make_strand(ioc_), [self = shared_from_this()](boost::system::error_code ec, tcp::socket s) {
      self->on_accept(ec, std::move(s));
    });
  }

  void on_accept(boost::system::error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors and the like: back off instead of spinning.
      logger("gateway")->warn("accept failed: {}; retrying in 100 ms", ec.message());
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([self = shared_from_this()](boost::system::error_code e) {
        if (!e) self->do_accept();
      });
      return;
    }
    boost::system::error_code nd;
    socket.set_option(tcp::no_delay(true), nd);
    gw::start_http_session(svc_, std::move(socket));
    do_accept();
  }

  net::io_context& ioc_;
  gw::Services& svc_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
  uint16_t port_ = 0;
};

}  // namespace

struct Gateway::Impl {
  Impl(GatewayConfig config, GatewayDeps deps)
      : bus(std::move(deps.bus)),
        svc(std::move(config), deps, *bus, bus->gateway_id()),
        blocking(std::max<uint32_t>(1, svc.config.password_threads)) {
    collector = metrics::add_collector([this](std::vector<prometheus::MetricFamily>& out) {
      svc.metrics.collect(out);
      out.push_back(metrics::gauge("imlog_gateway_query_queue_depth",
                                   "Read-model queries waiting for a query thread (gateway.query_queue per thread).",
                                   static_cast<double>(svc.queries.queued())));
      out.push_back(metrics::gauge("imlog_gateway_registry_queue_depth",
                                   "Session registry and presence tasks waiting for a registry thread.",
                                   static_cast<double>(svc.registry.queued())));
    });
  }

  // The bus goes first, while the io_context and svc still exist: its pending callbacks hold
  // connections, whose destructors need both.
  ~Impl() { bus.reset(); }

  std::unique_ptr<CommandBus> bus;
  gw::Services svc;  // outlives the io_context and the handlers it destroys
  metrics::CollectorHandle collector;  // reads svc: unregistered before it goes
  net::io_context ioc;
  // Delivery batches from the bus run here, in order: one wake-up per batch, then every answer and
  // push is posted to its session from an I/O thread.
  net::strand<net::io_context::executor_type> deliveries{net::make_strand(ioc)};
  net::thread_pool blocking;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::shared_ptr<Listener> listener;
  tcp::endpoint endpoint;
  bool started = false;
  bool stopped = false;

  // A batch of pushes from the delivery transport: each event rendered once, each session's frames
  // handed over in one post.
  void on_pushes(std::vector<Push>&& pushes) {
    std::vector<gw::UserPush> out;
    for (auto& push : pushes) {
      svc.metrics.pushes_in++;
      if (push.presence) {
        add_presence(push, out);
      } else if (push.event_bytes) {
        add_event(push, out);
      }
    }
    svc.hub.push_all(out);
  }

  void add_event(const Push& push, std::vector<gw::UserPush>& out) {
    auto e = read_event(*push.event_bytes);
    if (!e) {
      logger("gateway")->warn("dropping an undecodable push: {}", e.error().to_string());
      return;
    }
    const fb::EventEnvelope& ev = **e;
    if (auto* r = ev.event_as_RefreshTokenRevoked()) {
      svc.revoked.add(std::string(sv(r->token_id())), r->expires_at_ms(), svc.clock.now_ms());
    } else if (auto* gone = ev.event_as_UserErased()) {
      svc.erased.add(gone->user_id());
    }
    auto rendered = gw::render_push(ev, svc.keys);
    if (!rendered) return;
    const bool erasure = ev.event_type() == fb::Event::UserErased;
    for (uint64_t user : push.recipients) {
      if (rendered->only_user != 0 && user != rendered->only_user) continue;
      if (!erasure && svc.erased.contains(user)) continue;  // an erased user's open sessions get nothing more
      out.push_back(gw::UserPush{user, rendered->frame, rendered->info});
    }
  }

  // A friend's presence, from another gateway.
  void add_presence(const Push& push, std::vector<gw::UserPush>& out) {
    const auto& n = *push.presence;
    if (n.status > static_cast<uint8_t>(PresenceStatus::busy)) return;  // a newer status this gateway does not know
    auto frame = gw::presence_frame(
        Presence{.user_id = n.user_id, .status = static_cast<PresenceStatus>(n.status), .last_seen_ms = n.last_seen_ms});
    for (uint64_t user : push.recipients) out.push_back(gw::UserPush{user, frame, gw::PushInfo{.actor = n.user_id}});
  }
};

Gateway::Gateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Gateway::~Gateway() { stop(); }

Result<std::unique_ptr<Gateway>> Gateway::create(GatewayConfig config, GatewayDeps deps) {
  auto fail_key = [](std::string key, std::string what) {
    return gw_fail(GatewayErrc::bad_config, "config key `gateway." + key + "` " + what);
  };
  if (!deps.bus) return fail_key("gateway_id", "has no command bus (internal: GatewayDeps.bus is null)");
  auto ep = parse_listen(config.listen);
  if (!ep) return gw_fail(GatewayErrc::bad_config, "config key `gateway.listen`: " + ep.error());
  if (config.jwt_secret.size() < 16) {
    return fail_key("jwt_secret", "must be at least 16 bytes (or leave it empty on a single node to generate one)");
  }
  if (config.max_frame_bytes < 1024) return fail_key("max_frame_bytes", "must be at least 1 KiB");
  if (config.max_body_bytes < 1024) return fail_key("max_body_bytes", "must be at least 1 KiB");
  if (config.max_queued_frames < 16) return fail_key("max_queued_frames", "must be at least 16");
  if (config.max_queued_bytes < config.max_frame_bytes) {
    return fail_key("max_queued_bytes", "must be at least max_frame_bytes");
  }
  if (config.ws_rate <= 0 || config.ws_burst < 1) return fail_key("ws_rate", "and ws_burst must be positive (burst >= 1)");
  if (config.access_token_ttl < std::chrono::seconds(10)) return fail_key("access_token_ttl", "must be at least 10s");
  if (config.refresh_token_ttl < config.access_token_ttl) {
    return fail_key("refresh_token_ttl", "must be at least access_token_ttl");
  }
  if (config.heartbeat_timeout < std::chrono::seconds(1)) return fail_key("heartbeat_timeout", "must be at least 1s");
  if (config.registry_threads == 0 || config.registry_queue == 0) {
    return fail_key("registry_threads", "and registry_queue must be at least 1");
  }
  if (config.query_threads == 0 || config.query_queue == 0) {
    return fail_key("query_threads", "and query_queue must be at least 1");
  }
  if (config.password_queue == 0) return fail_key("password_queue", "must be at least 1");
  if (auto p = login_throttle_problem(config.login_throttle); !p.empty()) return fail_key("login_throttle", ": " + p);
  auto proxies = gw::TrustedProxies::parse(config.trusted_proxies);
  if (!proxies) return fail_key("trusted_proxies", ": " + proxies.error().message());
  if (config.threads == 0) config.threads = std::max(1u, std::thread::hardware_concurrency());
  if (!config.web_dir.empty() && !std::filesystem::is_regular_file(config.web_dir + "/index.html")) {
    return fail_key("web_dir", "`" + config.web_dir + "` has no index.html");
  }
  auto impl = std::make_unique<Impl>(std::move(config), std::move(deps));
  impl->endpoint = *ep;
  auto& svc = impl->svc;
  svc.trusted_proxies = std::move(*proxies);
  gw::add_ops_routes(svc.api);
  gw::add_auth_routes(svc.api);
  gw::add_chat_routes(svc.api);
  gw::add_user_routes(svc.api);
  Impl* raw = impl.get();
  svc.run_blocking = [raw](std::function<void()> fn) { net::post(raw->blocking, std::move(fn)); };
  svc.run_after = [raw](std::chrono::milliseconds d, std::function<void()> fn) {
    auto t = std::make_shared<net::steady_timer>(raw->ioc, d);
    t->async_wait([t, fn = std::move(fn)](boost::system::error_code) { fn(); });
  };
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

Status Gateway::start() {
  auto& p = *impl_;
  if (p.started) return {};
  p.listener = std::make_shared<Listener>(p.ioc, p.svc);
  IMLOG_TRY(p.listener->open(p.endpoint, p.svc.config.listen));
  IMLOG_TRY(p.svc.bus.start([raw = impl_.get()](std::vector<Push>&& pushes) { raw->on_pushes(std::move(pushes)); },
                            [strand = p.deliveries](std::function<void()> task) { net::post(strand, std::move(task)); }));
  p.work.emplace(p.ioc.get_executor());
  p.listener->start();
  for (uint32_t i = 0; i < p.svc.config.threads; ++i) {
    p.threads.emplace_back([&p] {
      name_this_thread("gw-io");
      p.ioc.run();
    });
  }
  p.started = true;
  logger("gateway")->info("gateway {} listening on http://{}:{} ({} threads)", p.svc.gateway_id,
                          p.endpoint.address().to_string(), p.listener->port(), p.svc.config.threads);
  return {};
}

void Gateway::stop() {
  auto& p = *impl_;
  if (!p.started || p.stopped) return;
  p.stopped = true;
  p.svc.stopping = true;
  p.listener->stop();
  size_t open = p.svc.connections.size();
  p.svc.connections.shutdown_all(1001);  // WebSockets: close frame "going away" after their queues drain
  if (!p.svc.connections.wait_empty(p.svc.config.drain_timeout)) {
    logger("gateway")->warn("{} of {} connections still open after the drain timeout; dropping them",
                            p.svc.connections.size(), open);
  }
  p.svc.queries.stop();
  p.svc.registry.stop();  // the closed sessions' disconnects and announcements, while the bus still runs
  p.svc.bus.stop();
  p.svc.bus_stopped = true;  // sessions released later (by ~Impl's io_context) announce nothing
  p.work.reset();
  p.ioc.stop();
  for (auto& t : p.threads) t.join();
  p.threads.clear();
  p.blocking.join();
  logger("gateway")->info("gateway stopped");
}

uint16_t Gateway::port() const { return impl_->listener ? impl_->listener->port() : 0; }

GatewaySnapshot Gateway::snapshot() const {
  const auto& m = impl_->svc.metrics;
  GatewaySnapshot s;
  s.ws_connections = static_cast<uint64_t>(std::max<int64_t>(0, m.ws_connections.load()));
  s.http_connections = static_cast<uint64_t>(std::max<int64_t>(0, m.http_connections.load()));
  s.frames_in = m.frames_in.load();
  s.frames_out = m.frames_out.load();
  return s;
}

std::string listen_problem(const std::string& listen) {
  auto ep = parse_listen(listen);
  return ep ? std::string() : ep.error();
}

Result<std::string> load_or_create_secret(const std::string& path) {
  std::error_code fec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, fec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    std::string secret = gw::random_hex(32);
    std::string line = secret + "\n";
    bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) return gw_fail(GatewayErrc::io_error, "cannot write the JWT secret to " + path + ": " + std::strerror(errno));
    return secret;
  }
  if (errno != EEXIST) {
    return gw_fail(GatewayErrc::io_error, "cannot create the JWT secret file " + path + ": " + std::strerror(errno));
  }
  std::ifstream in(path);
  std::string secret;
  std::getline(in, secret);
  while (!secret.empty() && (secret.back() == '\r' || secret.back() == ' ')) secret.pop_back();
  if (secret.size() < 16) {
    return gw_fail(GatewayErrc::io_error, "the JWT secret in " + path +
                                              " is shorter than 16 bytes: delete the file to generate a new one "
                                              "(every issued token becomes invalid)");
  }
  return secret;
}

std::string default_gateway_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "gateway-1";
  std::string id = std::string("gateway-") + host;
  for (char& c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '-';
  }
  return id;
}

}  // namespace imlog
