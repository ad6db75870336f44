// imlog-bench-chat: one-to-one chat end to end over the wire contract (DESIGN.md §8.1) — the first
// figure of issue 5: messages/s delivered with N connected clients, and delivery latency (the
// sender's send to the recipient's receipt).
//
//   imlog-bench-chat [--clients 1000] [--rate 2000] [--seconds 10] [--port P]
//
// Without --port it starts `imlog serve` itself on a fresh data directory with a bench config:
// password hashing at libsodium's minimum cost (1,000 logins are set-up, not what is measured)
// and a per-connection send rate high enough not to throttle the offered load. Clients pair up
// (2k ↔ 2k+1); a driver thread sends at the offered rate, round-robin over the clients, each
// message carrying its send time; a collector sweeps every client's queue of received frames.
// Latency is therefore measured at the sweep, which adds up to one sweep interval (printed).
// Each client is a WsClient of the end-to-end tests (tests/support), one I/O thread each.

#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "imlog/engine/streams.h"
#include "imlog/testing/client.h"
#include "imlog/testing/support.h"

namespace {

using namespace imlog::testing;
using SteadyClock = std::chrono::steady_clock;

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now().time_since_epoch()).count();
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct User {
  uint64_t id = 0;
  std::string token;
  std::unique_ptr<WsClient> ws;
  std::string conversation;
};

// Runs `fn(i)` for i in [0, n) on `threads` threads.
void parallel_for(size_t n, int threads, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i = next++; i < n; i = next++) fn(i);
    });
  }
  for (auto& t : pool) t.join();
}

double percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imlog one-to-one chat load"};
  size_t clients = 1000;
  double rate = 2000;
  double seconds = 10;
  int port = 0;
  app.add_option("--clients", clients, "connected clients (even)");
  app.add_option("--rate", rate, "messages/s offered, in all");
  app.add_option("--seconds", seconds, "how long to send");
  app.add_option("--port", port, "an imlog serve already on 127.0.0.1:PORT (default: start one)");
  CLI11_PARSE(app, argc, argv);
  clients -= clients % 2;

  TempDir dir("imlog-bench-chat");
  std::optional<Subprocess> server;
  if (port == 0) {
    port = free_port();
    std::ofstream(dir.path() / "bench.yaml") << "gateway:\n"
                                                "  listen: 127.0.0.1:" << port << "\n"
                                                "  password_ops_limit: 1\n"
                                                "  password_mem_limit: 8KiB\n"
                                                "  ws_rate: 100000\n"
                                                "  ws_burst: 100000\n"
                                                "log: {level: warn}\n";
    server = Subprocess::start({(binary_dir() / "imlog").string(), "serve", "--config",
                                (dir.path() / "bench.yaml").string(), "--data-dir", (dir.path() / "data").string()});
  }
  HttpClient http("127.0.0.1", port);
  if (!wait_until([&] { return http.get("/readyz").status == 200; }, std::chrono::seconds(60))) {
    std::fprintf(stderr, "the server did not become ready on port %d\n", port);
    return 1;
  }

  // Set-up: users, tokens, connections.
  std::vector<User> users(clients);
  std::string run = std::to_string(::getpid());
  auto t0 = SteadyClock::now();
  std::atomic<int> failures{0};
  parallel_for(clients, 8, [&](size_t i) {
    std::string name = "load" + run + "u" + std::to_string(i);
    std::string body = R"({"username":")" + name + R"(","password":"bench-password-1"})";
    auto reg = http.post("/api/v1/auth/register", body);
    if (reg.status != 201) return (void)failures++;
    users[i].id = reg.json()["user_id"].GetUint64();
    HttpResult login;
    wait_until([&] { return (login = http.post("/api/v1/auth/login", body)).status == 200; }, std::chrono::seconds(10));
    if (login.status != 200) return (void)failures++;
    users[i].token = login.json()["access_token"].GetString();
  });
  if (failures) return std::fprintf(stderr, "%d registrations or logins failed\n", failures.load()), 1;
  double setup_users_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  t0 = SteadyClock::now();
  parallel_for(clients, 8, [&](size_t i) {
    users[i].ws = WsClient::connect("127.0.0.1", port, "/ws?token=" + users[i].token);
    if (!users[i].ws) failures++;
  });
  if (failures) return std::fprintf(stderr, "%d WebSocket connections failed\n", failures.load()), 1;
  double connect_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  for (size_t i = 0; i < clients; ++i) {
    users[i].conversation = imlog::single_stream(users[i].id, users[i ^ 1].id);
  }
  long rss_connected = server ? rss_kib(server->pid()) : -1;

  // Load: the driver sends; the collector sweeps.
  std::atomic<bool> sending{true};
  std::atomic<uint64_t> sent{0};
  std::vector<int64_t> latencies_us;
  uint64_t delivered = 0, acked = 0;
  int64_t sweep_us_max = 0;
  double cpu0 = cpu_seconds();
  auto start = SteadyClock::now();
  std::thread driver([&] {
    auto interval = std::chrono::duration<double>(1.0 / rate);
    auto next = SteadyClock::now();
    for (uint64_t n = 0; sending; ++n) {
      std::this_thread::sleep_until(next);
      next += std::chrono::duration_cast<SteadyClock::duration>(interval);
      User& u = users[n % clients];
      u.ws->send("send-message", R"({"conversation_id":")" + u.conversation + R"(","client_msg_id":"b)" +
                                     std::to_string(n) + R"(","content":"t=)" + std::to_string(now_us()) + "\"}");
      sent++;
    }
  });
  auto sweep = [&] {
    int64_t begin = now_us();
    for (auto& u : users) {
      for (auto& f : u.ws->take_all("new-message")) {
        std::string content = f.str("content");
        if (content.rfind("t=", 0) != 0) continue;
        latencies_us.push_back(now_us() - std::stoll(content.substr(2)));
        delivered++;
      }
      acked += u.ws->take_all("message-ack").size();
    }
    sweep_us_max = std::max(sweep_us_max, now_us() - begin);
  };
  while (SteadyClock::now() - start < std::chrono::duration<double>(seconds)) sweep();
  sending = false;
  driver.join();
  double send_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
  auto drain_until = SteadyClock::now() + std::chrono::seconds(10);
  while (delivered < sent && SteadyClock::now() < drain_until) sweep();
  double total_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
  double cpu = cpu_seconds() - cpu0;
  long rss_after = server ? rss_kib(server->pid()) : -1;

  std::vector<int64_t> l = latencies_us;
  double p50 = percentile(l, 0.50), p90 = percentile(l, 0.90), p99 = percentile(l, 0.99), p999 = percentile(l, 0.999);
  double max = l.empty() ? 0 : static_cast<double>(*std::max_element(l.begin(), l.end())) / 1000.0;
  std::printf("clients %zu (set-up: users %.1f s, connections %.1f s), offered %.0f msg/s for %.1f s\n", clients,
              setup_users_s, connect_s, rate, send_s);
  std::printf("sent %llu, acked %llu, delivered %llu (%.0f msg/s delivered over %.1f s)\n",
              static_cast<unsigned long long>(sent.load()), static_cast<unsigned long long>(acked),
              static_cast<unsigned long long>(delivered), static_cast<double>(delivered) / total_s, total_s);
  std::printf("delivery latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (sweep up to %.2f ms)\n", p50,
              p90, p99, p999, max, static_cast<double>(sweep_us_max) / 1000.0);
  std::printf("server RSS: %ld KiB connected, %ld KiB after; load generator CPU %.1f s (%.0f%% of one core)\n",
              rss_connected, rss_after, cpu, 100.0 * cpu / total_s);
  std::printf("RESULT {\"bench\":\"chat\",\"clients\":%zu,\"offered\":%.0f,\"sent\":%llu,\"delivered\":%llu,"
              "\"delivered_per_s\":%.0f,\"p50_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"p999_ms\":%.2f,\"max_ms\":%.2f,"
              "\"server_rss_kib\":%ld,\"loadgen_cpu_s\":%.1f}\n",
              clients, rate, static_cast<unsigned long long>(sent.load()), static_cast<unsigned long long>(delivered),
              static_cast<double>(delivered) / total_s, p50, p90, p99, p999, max, rss_after, cpu);
  for (auto& u : users) u.ws->close();
  if (server) {
    server->signal(SIGTERM);
    server->wait(std::chrono::seconds(20));
  }
  return delivered == sent.load() ? 0 : 2;
}
