// The distributed mode (docs/architecture.md, "Two ways to run"; issue 7): the built `imlog` binary
// run as separate processes, one per role — two gateways, two engines, a projector, two routers and
// a tasks worker — over a Kafka-protocol cluster (librdkafka's mock, 3 brokers, a private one per
// deployment so topics and broker faults are ours alone), MariaDB and Redis (the servers
// scripts/test starts; a fresh database and key prefix per deployment). Driven over real sockets as
// a client drives it. ctest runs each test as its own process, so each starts its own deployment
// (about 10 s); run by hand, the Distributed tests share one, in order.
//
// Each test is one bullet of the issue: chat across gateways and devices; a 600-member group
// through the tasks path; an engine killed with SIGKILL under load; a router killed with SIGKILL
// under load, its partitions taken over by the other (issue 15); a broker down and back; the
// MySQL and Redis read models equal to the RocksDB one (replay --verify of each against the log);
// and /readyz following Kafka, MySQL and Redis going away and coming back.
//
// Every wait has a deadline; nothing sleeps.

#include <signal.h>
#include <sys/wait.h>

#include <cppconn/connection.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "imlog/engine/kafka_log.h"
#include "imlog/engine/partitioner.h"
#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"
#include "imlog/testing/client.h"
#include "imlog/testing/http_receiver.h"
#include "imlog/testing/kafka_mock.h"
#include "imlog/testing/servers.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kFrameWait = 30s;
constexpr int kPartitions = 4;
constexpr std::string_view kSecret = "distributed-test-jwt-secret-0123456789";

std::string quote(std::string_view s) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return std::string(buf.GetString(), buf.GetSize());
}

std::string unique_name(std::string_view base) {
  static std::atomic<int> n{0};
  return fmt::format("{}_{}_{}", base, ::getpid() % 100000, n++);
}

// ---- the cluster -------------------------------------------------------------------------------

// One deployment: a private mock Kafka cluster, one YAML config for every process, and the
// processes by name. Gateways get a free port and their own gateway id; every process its own
// data_dir (engine state store, RocksDB model). Destroying it kills what still runs.
// How a deployment differs from the chat tests' one.
struct ClusterOptions {
  std::string log_level = "warn";
  // Each process's log (its stderr) in its own file, log(name), instead of the test's output.
  bool log_files = false;
  // YAML appended to the config: sections the base config does not have (router:, tasks:).
  std::string extra_yaml;
};

class Cluster {
 public:
  Cluster(const std::string& tag, std::optional<RedisConfig> redis = std::nullopt,
          std::optional<MysqlConfig> mysql = std::nullopt, ClusterOptions options = {})
      : mock_(KafkaMock::start_private()), dir_("imlog-dist"), mysql_(mysql ? *mysql : fresh_mysql(tag)),
        redis_(redis ? *redis : fresh_redis(tag)), options_(std::move(options)) {
    config_ = dir_.str() + "/imlog.yaml";
    std::ofstream(config_) << config_text();
  }
  ~Cluster() {
    for (auto& [name, p] : procs_) {
      if (p.proc) p.proc->kill();
    }
  }

  // `imlog init`: the topics (through the mock's control socket) and the MySQL migrations. Run
  // twice: it is idempotent.
  void init() {
    for (int round = 0; round < 2; ++round) {
      auto p = Subprocess::start({imlog(), "init", "--config", config_, "--gateway-id", "gw-a", "--gateway-id", "gw-b"});
      std::string out;
      while (auto line = p.read_line(60s)) out += *line + "\n";
      auto st = p.wait(60s);
      ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "imlog init failed:\n" << out;
      EXPECT_NE(out.find("topic ready: im.events (4 partitions)"), std::string::npos) << out;
      EXPECT_NE(out.find("topic ready: im.deliver.gw-b (1 partitions)"), std::string::npos) << out;
      EXPECT_NE(out.find("MySQL database `" + mysql_.database + "`"), std::string::npos) << out;
    }
  }

  // Starts `imlog serve --roles <roles>` as process `name`; a gateway (roles containing "gateway")
  // is waited for until /readyz answers 200. Every process gets a port of its own (kept across
  // restarts): a gateway's serves the API and the ops endpoints, any other's is its --ops-listen
  // (the per-role defaults would collide between tests running side by side).
  void start(const std::string& name, const std::string& roles) {
    auto& p = procs_[name];
    p.roles = roles;
    bool gateway = roles.find("gateway") != std::string::npos;
    if (p.port == 0) p.port = free_port();
    std::vector<std::string> argv{imlog(), "serve", "--config", config_, "--roles", roles, "--data-dir",
                                  dir_.str() + "/" + name};
    if (gateway) {
      argv.insert(argv.end(), {"--gateway-id", name, "--listen", fmt::format("127.0.0.1:{}", p.port)});
    } else {
      argv.insert(argv.end(), {"--ops-listen", fmt::format("127.0.0.1:{}", p.port)});
    }
    if (options_.log_files) {
      // The shell execs imlog (same pid) with stderr, where it logs, appended to the file.
      argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>>'" + log_path(name) + "'"});
    }
    p.proc.emplace(Subprocess::start(argv));
    if (gateway) {
      bool ready = wait_until([&] { return http(name).get("/readyz").status == 200; }, 90s);
      ASSERT_TRUE(ready) << name << " did not become ready: " << http(name).get("/readyz").body;
    }
  }

  // The whole deployment of the issue's tests.
  void start_all() {
    ASSERT_NO_FATAL_FAILURE(init());
    for (auto [name, roles] : {std::pair{"engine-1", "engine"}, {"engine-2", "engine"}, {"projector", "projector"},
                               {"router-1", "router"}, {"router-2", "router"}, {"tasks", "tasks"}}) {
      ASSERT_NO_FATAL_FAILURE(start(name, roles));
    }
    ASSERT_NO_FATAL_FAILURE(start("gw-a", "gateway"));
    ASSERT_NO_FATAL_FAILURE(start("gw-b", "gateway"));
    for (auto& [name, p] : procs_) {
      auto st = p.proc->wait(0ms);
      ASSERT_FALSE(st) << name << " (roles " << p.roles << ") exited at start with status " << *st;
    }
  }

  void kill9(const std::string& name) {
    auto& p = procs_.at(name);
    ASSERT_TRUE(p.proc);
    ::kill(p.proc->pid(), SIGKILL);
    p.proc->kill();  // reaps
    p.proc.reset();
  }

  // SIGTERM; the process must drain and exit 0.
  void terminate(const std::string& name) {
    auto& p = procs_.at(name);
    ASSERT_TRUE(p.proc);
    p.proc->signal(SIGTERM);
    auto st = p.proc->wait(60s);
    p.proc.reset();
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << name << " did not stop cleanly on SIGTERM";
  }

