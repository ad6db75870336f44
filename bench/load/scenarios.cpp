// The load generator's scenarios; see scenarios.h and bench/README.md.

#include "scenarios.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>

#include "histogram.h"
#include "imlog/testing/support.h"

namespace imlog::bench {

namespace http = beast::http;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

std::string single_conversation(uint64_t a, uint64_t b) {
  return "single_" + std::to_string(std::min(a, b)) + "_" + std::to_string(std::max(a, b));
}

std::string run_prefix() { return "b" + std::to_string(::getpid()) + "t" + std::to_string(now_us() % 1000000); }

// A send-message frame whose content carries the send time (and `extra`, e.g. ";n=17").
std::string message_frame(WsConn& c, const std::string& extra = {}) {
  return R"({"type":"send-message","data":{"conversation_id":")" + c.conversation + R"(","client_msg_id":"m)" +
         std::to_string(c.index) + "-" + std::to_string(c.sends++) + R"(","content":"t=)" + std::to_string(now_us()) +
         extra + "\"}}";
}

// The send time and the ";n=" number of a message's content, or -1.
int64_t content_number(std::string_view content, std::string_view key) {
  size_t at = content.find(key);
  if (at == std::string_view::npos) return -1;
  return number_field(std::string("\"x\":") + std::string(content.substr(at + key.size())), "x");
}

// CPU of server and generator over an interval, as % of one core.
struct CpuWindow {
  const Server& server;
  Clock::time_point t0 = Clock::now();
  double server0 = server.cpu_seconds(), own0 = own_cpu_seconds();
  void add_to(Report& r) const {
    double wall = seconds_since(t0);
    if (server0 >= 0) r.add("server_cpu_pct", 100 * (server.cpu_seconds() - server0) / wall);
    r.add("loadgen_cpu_pct", 100 * (own_cpu_seconds() - own0) / wall);
  }
};

void add_latency(Report& r, const LatencyHistogram& h, const std::string& prefix = "") {
  r.add(prefix + "p50_ms", h.percentile_ms(0.50), 2).add(prefix + "p90_ms", h.percentile_ms(0.90), 2);
  r.add(prefix + "p99_ms", h.percentile_ms(0.99), 2).add(prefix + "p999_ms", h.percentile_ms(0.999), 2);
  r.add(prefix + "max_ms", h.max_ms(), 2);
}

// Users and their connections, with the set-up rates reported.
struct Fleet {
  std::vector<User> users;
  std::vector<std::unique_ptr<WsConn>> conns;
  double users_per_s = 0, connects_per_s = 0;
  size_t failed = 0;
};

std::vector<User> timed_users(Workers& w, const Common& c, const Target& t, size_t n, const std::string& prefix,
                              double& per_s) {
  auto t0 = Clock::now();
  auto users = make_users(w, c, t, n, prefix);
  per_s = static_cast<double>(n) / seconds_since(t0);
  std::printf("set-up: %zu users registered and logged in (%.0f/s)\n", n, per_s);
  std::fflush(stdout);
  return users;
}

void connect_fleet(Fleet& f, Workers& w, const Target& t, size_t per_user, size_t parallel,
                   const WsConn::FrameHandler& on_frame) {
  std::vector<std::string> tokens;
  for (const auto& u : f.users) {
    for (size_t k = 0; k < per_user; ++k) tokens.push_back(u.token);
  }
  auto t0 = Clock::now();
  f.failed = connect_all(w, t, f.conns, tokens, parallel, on_frame);
  f.connects_per_s = static_cast<double>(tokens.size()) / seconds_since(t0);
  std::printf("set-up: %zu WebSockets connected (%.0f/s)\n", tokens.size() - f.failed, f.connects_per_s);
  std::fflush(stdout);
}

size_t count_closed(const Fleet& f) {
  size_t n = 0;
  for (const auto& c : f.conns) n += c->closed() ? 1 : 0;
  return n;
}

}  // namespace

// --- idle ---------------------------------------------------------------------------------------

