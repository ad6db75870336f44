#include "fixtures.h"

namespace imlog::schema_fixtures {
namespace {

fb::EventEnvelopeT envelope(std::string stream, uint64_t seq, fb::EventUnion event) {
  fb::EventEnvelopeT e;
  e.stream = std::move(stream);
  e.seq = seq;
  e.event_id = 0x0123456789abcdefULL + seq;
  e.timestamp_ms = 1'763'000'000'000 + static_cast<int64_t>(seq);
  e.actor = 42;
  e.epoch = 0xfeedULL;
  e.reply_to = std::make_unique<fb::ReplyToT>();
  e.reply_to->gateway = "gw-1";
  e.reply_to->request_id = 7;
  e.trace_id = "trace-1";
  e.client_msg_id = "c-" + std::to_string(seq);
  e.schema_version = 1;
  e.event = std::move(event);
  return e;
}

template <class T>
fb::EventUnion as_event(T value) {
  fb::EventUnion u;
  u.Set(std::move(value));
  return u;
}

std::vector<std::pair<std::string, fb::EventEnvelopeT>> v1_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  auto add = [&](std::string name, std::string stream, uint64_t seq, fb::EventUnion u) {
    out.emplace_back(std::move(name), envelope(std::move(stream), seq, std::move(u)));
  };
  fb::UserRegisteredT reg;
  reg.user_id = 42;
  reg.username = "alice";
  reg.password_hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA";
  reg.nickname = "Alice";
  reg.email = "alice@example.com";
  add("user_registered", "names_3", 1, as_event(reg));

  fb::ProfileUpdatedT prof;
  prof.user_id = 42;
  prof.nickname = "Ally";
  prof.signature = "hello";
  add("profile_updated", "user_42", 1, as_event(prof));

  fb::SettingsUpdatedT set;
  set.user_id = 42;
  set.allow_search = false;
  set.message_policy = fb::MessagePolicy::FriendsOnly;
  set.push_enabled = true;
  set.quiet_start_minute = 1320;
  set.quiet_end_minute = 420;
  set.muted = {"group_9"};
  add("settings_updated", "user_42", 2, as_event(set));

  add("friend_requested", "single_42_43", 1, as_event(fb::FriendRequestedT{{}, 42, 43, "hi, it's Alice"}));
  add("friend_accepted", "single_42_43", 2, as_event(fb::FriendAcceptedT{{}, 43, 42}));
  add("friend_rejected", "single_42_44", 1, as_event(fb::FriendRejectedT{{}, 44, 42}));
  add("friend_removed", "single_42_43", 3, as_event(fb::FriendRemovedT{{}, 42, 43}));
  add("friend_group_set", "user_42", 3, as_event(fb::FriendGroupSetT{{}, 42, 43, "work"}));
  add("user_blocked", "single_42_45", 1, as_event(fb::UserBlockedT{{}, 42, 45}));
  add("user_unblocked", "single_42_45", 2, as_event(fb::UserUnblockedT{{}, 42, 45}));

  fb::GroupCreatedT gc;
  gc.group_id = 9;
  gc.owner = 42;
  gc.name = "book club";
  gc.description = "monthly";
  gc.members = {43, 44};
  add("group_created", "group_9", 1, as_event(gc));
  add("member_joined", "group_9", 2, as_event(fb::MemberJoinedT{{}, 46, 0}));
  add("member_left", "group_9", 3, as_event(fb::MemberLeftT{{}, 44}));
  add("member_removed", "group_9", 4, as_event(fb::MemberRemovedT{{}, 46, 42}));
  add("role_changed", "group_9", 5, as_event(fb::RoleChangedT{{}, 43, fb::Role::Admin, 42}));