  // The process's port: a gateway's API and ops endpoints, any other's ops listener.
  [[nodiscard]] HttpClient http(const std::string& name) const { return HttpClient("127.0.0.1", procs_.at(name).port); }
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, p] : procs_) out.push_back(name);
    return out;
  }
  [[nodiscard]] int port(const std::string& name) const { return procs_.at(name).port; }
  [[nodiscard]] pid_t pid(const std::string& name) const { return procs_.at(name).proc->pid(); }
  [[nodiscard]] KafkaMock& mock() { return *mock_; }
  [[nodiscard]] const std::string& config() const { return config_; }
  [[nodiscard]] std::string data_dir(const std::string& name) const { return dir_.str() + "/" + name; }
  // With ClusterOptions::log_files: everything process `name` logged so far.
  [[nodiscard]] std::string log(const std::string& name) const {
    std::ifstream in(log_path(name));
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  [[nodiscard]] static std::string imlog() { return (binary_dir() / "imlog").string(); }

 private:
  std::string log_path(const std::string& name) const { return dir_.str() + "/" + name + ".log"; }

  std::string config_text() const {
    std::string brokers;
    for (const auto& b : mock_->log_config().brokers) brokers += (brokers.empty() ? "" : ", ") + quote(b);
    return fmt::format(R"(
log: {{level: {log_level}}}
event_log:
  backend: kafka
  partitions: {partitions}
  kafka:
    brokers: [{brokers}]
    session_timeout: 6s
    mock_control: {control}
engine:
  checkpoint_interval: 200ms
mysql:
  host: {mh}
  port: {mp}
  user: {mu}
  password: {mpw}
  database: {mdb}
redis:
  host: {rh}
  port: {rp}
  key_prefix: {rprefix}
sessions:
  key_prefix: {sprefix}
  ttl: {ttl}s
gateway:
  jwt_secret: {secret}
  password_ops_limit: 1
  password_mem_limit: 8KiB
  ws_rate: 1000
  ws_burst: 2000
  heartbeat_timeout: {heartbeat}s
  read_model_wait: 20s
  command_timeout: 20s
  # A router taking partitions over pushes again what was pushed since their last commit: at the
  # load of the router kill test, a burst beyond the default write queue (1024 frames), which
  # would close the sessions it counts pushes on (they would reconnect and sync).
  max_queued_frames: 16384
  max_queued_bytes: 64MiB
{extra}
)",
                       fmt::arg("log_level", options_.log_level), fmt::arg("extra", options_.extra_yaml),
                       fmt::arg("partitions", kPartitions), fmt::arg("brokers", brokers),
                       fmt::arg("control", quote(mock_control())), fmt::arg("mh", quote(mysql_.host)),
                       fmt::arg("mp", mysql_.port), fmt::arg("mu", quote(mysql_.user)),
                       fmt::arg("mpw", quote(mysql_.password)), fmt::arg("mdb", quote(mysql_.database)),
                       fmt::arg("rh", quote(redis_.host)), fmt::arg("rp", redis_.port),
                       fmt::arg("rprefix", quote(redis_.key_prefix)), fmt::arg("sprefix", quote(redis_.key_prefix + "s:")),
                       fmt::arg("secret", quote(kSecret)),
                       // An instrumented build's clients answer pings late too: a heartbeat missed
                       // for want of CPU would close the sessions the tests count pushes on.
                       fmt::arg("heartbeat", 10 * sanitizer_slowdown()), fmt::arg("ttl", 30 * sanitizer_slowdown()));
  }

  // host:port of the mock's control socket: `imlog init` and the gateways create topics through it.
  std::string mock_control() const { return mock_->control_address(); }

  struct Proc {
    std::string roles;
    int port = 0;
    std::optional<Subprocess> proc;
  };
  std::unique_ptr<KafkaMock> mock_;
  TempDir dir_;
  MysqlConfig mysql_;
  RedisConfig redis_;
  ClusterOptions options_;
  std::string config_;
  std::map<std::string, Proc> procs_;
};

// ---- users and messages ------------------------------------------------------------------------

struct User {
  std::string name;
  uint64_t id = 0;
  std::string token;
};

// Registers a fresh user through `http` and, if `login`, logs in (the gateway's read model is the
// MySQL one, which the projector process fills: login waits for it, up to read_model_wait).
User make_user(const HttpClient& http, std::string_view base, bool login = true) {
  User u;
  u.name = unique_name(base);
  auto reg = http.post("/api/v1/auth/register", fmt::format(R"({{"username":{},"password":"correct horse"}})", quote(u.name)));
  EXPECT_EQ(reg.status, 201) << reg.body << reg.error;
  if (reg.status != 201) return u;
  u.id = reg.json()["user_id"].GetUint64();
  if (!login) return u;
  auto r = http.post("/api/v1/auth/login", fmt::format(R"({{"username":{},"password":"correct horse"}})", quote(u.name)));
  EXPECT_EQ(r.status, 200) << r.body << r.error;
  if (r.status == 200) u.token = r.json()["access_token"].GetString();
  return u;
}

std::unique_ptr<WsClient> connect_ws(const Cluster& c, const std::string& gateway, const User& u) {
  std::string error;
  auto ws = WsClient::connect("127.0.0.1", c.port(gateway), "/ws?token=" + u.token, {}, nullptr, &error);
  EXPECT_TRUE(ws) << gateway << ": " << error;
  return ws;
}

void send_message(WsClient& ws, const std::string& conversation, const std::string& client_msg_id,
                  const std::string& content) {
  ws.send("send-message", fmt::format(R"({{"conversation_id":{},"client_msg_id":{},"content":{}}})", quote(conversation),
                                      quote(client_msg_id), quote(content)));
}

std::optional<Frame> ack_of(WsClient& ws, const std::string& client_msg_id, std::chrono::milliseconds wait = kFrameWait) {
  return ws.wait_for("message-ack", wait, [&](const Frame& f) { return f.str("client_msg_id") == client_msg_id; });
}

std::optional<Frame> new_message(WsClient& ws, const std::string& client_msg_id) {
  return ws.wait_for("new-message", kFrameWait, [&](const Frame& f) { return f.str("client_msg_id") == client_msg_id; });
}

// Sends until acknowledged and returns the ack, or gives up after `deadline`. A time-out while
// partitions move is retried with the same client_msg_id (a retry of a command that took effect
// gets the original ack). A refusal — an engine that does not know a just-registered user yet
// (its directory is read from the log) — is worth another try too, but under a new id
// (`<client_msg_id>~<n>`): the engine remembers a refusal, and a retry with the same id gets it
// again (docs/api/websocket.md). The ack's client_msg_id says which id took.
std::optional<Frame> send_acked(WsClient& ws, const std::string& conversation, const std::string& client_msg_id,
                                std::chrono::milliseconds deadline = 120s) {
  auto until = std::chrono::steady_clock::now() + deadline;
  std::string id = client_msg_id;
  int refusals = 0;
  while (std::chrono::steady_clock::now() < until) {
    send_message(ws, conversation, id, "content of " + client_msg_id);
    if (auto ack = ack_of(ws, id, 5s)) return ack;
    for (auto& e : ws.take_all("error")) {
      auto code = e.str("code");
      bool retry_same = code == "timeout" || code == "unavailable" || code == "overloaded" || code == "rate_limited";
      if (e.str("client_msg_id") == id && !retry_same) id = client_msg_id + "~" + std::to_string(++refusals);
    }
  }
  return std::nullopt;
}

struct HistoryItem {
  uint64_t seq = 0;
  std::string message_id;
  std::string client_msg_id;
};

// The whole history of a conversation over REST (pages of 200 back from the latest); empty on error.
std::vector<HistoryItem> full_history(const HttpClient& http, const User& u, const std::string& conversation) {
  std::vector<HistoryItem> reversed;
  uint64_t before = 0;
  for (int guard = 0; guard < 1000; ++guard) {
    std::string target = fmt::format("/api/v1/conversations/{}/messages?limit=200", conversation);
    if (before > 0) target += fmt::format("&before_seq={}", before);
    auto r = http.get(target, u.token);
    if (r.status != 200) return {};
    auto j = r.json();
    std::vector<HistoryItem> page;
    for (const auto& m : j["messages"].GetArray()) {
      page.push_back(HistoryItem{m["seq_id"].GetUint64(), m["message_id"].GetString(), m["client_msg_id"].GetString()});
    }
    for (auto it = page.rbegin(); it != page.rend(); ++it) reversed.push_back(*it);
    if (!j["has_more"].GetBool() || page.empty()) break;
    before = page.front().seq;
  }
  return {reversed.rbegin(), reversed.rend()};
}

// ---- metrics -----------------------------------------------------------------------------------

// The value of `series` (a metric name with its labels, as exposed: `name{a="b"}`) in a scrape;
// -1 when absent.
double metric(const std::string& scrape, const std::string& series) {
  std::string at = "\n" + series + " ";
  auto i = scrape.find(at);
  if (i == std::string::npos) return -1;
  return std::stod(scrape.substr(i + at.size(), scrape.find('\n', i + 1) - i - at.size()));
}

// The process's /metrics (empty if it did not answer 200).
std::string scrape(const Cluster& c, const std::string& name) {
  auto r = c.http(name).get("/metrics");
  return r.status == 200 ? r.body : std::string();
}

// The partitions of im.events router `name` owns now (imlog_router_partitions_owned); -1 when it
// does not answer.
int owned_by(const Cluster& c, const std::string& name) {
  return static_cast<int>(metric(scrape(c, name), "imlog_router_partitions_owned"));
}

// Waits until the routers `running` share every partition of im.events, each owning some: their
// group's rebalance is over.
bool routers_share_partitions(const Cluster& c, const std::vector<std::string>& running,
                              std::chrono::seconds deadline = 120s) {
  return wait_until(
      [&] {
        int total = 0;
        for (const auto& name : running) {
          int n = owned_by(c, name);
          if (n <= 0) return false;
          total += n;
        }
        return total == kPartitions;
      },
      deadline);
}

// ---- load: senders that keep sending while the cluster is broken -----------------------------

// One conversation under load: a sender's WebSocket and what was sent and acknowledged.
struct Lane {
  User sender, peer;
  std::vector<User> recipients;  // who is shown its messages besides the sender: the peer, a group's members
  std::string conversation;
  std::unique_ptr<WsClient> ws;
  int sent = 0;
  std::set<std::string> unacked;
  std::map<std::string, std::pair<std::string, uint64_t>> acked;  // client_msg_id → (message_id, seq)
};