int run_idle(const Common& c, const IdleOptions& o) {
  Server server(c);
  if (!server.wait_ready(120)) return std::fprintf(stderr, "the server did not become ready\n"), 1;
  Workers w(c.threads);
  Fleet f;
  size_t users = (o.connections + o.per_user - 1) / o.per_user;
  f.users = timed_users(w, c, server.target(), users, o.prefix.empty() ? run_prefix() : o.prefix, f.users_per_s);
  sleep_s(2);
  long rss0 = server.rss_kib();
  connect_fleet(f, w, server.target(), o.per_user, o.parallel, [](WsConn&, std::string_view) {});
  long rss1 = server.rss_kib();
  sleep_s(o.hold_s);
  long rss2 = server.rss_kib();
  size_t open = f.conns.size() - f.failed - count_closed(f);
  Report r("idle");
  r.add("connections", static_cast<double>(f.conns.size())).add("open_after_hold", static_cast<double>(open));
  r.add("users_per_s", f.users_per_s).add("connects_per_s", f.connects_per_s);
  r.add("server_rss_before_kib", static_cast<double>(rss0)).add("server_rss_connected_kib", static_cast<double>(rss1));
  r.add("server_rss_after_hold_kib", static_cast<double>(rss2));
  if (rss0 > 0 && open > 0) r.add("server_kib_per_conn", static_cast<double>(rss2 - rss0) / static_cast<double>(open), 2);
  r.add("loadgen_rss_kib", static_cast<double>(own_rss_kib())).add("loadgen_cpu_s", own_cpu_seconds(), 1);
  add_machine(r);
  r.print();
  return open == f.conns.size() ? 0 : 2;
}

// --- chat ---------------------------------------------------------------------------------------

namespace {

// Counters of one worker thread; the histogram is read only after the workers stop.
struct ChatThread {
  LatencyHistogram latency;
  std::atomic<uint64_t> sent{0}, acked{0}, delivered{0}, delivered_measured{0}, errors{0};
  // Errors by kind: the server shedding load (`overloaded`, `rate_limited`: the message was not
  // taken), and anything else.
  std::atomic<uint64_t> refused_overloaded{0}, refused_rate_limited{0}, errors_other{0};
  std::string first_error;
};

struct ChatRun {
  const ChatOptions& o;
  std::vector<ChatThread> threads;
  std::atomic<bool> sending{true};
  int64_t measure_start_us = 0, measure_end_us = INT64_MAX;

  ChatRun(const ChatOptions& opts, size_t n) : o(opts), threads(n) {}
  ChatThread& of(const WsConn& c) { return threads[c.index % threads.size()]; }

  void send(WsConn& c) {
    c.send(message_frame(c));
    of(c).sent++;
  }

  void on_frame(WsConn& c, std::string_view f) {
    ChatThread& t = of(c);
    std::string_view type = frame_type(f);
    if (type == "new-message") {
      int64_t now = now_us(), sent_at = content_number(string_field(f, "content"), "t=");
      t.delivered++;
      if (now >= measure_start_us && now <= measure_end_us) t.delivered_measured++;
      if (sent_at >= measure_start_us) t.latency.record(now - sent_at);
    } else if (type == "message-ack") {
      t.acked++;
      if (o.rate == 0 && sending) send(c);
    } else if (type == "error") {
      std::string_view code = string_field(f, "code");
      if (code == "overloaded") {
        t.refused_overloaded++;
      } else if (code == "rate_limited") {
        t.refused_rate_limited++;
      } else {
        t.errors_other++;
      }
      if (t.errors++ == 0) t.first_error = std::string(f);
      if (o.rate == 0 && sending) send(c);  // at saturation the window stays full
    }
  }

  uint64_t total(std::atomic<uint64_t> ChatThread::*field) const {
    uint64_t n = 0;
    for (const auto& t : threads) n += (t.*field).load();
    return n;
  }
};

// Sends `rate` messages/s over `mine`, in turn, until `end_us` (a 1 ms tick).
net::awaitable<void> pace(ChatRun& run, std::vector<WsConn*> mine, double rate, int64_t end_us) {
  net::steady_timer timer(co_await net::this_coro::executor);
  int64_t start = now_us();
  uint64_t sent = 0;
  for (size_t next = 0; now_us() < end_us;) {
    auto due = static_cast<uint64_t>(rate * static_cast<double>(now_us() - start) / 1e6);
    for (; sent < due; ++sent) run.send(*mine[next++ % mine.size()]);
    timer.expires_after(std::chrono::milliseconds(1));
    co_await timer.async_wait(net::use_awaitable);
  }
}

}  // namespace

