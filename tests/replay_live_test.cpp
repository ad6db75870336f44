// Replay equals live, for every read model (docs/architecture.md: "a rebuilt model equals the live one"):
//
//   a real `imlog serve` with the RocksDB, MySQL and Redis read models on (the MariaDB and Redis
//   of scripts/test) runs a workload driven over REST by several client threads at once —
//   registrations, friendships, a block and an unblock, profile edits, groups with joins and a
//   leave, a removal (a ban), settings changes, a lifted ban, a public group joined by a stranger,
//   one-to-one, group and world messages, a recall, read markers — then stops (SIGTERM);
//   `replay --projection P --verify` rebuilds each model from offset 0 into a fresh target and
//   must find it equal to the live one, digests printed. Then one row or key of each live model
//   is damaged behind its back, and --verify must exit 3 naming it.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cppconn/connection.h>
#include <cppconn/statement.h>
#include <fmt/format.h>
#include <rocksdb/db.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "imlog/projections/rocksdb_model.h"
#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/servers.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

// A `replay` run (run_command(), support.h) and what the tests read in its output.
struct ReplayRun : CommandRun {
  [[nodiscard]] bool has(std::string_view s) const { return out.find(s) != std::string::npos; }
  // The `verify: equal: …` line, or "".
  [[nodiscard]] std::string equal_line() const {
    auto at = out.find("verify: equal:");
    return at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
  }
};

using User = SignedIn;

// The REST client side of the workload.
class Client {
 public:
  explicit Client(int port) : http_("127.0.0.1", port) {}

  User join(const std::string& name) { return testing::join(http_, name); }

  // Expects a 2xx answer; returns the body parsed.
  rapidjson::Document call(const char* method, const std::string& target, const std::string& body, const User& u) {
    auto r = http_.request(method, target, body, u.token);
    EXPECT_TRUE(r.status >= 200 && r.status < 300) << method << " " << target << " " << body << " → " << r.status
                                                   << " " << r.body;
    return r.json();
  }

  uint64_t send(const User& u, const std::string& conv, const std::string& text, int n) {
    auto j = call("POST", "/api/v1/conversations/" + conv + "/messages",
                  fmt::format(R"({{"client_msg_id":"c{}-{}","content":"{}"}})", u.id, n, text), u);
    return j.IsObject() && j.HasMember("seq_id") ? j["seq_id"].GetUint64() : 0;
  }

 private:
  HttpClient http_;
};

std::string single(uint64_t a, uint64_t b) { return fmt::format("single_{}_{}", std::min(a, b), std::max(a, b)); }

