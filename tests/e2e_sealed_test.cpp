// Sealed message content end to end (issue 18; docs/data-lifecycle.md, "Sealed content and data
// keys"): a real `imlog serve` on the embedded log.
//
//   - a message's text reaches its recipient's push and the history as sent, yet no file of the
//     embedded log or of the engine's state holds it: the log has it sealed with the sender's key;
//   - the key store (<data_dir>/keys) holds the sender's key, not the text;
//   - `replay --verify` of the RocksDB model, which opens every message again with the keys, is
//     equal to the live model;
//   - every event of a command the gateway named itself (registration, a message sent without a
//     client_msg_id) carries the gateway's time as its sent_at, so the engine's dedupe entry of
//     it lasts the dedupe window, not for ever; one with the client's own id and no sent_at has
//     none;
//   - erasure (DELETE /api/v1/users/me): a wrong password changes nothing; then the user's message
//     keeps its seq, erased and empty, in the other user's history; their profile, login, token
//     and search hits are gone; after a clean stop no file of the data directory — log, engine
//     state, keys, read model — holds their message text or their nickname; `replay --verify`
//     rebuilds the same scrubbed model from the log;
//   - the erased user's username stays claimed for engine.username_grace, then goes to whoever
//     registers it next, as a new user.

#include <gtest/gtest.h>
#include <sodium.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

// The files under `dir` holding `needle`, by path.
std::vector<std::string> files_holding(const std::filesystem::path& dir, const std::string& needle) {
  std::vector<std::string> out;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (!f.is_regular_file()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.find(needle) != std::string::npos) out.push_back(f.path().string());
  }
  return out;
}