int run_chat(const Common& c, const ChatOptions& o) {
  Server server(c);
  if (!server.wait_ready(120)) return std::fprintf(stderr, "the server did not become ready\n"), 1;
  Workers w(c.threads);
  Fleet f;
  size_t clients = o.clients - o.clients % 2;
  f.users = timed_users(w, c, server.target(), clients, run_prefix(), f.users_per_s);
  ChatRun run(o, w.size());
  connect_fleet(f, w, server.target(), 1, 256, [&run](WsConn& conn, std::string_view fr) { run.on_frame(conn, fr); });
  if (f.failed) return 1;
  for (size_t i = 0; i < clients; ++i) f.conns[i]->conversation = single_conversation(f.users[i].id, f.users[i ^ 1].id);

  int64_t start = now_us();
  run.measure_start_us = start + static_cast<int64_t>(o.warmup * 1e6);
  run.measure_end_us = run.measure_start_us + static_cast<int64_t>(o.seconds * 1e6);
  for (size_t k = 0; k < w.size(); ++k) {
    std::vector<WsConn*> mine;
    for (size_t i = k; i < clients; i += w.size()) mine.push_back(f.conns[i].get());
    if (o.rate > 0) {
      net::co_spawn(w.io(k), pace(run, mine, o.rate / static_cast<double>(w.size()), run.measure_end_us), net::detached);
    } else {
      net::post(w.io(k), [&run, mine, &o] {
        for (WsConn* conn : mine) {
          for (size_t j = 0; j < o.window; ++j) run.send(*conn);
        }
      });
    }
  }
  sleep_s(o.warmup);
  CpuWindow cpu{server};
  uint64_t acked0 = run.total(&ChatThread::acked);
  sleep_s(o.seconds);
  uint64_t acked1 = run.total(&ChatThread::acked);
  Report r("chat");
  cpu.add_to(r);
  run.sending = false;
  auto drain = Clock::now();
  auto taken = [&] {  // sent and not refused: what must be delivered
    return run.total(&ChatThread::sent) - run.total(&ChatThread::refused_overloaded) -
           run.total(&ChatThread::refused_rate_limited);
  };
  while (run.total(&ChatThread::delivered) < taken() && seconds_since(drain) < 15) sleep_s(0.05);
  long rss = server.rss_kib();
  size_t closed = count_closed(f);
  w.stop();

  LatencyHistogram latency;
  std::string first_error;
  for (auto& t : run.threads) {
    latency.merge(t.latency);
    if (first_error.empty()) first_error = t.first_error;
  }
  uint64_t sent = run.total(&ChatThread::sent), delivered = run.total(&ChatThread::delivered);
  r.add("clients", static_cast<double>(clients)).add("offered_per_s", o.rate).add("window", o.rate > 0 ? 0.0 : static_cast<double>(o.window));
  r.add("seconds", o.seconds, 1).add("sent", static_cast<double>(sent)).add("acked", static_cast<double>(run.total(&ChatThread::acked)));
  r.add("delivered", static_cast<double>(delivered));
  r.add("acked_per_s", static_cast<double>(acked1 - acked0) / o.seconds);
  r.add("delivered_per_s", static_cast<double>(run.total(&ChatThread::delivered_measured)) / o.seconds);
  add_latency(r, latency);
  r.add("latency_samples", static_cast<double>(latency.count()));
  r.add("errors", static_cast<double>(run.total(&ChatThread::errors))).add("closed", static_cast<double>(closed));
  r.add("refused_overloaded", static_cast<double>(run.total(&ChatThread::refused_overloaded)));
  r.add("refused_rate_limited", static_cast<double>(run.total(&ChatThread::refused_rate_limited)));
  r.add("errors_other", static_cast<double>(run.total(&ChatThread::errors_other)));
  r.add("server_rss_kib", static_cast<double>(rss)).add("users_per_s", f.users_per_s).add("connects_per_s", f.connects_per_s);
  add_machine(r);
  if (!first_error.empty()) std::printf("first error frame: %s\n", first_error.c_str());
  r.print();
  return delivered == taken() ? 0 : 2;
}

