// End to end, people (issue 6): profiles, settings, search, friends, blocks, presence and avatars,
// against the built `imlog serve` as a child process on a free loopback port, over real sockets
// (HTTP and WebSocket). Every wait has a deadline; nothing sleeps. After all the flows the server
// is stopped with SIGTERM and `replay --verify` must find the rebuilt RocksDB model equal to the
// live one.

#include <signal.h>
#include <sodium.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kFrameWait = 10s;
constexpr auto kModelWait = 20s;
constexpr size_t kAvatarMax = 64 * 1024;

// Cheap password hashing, a short heartbeat (a silent peer goes offline within seconds) and a small
// avatar limit.
constexpr std::string_view kTestConfig = R"(
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  heartbeat_timeout: 3s
  read_model_wait: 5s
  avatar_max_bytes: 64KiB
)";

std::string single(uint64_t a, uint64_t b) { return fmt::format("single_{}_{}", std::min(a, b), std::max(a, b)); }

// ---- the server ---------------------------------------------------------------------------------

// A real `imlog serve` with this file's test config.
class Server : public ImlogServer {
 public:
  explicit Server(const std::string& dir) : ImlogServer(dir, kTestConfig) {}
};

struct User {
  std::string name;
  uint64_t id = 0;
  std::string token;
};

std::string unique_name(std::string_view base) {
  static std::atomic<int> n{0};
  return fmt::format("{}_{}_{}", base, ::getpid() % 100000, n++);
}

User make_user(const Server& s, std::string_view base) {
  User u;
  u.name = unique_name(base);
  auto reg = s.http().post("/api/v1/auth/register", fmt::format(R"({{"username":{},"password":"correct horse","nickname":{}}})",
                                                                json_quote(u.name), json_quote(base)));
  EXPECT_EQ(reg.status, 201) << reg.body << reg.error;
  if (reg.status != 201) return u;
  u.id = reg.json()["user_id"].GetUint64();
  auto login = s.http().post("/api/v1/auth/login",
                             fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(u.name)));
  EXPECT_EQ(login.status, 200) << login.body;
  if (login.status == 200) u.token = login.json()["access_token"].GetString();
  return u;
}

// A WebSocket of `u` speaking `subprotocol` (kWsJson or kWsBinary); `read` false: a silent peer.
std::unique_ptr<WsClient> connect_ws(const Server& s, const User& u, const std::string& subprotocol, bool read = true) {
  std::string error;
  auto ws = WsClient::connect("127.0.0.1", s.port(), "/ws?token=" + u.token, {}, nullptr, &error, read, subprotocol);
  EXPECT_TRUE(ws) << error;
  return ws;
}

void send_message(WsClient& ws, const std::string& conversation, const std::string& client_msg_id) {
  ws.send("send-message", fmt::format(R"({{"conversation_id":{},"client_msg_id":{},"content":"hello"}})",
                                      json_quote(conversation), json_quote(client_msg_id)));
}

// The answer to a send: "ack", or the error frame's code, or "" when neither came in time.
std::string send_outcome(WsClient& ws, const std::string& conversation, const std::string& client_msg_id) {
  send_message(ws, conversation, client_msg_id);
  auto deadline = std::chrono::steady_clock::now() + kFrameWait;
  auto mine = [&](const Frame& f) { return f.str("client_msg_id") == client_msg_id; };
  while (std::chrono::steady_clock::now() < deadline) {
    if (ws.wait_for("message-ack", 50ms, mine)) return "ack";
    if (auto e = ws.wait_for("error", 50ms, mine)) return e->str("code");
  }
  return "";
}

HttpResult put(const Server& s, const User& u, std::string_view target, std::string_view body) {
  return s.http().request("PUT", target, body, u.token);
}
HttpResult patch(const Server& s, const User& u, std::string_view target, std::string_view body) {
  return s.http().request("PATCH", target, body, u.token);
}
HttpResult del(const Server& s, const User& u, std::string_view target) {
  return s.http().request("DELETE", target, {}, u.token);
}

