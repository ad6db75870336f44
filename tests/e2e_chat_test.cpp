// End to end: the built `imlog serve` as a child process on a free loopback port, driven over real
// sockets the way a client drives it (docs/api/). Every wait has a deadline; nothing sleeps.
//
// Needs every role of the single node working together: gateway, engine, router, projector. The
// crash test kills the server with SIGKILL in the middle of a stream of sends and checks, after a
// restart, that what was acknowledged is there exactly once and that a client's sync gets exactly
// what it missed.

#include <signal.h>
#include <sodium.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "imlog/gateway/websocket_generated.h"
#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;
namespace wire = imlog::ws;  // the binary form's generated code (docs/api/websocket.fbs)

constexpr auto kFrameWait = 10s;

// A server config: cheap password hashing (Argon2id at libsodium's minimum cost) and `gateway_keys`.
std::string server_config(std::string_view gateway_keys) {
  return fmt::format("log: {{level: warn}}\ngateway:\n  password_ops_limit: 1\n  password_mem_limit: 8KiB\n{}",
                     gateway_keys);
}

// The chat tests' server: a send rate that a burst of test messages stays under; a short heartbeat
// (3 s, longer in an instrumented build, where a test takes longer to fill a silent client's queue
// than 3 s); and no bound on how long a message may wait in the gateway (max_frame_wait): the tests
// send bursts (100 messages of 30 KB) that an instrumented server reads more slowly than the default
// 150 ms. The bound has tests of its own (E2eLateFrames).
std::chrono::seconds heartbeat_timeout() { return scaled(3s); }
std::string test_config() {
  return server_config(fmt::format(R"(  ws_rate: 400
  ws_burst: 800
  max_frame_bytes: 64KiB
  heartbeat_timeout: {}s
  read_model_wait: 5s
  max_queued_bytes: 256KiB
  max_frame_wait: 0s
)", heartbeat_timeout().count()));
}

std::string single(uint64_t a, uint64_t b) { return fmt::format("single_{}_{}", std::min(a, b), std::max(a, b)); }

// ---- tokens minted by the test with the server's own secret ------------------------------------

std::string b64url(std::string_view s) {
  std::string out(sodium_base64_ENCODED_LEN(s.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()), s.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::string hs256(std::string_view secret, std::string_view header_json, std::string_view payload_json) {
  std::string signing = b64url(header_json) + "." + b64url(payload_json);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(signing.data()), signing.size());
  crypto_auth_hmacsha256_final(&st, mac);
  return signing + "." + b64url(std::string_view(reinterpret_cast<const char*>(mac), sizeof mac));
}

// ---- the server ---------------------------------------------------------------------------------

// A real `imlog serve` with this file's test config.
class Server : public ImlogServer {
 public:
  explicit Server(const std::string& dir, const std::string& config = test_config()) : ImlogServer(dir, config) {}
};

struct User {
  std::string name;
  uint64_t id = 0;
  std::string token;
  std::string refresh;
};

std::string unique_name(std::string_view base) {
  static std::atomic<int> n{0};
  return fmt::format("{}_{}_{}", base, ::getpid() % 100000, n++);
}

// Registers and logs in a fresh user.
User make_user(const Server& s, std::string_view base) {
  User u;
  u.name = unique_name(base);
  auto body = fmt::format(R"({{"username":{},"password":"correct horse","nickname":{}}})", json_quote(u.name), json_quote(base));
  auto reg = s.http().post("/api/v1/auth/register", body);
  EXPECT_EQ(reg.status, 201) << reg.body << reg.error;
  auto rj = reg.json();
  if (reg.status != 201) return u;
  EXPECT_TRUE(rj["user_id"].IsUint64()) << reg.body;
  EXPECT_EQ(std::string(rj["username"].GetString()), u.name);
  u.id = rj["user_id"].GetUint64();
  auto login = s.http().post("/api/v1/auth/login",
                             fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(u.name)));
  EXPECT_EQ(login.status, 200) << login.body;
  auto lj = login.json();
  if (login.status != 200) return u;
  EXPECT_EQ(lj["user_id"].GetUint64(), u.id);
  EXPECT_GT(lj["expires_in"].GetInt64(), 0);
  u.token = lj["access_token"].GetString();
  u.refresh = lj["refresh_token"].GetString();
  return u;
}

// A WebSocket of `u` speaking `subprotocol` (kWsJson or kWsBinary).
std::unique_ptr<WsClient> connect_ws(const Server& s, const User& u, const std::string& subprotocol) {
  std::string error;
  auto ws = WsClient::connect("127.0.0.1", s.port(), "/ws?token=" + u.token, {}, nullptr, &error, true, subprotocol);
  EXPECT_TRUE(ws) << error;
  if (ws) {
    EXPECT_EQ(ws->subprotocol(), subprotocol);
  }
  return ws;
}

// "json" or "binary": the name of a test's subprotocol parameter.
std::string form_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param == kWsBinary ? "binary" : "json";
}

void send_message(WsClient& ws, const std::string& conversation, const std::string& client_msg_id,
                  const std::string& content) {
  ws.send("send-message", fmt::format(R"({{"conversation_id":{},"client_msg_id":{},"content":{}}})", json_quote(conversation),
                                      json_quote(client_msg_id), json_quote(content)));
}

// The ack of client_msg_id (or nullopt, with the error frame reported).
std::optional<Frame> ack_of(WsClient& ws, const std::string& client_msg_id) {
  auto ack = ws.wait_for("message-ack", kFrameWait, [&](const Frame& f) { return f.str("client_msg_id") == client_msg_id; });
  if (!ack) {
    auto err = ws.take_all("error");
    for (auto& e : err) ADD_FAILURE() << "error frame: " << e.raw;
  }
  return ack;
}

std::optional<Frame> new_message(WsClient& ws, const std::string& client_msg_id) {
  return ws.wait_for("new-message", kFrameWait, [&](const Frame& f) { return f.str("client_msg_id") == client_msg_id; });
}

struct HistoryItem {
  uint64_t seq;
  std::string message_id;
  std::string client_msg_id;
  std::string content;
  uint64_t sender;
};

// The whole history of a conversation over REST, paging forward from seq 0 (pages of 200).
std::vector<HistoryItem> full_history(const Server& s, const User& u, const std::string& conversation) {
  // Pages back from the latest, then reverses.
  std::vector<HistoryItem> out;
  uint64_t before = 0;
  std::vector<HistoryItem> reversed;
  for (int guard = 0; guard < 10000; ++guard) {
    std::string target = fmt::format("/api/v1/conversations/{}/messages?limit=200", conversation);
    if (before > 0) target += fmt::format("&before_seq={}", before);
    auto r = s.http().get(target, u.token);
    if (r.status != 200) {
      ADD_FAILURE() << "history " << target << ": " << r.status << " " << r.body;
      return out;
    }
    auto j = r.json();
    const auto& msgs = j["messages"];
    std::vector<HistoryItem> page;
    for (const auto& m : msgs.GetArray()) {
      page.push_back(HistoryItem{m["seq_id"].GetUint64(), m["message_id"].GetString(), m["client_msg_id"].GetString(),
                                 m["content"].GetString(), m["sender_id"].GetUint64()});
    }
    for (auto it = page.rbegin(); it != page.rend(); ++it) reversed.push_back(*it);
    if (!j["has_more"].GetBool() || page.empty()) break;
    before = page.front().seq;
  }
  out.assign(reversed.rbegin(), reversed.rend());
  return out;
}

// Waits until the read model shows `count` messages in the conversation.
bool wait_history(const Server& s, const User& u, const std::string& conversation, size_t count,
                  std::chrono::milliseconds deadline = 20s) {
  return wait_until(
      [&] {
        auto r = s.http().get(fmt::format("/api/v1/conversations/{}/messages?limit=1", conversation), u.token);
        if (r.status != 200) return false;
        auto j = r.json();
        const auto& msgs = j["messages"];
        return msgs.Size() == 1 && msgs[0]["seq_id"].GetUint64() >= count;
      },
      deadline);
}

// ---- one server for the chat tests ---------------------------------------------------------------

class E2eChat : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_GE(sodium_init(), 0);
    dir_ = new TempDir("imlog-e2e");
    server_ = new Server(dir_->str());
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
  void SetUp() override {
    ASSERT_TRUE(server_ && server_->running()) << "the server did not start";
  }
  static const Server& s() { return *server_; }

  static TempDir* dir_;
  static Server* server_;
};
TempDir* E2eChat::dir_ = nullptr;
Server* E2eChat::server_ = nullptr;

// The chat scenarios, each over both subprotocols: JSON text (imlog.v1.json) and binary (imlog.v1).
class E2eChatWs : public E2eChat, public ::testing::WithParamInterface<std::string> {};
INSTANTIATE_TEST_SUITE_P(Forms, E2eChatWs, ::testing::Values(kWsJson, kWsBinary), form_name);

TEST_F(E2eChat, HealthReadinessAndMetrics) {
  EXPECT_EQ(s().http().get("/healthz").status, 200);
  EXPECT_EQ(s().http().get("/readyz").status, 200);
  auto m = s().http().get("/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("imlog_gateway_ws_connections"), std::string::npos);
  EXPECT_NE(m.body.find("imlog_gateway_command_seconds_bucket"), std::string::npos);
  auto page = s().http().get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("<html"), std::string::npos);
}

TEST_F(E2eChat, RegisterTwiceIsAConflictAndBadLoginIsUnauthorized) {
  User a = make_user(s(), "dup");
  auto again = s().http().post("/api/v1/auth/register",
                               fmt::format(R"({{"username":{},"password":"another one"}})", json_quote(a.name)));
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_STREQ(again.json()["code"].GetString(), "already_exists");
  auto bad = s().http().post("/api/v1/auth/login", fmt::format(R"({{"username":{},"password":"wrong horse"}})", json_quote(a.name)));
  EXPECT_EQ(bad.status, 401);
  EXPECT_STREQ(bad.json()["code"].GetString(), "unauthorized");
  auto weak = s().http().post("/api/v1/auth/register", R"({"username":"ok_name_1","password":"short"})");
  EXPECT_EQ(weak.status, 400);
}

