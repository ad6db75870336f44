#include "imlog/tasks/push.h"

#include <gtest/gtest.h>

namespace imlog {
namespace {

// 2026-01-15 12:00:00 UTC (winter: Paris is UTC+1, Shanghai UTC+8, New York UTC-5).
constexpr int64_t kNoonUtc = 1'768'478'400'000;
constexpr int64_t kMinute = 60'000;

UserView offline_user() {
  UserView u;
  u.user_id = 2;
  u.devices.push_back(DeviceView{7, "webhook", "http://127.0.0.1:1/x", "", 0});
  return u;
}

PushSkip decide(const UserView& u, int64_t now = kNoonUtc, std::vector<uint64_t> blocked = {}, bool online = false) {
  return should_push(u, "single_1_2", 1, online, blocked, now);
}

TEST(PushDecision, AnOfflineUserWithADeviceIsPushed) { EXPECT_EQ(decide(offline_user()), PushSkip::none); }

TEST(PushDecision, AnOnlineUserIsNot) {
  EXPECT_EQ(decide(offline_user(), kNoonUtc, {}, true), PushSkip::online);
}

TEST(PushDecision, PushTurnedOffIsNot) {
  auto u = offline_user();
  u.push_enabled = false;
  EXPECT_EQ(decide(u), PushSkip::disabled);
}

TEST(PushDecision, AMutedConversationIsNotButAnotherIs) {
  auto u = offline_user();
  u.muted = {"single_1_2"};
  EXPECT_EQ(decide(u), PushSkip::muted);
  EXPECT_EQ(should_push(u, "group_9", 1, false, {}, kNoonUtc), PushSkip::none);
}

TEST(PushDecision, ABlockedSenderIsNot) {
  EXPECT_EQ(decide(offline_user(), kNoonUtc, {5, 1}), PushSkip::blocked);
  EXPECT_EQ(decide(offline_user(), kNoonUtc, {5}), PushSkip::none);
}

TEST(PushDecision, NoDeviceNoPush) {
  auto u = offline_user();
  u.devices.clear();
  EXPECT_EQ(decide(u), PushSkip::no_devices);
}

TEST(QuietHours, AWindowWithinADay) {
  EXPECT_FALSE(in_quiet_hours(9 * 60, 17 * 60, 9 * 60 - 1));
  EXPECT_TRUE(in_quiet_hours(9 * 60, 17 * 60, 9 * 60));
  EXPECT_TRUE(in_quiet_hours(9 * 60, 17 * 60, 17 * 60 - 1));
  EXPECT_FALSE(in_quiet_hours(9 * 60, 17 * 60, 17 * 60));
}

TEST(QuietHours, AWindowAcrossMidnight) {
  EXPECT_TRUE(in_quiet_hours(22 * 60, 7 * 60, 23 * 60));
  EXPECT_TRUE(in_quiet_hours(22 * 60, 7 * 60, 0));
  EXPECT_TRUE(in_quiet_hours(22 * 60, 7 * 60, 6 * 60 + 59));
  EXPECT_FALSE(in_quiet_hours(22 * 60, 7 * 60, 7 * 60));
  EXPECT_FALSE(in_quiet_hours(22 * 60, 7 * 60, 12 * 60));
}

TEST(QuietHours, NoneWhenUnsetOrEmpty) {
  EXPECT_FALSE(in_quiet_hours(-1, 7 * 60, 0));
  EXPECT_FALSE(in_quiet_hours(22 * 60, -1, 23 * 60));
  EXPECT_FALSE(in_quiet_hours(60, 60, 60));
}

TEST(PushDecision, QuietHoursAcrossMidnightInUtc) {
  auto u = offline_user();
  u.quiet_start_minute = 22 * 60;
  u.quiet_end_minute = 7 * 60;
  EXPECT_EQ(decide(u, kNoonUtc), PushSkip::none);
  EXPECT_EQ(decide(u, kNoonUtc + 11 * 60 * kMinute), PushSkip::quiet_hours);  // 23:00
  EXPECT_EQ(decide(u, kNoonUtc + 18 * 60 * kMinute), PushSkip::quiet_hours);  // 06:00 next day
  EXPECT_EQ(decide(u, kNoonUtc + 19 * 60 * kMinute), PushSkip::none);         // 07:00
}

TEST(PushDecision, QuietHoursAreReadInTheUsersZone) {
  auto u = offline_user();
  u.quiet_start_minute = 22 * 60;
  u.quiet_end_minute = 7 * 60;
  u.time_zone = "Asia/Shanghai";  // noon UTC is 20:00 there, 14:00 UTC is 22:00
  EXPECT_EQ(decide(u, kNoonUtc), PushSkip::none);
  EXPECT_EQ(decide(u, kNoonUtc + 2 * 60 * kMinute), PushSkip::quiet_hours);
  u.time_zone = "America/New_York";  // noon UTC is 07:00; 03:00 UTC is 22:00 the day before
  EXPECT_EQ(decide(u, kNoonUtc), PushSkip::none);
  EXPECT_EQ(decide(u, kNoonUtc - 1), PushSkip::quiet_hours);  // 06:59:59
  EXPECT_EQ(decide(u, kNoonUtc - 9 * 60 * kMinute), PushSkip::quiet_hours);  // 03:00 UTC
}

TEST(PushDecision, AZoneTheDatabaseLacksReadsAsUtc) {
  auto u = offline_user();
  u.quiet_start_minute = 11 * 60;
  u.quiet_end_minute = 13 * 60;
  u.time_zone = "Nowhere/Atlantis";
  EXPECT_EQ(decide(u, kNoonUtc), PushSkip::quiet_hours);
}

TEST(Preview, CutsAtCharactersNotBytes) {
  EXPECT_EQ(preview_of("hello", 10), "hello");
  EXPECT_EQ(preview_of("hello", 3), "hel\u2026");
  EXPECT_EQ(preview_of("\u4f60\u597d\u4e16\u754c", 2), "\u4f60\u597d\u2026");
  EXPECT_EQ(preview_of("hello", 0), "");  // preview_chars 0: no preview
  EXPECT_EQ(preview_of("", 0), "");
}

TEST(PushPayload, IsJsonWithEveryField) {
  PushNotification n;
  n.user_id = 2;
  n.device.device_id = 7;
  n.key = "2/single_1_2/5/7";
  n.conversation_id = "single_1_2";
  n.seq = 6;
  n.sender_id = 1;
  n.sender_nickname = "Al \"the\" ice";
  n.preview = "line\none";
  n.badge = 3;
  n.collapsed = 2;
  EXPECT_EQ(push_payload_json(n),
            R"({"key":"2/single_1_2/5/7","user_id":2,"device_id":7,"conversation_id":"single_1_2","seq":6,)"
            R"("sender_id":1,"sender_nickname":"Al \"the\" ice","preview":"line\none","badge":3,"collapsed":2})");
}

TEST(FakePushProvider, RecordsCallsAndFollowsItsScript) {
  FakePushProvider fake;
  fake.script({SendOutcome::retry, SendOutcome::failed});
  PushNotification n;
  n.key = "k";
  EXPECT_EQ(fake.send(n).outcome, SendOutcome::retry);
  EXPECT_EQ(fake.send(n).outcome, SendOutcome::failed);
  EXPECT_EQ(fake.send(n).outcome, SendOutcome::sent);
  EXPECT_EQ(fake.calls().size(), 3u);
}

}  // namespace
}  // namespace imlog