// The caller's friend list entry of `other` ("" when absent): friends, incoming or outgoing.
std::string friend_status(const Server& s, const User& u, uint64_t other, std::string_view filter = {}) {
  std::string target = "/api/v1/friends";
  if (!filter.empty()) target += "?status=" + std::string(filter);
  auto r = s.http().get(target, u.token);
  if (r.status != 200) return "error " + std::to_string(r.status);
  auto j = r.json();
  for (const auto& f : j["friends"].GetArray()) {
    if (f["user_id"].GetUint64() == other) return f["status"].GetString();
  }
  return "";
}

// a asks, b accepts; waits until both read models say friends.
void befriend(const Server& s, const User& a, const User& b) {
  auto req = s.http().post("/api/v1/friends/requests", fmt::format(R"({{"user_id":{}}})", b.id), a.token);
  ASSERT_EQ(req.status, 204) << req.body;
  auto acc = s.http().post(fmt::format("/api/v1/friends/requests/{}/accept", a.id), "", b.token);
  ASSERT_EQ(acc.status, 204) << acc.body;
  ASSERT_TRUE(wait_until([&] { return friend_status(s, a, b.id) == "friends" && friend_status(s, b, a.id) == "friends"; },
                         kModelWait));
}

std::optional<Frame> presence_of(WsClient& ws, uint64_t user, std::string_view status) {
  return ws.wait_for("presence", kFrameWait, [&](const Frame& f) {
    return f.u64("user_id") == user && f.str("status") == status;
  });
}

// A GET that also returns the Content-Type and Cache-Control headers (HttpClient keeps only bodies).
struct RawGet {
  int status = 0;
  std::string body, content_type, cache_control;
};
RawGet raw_get(int port, const std::string& target) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  namespace net = boost::asio;
  RawGet out;
  try {
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.expires_after(15s);
    stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    http::request<http::string_body> req(http::verb::get, target, 11);
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(false);
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 << 20);
    http::read(stream, buf, parser);
    out.status = static_cast<int>(parser.get().result_int());
    out.body = parser.get().body();
    out.content_type = std::string(parser.get()[http::field::content_type]);
    out.cache_control = std::string(parser.get()[http::field::cache_control]);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "GET " << target << ": " << e.what();
  }
  return out;
}

// ---- one server for every flow; replay --verify after them ---------------------------------------

class E2ePeople : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_GE(sodium_init(), 0);
    dir_ = new TempDir("imlog-e2e-people");
    server_ = new Server(dir_->str());
    EXPECT_TRUE(server_->start()) << "imlog did not become ready on port " << server_->port();
  }
  // Stops the server and checks that the read model rebuilt from the log equals the live one.
  static void TearDownTestSuite() {
    if (server_ && server_->running()) {
      auto st = server_->terminate();
      EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "imlog did not stop cleanly on SIGTERM";
      std::string cmd = "exec '" + (binary_dir() / "replay").string() + "' --projection rocksdb --data-dir '" +
                        server_->data_dir() + "' --verify 2>&1";
      auto p = Subprocess::start({"/bin/sh", "-c", cmd});
      std::string text;
      while (auto line = p.read_line(120s)) text += *line + "\n";
      auto rst = p.wait(60s);
      EXPECT_TRUE(rst && WIFEXITED(*rst) && WEXITSTATUS(*rst) == 0) << text;
      EXPECT_NE(text.find("verify: equal:"), std::string::npos) << text;
    }
    delete server_;
    delete dir_;
    server_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_ && server_->running()) << "the server did not start"; }
  static const Server& s() { return *server_; }

  static TempDir* dir_;
  static Server* server_;
};
TempDir* E2ePeople::dir_ = nullptr;
Server* E2ePeople::server_ = nullptr;

// The scenarios with WebSocket pushes, each over both subprotocols: JSON text (imlog.v1.json) and
// binary (imlog.v1).
class E2ePeopleWs : public E2ePeople, public ::testing::WithParamInterface<std::string> {};
INSTANTIATE_TEST_SUITE_P(Forms, E2ePeopleWs, ::testing::Values(kWsJson, kWsBinary),
                         [](const auto& info) { return std::string(info.param == kWsBinary ? "binary" : "json"); });