TEST_P(E2eChatWs, OneToOneBothWaysWithAcks) {
  User alice = make_user(s(), "alice"), bob = make_user(s(), "bob");
  auto wa = connect_ws(s(), alice, GetParam()), wb = connect_ws(s(), bob, GetParam());
  ASSERT_TRUE(wa && wb);
  std::string c = single(alice.id, bob.id);

  send_message(*wa, c, "a1", "hello bob");
  auto ack = ack_of(*wa, "a1");
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->str("conversation_id"), c);
  EXPECT_EQ(ack->u64("seq_id"), 1u);
  EXPECT_FALSE(ack->str("message_id").empty()) << "message_id is a decimal string: " << ack->raw;
  auto got = new_message(*wb, "a1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->str("message_id"), ack->str("message_id"));
  EXPECT_EQ(got->u64("seq_id"), 1u);
  EXPECT_EQ(got->u64("sender_id"), alice.id);
  EXPECT_EQ(got->str("content"), "hello bob");
  EXPECT_EQ(got->str("message_type"), "text");
  EXPECT_GT(got->u64("created_at"), 0u);

  send_message(*wb, c, "b1", "hi alice");
  auto back = ack_of(*wb, "b1");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->u64("seq_id"), 2u);
  auto got_back = new_message(*wa, "b1");
  ASSERT_TRUE(got_back);
  EXPECT_EQ(got_back->u64("sender_id"), bob.id);
  EXPECT_EQ(got_back->u64("seq_id"), 2u);

  // REST sends land in the same timeline and are pushed too.
  auto r = s().http().post(fmt::format("/api/v1/conversations/{}/messages", c),
                           R"({"client_msg_id":"a2","content":"over REST"})", alice.token);
  ASSERT_EQ(r.status, 201) << r.body;
  auto rj = r.json();
  EXPECT_TRUE(rj["message_id"].IsString());
  EXPECT_EQ(rj["seq_id"].GetUint64(), 3u);
  ASSERT_TRUE(new_message(*wb, "a2"));
  // The same REST retry gets the same reply, 201.
  auto again = s().http().post(fmt::format("/api/v1/conversations/{}/messages", c),
                               R"({"client_msg_id":"a2","content":"over REST"})", alice.token);
  ASSERT_EQ(again.status, 201);
  EXPECT_EQ(again.json()["message_id"], rj["message_id"]);
}

TEST_P(E2eChatWs, GroupOfThreeFansOutToAll) {
  User a = make_user(s(), "ga"), b = make_user(s(), "gb"), c = make_user(s(), "gc");
  auto g = s().http().post("/api/v1/groups",
                           fmt::format(R"({{"name":"trio","description":"test","members":[{},{}]}})", b.id, c.id), a.token);
  ASSERT_EQ(g.status, 201) << g.body;
  auto gj = g.json();
  uint64_t gid = gj["group_id"].GetUint64();
  EXPECT_LT(gid, uint64_t{1} << 53);
  std::string conv = gj["conversation_id"].GetString();
  EXPECT_EQ(conv, fmt::format("group_{}", gid));

  auto wa = connect_ws(s(), a, GetParam()), wb = connect_ws(s(), b, GetParam()), wc = connect_ws(s(), c, GetParam());
  ASSERT_TRUE(wa && wb && wc);
  send_message(*wa, conv, "g1", "hello all");
  auto ack = ack_of(*wa, "g1");
  ASSERT_TRUE(ack);
  for (auto* w : {wb.get(), wc.get()}) {
    auto m = new_message(*w, "g1");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->str("message_id"), ack->str("message_id"));
    EXPECT_EQ(m->str("conversation_id"), conv);
  }
  send_message(*wc, conv, "g2", "hello from c");
  ASSERT_TRUE(ack_of(*wc, "g2"));
  ASSERT_TRUE(new_message(*wa, "g2"));
  ASSERT_TRUE(new_message(*wb, "g2"));

  // Members over REST (the read model may need a moment to show the group).
  ASSERT_TRUE(wait_until([&] {
    auto m = s().http().get(fmt::format("/api/v1/groups/{}/members", gid), a.token);
    return m.status == 200 && m.json()["members"].Size() == 3;
  }, 20s));
  auto info = s().http().get(fmt::format("/api/v1/groups/{}", gid), b.token);
  ASSERT_EQ(info.status, 200) << info.body;
  EXPECT_STREQ(info.json()["name"].GetString(), "trio");
}

TEST_P(E2eChatWs, SendersSecondDeviceReceivesItsOwnMessage) {
  User a = make_user(s(), "dev"), b = make_user(s(), "peer");
  auto phone = connect_ws(s(), a, GetParam()), laptop = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(phone && laptop);
  std::string c = single(a.id, b.id);
  send_message(*phone, c, "d1", "from my phone");
  auto ack = ack_of(*phone, "d1");
  ASSERT_TRUE(ack);
  auto echo = new_message(*laptop, "d1");
  ASSERT_TRUE(echo);
  EXPECT_EQ(echo->str("message_id"), ack->str("message_id"));
  EXPECT_EQ(echo->u64("sender_id"), a.id);
}

TEST_P(E2eChatWs, RetriedSendGetsTheSameIdsAndNoSecondDelivery) {
  User a = make_user(s(), "retry"), b = make_user(s(), "recv");
  auto wa = connect_ws(s(), a, GetParam()), wb = connect_ws(s(), b, GetParam());
  ASSERT_TRUE(wa && wb);
  std::string c = single(a.id, b.id);
  send_message(*wa, c, "same-id", "once");
  auto first = ack_of(*wa, "same-id");
  ASSERT_TRUE(first);
  ASSERT_TRUE(new_message(*wb, "same-id"));
  send_message(*wa, c, "same-id", "once");
  auto second = ack_of(*wa, "same-id");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->str("message_id"), first->str("message_id"));
  EXPECT_EQ(second->u64("seq_id"), first->u64("seq_id"));
  // A later message is delivered after any second copy would have been: there is none.
  send_message(*wa, c, "marker", "after");
  auto marker = ack_of(*wa, "marker");
  ASSERT_TRUE(marker);
  EXPECT_EQ(marker->u64("seq_id"), first->u64("seq_id") + 1) << "the retry took no seq";
  ASSERT_TRUE(new_message(*wb, "marker"));
  for (auto& f : wb->take_all("new-message")) {
    EXPECT_NE(f.str("client_msg_id"), "same-id") << "delivered twice: " << f.raw;
  }
}

// sent_at (the dedupe window, docs/api/websocket.md): a retry that carries its first send's time
// gets the same ack as before, on both forms of the protocol; one past the window is refused.
TEST_P(E2eChatWs, RetriedSendWithSentAtGetsTheSameAck) {
  User a = make_user(s(), "timed"), b = make_user(s(), "timedrecv");
  auto wa = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(wa);
  std::string c = single(a.id, b.id);
  auto send_at = [&](const std::string& id, int64_t sent_at) {
    wa->send("send-message", fmt::format(R"({{"conversation_id":{},"client_msg_id":{},"content":"x","sent_at":{}}})",
                                         json_quote(c), json_quote(id), sent_at));
  };
  int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  send_at("timed-1", now);
  auto first = ack_of(*wa, "timed-1");
  ASSERT_TRUE(first);
  send_at("timed-1", now);
  auto second = ack_of(*wa, "timed-1");
  ASSERT_TRUE(second);
  EXPECT_EQ(second->str("message_id"), first->str("message_id"));
  EXPECT_EQ(second->u64("seq_id"), first->u64("seq_id"));
  // 1970 is past any window: once the engine's first checkpoint has set its horizon, a send of
  // then is refused, whatever its client_msg_id, and written nowhere.
  int n = 0;
  std::optional<Frame> refused;
  ASSERT_TRUE(wait_until([&] {
    std::string id = "old-" + std::to_string(++n);
    send_at(id, 1000);
    auto of_id = [&](const Frame& f) { return f.str("client_msg_id") == id; };
    if (wa->wait_for("message-ack", 2s, of_id)) return false;  // before the first checkpoint
    refused = wa->wait_for("error", kFrameWait, of_id);
    return refused.has_value();
  }, 20s));
  EXPECT_EQ(refused->str("code"), "retry_window_expired") << refused->raw;
  EXPECT_EQ(refused->str("request_type"), "send-message");
}

