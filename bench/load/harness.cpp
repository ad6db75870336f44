// The load generator's set-up and reporting; see harness.h.

#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "imlog/testing/support.h"

namespace imlog::bench {

namespace http = beast::http;
namespace fs = std::filesystem;

namespace {

long status_kib(const std::string& file, const char* field) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  }
  return -1;
}

std::string bench_config(int port) {
  std::ostringstream s;
  s << "gateway:\n"
       "  listen: 127.0.0.1:" << port << "\n"
       "  password_ops_limit: 1\n"
       "  password_mem_limit: 8KiB\n"
       "  ws_rate: 1000000\n"
       "  ws_burst: 1000000\n"
       "log: {level: warn}\n";
  return s.str();
}

// The server this process spawned, so that giving up does not leave it running.
std::atomic<pid_t> spawned_server{0};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "imlog-bench-load: %s\n", why.c_str());
  if (pid_t p = spawned_server.load(); p > 0) ::kill(p, SIGKILL);
  std::fflush(stdout);
  std::_Exit(1);
}

}  // namespace

Server::Server(const Common& c) {
  target_.sources = c.sources;
  target_.subprotocol = c.subprotocol;
  if (c.port != 0) {
    target_.port = static_cast<uint16_t>(c.port);
    pid_ = c.server_pid;
    return;
  }
  if (c.data_dir.empty()) {
    char tmpl[] = "/tmp/imlog-bench-load-XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp failed");
    dir_ = tmpl;
    remove_dir_ = true;
  } else {
    dir_ = c.data_dir;
    fs::create_directories(dir_);
  }
  target_.port = static_cast<uint16_t>(imlog::testing::free_port());
  bin_ = c.server_bin.empty() ? (imlog::testing::binary_dir() / "imlog").string() : c.server_bin;
  config_ = c.config;
  if (config_.empty()) {
    config_ = (dir_ / "bench.yaml").string();
    std::ofstream(config_) << bench_config(target_.port);
  }
  spawn(dir_ / "data");
}