TEST_F(E2ePeople, ProfileReadAndEdit) {
  User a = make_user(s(), "prof");
  auto me = s().http().get("/api/v1/users/me", a.token);
  ASSERT_EQ(me.status, 200) << me.body;
  auto j = me.json();
  EXPECT_EQ(std::string(j["username"].GetString()), a.name);
  EXPECT_STREQ(j["status"].GetString(), "offline");
  EXPECT_TRUE(j["settings"]["allow_search"].GetBool());
  auto ed = patch(s(), a, "/api/v1/users/me", R"({"nickname":"Prof X","signature":"hi there"})");
  EXPECT_EQ(ed.status, 204) << ed.body;
  auto empty = patch(s(), a, "/api/v1/users/me", R"({"nickname":""})");
  EXPECT_EQ(empty.status, 400);
  auto settings = patch(s(), a, "/api/v1/users/me/settings",
                        R"({"push_enabled":false,"quiet_start_minute":1320,"quiet_end_minute":420,"muted":["world"]})");
  EXPECT_EQ(settings.status, 204) << settings.body;
  EXPECT_EQ(patch(s(), a, "/api/v1/users/me/settings", R"({"quiet_start_minute":1440})").status, 400);
  EXPECT_TRUE(wait_until(
      [&] {
        auto r = s().http().get("/api/v1/users/me", a.token).json();
        return r.IsObject() && std::string(r["nickname"].GetString()) == "Prof X" &&
               std::string(r["signature"].GetString()) == "hi there" && !r["settings"]["push_enabled"].GetBool() &&
               r["settings"]["quiet_start_minute"].GetInt() == 1320 && r["settings"]["quiet_end_minute"].GetInt() == 420 &&
               r["settings"]["muted"].Size() == 1;
      },
      kModelWait));
  User b = make_user(s(), "viewer");
  auto other = s().http().get(fmt::format("/api/v1/users/{}", a.id), b.token);
  ASSERT_EQ(other.status, 200);
  auto oj = other.json();
  EXPECT_FALSE(oj.HasMember("email")) << "another user's profile shows no email or settings";
  EXPECT_FALSE(oj.HasMember("settings"));
  EXPECT_FALSE(oj.HasMember("status")) << "presence shows to the user and their friends only";
  EXPECT_EQ(s().http().get("/api/v1/users/9007199254740000", b.token).status, 404);
}