// Drives every lane from one thread: up to `window` unacknowledged messages per lane; acks are
// collected as they come; timed-out commands stay unacked (retried at the end).
class Load {
 public:
  explicit Load(std::vector<Lane>& lanes) : lanes_(lanes) {
    thread_ = std::thread([this] { run(); });
  }
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] uint64_t acks() const { return acks_.load(); }

 private:
  void run() {
    constexpr size_t kWindow = 4;
    while (!stop_) {
      for (auto& l : lanes_) {
        if (l.unacked.size() < kWindow) {
          std::string id = fmt::format("{}-{}", l.conversation, ++l.sent);
          l.unacked.insert(id);
          send_message(*l.ws, l.conversation, id, "load " + id);
        }
      }
      for (auto& l : lanes_) collect(l);
      // Paces the loop on the first lane's acks instead of spinning.
      (void)lanes_.front().ws->wait_for("message-ack", 20ms, [](const Frame&) { return false; });
    }
    for (auto& l : lanes_) collect(l);
  }
  void collect(Lane& l) {
    for (auto& f : l.ws->take_all("message-ack")) {
      auto id = f.str("client_msg_id");
      if (l.unacked.erase(id) > 0) ++acks_;
      l.acked[id] = {f.str("message_id"), f.u64("seq_id")};
    }
    for (auto& f : l.ws->take_all("error")) {
      // A refused or timed-out command stays unacked; it is resent with the same id at the end.
      (void)f;
    }
  }

  std::vector<Lane>& lanes_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> acks_{0};
  std::thread thread_;
};

// Resends every unacked message with its own client_msg_id until acked, then checks each lane's
// history: every acked message present exactly once with its ids, and seqs dense from 1.
void settle_and_check(const Cluster& c, std::vector<Lane>& lanes) {
  for (auto& l : lanes) {
    for (const auto& id : std::set<std::string>(l.unacked)) {
      auto ack = send_acked(*l.ws, l.conversation, id);
      ASSERT_TRUE(ack) << "never acknowledged: " << id
                       << (l.ws->closed() ? " (the server closed its connection: " + l.ws->close_error() + ")" : "");
      l.acked[ack->str("client_msg_id")] = {ack->str("message_id"), ack->u64("seq_id")};
      l.unacked.erase(id);
    }
  }
  for (auto& l : lanes) {
    uint64_t last = 0;
    for (const auto& [id, a] : l.acked) last = std::max(last, a.second);
    std::vector<HistoryItem> h;
    ASSERT_TRUE(wait_until(
        [&] {
          h = full_history(c.http("gw-b"), l.sender, l.conversation);
          return !h.empty() && h.back().seq >= last;
        },
        120s))
        << l.conversation << ": the read model never showed seq " << last;
    std::map<std::string, int> seen;
    for (size_t i = 0; i < h.size(); ++i) {
      EXPECT_EQ(h[i].seq, i + 1) << l.conversation << ": the stream is not dense";
      ++seen[h[i].client_msg_id];
    }
    for (const auto& [id, a] : l.acked) {
      EXPECT_EQ(seen[id], 1) << l.conversation << ": acked message " << id << " is present " << seen[id] << " times";
      ASSERT_GE(a.second, 1u);
      ASSERT_LE(a.second, h.size()) << id;
      EXPECT_EQ(h[a.second - 1].client_msg_id, id) << "acked seq " << a.second << " holds another message";
      EXPECT_EQ(h[a.second - 1].message_id, a.first);
    }
    for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << l.conversation << ": " << id << " appended " << n << " times";
  }
}

// Lanes whose conversations cover every partition of im.commands, senders on gw-a: so whichever
// partitions an engine held, some lane's commands went through it.
std::vector<Lane> make_lanes(const Cluster& c, int users) {
  std::vector<User> us;
  for (int i = 0; i < users; ++i) us.push_back(make_user(c.http(i % 2 ? "gw-b" : "gw-a"), "load"));
  std::vector<Lane> lanes;
  std::set<int32_t> covered;
  for (size_t i = 0; i < us.size(); ++i) {
    for (size_t j = i + 1; j < us.size(); ++j) {
      auto conv = single_stream(us[i].id, us[j].id);
      int32_t part = partition_for(conv, kPartitions);
      if (covered.count(part) && lanes.size() >= 6) continue;
      covered.insert(part);
      Lane l;
      l.sender = us[i];
      l.peer = us[j];
      l.recipients = {us[j]};
      l.conversation = conv;
      l.ws = connect_ws(c, "gw-a", us[i]);
      lanes.push_back(std::move(l));
      if (lanes.size() >= 8 && covered.size() == kPartitions) return lanes;
    }
  }
  EXPECT_EQ(covered.size(), static_cast<size_t>(kPartitions)) << "add users: lanes do not cover every partition";
  return lanes;
}

// Group conversations under load, whose streams cover every partition of im.events: each sent to
// by its owner (on gw-a) and shown to `members` members, half of them on each gateway.
std::vector<Lane> make_group_lanes(const Cluster& c, int members) {
  std::vector<User> owners{make_user(c.http("gw-a"), "g_owner"), make_user(c.http("gw-a"), "g_owner")};
  std::vector<User> ms;
  for (int i = 0; i < members; ++i) ms.push_back(make_user(c.http(i % 2 ? "gw-b" : "gw-a"), "g_member"));
  std::string ids;
  for (const auto& m : ms) ids += (ids.empty() ? "" : ",") + std::to_string(m.id);
  std::vector<Lane> lanes;
  std::set<int32_t> covered;
  for (int n = 0; n < 24 && covered.size() < static_cast<size_t>(kPartitions); ++n) {
    const User& owner = owners[n % 2];
    HttpResult g;
    // Retried while the engine's directory has not read the registrations yet.
    EXPECT_TRUE(wait_until(
        [&] {
          g = c.http("gw-a").post("/api/v1/groups", fmt::format(R"({{"name":"load {}","members":[{}]}})", n, ids),
                                  owner.token);
          return g.status == 201;
        },
        60s))
        << g.status << " " << g.body;
    if (g.status != 201) break;
    std::string conv = g.json()["conversation_id"].GetString();
    int32_t part = partition_for(conv, kPartitions);
    if (covered.count(part)) continue;
    covered.insert(part);
    Lane l;
    l.sender = owner;
    l.recipients = ms;
    l.conversation = conv;
    l.ws = connect_ws(c, "gw-a", owner);
    lanes.push_back(std::move(l));
  }
  EXPECT_EQ(covered.size(), static_cast<size_t>(kPartitions)) << "the groups do not cover every partition";
  return lanes;
}

// Records on im.tasks, read through a KafkaLog of the test's own.
uint64_t tasks_written(Cluster& c) {
  auto log = KafkaLog::open(c.mock().log_config());
  EXPECT_TRUE(log.has_value());
  if (!log) return 0;
  uint64_t n = 0;
  auto parts = (*log)->partition_count(kTasksTopic);
  EXPECT_TRUE(parts.has_value());
  for (int32_t p = 0; parts && p < *parts; ++p) {
    auto end = (*log)->end_offset(TopicPartition{std::string(kTasksTopic), p});
    if (end) n += static_cast<uint64_t>(*end);
  }
  return n;
}

// Every record of im.events, from offset 0 to the end it had when called, through a KafkaLog of
// the test's own; each decoded event (or nullptr when a record does not decode) to `fn`.
void for_each_event(Cluster& c, const std::function<void(const Record&, const fb::EventEnvelope*)>& fn) {
  auto log = KafkaLog::open(c.mock().log_config());
  ASSERT_TRUE(log.has_value());
  auto parts = (*log)->partition_count(kEventsTopic);
  ASSERT_TRUE(parts.has_value());
  std::vector<TopicPartitionOffset> from;
  std::map<int32_t, int64_t> end;
  for (int32_t p = 0; p < *parts; ++p) {
    from.push_back({std::string(kEventsTopic), p, 0});
    auto e = (*log)->end_offset(TopicPartition{std::string(kEventsTopic), p});
    EXPECT_TRUE(e.has_value());
    if (e && *e > 0) end[p] = *e;
  }
  auto consumer = (*log)->consumer(ConsumerOptions{});
  EXPECT_TRUE(consumer->assign(from).has_value());
  std::vector<Record> batch;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!end.empty() && std::chrono::steady_clock::now() < deadline) {
    if (!consumer->poll(batch, 500ms)) break;
    for (const auto& r : batch) {
      auto ev = read_event(r.value);
      fn(r, ev ? *ev : nullptr);
      if (auto it = end.find(r.partition); it != end.end() && r.offset + 1 >= it->second) end.erase(it);
    }
  }
  EXPECT_TRUE(end.empty()) << "im.events was not read to its end";
}