TEST_P(E2eChatWs, HistoryPagesBySeq) {
  User a = make_user(s(), "hist"), b = make_user(s(), "hist2");
  auto wa = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(wa);
  std::string c = single(a.id, b.id);
  for (int i = 1; i <= 25; ++i) send_message(*wa, c, fmt::format("h{}", i), fmt::format("message {}", i));
  for (int i = 1; i <= 25; ++i) ASSERT_TRUE(ack_of(*wa, fmt::format("h{}", i))) << i;
  ASSERT_TRUE(wait_history(s(), a, c, 25));

  auto seqs = [](const HttpResult& r) {
    std::vector<uint64_t> out;
    auto doc = r.json();  // kept: ranging over a member of a temporary would dangle
    for (const auto& m : doc["messages"].GetArray()) out.push_back(m["seq_id"].GetUint64());
    return out;
  };
  auto latest = s().http().get(fmt::format("/api/v1/conversations/{}/messages?limit=10", c), a.token);
  ASSERT_EQ(latest.status, 200) << latest.body;
  EXPECT_EQ(seqs(latest), (std::vector<uint64_t>{16, 17, 18, 19, 20, 21, 22, 23, 24, 25}));
  EXPECT_TRUE(latest.json()["has_more"].GetBool());
  auto older = s().http().get(fmt::format("/api/v1/conversations/{}/messages?before_seq=16&limit=10", c), a.token);
  EXPECT_EQ(seqs(older), (std::vector<uint64_t>{6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_TRUE(older.json()["has_more"].GetBool());
  auto oldest = s().http().get(fmt::format("/api/v1/conversations/{}/messages?before_seq=6&limit=10", c), a.token);
  EXPECT_EQ(seqs(oldest), (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_FALSE(oldest.json()["has_more"].GetBool());
  auto newer = s().http().get(fmt::format("/api/v1/conversations/{}/messages?after_seq=20&limit=10", c), a.token);
  EXPECT_EQ(seqs(newer), (std::vector<uint64_t>{21, 22, 23, 24, 25}));
  EXPECT_FALSE(newer.json()["has_more"].GetBool());
  auto forward = s().http().get(fmt::format("/api/v1/conversations/{}/messages?after_seq=3&limit=4", c), a.token);
  EXPECT_EQ(seqs(forward), (std::vector<uint64_t>{4, 5, 6, 7}));
  EXPECT_TRUE(forward.json()["has_more"].GetBool());
  // after_seq=0 is present: a device that has seen nothing reads from seq 1, not the latest page.
  auto from_start = s().http().get(fmt::format("/api/v1/conversations/{}/messages?after_seq=0&limit=4", c), a.token);
  ASSERT_EQ(from_start.status, 200) << from_start.body;
  EXPECT_EQ(seqs(from_start), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_TRUE(from_start.json()["has_more"].GetBool());
  auto window = s().http().get(fmt::format("/api/v1/conversations/{}/messages?after_seq=3&before_seq=6", c), a.token);
  EXPECT_EQ(seqs(window), (std::vector<uint64_t>{4, 5}));
  EXPECT_FALSE(window.json()["has_more"].GetBool());
  auto empty_window =
      s().http().get(fmt::format("/api/v1/conversations/{}/messages?after_seq=3&before_seq=4", c), a.token);
  EXPECT_EQ(empty_window.status, 400) << empty_window.body;
  // The message objects carry the wire contract's fields.
  auto latest_doc = latest.json();  // kept: a member of a temporary document would dangle
  const auto& m = latest_doc["messages"][0];
  for (const char* k : {"message_id", "conversation_id", "seq_id", "sender_id", "content", "message_type",
                        "client_msg_id", "created_at"}) {
    EXPECT_TRUE(m.HasMember(k)) << k;
  }
  auto bad = s().http().get(fmt::format("/api/v1/conversations/{}/messages?limit=abc", c), a.token);
  EXPECT_EQ(bad.status, 400);

  // sync over the WebSocket pages forward the same way.
  wa->send("sync", fmt::format(R"({{"conversation_id":{},"after_seq":22}})", json_quote(c)));
  auto sync = wa->wait_for("sync-result", kFrameWait);
  ASSERT_TRUE(sync);
  std::vector<uint64_t> got;
  for (const auto& x : sync->data()["messages"].GetArray()) got.push_back(x["seq_id"].GetUint64());
  EXPECT_EQ(got, (std::vector<uint64_t>{23, 24, 25}));
  EXPECT_FALSE(sync->data()["has_more"].GetBool());
  EXPECT_EQ(sync->u64("after_seq"), 22u);
  // after_seq 0: from seq 1; no after_seq: the latest page.
  auto sync_seqs = [&](const std::string& data) {
    wa->send("sync", data);
    auto r = wa->wait_for("sync-result", kFrameWait);
    std::vector<uint64_t> out;
    if (!r) {
      ADD_FAILURE() << "no sync-result for " << data;
      return std::pair(out, false);
    }
    for (const auto& x : r->data()["messages"].GetArray()) out.push_back(x["seq_id"].GetUint64());
    return std::pair(out, r->data()["has_more"].GetBool());
  };
  EXPECT_EQ(sync_seqs(fmt::format(R"({{"conversation_id":{},"after_seq":0,"limit":3}})", json_quote(c))),
            std::pair(std::vector<uint64_t>{1, 2, 3}, true));
  EXPECT_EQ(sync_seqs(fmt::format(R"({{"conversation_id":{},"limit":3}})", json_quote(c))),
            std::pair(std::vector<uint64_t>{23, 24, 25}, true));
}

TEST_P(E2eChatWs, UnreadCountsAndReadMarkers) {
  User a = make_user(s(), "unr"), b = make_user(s(), "unr2");
  auto wa = connect_ws(s(), a, GetParam()), wb = connect_ws(s(), b, GetParam());
  ASSERT_TRUE(wa && wb);
  std::string c = single(a.id, b.id);
  for (int i = 1; i <= 3; ++i) send_message(*wa, c, fmt::format("u{}", i), "unread?");
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(ack_of(*wa, fmt::format("u{}", i)));

  auto conversation_of = [&](const User& u) -> std::optional<std::tuple<uint64_t, uint64_t, uint64_t>> {
    auto r = s().http().get("/api/v1/conversations", u.token);
    if (r.status != 200) return std::nullopt;
    auto j = r.json();
    for (const auto& x : j["conversations"].GetArray()) {
      if (std::string(x["conversation_id"].GetString()) == c) {
        return std::tuple{x["unread"].GetUint64(), x["read_seq"].GetUint64(), x["last_seq"].GetUint64()};
      }
    }
    return std::nullopt;
  };
  ASSERT_TRUE(wait_until([&] { auto v = conversation_of(b); return v && std::get<0>(*v) == 3; }, 20s))
      << "bob should see 3 unread";
  auto mine = conversation_of(a);
  ASSERT_TRUE(mine);
  EXPECT_EQ(std::get<0>(*mine), 0u) << "one's own messages are not unread";

  auto read = s().http().post(fmt::format("/api/v1/conversations/{}/read", c), R"({"seq_id":2})", b.token);
  EXPECT_EQ(read.status, 204) << read.body;
  ASSERT_TRUE(wait_until([&] { auto v = conversation_of(b); return v && std::get<0>(*v) == 1 && std::get<1>(*v) == 2; }, 20s));

  wb->send("read", fmt::format(R"({{"conversation_id":{},"seq_id":3}})", json_quote(c)));
  auto ack = wb->wait_for("read-ack", kFrameWait);
  ASSERT_TRUE(ack) << "read-ack";
  EXPECT_EQ(ack->u64("seq_id"), 3u);
  ASSERT_TRUE(wait_until([&] { auto v = conversation_of(b); return v && std::get<0>(*v) == 0 && std::get<1>(*v) == 3; }, 20s));

  auto past_end = s().http().post(fmt::format("/api/v1/conversations/{}/read", c), R"({"seq_id":99})", b.token);
  EXPECT_EQ(past_end.status, 400) << past_end.body;

  // A group with one message: the creation is a system row, so one unread, not two (issue 19).
  auto g = s().http().post("/api/v1/groups", fmt::format(R"({{"name":"one message","members":[{}]}})", b.id), a.token);
  ASSERT_EQ(g.status, 201) << g.body;
  c = g.json()["conversation_id"].GetString();
  auto sent = s().http().post(fmt::format("/api/v1/conversations/{}/messages", c), R"({"content":"only one"})", a.token);
  ASSERT_EQ(sent.status, 201) << sent.body;
  ASSERT_TRUE(wait_until([&] { auto v = conversation_of(b); return v && std::get<2>(*v) == 2; }, 20s))
      << "the group's two rows never reached the read model";
  EXPECT_EQ(std::get<0>(*conversation_of(b)), 1u) << "the group's creation is not unread";
}

TEST_P(E2eChatWs, LeavingAGroupRefusesTheNextSend) {
  User a = make_user(s(), "own"), b = make_user(s(), "mem");
  auto g = s().http().post("/api/v1/groups", fmt::format(R"({{"name":"leavers","members":[{}]}})", b.id), a.token);
  ASSERT_EQ(g.status, 201) << g.body;
  std::string conv = g.json()["conversation_id"].GetString();
  uint64_t gid = g.json()["group_id"].GetUint64();
  auto wb = connect_ws(s(), b, GetParam());
  ASSERT_TRUE(wb);
  send_message(*wb, conv, "before", "still here");
  ASSERT_TRUE(ack_of(*wb, "before"));

  auto leave = s().http().post(fmt::format("/api/v1/groups/{}/leave", gid), "", b.token);
  EXPECT_EQ(leave.status, 204) << leave.body;
  send_message(*wb, conv, "after", "gone");
  auto err = wb->wait_for("error", kFrameWait, [](const Frame& f) { return f.str("client_msg_id") == "after"; });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->str("code"), "not_member");
  auto rest = s().http().post(fmt::format("/api/v1/conversations/{}/messages", conv), R"({"content":"x"})", b.token);
  EXPECT_EQ(rest.status, 403) << rest.body;
  EXPECT_STREQ(rest.json()["code"].GetString(), "not_member");
  // The owner adds them back (a private group takes no one by themselves); the owner cannot
  // leave a group with members.
  auto add = s().http().post(fmt::format("/api/v1/groups/{}/members", gid), fmt::format(R"({{"user_id":{}}})", b.id),
                             a.token);
  EXPECT_EQ(add.status, 200) << add.body;
  auto owner_leave = s().http().post(fmt::format("/api/v1/groups/{}/leave", gid), "", a.token);
  EXPECT_EQ(owner_leave.status, 409) << owner_leave.body;
}

// Trace ids: a WebSocket ack and a refusal name the command's trace (16 hex digits, one per
// command); every REST reply names its request's in X-Request-Id, the client's own when valid.
TEST_P(E2eChatWs, AcksErrorsAndRestRepliesNameTheirTraceId) {
  const std::regex hex16("^[0-9a-f]{16}$");
  User a = make_user(s(), "tracer"), b = make_user(s(), "traced"), stranger = make_user(s(), "stranger");
  auto wa = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(wa);
  send_message(*wa, single(a.id, b.id), "t1", "one");
  send_message(*wa, single(a.id, b.id), "t2", "two");
  auto ack1 = ack_of(*wa, "t1"), ack2 = ack_of(*wa, "t2");
  ASSERT_TRUE(ack1 && ack2);
  EXPECT_TRUE(std::regex_match(ack1->str("trace_id"), hex16)) << ack1->raw;
  EXPECT_NE(ack1->str("trace_id"), ack2->str("trace_id")) << "one trace per command";
  // A refused send: the error names the refused command's trace.
  send_message(*wa, single(b.id, stranger.id), "t3", "not mine");
  auto err = wa->wait_for("error", kFrameWait, [](const Frame& f) { return f.str("client_msg_id") == "t3"; });
  ASSERT_TRUE(err);
  EXPECT_TRUE(std::regex_match(err->str("trace_id"), hex16)) << err->raw;

  // REST: the client's X-Request-Id is kept, on success and on a refusal alike.
  auto sent = s().http().with_header("X-Request-Id", "9b2f6c1e-4d7a-4e0b-8a53-0f1d2c3b4a59")
                  .post(fmt::format("/api/v1/conversations/{}/messages", single(a.id, b.id)),
                        R"({"client_msg_id":"t4","content":"rest"})", a.token);
  EXPECT_EQ(sent.status, 201) << sent.body;
  EXPECT_EQ(sent.header("X-Request-Id"), "9b2f6c1e-4d7a-4e0b-8a53-0f1d2c3b4a59");
  auto refused = s().http().with_header("X-Request-Id", "req.7_x")
                     .post(fmt::format("/api/v1/conversations/{}/messages", single(b.id, stranger.id)),
                           R"({"content":"no"})", a.token);
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(refused.header("X-Request-Id"), "req.7_x");
  // Without one, or with one that is not of the documented form, the server makes one; a route
  // that does not exist is named too.
  for (const std::string& bad : std::vector<std::string>{"", "has space", "semi;colon", std::string(65, 'a')}) {
    auto client = bad.empty() ? s().http() : s().http().with_header("X-Request-Id", bad);
    auto r = client.get("/api/v1/nope", a.token);
    EXPECT_EQ(r.status, 404);
    EXPECT_TRUE(std::regex_match(r.header("X-Request-Id"), hex16)) << "`" << bad << "` gave `" << r.header("X-Request-Id") << "`";
  }
}

// Issue 12: group membership by policy. A private group (the default) takes no stranger; a
// removed member is banned — cannot rejoin, cannot be added back, cannot read — until the ban is
// lifted; a member of a from_join group (the private default) reads from their join on every read
// path; a public group takes anyone.
TEST_P(E2eChatWs, GroupJoinPolicyBansAndTheHistoryRule) {
  User a = make_user(s(), "gown"), b = make_user(s(), "gmem"), d = make_user(s(), "gdee"), e = make_user(s(), "gstr"),
       f = make_user(s(), "glate");
  auto g = s().http().post("/api/v1/groups", fmt::format(R"({{"name":"crew","members":[{},{}]}})", b.id, d.id),
                           a.token);
  ASSERT_EQ(g.status, 201) << g.body;
  uint64_t gid = g.json()["group_id"].GetUint64();
  std::string conv = g.json()["conversation_id"].GetString();
  auto post = [&](const User& u, const std::string& path, const std::string& body) {
    return s().http().post(fmt::format("/api/v1/groups/{}{}", gid, path), body, u.token);
  };
  auto code = [](const HttpResult& r) {
    auto j = r.json();
    return j.IsObject() && j.HasMember("code") && j["code"].IsString() ? std::string(j["code"].GetString()) : "";
  };
  auto history = [&](const User& u, const std::string& query) {
    return s().http().get(fmt::format("/api/v1/conversations/{}/messages?{}", conv, query), u.token);
  };
  auto seqs = [](const HttpResult& r) {
    std::vector<uint64_t> out;
    if (r.status == 200) {
      auto doc = r.json();  // kept: ranging over a member of a temporary would dangle
      for (const auto& m : doc["messages"].GetArray()) out.push_back(m["seq_id"].GetUint64());
    }
    return out;
  };
  auto wb = connect_ws(s(), b, GetParam());
  ASSERT_TRUE(wb);
  for (int i = 1; i <= 3; ++i) {
    auto m = s().http().post(fmt::format("/api/v1/conversations/{}/messages", conv),
                             fmt::format(R"({{"content":"early {}"}})", i), a.token);
    ASSERT_EQ(m.status, 201) << m.body;  // seqs 2..4
  }
  ASSERT_TRUE(wait_until([&] {
    auto info = s().http().get(fmt::format("/api/v1/groups/{}", gid), a.token);
    return info.status == 200 && info.json()["member_count"].GetUint() == 3;
  }, 20s));
  auto info = s().http().get(fmt::format("/api/v1/groups/{}", gid), e.token);
  ASSERT_EQ(info.status, 200) << info.body;
  EXPECT_STREQ(info.json()["join_policy"].GetString(), "private");
  EXPECT_STREQ(info.json()["history"].GetString(), "from_join");

  // A stranger cannot join a private group, nor a plain member add one.
  auto stranger = post(e, "/join", "");
  EXPECT_EQ(stranger.status, 403) << stranger.body;
  EXPECT_EQ(code(stranger), "forbidden");
  auto plain_add = post(b, "/members", fmt::format(R"({{"user_id":{}}})", e.id));
  EXPECT_EQ(plain_add.status, 403) << plain_add.body;

  // The owner removes d: d is banned from rejoining, from being added back, and from reading.
  auto removed = s().http().request("DELETE", fmt::format("/api/v1/groups/{}/members/{}", gid, d.id), {}, a.token);
  ASSERT_EQ(removed.status, 204) << removed.body;
  auto pushed = wb->wait_for("member-removed", kFrameWait, [&](const Frame& fr) { return fr.u64("user_id") == d.id; });
  ASSERT_TRUE(pushed);
  EXPECT_TRUE(pushed->data()["banned"].GetBool());
  auto rejoin = post(d, "/join", "");
  EXPECT_EQ(rejoin.status, 403) << rejoin.body;
  EXPECT_EQ(code(rejoin), "banned");
  auto add_back = post(a, "/members", fmt::format(R"({{"user_id":{}}})", d.id));
  EXPECT_EQ(add_back.status, 403) << add_back.body;
  EXPECT_EQ(code(add_back), "banned");
  EXPECT_TRUE(wait_until([&] { return history(d, "limit=50").status == 403; }, 20s)) << "d still reads the history";
  EXPECT_EQ(history(d, "after_seq=0").status, 403);
  auto wd = connect_ws(s(), d, GetParam());
  ASSERT_TRUE(wd);
  wd->send("sync", fmt::format(R"({{"conversation_id":{},"after_seq":0}})", json_quote(conv)));
  auto refused = wd->wait_for("error", kFrameWait);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->str("code"), "forbidden");
  EXPECT_TRUE(wd->take_all("sync-result").empty());
  ASSERT_TRUE(wait_until([&] {
    auto bans = s().http().get(fmt::format("/api/v1/groups/{}/bans", gid), b.token);
    return bans.status == 200 && bans.json()["bans"].Size() == 1;
  }, 20s));
  auto bans = s().http().get(fmt::format("/api/v1/groups/{}/bans", gid), a.token);
  EXPECT_EQ(bans.json()["bans"][0]["user_id"].GetUint64(), d.id);
  EXPECT_EQ(bans.json()["bans"][0]["banned_by"].GetUint64(), a.id);
  EXPECT_EQ(s().http().get(fmt::format("/api/v1/groups/{}/bans", gid), e.token).status, 403) << "not a member";

  // The owner adds f: a from_join member reads from their join seq, on every read path.
  auto added = post(a, "/members", fmt::format(R"({{"user_id":{}}})", f.id));
  ASSERT_EQ(added.status, 200) << added.body;
  uint64_t joined = added.json()["seq_id"].GetUint64();
  EXPECT_EQ(joined, 6u);  // 1 created, 2..4 messages, 5 d removed
  auto after =
      s().http().post(fmt::format("/api/v1/conversations/{}/messages", conv), R"({"content":"welcome f"})", a.token);
  ASSERT_EQ(after.status, 201) << after.body;  // 7
  ASSERT_TRUE(wait_until([&] { return seqs(history(f, "limit=50")) == std::vector<uint64_t>{6, 7}; }, 20s))
      << history(f, "limit=50").body;
  EXPECT_EQ(seqs(history(f, "after_seq=0&limit=50")), (std::vector<uint64_t>{6, 7}));
  EXPECT_EQ(seqs(history(f, "before_seq=6")), std::vector<uint64_t>{});
  auto newest = history(f, "limit=1");
  EXPECT_EQ(seqs(newest), std::vector<uint64_t>{7});
  EXPECT_TRUE(newest.json()["has_more"].GetBool());
  EXPECT_FALSE(history(f, "limit=2").json()["has_more"].GetBool()) << "nothing f may read is older than the join";
  EXPECT_EQ(seqs(history(a, "after_seq=0&limit=3")), (std::vector<uint64_t>{1, 2, 3})) << "the owner reads it all";
  auto wf = connect_ws(s(), f, GetParam());
  ASSERT_TRUE(wf);
  wf->send("sync", fmt::format(R"({{"conversation_id":{},"after_seq":0}})", json_quote(conv)));
  auto sync = wf->wait_for("sync-result", kFrameWait);
  ASSERT_TRUE(sync);
  std::vector<uint64_t> synced;
  for (const auto& m : sync->data()["messages"].GetArray()) synced.push_back(m["seq_id"].GetUint64());
  EXPECT_EQ(synced, (std::vector<uint64_t>{6, 7}));
  EXPECT_FALSE(sync->data()["has_more"].GetBool());
  auto list = s().http().get("/api/v1/conversations", f.token);
  ASSERT_EQ(list.status, 200) << list.body;
  bool listed = false;
  auto list_doc = list.json();  // the range below must not iterate a destroyed temporary
  for (const auto& c : list_doc["conversations"].GetArray()) {
    if (c["conversation_id"].GetString() != conv) continue;
    listed = true;
    EXPECT_GE(c["last_message"]["seq_id"].GetUint64(), joined);
    EXPECT_EQ(c["read_seq"].GetUint64(), joined - 1);
    EXPECT_EQ(c["unread"].GetUint64(), 1u) << "the message after the join; the join is a system row";
  }
  EXPECT_TRUE(listed) << list.body;

  // Settings: only the owner or an admin changes them; then a stranger may join the public group.
  auto patch = [&](const User& u, const std::string& body) {
    return s().http().request("PATCH", fmt::format("/api/v1/groups/{}", gid), body, u.token);
  };
  EXPECT_EQ(patch(b, R"({"join_policy":"public"})").status, 403);
  EXPECT_EQ(patch(a, R"({"join_policy":"open"})").status, 400);
  EXPECT_EQ(patch(a, R"({})").status, 400);
  auto opened = patch(a, R"({"join_policy":"public"})");
  ASSERT_EQ(opened.status, 200) << opened.body;
  auto settings = wb->wait_for("group-settings-changed", kFrameWait);
  ASSERT_TRUE(settings);
  EXPECT_EQ(settings->str("join_policy"), "public");
  EXPECT_FALSE(settings->data().HasMember("history")) << "unchanged settings are left out";
  auto joined_e = post(e, "/join", "");
  ASSERT_EQ(joined_e.status, 200) << joined_e.body;
  EXPECT_EQ(code(post(d, "/join", "")), "banned") << "public, but d is still banned";

  // Lifting the ban: only the owner or an admin; then d may come back, reading from the new join.
  EXPECT_EQ(s().http().request("DELETE", fmt::format("/api/v1/groups/{}/bans/{}", gid, d.id), {}, b.token).status, 403);
  auto lifted = s().http().request("DELETE", fmt::format("/api/v1/groups/{}/bans/{}", gid, d.id), {}, a.token);
  ASSERT_EQ(lifted.status, 204) << lifted.body;
  auto unbanned = wb->wait_for("member-unbanned", kFrameWait);
  ASSERT_TRUE(unbanned);
  EXPECT_EQ(unbanned->u64("user_id"), d.id);
  auto again = s().http().request("DELETE", fmt::format("/api/v1/groups/{}/bans/{}", gid, d.id), {}, a.token);
  EXPECT_EQ(again.status, 404) << again.body;
  auto back = post(d, "/join", "");
  ASSERT_EQ(back.status, 200) << back.body;
  uint64_t back_at = back.json()["seq_id"].GetUint64();
  ASSERT_TRUE(wait_until([&] { return history(d, "after_seq=0").status == 200; }, 20s));
  auto dh = seqs(history(d, "after_seq=0&limit=50"));
  ASSERT_FALSE(dh.empty());
  EXPECT_EQ(dh.front(), back_at) << "from the latest join";
  ASSERT_TRUE(wait_until([&] {
    auto bans = s().http().get(fmt::format("/api/v1/groups/{}/bans", gid), a.token);
    return bans.status == 200 && bans.json()["bans"].Empty();
  }, 20s));
}

// docs/api/websocket.md "Protocol versions": imlog.v1.json by name or by default, the legacy name
// still selected, the binary imlog.v1, an unknown one refused before the upgrade; `hello` first on
// every connection, naming the form the connection speaks.
TEST_F(E2eChat, SubprotocolIsNegotiatedAndHelloAnnouncesTheVersion) {
  User a = make_user(s(), "proto");
  auto hello_of = [&](WsClient& ws, const std::string& protocol) {
    auto hello = ws.wait_for("hello", kFrameWait);
    EXPECT_TRUE(hello) << "no hello frame";
    if (!hello) return;
    EXPECT_EQ(hello->binary, protocol == kWsBinary);
    EXPECT_EQ(hello->str("protocol"), protocol);
    EXPECT_EQ(hello->u64("version"), 1u);
    EXPECT_EQ(hello->u64("user_id"), a.id);
    EXPECT_GT(hello->u64("server_time"), 0u);
    const auto& versions = hello->data()["versions"];
    ASSERT_TRUE(versions.IsArray() && versions.Size() == 1);
    EXPECT_EQ(versions[0].GetUint64(), 1u);
  };
  struct Offer {
    std::string asked, selected, protocol;
  };
  for (const Offer& offer : {Offer{"imlog.v1.json", "imlog.v1.json", kWsJson},
                             Offer{"imlog.v2.cbor, imlog.v1.json", "imlog.v1.json", kWsJson},
                             Offer{"imlog.json", "imlog.json", kWsJson}, Offer{"", "", kWsJson},
                             Offer{"imlog.v1", "imlog.v1", kWsBinary},
                             Offer{"imlog.v2, imlog.v1, imlog.v1.json", "imlog.v1", kWsBinary}}) {
    SCOPED_TRACE("Sec-WebSocket-Protocol: " + offer.asked);
    std::string error;
    auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws", a.token, nullptr, &error, true, offer.asked);
    ASSERT_TRUE(ws) << error;
    // The server names the one it picked, and nothing when the client asked for none.
    EXPECT_EQ(ws->subprotocol(), offer.selected);
    hello_of(*ws, offer.protocol);
    ws->send("ping", "{}");
    EXPECT_TRUE(ws->wait_for("pong", kFrameWait));
  }
  int status = 0;
  std::string error;
  auto refused = WsClient::connect("127.0.0.1", s().port(), "/ws", a.token, &status, &error, true, "imlog.v9.json");
  EXPECT_FALSE(refused);
  EXPECT_EQ(status, 400) << error;
  EXPECT_NE(error.find(R"("code":"unsupported_protocol")"), std::string::npos) << error;
  EXPECT_NE(error.find("imlog.v1.json"), std::string::npos) << "the refusal names what the server speaks: " << error;
  EXPECT_NE(error.find("imlog.v1 (binary)"), std::string::npos) << "both forms: " << error;
  EXPECT_NE(error.find("imlog.v9.json"), std::string::npos) << "and what was asked for: " << error;
}

TEST_F(E2eChat, BadFramesGetErrorsAndTheConnectionSurvives) {
  User a = make_user(s(), "bad"), b = make_user(s(), "bad2");
  auto ws = connect_ws(s(), a, kWsJson);
  ASSERT_TRUE(ws);
  ws->send_text("{not json");
  auto e1 = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e1);
  EXPECT_EQ(e1->str("code"), "invalid_json");
  ws->send("teleport", "{}");
  auto e2 = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e2);
  EXPECT_EQ(e2->str("code"), "unknown_type");
  ws->send_text(std::string("{\"type\":\"ping\",\"data\":{\"x\":\"\xff\xfe\"}}"));
  auto e3 = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e3);
  EXPECT_EQ(e3->str("code"), "invalid_utf8");
  ws->send("send-message", R"({"conversation_id":"nowhere","client_msg_id":"x1","content":"hi"})");
  auto e4 = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e4);
  EXPECT_EQ(e4->str("code"), "invalid");
  EXPECT_EQ(e4->str("client_msg_id"), "x1");
  ws->send("send-message", R"({"conversation_id":"world","content":"no id"})");
  auto e5 = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e5);
  EXPECT_EQ(e5->str("code"), "invalid");
  ws->send_binary("\x01\x02");
  auto e6 = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e6);
  EXPECT_EQ(e6->str("code"), "binary_unsupported");

  // Another user's conversation: refused, connection still fine.
  User x = make_user(s(), "other1"), y = make_user(s(), "other2");
  ws->send("sync", fmt::format(R"({{"conversation_id":{},"after_seq":0}})", json_quote(single(x.id, y.id))));
  auto e7 = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e7);
  EXPECT_EQ(e7->str("code"), "forbidden");
  auto rest = s().http().get(fmt::format("/api/v1/conversations/{}/messages", single(x.id, y.id)), a.token);
  EXPECT_EQ(rest.status, 403);
  auto not_mine = s().http().post(fmt::format("/api/v1/conversations/{}/messages", single(x.id, y.id)),
                                  R"({"content":"intrude"})", a.token);
  EXPECT_EQ(not_mine.status, 403);
  EXPECT_STREQ(not_mine.json()["code"].GetString(), "not_participant");

  ws->send("ping", "{}");
  ASSERT_TRUE(ws->wait_for("pong", kFrameWait)) << "the connection survived every bad frame";

  // An oversized frame: an error frame, then close 1009.
  ws->send_text(std::string(100 * 1024, 'x'));
  auto big = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->str("code"), "frame_too_large");
  auto code = ws->wait_closed(kFrameWait);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1009);
  EXPECT_EQ(s().http().get("/healthz").status, 200) << "the server survived";
}