TEST_P(E2ePeopleWs, WholeFriendFlowWithLivePushesToBoth) {
  User a = make_user(s(), "fa"), b = make_user(s(), "fb"), c = make_user(s(), "fc");
  auto wa = connect_ws(s(), a, GetParam()), wb = connect_ws(s(), b, GetParam()), wc = connect_ws(s(), c, GetParam());
  ASSERT_TRUE(wa && wb && wc);

  // request with a note: both parties hear of it
  auto req = s().http().post("/api/v1/friends/requests", fmt::format(R"({{"user_id":{},"note":"climb on sunday?"}})", b.id),
                             a.token);
  ASSERT_EQ(req.status, 204) << req.body;
  for (auto* ws : {wa.get(), wb.get()}) {
    auto f = ws->wait_for("friend-request", kFrameWait, [&](const Frame& f) { return f.u64("from") == a.id; });
    ASSERT_TRUE(f);
    EXPECT_EQ(f->u64("to"), b.id);
    EXPECT_EQ(f->str("note"), "climb on sunday?");
  }
  auto again = s().http().post("/api/v1/friends/requests", fmt::format(R"({{"user_id":{}}})", b.id), a.token);
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_TRUE(wait_until([&] { return friend_status(s(), a, b.id, "outgoing") == "outgoing"; }, kModelWait));
  EXPECT_TRUE(wait_until([&] { return friend_status(s(), b, a.id, "incoming") == "incoming"; }, kModelWait));
  EXPECT_EQ(friend_status(s(), b, a.id, "outgoing"), "") << "the filter keeps only outgoing requests";
  EXPECT_EQ(s().http().get("/api/v1/friends?status=maybe", a.token).status, 400);

  // accept: both hear it, both lists say friends
  auto acc = s().http().post(fmt::format("/api/v1/friends/requests/{}/accept", a.id), "", b.token);
  ASSERT_EQ(acc.status, 204) << acc.body;
  for (auto* ws : {wa.get(), wb.get()}) {
    auto f = ws->wait_for("friend-accepted", kFrameWait, [&](const Frame& f) { return f.u64("by") == b.id; });
    ASSERT_TRUE(f);
    EXPECT_EQ(f->u64("requester"), a.id);
    EXPECT_EQ(f->str("conversation_id"), single(a.id, b.id));
  }
  EXPECT_TRUE(wait_until([&] { return friend_status(s(), a, b.id) == "friends" && friend_status(s(), b, a.id) == "friends"; },
                         kModelWait));

  // friend groups: a files b under "climbing"
  auto grp = put(s(), a, fmt::format("/api/v1/friends/{}/group", b.id), R"({"group_name":"climbing"})");
  EXPECT_EQ(grp.status, 204) << grp.body;
  EXPECT_TRUE(wait_until(
      [&] {
        auto g = s().http().get("/api/v1/friends/groups", a.token).json();
        if (!g.IsObject() || g["groups"].Size() != 1 || std::string(g["groups"][0].GetString()) != "climbing") return false;
        auto l = s().http().get("/api/v1/friends", a.token).json();
        return l["friends"].Size() == 1 && std::string(l["friends"][0]["group_name"].GetString()) == "climbing";
      },
      kModelWait));

  // reject: c asks b, b says no; both hear it
  ASSERT_EQ(s().http().post("/api/v1/friends/requests", fmt::format(R"({{"user_id":{}}})", b.id), c.token).status, 204);
  ASSERT_TRUE(wb->wait_for("friend-request", kFrameWait, [&](const Frame& f) { return f.u64("from") == c.id; }));
  auto rej = s().http().post(fmt::format("/api/v1/friends/requests/{}/reject", c.id), "", b.token);
  ASSERT_EQ(rej.status, 204) << rej.body;
  for (auto* ws : {wb.get(), wc.get()}) {
    EXPECT_TRUE(ws->wait_for("friend-rejected", kFrameWait, [&](const Frame& f) { return f.u64("requester") == c.id; }));
  }
  EXPECT_EQ(s().http().post(fmt::format("/api/v1/friends/requests/{}/accept", c.id), "", b.token).status, 404)
      << "a rejected request cannot be accepted";

  // remove: both hear it; the lists empty
  auto rm = del(s(), a, fmt::format("/api/v1/friends/{}", b.id));
  ASSERT_EQ(rm.status, 204) << rm.body;
  for (auto* ws : {wa.get(), wb.get()}) {
    auto f = ws->wait_for("friend-removed", kFrameWait, [&](const Frame& f) { return f.u64("by") == a.id; });
    ASSERT_TRUE(f);
    EXPECT_EQ(f->u64("other"), b.id);
  }
  EXPECT_TRUE(wait_until([&] { return friend_status(s(), a, b.id).empty() && friend_status(s(), b, a.id).empty(); },
                         kModelWait));
  EXPECT_EQ(del(s(), a, fmt::format("/api/v1/friends/{}", b.id)).status, 403) << "no longer friends";
  EXPECT_TRUE(wc->take_all("friend-accepted").empty()) << "a third party hears nothing of a and b";
}