// --- group --------------------------------------------------------------------------------------

namespace {

// One worker thread's receipts: per delivery, and per post (count and latest receipt).
struct GroupThread {
  LatencyHistogram per_delivery;
  std::vector<uint32_t> count;
  std::vector<int64_t> slowest;
  std::atomic<uint64_t> delivered{0}, delivered_measured{0}, created{0}, errors{0};
  std::string first_error;
};

struct GroupRun {
  std::vector<GroupThread> threads;
  int64_t measure_start_us = 0, measure_end_us = INT64_MAX;
  uint64_t first_measured = 0;  // posts before it are warm-up

  GroupRun(size_t n, size_t posts) : threads(n) {
    for (auto& t : threads) {
      t.count.assign(posts, 0);
      t.slowest.assign(posts, 0);
    }
  }

  void on_frame(WsConn& c, std::string_view f) {
    GroupThread& t = threads[c.index % threads.size()];
    std::string_view type = frame_type(f);
    if (type == "new-message") {
      int64_t now = now_us();
      std::string_view content = string_field(f, "content");
      int64_t sent_at = content_number(content, "t="), n = content_number(content, ";n=");
      t.delivered++;
      if (now >= measure_start_us && now <= measure_end_us) t.delivered_measured++;
      if (n < 0 || static_cast<size_t>(n) >= t.count.size()) return;
      if (static_cast<uint64_t>(n) >= first_measured) t.per_delivery.record(now - sent_at);
      t.count[static_cast<size_t>(n)]++;
      t.slowest[static_cast<size_t>(n)] = std::max(t.slowest[static_cast<size_t>(n)], now - sent_at);
    } else if (type == "group-created") {
      t.created++;
    } else if (type == "error") {
      if (t.errors++ == 0) t.first_error = std::string(f);
    }
  }
  uint64_t total(std::atomic<uint64_t> GroupThread::*field) const {
    uint64_t n = 0;
    for (const auto& t : threads) n += (t.*field).load();
    return n;
  }
};

// Post k is sent by member k % members, on that member's thread, until `posts` are sent.
net::awaitable<void> pace_posts(Workers& w, std::vector<std::unique_ptr<WsConn>>& conns, double rate, uint64_t posts) {
  net::steady_timer timer(co_await net::this_coro::executor);
  int64_t start = now_us();
  for (uint64_t k = 0; k < posts;) {
    auto due = std::min(posts, static_cast<uint64_t>(rate * static_cast<double>(now_us() - start) / 1e6));
    for (; k < due; ++k) {
      WsConn* conn = conns[k % conns.size()].get();
      net::post(conn->io(), [conn, k] { conn->send(message_frame(*conn, ";n=" + std::to_string(k))); });
    }
    timer.expires_after(std::chrono::milliseconds(1));
    co_await timer.async_wait(net::use_awaitable);
  }
}

}  // namespace