class E2eSealed : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ImlogServer>(dir_.str(), R"(
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 5s
)");
  }

  // Waits until the conversation's history holds `text` as seen by `u`.
  bool history_holds(const std::string& conv, const SignedIn& u, const std::string& text) {
    for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
      auto r = server_->http().request("GET", "/api/v1/conversations/" + conv + "/messages?limit=50", "", u.token);
      if (r.status == 200 && r.body.find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  // A text found nowhere else: random, so no other bytes of the data directory match it by chance.
  static std::string canary(std::string_view prefix) {
    unsigned char r[12];
    randombytes_buf(r, sizeof r);
    std::string out(prefix);
    for (unsigned char c : r) out += fmt::format("{:02x}", c);
    return out;
  }

  TempDir dir_{"imlog-e2e-sealed"};
  std::unique_ptr<ImlogServer> server_;
};

TEST_F(E2eSealed, TheLogHoldsNoMessageTextYetEveryReaderOpensIt) {
  ASSERT_TRUE(server_->start()) << "imlog did not get ready";
  SignedIn ann = join(server_->http(), "seal_ann"), bob = join(server_->http(), "seal_bob");
  ASSERT_FALSE(HasFailure());
  const std::string canary = E2eSealed::canary("canary-");

  auto bob_ws = WsClient::connect("127.0.0.1", server_->port(), "/ws", bob.token);
  ASSERT_TRUE(bob_ws) << "bob's WebSocket";
  const std::string conv = single_stream(ann.id, bob.id);
  auto sent = server_->http().request("POST", "/api/v1/conversations/" + conv + "/messages",
                                      fmt::format(R"({{"client_msg_id":"s1","content":"{}"}})", canary), ann.token);
  ASSERT_EQ(sent.status, 201) << sent.body;
  auto unnamed = server_->http().request("POST", "/api/v1/conversations/" + conv + "/messages",
                                         R"({"content":"no id given"})", ann.token);
  ASSERT_EQ(unnamed.status, 201) << unnamed.body;
  auto pushed = bob_ws->wait_for("new-message", 10s);
  ASSERT_TRUE(pushed.has_value()) << "bob got no push";
  EXPECT_EQ(pushed->str("content"), canary) << pushed->raw;
  EXPECT_TRUE(history_holds(conv, bob, canary)) << "the history does not show the text";
  bob_ws->close();

  auto status = server_->terminate();
  ASSERT_TRUE(status.has_value());
  const std::filesystem::path data = server_->data_dir();
  ASSERT_TRUE(std::filesystem::is_directory(data / "log"));
  ASSERT_TRUE(std::filesystem::is_directory(data / "keys"));
  EXPECT_EQ(files_holding(data / "log", canary), std::vector<std::string>{}) << "the embedded log holds the text";
  EXPECT_EQ(files_holding(data / "engine", canary), std::vector<std::string>{}) << "the engine state holds it";
  EXPECT_EQ(files_holding(data / "keys", canary), std::vector<std::string>{});
  // The read model keeps the opened text (until erasure reaches it, issue 18): the check above
  // would pass on an empty log, this one shows the text did reach the disk in the open.
  EXPECT_FALSE(files_holding(data / "model", canary).empty()) << "the read model does not hold the text";

  {
    LocalLogConfig lc;
    lc.dir = (data / "log").string();
    auto log = LocalLog::open(lc);
    ASSERT_TRUE(log) << log.error().to_string();
    auto tail = LogTail::open(**log, "");
    ASSERT_TRUE(tail) << tail.error().to_string();
    ASSERT_TRUE((*tail)->read_to_end());
    size_t named_by_gateway = 0;
    for (const auto& e : (*tail)->valid()) {
      if (e.client_msg_id == "s1") {
        EXPECT_EQ(e.client_sent_at, 0) << "the client's own id without sent_at";
        continue;
      }
      ++named_by_gateway;
      EXPECT_GT(e.client_sent_at, 0) << fb::EnumNameEvent(e.type) << " " << e.stream << " " << e.client_msg_id;
    }
    EXPECT_GE(named_by_gateway, 3u);  // two registrations and the message without an id
  }

  auto replay = run_command({(binary_dir() / "replay").string(), "--projection", "rocksdb", "--config",
                             server_->config_path(), "--data-dir", server_->data_dir(), "--verify"});
  EXPECT_EQ(replay.status, 0) << replay.out;
  EXPECT_NE(replay.out.find("verify: equal"), std::string::npos) << replay.out;
}

TEST_F(E2eSealed, AnErasedUserLeavesNothingReadableAndReplayAgrees) {
  ASSERT_TRUE(server_->start()) << "imlog did not get ready";
  SignedIn ann = join(server_->http(), "gone_ann"), bob = join(server_->http(), "gone_bob");
  ASSERT_FALSE(HasFailure());
  const std::string text = canary("word"), nickname = canary("nick");
  auto& http = server_->http();
  auto named = http.request("PATCH", "/api/v1/users/me", fmt::format(R"({{"nickname":"{}"}})", nickname), ann.token);
  ASSERT_EQ(named.status, 204) << named.body;
  const std::string conv = single_stream(ann.id, bob.id);
  auto sent = http.request("POST", "/api/v1/conversations/" + conv + "/messages",
                           fmt::format(R"({{"client_msg_id":"g1","content":"hello {}"}})", text), ann.token);
  ASSERT_EQ(sent.status, 201) << sent.body;
  auto reply = http.request("POST", "/api/v1/conversations/" + conv + "/messages",
                            R"({"client_msg_id":"g2","content":"bob stays"})", bob.token);
  ASSERT_EQ(reply.status, 201) << reply.body;
  ASSERT_TRUE(history_holds(conv, bob, text)) << "the message did not reach the model";
  const std::string search = "/api/v1/search/messages?q=" + text;
  EXPECT_NE(http.request("GET", search, "", bob.token).body.find(text), std::string::npos) << "search did not find it";

  auto ann_ws = WsClient::connect("127.0.0.1", server_->port(), "/ws", ann.token);  // open across the erasure
  ASSERT_TRUE(ann_ws) << "ann's WebSocket";
  auto wrong = http.request("DELETE", "/api/v1/users/me", R"({"password":"not-it"})", ann.token);
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  EXPECT_EQ(http.request("GET", "/api/v1/users/me", "", ann.token).status, 200) << "a wrong password erased";
  auto erased = http.request("DELETE", "/api/v1/users/me", R"({"password":"secret-gone_ann"})", ann.token);
  ASSERT_EQ(erased.status, 204) << erased.body;

  // The row stays (the seq), erased and empty; bob's own message is untouched.
  bool scrubbed = false;
  for (auto deadline = std::chrono::steady_clock::now() + 10s; !scrubbed && std::chrono::steady_clock::now() < deadline;) {
    auto h = http.request("GET", "/api/v1/conversations/" + conv + "/messages?limit=50", "", bob.token);
    scrubbed = h.status == 200 && h.body.find(text) == std::string::npos && h.body.find(R"("erased":true)") != std::string::npos;
    if (scrubbed) {
      EXPECT_NE(h.body.find("bob stays"), std::string::npos) << h.body;
    } else {
      std::this_thread::sleep_for(50ms);
    }
  }
  EXPECT_TRUE(scrubbed) << "bob's history still shows the erased user's text";
  EXPECT_EQ(http.request("GET", search, "", bob.token).body.find(text), std::string::npos) << "search still finds it";
  EXPECT_EQ(http.request("GET", "/api/v1/users/" + std::to_string(ann.id), "", bob.token).status, 404);
  EXPECT_EQ(http.request("GET", "/api/v1/users/me", "", ann.token).status, 401) << "the erased user's token works";
  auto login = http.request("POST", "/api/v1/auth/login", R"({"username":"gone_ann","password":"secret-gone_ann"})");
  EXPECT_EQ(login.status, 401) << login.body;
  auto again = http.request("POST", "/api/v1/conversations/" + conv + "/messages",
                            R"({"client_msg_id":"g3","content":"from beyond"})", ann.token);
  EXPECT_EQ(again.status, 401) << again.body;
  ann_ws->send("sync", fmt::format(R"({{"conversation_id":"{}","after_seq":0}})", conv));
  auto refused = ann_ws->wait_for("error", 10s);
  ASSERT_TRUE(refused.has_value()) << "the erased user's open WebSocket still reads";
  EXPECT_EQ(refused->str("code"), "unauthorized") << refused->raw;
  ann_ws->close();

  auto status = server_->terminate();
  ASSERT_TRUE(status.has_value());
  const std::filesystem::path data = server_->data_dir();
  for (const auto& needle : {text, nickname}) {
    EXPECT_EQ(files_holding(data, needle), std::vector<std::string>{}) << needle << " is still on disk";
  }

  auto replay = run_command({(binary_dir() / "replay").string(), "--projection", "rocksdb", "--config",
                             server_->config_path(), "--data-dir", server_->data_dir(), "--verify"});
  EXPECT_EQ(replay.status, 0) << replay.out;
  EXPECT_NE(replay.out.find("verify: equal"), std::string::npos) << replay.out;
}


TEST(E2eErasedName, IsFreeAfterTheGracePeriodForANewUser) {
  TempDir dir("imlog-e2e-erased-name");
  ImlogServer server(dir.str(), R"(
log: {level: warn}
engine: {username_grace: 2s}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 5s
)");
  ASSERT_TRUE(server.start()) << "imlog did not get ready";
  auto& http = server.http();
  SignedIn old = join(http, "reborn");
  ASSERT_FALSE(HasFailure());
  auto erased = http.request("DELETE", "/api/v1/users/me", R"({"password":"secret-reborn"})", old.token);
  ASSERT_EQ(erased.status, 204) << erased.body;
  const std::string again = R"({"username":"reborn","password":"another-password"})";
  auto early = http.request("POST", "/api/v1/auth/register", again);
  EXPECT_EQ(early.status, 409) << "claimed during the grace period: " << early.body;

  std::this_thread::sleep_for(2s);  // the grace period (each early try counts as a failed registration)
  HttpResult reg;
  for (auto deadline = std::chrono::steady_clock::now() + 15s; std::chrono::steady_clock::now() < deadline;) {
    reg = http.request("POST", "/api/v1/auth/register", again);
    if (reg.status == 201) break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_EQ(reg.status, 201) << reg.body;
  EXPECT_NE(reg.json()["user_id"].GetUint64(), old.id) << "a new user, not the erased one";
  HttpResult login;
  for (auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    login = http.request("POST", "/api/v1/auth/login", again);
    if (login.status == 200) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(login.status, 200) << login.body;
  EXPECT_EQ(login.json()["user_id"].GetUint64(), reg.json()["user_id"].GetUint64());
  EXPECT_EQ(http.request("GET", "/api/v1/users/me", "", old.token).status, 401) << "the erased user's token";
}

}  // namespace
}  // namespace imlog::testing
