#pragma once
// The load generator's set-up and reporting (bench/README.md): the server under test (started
// here or given), the I/O threads, users and their tokens, connecting many WebSockets, and the
// report (a human table and one `RESULT {json}` line). Used from the main thread unless a
// comment says otherwise.

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "net.h"

namespace imlog::bench {

// Options every scenario shares.
struct Common {
  int port = 0;             // 0: start `imlog serve` here
  pid_t server_pid = 0;     // with --port: the process whose RSS and CPU are reported
  int sources = 8;          // source addresses 127.0.0.1..N for client sockets
  int threads = 1;          // I/O threads of the load generator
  std::string config;       // a server config to use instead of the bench default
  std::string data_dir;     // the spawned server's data dir (default: a fresh temp dir, removed)
  std::string server_bin;   // the imlog executable to start (default: the one built beside this)
  int http_parallel = 64;   // keep-alive connections for set-up
  std::string subprotocol = "imlog.v1.json";  // WebSocket: imlog.v1.json (JSON text) or imlog.v1 (binary)
};

// The server under test: a spawned `imlog serve` (stdout and stderr to <dir>/server.log) or one
// already running.
class Server {
 public:
  // Starts one when c.port == 0, else attaches to 127.0.0.1:c.port.
  explicit Server(const Common& c);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  // Waits for /readyz (200); false after `timeout_s`.
  bool wait_ready(double timeout_s);
  // SIGTERM and wait (spawned only); SIGKILL after 300 s. The seconds from SIGTERM to exit (-1:
  // not spawned, killed, or not a clean exit).
  double stop();
  // SIGKILL and reap (spawned only): a crash, so the next start on its directory is a recovery.
  void kill_now();
  [[nodiscard]] Target target() const { return target_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  [[nodiscard]] long rss_kib() const;     // VmRSS, -1 if unknown
  [[nodiscard]] double cpu_seconds() const;  // user + system of every thread, -1 if unknown
  // Starts `imlog serve` on `data_dir` with the bench config; returns the pid.
  pid_t spawn(const std::filesystem::path& data_dir);

 private:
  Target target_;
  pid_t pid_ = 0;
  bool spawned_ = false;
  bool remove_dir_ = false;
  std::string config_;
  std::string bin_;  // the imlog executable spawned
  std::filesystem::path dir_;
};

// Load generator CPU (user + system, every thread) and RSS.
double own_cpu_seconds();
long own_rss_kib();
// Raises RLIMIT_NOFILE's soft limit to the hard one; returns the new soft limit.
long raise_fd_limit();

// `threads` io_contexts, each run by one thread until stop().
class Workers {
 public:
  explicit Workers(int threads);
  ~Workers();
  net::io_context& io(size_t i) { return *ios_[i % ios_.size()]; }
  [[nodiscard]] size_t size() const { return ios_.size(); }
  void stop();
  // Runs `fn()` on thread i and waits for its result.
  template <class Fn>
  auto call(size_t i, Fn fn) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto f = task.get_future();
    net::post(io(i), [&task] { task(); });
    return f.get();
  }

 private:
  std::vector<std::unique_ptr<net::io_context>> ios_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
};

// Runs the coroutines made by `make(i)` for i in [0, n) on the workers, `parallel` at a time,
// and waits for all.
void run_parallel(Workers& w, size_t n, size_t parallel,
                  const std::function<net::awaitable<void>(size_t i, HttpConn& http)>& body, const Target& t);

struct User {
  uint64_t id = 0;
  std::string name;
  std::string token;
};

// Registers and logs in `n` users named <prefix>u<i> over keep-alive HTTP; exits on failure.
std::vector<User> make_users(Workers& w, const Common& c, const Target& t, size_t n, const std::string& prefix);

// Creates a group owned by users[owner] with `members`; returns its conversation id.
std::string create_group(Workers& w, const Target& t, const User& owner, const std::vector<uint64_t>& members);

// Opens one WebSocket per entry of `tokens` (conns[i] on worker i % size), at most `parallel`
// handshakes at a time, and starts reading with `on_frame` (called on the connection's thread).
// Returns the number that failed; prints the first failure.
size_t connect_all(Workers& w, const Target& t, std::vector<std::unique_ptr<WsConn>>& conns,
                   const std::vector<std::string>& tokens, size_t parallel, const WsConn::FrameHandler& on_frame);

// Ordered fields printed as a table and as one RESULT line.
class Report {
 public:
  explicit Report(std::string bench) { add("bench", std::move(bench)); }
  Report& add(const std::string& key, std::string value);
  Report& add(const std::string& key, double value, int decimals = 0);
  void print() const;

 private:
  std::vector<std::pair<std::string, std::pair<std::string, bool>>> fields_;  // key, (value, quoted)
};

// Adds the machine's state: date (UTC), nproc, load average.
void add_machine(Report& r);

}  // namespace imlog::bench
