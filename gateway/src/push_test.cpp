#include "push.h"

#include <gtest/gtest.h>

#include <rapidjson/document.h>

#include <string>

#include "imlog/engine/data_keys.h"
#include "imlog/testing/engine_harness.h"

namespace imlog::gw {
namespace {

// Renders one event as the gateway would push it; `bytes` keeps the buffer alive.
std::optional<RenderedPush> render(fb::EventEnvelopeT e, std::string& bytes) {
  bytes = encode_event(e);
  auto read = read_event(bytes);
  EXPECT_TRUE(read) << read.error().to_string();
  return read ? render_push(**read, testing::test_keys()) : std::nullopt;
}

fb::EventEnvelopeT envelope(std::string stream, uint64_t seq, uint64_t actor) {
  fb::EventEnvelopeT e;
  e.stream = std::move(stream);
  e.seq = seq;
  e.event_id = 42;
  e.timestamp_ms = 1'700'000'000'000;
  e.actor = actor;
  return e;
}

rapidjson::Document parsed(const RenderedPush& p) {
  rapidjson::Document d;
  d.Parse(p.frame->data(), p.frame->size());
  EXPECT_FALSE(d.HasParseError()) << *p.frame;
  return d;
}

// A message as the engine writes it since schema 10: its text sealed with the sender's key.
fb::EventEnvelopeT sealed_message(uint64_t sender, const std::string& text) {
  auto e = envelope("single_3_4", 5, sender);
  auto key = testing::test_keys().key_for_writing(sender);
  EXPECT_TRUE(key) << key.error().to_string();
  fb::MessageAppendedT m;
  m.message_type = fb::MessageType::Text;
  std::string sealed = key ? seal(*key, text, {e.event_id, "content"}) : std::string();
  m.sealed_content.assign(sealed.begin(), sealed.end());
  e.event.Set(std::move(m));
  return e;
}

TEST(Push, ASealedMessageIsPushedWithItsOpenedText) {
  std::string bytes;
  auto p = render(sealed_message(3, "behind the seal"), bytes);
  ASSERT_TRUE(p.has_value());
  auto d = parsed(*p);
  EXPECT_STREQ(d["data"]["content"].GetString(), "behind the seal");
}

TEST(Push, AMessageWhoseSendersKeyIsGoneIsNotPushed) {
  auto e = sealed_message(913, "erased soon");
  ASSERT_TRUE(testing::test_keys().destroy(913));
  std::string bytes;
  EXPECT_FALSE(render(std::move(e), bytes).has_value());
}

TEST(Push, ARecallNamesTheRecalledMessageAndItsOwnSeq) {
  auto e = envelope("group_7", 9, 3);
  fb::MessageRecalledT r;
  r.message_id = 12345678901234567ull;
  r.recalled_seq = 4;
  e.event.Set(std::move(r));
  std::string bytes;
  auto push = render(std::move(e), bytes);
  ASSERT_TRUE(push.has_value());
  EXPECT_EQ(push->only_user, 0u) << "every member sees a recall";
  EXPECT_EQ(push->info.actor, 3u);
  auto d = parsed(*push);
  EXPECT_STREQ(d["type"].GetString(), "message-recalled");
  const auto& data = d["data"];
  EXPECT_STREQ(data["conversation_id"].GetString(), "group_7");
  EXPECT_STREQ(data["message_id"].GetString(), "12345678901234567") << "64-bit ids go out as strings";
  EXPECT_EQ(data["seq_id"].GetUint64(), 4u) << "the recalled message's seq";
  EXPECT_EQ(data["recall_seq_id"].GetUint64(), 9u) << "the recall's own seq";
  EXPECT_EQ(data["recalled_by"].GetUint64(), 3u);
}

TEST(Push, AnExpiryAndAnErasureArePushed) {
  auto x = envelope("group_7", 0, 0);
  x.event.Set(fb::MessagesExpiredT{{}, 41});
  std::string bytes;
  auto expired = render(std::move(x), bytes);
  ASSERT_TRUE(expired.has_value());
  EXPECT_EQ(expired->only_user, 0u) << "every member";
  auto d = parsed(*expired);
  EXPECT_STREQ(d["type"].GetString(), "messages-expired");
  EXPECT_STREQ(d["data"]["conversation_id"].GetString(), "group_7");
  EXPECT_EQ(d["data"]["through_seq"].GetUint64(), 41u);

  auto g = envelope("user_5", 9, 5);
  g.event.Set(fb::UserErasedT{{}, 5});
  std::string gone_bytes;
  auto erased = render(std::move(g), gone_bytes);
  ASSERT_TRUE(erased.has_value());
  EXPECT_EQ(erased->only_user, 5u) << "the user's own devices";
  auto e = parsed(*erased);
  EXPECT_STREQ(e["type"].GetString(), "account-erased");
  EXPECT_EQ(e["data"]["user_id"].GetUint64(), 5u);
}

TEST(Push, ProfileAndSettingsChangesGoToTheUsersOwnDevicesOnly) {
  auto p = envelope("user_5", 2, 5);
  fb::ProfileUpdatedT profile;
  profile.user_id = 5;
  profile.nickname = "Five";
  profile.email = "five@example.org";
  p.event.Set(std::move(profile));
  std::string bytes;
  auto push = render(std::move(p), bytes);
  ASSERT_TRUE(push.has_value());
  EXPECT_EQ(push->only_user, 5u);
  auto d = parsed(*push);
  EXPECT_STREQ(d["type"].GetString(), "profile-updated");
  EXPECT_STREQ(d["data"]["nickname"].GetString(), "Five");
  EXPECT_FALSE(d["data"].HasMember("avatar_url")) << "unchanged fields are absent";
  EXPECT_FALSE(d["data"].HasMember("email")) << "a push never carries an email";

  auto s = envelope("user_5", 3, 5);
  fb::SettingsUpdatedT settings;
  settings.user_id = 5;
  s.event.Set(std::move(settings));
  push = render(std::move(s), bytes);
  ASSERT_TRUE(push.has_value());
  EXPECT_EQ(push->only_user, 5u);
  EXPECT_STREQ(parsed(*push)["type"].GetString(), "settings-updated");
}

TEST(Push, RegistrationsAndEpochMarkersAreNeverPushed) {
  auto r = envelope("names_3", 1, 0);
  fb::UserRegisteredT reg;
  reg.user_id = 8;
  reg.username = "eve";
  reg.password_hash = "$argon2id$...";
  r.event.Set(std::move(reg));
  std::string bytes;
  EXPECT_FALSE(render(std::move(r), bytes).has_value()) << "a registration carries a password hash";
  auto m = envelope("", 0, 0);
  fb::EpochStartedT marker;
  marker.token = 1;
  m.event.Set(std::move(marker));
  EXPECT_FALSE(render(std::move(m), bytes).has_value());
}

TEST(Push, MessageTypesAndRolesHaveTheirWireNames) {
  EXPECT_EQ(message_type_name(fb::MessageType::Image), "image");
  EXPECT_EQ(message_type_name(fb::MessageType::File), "file");
  EXPECT_EQ(message_type_name(fb::MessageType::System), "system");
  EXPECT_EQ(role_name(fb::Role::Admin), "admin");
  EXPECT_EQ(role_name(fb::Role::Owner), "owner");
}

}  // namespace
}  // namespace imlog::gw