// The binary form's hostile input: bytes that are no Frame, a frame type the server does not take,
// the JSON form's field rules, a text frame; each gets an error naming what is wrong, and the
// connection survives all but the oversized message.
TEST_F(E2eChat, BadBinaryFramesGetErrorsAndTheConnectionSurvives) {
  User a = make_user(s(), "badbin");
  auto ws = connect_ws(s(), a, kWsBinary);
  ASSERT_TRUE(ws);
  auto error_for = [&](const std::string& what) {
    auto e = ws->wait_for("error", kFrameWait);
    EXPECT_TRUE(e) << "no error frame for " << what;
    if (e) {
      EXPECT_TRUE(e->binary) << what;
    }
    return e ? std::pair(e->str("code"), e->str("message")) : std::pair(std::string(), std::string());
  };
  auto frame = [](const std::function<flatbuffers::Offset<wire::Frame>(flatbuffers::FlatBufferBuilder&)>& make) {
    flatbuffers::FlatBufferBuilder b;
    wire::FinishFrameBuffer(b, make(b));
    return std::string(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize());
  };

  ws->send_binary("\x01\x02");
  auto [code, message] = error_for("2 bytes");
  EXPECT_EQ(code, "invalid_binary");
  EXPECT_NE(message.find("shorter than"), std::string::npos) << message;
  ws->send_binary(std::string("\x0c\0\0\0JSON\0\0\0\0\0\0\0\0", 16));
  std::tie(code, message) = error_for("a wrong file identifier");
  EXPECT_EQ(code, "invalid_binary");
  EXPECT_NE(message.find("file identifier"), std::string::npos) << message;
  std::string truncated = frame([](auto& b) {
    return wire::CreateFrame(b, wire::Data::SendMessage,
                               wire::CreateSendMessageDirect(b, "world", "t1", "hello").Union());
  });
  truncated.resize(truncated.size() - 8);
  ws->send_binary(truncated);
  std::tie(code, message) = error_for("a truncated frame");
  EXPECT_EQ(code, "invalid_binary");
  EXPECT_NE(message.find("verification"), std::string::npos) << message;
  ws->send_binary(frame([](auto& b) {
    return wire::CreateFrame(b, static_cast<wire::Data>(200), wire::CreatePing(b).Union());
  }));
  EXPECT_EQ(error_for("frame type 200").first, "unknown_type");
  ws->send("hello", R"({"protocol":"imlog.v1","version":1,"versions":[1],"user_id":1,"server_time":1})");
  EXPECT_EQ(error_for("a server frame").first, "unknown_type");
  ws->send_binary(frame([](auto& b) {
    return wire::CreateFrame(b, wire::Data::SendMessage,
                               wire::CreateSendMessageDirect(b, "world", "u1", "\xff\xfe").Union());
  }));
  EXPECT_EQ(error_for("invalid UTF-8").first, "invalid_utf8");
  ws->send("send-message", R"({"conversation_id":"nowhere","client_msg_id":"x1","content":"hi"})");
  auto e = ws->wait_for("error", kFrameWait);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->str("code"), "invalid");
  EXPECT_EQ(e->str("client_msg_id"), "x1");
  ws->send("sync", R"({"conversation_id":"world","limit":500})");
  std::tie(code, message) = error_for("limit 500");
  EXPECT_EQ(code, "invalid");
  EXPECT_NE(message.find("from 1 to 200, got 500"), std::string::npos) << message;
  ws->send_text(R"({"type":"ping","data":{}})");
  EXPECT_EQ(error_for("a text frame").first, "text_unsupported");

  ws->send("ping", "{}");
  auto pong = ws->wait_for("pong", kFrameWait);
  ASSERT_TRUE(pong) << "the connection survived every bad frame";
  EXPECT_TRUE(pong->binary);

  ws->send_binary(std::string(100 * 1024, 'x'));
  EXPECT_EQ(error_for("an oversized message").first, "frame_too_large");
  auto closed = ws->wait_closed(kFrameWait);
  ASSERT_TRUE(closed);
  EXPECT_EQ(*closed, 1009);
  EXPECT_EQ(s().http().get("/healthz").status, 200) << "the server survived";
}