// The writer (an engine's instance id, "<host>-<pid>" by default) of the latest EpochStarted
// marker in each partition of im.events: the engine that owns the partition now.
std::map<int32_t, std::string> epoch_writers(Cluster& c) {
  std::map<int32_t, std::string> writers;
  for_each_event(c, [&](const Record& r, const fb::EventEnvelope* ev) {
    if (ev && ev->event_type() == fb::Event::EpochStarted) {
      writers[r.partition] = std::string(sv(ev->event_as_EpochStarted()->writer()));
    }
  });
  return writers;
}

// ---- the deployment shared by the chat tests ---------------------------------------------------

class Distributed : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new Cluster("dist");
    cluster_->start_all();
    // Both routers in their group before any test counts pushes (a rebalance pushes again what
    // was pushed since the last commit).
    started_ = !::testing::Test::HasFatalFailure() && routers_share_partitions(*cluster_, {"router-1", "router-2"});
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(started_) << "the deployment did not start"; }
  static Cluster& c() { return *cluster_; }

  static Cluster* cluster_;
  static bool started_;
};
Cluster* Distributed::cluster_ = nullptr;
bool Distributed::started_ = false;

TEST_F(Distributed, ChatAcrossGatewaysAndDevices) {
  User a = make_user(c().http("gw-a"), "alice"), b = make_user(c().http("gw-b"), "bob");
  User m = make_user(c().http("gw-a"), "multi");
  auto wa = connect_ws(c(), "gw-a", a), wb = connect_ws(c(), "gw-b", b);
  auto m_phone = connect_ws(c(), "gw-a", m), m_laptop = connect_ws(c(), "gw-b", m);
  ASSERT_TRUE(wa && wb && m_phone && m_laptop);

  // A on gateway A and B on gateway B, both ways.
  std::string ab = single_stream(a.id, b.id);
  auto ack = send_acked(*wa, ab, "a1");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->u64("seq_id"), 1u);
  auto got = new_message(*wb, ack->str("client_msg_id"));
  ASSERT_TRUE(got) << "gateway B never pushed A's message";
  EXPECT_EQ(got->str("message_id"), ack->str("message_id"));
  EXPECT_EQ(got->u64("sender_id"), a.id);
  auto back = send_acked(*wb, ab, "b1");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->u64("seq_id"), 2u);
  ASSERT_TRUE(new_message(*wa, back->str("client_msg_id"))) << "gateway A never pushed B's reply";

  // A user with a device on each gateway receives on both, and sees their own sends on the other.
  std::string am = single_stream(a.id, m.id);
  auto to_m = send_acked(*wa, am, "to-m");
  ASSERT_TRUE(to_m);
  ASSERT_TRUE(new_message(*m_phone, to_m->str("client_msg_id"))) << "device on gateway A";
  ASSERT_TRUE(new_message(*m_laptop, to_m->str("client_msg_id"))) << "device on gateway B";
  auto from_m = send_acked(*m_laptop, am, "from-m");
  ASSERT_TRUE(from_m);
  ASSERT_TRUE(new_message(*wa, from_m->str("client_msg_id")));
  ASSERT_TRUE(new_message(*m_phone, from_m->str("client_msg_id"))) << "the sender's other device, on the other gateway";
  // Nothing twice.
  for (auto* ws : {wa.get(), wb.get(), m_phone.get(), m_laptop.get()}) {
    for (auto& f : ws->take_all("new-message")) ADD_FAILURE() << "delivered twice: " << f.raw;
  }
}

// Every process serves /healthz, /readyz and /metrics on its port, and each role's figures move
// with the traffic that goes through it: one message through two gateways, an engine, the router
// and the projector. Every scrape passes `promtool check metrics`.
TEST_F(Distributed, EveryRoleServesItsMetricsAndTheyMove) {
  auto engines = [&] {
    return metric(scrape(c(), "engine-1"), "imlog_sequencer_commands_total") +
           metric(scrape(c(), "engine-2"), "imlog_sequencer_commands_total");
  };
  auto applied = [&] { return metric(scrape(c(), "projector"), "imlog_projector_applied_events_total{model=\"mysql\"}"); };
  auto routed = [&] {
    return metric(scrape(c(), "router-1"), "imlog_router_deliveries_total") +
           metric(scrape(c(), "router-2"), "imlog_router_deliveries_total");
  };
  auto frames_in = [&] { return metric(scrape(c(), "gw-a"), "imlog_gateway_frames_in_total"); };
  auto frames_out = [&] { return metric(scrape(c(), "gw-b"), "imlog_gateway_frames_out_total"); };
  for (const auto& name : c().names()) {
    ASSERT_TRUE(wait_until([&] { return c().http(name).get("/readyz").status == 200; }, 60s))
        << name << ": " << c().http(name).get("/readyz").body;
    EXPECT_EQ(c().http(name).get("/healthz").status, 200) << name;
  }
  double engines0 = engines(), applied0 = applied(), routed0 = routed(), in0 = frames_in(), out0 = frames_out();
  ASSERT_GE(engines0, 0) << "no engine exposes imlog_sequencer_commands_total";
  ASSERT_GE(applied0, 0) << scrape(c(), "projector");
  ASSERT_GE(routed0, 0) << scrape(c(), "router-1");
  ASSERT_GE(in0, 0);
  ASSERT_GE(out0, 0);

  User a = make_user(c().http("gw-a"), "metric_a"), b = make_user(c().http("gw-b"), "metric_b");
  auto wa = connect_ws(c(), "gw-a", a), wb = connect_ws(c(), "gw-b", b);
  ASSERT_TRUE(wa && wb);
  auto m1 = send_acked(*wa, single_stream(a.id, b.id), "m1");
  ASSERT_TRUE(m1);
  ASSERT_TRUE(new_message(*wb, m1->str("client_msg_id")));

  EXPECT_TRUE(wait_until([&] { return engines() > engines0; }, 30s)) << "sequencer commands did not move";
  EXPECT_TRUE(wait_until([&] { return applied() > applied0; }, 30s)) << "the projector applied nothing";
  EXPECT_TRUE(wait_until([&] { return routed() > routed0; }, 30s)) << "the router delivered nothing";
  EXPECT_GT(frames_in(), in0) << "gateway A's frames in";
  EXPECT_GT(frames_out(), out0) << "gateway B's frames out";
  auto engine = scrape(c(), "engine-1") + scrape(c(), "engine-2");
  EXPECT_GT(metric(scrape(c(), "engine-1"), "imlog_sequencer_partitions_owned") +
                metric(scrape(c(), "engine-2"), "imlog_sequencer_partitions_owned"),
            0);
  EXPECT_NE(engine.find("imlog_sequencer_append_seconds_count "), std::string::npos);
  EXPECT_EQ(owned_by(c(), "router-1") + owned_by(c(), "router-2"), kPartitions) << "the routers share im.events";
  EXPECT_GE(metric(scrape(c(), "router-1"), "imlog_router_partitions_taken_total"), 1);
  EXPECT_GE(metric(scrape(c(), "router-2"), "imlog_router_lag_events"), 0);
  EXPECT_GE(metric(scrape(c(), "projector"), "imlog_projector_lag_events{model=\"mysql\"}"), 0);
  EXPECT_GE(metric(scrape(c(), "tasks"), "imlog_fanout_dead_letters_total"), 0);
  EXPECT_GE(metric(scrape(c(), "gw-a"), "imlog_gateway_command_seconds_count"), 1);

  // Each role exposes its own figures and only them, and the text is valid exposition.
  std::map<std::string, std::string> own{{"engine-1", "imlog_sequencer_"}, {"projector", "imlog_projector_"},
                                         {"router-1", "imlog_router_"},    {"tasks", "imlog_fanout_"},
                                         {"gw-a", "imlog_gateway_"}};
  for (const auto& [name, prefix] : own) {
    auto text = scrape(c(), name);
    ASSERT_FALSE(text.empty()) << name;
    EXPECT_NE(text.find("# TYPE " + prefix), std::string::npos) << name << " lacks " << prefix;
    EXPECT_NE(text.find("process_resident_memory_bytes "), std::string::npos) << name;
    for (const auto& [other, other_prefix] : own) {
      if (other_prefix != prefix) {
        EXPECT_EQ(text.find(other_prefix), std::string::npos) << name << " has " << other_prefix;
      }
    }
    std::string file = c().data_dir(name) + "-scrape.txt";
    std::ofstream(file) << text;
    auto check = Subprocess::start({"/bin/sh", "-c", "promtool check metrics < " + file + " 2>&1"});
    std::string out;
    while (auto line = check.read_line(30s)) out += *line + "\n";
    auto st = check.wait(30s);
    ASSERT_TRUE(st && WIFEXITED(*st));
    ASSERT_NE(WEXITSTATUS(*st), 127) << "promtool is missing: scripts/setup installs it (Debian package `prometheus`)";
    EXPECT_EQ(WEXITSTATUS(*st), 0) << name << ": " << out;
    EXPECT_EQ(out, "") << name;
  }
}