  fb::MessageAppendedT msg;
  msg.message_type = fb::MessageType::Text;
  msg.content = "héllo, wörld 👋";
  add("message_appended", "group_9", 6, as_event(msg));
  add("message_recalled", "group_9", 7, as_event(fb::MessageRecalledT{{}, 0x0123456789abcdefULL + 6, 6}));
  add("read_marked", "group_9", 0, as_event(fb::ReadMarkedT{{}, 43, 6}));

  fb::EpochStartedT ep;
  ep.token = 0xfeedULL;
  ep.partition = 2;
  ep.writer = "engine-a";
  add("epoch_started", "", 0, as_event(ep));
  return out;
}

std::vector<std::pair<std::string, fb::CommandEnvelopeT>> v1_commands() {
  std::vector<std::pair<std::string, fb::CommandEnvelopeT>> out;
  fb::CommandEnvelopeT c;
  c.stream = "single_42_43";
  c.actor = 42;
  c.client_msg_id = "m-1";
  c.reply_to = std::make_unique<fb::ReplyToT>();
  c.reply_to->gateway = "gw-1";
  c.reply_to->request_id = 9;
  c.trace_id = "trace-2";
  c.timestamp_ms = 1'763'000'000'500;
  c.schema_version = 1;
  fb::SendMessageT send;
  send.message_type = fb::MessageType::Text;
  send.content = "hi";
  c.command.Set(std::move(send));
  out.emplace_back("send_message", std::move(c));
  return out;
}

// Version 2 added refresh-token revocation.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v2_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  fb::RefreshTokenRevokedT rev;
  rev.user_id = 42;
  rev.token_id = "rt-5f2c";
  rev.expires_at_ms = 1'765'000'000'000;
  auto e = envelope("user_42", 4, as_event(rev));
  e.schema_version = 2;
  out.emplace_back("refresh_token_revoked", std::move(e));
  return out;
}

// Version 3 added group join policies, history rules and bans.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v3_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  auto add = [&](std::string name, uint64_t seq, fb::EventUnion u) {
    auto e = envelope("group_10", seq, std::move(u));
    e.schema_version = 3;
    out.emplace_back(std::move(name), std::move(e));
  };
  fb::GroupCreatedT gc;
  gc.group_id = 10;
  gc.owner = 42;
  gc.name = "climbers";
  gc.description = "weekends";
  gc.members = {43};
  gc.join_policy = fb::JoinPolicy::Public;
  gc.history = fb::HistoryRule::FromJoin;
  add("group_created_with_settings", 1, as_event(gc));
  add("member_removed_with_ban", 2, as_event(fb::MemberRemovedT{{}, 43, 42, true}));
  fb::GroupSettingsChangedT changed;
  changed.join_policy = fb::JoinPolicy::Private;
  changed.by = 42;
  add("group_settings_changed", 3, as_event(changed));
  add("member_unbanned", 4, as_event(fb::MemberUnbannedT{{}, 43, 42}));
  return out;
}

std::vector<std::pair<std::string, fb::CommandEnvelopeT>> v3_commands() {
  std::vector<std::pair<std::string, fb::CommandEnvelopeT>> out;
  auto add = [&](std::string name, fb::CommandUnion u) {
    fb::CommandEnvelopeT c;
    c.stream = "group_10";
    c.actor = 42;
    c.client_msg_id = "g-" + name;
    c.trace_id = "trace-3";
    c.timestamp_ms = 1'763'000'001'000;
    c.schema_version = 3;
    c.command = std::move(u);
    out.emplace_back(std::move(name), std::move(c));
  };
  fb::CreateGroupT create;
  create.group_id = 10;
  create.name = "climbers";
  create.members = {43};
  create.join_policy = fb::JoinPolicy::Public;
  create.history = fb::HistoryRule::All;
  fb::CommandUnion u;
  u.Set(std::move(create));
  add("create_group_with_settings", std::move(u));
  fb::ChangeGroupSettingsT change;
  change.history = fb::HistoryRule::FromJoin;
  u.Set(std::move(change));
  add("change_group_settings", std::move(u));
  u.Set(fb::UnbanMemberT{{}, 43});
  add("unban_member", std::move(u));
  return out;
}

