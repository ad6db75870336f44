// End to end, offline push (issue 17): over real sockets to the built `imlog serve` with
// push.enabled, a user with a webhook device (REST /api/v1/devices) and no WebSocket gets a POST
// at a loopback receiver after another user messages them; with a WebSocket open, or the
// conversation muted, none. Devices: validation, listing, removal, and another user's device id
// is not found. The time_zone setting: an IANA name, checked against the zone database.

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <iostream>
#include <set>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "imlog/testing/client.h"
#include "imlog/testing/http_receiver.h"
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
push:
  enabled: true
  collapse_window: 300ms
  close_delay: 500ms
  preview_chars: 8
  max_attempts: 3
  first_backoff: 50ms
  max_backoff: 200ms
  webhook_private_addresses: true  # the test's receiver is on loopback
  webhook_secret: e2e-webhook-secret-0123
)";
constexpr std::string_view kSecret = "e2e-webhook-secret-0123";

// HMAC-SHA256 by OpenSSL directly, as a receiver would check the signature.
std::string hmac_sha256_hex(std::string_view key, const std::string& text) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(text.data()),
       text.size(), mac, &len);
  std::string out;
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", mac[i]);
  return out;
}

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

class E2ePush : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("imlog-e2e-push");
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

  static void send(const User& from, const std::string& conv, std::string_view content) {
    auto r = s().http().post(fmt::format("/api/v1/conversations/{}/messages", conv),
                             fmt::format(R"({{"content":{}}})", json_quote(std::string(content))), from.token);
    EXPECT_EQ(r.status, 201) << r.body;
  }
  static uint64_t add_device(const User& u, const std::string& url) {
    auto r = s().http().post("/api/v1/devices", fmt::format(R"({{"platform":"webhook","token":{}}})", json_quote(url)),
                             u.token);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? r.json()["device_id"].GetUint64() : 0;
  }
  // The device ids GET /api/v1/devices lists.
  static std::vector<uint64_t> devices(const User& u) {
    std::vector<uint64_t> out;
    auto r = s().http().get("/api/v1/devices", u.token);
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return out;
    auto doc = r.json();  // kept: ranging over a member of a temporary would dangle
    for (const auto& d : doc["devices"].GetArray()) out.push_back(d["device_id"].GetUint64());
    return out;
  }

  static TempDir* dir_;
  static ImlogServer* server_;
};
TempDir* E2ePush::dir_ = nullptr;
ImlogServer* E2ePush::server_ = nullptr;

