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
//     live MySQL and Redis models hold none of the expired rows;
//   - reading the policy (GET .../retention): members of a group and both users of a one-to-one
//     read the policy in force and what sets it, through every change and back to the default; a
//     stranger gets what a history read gives them; the override outlives its expired row.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cppconn/connection.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
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
    server_ = std::make_unique<ImlogServer>(dir_.str(), config("interval: 200ms"));
  }

  // The node's config, with `retention` as the keys of its retention section.
  std::string config(const std::string& retention) const {
    return fmt::format(R"(
log: {{level: warn}}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 5s
retention: {{{}}}
mysql: {{host: "{}", port: {}, user: "{}", password: "{}", database: {}, pool_size: 2}}
redis: {{host: "{}", port: {}, key_prefix: "{}", hot_messages: 20}}
)",
                       retention, mysql_.host, mysql_.port, mysql_.user, mysql_.password, mysql_.database,
                       redis_.host, redis_.port, redis_.key_prefix);
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

  // A group `owner` creates with `member` in it: its conversation id (empty if refused).
  std::string create_group(const User& owner, const std::string& name, const User& member) {
    auto g = call("POST", "/api/v1/groups", fmt::format(R"({{"name":"{}","members":[{}]}})", name, member.id), owner);
    EXPECT_EQ(g.status, 201) << g.body;
    return g.status == 201 ? g.json()["conversation_id"].GetString() : "";
  }

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

  // GET .../retention as `u`, again every 50 ms for up to 10 s until `done` holds of the answer
  // (reads follow the log a moment behind a PUT); the last answer, a failure if it never held.
  rapidjson::Document policy(const std::string& conv, const User& u,
                             const std::function<bool(const rapidjson::Document&)>& done) {
    HttpResult r;
    rapidjson::Document j;
    for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
      r = call("GET", "/api/v1/conversations/" + conv + "/retention", "", u);
      j = r.json();
      if (r.status == 200 && j.IsObject() && done(j)) return j;
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "the retention of " << conv << " as user " << u.id << " never became what was awaited: "
                  << r.status << " " << r.body;
    return j;
  }

  // The policy in force: awaits keep_days and source, then returns the whole answer.
  rapidjson::Document policy_is(const std::string& conv, const User& u, uint64_t keep_days, const std::string& source) {
    return policy(conv, u, [&](const rapidjson::Document& j) {
      return j["keep_days"].GetUint64() == keep_days && j["source"].GetString() == source;
    });
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
  const std::string group = create_group(a, "crag", b);
  ASSERT_FALSE(group.empty());
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
  auto kept = policy_is(group, b, 1, "group");
  EXPECT_EQ(kept["group"]["keep_days"].GetUint64(), 1u) << "the override outlives its expired retention_set row";
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

// A deployment default of 90 days. A group: the default, then the owner's 30 as a member reads it,
// then back to the default. A one-to-one: each user's own, the shorter applying; for ever counts as
// the longest. A stranger is refused as a history read refuses them.
TEST_F(E2eRetention, MembersReadThePolicyInForceAndWhatSetsIt) {
  server_ = std::make_unique<ImlogServer>(dir_.str(), config("interval: 200ms, default_keep_days: 90"));
  ASSERT_TRUE(server_->start()) << "imlog did not get ready";
  User a = join("pol_ann"), b = join("pol_bob"), c = join("pol_cyd");
  ASSERT_FALSE(HasFailure());
  const std::string group = create_group(a, "policies", b);
  ASSERT_FALSE(group.empty());
  const std::string set_group = "/api/v1/conversations/" + group + "/retention";

  auto before = policy_is(group, b, 90, "default");
  EXPECT_EQ(before["conversation_id"].GetString(), group);
  EXPECT_EQ(before["default_keep_days"].GetUint64(), 90u);
  EXPECT_FALSE(before["group"].HasMember("keep_days")) << "no override";
  EXPECT_FALSE(before.HasMember("users"));
  ASSERT_EQ(call("PUT", set_group, R"({"keep_days":30})", a).status, 200);
  auto set = policy_is(group, b, 30, "group");
  EXPECT_EQ(set["group"]["keep_days"].GetUint64(), 30u);
  EXPECT_EQ(set["default_keep_days"].GetUint64(), 90u);

  // Not a member: what GET .../messages answers them.
  auto history = call("GET", "/api/v1/conversations/" + group + "/messages", "", c);
  auto refused = call("GET", set_group, "", c);
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(refused.status, history.status);
  EXPECT_EQ(refused.json()["code"].GetString(), std::string("forbidden"));

  // One-to-one: ann 30, bob 7: both read 7, set by a user, and each one's preference.
  const std::string ab = single_stream(a.id, b.id), set_ab = "/api/v1/conversations/" + ab + "/retention";
  ASSERT_EQ(call("PUT", set_ab, R"({"keep_days":30})", a).status, 200);
  ASSERT_EQ(call("PUT", set_ab, R"({"keep_days":7})", b).status, 200);
  for (const User* u : {&a, &b}) {
    auto p = policy_is(ab, *u, 7, "user");
    ASSERT_TRUE(p.HasMember("users") && p["users"].Size() == 2) << "user " << u->id;
    std::map<uint64_t, uint64_t> prefs;
    for (const auto& x : p["users"].GetArray()) prefs[x["user_id"].GetUint64()] = x["keep_days"].GetUint64();
    EXPECT_EQ(prefs, (std::map<uint64_t, uint64_t>{{a.id, 30}, {b.id, 7}})) << "user " << u->id;
    EXPECT_LT(p["users"][0]["user_id"].GetUint64(), p["users"][1]["user_id"].GetUint64());
    EXPECT_FALSE(p.HasMember("group"));
  }
  EXPECT_EQ(call("GET", set_ab, "", c).status, 403) << "not one of the two";
  EXPECT_EQ(call("GET", "/api/v1/conversations/nowhere/retention", "", a).status, 400);

  // Back to the default: the group's is gone; bob's default (90) is longer than ann's 30.
  ASSERT_EQ(call("PUT", set_group, R"({"keep":"default"})", a).status, 200);
  auto cleared = policy_is(group, b, 90, "default");
  EXPECT_FALSE(cleared["group"].HasMember("keep_days"));
  ASSERT_EQ(call("PUT", set_ab, R"({"keep":"default"})", b).status, 200);
  auto bob_default = policy_is(ab, a, 30, "user");
  for (const auto& x : bob_default["users"].GetArray()) {
    EXPECT_EQ(x.HasMember("keep_days"), x["user_id"].GetUint64() == a.id) << "only ann's preference is set";
  }
  // Ann keeps for ever, the longest: bob's default applies.
  ASSERT_EQ(call("PUT", set_ab, R"({"keep":"forever"})", a).status, 200);
  auto forever = policy(ab, b, [&](const rapidjson::Document& j) {
    for (const auto& x : j["users"].GetArray()) {
      if (x["user_id"].GetUint64() == a.id) return x.HasMember("keep_days") && x["keep_days"].GetUint64() == 0;
    }
    return false;
  });
  EXPECT_EQ(forever["keep_days"].GetUint64(), 90u);
  EXPECT_EQ(forever["source"].GetString(), std::string("default"));
  auto world = policy_is("world", c, 90, "default");
  EXPECT_FALSE(world.HasMember("group") || world.HasMember("users"));
}

}  // namespace
}  // namespace imlog::testing