int run_group(const Common& c, const GroupOptions& o) {
  Server server(c);
  if (!server.wait_ready(120)) return std::fprintf(stderr, "the server did not become ready\n"), 1;
  Workers w(c.threads);
  Fleet f;
  f.users = timed_users(w, c, server.target(), o.members, run_prefix(), f.users_per_s);
  auto warm_posts = static_cast<uint64_t>(o.posts_per_sec * o.warmup);
  auto posts = warm_posts + static_cast<uint64_t>(o.posts_per_sec * o.seconds);
  GroupRun run(w.size(), posts);
  run.first_measured = warm_posts;
  connect_fleet(f, w, server.target(), 1, 256, [&run](WsConn& conn, std::string_view fr) { run.on_frame(conn, fr); });
  if (f.failed) return 1;
  std::vector<uint64_t> members;
  for (size_t i = 1; i < f.users.size(); ++i) members.push_back(f.users[i].id);
  auto t0 = Clock::now();
  std::string conversation = create_group(w, server.target(), f.users[0], members);
  while (run.total(&GroupThread::created) < o.members && seconds_since(t0) < 60) sleep_s(0.01);
  std::printf("set-up: group %s created, %llu members told in %.2f s\n", conversation.c_str(),
              static_cast<unsigned long long>(run.total(&GroupThread::created)), seconds_since(t0));
  for (auto& conn : f.conns) conn->conversation = conversation;

  int64_t start = now_us();
  run.measure_start_us = start + static_cast<int64_t>(o.warmup * 1e6);
  run.measure_end_us = run.measure_start_us + static_cast<int64_t>(o.seconds * 1e6);
  net::co_spawn(w.io(0), pace_posts(w, f.conns, o.posts_per_sec, posts), net::detached);
  sleep_s(o.warmup);
  CpuWindow cpu{server};
  sleep_s(o.seconds);
  Report r("group");
  cpu.add_to(r);
  uint64_t expected = posts * (o.members - 1);
  auto drain = Clock::now();
  while (run.total(&GroupThread::delivered) < expected && seconds_since(drain) < 15) sleep_s(0.05);
  long rss = server.rss_kib();
  size_t closed = count_closed(f);
  w.stop();

  LatencyHistogram per_delivery, last_member;
  uint64_t incomplete = 0;
  std::string first_error;
  for (auto& t : run.threads) {
    per_delivery.merge(t.per_delivery);
    if (first_error.empty()) first_error = t.first_error;
  }
  for (uint64_t k = warm_posts; k < posts; ++k) {
    uint64_t n = 0;
    int64_t slowest = 0;
    for (auto& t : run.threads) n += t.count[k], slowest = std::max(slowest, t.slowest[k]);
    if (n == o.members - 1) last_member.record(slowest); else incomplete++;
  }
  uint64_t delivered = run.total(&GroupThread::delivered);
  r.add("members", static_cast<double>(o.members)).add("posts_per_s", o.posts_per_sec, 1).add("seconds", o.seconds, 1);
  r.add("posts", static_cast<double>(posts)).add("deliveries", static_cast<double>(delivered));
  r.add("expected_deliveries", static_cast<double>(expected));
  r.add("deliveries_per_s", static_cast<double>(run.total(&GroupThread::delivered_measured)) / o.seconds);
  add_latency(r, per_delivery);
  add_latency(r, last_member, "last_member_");
  r.add("posts_incomplete", static_cast<double>(incomplete));
  r.add("errors", static_cast<double>(run.total(&GroupThread::errors))).add("closed", static_cast<double>(closed));
  r.add("server_rss_kib", static_cast<double>(rss)).add("users_per_s", f.users_per_s).add("connects_per_s", f.connects_per_s);
  add_machine(r);
  if (!first_error.empty()) std::printf("first error frame: %s\n", first_error.c_str());
  r.print();
  return delivered == expected ? 0 : 2;
}

// --- rest ---------------------------------------------------------------------------------------

namespace {

enum RestKind { kConversations, kLatestPage, kOlderPage, kGroupPage, kKinds };
const char* const kKindNames[kKinds] = {"conversations", "latest_page", "older_page", "group_page"};

struct RestThread {
  LatencyHistogram all, kind[kKinds];
  uint64_t requests = 0, errors = 0;
  std::string first_error;
};

std::string history_target(const std::string& conversation, const std::string& query) {
  return "/api/v1/conversations/" + conversation + "/messages?" + query;
}

// Fills each one-to-one conversation with `history` messages and the group with as many, by REST.
void fill_history(Workers& w, const Common& c, const Target& t, const std::vector<User>& users,
                  const std::string& group, size_t history) {
  size_t pairs = users.size() / 2, total = pairs * history + history;
  std::atomic<size_t> failures{0};
  auto t0 = Clock::now();
  run_parallel(w, total, static_cast<size_t>(c.http_parallel), [&](size_t i, HttpConn& http) -> net::awaitable<void> {
    bool in_group = i >= pairs * history;
    size_t pair = i % pairs, n = i / pairs;
    const User& from = in_group ? users[i % users.size()] : users[2 * pair + n % 2];
    std::string conv = in_group ? group : single_conversation(users[2 * pair].id, users[2 * pair + 1].id);
    auto r = co_await http.request(http::verb::post, "/api/v1/conversations/" + conv + "/messages",
                                   R"({"content":"history message )" + std::to_string(n) + R"( of the bench"})", from.token);
    if (r.status != 201 && failures++ == 0) std::fprintf(stderr, "posting history: %d %s%s\n", r.status, r.body.c_str(), r.error.c_str());
  }, t);
  std::printf("set-up: %zu history messages posted over REST (%.0f/s), %zu failed\n", total,
              static_cast<double>(total) / seconds_since(t0), failures.load());
}

}  // namespace