class ReplayLive : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& servers = TestServers::get();
    ASSERT_TRUE(servers.mysql_problem.empty()) << servers.mysql_problem;
    ASSERT_TRUE(servers.redis_problem.empty()) << servers.redis_problem;
    mysql_ = fresh_mysql("live");
    redis_ = fresh_redis("live");
    server_ = std::make_unique<ImlogServer>(dir_.str(), fmt::format(R"(
log: {{level: warn}}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  ws_rate: 1000
  read_model_wait: 5s
mysql: {{host: "{}", port: {}, user: "{}", password: "{}", database: {}, pool_size: 2}}
redis: {{host: "{}", port: {}, key_prefix: "{}", hot_messages: 20}}
)",
                                                                    mysql_.host, mysql_.port, mysql_.user,
                                                                    mysql_.password, mysql_.database, redis_.host,
                                                                    redis_.port, redis_.key_prefix));
    data_ = server_->data_dir();
    config_ = server_->config_path();
  }

  void TearDown() override {
    if (mysql_.database.empty() || !TestServers::get().mysql_problem.empty()) return;
    try {
      auto conn = raw_mysql(mysql_);
      std::unique_ptr<sql::Statement> st(conn->createStatement());
      st->execute("DROP DATABASE IF EXISTS " + mysql_.database);
      st->execute("DROP DATABASE IF EXISTS " + mysql_.database + "_replay");
    } catch (...) {
    }
  }

  ReplayRun replay(const std::string& projection, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{(binary_dir() / "replay").string(), "--projection", projection, "--config", config_,
                                  "--data-dir", data_.string()};
    // The Redis target defaults to the prefix `replay:`; a test's own keeps runs apart.
    if (projection == "redis") extra.insert(extra.end(), {"--target", redis_.key_prefix + "replay:"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return ReplayRun{run_command(argv)};
  }

  // Runs `imlog serve` over the workload, then stops it with SIGTERM.
  void serve_workload() {
    ASSERT_TRUE(server_->start()) << "imlog did not get ready";
    workload(server_->port());
    auto st = server_->terminate();
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "imlog did not stop cleanly";
  }

  void workload(int port) {
    Client c(port);
    std::vector<User> users;
    for (int i = 0; i < 8; ++i) users.push_back(c.join(fmt::format("live{}_{}", ::getpid() % 100000, i)));
    ASSERT_FALSE(::testing::Test::HasFailure());
    const User &a = users[0], &b = users[1], &d = users[2];
    c.call("POST", "/api/v1/friends/requests", fmt::format(R"({{"user_id":{},"note":"hi"}})", b.id), a);
    c.call("POST", fmt::format("/api/v1/friends/requests/{}/accept", a.id), "", b);
    c.call("PATCH", "/api/v1/users/me", R"({"nickname":"Ada","signature":"climbs"})", a);
    c.call("PATCH", "/api/v1/users/me/settings", R"({"allow_search":false})", d);
    c.call("POST", "/api/v1/blocks", fmt::format(R"({{"user_id":{}}})", d.id), b);
    c.call("DELETE", fmt::format("/api/v1/blocks/{}", d.id), "", b);
    auto g = c.call("POST", "/api/v1/groups",
                    fmt::format(R"({{"name":"crag","members":[{},{},{}]}})", b.id, d.id, users[3].id), a);
    ASSERT_TRUE(g.IsObject() && g.HasMember("conversation_id"));
    std::string group = g["conversation_id"].GetString();
    uint64_t group_id = g["group_id"].GetUint64();
    c.call("POST", fmt::format("/api/v1/groups/{}/members", group_id), fmt::format(R"({{"user_id":{}}})", users[4].id),
           a);
    c.call("POST", fmt::format("/api/v1/groups/{}/leave", group_id), "", users[3]);
    // Group settings and bans: a removal bans, the group opens, the ban is lifted, self-joins.
    c.call("POST", fmt::format("/api/v1/groups/{}/members", group_id), fmt::format(R"({{"user_id":{}}})", users[5].id),
           a);
    c.call("DELETE", fmt::format("/api/v1/groups/{}/members/{}", group_id, users[5].id), "", a);
    c.call("PATCH", fmt::format("/api/v1/groups/{}", group_id), R"({"join_policy":"public","history":"all"})", a);
    c.call("DELETE", fmt::format("/api/v1/groups/{}/bans/{}", group_id, users[5].id), "", a);
    c.call("POST", fmt::format("/api/v1/groups/{}/join", group_id), "", users[5]);
    auto open =
        c.call("POST", "/api/v1/groups", R"({"name":"boulder","join_policy":"public","history":"from_join"})", b);
    ASSERT_TRUE(open.IsObject() && open.HasMember("group_id"));
    c.call("POST", fmt::format("/api/v1/groups/{}/join", open["group_id"].GetUint64()), "", users[6]);

    // Several senders at once, so batches of the projectors mix streams and partitions.
    std::vector<std::thread> senders;
    std::atomic<int> sent{0};
    for (size_t s = 0; s < 4; ++s) {
      senders.emplace_back([&, s] {
        Client mine(port);
        const User& me = users[s];
        for (int n = 0; n < 40; ++n) {
          std::string conv = n % 4 == 0   ? group
                             : n % 7 == 0 ? std::string("world")
                                          : single(me.id, users[(s + 1 + n % 7) % users.size()].id);
          if (n % 4 == 0 && (s == 3)) conv = "world";  // user 3 left the group
          if (mine.send(me, conv, fmt::format("message {} from {} about granite", n, me.id), n) > 0) ++sent;
        }
      });
    }
    for (auto& t : senders) t.join();
    EXPECT_EQ(sent.load(), 160);
    // A recall and read markers.
    auto page = c.call("GET", "/api/v1/conversations/" + group + "/messages?limit=5", "", a);
    ASSERT_TRUE(page.IsObject() && page["messages"].Size() > 0);
    const auto& first = page["messages"][0];
    if (first["sender_id"].GetUint64() == a.id) {
      c.call("POST", fmt::format("/api/v1/conversations/{}/messages/{}/recall", group, first["message_id"].GetString()),
             "", a);
    }
    c.call("POST", "/api/v1/conversations/" + group + "/read", R"({"seq_id":10})", b);
    c.call("POST", "/api/v1/conversations/" + single(a.id, b.id) + "/read", R"({"seq_id":3})", b);
  }

  TempDir dir_{"imlog-replay-live"};
  std::unique_ptr<ImlogServer> server_;
  std::filesystem::path data_;
  std::string config_;
  MysqlConfig mysql_;
  RedisConfig redis_;
};

TEST_F(ReplayLive, EveryReadModelRebuiltFromTheLogVerifiesEqualToTheLiveOneAndDamageIsNamed) {
  ASSERT_NO_FATAL_FAILURE(serve_workload());

  for (const char* projection : {"rocksdb", "mysql", "redis"}) {
    ReplayRun r = replay(projection, {"--verify"});
    EXPECT_EQ(r.status, 0) << projection << ":\n" << r.out;
    EXPECT_FALSE(r.equal_line().empty()) << projection << ":\n" << r.out;
    EXPECT_TRUE(r.has("starting at 0")) << projection << ":\n" << r.out;
    std::cout << "replay " << projection << " --verify: " << r.equal_line() << "\n";
  }

  // Damage one message row of the live MySQL model.
  {
    auto conn = raw_mysql(mysql_);
    std::unique_ptr<sql::Statement> st(conn->createStatement());
    EXPECT_EQ(st->executeUpdate("UPDATE messages SET content = 'tampered' WHERE recalled = 0 ORDER BY message_id "
                                "DESC LIMIT 1"),
              1);
  }
  ReplayRun m = replay("mysql", {"--verify"});
  EXPECT_EQ(m.status, 3) << m.out;
  EXPECT_TRUE(m.has("verify: DIFFERENT")) << m.out;
  EXPECT_TRUE(m.has("key `messages")) << m.out;
  EXPECT_TRUE(m.has("tampered")) << m.out;
  std::cout << m.out;

  // Damage one conversation's sequence counter in the live Redis model.
  {
    RawRedis raw(redis_);
    std::string keys = raw.run({"KEYS", redis_.key_prefix + "conv_seq:*"});
    ASSERT_FALSE(keys.empty());
    std::string key = keys.substr(0, keys.find('\n'));
    ASSERT_EQ(raw.run({"SET", key, "424242"}), "OK");
    ReplayRun r = replay("redis", {"--verify"});
    EXPECT_EQ(r.status, 3) << r.out;
    EXPECT_TRUE(r.has("verify: DIFFERENT")) << r.out;
    EXPECT_TRUE(r.has(key.substr(redis_.key_prefix.size()))) << "names " << key << ":\n" << r.out;
    EXPECT_TRUE(r.has("424242")) << r.out;
    std::cout << r.out;
  }

  // And the RocksDB model (its own test covers more): a removed row is named too.
  {
    std::string key;
    {
      RocksDbModelConfig mc;
      mc.dir = (data_ / "model").string();
      auto model = open_rocksdb_model(mc);
      ASSERT_TRUE(model);
      ASSERT_TRUE((*model)->dump([&](std::string_view k, std::string_view) {
        if (k.starts_with("m|world|")) key = k;
        return key.empty();
      }));
    }
    ASSERT_FALSE(key.empty());
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), (data_ / "model").string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), key).ok());
    ASSERT_TRUE(db->Close().ok());
    db.reset();
    ReplayRun r = replay("rocksdb", {"--verify"});
    EXPECT_EQ(r.status, 3) << r.out;
    EXPECT_TRUE(r.has("`" + key + "`")) << r.out;
    std::cout << r.out;
  }
}

}  // namespace
}  // namespace imlog::testing