TEST_F(Distributed, LargeGroupGoesThroughTasksAndReachesEveryOnlineMemberOnce) {
  constexpr int kMembers = 600, kOnline = 200, kThreads = 8;
  // Registration in parallel (each is a command through an engine); logins only for the online.
  std::vector<User> users(kMembers);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kMembers; i += kThreads) {
        users[i] = make_user(c().http(i % 2 ? "gw-b" : "gw-a"), "member", i < kOnline);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& u : users) ASSERT_NE(u.id, 0u) << "a registration failed";

  std::string members;
  for (int i = 1; i < kMembers; ++i) members += (members.empty() ? "" : ",") + std::to_string(users[i].id);
  // The engine checks that every member exists in its directory, which it reads from the log:
  // retried while it has not yet read the last registrations.
  HttpResult g;
  ASSERT_TRUE(wait_until(
      [&] {
        g = c().http("gw-a").post("/api/v1/groups", fmt::format(R"({{"name":"six hundred","members":[{}]}})", members),
                                  users[0].token);
        return g.status == 201;
      },
      120s))
      << g.status << " " << g.body;
  std::string conv = g.json()["conversation_id"].GetString();

  std::vector<std::unique_ptr<WsClient>> online;
  for (int i = 0; i < kOnline; ++i) {
    online.push_back(connect_ws(c(), i % 2 ? "gw-b" : "gw-a", users[i]));
    ASSERT_TRUE(online.back());
  }
  uint64_t tasks_before = tasks_written(c());
  // Member 0 sends (its own sending connection gets the ack, not a push); every other online
  // member, on either gateway, gets each message.
  std::vector<std::string> ids;
  for (const char* id : {"big-1", "big-2", "big-3"}) {
    auto ack = send_acked(*online[0], conv, id);
    ASSERT_TRUE(ack) << id;
    ids.push_back(ack->str("client_msg_id"));
  }
  for (int i = 1; i < kOnline; ++i) {
    for (const auto& id : ids) ASSERT_TRUE(new_message(*online[i], id)) << "member " << i << " never got " << id;
  }
  // A last message from member 1, then nothing of the first three may arrive again.
  auto last = send_acked(*online[1], conv, "big-last");
  ASSERT_TRUE(last);
  for (int i = 0; i < kOnline; ++i) {
    if (i != 1) {
      ASSERT_TRUE(new_message(*online[i], last->str("client_msg_id"))) << "member " << i;
    }
    for (auto& f : online[i]->take_all("new-message")) ADD_FAILURE() << "member " << i << " got twice: " << f.raw;
  }
  // They went through the tasks path: the router wrote fan-out tasks to im.tasks.
  EXPECT_GE(tasks_written(c()), tasks_before + 4) << "no fan-out tasks on im.tasks: the router delivered itself";
}

TEST_F(Distributed, EngineKilledUnderLoadLosesNothingAndDuplicatesNothing) {
  auto lanes = make_lanes(c(), 8);
  ASSERT_FALSE(HasFailure());
  std::string victim;  // "-<pid>": the end of engine-1's instance id
  std::set<int32_t> victim_partitions;
  {
    Load load(lanes);
    ASSERT_TRUE(wait_until([&] { return load.acks() >= 40; }, 90s)) << "no load got through before the kill";
    victim = "-" + std::to_string(c().pid("engine-1"));
    for (const auto& [p, writer] : epoch_writers(c())) {
      if (writer.ends_with(victim)) victim_partitions.insert(p);
    }
    ASSERT_FALSE(victim_partitions.empty()) << "engine-1 owned no partition of im.events before the kill";
    ASSERT_NO_FATAL_FAILURE(c().kill9("engine-1"));
    uint64_t at_kill = load.acks();
    // The survivor takes the dead engine's partitions (after the group's session time-out) and
    // every lane, whichever partition it is on, gets through again.
    EXPECT_TRUE(wait_until([&] { return load.acks() >= at_kill + 80; }, 120s)) << "acks stalled after the kill";
    load.stop();
  }
  ASSERT_NO_FATAL_FAILURE(settle_and_check(c(), lanes));
  // Every lane was acknowledged after the kill: the survivor holds every partition.
  for (auto& l : lanes) {
    ASSERT_TRUE(send_acked(*l.ws, l.conversation, l.conversation + "-after")) << l.conversation;
  }
  // The dead engine's partitions each got a new epoch marker, written by the survivor.
  std::string survivor = "-" + std::to_string(c().pid("engine-2"));
  auto after = epoch_writers(c());
  for (int32_t p : victim_partitions) {
    EXPECT_TRUE(after[p].ends_with(survivor)) << "partition " << p << " is still marked by " << after[p];
  }
  // The killed engine comes back and rejoins (another rebalance) without harm.
  ASSERT_NO_FATAL_FAILURE(c().start("engine-1", "engine"));
  for (auto& l : lanes) {
    ASSERT_TRUE(send_acked(*l.ws, l.conversation, l.conversation + "-rejoined")) << l.conversation;
  }
}

// Counts every push each online recipient gets: recipient → client_msg_id → pushes.
class PushCounter {
 public:
  // Connects each lane's recipients, once per user, alternating gateways.
  explicit PushCounter(const Cluster& c, const std::vector<Lane>& lanes) {
    for (const auto& l : lanes) {
      for (const auto& u : l.recipients) {
        if (ws_.count(u.id)) continue;
        ws_[u.id] = connect_ws(c, ws_.size() % 2 ? "gw-a" : "gw-b", u);
      }
    }
  }
  [[nodiscard]] bool connected() const {
    for (const auto& [id, ws] : ws_) {
      if (!ws) return false;
    }
    return true;
  }
  void take() {
    for (auto& [id, ws] : ws_) {
      for (auto& f : ws->take_all("new-message")) ++pushed_[id][f.str("client_msg_id")];
    }
  }
  // Each acknowledged message of `lanes` that one of its recipients never got, as
  // "<client_msg_id> to <user>".
  std::vector<std::string> missing(const std::vector<Lane>& lanes) {
    take();
    std::vector<std::string> out;
    for (const auto& l : lanes) {
      for (const auto& [id, ack] : l.acked) {
        for (const auto& u : l.recipients) {
          auto user = pushed_.find(u.id);
          if (user == pushed_.end() || !user->second.contains(id)) out.push_back(id + " to " + u.name);
        }
      }
    }
    return out;
  }
  // The recipients whose connection the server closed, and why: for failure messages.
  [[nodiscard]] std::string closed() const {
    std::string out;
    for (const auto& [id, ws] : ws_) {
      if (ws->closed()) out += fmt::format(" user {} ({});", id, ws->close_error());
    }
    return out.empty() ? " none" : out;
  }
  // Pushes beyond the first of each message to each recipient (at least once allows them).
  [[nodiscard]] uint64_t repeats() const {
    uint64_t n = 0;
    for (const auto& [user, counts] : pushed_) {
      for (const auto& [id, count] : counts) n += static_cast<uint64_t>(count - 1);
    }
    return n;
  }
  [[nodiscard]] uint64_t total() const {
    uint64_t n = 0;
    for (const auto& [user, counts] : pushed_) {
      for (const auto& [id, count] : counts) n += static_cast<uint64_t>(count);
    }
    return n;
  }

 private:
  std::map<uint64_t, std::unique_ptr<WsClient>> ws_;
  std::map<uint64_t, std::map<std::string, int>> pushed_;
};