TEST_F(E2eChat, RestErrorsHaveCodesAndStatuses) {
  User a = make_user(s(), "rest");
  auto malformed = s().http().post("/api/v1/groups", "{\"name\":", a.token);
  EXPECT_EQ(malformed.status, 400);
  EXPECT_STREQ(malformed.json()["code"].GetString(), "invalid_json");
  EXPECT_NE(std::string(malformed.json()["message"].GetString()).find("offset"), std::string::npos);
  auto unknown = s().http().get("/api/v1/nope", a.token);
  EXPECT_EQ(unknown.status, 404);
  EXPECT_STREQ(unknown.json()["code"].GetString(), "not_found");
  auto method = s().http().request("DELETE", "/api/v1/conversations", {}, a.token);
  EXPECT_EQ(method.status, 405);
  auto anonymous = s().http().get("/api/v1/conversations");
  EXPECT_EQ(anonymous.status, 401);
  auto missing = s().http().get("/api/v1/groups/12345", a.token);
  EXPECT_EQ(missing.status, 404);
  auto me = s().http().get("/api/v1/users/me", a.token);
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(me.json()["user_id"].GetUint64(), a.id);
  EXPECT_STREQ(me.json()["username"].GetString(), a.name.c_str());
  auto patch = s().http().request("PATCH", "/api/v1/users/me", R"({"nickname":"Renamed"})", a.token);
  EXPECT_EQ(patch.status, 204) << patch.body;
  ASSERT_TRUE(wait_until([&] {
    auto r = s().http().get(fmt::format("/api/v1/users/{}", a.id), a.token);
    return r.status == 200 && std::string(r.json()["nickname"].GetString()) == "Renamed";
  }, 20s));
}