// Version 4 added devices for offline push and the time zone setting.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v4_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  auto add = [&](std::string name, uint64_t seq, fb::EventUnion u) {
    auto e = envelope("user_42", seq, std::move(u));
    e.schema_version = 4;
    out.emplace_back(std::move(name), std::move(e));
  };
  add("device_registered", 1,
      as_event(fb::DeviceRegisteredT{{}, 42, 77, fb::PushPlatform::Webhook, "https://push.example/u/42", "app.one"}));
  add("device_removed", 2, as_event(fb::DeviceRemovedT{{}, 42, 77}));
  fb::SettingsUpdatedT settings;
  settings.user_id = 42;
  settings.time_zone = "Asia/Shanghai";
  add("settings_updated_with_time_zone", 3, as_event(settings));
  return out;
}

std::vector<std::pair<std::string, fb::CommandEnvelopeT>> v4_commands() {
  std::vector<std::pair<std::string, fb::CommandEnvelopeT>> out;
  auto add = [&](std::string name, fb::CommandUnion u) {
    fb::CommandEnvelopeT c;
    c.stream = "user_42";
    c.actor = 42;
    c.client_msg_id = "d-" + name;
    c.trace_id = "trace-4";
    c.timestamp_ms = 1'763'000'002'000;
    c.schema_version = 4;
    c.command = std::move(u);
    out.emplace_back(std::move(name), std::move(c));
  };
  fb::CommandUnion u;
  u.Set(fb::RegisterDeviceT{{}, 77, fb::PushPlatform::Fcm, "fcm-token-1", "app.one"});
  add("register_device", std::move(u));
  u.Set(fb::RemoveDeviceT{{}, 77});
  add("remove_device", std::move(u));
  fb::UpdateSettingsT settings;
  settings.time_zone = "Europe/Paris";
  u.Set(std::move(settings));
  add("update_settings_with_time_zone", std::move(u));
  return out;
}

// Version 5 added the epoch link: prev_event_id on the envelope.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v5_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  fb::MessageAppendedT m;
  m.message_type = fb::MessageType::Text;
  m.content = "linked";
  auto e = envelope("single_42_43", 9, as_event(m));
  e.prev_event_id = e.event_id - 1;
  e.schema_version = 5;
  out.emplace_back("message_appended_linked", std::move(e));
  return out;
}

// Version 6 added the remembered refusal: CommandRefused, a control record on the command's stream.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v6_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  auto e = envelope("single_42_43", 0, as_event(fb::CommandRefusedT{{}, "blocked", "user 43 has blocked you"}));
  e.event_id = 0x0123456789abcdefULL + 10;
  e.client_msg_id = "c-refused";
  e.prev_event_id = e.event_id - 1;
  e.schema_version = 6;
  out.emplace_back("command_refused", std::move(e));
  return out;
}

// Version 7 added login sessions to devices: a device's session_id, and a logout's ended_session
// and removed_devices.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v7_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  auto add = [&](std::string name, uint64_t seq, fb::EventUnion u) {
    auto e = envelope("user_42", seq, std::move(u));
    e.prev_event_id = e.event_id - 1;
    e.schema_version = 7;
    out.emplace_back(std::move(name), std::move(e));
  };
  add("device_registered_in_session", 4,
      as_event(fb::DeviceRegisteredT{{}, 42, 78, fb::PushPlatform::Fcm, "fcm-token-2", "app.one", "5e55101d"}));
  add("refresh_token_revoked_by_logout", 5,
      as_event(fb::RefreshTokenRevokedT{{}, 42, "jti-7", 1'763'000'900'000, "5e55101d", {78, 79}}));
  return out;
}

