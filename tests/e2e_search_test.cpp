// End to end, message search (issue 17): over real sockets to the built `imlog serve`, REST
// `GET /api/v1/search/messages` and the WebSocket `search` frame find English and Chinese words
// only where the user may read them: their own conversations, a `from_join` group from their
// join on, never a recalled message, never a conversation they are not in.

#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kWait = 20s;

constexpr std::string_view kTestConfig = R"(
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 5s
)";

struct User {
  std::string name;
  uint64_t id = 0;
  std::string token;
};

User make_user(const ImlogServer& s, std::string_view base) {
  static std::atomic<int> n{0};
  User u;
  u.name = fmt::format("{}_{}_{}", base, ::getpid() % 100000, n++);
  auto body = fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(u.name));
  auto reg = s.http().post("/api/v1/auth/register", body);
  EXPECT_EQ(reg.status, 201) << reg.body << reg.error;
  if (reg.status != 201) return u;
  u.id = reg.json()["user_id"].GetUint64();
  auto login = s.http().post("/api/v1/auth/login", body);
  EXPECT_EQ(login.status, 200) << login.body;
  if (login.status == 200) u.token = login.json()["access_token"].GetString();
  return u;
}

std::string single(uint64_t a, uint64_t b) { return fmt::format("single_{}_{}", std::min(a, b), std::max(a, b)); }

// Percent-encodes a query parameter's value (UTF-8 bytes included).
std::string encode(std::string_view v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') out += static_cast<char>(c);
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

// The contents of a search answer's results, in order.
std::vector<std::string> contents(const HttpResult& r) {
  std::vector<std::string> out;
  auto doc = r.json();
  if (!doc.IsObject() || !doc.HasMember("results")) return out;
  for (const auto& x : doc["results"].GetArray()) out.emplace_back(x["message"]["content"].GetString());
  return out;
}

// The hit pieces of the first result's snippet, joined by '|'.
std::string hits(const HttpResult& r) {
  auto doc = r.json();
  std::string out;
  if (!doc.IsObject() || doc["results"].Empty()) return out;
  for (const auto& p : doc["results"][0]["snippet"].GetArray()) {
    if (p["hit"].GetBool()) out += (out.empty() ? "" : "|") + std::string(p["text"].GetString());
  }
  return out;
}

class E2eSearch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("imlog-e2e-search");
    server_ = new ImlogServer(dir_->str(), kTestConfig);
    EXPECT_TRUE(server_->start()) << "imlog did not become ready on port " << server_->port();
  }
  static void TearDownTestSuite() {
    if (server_ && server_->running()) {
      auto st = server_->terminate();
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "imlog did not stop cleanly on SIGTERM";
    }
    delete server_;
    delete dir_;
    server_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_ && server_->running()) << "the server did not start"; }
  static const ImlogServer& s() { return *server_; }

  static HttpResult search(const User& u, std::string_view q, std::string_view extra = {}) {
    return s().http().get(fmt::format("/api/v1/search/messages?q={}{}", encode(q), extra), u.token);
  }
  // Searches until `pred` holds of the answer or kWait passes; the last answer.
  static HttpResult search_until(const User& u, std::string_view q, const std::function<bool(const HttpResult&)>& pred,
                                 std::string_view extra = {}) {
    HttpResult r;
    EXPECT_TRUE(wait_until([&] {
      r = search(u, q, extra);
      return r.status == 200 && pred(r);
    }, kWait)) << "searching `" << q << "`: " << r.status << " " << r.body;
    return r;
  }
  static std::string send(const User& from, const std::string& conv, std::string_view content) {
    auto r = s().http().post(fmt::format("/api/v1/conversations/{}/messages", conv),
                             fmt::format(R"({{"content":{}}})", json_quote(std::string(content))), from.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? std::string(r.json()["message_id"].GetString()) : std::string();
  }

  static TempDir* dir_;
  static ImlogServer* server_;
};
TempDir* E2eSearch::dir_ = nullptr;
ImlogServer* E2eSearch::server_ = nullptr;

auto has_n(size_t n) {
  return [n](const HttpResult& r) { return contents(r).size() == n; };
}