pid_t Server::spawn(const fs::path& data_dir) {
  std::string log = (dir_ / "server.log").string();
  const std::string& bin = bin_;
  std::string listen = "127.0.0.1:" + std::to_string(target_.port);
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(bin.c_str(), bin.c_str(), "serve", "--config", config_.c_str(), "--data-dir", data_dir.c_str(), "--listen",
            listen.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  spawned_ = true;
  spawned_server = pid_;
  return pid_;
}

Server::~Server() {
  stop();
  if (remove_dir_) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

bool Server::wait_ready(double timeout_s) {
  net::io_context io;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    HttpConn conn(io, target_, 0);
    int status = 0;
    net::co_spawn(io, [&]() -> net::awaitable<void> {
      status = (co_await conn.request(http::verb::get, "/readyz")).status;
    }, net::detached);
    io.run();
    io.restart();
    if (status == 200) return true;
    if (spawned_ && ::waitpid(pid_, nullptr, WNOHANG) == pid_) die("the server exited; see " + (dir_ / "server.log").string());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

double Server::stop() {
  if (!spawned_) return -1;
  spawned_ = false;
  auto t0 = std::chrono::steady_clock::now();
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 30'000; ++i) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "the server did not exit cleanly on SIGTERM (wait status %d)\n", status);
        return -1;
      }
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "the server did not stop within 300 s of SIGTERM: killed\n");
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  return -1;
}

void Server::kill_now() {
  if (!spawned_) return;
  spawned_ = false;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

long Server::rss_kib() const {
  return pid_ > 0 ? status_kib("/proc/" + std::to_string(pid_) + "/status", "VmRSS:") : -1;
}

double Server::cpu_seconds() const {
  if (pid_ <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double own_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long own_rss_kib() { return status_kib("/proc/self/status", "VmRSS:"); }

long raise_fd_limit() {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  return static_cast<long>(rl.rlim_cur);
}

Workers::Workers(int threads) {
  for (int i = 0; i < std::max(threads, 1); ++i) {
    ios_.push_back(std::make_unique<net::io_context>(1));
    guards_.push_back(net::make_work_guard(*ios_.back()));
  }
  for (auto& io : ios_) threads_.emplace_back([&io = *io] { io.run(); });
}

Workers::~Workers() { stop(); }

void Workers::stop() {
  for (auto& io : ios_) io->stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void run_parallel(Workers& w, size_t n, size_t parallel,
                  const std::function<net::awaitable<void>(size_t, HttpConn&)>& body, const Target& t) {
  std::atomic<size_t> next{0};
  std::atomic<size_t> running{std::min(parallel, n)};
  std::promise<void> done;
  for (size_t k = 0; k < std::min(parallel, n); ++k) {
    net::io_context& io = w.io(k);
    net::co_spawn(io, [&, k, &io = io]() -> net::awaitable<void> {
      HttpConn conn(io, t, k);
      for (size_t i = next++; i < n; i = next++) co_await body(i, conn);
      if (--running == 0) done.set_value();
    }, net::detached);
  }
  if (n > 0) done.get_future().wait();
}

// A set-up request, sent again while the server sheds load (503 or 429 with Retry-After), as a
// well-behaved client does: set-up is not what is measured.
net::awaitable<HttpReply> request_patiently(HttpConn& http, http::verb verb, const std::string& target,
                                            const std::string& body) {
  net::steady_timer backoff(co_await net::this_coro::executor);
  for (int attempt = 0;; ++attempt) {
    HttpReply r = co_await http.request(verb, target, body);
    if ((r.status != 503 && r.status != 429) || attempt >= 100) co_return r;
    backoff.expires_after(std::chrono::milliseconds(100 + 50 * std::min(attempt, 18)));
    co_await backoff.async_wait(net::use_awaitable);
  }
}

std::vector<User> make_users(Workers& w, const Common& c, const Target& t, size_t n, const std::string& prefix) {
  std::vector<User> users(n);
  std::atomic<size_t> failures{0};
  std::string first_error;
  std::mutex mu;
  run_parallel(w, n, static_cast<size_t>(c.http_parallel), [&](size_t i, HttpConn& http) -> net::awaitable<void> {
    User& u = users[i];
    u.name = prefix + "u" + std::to_string(i);
    std::string body = R"({"username":")" + u.name + R"(","password":"bench-password-1"})";
    HttpReply reg = co_await request_patiently(http, http::verb::post, "/api/v1/auth/register", body);
    HttpReply login;
    if (reg.status == 201) login = co_await request_patiently(http, http::verb::post, "/api/v1/auth/login", body);
    u.id = static_cast<uint64_t>(number_field(reg.body, "user_id", 0));
    u.token = std::string(string_field(login.body, "access_token"));
    if (reg.status != 201 || login.status != 200 || u.token.empty()) {
      std::lock_guard lock(mu);
      if (failures++ == 0) first_error = "user " + u.name + ": register " + std::to_string(reg.status) + " " + reg.body +
                                         reg.error + ", login " + std::to_string(login.status) + " " + login.body;
    }
  }, t);
  if (failures) die(std::to_string(failures.load()) + " registrations or logins failed; first: " + first_error);
  return users;
}

std::string create_group(Workers& w, const Target& t, const User& owner, const std::vector<uint64_t>& members) {
  std::string body = R"({"name":"bench group","members":[)";
  for (size_t i = 0; i < members.size(); ++i) body += (i ? "," : "") + std::to_string(members[i]);
  body += "]}";
  HttpReply r;
  run_parallel(w, 1, 1, [&](size_t, HttpConn& http) -> net::awaitable<void> {
    r = co_await http.request(http::verb::post, "/api/v1/groups", body, owner.token);
  }, t);
  if (r.status != 201) die("creating the group failed: " + std::to_string(r.status) + " " + r.body + r.error);
  return std::string(string_field(r.body, "conversation_id"));
}

size_t connect_all(Workers& w, const Target& t, std::vector<std::unique_ptr<WsConn>>& conns,
                   const std::vector<std::string>& tokens, size_t parallel, const WsConn::FrameHandler& on_frame) {
  size_t n = tokens.size();
  conns.resize(n);
  for (size_t i = 0; i < n; ++i) {
    conns[i] = std::make_unique<WsConn>(w.io(i));
    conns[i]->index = i;
  }
  // Connector k on worker k % size takes the connections of that worker, k / size-th in turn.
  std::atomic<size_t> failures{0};
  std::string first_error;
  std::mutex mu;
  std::vector<std::atomic<size_t>> next(w.size());
  const size_t connectors = std::max<size_t>(parallel, w.size());
  std::atomic<size_t> running{connectors};  // counts down as connectors finish, maybe before all start
  std::promise<void> done;
  for (size_t k = 0; k < connectors; ++k) {
    size_t worker = k % w.size();
    net::co_spawn(w.io(worker), [&, worker]() -> net::awaitable<void> {
      for (size_t j = next[worker]++; worker + j * w.size() < n; j = next[worker]++) {
        size_t i = worker + j * w.size();
        auto ec = co_await conns[i]->open(t, i, tokens[i]);
        if (!ec) {
          conns[i]->start_reading(on_frame);
          continue;
        }
        std::lock_guard lock(mu);
        if (failures++ == 0) first_error = "connection " + std::to_string(i) + ": " + ec.message();
      }
      if (--running == 0) done.set_value();
    }, net::detached);
  }
  done.get_future().wait();
  if (failures) std::fprintf(stderr, "%zu WebSocket connections failed; first: %s\n", failures.load(), first_error.c_str());
  return failures;
}

Report& Report::add(const std::string& key, std::string value) {
  fields_.push_back({key, {std::move(value), true}});
  return *this;
}

Report& Report::add(const std::string& key, double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  fields_.push_back({key, {buf, false}});
  return *this;
}

void Report::print() const {
  for (const auto& [k, v] : fields_) std::printf("  %-28s %s\n", k.c_str(), v.first.c_str());
  std::string json = "{";
  for (const auto& [k, v] : fields_) {
    if (json.size() > 1) json += ",";
    json += "\"" + k + "\":" + (v.second ? "\"" + v.first + "\"" : v.first);
  }
  std::printf("RESULT %s}\n", json.c_str());
  std::fflush(stdout);
}

void add_machine(Report& r) {
  char date[32];
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  double load[3] = {0, 0, 0};
  ::getloadavg(load, 3);
  r.add("date", date).add("nproc", static_cast<double>(std::thread::hardware_concurrency()));
  r.add("loadavg_1m", load[0], 2);
}

}  // namespace imlog::bench