int run_rest(const Common& c, const RestOptions& o) {
  Server server(c);
  if (!server.wait_ready(120)) return std::fprintf(stderr, "the server did not become ready\n"), 1;
  Workers w(c.threads);
  double users_per_s = 0;
  size_t clients = std::max<size_t>(2, o.clients - o.clients % 2);
  auto users = timed_users(w, c, server.target(), clients, run_prefix(), users_per_s);
  std::vector<uint64_t> members;
  for (size_t i = 1; i < users.size(); ++i) members.push_back(users[i].id);
  std::string group = create_group(w, server.target(), users[0], members);
  fill_history(w, c, server.target(), users, group, o.history);
  sleep_s(2);  // the read models follow the log

  std::vector<RestThread> threads(w.size());
  std::atomic<size_t> running{clients};
  std::promise<void> done;
  int64_t end = now_us() + static_cast<int64_t>(o.seconds * 1e6);
  CpuWindow cpu{server};
  for (size_t i = 0; i < clients; ++i) {
    net::co_spawn(w.io(i), [&, i]() -> net::awaitable<void> {
      RestThread& t = threads[i % threads.size()];
      HttpConn http(w.io(i), server.target(), i);
      std::string pair = single_conversation(users[i].id, users[i ^ 1].id);
      uint64_t rng = i * 2654435761u + 1;
      for (uint64_t n = i; now_us() < end; ++n) {
        auto kind = static_cast<RestKind>(n % kKinds);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        std::string target = kind == kConversations ? "/api/v1/conversations"
                             : kind == kLatestPage  ? history_target(pair, "limit=50")
                             : kind == kOlderPage   ? history_target(pair, "limit=50&before_seq=" + std::to_string(51 + (rng >> 33) % o.history))
                                                    : history_target(group, "limit=50");
        int64_t t0 = now_us();
        auto r = co_await http.request(http::verb::get, target, {}, users[i].token);
        int64_t us = now_us() - t0;
        t.requests++;
        t.all.record(us);
        t.kind[kind].record(us);
        if (r.status != 200 && t.errors++ == 0) t.first_error = target + ": " + std::to_string(r.status) + " " + r.body + r.error;
      }
      if (--running == 0) done.set_value();
    }, net::detached);
  }
  done.get_future().wait();
  Report r("rest");
  cpu.add_to(r);
  w.stop();
  RestThread sum;
  for (auto& t : threads) {
    sum.all.merge(t.all);
    for (int k = 0; k < kKinds; ++k) sum.kind[k].merge(t.kind[k]);
    sum.requests += t.requests;
    sum.errors += t.errors;
    if (sum.first_error.empty()) sum.first_error = t.first_error;
  }
  r.add("clients", static_cast<double>(clients)).add("history", static_cast<double>(o.history)).add("seconds", o.seconds, 1);
  r.add("requests", static_cast<double>(sum.requests)).add("requests_per_s", static_cast<double>(sum.requests) / o.seconds);
  r.add("errors", static_cast<double>(sum.errors));
  add_latency(r, sum.all);
  for (int k = 0; k < kKinds; ++k) {
    r.add(std::string(kKindNames[k]) + "_p50_ms", sum.kind[k].percentile_ms(0.5), 2);
    r.add(std::string(kKindNames[k]) + "_p99_ms", sum.kind[k].percentile_ms(0.99), 2);
  }
  r.add("server_rss_kib", static_cast<double>(server.rss_kib()));
  add_machine(r);
  if (!sum.first_error.empty()) std::printf("first error: %s\n", sum.first_error.c_str());
  r.print();
  return sum.errors == 0 ? 0 : 2;
}