TEST_F(E2eSearch, FindsEnglishAndChineseWordsOnlyWhereTheUserMayRead) {
  User ann = make_user(s(), "ann"), bob = make_user(s(), "bob"), cat = make_user(s(), "cat"),
       dan = make_user(s(), "dan");
  const std::string ab = single(ann.id, bob.id);
  send(ann, ab, "Let's go CLIMBING at the café");
  send(bob, ab, "我们明天去攀岩吧");
  std::string zebra = send(ann, ab, "zebra crossing");
  auto recall = s().http().post(fmt::format("/api/v1/conversations/{}/messages/{}/recall", ab, zebra), "{}", ann.token);
  EXPECT_EQ(recall.status, 204) << recall.body;
  send(ann, ab, "sentinel after the recall");

  // A from_join group: cat is added after the first granite message.
  auto g = s().http().post("/api/v1/groups",
                           fmt::format(R"({{"name":"rocks","history":"from_join","members":[{}]}})", bob.id), ann.token);
  ASSERT_EQ(g.status, 201) << g.body;
  const std::string group = g.json()["conversation_id"].GetString();
  const uint64_t group_id = g.json()["group_id"].GetUint64();
  send(ann, group, "granite 花岗岩 before cat");
  auto add = s().http().post(fmt::format("/api/v1/groups/{}/members", group_id), fmt::format(R"({{"user_id":{}}})", cat.id),
                             ann.token);
  ASSERT_EQ(add.status, 200) << add.body;
  send(ann, group, "granite 花岗岩 after cat");

  // English, case- and accent-folded, with the matches marked.
  auto cafe = search_until(bob, "CAFE climbing", has_n(1));
  EXPECT_EQ(contents(cafe), std::vector<std::string>{"Let's go CLIMBING at the café"}) << cafe.body;
  EXPECT_EQ(hits(cafe), "CLIMBING|café") << cafe.body;
  // Chinese by two characters together, as written.
  auto climb = search_until(ann, "攀岩", has_n(1));
  EXPECT_EQ(contents(climb), std::vector<std::string>{"我们明天去攀岩吧"}) << climb.body;
  EXPECT_EQ(hits(climb), "攀岩");
  EXPECT_TRUE(contents(search(ann, "岩攀")).empty());
  // A recalled message is never found (the sentinel after it is, so the recall was projected).
  search_until(ann, "sentinel", has_n(1));
  auto gone = search(ann, "zebra");
  EXPECT_EQ(gone.status, 200);
  EXPECT_TRUE(contents(gone).empty()) << gone.body;

  // The group: bob reads both, cat only what came after the join, dan nothing.
  auto bobs = search_until(bob, "花岗岩", has_n(2));
  EXPECT_EQ(contents(bobs), (std::vector<std::string>{"granite 花岗岩 after cat", "granite 花岗岩 before cat"}));
  auto cats = search_until(cat, "granite", has_n(1));
  EXPECT_EQ(contents(cats), std::vector<std::string>{"granite 花岗岩 after cat"}) << cats.body;
  EXPECT_EQ(contents(search(cat, "花岗岩")), std::vector<std::string>{"granite 花岗岩 after cat"});
  EXPECT_TRUE(contents(search(dan, "granite")).empty());
  EXPECT_TRUE(contents(search(cat, "climbing")).empty()) << "ann and bob's conversation is not cat's";
  auto forbidden = search(dan, "climbing", "&conversation_id=" + ab);
  EXPECT_EQ(forbidden.status, 403) << forbidden.body;

  // Pages by the cursor, newest first.
  auto first = search(bob, "granite", "&limit=1");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(contents(first), std::vector<std::string>{"granite 花岗岩 after cat"});
  ASSERT_TRUE(first.json()["next_before"].IsString()) << first.body;
  std::string next = first.json()["next_before"].GetString();
  auto second = search(bob, "granite", "&limit=1&before=" + next);
  EXPECT_EQ(contents(second), std::vector<std::string>{"granite 花岗岩 before cat"}) << second.body;
  auto in_group = search(bob, "granite", "&conversation_id=" + group);
  EXPECT_EQ(contents(in_group).size(), 2u);
  EXPECT_TRUE(contents(search(bob, "granite", "&conversation_id=" + ab)).empty());

  // Bad input gets a clear error.
  auto nothing = search(bob, "a 好");
  EXPECT_EQ(nothing.status, 400);
  EXPECT_NE(nothing.body.find("nothing to search for"), std::string::npos) << nothing.body;
  EXPECT_EQ(s().http().get("/api/v1/search/messages", bob.token).status, 400);
  EXPECT_EQ(search(bob, "granite", "&limit=51").status, 400);
  EXPECT_EQ(search(bob, "granite", "&conversation_id=nowhere").status, 400);

  // The WebSocket frame answers as REST does.
  auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws", cat.token);
  ASSERT_NE(ws, nullptr);
  ws->send("search", R"({"q":"花岗岩","limit":5})");
  auto result = ws->wait_for("search-result", kWait);
  ASSERT_TRUE(result.has_value());
  const auto& results = result->data()["results"];
  ASSERT_EQ(results.Size(), 1u) << result->raw;
  EXPECT_STREQ(results[0]["message"]["content"].GetString(), "granite 花岗岩 after cat");
  EXPECT_TRUE(result->data()["next_before"].IsNull());
  ws->send("search", R"({"q":"好"})");
  auto refused = ws->wait_for("error", kWait);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->str("code"), "invalid");
  EXPECT_EQ(refused->str("request_type"), "search");
  ws->send("search", fmt::format(R"({{"q":"climbing","conversation_id":"{}"}})", ab));
  auto not_yours = ws->wait_for("error", kWait);
  ASSERT_TRUE(not_yours.has_value());
  EXPECT_EQ(not_yours->str("code"), "forbidden");
}

}  // namespace
}  // namespace imlog::testing