std::vector<std::pair<std::string, fb::CommandEnvelopeT>> v7_commands() {
  std::vector<std::pair<std::string, fb::CommandEnvelopeT>> out;
  auto add = [&](std::string name, fb::CommandUnion u) {
    fb::CommandEnvelopeT c;
    c.stream = "user_42";
    c.actor = 42;
    c.client_msg_id = "d7-" + name;
    c.trace_id = "trace-7";
    c.timestamp_ms = 1'763'000'007'000;
    c.schema_version = 7;
    c.command = std::move(u);
    out.emplace_back(std::move(name), std::move(c));
  };
  fb::CommandUnion u;
  u.Set(fb::RegisterDeviceT{{}, 78, fb::PushPlatform::Fcm, "fcm-token-2", "app.one", "5e55101d"});
  add("register_device_in_session", std::move(u));
  u.Set(fb::RevokeRefreshTokenT{{}, "jti-7", 1'763'000'900'000, "5e55101d"});
  add("revoke_refresh_token_by_logout", std::move(u));
  return out;
}

// Version 8 added the client's send time to commands and events: client_sent_at, which bounds the
// dedupe index.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v8_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  fb::MessageAppendedT m;
  m.message_type = fb::MessageType::Text;
  m.content = "sent at";
  auto e = envelope("single_42_43", 11, as_event(m));
  e.prev_event_id = e.event_id - 1;
  e.client_sent_at = 1'763'000'010'500;
  e.schema_version = 8;
  out.emplace_back("message_appended_with_client_sent_at", std::move(e));
  return out;
}

std::vector<std::pair<std::string, fb::CommandEnvelopeT>> v8_commands() {
  std::vector<std::pair<std::string, fb::CommandEnvelopeT>> out;
  fb::CommandEnvelopeT c;
  c.stream = "single_42_43";
  c.actor = 42;
  c.client_msg_id = "d8-send";
  c.trace_id = "trace-8";
  c.timestamp_ms = 1'763'000'011'000;
  c.client_sent_at = 1'763'000'010'500;
  c.schema_version = 8;
  fb::SendMessageT m;
  m.message_type = fb::MessageType::Text;
  m.content = "sent at";
  c.command.Set(std::move(m));
  out.emplace_back("send_message_with_client_sent_at", std::move(c));
  return out;
}

// Version 9 added message retention: RetentionSet / SetRetention (a policy, and its absence: the
// default again) and MessagesExpired / ExpireMessages.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v9_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  auto add = [&](std::string name, std::string stream, uint64_t seq, fb::EventUnion u) {
    auto e = envelope(std::move(stream), seq, std::move(u));
    e.prev_event_id = e.event_id - 1;
    e.schema_version = 9;
    out.emplace_back(std::move(name), std::move(e));
  };
  add("retention_set_days", "group_7", 12, as_event(fb::RetentionSetT{{}, 42, 30}));
  add("retention_set_forever", "single_42_43", 12, as_event(fb::RetentionSetT{{}, 43, 0}));
  add("retention_set_default", "single_42_43", 13, as_event(fb::RetentionSetT{{}, 43, std::nullopt}));
  auto expired = envelope("group_7", 0, as_event(fb::MessagesExpiredT{{}, 11}));
  expired.actor = 0;
  expired.prev_event_id = expired.event_id - 1;
  expired.schema_version = 9;
  out.emplace_back("messages_expired", std::move(expired));
  return out;
}

std::vector<std::pair<std::string, fb::CommandEnvelopeT>> v9_commands() {
  std::vector<std::pair<std::string, fb::CommandEnvelopeT>> out;
  auto add = [&](std::string name, uint64_t actor, fb::CommandUnion u) {
    fb::CommandEnvelopeT c;
    c.stream = "group_7";
    c.actor = actor;
    c.client_msg_id = "d9-" + name;
    c.trace_id = "trace-9";
    c.timestamp_ms = 1'763'000'012'000;
    c.schema_version = 9;
    c.command = std::move(u);
    out.emplace_back(std::move(name), std::move(c));
  };
  fb::CommandUnion u;
  u.Set(fb::SetRetentionT{{}, 30});
  add("set_retention_days", 42, std::move(u));
  u.Set(fb::SetRetentionT{{}, std::nullopt});
  add("set_retention_default", 42, std::move(u));
  u.Set(fb::ExpireMessagesT{{}, 11});
  add("expire_messages", 0, std::move(u));
  return out;
}