TEST_F(E2eChat, RestSendTakesSentAtAndRefusesOneItCannotUse) {
  User a = make_user(s(), "restime"), b = make_user(s(), "restimeb");
  std::string path = fmt::format("/api/v1/conversations/{}/messages", single(a.id, b.id));
  for (const char* bad : {R"("soon")", "0", "-1", "1.5", "253402300800000"}) {
    auto r = s().http().post(path, fmt::format(R"({{"client_msg_id":"rt","content":"x","sent_at":{}}})", bad), a.token);
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body;
    EXPECT_NE(r.body.find("sent_at"), std::string::npos) << bad << ": " << r.body;
  }
  // The largest value the gateway takes is refused by the engine: far past its clock, an entry
  // that would outlive the dedupe window. Not written, so the same id is free for a sane one.
  auto ahead = s().http().post(path, R"({"client_msg_id":"rt","content":"x","sent_at":253402300799999})", a.token);
  EXPECT_EQ(ahead.status, 400) << ahead.body;
  EXPECT_NE(ahead.body.find("ahead of the server's clock"), std::string::npos) << ahead.body;
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  auto ok = s().http().post(path, fmt::format(R"({{"client_msg_id":"rt","content":"x","sent_at":{}}})", now_ms),
                            a.token);
  EXPECT_EQ(ok.status, 201) << ok.body;
  // Past the window (after the engine's first checkpoint): 409 retry_window_expired.
  int n = 0;
  HttpResult last;
  ASSERT_TRUE(wait_until([&] {
    last = s().http().post(path, fmt::format(R"({{"client_msg_id":"rt-old-{}","content":"x","sent_at":1000}})", ++n),
                           a.token);
    return last.status == 409;
  }, 20s)) << last.status << " " << last.body;
  EXPECT_STREQ(last.json()["code"].GetString(), "retry_window_expired");
}

TEST_F(E2eChat, ContractStatusesOfRecallRoleAndWrongMethod) {
  User a = make_user(s(), "recaller"), b = make_user(s(), "recallee");
  auto g = s().http().post("/api/v1/groups", fmt::format(R"({{"name":"recalls","members":[{}]}})", b.id), a.token);
  ASSERT_EQ(g.status, 201) << g.body;
  std::string conv = g.json()["conversation_id"].GetString();
  uint64_t gid = g.json()["group_id"].GetUint64();
  auto sent = s().http().post(fmt::format("/api/v1/conversations/{}/messages", conv), R"({"content":"mine"})", a.token);
  ASSERT_EQ(sent.status, 201) << sent.body;
  uint64_t message = std::stoull(sent.json()["message_id"].GetString());

  // An id made a moment ago that is no message of this conversation: not found, not "too late".
  auto unknown = s().http().post(fmt::format("/api/v1/conversations/{}/messages/{}/recall", conv, message + 1), "",
                                 a.token);
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  EXPECT_STREQ(unknown.json()["code"].GetString(), "not_found") << unknown.body;
  auto others = s().http().post(fmt::format("/api/v1/conversations/{}/messages/{}/recall", conv, message), "", b.token);
  EXPECT_EQ(others.status, 403) << others.body;
  EXPECT_STREQ(others.json()["code"].GetString(), "not_sender") << others.body;
  auto own = s().http().post(fmt::format("/api/v1/conversations/{}/messages/{}/recall", conv, message), "", a.token);
  EXPECT_EQ(own.status, 204) << own.body;

  auto bad_role = s().http().request("PUT", fmt::format("/api/v1/groups/{}/members/{}/role", gid, b.id),
                                     R"({"role":"king"})", a.token);
  EXPECT_EQ(bad_role.status, 400) << bad_role.body;
  EXPECT_STREQ(bad_role.json()["code"].GetString(), "invalid") << bad_role.body;

  // /users/me and /users/{id} are both GET routes of this path: Allow names GET once.
  auto wrong = s().http().request("PUT", "/api/v1/users/me", "{}", a.token);
  EXPECT_EQ(wrong.status, 405) << wrong.body;
  EXPECT_STREQ(wrong.json()["code"].GetString(), "method_not_allowed") << wrong.body;
  EXPECT_EQ(wrong.header("Allow"), "GET, PATCH, DELETE");
}

TEST_F(E2eChat, QueryParametersOutsideTheirDocumentedRangesAre400) {
  User a = make_user(s(), "ranges");
  auto g = s().http().post("/api/v1/groups", R"({"name":"ranges"})", a.token);
  ASSERT_EQ(g.status, 201) << g.body;
  std::string conv = g.json()["conversation_id"].GetString();
  uint64_t gid = g.json()["group_id"].GetUint64();
  struct Case {
    std::string target;
    std::string names;  // what the message must say
  };
  std::string history = fmt::format("/api/v1/conversations/{}/messages", conv);
  std::string members = fmt::format("/api/v1/groups/{}/members", gid);
  std::string bans = fmt::format("/api/v1/groups/{}/bans", gid);
  for (const Case& c : {Case{history + "?limit=0", "`limit` must be an integer from 1 to 200, got `0`"},
                        Case{history + "?limit=500", "`limit` must be an integer from 1 to 200, got `500`"},
                        Case{members + "?limit=0", "`limit` must be an integer from 1 to 1000"},
                        Case{members + "?limit=1001", "`limit` must be an integer from 1 to 1000"},
                        Case{bans + "?limit=1001", "`limit` must be an integer from 1 to 1000"},
                        Case{"/api/v1/users/search?q=ran&limit=101", "`limit` must be an integer from 1 to 100"},
                        Case{"/api/v1/users/search?q=ran&limit=0", "`limit` must be an integer from 1 to 100"},
                        Case{history + "?before_seq=-1", "`before_seq` must be a non-negative integer"}}) {
    auto r = s().http().get(c.target, a.token);
    EXPECT_EQ(r.status, 400) << c.target << ": " << r.body;
    EXPECT_STREQ(r.json()["code"].GetString(), "invalid") << c.target;
    EXPECT_NE(std::string(r.json()["message"].GetString()).find(c.names), std::string::npos) << r.body;
  }
  // The ends of each range are served.
  for (const std::string& target : {history + "?limit=1", history + "?limit=200", members + "?limit=1000",
                                    bans + "?limit=1", std::string("/api/v1/users/search?q=ran&limit=100")}) {
    auto r = s().http().get(target, a.token);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
  }
}

TEST_F(E2eChat, TokensExpiredForgedNoneAndWrongTypeAreRefused) {
  User a = make_user(s(), "tok");
  std::string secret = s().secret();
  ASSERT_GE(secret.size(), 16u);
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string header = R"({"alg":"HS256","typ":"JWT"})";
  std::string expired = hs256(secret, header, fmt::format(R"({{"sub":"{}","type":"access","iat":{},"exp":{}}})", a.id, now - 100, now - 10));
  std::string forged = hs256("not the server's secret at all", header,
                             fmt::format(R"({{"sub":"{}","type":"access","iat":{},"exp":{}}})", a.id, now, now + 600));
  std::string none = b64url(R"({"alg":"none","typ":"JWT"})") + "." +
                     b64url(fmt::format(R"({{"sub":"{}","type":"access","iat":{},"exp":{}}})", a.id, now, now + 600)) + ".";
  std::string valid = hs256(secret, header, fmt::format(R"({{"sub":"{}","type":"access","iat":{},"exp":{}}})", a.id, now, now + 600));

  auto why = [&](const std::string& token) {
    auto r = s().http().get("/api/v1/conversations", token);
    EXPECT_EQ(r.status, 401) << r.body;
    return r.status == 401 ? std::string(r.json()["message"].GetString()) : std::string();
  };
  EXPECT_NE(why(expired).find("expired"), std::string::npos);
  EXPECT_NE(why(forged).find("signature"), std::string::npos);
  EXPECT_NE(why(none).find("none"), std::string::npos);
  EXPECT_NE(why(a.refresh).find("refresh"), std::string::npos) << "a refresh token is not an access token";
  EXPECT_EQ(s().http().get("/api/v1/conversations", valid).status, 200) << "a token minted with the secret works";

  int status = 0;
  EXPECT_FALSE(WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + expired, {}, &status));
  EXPECT_EQ(status, 401);
  EXPECT_FALSE(WsClient::connect("127.0.0.1", s().port(), "/ws", forged, &status));
  EXPECT_EQ(status, 401);
  EXPECT_FALSE(WsClient::connect("127.0.0.1", s().port(), "/ws", {}, &status));
  EXPECT_EQ(status, 401);
  auto ok = WsClient::connect("127.0.0.1", s().port(), "/ws", a.token, &status);
  EXPECT_TRUE(ok) << "Authorization: Bearer works for /ws too";
}