TEST_F(E2ePush, AnOfflineUsersWebhookIsCalledAndNotWhileOnlineOrMuted) {
  HttpReceiver receiver;
  User ann = make_user(s(), "ann"), bob = make_user(s(), "bob");
  const std::string url = fmt::format("http://127.0.0.1:{}/bob", receiver.port());
  uint64_t device = add_device(bob, url);
  ASSERT_NE(device, 0u);
  ASSERT_TRUE(wait_until([&] { return devices(bob) == std::vector<uint64_t>{device}; }, kWait)) << "listed";
  const std::string ab = single(ann.id, bob.id);

  // Offline: one POST, with the sender's nickname, the preview and the conversation.
  send(ann, ab, "hello there bob");
  ASSERT_TRUE(wait_until([&] { return receiver.requests().size() == 1; }, kWait)) << "no push while offline";
  auto req = receiver.requests()[0];
  EXPECT_TRUE(req.starts_with("POST /bob HTTP/1.1\r\n")) << req;
  EXPECT_NE(req.find(fmt::format(R"("sender_nickname":"{}")", ann.name)), std::string::npos) << req;
  EXPECT_NE(req.find(fmt::format(R"("conversation_id":"{}")", ab)), std::string::npos) << req;
  EXPECT_NE(req.find(R"("preview":"hello th)"), std::string::npos) << req;
  EXPECT_NE(req.find(fmt::format("Idempotency-Key: {}/{}/", bob.id, ab)), std::string::npos) << req;
  // Signed as docs/api/push.md tells a receiver to check it.
  auto ts = HttpReceiver::header(req, "X-Imlog-Timestamp");
  ASSERT_FALSE(ts.empty()) << req;
  EXPECT_LT(std::abs(std::stoll(ts) - std::chrono::duration_cast<std::chrono::seconds>(
                                         std::chrono::system_clock::now().time_since_epoch()).count()), 60);
  EXPECT_EQ(HttpReceiver::header(req, "X-Imlog-Signature"), "v1=" + hmac_sha256_hex(kSecret, ts + "." + HttpReceiver::body(req)));
  // Counted where every role's figures are.
  ASSERT_TRUE(wait_until([&] {
    auto m = s().http().get("/metrics");
    return m.status == 200 && m.body.find("\nimlog_push_sent_total 1\n") != std::string::npos;
  }, kWait)) << s().http().get("/metrics").body.substr(0, 200);

  // Online: none.
  auto ws = WsClient::connect("127.0.0.1", s().port(), "/ws?token=" + bob.token);
  ASSERT_TRUE(ws) << "bob's WebSocket";
  std::this_thread::sleep_for(300ms);  // the session is registered on connect
  send(ann, ab, "are you online");
  ASSERT_TRUE(ws->wait_for("new-message", kWait)) << "bob's socket got the message";
  std::this_thread::sleep_for(1500ms);  // past the collapse window and a send
  EXPECT_EQ(receiver.requests().size(), 1u) << "pushed while online";
  ws->close();

  // Offline again but the conversation muted: none; unmuted: pushed again.
  auto mute = s().http().request("PATCH", "/api/v1/users/me/settings", fmt::format(R"({{"muted":["{}"]}})", ab), bob.token);
  ASSERT_EQ(mute.status, 204) << mute.body;
  ASSERT_TRUE(wait_until([&] {
    auto me = s().http().get("/api/v1/users/me", bob.token);
    return me.status == 200 && me.body.find(ab) != std::string::npos;
  }, kWait));
  std::this_thread::sleep_for(500ms);  // the socket's close reaches the registry
  send(ann, ab, "muted message");
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(receiver.requests().size(), 1u) << "pushed while muted";
  auto unmute = s().http().request("PATCH", "/api/v1/users/me/settings", fmt::format(R"({{"unmuted":["{}"]}})", ab), bob.token);
  ASSERT_EQ(unmute.status, 204) << unmute.body;
  ASSERT_TRUE(wait_until([&] {
    auto me = s().http().get("/api/v1/users/me", bob.token);
    return me.status == 200 && me.body.find(ab) == std::string::npos;
  }, kWait));
  send(ann, ab, "unmuted now");
  ASSERT_TRUE(wait_until([&] { return receiver.requests().size() == 2; }, kWait)) << "no push after unmuting";
  EXPECT_NE(receiver.requests()[1].find(R"("preview":"unmuted )"), std::string::npos) << receiver.requests()[1];
}

// Messages sent in a burst to an offline user are collapsed: each notification counts the
// messages it stands for, and its badge is the user's unread count then (three at the last).
// (One notification when the burst fits in the 300 ms window; a loaded machine may split it, so
// the test checks the counts and badges, whatever the split, and that no message is counted twice.)
TEST_F(E2ePush, ABurstIsCollapsedWithTheUnreadBadge) {
  HttpReceiver receiver;
  User ann = make_user(s(), "ann"), cat = make_user(s(), "cat");
  ASSERT_NE(add_device(cat, fmt::format("http://127.0.0.1:{}/cat", receiver.port())), 0u);
  ASSERT_TRUE(wait_until([&] { return devices(cat).size() == 1; }, kWait));
  const std::string ac = single(ann.id, cat.id);
  for (const char* m : {"one", "two", "three"}) send(ann, ac, m);
  auto collapsed_total = [&] {
    uint64_t n = 0;
    for (const auto& r : receiver.requests()) {
      rapidjson::Document d;
      d.Parse(HttpReceiver::body(r).c_str());
      if (d.IsObject() && d.HasMember("collapsed")) n += d["collapsed"].GetUint64();
    }
    return n;
  };
  ASSERT_TRUE(wait_until([&] { return collapsed_total() >= 3; }, kWait)) << receiver.requests().size() << " posts";
  std::this_thread::sleep_for(1000ms);  // anything more would come now
  auto reqs = receiver.requests();
  EXPECT_EQ(collapsed_total(), 3u) << "every message counted once";
  uint64_t so_far = 0;
  std::set<std::string> keys;
  for (const auto& r : reqs) {
    rapidjson::Document d;
    d.Parse(HttpReceiver::body(r).c_str());
    ASSERT_TRUE(d.IsObject()) << r;
    so_far += d["collapsed"].GetUint64();
    // The read model may be ahead of the push worker by a message, never behind what it pushed.
    EXPECT_GE(d["badge"].GetUint64(), so_far) << "the badge is cat's unread count when the window closed: " << r;
    EXPECT_TRUE(keys.insert(d["key"].GetString()).second) << "one key per window";
  }
  rapidjson::Document last;
  last.Parse(HttpReceiver::body(reqs.back()).c_str());
  EXPECT_EQ(std::string(last["preview"].GetString()), "three") << "the latest message's preview";
  EXPECT_EQ(last["badge"].GetUint64(), 3u) << "three unread";
  if (reqs.size() > 1) std::cout << "[ note ] the burst took " << reqs.size() << " windows on this machine\n";
}

// A receiver answering 410 Gone says the device is no more: the worker removes it through the
// command path (DeviceRemoved on the log), so GET /api/v1/devices stops listing it, and the next
// message is not sent to it. A device whose receiver answers 503 is retried, then dead-lettered,
// and stays.
TEST_F(E2ePush, ARevokedTokenRemovesTheDevice) {
  HttpReceiver gone([](const std::string&) { return HttpAnswer{410}; });
  HttpReceiver busy([](const std::string&) { return HttpAnswer{503}; });
  User ann = make_user(s(), "ann"), bob = make_user(s(), "bob");
  uint64_t revoked = add_device(bob, fmt::format("http://127.0.0.1:{}/bob", gone.port()));
  uint64_t kept = add_device(bob, fmt::format("http://127.0.0.1:{}/bob", busy.port()));
  ASSERT_NE(revoked, 0u);
  ASSERT_NE(kept, 0u);
  ASSERT_TRUE(wait_until([&] { return devices(bob).size() == 2; }, kWait)) << "listed";
  const std::string ab = single(ann.id, bob.id);
  send(ann, ab, "are you still there");
  ASSERT_TRUE(wait_until([&] { return devices(bob) == std::vector<uint64_t>{kept}; }, kWait))
      << "the revoked device is still listed";
  EXPECT_EQ(gone.requests().size(), 1u);
  ASSERT_TRUE(wait_until([&] {
    auto m = s().http().get("/metrics");
    return m.status == 200 && m.body.find("\nimlog_push_devices_removed_total 1\n") != std::string::npos &&
           m.body.find("imlog_push_failures_total{reason=\"invalid_token\"} 1\n") != std::string::npos &&
           m.body.find("imlog_push_failures_total{reason=\"server_error\"} 3\n") != std::string::npos;
  }, kWait)) << "counted";
  // Replay agrees: the removal is an event of bob's stream, read back by the read model.
  send(ann, ab, "second");
  std::this_thread::sleep_for(1500ms);  // past the window and a send
  EXPECT_EQ(gone.requests().size(), 1u) << "sent to a removed device";
  EXPECT_GE(busy.requests().size(), 4u) << "the other device is still pushed";
}

// Each login starts a session; a refresh keeps it; a logout ends it, and the engine removes the
// devices registered with its tokens (RefreshTokenRevoked with removed_devices on the log), not the
// devices of the user's other sessions.
TEST_F(E2ePush, ALogoutRemovesTheDevicesOfItsSession) {
  User bob = make_user(s(), "bob");  // a first session, whose refresh token this test never sees
  auto login = [&] {
    auto r = s().http().post("/api/v1/auth/login",
                             fmt::format(R"({{"username":{},"password":"correct horse"}})", json_quote(bob.name)));
    EXPECT_EQ(r.status, 200) << r.body;
    return std::pair<std::string, std::string>{r.json()["access_token"].GetString(), r.json()["refresh_token"].GetString()};
  };
  auto device_with = [&](const std::string& access, std::string path) {
    User as = bob;
    as.token = access;
    return add_device(as, "http://127.0.0.1:9/" + path);
  };
  auto [phone_access, phone_refresh] = login();
  auto [laptop_access, laptop_refresh] = login();
  uint64_t first = add_device(bob, "http://127.0.0.1:9/first");
  uint64_t phone = device_with(phone_access, "phone");
  uint64_t laptop = device_with(laptop_access, "laptop");
  // The laptop refreshes: the same session goes on, and a device registered now belongs to it.
  auto refreshed = s().http().post("/api/v1/auth/refresh", fmt::format(R"({{"refresh_token":"{}"}})", laptop_refresh));
  ASSERT_EQ(refreshed.status, 200) << refreshed.body;
  std::string laptop_access2 = refreshed.json()["access_token"].GetString();
  std::string laptop_refresh2 = refreshed.json()["refresh_token"].GetString();
  uint64_t laptop2 = device_with(laptop_access2, "laptop-browser");
  std::vector<uint64_t> all{first, phone, laptop, laptop2};
  std::sort(all.begin(), all.end());
  ASSERT_TRUE(wait_until([&] { return devices(bob) == all; }, kWait)) << "four devices listed";

  auto logout = [&](const std::string& refresh) {
    return s().http().post("/api/v1/auth/logout", fmt::format(R"({{"refresh_token":"{}"}})", refresh)).status;
  };
  ASSERT_EQ(logout(laptop_refresh2), 204);
  std::vector<uint64_t> left{first, phone};
  std::sort(left.begin(), left.end());
  EXPECT_TRUE(wait_until([&] { return devices(bob) == left; }, kWait)) << "the laptop session's two devices remain";
  ASSERT_EQ(logout(phone_refresh), 204);
  EXPECT_TRUE(wait_until([&] { return devices(bob) == std::vector<uint64_t>{first}; }, kWait));
  ASSERT_EQ(logout(phone_refresh), 204) << "a second logout is a no-op";
  EXPECT_EQ(devices(bob), std::vector<uint64_t>{first});
}

TEST_F(E2ePush, DevicesAreValidatedListedAndRemovedByTheirOwnerOnly) {
  User ann = make_user(s(), "ann"), bob = make_user(s(), "bob");
  auto post = [&](const User& u, std::string body) { return s().http().post("/api/v1/devices", body, u.token); };
  EXPECT_EQ(post(ann, R"({"platform":"pager","token":"x"})").status, 400);
  EXPECT_EQ(post(ann, R"({"platform":"webhook","token":"ftp://example.com/x"})").status, 400);
  EXPECT_EQ(post(ann, R"({"platform":"apns","token":"not hex"})").status, 400);
  EXPECT_EQ(post(ann, R"({"platform":"fcm"})").status, 400);
  auto fcm = post(ann, R"({"platform":"fcm","token":"fcm:abc-123","app_id":"com.example.chat"})");
  ASSERT_EQ(fcm.status, 201) << fcm.body;
  uint64_t id = fcm.json()["device_id"].GetUint64();
  auto again = post(ann, R"({"platform":"fcm","token":"fcm:abc-123"})");
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(again.json()["device_id"].GetUint64(), id) << "the same token keeps its id";
  ASSERT_TRUE(wait_until([&] { return devices(ann) == std::vector<uint64_t>{id}; }, kWait));
  EXPECT_TRUE(devices(bob).empty());

  EXPECT_EQ(s().http().request("DELETE", fmt::format("/api/v1/devices/{}", id), {}, bob.token).status, 404) << "not bob's";
  EXPECT_EQ(s().http().request("DELETE", "/api/v1/devices/nope", {}, ann.token).status, 404);
  EXPECT_EQ(s().http().request("DELETE", fmt::format("/api/v1/devices/{}", id), {}, ann.token).status, 204);
  EXPECT_EQ(s().http().request("DELETE", fmt::format("/api/v1/devices/{}", id), {}, ann.token).status, 404) << "gone";
  ASSERT_TRUE(wait_until([&] { return devices(ann).empty(); }, kWait));
}

// A fixed-offset zone (Etc/GMT-N is N hours east of UTC) in which it is now about `local_hour`
// o'clock, so the test means the same at any hour it runs.
std::string zone_where_it_is(int local_hour) {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  int offset = ((local_hour - utc.tm_hour) % 24 + 24) % 24;
  if (offset > 14) offset -= 24;
  if (offset == 0) return "Etc/GMT";
  return offset > 0 ? fmt::format("Etc/GMT-{}", offset) : fmt::format("Etc/GMT+{}", -offset);
}

// Quiet hours 10:00–14:00 are read in the user's time zone: where it is noon now, nothing; where it
// is midnight, the notification, with the badge counting both unread messages.
TEST_F(E2ePush, QuietHoursAreReadInTheUsersTimeZone) {
  HttpReceiver receiver;
  User ann = make_user(s(), "ann"), dee = make_user(s(), "dee");
  ASSERT_NE(add_device(dee, fmt::format("http://127.0.0.1:{}/dee", receiver.port())), 0u);
  ASSERT_TRUE(wait_until([&] { return devices(dee).size() == 1; }, kWait));
  auto settle_zone = [&](const std::string& zone) {
    auto r = s().http().request(
        "PATCH", "/api/v1/users/me/settings",
        fmt::format(R"({{"quiet_start_minute":600,"quiet_end_minute":840,"time_zone":{}}})", json_quote(zone)), dee.token);
    ASSERT_EQ(r.status, 204) << r.body;
    ASSERT_TRUE(wait_until([&] {
      auto me = s().http().get("/api/v1/users/me", dee.token);
      return me.status == 200 && me.json()["settings"]["time_zone"].GetString() == zone;
    }, kWait)) << zone;
  };
  const std::string ad = single(ann.id, dee.id);
  ASSERT_NO_FATAL_FAILURE(settle_zone(zone_where_it_is(12)));
  send(ann, ad, "during quiet hours");
  std::this_thread::sleep_for(2000ms);  // past the window, close_delay and a send
  EXPECT_TRUE(receiver.requests().empty()) << "pushed in quiet hours: " << receiver.requests()[0];

  ASSERT_NO_FATAL_FAILURE(settle_zone(zone_where_it_is(0)));
  send(ann, ad, "after quiet hours");
  ASSERT_TRUE(wait_until([&] { return receiver.requests().size() == 1; }, kWait)) << "no push outside quiet hours";
  std::this_thread::sleep_for(1000ms);
  ASSERT_EQ(receiver.requests().size(), 1u);
  rapidjson::Document d;
  d.Parse(HttpReceiver::body(receiver.requests()[0]).c_str());
  ASSERT_TRUE(d.IsObject()) << receiver.requests()[0];
  EXPECT_EQ(d["collapsed"].GetUint64(), 1u) << "the quiet hours' message is not in it";
  EXPECT_EQ(std::string(d["preview"].GetString()), "after qu\u2026");
  EXPECT_EQ(d["badge"].GetUint64(), 2u) << "both messages are unread";
}

TEST_F(E2ePush, TheTimeZoneIsAnIanaName) {
  User ann = make_user(s(), "ann");
  auto set = [&](std::string zone) {
    return s().http().request("PATCH", "/api/v1/users/me/settings", fmt::format(R"({{"time_zone":{}}})", json_quote(zone)),
                            ann.token);
  };
  EXPECT_EQ(set("Mars/Olympus_Mons").status, 400);
  EXPECT_EQ(set("").status, 400);
  EXPECT_EQ(set("../../etc/passwd").status, 400);
  ASSERT_EQ(set("Asia/Tokyo").status, 204);
  ASSERT_TRUE(wait_until([&] {
    auto me = s().http().get("/api/v1/users/me", ann.token);
    return me.status == 200 && me.json()["settings"]["time_zone"].GetString() == std::string("Asia/Tokyo");
  }, kWait));
}

}  // namespace
}  // namespace imlog::testing