// Two routers share im.events. Under live traffic — one-to-one and group conversations covering
// every partition, their recipients online on both gateways — router-1 is killed with SIGKILL,
// and router-2 takes its partitions over (after the group's session time-out) at their committed
// positions, with membership as of those positions; router-1 comes back, and router-2 is killed
// in turn with no restart, leaving router-1 alone. Every push each online recipient got is
// counted: every acknowledged message reached every online recipient at least once (a router
// that resumed at the log's end instead, or without its membership, loses pushes here).
TEST_F(Distributed, RouterKilledUnderLoadPushesEveryMessageToEveryOnlineRecipient) {
  auto lanes = make_lanes(c(), 8);
  auto groups = make_group_lanes(c(), 4);
  ASSERT_FALSE(HasFailure());
  for (auto& l : groups) lanes.push_back(std::move(l));
  PushCounter pushes(c(), lanes);
  ASSERT_TRUE(pushes.connected());
  ASSERT_TRUE(routers_share_partitions(c(), {"router-1", "router-2"}));
  {
    Load load(lanes);
    auto more_acks = [&](const char* when) {
      uint64_t at = load.acks();
      EXPECT_TRUE(wait_until([&] { return load.acks() >= at + 80; }, 120s)) << "acks stalled " << when;
    };
    ASSERT_TRUE(wait_until([&] { return load.acks() >= 40; }, 90s)) << "no load got through before the kill";
    ASSERT_NO_FATAL_FAILURE(c().kill9("router-1"));
    more_acks("after router-1 was killed");  // acks are the engines': they go on while pushes wait
    EXPECT_TRUE(routers_share_partitions(c(), {"router-2"})) << "router-2 did not take router-1's partitions";
    more_acks("after router-2 took over");
    ASSERT_NO_FATAL_FAILURE(c().start("router-1", "router"));
    EXPECT_TRUE(routers_share_partitions(c(), {"router-1", "router-2"})) << "router-1 did not rejoin";
    more_acks("after router-1 rejoined");
    ASSERT_NO_FATAL_FAILURE(c().kill9("router-2"));
    EXPECT_TRUE(routers_share_partitions(c(), {"router-1"})) << "router-1 did not take router-2's partitions";
    more_acks("after router-1 took over");
    load.stop();
  }
  ASSERT_NO_FATAL_FAILURE(settle_and_check(c(), lanes));
  std::vector<std::string> lost;
  EXPECT_TRUE(wait_until([&] { return (lost = pushes.missing(lanes)).empty(); }, 90s))
      << lost.size() << " pushes of acknowledged messages never reached an online recipient, e.g. " << lost.front()
      << " and " << lost.back() << "; connections the server closed:" << pushes.closed();
  uint64_t acked = 0;
  for (const auto& l : lanes) acked += l.acked.size();
  std::cout << "router kills: " << acked << " messages acknowledged, " << pushes.total() << " pushes counted, "
            << pushes.repeats() << " of them repeats\n";
  // The deployment as the next test expects it: both routers.
  ASSERT_NO_FATAL_FAILURE(c().start("router-2", "router"));
  EXPECT_TRUE(routers_share_partitions(c(), {"router-1", "router-2"}));
}

TEST_F(Distributed, BrokerDownAndBackLosesNoAckedMessage) {
  auto lanes = make_lanes(c(), 8);
  ASSERT_FALSE(HasFailure());
  {
    Load load(lanes);
    ASSERT_TRUE(wait_until([&] { return load.acks() >= 40; }, 90s));
    c().mock().broker_down(1);
    // Load keeps running against two brokers for a while (partitions led by broker 1 stall).
    uint64_t at_down = load.acks();
    (void)wait_until([&] { return load.acks() >= at_down + 200; }, 5s);
    c().mock().broker_up(1);
    uint64_t at_up = load.acks();
    EXPECT_TRUE(wait_until([&] { return load.acks() >= at_up + 80; }, 120s)) << "acks stalled after the broker came back";
    load.stop();
  }
  ASSERT_NO_FATAL_FAILURE(settle_and_check(c(), lanes));
}

// Last: it stops the writers. Each read model rebuilt from the log by `replay` equals the live one;
// so MySQL, Redis and RocksDB all equal the log's model, and each other.
TEST_F(Distributed, ReadModelsEqualTheLog) {
  // Some of everything on both gateways (run alone, this is the whole log): users, a group, one-to-one
  // and group messages, a read marker.
  User a = make_user(c().http("gw-a"), "rm_a"), b = make_user(c().http("gw-b"), "rm_b"), d = make_user(c().http("gw-b"), "rm_d");
  auto wa = connect_ws(c(), "gw-a", a), wb = connect_ws(c(), "gw-b", b);
  ASSERT_TRUE(wa && wb);
  HttpResult g;
  ASSERT_TRUE(wait_until(
      [&] {
        g = c().http("gw-a").post("/api/v1/groups", fmt::format(R"({{"name":"models","members":[{},{}]}})", b.id, d.id),
                                  a.token);
        return g.status == 201;
      },
      60s))
      << g.body;
  std::string group = g.json()["conversation_id"].GetString();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(send_acked(*wa, single_stream(a.id, b.id), fmt::format("rm-s{}", i)));
    ASSERT_TRUE(send_acked(*wb, group, fmt::format("rm-g{}", i)));
  }
  auto read = c().http("gw-b").post(fmt::format("/api/v1/conversations/{}/read", single_stream(a.id, b.id)),
                                    R"({"seq_id":3})", b.token);
  EXPECT_EQ(read.status, 204) << read.body;
  ASSERT_TRUE(send_acked(*wa, "world", "last-word"));
  for (const char* name : {"gw-a", "gw-b", "engine-1", "engine-2", "router-1", "router-2", "tasks"}) {
    ASSERT_NO_FATAL_FAILURE(c().terminate(name));
  }
  // The projector catches up to a log that no longer grows; replay's verify then compares.
  auto verify = [&](const std::string& projection, std::string& out) {
    auto p = Subprocess::start({(binary_dir() / "replay").string(), "--projection", projection, "--config", c().config(),
                                "--data-dir", c().data_dir("projector"), "--verify", "--from-scratch"});
    out.clear();
    while (auto line = p.read_line(120s)) out += *line + "\n";
    auto st = p.wait(120s);
    return st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0;
  };
  std::string out;
  for (const std::string projection : {"mysql", "redis"}) {
    EXPECT_TRUE(wait_until([&] { return verify(projection, out); }, 120s)) << projection << ":\n" << out;
    EXPECT_NE(out.find("verify: equal"), std::string::npos) << out;
    std::cout << "replay --projection " << projection << " --verify:\n" << out;
  }
  // The RocksDB model is the projector process's own directory: stop it first.
  ASSERT_NO_FATAL_FAILURE(c().terminate("projector"));
  EXPECT_TRUE(verify("rocksdb", out)) << out;
  EXPECT_NE(out.find("verify: equal"), std::string::npos) << out;
  std::cout << "replay --projection rocksdb --verify:\n" << out;
}

// ---- traces ------------------------------------------------------------------------------------
// One group message's trace id, chosen by the client as X-Request-Id, in the log of every role it
// passes: the gateway that took it, the engine that sequenced it, the projector that applied it,
// the router that handed it to the tasks workers (the group is over large_group_threshold), the
// worker that delivered it, and the gateway that pushed it. Its own deployment, at debug level,
// each process logging to its own file.
TEST(DistributedTrace, OneMessagesTraceIdIsInEveryRolesLog) {
  ClusterOptions options;
  options.log_level = "debug";
  options.log_files = true;
  options.extra_yaml = "router:\n  large_group_threshold: 2\n  task_page: 2\n";
  Cluster c("trace", std::nullopt, std::nullopt, options);
  ASSERT_NO_FATAL_FAILURE(c.start_all());
  ASSERT_TRUE(routers_share_partitions(c, {"router-1", "router-2"}));
  User a = make_user(c.http("gw-a"), "tr_a"), b = make_user(c.http("gw-b"), "tr_b"), d = make_user(c.http("gw-b"), "tr_d");
  auto wb = connect_ws(c, "gw-b", b);
  ASSERT_TRUE(wb);
  HttpResult g;
  ASSERT_TRUE(wait_until(
      [&] {
        g = c.http("gw-a").post("/api/v1/groups", fmt::format(R"({{"name":"traced","members":[{},{}]}})", b.id, d.id),
                                a.token);
        return g.status == 201;
      },
      60s))
      << g.body;
  std::string group = g.json()["conversation_id"].GetString();

  const std::string trace = fmt::format("test-trace-{}", ::getpid());
  auto traced = c.http("gw-a").with_header("X-Request-Id", trace);
  HttpResult sent;
  ASSERT_TRUE(wait_until(
      [&] {
        sent = traced.post(fmt::format("/api/v1/conversations/{}/messages", group),
                           R"({"client_msg_id":"traced-1","content":"follow me"})", a.token);
        return sent.status == 201;
      },
      60s))
      << sent.status << " " << sent.body;
  EXPECT_EQ(sent.header("X-Request-Id"), trace) << "the client's valid X-Request-Id is the trace id";
  ASSERT_TRUE(new_message(*wb, "traced-1")) << "gateway B never pushed the message";

  // Each role's line names what it did with the message, and the trace.
  const std::string tag = "trace_id=" + trace;
  auto logged = [&](const std::string& name, const std::string& what) {
    auto text = c.log(name);
    for (size_t at = text.find(tag); at != std::string::npos; at = text.find(tag, at + 1)) {
      size_t begin = text.rfind('\n', at), end = text.find('\n', at);
      std::string line = text.substr(begin == std::string::npos ? 0 : begin + 1, end - begin);
      if (line.find(what) != std::string::npos) return true;
    }
    return false;
  };
  const std::map<std::string, std::string> expected{
      {"gw-a", "command SendMessage on " + group},
      {"projector", "to the mysql model"},
      {"tasks", "recipients"},
      {"gw-b", "pushing " + group},
  };
  for (const auto& [name, what] : expected) {
    EXPECT_TRUE(wait_until([&] { return logged(name, what); }, 30s))
        << name << " never logged `" << what << "` with " << tag << "; its log:\n" << c.log(name);
  }
  EXPECT_TRUE(wait_until([&] { return logged("engine-1", "Accepted") || logged("engine-2", "Accepted"); }, 30s))
      << "no engine logged the command's acceptance with " << tag;
  EXPECT_TRUE(wait_until([&] { return logged("router-1", "handing " + group) || logged("router-2", "handing " + group); }, 30s))
      << "no router logged handing " << group << " to the tasks workers with " << tag;

  // A WebSocket send gets a trace id of the server's in its ack, and the engine logs it too.
  send_message(*wb, group, "traced-2", "and me");
  auto ack = ack_of(*wb, "traced-2");
  ASSERT_TRUE(ack);
  std::string ws_trace = ack->str("trace_id");
  EXPECT_EQ(ws_trace.size(), 16u) << ack->raw;
  EXPECT_NE(ws_trace, trace);
  EXPECT_TRUE(wait_until(
      [&] {
        auto both = c.log("engine-1") + c.log("engine-2");
        return both.find("trace_id=" + ws_trace) != std::string::npos;
      },
      30s))
      << "no engine logged " << ws_trace;
}