TEST_F(E2eChat, RefreshRotatesAndLogoutRevokes) {
  User a = make_user(s(), "refr");
  auto r1 = s().http().post("/api/v1/auth/refresh", fmt::format(R"({{"refresh_token":{}}})", json_quote(a.refresh)));
  ASSERT_EQ(r1.status, 200) << r1.body;
  std::string access2 = r1.json()["access_token"].GetString();
  std::string refresh2 = r1.json()["refresh_token"].GetString();
  EXPECT_EQ(s().http().get("/api/v1/conversations", access2).status, 200);
  auto reuse = s().http().post("/api/v1/auth/refresh", fmt::format(R"({{"refresh_token":{}}})", json_quote(a.refresh)));
  EXPECT_EQ(reuse.status, 401) << "refresh tokens are single-use: " << reuse.body;
  auto out = s().http().post("/api/v1/auth/logout", fmt::format(R"({{"refresh_token":{}}})", json_quote(refresh2)));
  EXPECT_EQ(out.status, 204) << out.body;
  auto after = s().http().post("/api/v1/auth/refresh", fmt::format(R"({{"refresh_token":{}}})", json_quote(refresh2)));
  EXPECT_EQ(after.status, 401);
  auto access_as_refresh = s().http().post("/api/v1/auth/refresh", fmt::format(R"({{"refresh_token":{}}})", json_quote(a.token)));
  EXPECT_EQ(access_as_refresh.status, 401);
}

TEST_P(E2eChatWs, FastSendersAreRateLimited) {
  User a = make_user(s(), "fast");
  auto ws = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(ws);
  // The burst is 800 frames and the rate 400 a second: 1000 pings at once run out of tokens. A
  // slow server (a sanitizer build) may read them over more than half a second, refilling the
  // bucket as it goes, so the bursts go on until one is refused, up to ten of them.
  auto is_limited = [](const Frame& f) { return f.str("code") == "rate_limited"; };
  std::optional<Frame> limited;
  for (int burst = 0; burst < 10 && !limited; ++burst) {
    for (int i = 0; i < 1000; ++i) ws->send("ping", "{}");
    limited = ws->wait_for("error", 2s, is_limited);
  }
  ASSERT_TRUE(limited) << "ten bursts of 1000 frames were never refused";
  // The pongs of the bursts' pings that had tokens come in until a second goes by without one.
  ASSERT_TRUE(wait_until([&] { return ws->take_all("pong").empty() && !ws->wait_for("pong", 1s); }, 60s));
  // A ping takes a token like any frame: once the bucket refills, one is answered.
  EXPECT_TRUE(wait_until([&] {
    ws->send("ping", "{}");
    return ws->wait_for("pong", 200ms).has_value();
  }, 30s)) << "still connected";
}

TEST_F(E2eChat, SilentPeersAreClosedAfterTheHeartbeatTimeout) {
  User a = make_user(s(), "silent");
  auto open_sessions = [&] {
    auto m = s().http().get("/metrics");
    constexpr std::string_view kLine = "\nimlog_gateway_ws_connections ";
    auto at = m.body.find(kLine);
    return at == std::string::npos ? -1 : std::stoi(m.body.substr(at + kLine.size()));
  };
  ASSERT_TRUE(wait_until([&] { return open_sessions() == 0; }, 10s));
  // A client that never reads never answers the server's pings (heartbeat_timeout()).
  auto silent = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + a.token, {}, nullptr, nullptr,
                                  /*read=*/false);
  ASSERT_TRUE(silent);
  auto timeouts = [&] {
    auto m = s().http().get("/metrics");
    constexpr std::string_view kLine = "\nimlog_gateway_heartbeat_timeouts_total ";
    auto at = m.body.find(kLine);
    return at == std::string::npos ? -1 : std::stoi(m.body.substr(at + kLine.size()));
  };
  int timeouts_before = timeouts();
  ASSERT_TRUE(wait_until([&] { return open_sessions() == 1; }, 10s));
  EXPECT_TRUE(wait_until([&] { return open_sessions() == 0; }, heartbeat_timeout() * 5)) << "the silent peer was not closed";
  EXPECT_EQ(timeouts(), timeouts_before + 1) << "closed for its silence";
  // A client that reads answers the pings and stays, past the time-out.
  auto alive = connect_ws(s(), a, kWsJson);
  ASSERT_TRUE(alive);
  EXPECT_FALSE(alive->wait_closed(heartbeat_timeout() + 2s)) << "a peer that answers pings must stay connected";
  alive->send("ping", "{}");
  EXPECT_TRUE(alive->wait_for("pong", kFrameWait));
}

TEST_P(E2eChatWs, AClientTooSlowToReadIsDisconnected) {
  User a = make_user(s(), "pusher"), b = make_user(s(), "sloth");
  auto counter = [&](std::string_view name) {
    auto m = s().http().get("/metrics");
    std::string line = "\n" + std::string(name) + " ";
    auto at = m.body.find(line);
    return at == std::string::npos ? -1 : std::stoll(m.body.substr(at + line.size()));
  };
  auto sloth = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + b.token, {}, nullptr, nullptr, /*read=*/false);
  ASSERT_TRUE(sloth);
  auto wa = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(wa);
  // Messages of 30 KB pushed to a client that never reads, in rounds of 100 (3 MB) until the
  // gateway gives up on it: past the socket buffers (the kernel may let a receive buffer grow to
  // tcp_rmem's maximum, 32 MiB here) the 256 KiB write queue fills and the session is closed.
  // At most 40 rounds (120 MB), far more than any buffer holds.
  std::string big(30 * 1000, 'z');
  std::string c = single(a.id, b.id);
  bool dropped = false;
  for (int round = 0; round < 40 && !dropped; ++round) {
    for (int i = 0; i < 100; ++i) send_message(*wa, c, fmt::format("big{}-{}", round, i), big);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(ack_of(*wa, fmt::format("big{}-{}", round, i))) << round << " " << i;
    dropped = wait_until([&] { return counter("imlog_gateway_slow_consumers_total") >= 1; }, 2s);
  }
  EXPECT_TRUE(dropped) << "a client that never reads 120 MB of pushes is still connected (closed for silence "
                       << "instead: " << counter("imlog_gateway_heartbeat_timeouts_total") << ")";
  wa->send("ping", "{}");
  EXPECT_TRUE(wa->wait_for("pong", kFrameWait)) << "the sender is unaffected";
}

// The gateway writes several queued frames in one socket write, while Beast writes its own
// control frames (pongs) on the same socket: the two must never interleave. A client that pings
// all along while a flood of pushes comes in gets every push and every pong over a stream its
// (strict) Beast client accepts: it would fail the connection on one malformed frame.
TEST_P(E2eChatWs, PongsAndCoalescedPushesNeverInterleave) {
  User a = make_user(s(), "flooder"), b = make_user(s(), "pinger");
  auto wa = connect_ws(s(), a, GetParam()), wb = connect_ws(s(), b, GetParam());
  ASSERT_TRUE(wa && wb);
  std::string c = single(a.id, b.id);
  constexpr int kMessages = 300;
  // 300 pushes of ~600 bytes stay under the 256 KiB write queue even if this client falls behind
  // on a busy machine: the test is about framing, not about slow consumers (tested above).
  std::string body(500, 'p');
  for (int i = 0; i < kMessages; ++i) {
    send_message(*wa, c, fmt::format("flood{}", i), body);
    if (i % 3 == 0) wb->send_ping(std::to_string(i));
  }
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(ack_of(*wa, fmt::format("flood{}", i))) << i;
  std::set<uint64_t> seqs;
  ASSERT_TRUE(wait_until([&] {
    for (auto& f : wb->take_all("new-message")) seqs.insert(f.u64("seq_id"));
    return seqs.size() == static_cast<size_t>(kMessages) || wb->closed();
  }, 30s)) << seqs.size() << " of " << kMessages << " pushes";
  EXPECT_FALSE(wb->closed()) << "the connection ended: " << wb->close_error();
  EXPECT_EQ(seqs.size(), static_cast<size_t>(kMessages));
  EXPECT_TRUE(wait_until([&] { return wb->pongs() >= kMessages / 3; }, 10s)) << wb->pongs() << " pongs";
  auto m = s().http().get("/metrics");
  EXPECT_NE(m.body.find("imlog_gateway_ws_writes_total"), std::string::npos);
}

// ---- the bound on how long a message may wait unread (gateway.max_frame_wait) ------------------