// --- coldstart ----------------------------------------------------------------------------------

namespace {

// Time from spawning the server to /readyz, to the first message delivered between two new users
// (register, login, connect, send, receive), and from SIGTERM to its exit; with `kill`, the start
// ends with SIGKILL instead (stop_s -1), so the next one recovers from a crash.
void one_start(const Common& c, const std::string& label, size_t messages, bool kill) {
  auto t0 = Clock::now();
  Server server(c);
  if (!server.wait_ready(600)) {
    std::fprintf(stderr, "the server did not become ready in 600 s\n");
    return;
  }
  double ready_s = seconds_since(t0);
  Workers w(1);
  double users_per_s = 0;
  auto users = make_users(w, c, server.target(), 2, run_prefix());
  (void)users_per_s;
  std::atomic<int64_t> received{0};
  std::vector<std::unique_ptr<WsConn>> conns;
  connect_all(w, server.target(), conns, {users[0].token, users[1].token}, 2,
              [&received](WsConn&, std::string_view f) { if (frame_type(f) == "new-message") received = now_us(); });
  conns[0]->conversation = single_conversation(users[0].id, users[1].id);
  net::post(w.io(0), [conn = conns[0].get()] { conn->send(message_frame(*conn)); });
  while (received == 0 && seconds_since(t0) < 600) sleep_s(0.001);
  double first_s = seconds_since(t0);
  long rss = server.rss_kib();
  w.stop();
  for (auto& conn : conns) conn->close();  // the server's drain then has no connection to wait for
  double stop_s = -1;
  if (kill) {
    server.kill_now();
  } else {
    stop_s = server.stop();  // SIGTERM: the final checkpoints and drains
  }
  Report r("coldstart");
  r.add("start", label).add("log_messages", static_cast<double>(messages));
  r.add("ready_s", ready_s, 3).add("first_message_s", first_s, 3).add("stop_s", stop_s, 3);
  r.add("server_rss_kib", static_cast<double>(rss));
  add_machine(r);
  r.print();
}

}  // namespace

int run_coldstart(const Common& c, const ColdstartOptions& o) {
  Common cc = c;
  std::string dir = o.reuse.empty() ? c.data_dir : o.reuse;  // --data-dir: generated there and kept
  bool remove = false;
  if (dir.empty()) {
    char tmpl[] = "/tmp/imlog-bench-cold-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    dir = tmpl;
    remove = true;
  }
  if (o.reuse.empty()) {
    std::filesystem::create_directories(dir);
    std::string gen = (imlog::testing::binary_dir() / "imlog-bench-replay").string() + " --dir " + dir +
                      "/data --generate-only --messages " + std::to_string(o.messages) + " > " + dir + "/generate.log";
    std::printf("generating the log: %s\n", gen.c_str());
    std::fflush(stdout);
    if (std::system(gen.c_str()) != 0) return std::fprintf(stderr, "generating the log failed (see %s/generate.log)\n", dir.c_str()), 1;
  }
  cc.data_dir = dir;
  one_start(cc, o.reuse.empty() ? "first (no engine state, no read model)" : "given data dir", o.messages, o.kill);
  for (int i = 0; i < o.restarts; ++i) one_start(cc, o.kill ? "restart after SIGKILL" : "restart", o.messages, o.kill);
  if (remove) std::filesystem::remove_all(dir);
  return 0;
}

// --- replay -------------------------------------------------------------------------------------

int run_replay(const std::vector<std::string>& args) {
  std::string bin = (imlog::testing::binary_dir() / "imlog-bench-replay").string();
  std::vector<char*> argv{bin.data()};
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  ::execv(bin.c_str(), argv.data());
  std::perror("imlog-bench-replay");
  return 1;
}

}  // namespace imlog::bench