// Version 10 sealed message content: MessageAppended.sealed_content instead of content. The bytes
// here are a fixed stand-in of the sealed form (version byte, nonce, ciphertext and tag), not a
// seal of anything: decoding, not opening, is what a fixture checks.
std::vector<std::pair<std::string, fb::EventEnvelopeT>> v10_events() {
  std::vector<std::pair<std::string, fb::EventEnvelopeT>> out;
  fb::MessageAppendedT m;
  m.message_type = fb::MessageType::Text;
  m.sealed_content.push_back(1);
  for (int i = 0; i < 24 + 16 + 6; ++i) m.sealed_content.push_back(static_cast<uint8_t>(i * 37 + 11));
  auto e = envelope("single_42_43", 14, as_event(m));
  e.prev_event_id = e.event_id - 1;
  e.client_sent_at = 1'763'000'013'500;
  e.schema_version = 10;
  out.emplace_back("message_appended_sealed", std::move(e));

  std::vector<uint8_t> sealed_profile{1};
  for (int i = 0; i < 24 + 16 + 40; ++i) sealed_profile.push_back(static_cast<uint8_t>(i * 29 + 5));
  fb::UserRegisteredT reg;
  reg.user_id = 42;
  reg.username = "alice";
  reg.sealed_profile = sealed_profile;
  auto registered = envelope("names_12", 3, as_event(reg));
  registered.schema_version = 10;
  out.emplace_back("user_registered_sealed", std::move(registered));
  fb::ProfileUpdatedT prof;
  prof.user_id = 42;
  prof.sealed_profile = sealed_profile;
  auto updated = envelope("user_42", 4, as_event(prof));
  updated.schema_version = 10;
  out.emplace_back("profile_updated_sealed", std::move(updated));
  auto erased = envelope("user_42", 5, as_event(fb::UserErasedT{{}, 42}));
  erased.schema_version = 10;
  out.emplace_back("user_erased", std::move(erased));
  return out;
}

// Version 10 erasure: EraseUser.
std::vector<std::pair<std::string, fb::CommandEnvelopeT>> v10_commands() {
  std::vector<std::pair<std::string, fb::CommandEnvelopeT>> out;
  fb::CommandEnvelopeT c;
  c.stream = "user_42";
  c.actor = 42;
  c.client_msg_id = "d10-erase";
  c.trace_id = "trace-10";
  c.timestamp_ms = 1'763'000'014'000;
  c.client_sent_at = 1'763'000'013'900;
  c.schema_version = 10;
  c.command.Set(fb::EraseUserT{});
  out.emplace_back("erase_user", std::move(c));
  return out;
}

}  // namespace

std::vector<std::pair<std::string, fb::EventEnvelopeT>> fixture_events(int version) {
  if (version == 1) return v1_events();
  if (version == 2) return v2_events();
  if (version == 3) return v3_events();
  if (version == 4) return v4_events();
  if (version == 5) return v5_events();
  if (version == 6) return v6_events();
  if (version == 7) return v7_events();
  if (version == 8) return v8_events();
  if (version == 9) return v9_events();
  if (version == 10) return v10_events();
  return {};
}

std::vector<std::pair<std::string, fb::CommandEnvelopeT>> fixture_commands(int version) {
  if (version == 1) return v1_commands();
  if (version == 3) return v3_commands();
  if (version == 4) return v4_commands();
  if (version == 7) return v7_commands();
  if (version == 8) return v8_commands();
  if (version == 9) return v9_commands();
  if (version == 10) return v10_commands();
  return {};
}

}  // namespace imlog::schema_fixtures