// ---- readiness ---------------------------------------------------------------------------------
// A gateway process alone, over its own Redis and MariaDB (so they can be stopped without touching
// other tests' servers) and a private Kafka mock.

// A Redis server of this test's own, so it can be stopped and started again on the same port.
class OwnRedis {
 public:
  OwnRedis() : dir_("imlog-redis"), port_(free_port()) { start(); }
  void start() {
    proc_.emplace(Subprocess::start({find_program("redis-server"), "--port", std::to_string(port_), "--bind",
                                     "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir_.str()}));
    ASSERT_TRUE(wait_until([&] { return RawRedis(config()).run({"PING"}) == "PONG"; }, 20s));
  }
  void stop() {
    proc_->kill();
    proc_.reset();
  }
  [[nodiscard]] RedisConfig config() const {
    RedisConfig c;
    c.host = "127.0.0.1";
    c.port = port_;
    c.key_prefix = "ready:";
    return c;
  }

 private:
  TempDir dir_;
  int port_;
  std::optional<Subprocess> proc_;
};

// A MariaDB of this test's own, stopped (SIGKILL: as if the machine went away) and started again
// on the same port and data.
class OwnMysql {
 public:
  OwnMysql() : dir_("imlog-mysql"), port_(free_port()) {
    auto init = Subprocess::start({find_program("mariadb-install-db"), "--no-defaults", "--datadir=" + data(),
                                   "--auth-root-authentication-method=normal", "--skip-test-db"});
    while (init.read_line(120s)) {
    }
    auto st = init.wait(120s);
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "mariadb-install-db failed";
    start();
  }
  void start() {
    proc_.emplace(Subprocess::start({find_program("mariadbd"), "--no-defaults", "--datadir=" + data(),
                                     "--socket=" + data() + "/sock", "--port=" + std::to_string(port_),
                                     "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
                                     "--innodb-buffer-pool-size=16M", "--log-error=" + dir_.str() + "/err.log"}));
    ASSERT_TRUE(wait_until(
        [&] {
          try {
            MysqlConfig c = config();
            c.database = "mysql";
            return raw_mysql(c) != nullptr;
          } catch (const std::exception&) {
            return false;
          }
        },
        60s))
        << "mariadbd did not answer on port " << port_;
  }
  void stop() {
    proc_->kill();
    proc_.reset();
  }
  [[nodiscard]] MysqlConfig config() const {
    MysqlConfig c;
    c.host = "127.0.0.1";
    c.port = port_;
    c.user = "root";
    c.password = "";
    c.database = "imlog_ready";
    return c;
  }

 private:
  [[nodiscard]] std::string data() const { return dir_.str() + "/data"; }
  TempDir dir_;
  int port_;
  std::optional<Subprocess> proc_;
};

TEST(DistributedReadiness, ReadyzFollowsKafkaMysqlAndRedisAndRecoversByItself) {
  ASSERT_FALSE(find_program("redis-server").empty()) << "redis-server is not installed (scripts/setup installs it)";
  ASSERT_FALSE(find_program("mariadbd").empty()) << "mariadbd is not installed (scripts/setup installs it)";
  OwnRedis redis;
  OwnMysql mysql;
  ASSERT_FALSE(HasFatalFailure());
  Cluster c("ready", redis.config(), mysql.config());
  ASSERT_NO_FATAL_FAILURE(c.init());
  ASSERT_NO_FATAL_FAILURE(c.start("gw-a", "gateway"));
  auto readyz = [&] { return c.http("gw-a").get("/readyz"); };

  redis.stop();
  ASSERT_TRUE(wait_until([&] { return readyz().status == 503; }, 30s)) << "still ready with Redis gone";
  auto r = readyz();
  EXPECT_STREQ(r.json()["code"].GetString(), "not_ready");
  EXPECT_NE(r.body.find("Redis"), std::string::npos) << r.body;
  ASSERT_NO_FATAL_FAILURE(redis.start());
  EXPECT_TRUE(wait_until([&] { return readyz().status == 200; }, 30s)) << "not ready again: " << readyz().body;

  mysql.stop();
  ASSERT_TRUE(wait_until([&] { return readyz().status == 503; }, 60s)) << "still ready with MySQL gone";
  EXPECT_NE(readyz().body.find("MySQL"), std::string::npos) << readyz().body;
  ASSERT_NO_FATAL_FAILURE(mysql.start());
  EXPECT_TRUE(wait_until([&] { return readyz().status == 200; }, 60s)) << "not ready again: " << readyz().body;

  for (int b = 1; b <= 3; ++b) c.mock().broker_down(b);
  ASSERT_TRUE(wait_until([&] { return readyz().status == 503; }, 60s)) << "still ready with every broker down";
  EXPECT_NE(readyz().body.find("Kafka"), std::string::npos) << readyz().body;
  for (int b = 1; b <= 3; ++b) c.mock().broker_up(b);
  EXPECT_TRUE(wait_until([&] { return readyz().status == 200; }, 60s)) << "not ready again: " << readyz().body;
}


// ---- offline push across SIGKILLs of the push worker (issue 17) ------------------------------
// Its own deployment: one process with the gateway, engine, projector and router roles, and the
// tasks role (the push worker, webhook provider) in a process of its own, so the worker can be
// killed while the gateway keeps its users online. Lanes send to offline users under load; the
// tasks process is killed with SIGKILL three times and restarted. Every collapse window the log
// defines (tasks/README.md, "Offline push": members by event time, [first, first + window)) must
// reach each of the user's devices at least once, every key always with the same payload, and
// nothing may go to a muted conversation or an online user.

struct LoggedMessage {
  std::string stream;
  uint64_t seq = 0;
  int64_t time = 0;
  bool operator<(const LoggedMessage& o) const { return std::tie(time, stream, seq) < std::tie(o.time, o.stream, o.seq); }
};

// Every message (not system rows) of im.events.
std::vector<LoggedMessage> messages_in_log(Cluster& c) {
  std::vector<LoggedMessage> out;
  for_each_event(c, [&](const Record&, const fb::EventEnvelope* ev) {
    auto* m = ev ? ev->event_as_MessageAppended() : nullptr;
    if (m && m->message_type() != fb::MessageType::System) {
      out.push_back(LoggedMessage{std::string(sv(ev->stream())), ev->seq(), ev->timestamp_ms()});
    }
  });
  return out;
}

// One notification the log says a device gets: the window's size and latest message.
struct ExpectedPush {
  uint64_t collapsed = 0;
  uint64_t seq = 0;
  std::string conversation;
};

TEST(DistributedPush, WorkerKilledUnderLoadSendsEveryWindowWithOnePayload) {
  constexpr auto kWindow = 300ms;
  ClusterOptions options;
  options.extra_yaml = fmt::format(R"(push:
  enabled: true
  collapse_window: {}ms
  close_delay: 2s
  preview_chars: 40
  first_backoff: 50ms
  max_backoff: 500ms
  commit_interval: 200ms
  lease_ttl: 2s
  webhook_private_addresses: true
  webhook_secret: distributed-push-secret-0123
)", kWindow.count());
  Cluster c("push", std::nullopt, std::nullopt, options);
  ASSERT_NO_FATAL_FAILURE(c.init());
  ASSERT_NO_FATAL_FAILURE(c.start("gw-b", "gateway,engine,projector,router"));
  ASSERT_NO_FATAL_FAILURE(c.start("tasks", "tasks"));
  const HttpClient gw = c.http("gw-b");

  HttpReceiver receiver;
  std::vector<User> senders;
  for (int i = 0; i < 3; ++i) senders.push_back(make_user(gw, "psend"));
  User r1 = make_user(gw, "r1"), r2 = make_user(gw, "r2"), muted = make_user(gw, "muted"), online = make_user(gw, "online");
  for (const auto& u : {r1, r2, muted, online}) ASSERT_FALSE(u.token.empty());
  const std::string muted_conv = single_stream(senders[0].id, muted.id);
  auto patch = gw.request("PATCH", "/api/v1/users/me/settings", fmt::format(R"({{"muted":["{}"]}})", muted_conv), muted.token);
  ASSERT_EQ(patch.status, 204) << patch.body;
  std::map<uint64_t, std::vector<uint64_t>> devices;  // user → device ids
  auto add_device = [&](const User& u, int n) {
    auto r = gw.post("/api/v1/devices",
                     fmt::format(R"({{"platform":"webhook","token":"http://127.0.0.1:{}/{}/{}"}})", receiver.port(), u.id, n),
                     u.token);
    ASSERT_EQ(r.status, 201) << r.body;
    devices[u.id].push_back(r.json()["device_id"].GetUint64());
  };
  ASSERT_NO_FATAL_FAILURE(add_device(r1, 1));
  ASSERT_NO_FATAL_FAILURE(add_device(r1, 2));
  ASSERT_NO_FATAL_FAILURE(add_device(r2, 1));
  ASSERT_NO_FATAL_FAILURE(add_device(muted, 1));  // after the mute: its user stream orders them
  ASSERT_NO_FATAL_FAILURE(add_device(online, 1));
  auto online_ws = connect_ws(c, "gw-b", online);
  ASSERT_TRUE(online_ws);

  // The lanes: every sender to r1 and r2, and one each to the muted conversation and the online user.
  std::vector<Lane> lanes;
  auto lane = [&](const User& from, const User& to) {
    Lane l;
    l.sender = from;
    l.peer = to;
    l.conversation = single_stream(from.id, to.id);
    l.ws = connect_ws(c, "gw-b", from);
    lanes.push_back(std::move(l));
  };
  for (const auto& s : senders) {
    lane(s, r1);
    lane(s, r2);
  }
  lane(senders[0], muted);
  lane(senders[0], online);
  for (const auto& l : lanes) ASSERT_TRUE(l.ws);

  // A first message to each offline user (to the muted one in a conversation not muted) is pushed
  // to each of their devices: the worker's read model has their devices and settings.
  auto keys_of = [&](uint64_t device) {
    std::set<std::string> out;
    for (const auto& req : receiver.requests()) {
      rapidjson::Document d;
      d.Parse(HttpReceiver::body(req).c_str());
      if (d.IsObject() && d["device_id"].GetUint64() == device) out.insert(d["key"].GetString());
    }
    return out;
  };
  auto probe_ws = connect_ws(c, "gw-b", senders[1]);
  for (const auto* to : {&r1, &r2, &muted}) {
    ASSERT_TRUE(send_acked(*probe_ws, single_stream(senders[1].id, to->id), fmt::format("probe-{}", to->id)));
  }
  for (const auto* to : {&r1, &r2, &muted}) {
    for (uint64_t d : devices[to->id]) {
      ASSERT_TRUE(wait_until([&] { return !keys_of(d).empty(); }, 60s)) << "no push to device " << d << " of " << to->name;
    }
  }

  {
    Load load(lanes);
    ASSERT_TRUE(wait_until([&] { return load.acks() >= 100; }, 90s)) << "no load got through before the kills";
    for (int kill = 0; kill < 3; ++kill) {
      size_t pushed = receiver.requests().size();
      // After a restart (kills 1 and 2) the worker rejoins the group and catches up first.
      ASSERT_TRUE(wait_until([&] { return receiver.requests().size() >= pushed + 10; }, scaled(60s)))
          << "no pushes before kill " << kill;
      ASSERT_NO_FATAL_FAILURE(c.kill9("tasks"));
      uint64_t at_kill = load.acks();
      EXPECT_TRUE(wait_until([&] { return load.acks() >= at_kill + 50; }, 60s)) << "acks stalled after kill " << kill;
      ASSERT_NO_FATAL_FAILURE(c.start("tasks", "tasks"));
    }
    size_t pushed = receiver.requests().size();
    // The restarted worker rejoins the group and catches up first: slow in an instrumented build.
    EXPECT_TRUE(wait_until([&] { return receiver.requests().size() >= pushed + 10; }, scaled(60s)))
        << "no pushes after the last restart";
    load.stop();
  }
  ASSERT_NO_FATAL_FAILURE(settle_and_check(c, lanes));

  // The windows the log defines, per pushed user, and the notification each device gets.
  std::map<std::string, ExpectedPush> expected;  // key → payload
  std::map<uint64_t, std::vector<LoggedMessage>> members;
  for (const auto& m : messages_in_log(c)) {
    if (!m.stream.starts_with("single_") || m.stream == muted_conv) continue;
    auto ids = m.stream.substr(7);
    uint64_t a = std::stoull(ids.substr(0, ids.find('_'))), b = std::stoull(ids.substr(ids.find('_') + 1));
    for (const auto* to : {&r1, &r2, &muted}) {
      if (a == to->id || b == to->id) members[to->id].push_back(m);
    }
  }
  for (auto& [user, ms] : members) {
    std::sort(ms.begin(), ms.end());
    for (size_t i = 0; i < ms.size();) {
      size_t j = i;
      while (j < ms.size() && ms[j].time < ms[i].time + kWindow.count()) ++j;
      for (uint64_t d : devices[user]) {
        expected[fmt::format("{}/{}/{}/{}", user, ms[i].stream, ms[i].seq, d)] =
            ExpectedPush{j - i, ms[j - 1].seq, ms[j - 1].stream};
      }
      i = j;
    }
  }
  ASSERT_GT(expected.size(), 50u) << "too little load to judge";

  // Every expected key arrives; then nothing more comes.
  auto arrived = [&] {
    std::map<std::string, std::set<std::string>> bodies;  // key → the distinct bodies it came with
    for (const auto& req : receiver.requests()) {
      bodies[HttpReceiver::header(req, "Idempotency-Key")].insert(HttpReceiver::body(req));
    }
    return bodies;
  };
  std::vector<std::string> missing;
  EXPECT_TRUE(wait_until([&] {
    auto got = arrived();
    missing.clear();
    for (const auto& [key, e] : expected) {
      if (!got.count(key)) missing.push_back(key);
    }
    return missing.empty();
  }, 90s)) << missing.size() << " of " << expected.size() << " windows never pushed, e.g. " << missing.front();
  std::this_thread::sleep_for(3s);
  size_t unexpected = 0, repeated = 0;
  for (const auto& [key, bodies] : arrived()) {
    auto e = expected.find(key);
    if (e == expected.end()) {
      if (++unexpected <= 5) ADD_FAILURE() << "a key the log does not define: " << key << " " << *bodies.begin();
      continue;
    }
    EXPECT_EQ(bodies.size(), 1u) << key << " came with " << bodies.size() << " payloads, e.g.\n"
                                 << *bodies.begin() << "\n" << *bodies.rbegin();
    rapidjson::Document d;
    d.Parse(bodies.begin()->c_str());
    ASSERT_TRUE(d.IsObject()) << *bodies.begin();
    EXPECT_EQ(d["collapsed"].GetUint64(), e->second.collapsed) << key;
    EXPECT_EQ(d["seq"].GetUint64(), e->second.seq) << key;
    EXPECT_EQ(std::string(d["conversation_id"].GetString()), e->second.conversation) << key;
  }
  EXPECT_EQ(unexpected, 0u);
  for (const auto& req : receiver.requests()) {
    auto body = HttpReceiver::body(req);
    if (body.find(fmt::format(R"("user_id":{},)", online.id)) != std::string::npos) ++repeated;
    EXPECT_EQ(body.find(muted_conv), std::string::npos) << "pushed for a muted conversation: " << body;
  }
  EXPECT_EQ(repeated, 0u) << "pushed to the online user";
  std::cout << "[ note ] " << expected.size() << " (window, device) keys, " << receiver.requests().size()
            << " requests in all\n";
}

}  // namespace
}  // namespace imlog::testing