TEST_P(E2ePeopleWs, BlacklistRefusesSendsAndRequestsUntilUnblocked) {
  User a = make_user(s(), "blocker"), b = make_user(s(), "pest");
  auto wa = connect_ws(s(), a, GetParam()), wb = connect_ws(s(), b, GetParam());
  ASSERT_TRUE(wa && wb);
  std::string conv = single(a.id, b.id);
  ASSERT_EQ(send_outcome(*wb, conv, "before-block"), "ack");

  auto blk = s().http().post("/api/v1/blocks", fmt::format(R"({{"user_id":{}}})", b.id), a.token);
  ASSERT_EQ(blk.status, 204) << blk.body;
  EXPECT_TRUE(wa->wait_for("user-blocked", kFrameWait, [&](const Frame& f) { return f.u64("user_id") == b.id; }));
  // The block is an event in the conversation's stream: the very next send is refused.
  EXPECT_EQ(send_outcome(*wb, conv, "after-block"), "blocked");
  auto rest = s().http().post(fmt::format("/api/v1/conversations/{}/messages", conv),
                              R"({"client_msg_id":"rest-after-block","content":"let me in"})", b.token);
  EXPECT_EQ(rest.status, 403) << rest.body;
  auto req = s().http().post("/api/v1/friends/requests", fmt::format(R"({{"user_id":{}}})", a.id), b.token);
  EXPECT_EQ(req.status, 403) << req.body;
  EXPECT_STREQ(req.json()["code"].GetString(), "blocked");
  EXPECT_EQ(send_outcome(*wa, conv, "blocker-sends"), "you_blocked");
  EXPECT_TRUE(wb->take_all("user-blocked").empty()) << "the block is news to the blocker alone";
  EXPECT_TRUE(wait_until(
      [&] {
        auto l = s().http().get("/api/v1/blocks", a.token).json();
        return l.IsObject() && l["blocked"].Size() == 1 && l["blocked"][0].GetUint64() == b.id;
      },
      kModelWait));

  auto unb = del(s(), a, fmt::format("/api/v1/blocks/{}", b.id));
  ASSERT_EQ(unb.status, 204) << unb.body;
  EXPECT_TRUE(wa->wait_for("user-unblocked", kFrameWait, [&](const Frame& f) { return f.u64("user_id") == b.id; }));
  EXPECT_EQ(send_outcome(*wb, conv, "after-unblock"), "ack");
  auto req2 = s().http().post("/api/v1/friends/requests", fmt::format(R"({{"user_id":{}}})", a.id), b.token);
  EXPECT_EQ(req2.status, 204) << req2.body;
}

TEST_P(E2ePeopleWs, FriendsOnlyMessagingRefusesStrangers) {
  User a = make_user(s(), "private"), b = make_user(s(), "stranger");
  auto wb = connect_ws(s(), b, GetParam());
  ASSERT_TRUE(wb);
  std::string conv = single(a.id, b.id);
  ASSERT_EQ(send_outcome(*wb, conv, "open-0"), "ack");
  ASSERT_EQ(patch(s(), a, "/api/v1/users/me/settings", R"({"message_policy":"friends_only"})").status, 204);
  EXPECT_EQ(patch(s(), a, "/api/v1/users/me/settings", R"({"message_policy":"nobody"})").status, 400);
  // The engine reads the policy from a projection, eventually consistent (docs/architecture.md,
  // "State, decide and apply"): the sends are refused once it has caught up.
  int n = 0;
  bool refused = wait_until([&] { return send_outcome(*wb, conv, fmt::format("open-{}", ++n)) == "not_friends"; },
                            kModelWait);
  ASSERT_TRUE(refused) << "a stranger's send to a friends-only user was never refused";
  auto rest = s().http().post(fmt::format("/api/v1/conversations/{}/messages", conv),
                              R"({"client_msg_id":"rest-stranger","content":"hi"})", b.token);
  EXPECT_EQ(rest.status, 403) << rest.body;
  EXPECT_STREQ(rest.json()["code"].GetString(), "not_friends");
  befriend(s(), b, a);
  EXPECT_EQ(send_outcome(*wb, conv, "as-friend"), "ack") << "friends may message a friends-only user";
}

TEST_F(E2ePeople, SearchHidesUsersWhoOptOutAndPages) {
  std::string base = fmt::format("seek{}", ::getpid() % 100000);
  User u1 = make_user(s(), base), u2 = make_user(s(), base), hidden = make_user(s(), base);
  User asker = make_user(s(), "asker");
  ASSERT_EQ(patch(s(), hidden, "/api/v1/users/me/settings", R"({"allow_search":false})").status, 204);
  std::string nick = fmt::format("Zebra{}Nick", ::getpid() % 100000);
  ASSERT_EQ(patch(s(), u2, "/api/v1/users/me", fmt::format(R"({{"nickname":{}}})", json_quote(nick))).status, 204);
  // Pages of one, following next_after_user_id, until the end.
  auto search_all = [&](const std::string& q) {
    std::vector<uint64_t> found;
    uint64_t after = 0;
    for (int page = 0; page < 10; ++page) {
      auto r = s().http().get(fmt::format("/api/v1/users/search?q={}&limit=1&after_user_id={}", q, after), asker.token);
      if (r.status != 200) return std::vector<uint64_t>{0};
      auto j = r.json();
      for (const auto& u : j["users"].GetArray()) found.push_back(u["user_id"].GetUint64());
      if (j["next_after_user_id"].IsNull()) break;
      after = j["next_after_user_id"].GetUint64();
    }
    return found;
  };
  // Results come ordered by user id (ids are not in registration order: they come from name buckets).
  std::vector<uint64_t> want{std::min(u1.id, u2.id), std::max(u1.id, u2.id)}, last;
  EXPECT_TRUE(wait_until([&] { return (last = search_all(base)) == want; }, kModelWait))
      << "search by username prefix pages through the two searchable users only; got "
      << fmt::format("{}", fmt::join(last, ",")) << " want " << u1.id << "," << u2.id << " hidden " << hidden.id;
  std::string lower = nick.substr(0, 10);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  EXPECT_TRUE(wait_until([&] { return search_all(lower) == std::vector<uint64_t>{u2.id}; }, kModelWait))
      << "search by nickname prefix, case-insensitive";
  EXPECT_EQ(s().http().get("/api/v1/users/search", asker.token).status, 400);
  // The hidden user still exists for whoever knows the id.
  EXPECT_EQ(s().http().get(fmt::format("/api/v1/users/{}", hidden.id), asker.token).status, 200);
}

