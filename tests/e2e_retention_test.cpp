// Message retention end to end (issue 18; docs/data-lifecycle.md, "Message retention"): a real
// `imlog serve` with the RocksDB, MySQL and Redis read models and a retention pass every 200 ms.
// The node's clock is moved forward by days through IMLOG_TEST_CLOCK_FILE (node.cpp), so nothing
// waits for a day to pass.
//
//   - setting a policy: a group's owner only (a member and an outsider get 403), bad bodies 400,
//     world 403; in a one-to-one each user's own, the shorter of the two applies;
//   - a restart between setting the policy and the expiry: the retention worker reads the log
//     again and the expiry still comes;
//   - three days later the group's rows up to the policy change and the one-to-one's old rows are
//     gone from history, search and unread counts, later rows keep their seqs, new messages take
//     the next seq;
//   - `replay --verify` of every model after the expiry finds it equal to the live one, and the
//     live MySQL and Redis models hold none of the expired rows.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cppconn/connection.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "imlog/engine/streams.h"
#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/servers.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;
constexpr int64_t kDayMs = 24LL * 3600 * 1000;

using User = SignedIn;

class E2eRetention : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto& servers = TestServers::get();
    ASSERT_TRUE(servers.mysql_problem.empty()) << servers.mysql_problem;
    ASSERT_TRUE(servers.redis_problem.empty()) << servers.redis_problem;
    mysql_ = fresh_mysql("ret");
    redis_ = fresh_redis("ret");
    clock_file_ = dir_.str() + "/clock";
    skip_days(0);
    ::setenv("IMLOG_TEST_CLOCK_FILE", clock_file_.c_str(), 1);  // the server inherits it
    server_ = std::make_unique<ImlogServer>(dir_.str(), fmt::format(R"(
log: {{level: warn}}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 5s
retention: {{interval: 200ms}}
mysql: {{host: "{}", port: {}, user: "{}", password: "{}", database: {}, pool_size: 2}}
redis: {{host: "{}", port: {}, key_prefix: "{}", hot_messages: 20}}
)",
                                                                    mysql_.host, mysql_.port, mysql_.user,
                                                                    mysql_.password, mysql_.database, redis_.host,
                                                                    redis_.port, redis_.key_prefix));
  }

  void TearDown() override {
    ::unsetenv("IMLOG_TEST_CLOCK_FILE");
    if (mysql_.database.empty() || !TestServers::get().mysql_problem.empty()) return;
    try {
      auto conn = raw_mysql(mysql_);
      std::unique_ptr<sql::Statement> st(conn->createStatement());
      st->execute("DROP DATABASE IF EXISTS " + mysql_.database);
      st->execute("DROP DATABASE IF EXISTS " + mysql_.database + "_replay");
    } catch (...) {
    }
  }

  void skip_days(int days) {
    std::ofstream(clock_file_) << static_cast<int64_t>(days) * kDayMs << "\n";
    std::this_thread::sleep_for(120ms);  // the node reads the file at most every 50 ms
  }

  HttpResult call(const char* method, const std::string& target, const std::string& body, const User& u) {
    return server_->http().request(method, target, body, u.token);
  }

  User join(const std::string& name) { return testing::join(server_->http(), name); }

  // A fresh access token (days later the old one has expired).
  User login(const std::string& name) { return log_in(server_->http(), name); }

  uint64_t send(const User& u, const std::string& conv, const std::string& text) {
    auto r = call("POST", "/api/v1/conversations/" + conv + "/messages",
                  fmt::format(R"({{"client_msg_id":"m{}","content":"{}"}})", ++sent_, text), u);
    EXPECT_EQ(r.status, 201) << r.body;
    auto j = r.json();
    return j.IsObject() && j.HasMember("seq_id") ? j["seq_id"].GetUint64() : 0;
  }

  // The seqs of a conversation's whole history, oldest first.
  std::vector<uint64_t> seqs(const std::string& conv, const User& u) {
    auto r = call("GET", "/api/v1/conversations/" + conv + "/messages?after_seq=0&limit=200", "", u);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<uint64_t> out;
    auto j = r.json();
    if (!j.IsObject() || !j.HasMember("messages")) return out;
    for (const auto& m : j["messages"].GetArray()) out.push_back(m["seq_id"].GetUint64());
    return out;
  }

  size_t found(const std::string& q, const User& u) {
    auto r = call("GET", "/api/v1/search/messages?q=" + q, "", u);
    EXPECT_EQ(r.status, 200) << r.body;
    auto j = r.json();
    return j.IsObject() && j.HasMember("results") ? j["results"].Size() : 0;
  }

  uint64_t unread(const std::string& conv, const User& u) {
    auto r = call("GET", "/api/v1/conversations", "", u);
    EXPECT_EQ(r.status, 200) << r.body;
    auto j = r.json();
    for (const auto& c : j["conversations"].GetArray()) {
      if (c["conversation_id"].GetString() == conv) return c["unread"].GetUint64();
    }
    ADD_FAILURE() << conv << " is not among the conversations of user " << u.id;
    return 0;
  }

  // Waits until the conversation's history starts at `first` (the expiry came), up to 20 s.
  bool history_starts_at(const std::string& conv, const User& u, uint64_t first) {
    for (auto deadline = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < deadline;) {
      auto s = seqs(conv, u);
      if (!s.empty() && s.front() == first) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  CommandRun replay(const std::string& projection) {
    std::vector<std::string> argv{(binary_dir() / "replay").string(), "--projection", projection, "--config",
                                  server_->config_path(), "--data-dir", server_->data_dir(), "--verify"};
    if (projection == "redis") argv.insert(argv.end(), {"--target", redis_.key_prefix + "replay:"});
    return run_command(argv);
  }

  TempDir dir_{"imlog-e2e-retention"};
  std::string clock_file_;
  std::unique_ptr<ImlogServer> server_;
  MysqlConfig mysql_;
  RedisConfig redis_;
  int sent_ = 0;
};

TEST_F(E2eRetention, ExpiredMessagesLeaveEveryModelAtTheSameSeqAndReplayStaysEqual) {
  ASSERT_TRUE(server_->start()) << "imlog did not get ready";
  User a = join("ret_ann"), b = join("ret_bob"), c = join("ret_cyd");
  ASSERT_FALSE(HasFailure());
  auto g = call("POST", "/api/v1/groups", fmt::format(R"({{"name":"crag","members":[{}]}})", b.id), a);
  ASSERT_EQ(g.status, 201) << g.body;
  const std::string group = g.json()["conversation_id"].GetString();
  send(b, group, "bob was here");
  for (int i = 0; i < 5; ++i) send(a, group, fmt::format("old message {} about limestone", i));
  const std::string ab = single_stream(a.id, b.id);
  send(a, ab, "old single about limestone");
  send(b, ab, "old reply about limestone");

  // Who may set it, and what.
  const std::string retention = "/api/v1/conversations/" + group + "/retention";
  EXPECT_EQ(call("PUT", retention, R"({"keep_days":1})", b).status, 403) << "a member, not an admin";
  EXPECT_EQ(call("PUT", retention, R"({"keep_days":1})", c).status, 403) << "not a member";
  EXPECT_EQ(call("PUT", retention, R"({"keep_days":0})", a).status, 400);
  EXPECT_EQ(call("PUT", retention, R"({"keep_days":36501})", a).status, 400);
  EXPECT_EQ(call("PUT", retention, R"({"keep":"sometimes"})", a).status, 400);
  EXPECT_EQ(call("PUT", retention, R"({"keep":"forever","keep_days":3})", a).status, 400);
  EXPECT_EQ(call("PUT", "/api/v1/conversations/world/retention", R"({"keep_days":1})", a).status, 403);
  auto set = call("PUT", retention, R"({"keep_days":1})", a);
  ASSERT_EQ(set.status, 200) << set.body;
  const uint64_t policy_seq = set.json()["seq_id"].GetUint64();
  EXPECT_EQ(policy_seq, 8u) << "created, bob's, ann's five, then the policy";
  // One-to-one: ann keeps 30 days, bob 2: bob's shorter policy applies.
  auto mine = call("PUT", "/api/v1/conversations/" + ab + "/retention", R"({"keep_days":30})", a);
  ASSERT_EQ(mine.status, 200) << mine.body;
  auto theirs = call("PUT", "/api/v1/conversations/" + ab + "/retention", R"({"keep_days":2})", b);
  ASSERT_EQ(theirs.status, 200) << theirs.body;
  EXPECT_EQ(call("PUT", "/api/v1/conversations/" + ab + "/retention", R"({"keep_days":2})", c).status, 403);
  EXPECT_EQ(unread(group, b), 5u);
  EXPECT_EQ(found("limestone", b), 7u);

  // A restart before the expiry: the worker reads the log again.
  auto st = server_->terminate();
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "imlog did not stop cleanly";
  skip_days(3);
  ASSERT_TRUE(server_->start()) << "imlog did not get ready again";
  a = login("ret_ann");
  b = login("ret_bob");
  ASSERT_FALSE(HasFailure());
  uint64_t fresh1 = send(a, group, "fresh news");
  uint64_t fresh2 = send(a, group, "fresh again");
  EXPECT_EQ(fresh1, policy_seq + 1);
  ASSERT_TRUE(history_starts_at(group, b, fresh1)) << "the rows through the policy change expire";
  EXPECT_EQ(seqs(group, b), (std::vector<uint64_t>{fresh1, fresh2})) << "later seqs unchanged";
  EXPECT_EQ(send(b, ab, "new single"), 5u);
  ASSERT_TRUE(history_starts_at(ab, a, 5)) << "bob's 2 days apply: everything up to his policy (4) goes";
  EXPECT_EQ(found("limestone", b), 0u) << "expired rows are never found";
  EXPECT_EQ(found("fresh", b), 2u);
  EXPECT_EQ(unread(group, b), 2u) << "only the fresh messages are unread";
  EXPECT_EQ(send(b, group, "after it all"), fresh2 + 1);

  // Every model rebuilt from the log equals the live one.
  st = server_->terminate();
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "imlog did not stop cleanly";
  for (const char* projection : {"rocksdb", "mysql", "redis"}) {
    CommandRun r = replay(projection);
    EXPECT_EQ(r.status, 0) << projection << ":\n" << r.out;
    EXPECT_NE(r.out.find("verify: equal:"), std::string::npos) << projection << ":\n" << r.out;
  }
  // And the live stores hold none of the expired rows.
  {
    auto conn = raw_mysql(mysql_);
    std::unique_ptr<sql::Statement> q(conn->createStatement());
    std::unique_ptr<sql::ResultSet> rs(
        q->executeQuery("SELECT COUNT(*) FROM messages WHERE content LIKE '%limestone%' OR content LIKE '%bob was%'"));
    ASSERT_TRUE(rs->next());
    EXPECT_EQ(rs->getUInt64(1), 0u);
    std::unique_ptr<sql::ResultSet> tokens(q->executeQuery("SELECT COUNT(*) FROM message_tokens WHERE token = 'limestone'"));
    ASSERT_TRUE(tokens->next());
    EXPECT_EQ(tokens->getUInt64(1), 0u);
  }
  RawRedis raw(redis_);
  std::string hot = raw.run({"ZRANGE", redis_.key_prefix + "hot_messages:" + group, "0", "-1"});
  EXPECT_EQ(hot.find("limestone"), std::string::npos) << hot;
  EXPECT_NE(hot.find("fresh news"), std::string::npos) << hot;
}

}  // namespace
}  // namespace imlog::testing