// A server whose bound is 2 ms (20 ms in an instrumented build), far above what reading one message
// takes even on a busy machine, with no rate limit and room for thousands of queued answers.
std::string late_config(int max_inflight_commands) {
  return server_config(fmt::format(R"(  ws_rate: 1000000
  ws_burst: 1000000
  query_queue: 100000
  max_queued_frames: 100000
  max_queued_bytes: 64MiB
  max_inflight_commands: {}
  max_frame_wait: {}ms
)", max_inflight_commands, scaled(2ms).count()));
}

class E2eLateFrames : public ::testing::TestWithParam<std::string> {
 protected:
  void start(int max_inflight_commands) {
    ASSERT_GE(sodium_init(), 0);
    dir_ = std::make_unique<TempDir>("imlog-e2e-late");
    server_ = std::make_unique<Server>(dir_->str(), late_config(max_inflight_commands));
    ASSERT_TRUE(server_->start()) << "imlog did not become ready on port " << server_->port();
  }
  Server& s() { return *server_; }

 private:
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Server> server_;
};
INSTANTIATE_TEST_SUITE_P(Forms, E2eLateFrames, ::testing::Values(kWsJson, kWsBinary), form_name);

// 2,000 syncs with a send after every 100 (what fits in the socket's buffer), written while the
// server is stopped (SIGSTOP), so that all are in its socket when it goes on: the session reads
// one message per turn of its I/O thread, so the later ones wait, unread, behind those before
// them, past the bound. Those are answered `overloaded` with their client_msg_id or request type
// and a retry hint, and not handled; the rest are. Every message is answered once, the accepted sends are stored and the
// refused ones are not, a refused send retried alone is accepted, and a ping is answered however
// long it waited.
TEST_P(E2eLateFrames, AMessageThatWaitedPastTheBoundIsRefusedOverloadedAndNotHandled) {
  ASSERT_NO_FATAL_FAILURE(start(64));
  User a = make_user(s(), "late"), b = make_user(s(), "reader");
  auto ws = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(ws);
  std::string c = single(a.id, b.id);
  constexpr int kSyncs = 2000, kSends = 20;
  s().signal(SIGSTOP);
  for (int i = 0; i < kSyncs; ++i) {
    ws->send("sync", fmt::format(R"({{"conversation_id":{},"limit":1}})", json_quote(c)));
    if (i % (kSyncs / kSends) == kSyncs / kSends - 1) {
      send_message(*ws, c, fmt::format("late{}", i), fmt::format("text {}", i));
    }
  }
  ws->send("ping", "{}");
  std::this_thread::sleep_for(300ms);  // the client's thread writes them all to the socket
  s().signal(SIGCONT);

  size_t synced = 0, syncs_refused = 0;
  std::set<std::string> acked, refused;
  ASSERT_TRUE(wait_until([&] {
    synced += ws->take_all("sync-result").size();
    for (auto& f : ws->take_all("message-ack")) EXPECT_TRUE(acked.insert(f.str("client_msg_id")).second) << f.raw;
    for (auto& e : ws->take_all("error")) {
      EXPECT_EQ(e.str("code"), "overloaded") << e.raw;
      EXPECT_GT(e.u64("retry_after_ms"), 0u) << e.raw;
      EXPECT_NE(e.str("message").find("waited"), std::string::npos) << e.raw;
      if (e.str("request_type") == "sync") {
        ++syncs_refused;
      } else {
        EXPECT_EQ(e.str("request_type"), "send-message") << e.raw;
        EXPECT_TRUE(refused.insert(e.str("client_msg_id")).second) << e.raw;
      }
    }
    return synced + syncs_refused >= static_cast<size_t>(kSyncs) &&
           acked.size() + refused.size() >= static_cast<size_t>(kSends);
  }, scaled(60s))) << synced << " synced, " << syncs_refused << " syncs refused, " << acked.size() << " acked, "
                   << refused.size() << " sends refused";
  EXPECT_EQ(synced + syncs_refused, static_cast<size_t>(kSyncs));
  EXPECT_GE(synced, 1u) << "the first sync waited for nothing";
  EXPECT_GE(syncs_refused, 1u) << "2,000 syncs read one at a time, all within the bound";
  EXPECT_GE(refused.size(), 1u) << "the last sends waited behind 2,000 syncs";
  EXPECT_EQ(acked.size() + refused.size(), static_cast<size_t>(kSends));
  for (const auto& id : acked) EXPECT_FALSE(refused.count(id)) << id << " answered twice";
  EXPECT_TRUE(ws->wait_for("pong", kFrameWait)) << "a ping is answered however long it waited";

  if (!acked.empty()) {
    ASSERT_TRUE(wait_history(s(), a, c, acked.size()));
  }
  std::set<std::string> stored;
  for (const auto& m : full_history(s(), a, c)) stored.insert(m.client_msg_id);
  EXPECT_EQ(stored, acked) << "the accepted sends are stored, the refused ones are not";

  // The client retries a refused send, alone, with the same client_msg_id: it waits for nothing now.
  ASSERT_FALSE(refused.empty());
  const std::string retried = *refused.begin();
  send_message(*ws, c, retried, "sent again");
  EXPECT_TRUE(ack_of(*ws, retried));
  auto m = s().http().get("/metrics");
  EXPECT_NE(m.body.find("imlog_gateway_frame_wait_seconds_count"), std::string::npos);
  EXPECT_NE(m.body.find("imlog_gateway_errors_total{code=\"overloaded\"}"), std::string::npos);
  constexpr std::string_view kLate = "\nimlog_gateway_late_refusals_total ";
  auto at = m.body.find(kLate);
  ASSERT_NE(at, std::string::npos);
  EXPECT_EQ(std::stoull(m.body.substr(at + kLate.size())), syncs_refused + refused.size())
      << "every late refusal counted, and nothing else";
}

// A client that sends more than max_inflight_commands at once waits for its own answers: the
// session stops reading it meanwhile. That pause is the client's back-pressure, not the gateway
// falling behind, so it does not count against the bound: with one command in flight at a time
// and a bound of 2 ms, 100 sends written at once — each waiting for the engine's round trip of the
// one before, 100 of them far longer than 2 ms — are all accepted.
TEST_P(E2eLateFrames, APauseAtTheInflightBoundIsNotHeldAgainstTheMessages) {
  ASSERT_NO_FATAL_FAILURE(start(1));
  User a = make_user(s(), "eager"), b = make_user(s(), "peer");
  auto ws = connect_ws(s(), a, GetParam());
  ASSERT_TRUE(ws);
  std::string c = single(a.id, b.id);
  constexpr int kSends = 100;
  for (int i = 0; i < kSends; ++i) send_message(*ws, c, fmt::format("eager{}", i), fmt::format("text {}", i));
  for (int i = 0; i < kSends; ++i) ASSERT_TRUE(ack_of(*ws, fmt::format("eager{}", i))) << i;
}

class E2eShutdown : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Forms, E2eShutdown, ::testing::Values(kWsJson, kWsBinary), form_name);

TEST_P(E2eShutdown, SigtermClosesWebSocketsWithGoingAwayAndExitsZero) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir("imlog-e2e-stop");
  Server server(dir.str());
  ASSERT_TRUE(server.start()) << "imlog did not become ready on port " << server.port();
  User a = make_user(server, "stopper");
  auto ws = connect_ws(server, a, GetParam());
  ASSERT_TRUE(ws);
  ws->send("ping", "{}");
  ASSERT_TRUE(ws->wait_for("pong", kFrameWait));
  auto st = server.terminate();
  EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
  auto code = ws->wait_closed(kFrameWait);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1001);
}

// ---- crash -------------------------------------------------------------------------------------

class E2eCrash : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Forms, E2eCrash, ::testing::Values(kWsJson, kWsBinary), form_name);

TEST_P(E2eCrash, KillNineMidStreamThenEveryAckedMessageIsThereOnceAndSyncCatchesUp) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir("imlog-e2e-crash");
  Server server(dir.str());
  ASSERT_TRUE(server.start()) << "imlog did not become ready on port " << server.port();
  User a = make_user(server, "crash_a"), b = make_user(server, "crash_b");
  std::string c = single(a.id, b.id);
  auto wa = connect_ws(server, a, GetParam()), wb = connect_ws(server, b, GetParam());
  ASSERT_TRUE(wa && wb);

  constexpr int kFirst = 60;
  constexpr int kMessages = 400;
  auto id_of = [](int i) { return fmt::format("crash-{}", i); };
  std::map<std::string, std::pair<uint64_t, std::string>> acked;  // client_msg_id → (seq, message_id)
  auto take_ack = [&] {
    auto ack = wa->wait_for("message-ack", kFrameWait);
    if (ack) acked[ack->str("client_msg_id")] = {ack->u64("seq_id"), ack->str("message_id")};
    return ack.has_value();
  };
  for (int i = 0; i < kFirst; ++i) send_message(*wa, c, id_of(i), fmt::format("payload {}", i));
  while (acked.size() < static_cast<size_t>(kFirst)) ASSERT_TRUE(take_ack()) << "acks stopped at " << acked.size();
  // Then a stream of sends, and the plug pulled while it flows.
  for (int i = kFirst; i < kMessages; ++i) send_message(*wa, c, id_of(i), fmt::format("payload {}", i));
  while (acked.size() < static_cast<size_t>(kFirst + 10)) ASSERT_TRUE(take_ack());
  server.kill9();
  ASSERT_TRUE(wa->wait_closed(kFrameWait));
  ASSERT_TRUE(wb->wait_closed(kFrameWait));
  for (auto& f : wa->take_all("message-ack")) acked[f.str("client_msg_id")] = {f.u64("seq_id"), f.str("message_id")};
  // What bob had received, contiguously from seq 1.
  std::set<uint64_t> bob_seqs;
  for (auto& f : wb->take_all("new-message")) bob_seqs.insert(f.u64("seq_id"));
  uint64_t bob_last = 0;
  while (bob_seqs.contains(bob_last + 1)) ++bob_last;
  std::cout << "killed with " << acked.size() << " of " << kMessages << " messages acknowledged; bob had seen seq "
            << bob_last << "\n";

  ASSERT_TRUE(server.start()) << "imlog did not become ready on port " << server.port();
  // The client retries everything it sent with the same client_msg_ids: acked ones must come back
  // with their original ids, the rest are taken once.
  auto login = server.http().post("/api/v1/auth/login", fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(a.name)));
  ASSERT_EQ(login.status, 200) << login.body;
  a.token = login.json()["access_token"].GetString();
  auto login_b = server.http().post("/api/v1/auth/login", fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(b.name)));
  ASSERT_EQ(login_b.status, 200);
  b.token = login_b.json()["access_token"].GetString();
  auto wa2 = connect_ws(server, a, GetParam());
  ASSERT_TRUE(wa2);
  for (int i = 0; i < kMessages; ++i) send_message(*wa2, c, id_of(i), fmt::format("payload {}", i));
  std::map<std::string, std::pair<uint64_t, std::string>> final_ids;
  for (int i = 0; i < kMessages; ++i) {
    auto ack = ack_of(*wa2, id_of(i));
    ASSERT_TRUE(ack) << id_of(i);
    final_ids[id_of(i)] = {ack->u64("seq_id"), ack->str("message_id")};
  }
  for (const auto& [cmid, ids] : acked) {
    EXPECT_EQ(final_ids[cmid], ids) << cmid << " was acked before the crash with other ids";
  }

  // History: every message exactly once, seqs dense from 1.
  ASSERT_TRUE(wait_history(server, a, c, kMessages, 60s));
  auto history = full_history(server, a, c);
  ASSERT_EQ(history.size(), static_cast<size_t>(kMessages));
  std::set<std::string> seen;
  for (size_t i = 0; i < history.size(); ++i) {
    EXPECT_EQ(history[i].seq, i + 1) << "seq ids are dense";
    EXPECT_TRUE(seen.insert(history[i].client_msg_id).second) << history[i].client_msg_id << " twice";
    auto it = final_ids.find(history[i].client_msg_id);
    ASSERT_NE(it, final_ids.end());
    EXPECT_EQ(it->second.first, history[i].seq);
    EXPECT_EQ(it->second.second, history[i].message_id);
  }

  // Bob reconnects and syncs from the last seq he saw: exactly what he missed.
  auto wb2 = connect_ws(server, b, GetParam());
  ASSERT_TRUE(wb2);
  std::vector<uint64_t> missed;
  uint64_t after = bob_last;
  for (int guard = 0; guard < 100; ++guard) {
    wb2->send("sync", fmt::format(R"({{"conversation_id":{},"after_seq":{},"limit":100}})", json_quote(c), after));
    auto page = wb2->wait_for("sync-result", kFrameWait);
    ASSERT_TRUE(page);
    const auto& msgs = page->data()["messages"];
    for (const auto& m : msgs.GetArray()) missed.push_back(m["seq_id"].GetUint64());
    if (!page->data()["has_more"].GetBool() || msgs.Empty()) break;
    after = missed.back();
  }
  std::vector<uint64_t> expected;
  for (uint64_t s = bob_last + 1; s <= static_cast<uint64_t>(kMessages); ++s) expected.push_back(s);
  EXPECT_EQ(missed, expected);

  auto st = server.terminate();
  EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
}

}  // namespace
}  // namespace imlog::testing