TEST_P(E2ePeopleWs, PresenceOnlineAwayOfflineWithPushesToFriends) {
  User a = make_user(s(), "present"), b = make_user(s(), "watcher"), c = make_user(s(), "nosy");
  befriend(s(), a, b);
  auto wb = connect_ws(s(), b, GetParam()), wc = connect_ws(s(), c, GetParam());
  ASSERT_TRUE(wb && wc);

  auto wa = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(wa);
  // hello comes once the session is registered: from then on, with no wait, a is online to a friend.
  ASSERT_TRUE(wa->wait_for("hello", kFrameWait, [](const Frame&) { return true; }));
  auto at_hello = s().http().get(fmt::format("/api/v1/users/presence?ids={}", a.id), b.token);
  ASSERT_EQ(at_hello.status, 200) << at_hello.body;
  EXPECT_STREQ(at_hello.json()["presence"][0]["status"].GetString(), "online") << at_hello.body;
  ASSERT_TRUE(presence_of(*wb, a.id, "online")) << "a friend hears a's first device connect";
  auto batch = s().http().get(fmt::format("/api/v1/users/presence?ids={},{}", a.id, c.id), b.token);
  ASSERT_EQ(batch.status, 200) << batch.body;
  auto bj = batch.json();
  ASSERT_EQ(bj["presence"].Size(), 2u);
  EXPECT_EQ(bj["presence"][0]["user_id"].GetUint64(), a.id);
  EXPECT_STREQ(bj["presence"][0]["status"].GetString(), "online");
  EXPECT_STREQ(bj["presence"][1]["status"].GetString(), "unknown") << "c is online but no friend of b";
  EXPECT_EQ(bj["presence"][1]["last_seen"].GetInt64(), 0);

  auto away = put(s(), a, "/api/v1/users/me/status", R"({"status":"away"})");
  ASSERT_EQ(away.status, 200) << away.body;
  EXPECT_STREQ(away.json()["status"].GetString(), "away");
  ASSERT_TRUE(presence_of(*wb, a.id, "away"));
  auto profile = s().http().get(fmt::format("/api/v1/users/{}", a.id), b.token).json();
  EXPECT_STREQ(profile["status"].GetString(), "away");
  EXPECT_GT(profile["last_seen"].GetInt64(), 0);
  EXPECT_EQ(put(s(), a, "/api/v1/users/me/status", R"({"status":"offline"})").status, 400);
  EXPECT_EQ(put(s(), a, "/api/v1/users/me/status", R"({"status":"sleepy"})").status, 400);

  // The same over the WebSocket: set-status → status-ack, friends hear it, bad values are errors.
  wa->send("set-status", R"({"status":"busy"})");
  auto ack = wa->wait_for("status-ack", kFrameWait);
  ASSERT_TRUE(ack) << "no status-ack";
  EXPECT_EQ(ack->str("status"), "busy");
  EXPECT_EQ(ack->u64("user_id"), a.id);
  ASSERT_TRUE(presence_of(*wb, a.id, "busy"));
  wa->send("set-status", R"({"status":"offline"})");
  auto refused = wa->wait_for("error", kFrameWait);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->str("code"), "invalid");
  EXPECT_EQ(refused->str("request_type"), "set-status");
  // Without its status: a misspelt field in JSON; the binary schema has no field to misspell, so an
  // empty SetStatus table.
  wa->send("set-status", wa->binary() ? "{}" : R"({"state":"away"})");
  auto missing = wa->wait_for("error", kFrameWait);
  ASSERT_TRUE(missing);
  EXPECT_NE(missing->str("message").find("status"), std::string::npos) << missing->raw;

  auto before_close = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  wa->close();
  auto off = presence_of(*wb, a.id, "offline");
  ASSERT_TRUE(off) << "a friend hears the last device go";
  EXPECT_GE(off->data()["last_seen"].GetInt64(), before_close - 1000);
  auto later = s().http().get(fmt::format("/api/v1/users/presence?ids={}", a.id), b.token).json();
  EXPECT_STREQ(later["presence"][0]["status"].GetString(), "offline");
  EXPECT_EQ(later["presence"][0]["last_seen"].GetInt64(), off->data()["last_seen"].GetInt64()) << "last seen is kept";

  // A device whose heartbeat lapses (it never answers pings; heartbeat_timeout is 3 s) goes offline.
  ASSERT_EQ(put(s(), a, "/api/v1/users/me/status", R"({"status":"online"})").status, 200);
  auto silent = connect_ws(s(), a, GetParam(), /*read=*/false);
  ASSERT_TRUE(silent);
  ASSERT_TRUE(presence_of(*wb, a.id, "online"));
  auto online_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(wb->wait_for("presence", 20s, [&](const Frame& f) {
    return f.u64("user_id") == a.id && f.str("status") == "offline";
  })) << "a silent device was not taken offline";
  // Not before the heartbeat timeout: the device was connected, only silent.
  EXPECT_GE(std::chrono::steady_clock::now() - online_at, 2s);

  EXPECT_TRUE(wc->take_all("presence").empty()) << "presence goes to friends only";
  EXPECT_EQ(s().http().get("/api/v1/users/presence?ids=1,x", b.token).status, 400);
  EXPECT_EQ(s().http().get("/api/v1/users/presence", b.token).status, 400);
}

// A block hides presence both ways, though the friendship stays; strangers see none either.
TEST_P(E2ePeopleWs, PresenceIsHiddenFromBlockedFriendsAndStrangers) {
  User a = make_user(s(), "hidden"), blocker = make_user(s(), "blocksa"), blocked = make_user(s(), "blockeda"),
       pal = make_user(s(), "pal"), stranger = make_user(s(), "stranger");
  befriend(s(), a, blocker);
  befriend(s(), a, blocked);
  befriend(s(), a, pal);
  auto block = [&](const User& who, const User& whom) {
    auto r = s().http().post("/api/v1/blocks", fmt::format(R"({{"user_id":{}}})", whom.id), who.token);
    ASSERT_EQ(r.status, 204) << r.body;
    ASSERT_TRUE(wait_until(
        [&] {
          auto l = s().http().get("/api/v1/blocks", who.token).json();
          return l.IsObject() && l["blocked"].Size() == 1 && l["blocked"][0].GetUint64() == whom.id;
        },
        kModelWait));
  };
  block(blocker, a);  // the friend blocked a
  block(a, blocked);  // a blocked the friend
  auto wblocker = connect_ws(s(), blocker, GetParam()), wblocked = connect_ws(s(), blocked, GetParam()), wpal = connect_ws(s(), pal, GetParam());
  ASSERT_TRUE(wblocker && wblocked && wpal);

  auto wa = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(wa);
  ASSERT_TRUE(presence_of(*wpal, a.id, "online")) << "a friend no block stands between hears a connect";
  wa->close();
  ASSERT_TRUE(presence_of(*wpal, a.id, "offline"));
  wa = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(wa);
  ASSERT_TRUE(presence_of(*wpal, a.id, "online"));
  // The pal heard all three; the blocked pair were told in the same announcements, so none came.
  EXPECT_TRUE(wblocker->take_all("presence").empty()) << "a friend who blocked a hears nothing of a";
  EXPECT_TRUE(wblocked->take_all("presence").empty()) << "a friend a blocked hears nothing of a";

  auto status_seen_by = [&](const User& viewer) {
    auto r = s().http().get(fmt::format("/api/v1/users/presence?ids={}", a.id), viewer.token);
    if (r.status != 200) return "error " + std::to_string(r.status);
    return std::string(r.json()["presence"][0]["status"].GetString());
  };
  EXPECT_EQ(status_seen_by(pal), "online");
  EXPECT_EQ(status_seen_by(a), "online") << "a sees their own";
  EXPECT_EQ(status_seen_by(blocker), "unknown");
  EXPECT_EQ(status_seen_by(blocked), "unknown");
  EXPECT_EQ(status_seen_by(stranger), "unknown");
  auto profile_of_a = [&](const User& viewer) { return s().http().get(fmt::format("/api/v1/users/{}", a.id), viewer.token); };
  auto by_stranger = profile_of_a(stranger);
  ASSERT_EQ(by_stranger.status, 200) << by_stranger.body;
  EXPECT_FALSE(by_stranger.json().HasMember("status")) << by_stranger.body;
  EXPECT_FALSE(by_stranger.json().HasMember("last_seen")) << by_stranger.body;
  EXPECT_FALSE(profile_of_a(blocker).json().HasMember("status"));
  auto by_pal = profile_of_a(pal).json();
  ASSERT_TRUE(by_pal.HasMember("status"));
  EXPECT_STREQ(by_pal["status"].GetString(), "online");
}

TEST_F(E2ePeople, AvatarUploadRefusesNonImagesAndOversizeAndServesBackByteForByte) {
  User a = make_user(s(), "face");
  std::string png("\x89PNG\r\n\x1a\n", 8);
  for (int i = 0; i < 3000; ++i) png.push_back(static_cast<char>((i * 7919) & 0xff));  // NULs and high bytes too

  auto text = s().http().post("/api/v1/users/me/avatar", "just some text, not an image", a.token);
  EXPECT_EQ(text.status, 415) << text.body;
  EXPECT_STREQ(text.json()["code"].GetString(), "unsupported_media_type");
  std::string big = png.substr(0, 8) + std::string(kAvatarMax, 'x');
  auto large = s().http().post("/api/v1/users/me/avatar", big, a.token);
  EXPECT_EQ(large.status, 413) << large.body;
  EXPECT_EQ(s().http().post("/api/v1/users/me/avatar", png, "").status, 401);

  auto up = s().http().post("/api/v1/users/me/avatar", png, a.token);
  ASSERT_EQ(up.status, 200) << up.body;
  std::string url = up.json()["avatar_url"].GetString();
  EXPECT_TRUE(url.starts_with("/avatars/") && url.ends_with(".png")) << url;
  auto got = raw_get(s().port(), url);
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.content_type, "image/png");
  EXPECT_NE(got.cache_control.find("max-age"), std::string::npos) << got.cache_control;
  EXPECT_TRUE(got.body == png) << "served " << got.body.size() << " bytes, uploaded " << png.size();
  EXPECT_TRUE(wait_until(
      [&] {
        auto me = s().http().get("/api/v1/users/me", a.token).json();
        return me.IsObject() && std::string(me["avatar_url"].GetString()) == url;
      },
      kModelWait));
  // One upload per gateway.avatar_upload_interval (10 s) bounds how fast a user fills the disk.
  auto again = s().http().post("/api/v1/users/me/avatar", png, a.token);
  EXPECT_EQ(again.status, 429) << again.body;
  EXPECT_STREQ(again.json()["code"].GetString(), "rate_limited");
  User other = make_user(s(), "face2");
  auto same = s().http().post("/api/v1/users/me/avatar", png, other.token);
  ASSERT_EQ(same.status, 200) << same.body;
  EXPECT_EQ(std::string(same.json()["avatar_url"].GetString()), url) << "the same image has the same URL";

  EXPECT_EQ(raw_get(s().port(), "/avatars/..%2F..%2Fdata%2Fsecret").status, 404);
  EXPECT_EQ(raw_get(s().port(), "/avatars/../secret").status, 404);
  EXPECT_EQ(raw_get(s().port(), "/avatars/" + std::string(64, 'a') + ".png").status, 404);
}

}  // namespace
}  // namespace imlog::testing
