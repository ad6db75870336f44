// Unit tests of the stream state machine (stream_state.h): decide() for every rule and refusal
// reason it can produce, apply() bookkeeping, the state encoding, and a property that the live
// state is a pure fold of the accepted events.
//
// Every state here is built the way the sequencer builds it: commands go through decide(), and
// each accepted one becomes an encoded EventEnvelope that is read back and apply()'d. No state is
// poked by hand, so a test cannot pass on a state the log could never produce.
//
// Refusal::rate_limited is not here: decide() never produces it. The gateway enforces the
// per-connection send rate before a command reaches the log (docs/architecture.md, "The gateway"),
// so it is tested there.

#include "imlog/engine/stream_state.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "imlog/engine/directory.h"
#include "imlog/engine/message_ids.h"
#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"
#include "stream_state_test_util.h"

namespace imlog {
namespace {

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr uint64_t kEpoch = 0xE90C;

// Test double for LogDirectory (log_directory.h), which is fed by the log: here a plain map of
// the users that exist and their privacy settings. A user absent from the map does not exist.
class MapDirectory final : public Directory {
 public:
  MapDirectory() = default;
  MapDirectory(std::initializer_list<uint64_t> users) {
    for (uint64_t u : users) add(u);
  }
  void add(uint64_t user, fb::MessagePolicy policy = fb::MessagePolicy::Everyone) {
    users_[user] = UserFacts{true, policy, true, 0};
  }
  void erase(uint64_t user, int64_t at_ms) { users_[user] = UserFacts{false, fb::MessagePolicy::Everyone, true, at_ms}; }
  [[nodiscard]] UserFacts user(uint64_t user_id) const override {
    auto it = users_.find(user_id);
    return it == users_.end() ? UserFacts{} : it->second;
  }

 private:
  std::map<uint64_t, UserFacts> users_;
};

// Test double for the sequencer's index of claimed usernames.
class SetNameIndex final : public NameIndex {
 public:
  void claim(std::string_view name, uint64_t user) { names_[std::string(name)] = user; }
  [[nodiscard]] std::optional<uint64_t> holder(std::string_view name) const override {
    auto it = names_.find(std::string(name));
    if (it == names_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::map<std::string, uint64_t> names_;
};

// One stream driven the way the sequencer drives it: decide, and on accept append the event
// (next seq for a timeline event, 0 otherwise) and apply it. Keeps every accepted event's bytes.
// The recall index as the sequencer keeps it (its pending entries, then the state store's), in
// memory: every entry recall_entry_of() gives, by (stream, message id).
class MemoryRecalls final : public RecallIndex {
 public:
  void record(std::string_view stream, const fb::EventEnvelope& e) {
    if (auto m = recall_entry_of(e)) entries_[{std::string(stream), m->message_id}] = *m;
  }
  [[nodiscard]] std::optional<RecentMessage> find(std::string_view stream, uint64_t message_id) const override {
    auto it = entries_.find({std::string(stream), message_id});
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }
  [[nodiscard]] uint64_t horizon() const override { return horizon_; }
  void forget_below(uint64_t id) { horizon_ = std::max(horizon_, id); }
  [[nodiscard]] size_t size() const { return entries_.size(); }
  [[nodiscard]] bool same_entries(const MemoryRecalls& other) const { return entries_ == other.entries_; }

 private:
  std::map<std::pair<std::string, uint64_t>, RecentMessage> entries_;
  uint64_t horizon_ = 0;
};

class Stream {
 public:
  Stream(std::string id, const Directory& directory, EngineLimits limits = {}, SetNameIndex* names = nullptr)
      : id_(std::move(id)), directory_(directory), limits_(limits), names_(names) {
    auto ref = parse_stream(id_);
    if (!ref) ADD_FAILURE() << "test bug: `" << id_ << "` is not a stream id";
    ref_ = ref.value_or(StreamRef{});
  }

  template <class Command>
  Decision run(uint64_t actor, Command command) {
    fb::CommandEnvelopeT env;
    env.stream = id_;
    env.actor = actor;
    env.client_msg_id = "c" + std::to_string(++commands_);
    env.timestamp_ms = now_ms_;
    env.command.Set(std::move(command));
    return run_encoded(encode_command(env));
  }

  // For commands the object API cannot express (it drops empty strings: "" reads as absent).
  Decision run_encoded(const std::string& command_bytes) {
    auto command_view = read_command(command_bytes);
    if (!command_view) {
      ADD_FAILURE() << "command does not read back: " << command_view.error().to_string();
      return Decision::refuse(Refusal::invalid, "test: unreadable command");
    }
    const fb::CommandEnvelope& command = **command_view;
    DecideContext ctx{directory_, limits_, now_ms_, names_, &recalls_};
    Decision d = decide(ref_, state_, command, ctx);
    if (d.kind != Decision::Kind::accept) {
      if (d.stateless) stateless_.push_back(command_bytes);
      return d;
    }

    fb::EventEnvelopeT ev;
    ev.stream = id_;
    ev.seq = d.timeline ? state_.last_seq + 1 : 0;
    // As MessageIdGenerator makes them: the time in the high bits, never at or below the last.
    ev.event_id = std::max(last_event_id_ + 1, static_cast<uint64_t>(now_ms_ - MessageIdGenerator::kEpochMs) << 22);
    last_event_id_ = ev.event_id;
    ev.timestamp_ms = now_ms_;
    ev.actor = command.actor();
    ev.epoch = kEpoch;
    ev.client_msg_id = sv(command.client_msg_id());
    ev.event = d.event;
    events_.push_back(encode_event(ev));  // a deque: views into earlier events stay valid
    auto event_view = read_event(events_.back());
    if (!event_view) {
      ADD_FAILURE() << "event does not read back: " << event_view.error().to_string();
      return d;
    }
    last_ = *event_view;
    apply(ref_, state_, *last_);
    recalls_.record(id_, *last_);
    if (names_ && last_->event_type() == fb::Event::UserRegistered) {
      names_->claim(sv(last_->event_as_UserRegistered()->username()), last_->event_as_UserRegistered()->user_id());
    }
    return d;
  }

  [[nodiscard]] const StreamState& state() const { return state_; }
  [[nodiscard]] const MemoryRecalls& recalls() const { return recalls_; }
  [[nodiscard]] MemoryRecalls& recalls() { return recalls_; }
  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] const StreamRef& ref() const { return ref_; }
  [[nodiscard]] const EngineLimits& limits() const { return limits_; }
  // The last accepted event (nullptr before any).
  [[nodiscard]] const fb::EventEnvelope* last() const { return last_; }
  [[nodiscard]] uint64_t last_event_id() const { return last_ ? last_->event_id() : 0; }
  [[nodiscard]] const std::deque<std::string>& events() const { return events_; }
  [[nodiscard]] int64_t now_ms() const { return now_ms_; }
  void advance_ms(int64_t d) { now_ms_ += d; }
  // The commands refused as decided on the command alone (Decision::stateless), encoded.
  [[nodiscard]] const std::vector<std::string>& stateless_refusals() const { return stateless_; }
  // decide() of an encoded command on another state of this stream, now.
  [[nodiscard]] Decision decide_on(const StreamState& state, const std::string& command_bytes) const {
    auto command = read_command(command_bytes);
    if (!command) return Decision::refuse(Refusal::invalid, "test: unreadable command");
    return decide(ref_, state, **command, DecideContext{directory_, limits_, now_ms_, names_, &recalls_});
  }

 private:
  std::string id_;
  StreamRef ref_;
  const Directory& directory_;
  EngineLimits limits_;
  SetNameIndex* names_;
  StreamState state_;
  MemoryRecalls recalls_;
  std::deque<std::string> events_;
  const fb::EventEnvelope* last_ = nullptr;
  int64_t now_ms_ = kStartMs;
  uint64_t last_event_id_ = 0;
  uint64_t commands_ = 0;
  std::vector<std::string> stateless_;
};

::testing::AssertionResult Accepted(const Decision& d) {
  if (d.kind == Decision::Kind::accept) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "refused " << refusal_code(d.refusal) << ": " << d.message;
}

::testing::AssertionResult Refused(const Decision& d, Refusal want) {
  if (d.kind == Decision::Kind::accept) {
    return ::testing::AssertionFailure() << "accepted; wanted refusal " << refusal_code(want);
  }
  if (d.refusal != want) {
    return ::testing::AssertionFailure() << "refused " << refusal_code(d.refusal) << " (" << d.message
                                         << "); wanted " << refusal_code(want);
  }
  if (d.message.empty()) return ::testing::AssertionFailure() << "refusal without a message";
  return ::testing::AssertionSuccess();
}

// Field-by-field equality of two states, naming the first difference. (StreamState declares a
// defaulted operator==, but it is deleted while RecentMessage has none; this also says *what*
// differs.)
::testing::AssertionResult SameState(const StreamState& x, const StreamState& y) {
  auto differ = [](std::string_view field) {
    return ::testing::AssertionFailure() << "states differ in " << field;
  };
  if (x.last_seq != y.last_seq) return differ("last_seq") << ": " << x.last_seq << " vs " << y.last_seq;
  if (x.last_event_ms != y.last_event_ms)
    return differ("last_event_ms") << ": " << x.last_event_ms << " vs " << y.last_event_ms;
  if (x.created != y.created) return differ("created");
  if (x.owner != y.owner) return differ("owner") << ": " << x.owner << " vs " << y.owner;
  if (x.members != y.members) {
    auto r = differ("members") << ":";
    for (auto& [id, role] : x.members) r << " " << id << "=" << static_cast<int>(role);
    r << " vs";
    for (auto& [id, role] : y.members) r << " " << id << "=" << static_cast<int>(role);
    return r;
  }
  if (x.link != y.link)
    return differ("link") << ": " << static_cast<int>(x.link) << " vs " << static_cast<int>(y.link);
  if (x.public_group != y.public_group) return differ("public_group");
  if (x.banned != y.banned) return differ("banned") << ": " << x.banned.size() << " vs " << y.banned.size() << " users";
  if (x.lo_blocks_hi != y.lo_blocks_hi) return differ("lo_blocks_hi");
  if (x.hi_blocks_lo != y.hi_blocks_lo) return differ("hi_blocks_lo");
  if (x.devices != y.devices) return differ("devices") << ": " << x.devices.size() << " vs " << y.devices.size();
  if (x.keep_a != y.keep_a || x.keep_b != y.keep_b)
    return differ("keep") << ": " << x.keep_a << "/" << x.keep_b << " vs " << y.keep_a << "/" << y.keep_b;
  if (x.expired_through != y.expired_through)
    return differ("expired_through") << ": " << x.expired_through << " vs " << y.expired_through;
  if (x.day_marks != y.day_marks)
    return differ("day_marks") << ": " << x.day_marks.size() << " vs " << y.day_marks.size() << " days";
  return ::testing::AssertionSuccess();
}

// ---- command builders ---------------------------------------------------------------------------

fb::RegisterUserT register_user(std::string name, std::string nickname = "") {
  fb::RegisterUserT c;
  c.username = std::move(name);
  c.password_hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA";
  c.nickname = std::move(nickname);
  return c;
}
fb::UpdateProfileT update_nickname(std::string nickname) {
  fb::UpdateProfileT c;
  c.nickname = std::move(nickname);
  return c;
}
fb::UpdateSettingsT quiet_hours(int16_t start, int16_t end) {
  fb::UpdateSettingsT c;
  c.quiet_start_minute = start;
  c.quiet_end_minute = end;
  return c;
}
fb::RequestFriendT request_friend(uint64_t to, std::string note = "") {
  fb::RequestFriendT c;
  c.to = to;
  c.note = std::move(note);
  return c;
}
fb::AcceptFriendT accept_friend(uint64_t requester) {
  fb::AcceptFriendT c;
  c.requester = requester;
  return c;
}
fb::RejectFriendT reject_friend(uint64_t requester) {
  fb::RejectFriendT c;
  c.requester = requester;
  return c;
}
fb::RemoveFriendT remove_friend(uint64_t other) {
  fb::RemoveFriendT c;
  c.other = other;
  return c;
}
fb::BlockUserT block(uint64_t target) {
  fb::BlockUserT c;
  c.target = target;
  return c;
}
fb::UnblockUserT unblock(uint64_t target) {
  fb::UnblockUserT c;
  c.target = target;
  return c;
}
fb::CreateGroupT create_group(uint64_t id, std::vector<uint64_t> members = {}, std::string name = "team") {
  fb::CreateGroupT c;
  c.group_id = id;
  c.name = std::move(name);
  c.members = std::move(members);
  return c;
}
fb::CreateGroupT create_public_group(uint64_t id, std::vector<uint64_t> members = {}) {
  fb::CreateGroupT c = create_group(id, std::move(members));
  c.join_policy = fb::JoinPolicy::Public;
  return c;
}
fb::ChangeGroupSettingsT change_settings(std::optional<fb::JoinPolicy> policy,
                                         std::optional<fb::HistoryRule> history = std::nullopt) {
  fb::ChangeGroupSettingsT c;
  if (policy) c.join_policy = *policy;
  if (history) c.history = *history;
  return c;
}
fb::UnbanMemberT unban(uint64_t user) {
  fb::UnbanMemberT c;
  c.user_id = user;
  return c;
}
fb::JoinGroupT join(uint64_t user = 0) {
  fb::JoinGroupT c;
  c.user_id = user;
  return c;
}
fb::LeaveGroupT leave() { return {}; }
fb::RemoveMemberT remove_member(uint64_t user) {
  fb::RemoveMemberT c;
  c.user_id = user;
  return c;
}
fb::ChangeRoleT change_role(uint64_t user, fb::Role role) {
  fb::ChangeRoleT c;
  c.user_id = user;
  c.role = role;
  return c;
}
fb::SendMessageT send(std::string content, fb::MessageType type = fb::MessageType::Text) {
  fb::SendMessageT c;
  c.content = std::move(content);
  c.message_type = type;
  return c;
}
fb::RecallMessageT recall(uint64_t message_id) {
  fb::RecallMessageT c;
  c.message_id = message_id;
  return c;
}
fb::MarkReadT mark_read(uint64_t seq) {
  fb::MarkReadT c;
  c.seq = seq;
  return c;
}
fb::SetRetentionT keep(std::optional<uint32_t> days) {
  fb::SetRetentionT c;
  c.keep_days = days;
  return c;
}
fb::ExpireMessagesT expire(uint64_t through_seq) {
  fb::ExpireMessagesT c;
  c.through_seq = through_seq;
  return c;
}

// ---- refusal codes ------------------------------------------------------------------------------

TEST(StreamStateRefusals, CodesAreDistinctAndNamedLikeTheEnum) {
  const std::vector<std::pair<Refusal, std::string_view>> all = {
      {Refusal::invalid, "invalid"},
      {Refusal::wrong_stream, "wrong_stream"},
      {Refusal::not_participant, "not_participant"},
      {Refusal::not_member, "not_member"},
      {Refusal::not_found, "not_found"},
      {Refusal::already_exists, "already_exists"},
      {Refusal::already_member, "already_member"},
      {Refusal::forbidden, "forbidden"},
      {Refusal::blocked, "blocked"},
      {Refusal::you_blocked, "you_blocked"},
      {Refusal::not_friends, "not_friends"},
      {Refusal::already_friends, "already_friends"},
      {Refusal::already_requested, "already_requested"},
      {Refusal::no_pending_request, "no_pending_request"},
      {Refusal::too_large, "too_large"},
      {Refusal::recall_window_passed, "recall_window_passed"},
      {Refusal::not_sender, "not_sender"},
      {Refusal::group_full, "group_full"},
      {Refusal::owner_must_transfer, "owner_must_transfer"},
      {Refusal::rate_limited, "rate_limited"},
      {Refusal::banned, "banned"},
      {Refusal::retry_window_expired, "retry_window_expired"},
  };
  std::set<std::string_view> seen;
  for (auto [r, code] : all) {
    EXPECT_EQ(refusal_code(r), code);
    seen.insert(refusal_code(r));
  }
  EXPECT_EQ(seen.size(), all.size()) << "two reasons share a code";
}

// ---- names_<bucket> -----------------------------------------------------------------------------

// A name other than `name` that falls in the same bucket.
std::string bucket_mate(std::string_view name) {
  for (int i = 0;; ++i) {
    std::string candidate = "user" + std::to_string(i);
    if (candidate != name && name_bucket(candidate) == name_bucket(name)) return candidate;
  }
}

std::string in_other_bucket(std::string_view name) {
  for (int i = 0;; ++i) {
    std::string candidate = "user" + std::to_string(i);
    if (name_bucket(candidate) != name_bucket(name)) return candidate;
  }
}

TEST(StreamStateNames, RegistrationsGetDenseUserIdsOfTheirBucket) {
  MapDirectory dir;
  SetNameIndex names;
  Stream s(names_stream("alice"), dir, {}, &names);
  uint32_t bucket = name_bucket("alice");

  auto d = s.run(0, register_user("alice"));
  ASSERT_TRUE(Accepted(d));
  EXPECT_EQ(d.result_id, user_id_for(bucket, 1));
  ASSERT_EQ(s.last()->event_type(), fb::Event::UserRegistered);
  auto* ev = s.last()->event_as_UserRegistered();
  EXPECT_EQ(ev->user_id(), user_id_for(bucket, 1));
  EXPECT_EQ(sv(ev->username()), "alice");
  EXPECT_EQ(sv(ev->nickname()), "alice") << "nickname defaults to the username";
  EXPECT_EQ(s.last()->seq(), 1u);

  std::string mate = bucket_mate("alice");
  d = s.run(0, register_user(mate, "Mate"));
  ASSERT_TRUE(Accepted(d));
  EXPECT_EQ(d.result_id, user_id_for(bucket, 2));
  EXPECT_EQ(sv(s.last()->event_as_UserRegistered()->nickname()), "Mate");
  EXPECT_NE(user_id_for(bucket, 1), user_id_for(bucket, 2));
}

TEST(StreamStateNames, RefusesATakenName) {
  MapDirectory dir;
  SetNameIndex names;
  Stream s(names_stream("alice"), dir, {}, &names);
  ASSERT_TRUE(Accepted(s.run(0, register_user("alice"))));
  EXPECT_TRUE(Refused(s.run(0, register_user("alice")), Refusal::already_exists));
  EXPECT_EQ(s.state().last_seq, 1u);
}

// An erased user's username stays claimed for the grace period after the erasure (by the
// directory's erasure time), then goes to whoever registers it next, as a new user.
TEST(StreamStateNames, AnErasedUsersNameIsFreeAfterTheGracePeriod) {
  MapDirectory dir;
  SetNameIndex names;
  EngineLimits limits;
  limits.username_grace_ms = 1000;
  Stream s(names_stream("alice"), dir, limits, &names);
  auto first = s.run(0, register_user("alice"));
  ASSERT_TRUE(Accepted(first));
  dir.add(first.result_id);
  EXPECT_TRUE(Refused(s.run(0, register_user("alice")), Refusal::already_exists)) << "not erased";
  dir.erase(first.result_id, s.now_ms());
  EXPECT_TRUE(Refused(s.run(0, register_user("alice")), Refusal::already_exists)) << "within the grace period";
  s.advance_ms(999);
  EXPECT_TRUE(Refused(s.run(0, register_user("alice")), Refusal::already_exists));
  s.advance_ms(1);
  auto second = s.run(0, register_user("alice"));
  ASSERT_TRUE(Accepted(second));
  EXPECT_NE(second.result_id, first.result_id) << "a new user, not the erased one back";
  dir.add(second.result_id);
  EXPECT_TRUE(Refused(s.run(0, register_user("alice")), Refusal::already_exists)) << "the new holder's";
}

TEST(StreamStateNames, RefusesInvalidUsernamesAndMissingPassword) {
  MapDirectory dir;
  SetNameIndex names;
  for (std::string bad : {std::string(""), std::string("ab"), std::string(33, 'a'), std::string("has space"),
                          std::string("sl/ash"), std::string("\xc3\xa9t\xc3\xa9")}) {
    Stream s(names_stream(bad), dir, {}, &names);
    EXPECT_TRUE(Refused(s.run(0, register_user(bad)), Refusal::invalid)) << "username `" << bad << "`";
  }
  // The limits themselves are fine.
  for (std::string ok : {std::string("abc"), std::string(32, 'z'), std::string("a.b-c_D9")}) {
    Stream s(names_stream(ok), dir, {}, &names);
    EXPECT_TRUE(Accepted(s.run(0, register_user(ok)))) << "username `" << ok << "`";
  }
  Stream s(names_stream("bob"), dir, {}, &names);
  auto cmd = register_user("bob");
  cmd.password_hash.clear();
  EXPECT_TRUE(Refused(s.run(0, cmd), Refusal::invalid));
}

TEST(StreamStateNames, RefusesANameOfAnotherBucket) {
  MapDirectory dir;
  SetNameIndex names;
  Stream s(names_stream("alice"), dir, {}, &names);
  EXPECT_TRUE(Refused(s.run(0, register_user(in_other_bucket("alice"))), Refusal::wrong_stream));
}

TEST(StreamStateNames, RefusesAnOverlongNicknameAndOtherCommands) {
  MapDirectory dir{1};
  SetNameIndex names;
  Stream s(names_stream("alice"), dir, {}, &names);
  EXPECT_TRUE(Refused(s.run(0, register_user("alice", std::string(101, 'n'))), Refusal::too_large));
  EXPECT_TRUE(Refused(s.run(1, send("hi")), Refusal::wrong_stream));
  EXPECT_EQ(s.events().size(), 0u);
}

// ---- user_<id> ----------------------------------------------------------------------------------

TEST(StreamStateUser, OnlyThatUserWritesIt) {
  MapDirectory dir{5, 6};
  Stream s(user_stream(5), dir);
  EXPECT_TRUE(Refused(s.run(6, update_nickname("mallory")), Refusal::forbidden));
  EXPECT_TRUE(Refused(s.run(6, quiet_hours(0, 60)), Refusal::forbidden));
  ASSERT_TRUE(Accepted(s.run(5, update_nickname("Five"))));
  ASSERT_EQ(s.last()->event_type(), fb::Event::ProfileUpdated);
  EXPECT_EQ(s.last()->event_as_ProfileUpdated()->user_id(), 5u);
  EXPECT_EQ(sv(s.last()->event_as_ProfileUpdated()->nickname()), "Five");
  EXPECT_TRUE(Refused(s.run(0, update_nickname("nobody")), Refusal::invalid)) << "no actor";
}

TEST(StreamStateUser, QuietHoursAreMinutesOfTheDayOrMinusOne) {
  MapDirectory dir{5};
  Stream s(user_stream(5), dir);
  EXPECT_TRUE(Refused(s.run(5, quiet_hours(-2, 60)), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, quiet_hours(60, 1440)), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, quiet_hours(1440, 60)), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, quiet_hours(0, -300)), Refusal::invalid));
  EXPECT_TRUE(Accepted(s.run(5, quiet_hours(0, 1439))));
  EXPECT_TRUE(Accepted(s.run(5, quiet_hours(-1, -1))));
  ASSERT_EQ(s.last()->event_type(), fb::Event::SettingsUpdated);
  EXPECT_EQ(s.last()->event_as_SettingsUpdated()->quiet_start_minute(), -1);

  fb::UpdateSettingsT only_search;  // absent fields stay absent (unchanged)
  only_search.allow_search = false;
  ASSERT_TRUE(Accepted(s.run(5, only_search)));
  auto* ev = s.last()->event_as_SettingsUpdated();
  EXPECT_FALSE(ev->quiet_start_minute().has_value());
  EXPECT_FALSE(ev->message_policy().has_value());
  EXPECT_EQ(ev->allow_search(), false);
}

TEST(StreamStateUser, RefusesAnUnknownMessagePolicy) {
  MapDirectory dir{5};
  Stream s(user_stream(5), dir);
  fb::UpdateSettingsT ok;
  ok.message_policy = fb::MessagePolicy::FriendsOnly;
  EXPECT_TRUE(Accepted(s.run(5, ok)));
  // An enum value this schema does not define must not reach the log (SendMessage and ChangeRole
  // refuse theirs the same way).
  for (int8_t bad : {int8_t{2}, int8_t{7}, int8_t{-1}}) {
    fb::UpdateSettingsT c;
    c.message_policy = static_cast<fb::MessagePolicy>(bad);
    EXPECT_TRUE(Refused(s.run(5, c), Refusal::invalid)) << "message_policy " << int{bad};
  }
}

TEST(StreamStateUser, ProfileFieldsHaveLimits) {
  MapDirectory dir{5};
  Stream s(user_stream(5), dir);
  // An empty nickname, present (the object API would omit it, meaning "unchanged").
  flatbuffers::FlatBufferBuilder fbb;
  auto nickname = fbb.CreateString("");
  auto cmd = fb::CreateUpdateProfile(fbb, nickname);
  fbb.Finish(fb::CreateCommandEnvelope(fbb, fbb.CreateString(user_stream(5)), 5, 0, 0, 0, kStartMs,
                                       kSchemaVersion, fb::Command::UpdateProfile, cmd.Union()));
  EXPECT_TRUE(Refused(
      s.run_encoded(std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize())),
      Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, update_nickname(std::string(101, 'n'))), Refusal::too_large));
  EXPECT_TRUE(Accepted(s.run(5, update_nickname(std::string(100, 'n')))));
  fb::UpdateProfileT sig;
  sig.signature = std::string(1001, 's');
  EXPECT_TRUE(Refused(s.run(5, sig), Refusal::too_large));
}

TEST(StreamStateUser, MalformedTextIsInvalidNotTooLarge) {
  // `too_large` tells a client to shorten the text; a short field that is not UTF-8 is malformed.
  MapDirectory dir{5, 6};
  Stream user(user_stream(5), dir);
  EXPECT_TRUE(Refused(user.run(5, update_nickname("\xff\xfe")), Refusal::invalid));
  Stream group(group_stream(9), dir);
  EXPECT_TRUE(Refused(group.run(5, create_group(9, {}, "\xc0\xaf")), Refusal::invalid));
  Stream single(single_stream(5, 6), dir);
  EXPECT_TRUE(Refused(single.run(5, request_friend(6, "\xed\xa0\x80")), Refusal::invalid));
}

TEST(StreamStateUser, FriendGroupNeedsAnotherUser) {
  MapDirectory dir{5, 6};
  Stream s(user_stream(5), dir);
  fb::SetFriendGroupT self;
  self.friend_id = 5;
  self.group_name = "me";
  EXPECT_TRUE(Refused(s.run(5, self), Refusal::invalid));
  fb::SetFriendGroupT other;
  other.friend_id = 6;
  other.group_name = "work";
  EXPECT_TRUE(Accepted(s.run(5, other)));
  EXPECT_EQ(s.last()->event_type(), fb::Event::FriendGroupSet);
}

TEST(StreamStateUser, RefreshTokenRevocationsNeedAnIdOfAtMost128Bytes) {
  MapDirectory dir{5, 6};
  Stream s(user_stream(5), dir);
  auto revoke = [](std::string id) {
    fb::RevokeRefreshTokenT c;
    c.token_id = std::move(id);
    c.expires_at_ms = kStartMs + 86'400'000;
    return c;
  };
  EXPECT_TRUE(Refused(s.run(6, revoke("tok")), Refusal::forbidden)) << "someone else's tokens";
  EXPECT_TRUE(Refused(s.run(5, revoke("")), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, revoke(std::string(129, 't'))), Refusal::invalid));
  ASSERT_TRUE(Accepted(s.run(5, revoke(std::string(128, 't')))));
  ASSERT_EQ(s.last()->event_type(), fb::Event::RefreshTokenRevoked);
  auto* ev = s.last()->event_as_RefreshTokenRevoked();
  EXPECT_EQ(ev->user_id(), 5u);
  EXPECT_EQ(sv(ev->token_id()), std::string(128, 't'));
  EXPECT_EQ(ev->expires_at_ms(), kStartMs + 86'400'000);
}

fb::RegisterDeviceT device(uint64_t id, fb::PushPlatform platform, std::string token, std::string app_id = "") {
  return fb::RegisterDeviceT{{}, id, platform, std::move(token), std::move(app_id)};
}

// Erasure (schema 10): only the user erases themselves; UserErased is a timeline event of their
// stream, its last: every later command there is refused, the erasure itself included, and the
// devices go with it. The state keeps it across the encoding.
TEST(StreamStateUser, AnErasedUserStreamTakesNoMoreCommands) {
  MapDirectory dir{5, 6};
  Stream s(user_stream(5), dir);
  ASSERT_TRUE(Accepted(s.run(5, device(7, fb::PushPlatform::Webhook, "https://a.example/x"))));
  EXPECT_TRUE(Refused(s.run(6, fb::EraseUserT{}), Refusal::forbidden));
  auto d = s.run(5, fb::EraseUserT{});
  ASSERT_TRUE(Accepted(d));
  ASSERT_EQ(s.last()->event_type(), fb::Event::UserErased);
  EXPECT_EQ(s.last()->event_as_UserErased()->user_id(), 5u);
  EXPECT_EQ(s.last()->seq(), 2u);
  EXPECT_TRUE(s.state().erased);
  EXPECT_TRUE(s.state().devices.empty());
  EXPECT_TRUE(Refused(s.run(5, fb::EraseUserT{}), Refusal::not_found));
  EXPECT_TRUE(Refused(s.run(5, update_nickname("back")), Refusal::not_found));
  EXPECT_TRUE(Refused(s.run(5, device(8, fb::PushPlatform::Webhook, "https://a.example/y")), Refusal::not_found));
  StreamState out;
  ASSERT_TRUE(decode_state(encode_state(s.state()), out));
  EXPECT_TRUE(out.erased);
  EXPECT_EQ(out, s.state());
}

// Once the directory knows a user erased their account, nothing of theirs is decided on any
// stream: no message, friend request or membership.
TEST(StreamStateUser, AnErasedActorIsRefusedEverywhere) {
  MapDirectory dir{5, 6};
  dir.erase(5, kStartMs);
  Stream single(single_stream(5, 6), dir);
  EXPECT_TRUE(Refused(single.run(5, request_friend(6, "hi")), Refusal::not_found));
  EXPECT_FALSE(Accepted(single.run(6, request_friend(5, "hi")))) << "nor anything addressed to them";
  Stream world(std::string(kWorldStream), dir);
  EXPECT_TRUE(Refused(world.run(5, send("still here?")), Refusal::not_found));
  EXPECT_TRUE(Accepted(world.run(6, send("hello"))));
}

TEST(StreamStateUser, DevicesAreRegisteredWithTheirIdAndRemoved) {
  MapDirectory dir{5, 6};
  Stream s(user_stream(5), dir);
  EXPECT_TRUE(Refused(s.run(6, device(7, fb::PushPlatform::Webhook, "https://a.example/x")), Refusal::forbidden));
  auto d = s.run(5, device(7, fb::PushPlatform::Webhook, "https://a.example/x", "app.one"));
  ASSERT_TRUE(Accepted(d));
  EXPECT_EQ(d.result_id, 7u);
  ASSERT_EQ(s.last()->event_type(), fb::Event::DeviceRegistered);
  auto* ev = s.last()->event_as_DeviceRegistered();
  EXPECT_EQ(ev->user_id(), 5u);
  EXPECT_EQ(ev->platform(), fb::PushPlatform::Webhook);
  EXPECT_EQ(sv(ev->app_id()), "app.one");
  // The same token again keeps its id, whatever id the gateway picked this time.
  d = s.run(5, device(8, fb::PushPlatform::Webhook, "https://a.example/x"));
  ASSERT_TRUE(Accepted(d));
  EXPECT_EQ(d.result_id, 7u);
  EXPECT_TRUE(Refused(s.run(5, device(7, fb::PushPlatform::Fcm, "other")), Refusal::already_exists));
  EXPECT_TRUE(Refused(s.run(5, fb::RemoveDeviceT{{}, 99}), Refusal::not_found));
  ASSERT_TRUE(Accepted(s.run(5, fb::RemoveDeviceT{{}, 7})));
  EXPECT_EQ(s.last()->event_type(), fb::Event::DeviceRemoved);
  EXPECT_TRUE(Refused(s.run(5, fb::RemoveDeviceT{{}, 7}), Refusal::not_found)) << "gone";
  EXPECT_TRUE(Refused(s.run(6, fb::RemoveDeviceT{{}, 7}), Refusal::forbidden));
}

// A logout (RevokeRefreshToken with ended_session) removes the devices its login session
// registered, and only those; a rotation (no ended_session) removes none.
TEST(StreamStateUser, ALogoutRemovesTheDevicesOfItsSession) {
  MapDirectory dir{5};
  Stream s(user_stream(5), dir);
  auto in_session = [](uint64_t id, std::string token, std::string session) {
    auto d = device(id, fb::PushPlatform::Fcm, std::move(token));
    d.session_id = std::move(session);
    return d;
  };
  auto revoke = [](std::string jti, std::string ended) {
    fb::RevokeRefreshTokenT c;
    c.token_id = std::move(jti);
    c.expires_at_ms = kStartMs + 1000;
    c.ended_session = std::move(ended);
    return c;
  };
  ASSERT_TRUE(Accepted(s.run(5, in_session(1, "phone", "sess-a"))));
  EXPECT_EQ(sv(s.last()->event_as_DeviceRegistered()->session_id()), "sess-a");
  ASSERT_TRUE(Accepted(s.run(5, in_session(2, "tablet", "sess-b"))));
  ASSERT_TRUE(Accepted(s.run(5, in_session(3, "watch", "sess-a"))));
  ASSERT_TRUE(Accepted(s.run(5, in_session(4, "old", ""))));
  EXPECT_TRUE(Refused(s.run(5, in_session(5, "long", std::string(65, 's'))), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, revoke("j0", std::string(65, 's'))), Refusal::invalid));

  ASSERT_TRUE(Accepted(s.run(5, revoke("j1", ""))));
  EXPECT_EQ(s.last()->event_as_RefreshTokenRevoked()->removed_devices(), nullptr);
  EXPECT_EQ(s.state().devices.size(), 4u) << "a rotation ends no session";
  ASSERT_TRUE(Accepted(s.run(5, revoke("j2", "sess-a"))));
  auto* ended = s.last()->event_as_RefreshTokenRevoked();
  EXPECT_EQ(sv(ended->ended_session()), "sess-a");
  ASSERT_NE(ended->removed_devices(), nullptr);
  EXPECT_EQ(std::vector<uint64_t>(ended->removed_devices()->begin(), ended->removed_devices()->end()),
            (std::vector<uint64_t>{1, 3})) << "the event names what it removes";
  std::vector<uint64_t> left;
  for (const auto& [id, d] : s.state().devices) left.push_back(id);
  EXPECT_EQ(left, (std::vector<uint64_t>{2, 4}));
  EXPECT_TRUE(Refused(s.run(5, fb::RemoveDeviceT{{}, 1}), Refusal::not_found)) << "gone with the session";
  // The same token registered again in a new session is a new device of that session.
  ASSERT_TRUE(Accepted(s.run(5, in_session(6, "phone", "sess-c"))));
  EXPECT_EQ(s.state().devices.at(6).session, "sess-c");
  // Re-registering a known token moves it to the session that registered it last.
  ASSERT_TRUE(Accepted(s.run(5, in_session(7, "tablet", "sess-c"))));
  ASSERT_TRUE(Accepted(s.run(5, revoke("j3", "sess-b"))));
  EXPECT_TRUE(s.state().devices.contains(2)) << "tablet now belongs to sess-c";
}

TEST(StreamStateUser, DeviceTokensAreCheckedPerPlatform) {
  MapDirectory dir{5};
  Stream s(user_stream(5), dir);
  using P = fb::PushPlatform;
  EXPECT_TRUE(Refused(s.run(5, device(1, P::Apns, std::string(63, 'a'))), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, device(1, P::Apns, std::string(64, 'g'))), Refusal::invalid));
  EXPECT_TRUE(Accepted(s.run(5, device(1, P::Apns, std::string(64, 'a')))));
  EXPECT_TRUE(Refused(s.run(5, device(2, P::Fcm, "")), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, device(2, P::Fcm, "has space")), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, device(2, P::Fcm, std::string(4097, 'f'))), Refusal::invalid));
  EXPECT_TRUE(Accepted(s.run(5, device(2, P::Fcm, "abc:DEF-1_2.3"))));
  EXPECT_TRUE(Refused(s.run(5, device(3, P::Webhook, "ftp://a.example/x")), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, device(3, P::Webhook, "https://a.example/ x")), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, device(3, P::Webhook, "https://" + std::string(2041, 'a'))), Refusal::invalid));
  EXPECT_TRUE(Accepted(s.run(5, device(3, P::Webhook, "https://" + std::string(2040, 'a')))));
  EXPECT_TRUE(Refused(s.run(5, device(4, static_cast<P>(9), "x")), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, device(4, P::Fcm, "x", "bad app id")), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(5, device(0, P::Fcm, "x")), Refusal::invalid)) << "no id";
}

TEST(StreamStateUser, AUserHasAtMostMaxDevices) {
  MapDirectory dir{5};
  Stream s(user_stream(5), dir);
  for (uint64_t i = 1; i <= EngineLimits{}.max_devices; ++i) {
    ASSERT_TRUE(Accepted(s.run(5, device(i, fb::PushPlatform::Fcm, "t" + std::to_string(i)))));
  }
  EXPECT_TRUE(Refused(s.run(5, device(100, fb::PushPlatform::Fcm, "one-more")), Refusal::too_large));
  EXPECT_TRUE(Accepted(s.run(5, device(100, fb::PushPlatform::Fcm, "t1")))) << "a known token is no new device";
  ASSERT_TRUE(Accepted(s.run(5, fb::RemoveDeviceT{{}, 1})));
  EXPECT_TRUE(Accepted(s.run(5, device(100, fb::PushPlatform::Fcm, "one-more"))));
}

TEST(StreamStateUser, TimeZoneIsAnIanaShapedName) {
  MapDirectory dir{5};
  Stream s(user_stream(5), dir);
  auto zone = [](std::string z) {
    fb::UpdateSettingsT c;
    c.time_zone = std::move(z);
    return c;
  };
  for (const char* bad : {"Europe/Paris; DROP", "../etc/passwd", "/etc/localtime", "Zone With Space"}) {
    EXPECT_TRUE(Refused(s.run(5, zone(bad)), Refusal::invalid)) << bad;
  }
  EXPECT_TRUE(Refused(s.run(5, zone(std::string(65, 'a'))), Refusal::invalid));
  ASSERT_TRUE(Accepted(s.run(5, zone("America/Argentina/Buenos_Aires"))));
  EXPECT_EQ(sv(s.last()->event_as_SettingsUpdated()->time_zone()), "America/Argentina/Buenos_Aires");
  ASSERT_TRUE(Accepted(s.run(5, quiet_hours(0, 60))));
  EXPECT_EQ(s.last()->event_as_SettingsUpdated()->time_zone(), nullptr) << "absent: unchanged";
}

TEST(StreamStateUser, RefusesConversationCommands) {
  MapDirectory dir{5};
  Stream s(user_stream(5), dir);
  EXPECT_TRUE(Refused(s.run(5, send("hello")), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(s.run(5, join()), Refusal::wrong_stream));
}

// ---- single_<lo>_<hi> ---------------------------------------------------------------------------

constexpr uint64_t kLo = 10, kHi = 20, kThird = 30, kGhost = 999;

class StreamStateSingle : public ::testing::Test {
 protected:
  MapDirectory dir{kLo, kHi, kThird};
  Stream s{single_stream(kHi, kLo), dir};
};

TEST_F(StreamStateSingle, OnlyTheTwoParticipantsWrite) {
  EXPECT_TRUE(Refused(s.run(kThird, send("let me in")), Refusal::not_participant));
  EXPECT_TRUE(Refused(s.run(kThird, request_friend(kLo)), Refusal::not_participant));
  EXPECT_TRUE(Refused(s.run(kThird, mark_read(1)), Refusal::not_participant));
  EXPECT_TRUE(Accepted(s.run(kLo, send("hi"))));
  EXPECT_TRUE(Accepted(s.run(kHi, send("hello"))));
  EXPECT_EQ(s.state().last_seq, 2u);
  EXPECT_TRUE(Refused(s.run(0, send("who?")), Refusal::invalid)) << "no actor";
}

TEST_F(StreamStateSingle, ABlockRefusesMessagesAndRequestsBothWaysUntilUnblocked) {
  ASSERT_TRUE(Accepted(s.run(kLo, block(kHi))));
  EXPECT_TRUE(s.state().lo_blocks_hi);
  EXPECT_FALSE(s.state().hi_blocks_lo);
  EXPECT_TRUE(Refused(s.run(kHi, send("why?")), Refusal::blocked));
  EXPECT_TRUE(Refused(s.run(kLo, send("bye")), Refusal::you_blocked));
  EXPECT_TRUE(Refused(s.run(kHi, request_friend(kLo)), Refusal::blocked));
  EXPECT_TRUE(Refused(s.run(kLo, request_friend(kHi)), Refusal::you_blocked));
  EXPECT_TRUE(Refused(s.run(kLo, block(kHi)), Refusal::you_blocked)) << "already blocked";

  // The other side blocks too; unblocking one side leaves the other's block in force.
  ASSERT_TRUE(Accepted(s.run(kHi, block(kLo))));
  ASSERT_TRUE(Accepted(s.run(kLo, unblock(kHi))));
  EXPECT_TRUE(Refused(s.run(kLo, send("still?")), Refusal::blocked));
  EXPECT_TRUE(Refused(s.run(kHi, send("still?")), Refusal::you_blocked));
  ASSERT_TRUE(Accepted(s.run(kHi, unblock(kLo))));
  EXPECT_FALSE(s.state().lo_blocks_hi || s.state().hi_blocks_lo);

  EXPECT_TRUE(Accepted(s.run(kHi, send("friends again?"))));
  EXPECT_TRUE(Accepted(s.run(kLo, send("sure"))));
  EXPECT_TRUE(Accepted(s.run(kLo, request_friend(kHi))));
}

TEST_F(StreamStateSingle, UnblockingSomeoneNotBlockedIsNotFound) {
  EXPECT_TRUE(Refused(s.run(kLo, unblock(kHi)), Refusal::not_found));
  ASSERT_TRUE(Accepted(s.run(kHi, block(kLo))));
  EXPECT_TRUE(Refused(s.run(kLo, unblock(kHi)), Refusal::not_found)) << "only the blocker unblocks";
}

TEST_F(StreamStateSingle, FriendsOnlyPolicyRefusesStrangersAndAllowsFriends) {
  dir.add(kHi, fb::MessagePolicy::FriendsOnly);
  EXPECT_TRUE(Refused(s.run(kLo, send("hi stranger")), Refusal::not_friends));
  EXPECT_TRUE(Accepted(s.run(kHi, send("lo accepts everyone"))));
  ASSERT_TRUE(Accepted(s.run(kLo, request_friend(kHi, "it's me"))));
  EXPECT_TRUE(Refused(s.run(kLo, send("pending is not friends")), Refusal::not_friends));
  ASSERT_TRUE(Accepted(s.run(kHi, accept_friend(kLo))));
  EXPECT_TRUE(Accepted(s.run(kLo, send("now we are friends"))));
  ASSERT_TRUE(Accepted(s.run(kHi, remove_friend(kLo))));
  EXPECT_TRUE(Refused(s.run(kLo, send("unfriended")), Refusal::not_friends));
}

TEST_F(StreamStateSingle, MessagesAndRequestsToAUserWhoDoesNotExistAreNotFound) {
  Stream ghost(single_stream(kLo, kGhost), dir);
  EXPECT_TRUE(Refused(ghost.run(kLo, send("anyone?")), Refusal::not_found));
  EXPECT_TRUE(Refused(ghost.run(kLo, request_friend(kGhost)), Refusal::not_found));
}

TEST_F(StreamStateSingle, ARequestFromTheOtherSideAcceptsThePendingOne) {
  ASSERT_TRUE(Accepted(s.run(kLo, request_friend(kHi, "hi"))));
  EXPECT_EQ(s.last()->event_type(), fb::Event::FriendRequested);
  EXPECT_EQ(s.state().link, Link::pending_from_lo);
  EXPECT_TRUE(Refused(s.run(kLo, request_friend(kHi)), Refusal::already_requested));

  ASSERT_TRUE(Accepted(s.run(kHi, request_friend(kLo))));
  ASSERT_EQ(s.last()->event_type(), fb::Event::FriendAccepted);
  EXPECT_EQ(s.last()->event_as_FriendAccepted()->by(), kHi);
  EXPECT_EQ(s.last()->event_as_FriendAccepted()->requester(), kLo);
  EXPECT_EQ(s.state().link, Link::friends);
  EXPECT_TRUE(Refused(s.run(kLo, request_friend(kHi)), Refusal::already_friends));
  EXPECT_TRUE(Refused(s.run(kHi, request_friend(kLo)), Refusal::already_friends));
}

TEST_F(StreamStateSingle, AcceptAndRejectNeedARequestFromTheOtherUser) {
  EXPECT_TRUE(Refused(s.run(kHi, accept_friend(kLo)), Refusal::no_pending_request));
  EXPECT_TRUE(Refused(s.run(kHi, reject_friend(kLo)), Refusal::no_pending_request));
  ASSERT_TRUE(Accepted(s.run(kHi, request_friend(kLo))));
  EXPECT_EQ(s.state().link, Link::pending_from_hi);
  EXPECT_TRUE(Refused(s.run(kHi, accept_friend(kLo)), Refusal::no_pending_request))
      << "the requester cannot accept their own request";
  EXPECT_TRUE(Refused(s.run(kLo, accept_friend(kThird)), Refusal::invalid));

  ASSERT_TRUE(Accepted(s.run(kLo, reject_friend(kHi))));
  EXPECT_EQ(s.last()->event_type(), fb::Event::FriendRejected);
  EXPECT_EQ(s.state().link, Link::none);
  EXPECT_TRUE(Refused(s.run(kLo, accept_friend(kHi)), Refusal::no_pending_request));
  // After a rejection the requester may ask again.
  EXPECT_TRUE(Accepted(s.run(kHi, request_friend(kLo))));
}

TEST_F(StreamStateSingle, RemoveFriendNeedsFriends) {
  EXPECT_TRUE(Refused(s.run(kLo, remove_friend(kHi)), Refusal::not_friends));
  ASSERT_TRUE(Accepted(s.run(kLo, request_friend(kHi))));
  EXPECT_TRUE(Refused(s.run(kLo, remove_friend(kHi)), Refusal::not_friends)) << "only pending";
  ASSERT_TRUE(Accepted(s.run(kHi, accept_friend(kLo))));
  EXPECT_TRUE(Refused(s.run(kLo, remove_friend(kThird)), Refusal::invalid));
  ASSERT_TRUE(Accepted(s.run(kLo, remove_friend(kHi))));
  EXPECT_EQ(s.last()->event_type(), fb::Event::FriendRemoved);
  EXPECT_EQ(s.state().link, Link::none);
}

TEST_F(StreamStateSingle, TargetsMustBeTheOtherParticipant) {
  EXPECT_TRUE(Refused(s.run(kLo, request_friend(kThird)), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(kLo, request_friend(kLo)), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(kLo, block(kThird)), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(kLo, unblock(kThird)), Refusal::invalid));
}

TEST_F(StreamStateSingle, AnOverlongRequestNoteIsTooLarge) {
  EXPECT_TRUE(Refused(s.run(kLo, request_friend(kHi, std::string(1001, 'x'))), Refusal::too_large));
  EXPECT_TRUE(Accepted(s.run(kLo, request_friend(kHi, std::string(1000, 'x')))));
}

TEST_F(StreamStateSingle, RefusesGroupAndProfileCommands) {
  EXPECT_TRUE(Refused(s.run(kLo, join()), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(s.run(kLo, create_group(1)), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(s.run(kLo, update_nickname("x")), Refusal::wrong_stream));
}

// ---- group_<id> ---------------------------------------------------------------------------------

constexpr uint64_t kGroup = 7;
constexpr uint64_t kOwner = 1, kAdmin = 2, kMember = 3, kOutsider = 4, kOther = 5;

class StreamStateGroup : public ::testing::Test {
 protected:
  // owner 1; admin 2; member 3. Users 4 and 5 exist and are not members.
  void standard_group() {
    ASSERT_TRUE(Accepted(g.run(kOwner, create_group(kGroup, {kAdmin, kMember}))));
    ASSERT_TRUE(Accepted(g.run(kOwner, change_role(kAdmin, fb::Role::Admin))));
  }
  MapDirectory dir{kOwner, kAdmin, kMember, kOutsider, kOther};
  Stream g{group_stream(kGroup), dir};
};

TEST_F(StreamStateGroup, TheCreatorIsOwnerAndFirstMember) {
  ASSERT_TRUE(Accepted(g.run(kOwner, create_group(kGroup, {kAdmin, kOwner, kAdmin, kMember}))));
  ASSERT_EQ(g.last()->event_type(), fb::Event::GroupCreated);
  auto* ev = g.last()->event_as_GroupCreated();
  EXPECT_EQ(ev->owner(), kOwner);
  ASSERT_NE(ev->members(), nullptr);
  EXPECT_EQ(ev->members()->size(), 2u) << "the owner and duplicates are dropped";
  EXPECT_TRUE(g.state().created);
  EXPECT_EQ(g.state().owner, kOwner);
  EXPECT_EQ(g.state().members,
            (std::map<uint64_t, fb::Role>{
                {kOwner, fb::Role::Owner}, {kAdmin, fb::Role::Member}, {kMember, fb::Role::Member}}));
  EXPECT_EQ(g.state().last_seq, 1u);
}

TEST_F(StreamStateGroup, CreateRefusals) {
  EXPECT_TRUE(Refused(g.run(kOwner, create_group(kGroup + 1)), Refusal::invalid)) << "id of another stream";
  EXPECT_TRUE(Refused(g.run(kOwner, create_group(kGroup, {}, "")), Refusal::invalid)) << "no name";
  EXPECT_TRUE(Refused(g.run(kOwner, create_group(kGroup, {}, std::string(101, 'n'))), Refusal::too_large));
  EXPECT_TRUE(Refused(g.run(kOwner, create_group(kGroup, {kAdmin, kGhost})), Refusal::not_found));
  ASSERT_TRUE(Accepted(g.run(kOwner, create_group(kGroup))));
  EXPECT_TRUE(Refused(g.run(kOther, create_group(kGroup)), Refusal::already_exists));
  EXPECT_EQ(g.state().owner, kOwner);
}

TEST_F(StreamStateGroup, CreateRefusesMoreMembersThanTheLimit) {
  EngineLimits limits;
  limits.max_group_members = 3;
  Stream small(group_stream(kGroup), dir, limits);
  EXPECT_TRUE(
      Refused(small.run(kOwner, create_group(kGroup, {kAdmin, kMember, kOutsider})), Refusal::group_full));
  ASSERT_TRUE(Accepted(small.run(kOwner, create_public_group(kGroup, {kAdmin, kMember}))));
  EXPECT_TRUE(Refused(small.run(kOutsider, join()), Refusal::group_full));
  EXPECT_TRUE(Refused(small.run(kOwner, join(kOther)), Refusal::group_full));
  ASSERT_TRUE(Accepted(small.run(kMember, leave())));
  EXPECT_TRUE(Accepted(small.run(kOutsider, join())));
}

TEST_F(StreamStateGroup, EverythingButCreateOnAMissingGroupIsNotFound) {
  EXPECT_TRUE(Refused(g.run(kOwner, join()), Refusal::not_found));
  EXPECT_TRUE(Refused(g.run(kOwner, send("hello?")), Refusal::not_found));
  EXPECT_TRUE(Refused(g.run(kOwner, leave()), Refusal::not_found));
  EXPECT_TRUE(Refused(g.run(kOwner, change_role(kAdmin, fb::Role::Admin)), Refusal::not_found));
  EXPECT_EQ(g.events().size(), 0u);
}

TEST_F(StreamStateGroup, APublicGroupTakesAnyoneAndAnyMemberAdds) {
  ASSERT_TRUE(Accepted(g.run(kOwner, create_public_group(kGroup, {kAdmin, kMember}))));
  EXPECT_TRUE(g.state().public_group);
  EXPECT_TRUE(Refused(g.run(kMember, join()), Refusal::already_member));
  EXPECT_TRUE(Refused(g.run(kOutsider, join(kOther)), Refusal::not_member)) << "only members add members";
  EXPECT_TRUE(Refused(g.run(kMember, join(kGhost)), Refusal::not_found));
  EXPECT_TRUE(Refused(g.run(kMember, join(kAdmin)), Refusal::already_member));

  ASSERT_TRUE(Accepted(g.run(kOutsider, join())));
  EXPECT_EQ(g.last()->event_as_MemberJoined()->user_id(), kOutsider);
  EXPECT_EQ(g.last()->event_as_MemberJoined()->invited_by(), 0u);
  ASSERT_TRUE(Accepted(g.run(kMember, join(kOther)))) << "a plain member adds to a public group";
  EXPECT_EQ(g.last()->event_as_MemberJoined()->user_id(), kOther);
  EXPECT_EQ(g.last()->event_as_MemberJoined()->invited_by(), kMember);
  EXPECT_EQ(g.state().members.size(), 5u);
  EXPECT_EQ(g.state().members.at(kOther), fb::Role::Member);
}

TEST_F(StreamStateGroup, APrivateGroupIsTheDefaultAndOnlyItsOwnerOrAnAdminAdds) {
  standard_group();
  EXPECT_FALSE(g.state().public_group);
  auto created = read_event(g.events().front());
  ASSERT_TRUE(created);
  auto* gc = (*created)->event_as_GroupCreated();
  ASSERT_NE(gc, nullptr);
  EXPECT_EQ(gc->join_policy(), fb::JoinPolicy::Private) << "the event says the policy it was decided with";
  EXPECT_EQ(gc->history(), fb::HistoryRule::FromJoin) << "private groups default to history from the join";

  EXPECT_TRUE(Refused(g.run(kOutsider, join()), Refusal::forbidden)) << "a stranger joins a private group";
  EXPECT_TRUE(Refused(g.run(kMember, join(kOutsider)), Refusal::forbidden)) << "a plain member adds";
  EXPECT_TRUE(Refused(g.run(kMember, join(kGhost)), Refusal::not_found));
  EXPECT_TRUE(Refused(g.run(kOutsider, join(kOther)), Refusal::not_member));
  EXPECT_FALSE(g.state().members.contains(kOutsider));

  ASSERT_TRUE(Accepted(g.run(kAdmin, join(kOutsider)))) << "an admin adds";
  EXPECT_EQ(g.last()->event_as_MemberJoined()->invited_by(), kAdmin);
  ASSERT_TRUE(Accepted(g.run(kOwner, join(kOther)))) << "the owner adds";
  EXPECT_EQ(g.state().members.size(), 5u);
}

TEST_F(StreamStateGroup, CreateSaysBothSettingsAndRefusesUnknownOnes) {
  ASSERT_TRUE(Accepted(g.run(kOwner, create_public_group(kGroup))));
  auto* gc = g.last()->event_as_GroupCreated();
  EXPECT_EQ(gc->join_policy(), fb::JoinPolicy::Public);
  EXPECT_EQ(gc->history(), fb::HistoryRule::All) << "public groups default to all history";

  Stream other(group_stream(kGroup + 1), dir);
  fb::CreateGroupT explicit_rule = create_group(kGroup + 1);
  explicit_rule.join_policy = fb::JoinPolicy::Public;
  explicit_rule.history = fb::HistoryRule::FromJoin;
  ASSERT_TRUE(Accepted(other.run(kOwner, explicit_rule)));
  EXPECT_EQ(other.last()->event_as_GroupCreated()->history(), fb::HistoryRule::FromJoin);

  Stream bad(group_stream(kGroup + 2), dir);
  fb::CreateGroupT bad_policy = create_group(kGroup + 2);
  bad_policy.join_policy = static_cast<fb::JoinPolicy>(5);
  EXPECT_TRUE(Refused(bad.run(kOwner, bad_policy), Refusal::invalid));
  fb::CreateGroupT bad_history = create_group(kGroup + 2);
  bad_history.history = static_cast<fb::HistoryRule>(-3);
  EXPECT_TRUE(Refused(bad.run(kOwner, bad_history), Refusal::invalid));
  EXPECT_TRUE(bad.events().empty());
}

// A GroupCreated written before schema 3 has no settings: the group is private.
TEST_F(StreamStateGroup, AGroupCreatedWithoutSettingsIsPrivate) {
  fb::EventEnvelopeT old;
  old.stream = group_stream(kGroup);
  old.seq = 1;
  old.event_id = 1;
  old.timestamp_ms = kStartMs;
  old.actor = kOwner;
  old.schema_version = 1;
  fb::GroupCreatedT gc;
  gc.group_id = kGroup;
  gc.owner = kOwner;
  gc.name = "from before";
  gc.members = {kMember};
  old.event.Set(std::move(gc));
  std::string bytes = encode_event(old);
  auto view = read_event(bytes);
  ASSERT_TRUE(view);
  ASSERT_FALSE((*view)->event_as_GroupCreated()->join_policy().has_value());
  StreamState s;
  EngineLimits limits;
  apply(*parse_stream(group_stream(kGroup)), s, **view);
  EXPECT_TRUE(s.created);
  EXPECT_FALSE(s.public_group);

  fb::CommandEnvelopeT join_cmd;
  join_cmd.stream = group_stream(kGroup);
  join_cmd.actor = kOutsider;
  join_cmd.client_msg_id = "j";
  join_cmd.command.Set(join());
  std::string cbytes = encode_command(join_cmd);
  auto cview = read_command(cbytes);
  ASSERT_TRUE(cview);
  Decision d = decide(*parse_stream(group_stream(kGroup)), s, **cview, DecideContext{dir, limits, kStartMs});
  EXPECT_TRUE(Refused(d, Refusal::forbidden));
}

TEST_F(StreamStateGroup, LeaveRules) {
  standard_group();
  EXPECT_TRUE(Refused(g.run(kOutsider, leave()), Refusal::not_member));
  EXPECT_TRUE(Refused(g.run(kOwner, leave()), Refusal::owner_must_transfer));
  ASSERT_TRUE(Accepted(g.run(kAdmin, leave())));
  ASSERT_TRUE(Accepted(g.run(kMember, leave())));
  EXPECT_TRUE(Refused(g.run(kMember, leave()), Refusal::not_member));
  EXPECT_TRUE(Accepted(g.run(kOwner, leave()))) << "the last member may leave";
  EXPECT_TRUE(g.state().members.empty());
}

TEST_F(StreamStateGroup, AMemberWhoLeftAtSeqNCannotSendAtNPlus1) {
  standard_group();
  ASSERT_TRUE(Accepted(g.run(kMember, send("bye all"))));
  ASSERT_TRUE(Accepted(g.run(kMember, leave())));
  uint64_t left_at = g.last()->seq();
  EXPECT_EQ(left_at, g.state().last_seq);
  EXPECT_TRUE(Refused(g.run(kMember, send("one more thing")), Refusal::not_member));
  EXPECT_TRUE(Refused(g.run(kMember, mark_read(left_at)), Refusal::not_member));
  ASSERT_TRUE(Accepted(g.run(kOwner, send("gone"))));
  EXPECT_EQ(g.last()->seq(), left_at + 1);

  // Removal likewise.
  ASSERT_TRUE(Accepted(g.run(kOwner, remove_member(kAdmin))));
  EXPECT_TRUE(Refused(g.run(kAdmin, send("hey")), Refusal::not_member));
  // Being added back restores it.
  ASSERT_TRUE(Accepted(g.run(kOwner, join(kMember))));
  EXPECT_TRUE(Accepted(g.run(kMember, send("back"))));
}

TEST_F(StreamStateGroup, OnlyOwnerOrAdminRemovesAndOnlyTheOwnerRemovesAnAdmin) {
  standard_group();
  ASSERT_TRUE(Accepted(g.run(kOwner, join(kOutsider))));
  ASSERT_TRUE(Accepted(g.run(kOwner, join(kOther))));
  ASSERT_TRUE(Accepted(g.run(kOwner, change_role(kOther, fb::Role::Admin))));

  EXPECT_TRUE(Refused(g.run(kMember, remove_member(kOutsider)), Refusal::forbidden)) << "a member";
  EXPECT_TRUE(Refused(g.run(kGhost, remove_member(kOutsider)), Refusal::forbidden)) << "a non-member";
  EXPECT_TRUE(Refused(g.run(kAdmin, remove_member(kOther)), Refusal::forbidden)) << "admin removes admin";
  EXPECT_TRUE(Refused(g.run(kAdmin, remove_member(kOwner)), Refusal::forbidden)) << "admin removes owner";
  EXPECT_TRUE(Refused(g.run(kAdmin, remove_member(kGhost)), Refusal::not_member));
  EXPECT_TRUE(Refused(g.run(kAdmin, remove_member(kAdmin)), Refusal::invalid)) << "leave instead";
  EXPECT_TRUE(Refused(g.run(kOwner, remove_member(kOwner)), Refusal::invalid));

  ASSERT_TRUE(Accepted(g.run(kAdmin, remove_member(kOutsider))));
  EXPECT_EQ(g.last()->event_as_MemberRemoved()->by(), kAdmin);
  ASSERT_TRUE(Accepted(g.run(kOwner, remove_member(kOther))));
  EXPECT_FALSE(g.state().members.contains(kOutsider));
  EXPECT_FALSE(g.state().members.contains(kOther));
  EXPECT_EQ(g.state().members.size(), 3u);
}

TEST_F(StreamStateGroup, ARemovedMemberIsBannedUntilTheOwnerOrAnAdminLiftsIt) {
  ASSERT_TRUE(Accepted(g.run(kOwner, create_public_group(kGroup, {kAdmin, kMember, kOutsider}))));
  ASSERT_TRUE(Accepted(g.run(kOwner, change_role(kAdmin, fb::Role::Admin))));
  ASSERT_TRUE(Accepted(g.run(kAdmin, remove_member(kMember))));
  EXPECT_TRUE(g.last()->event_as_MemberRemoved()->ban());
  EXPECT_EQ(g.state().banned, std::set<uint64_t>{kMember});

  // Even a public group refuses them, by themselves or added by anyone, an admin included.
  EXPECT_TRUE(Refused(g.run(kMember, join()), Refusal::banned));
  EXPECT_TRUE(Refused(g.run(kOutsider, join(kMember)), Refusal::banned));
  EXPECT_TRUE(Refused(g.run(kAdmin, join(kMember)), Refusal::banned)) << "adding does not lift a ban";
  EXPECT_TRUE(Refused(g.run(kOwner, join(kMember)), Refusal::banned));
  EXPECT_FALSE(g.state().members.contains(kMember));

  // Only the owner or an admin lifts it; only a ban can be lifted.
  EXPECT_TRUE(Refused(g.run(kOutsider, unban(kMember)), Refusal::forbidden)) << "a plain member";
  EXPECT_TRUE(Refused(g.run(kMember, unban(kMember)), Refusal::forbidden)) << "the banned user";
  EXPECT_TRUE(Refused(g.run(kAdmin, unban(kOther)), Refusal::not_found)) << "never banned";
  ASSERT_TRUE(Accepted(g.run(kAdmin, unban(kMember))));
  EXPECT_EQ(g.last()->event_as_MemberUnbanned()->user_id(), kMember);
  EXPECT_EQ(g.last()->event_as_MemberUnbanned()->by(), kAdmin);
  EXPECT_TRUE(g.state().banned.empty());
  EXPECT_TRUE(Refused(g.run(kAdmin, unban(kMember)), Refusal::not_found)) << "lifted already";

  ASSERT_TRUE(Accepted(g.run(kMember, join()))) << "the public group takes them again";
  // Leaving is not a removal: no ban.
  ASSERT_TRUE(Accepted(g.run(kMember, leave())));
  EXPECT_TRUE(g.state().banned.empty());
  EXPECT_TRUE(Accepted(g.run(kMember, join())));
}

TEST_F(StreamStateGroup, ABannedUserOfAPrivateGroupIsBackOnlyWhenUnbannedAndAdded) {
  standard_group();
  ASSERT_TRUE(Accepted(g.run(kOwner, remove_member(kMember))));
  EXPECT_TRUE(Refused(g.run(kMember, join()), Refusal::banned)) << "banned says more than forbidden";
  EXPECT_TRUE(Refused(g.run(kOwner, join(kMember)), Refusal::banned));
  ASSERT_TRUE(Accepted(g.run(kOwner, unban(kMember))));
  EXPECT_TRUE(Refused(g.run(kMember, join()), Refusal::forbidden)) << "unbanned, but the group is private";
  ASSERT_TRUE(Accepted(g.run(kAdmin, join(kMember))));
  EXPECT_TRUE(g.state().members.contains(kMember));
}

// A MemberRemoved written before schema 3 has no ban: the user may be added back as before.
TEST_F(StreamStateGroup, ARemovalWithoutABanBansNobody) {
  standard_group();
  fb::EventEnvelopeT old;
  old.stream = group_stream(kGroup);
  old.seq = g.state().last_seq + 1;
  old.event_id = 5;
  old.timestamp_ms = kStartMs;
  old.actor = kOwner;
  old.event.Set(fb::MemberRemovedT{{}, kMember, kOwner});
  std::string bytes = encode_event(old);
  auto view = read_event(bytes);
  ASSERT_TRUE(view);
  StreamState s = g.state();
  apply(g.ref(), s, **view);
  EXPECT_FALSE(s.members.contains(kMember));
  EXPECT_TRUE(s.banned.empty());
}

TEST_F(StreamStateGroup, TheOwnerOrAnAdminChangesTheSettings) {
  standard_group();
  EXPECT_TRUE(Refused(g.run(kMember, change_settings(fb::JoinPolicy::Public)), Refusal::forbidden));
  EXPECT_TRUE(Refused(g.run(kOutsider, change_settings(fb::JoinPolicy::Public)), Refusal::forbidden));
  EXPECT_TRUE(Refused(g.run(kAdmin, change_settings(std::nullopt)), Refusal::invalid)) << "nothing to change";
  EXPECT_TRUE(Refused(g.run(kAdmin, change_settings(static_cast<fb::JoinPolicy>(9))), Refusal::invalid));
  EXPECT_TRUE(
      Refused(g.run(kAdmin, change_settings(std::nullopt, static_cast<fb::HistoryRule>(2))), Refusal::invalid));
  EXPECT_TRUE(Refused(g.run(kOutsider, join()), Refusal::forbidden));

  ASSERT_TRUE(Accepted(g.run(kAdmin, change_settings(fb::JoinPolicy::Public))));
  auto* ev = g.last()->event_as_GroupSettingsChanged();
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->join_policy(), fb::JoinPolicy::Public);
  EXPECT_FALSE(ev->history().has_value()) << "absent: unchanged";
  EXPECT_EQ(ev->by(), kAdmin);
  EXPECT_TRUE(g.state().public_group);
  ASSERT_TRUE(Accepted(g.run(kOutsider, join()))) << "public now";

  ASSERT_TRUE(Accepted(g.run(kOwner, change_settings(std::nullopt, fb::HistoryRule::All))));
  EXPECT_TRUE(g.state().public_group) << "a history change keeps the policy";
  ASSERT_TRUE(Accepted(g.run(kOwner, change_settings(fb::JoinPolicy::Private))));
  EXPECT_FALSE(g.state().public_group);
  EXPECT_TRUE(Refused(g.run(kOther, join()), Refusal::forbidden));
}

// ---- retention (schema 9) -----------------------------------------------------------------------

TEST_F(StreamStateGroup, TheOwnerOrAnAdminSetsTheRetention) {
  standard_group();
  EXPECT_TRUE(Refused(g.run(kMember, keep(30)), Refusal::forbidden));
  EXPECT_TRUE(Refused(g.run(kOutsider, keep(30)), Refusal::forbidden));
  auto over = g.run(kAdmin, keep(kMaxKeepDays + 1));
  EXPECT_TRUE(Refused(over, Refusal::invalid));
  EXPECT_TRUE(over.stateless);
  uint64_t before = g.state().last_seq;
  ASSERT_TRUE(Accepted(g.run(kAdmin, keep(30))));
  auto* ev = g.last()->event_as_RetentionSet();
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->by(), kAdmin);
  EXPECT_EQ(ev->keep_days(), 30u);
  EXPECT_EQ(g.last()->seq(), before + 1) << "a timeline event";
  EXPECT_EQ(effective_keep_days(g.ref(), g.state(), 0), 30u);
  ASSERT_TRUE(Accepted(g.run(kOwner, keep(0))));
  EXPECT_EQ(effective_keep_days(g.ref(), g.state(), 90), 0u) << "for ever overrides the default";
  ASSERT_TRUE(Accepted(g.run(kOwner, keep(std::nullopt))));
  EXPECT_FALSE(g.last()->event_as_RetentionSet()->keep_days().has_value());
  EXPECT_EQ(effective_keep_days(g.ref(), g.state(), 90), 90u) << "cleared: the default";
}

TEST_F(StreamStateSingle, EachParticipantSetsTheirOwnRetentionAndTheShorterWins) {
  EXPECT_TRUE(Refused(s.run(kThird, keep(1)), Refusal::not_participant));
  EXPECT_EQ(effective_keep_days(s.ref(), s.state(), 0), 0u);
  ASSERT_TRUE(Accepted(s.run(kLo, keep(30))));
  EXPECT_EQ(effective_keep_days(s.ref(), s.state(), 0), 30u) << "for ever (the default) vs 30";
  ASSERT_TRUE(Accepted(s.run(kHi, keep(7))));
  EXPECT_EQ(effective_keep_days(s.ref(), s.state(), 0), 7u);
  ASSERT_TRUE(Accepted(s.run(kHi, keep(0))));
  EXPECT_EQ(effective_keep_days(s.ref(), s.state(), 0), 30u) << "hi keeps for ever; lo's 30 is shorter";
  EXPECT_EQ(effective_keep_days(s.ref(), s.state(), 10), 30u) << "both set: the default plays no part";
  ASSERT_TRUE(Accepted(s.run(kLo, keep(std::nullopt))));
  EXPECT_EQ(effective_keep_days(s.ref(), s.state(), 10), 10u) << "lo back on the default, hi for ever";
  EXPECT_EQ(effective_keep_days(s.ref(), s.state(), 0), 0u);
  ASSERT_TRUE(Accepted(s.run(kHi, keep(60))));
  EXPECT_EQ(effective_keep_days(s.ref(), s.state(), 10), 10u) << "the default is lo's and shorter";
}

TEST(StreamStateWorld, RetentionIsTheDeploymentDefault) {
  MapDirectory dir{1};
  Stream w("world", dir);
  auto d = w.run(1, keep(5));
  EXPECT_TRUE(Refused(d, Refusal::forbidden));
  EXPECT_TRUE(d.stateless);
}

// Sends `n` messages from `sender`, one per `step_ms`.
void send_many(Stream& st, uint64_t sender, int n, int64_t step_ms = 1000) {
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(Accepted(st.run(sender, send("m" + std::to_string(i)))));
    st.advance_ms(step_ms);
  }
}

TEST_F(StreamStateSingle, ExpiryFollowsThePolicyOnTheEventsOwnDays) {
  s.advance_ms(kDayMs - s.now_ms() % kDayMs);  // midnight
  send_many(s, kLo, 3);                          // seqs 1..3 on day D
  s.advance_ms(kDayMs);
  send_many(s, kHi, 2);                          // seqs 4..5 on day D+1
  EXPECT_TRUE(Refused(s.run(kLo, expire(5)), Refusal::forbidden)) << "only the task (actor 0)";
  EXPECT_TRUE(Refused(s.run(0, expire(5)), Refusal::not_found)) << "kept for ever: nothing expires";
  ASSERT_TRUE(Accepted(s.run(kLo, keep(1))));    // seq 6, day D+1
  EXPECT_TRUE(Refused(s.run(0, expire(6)), Refusal::not_found)) << "day D ended less than a day ago";
  s.advance_ms(kDayMs);                          // day D+2: day D ended a day ago
  EXPECT_TRUE(Refused(s.run(0, expire(0)), Refusal::invalid));
  ASSERT_TRUE(Accepted(s.run(0, expire(2))));
  EXPECT_EQ(s.last()->event_as_MessagesExpired()->through_seq(), 2u) << "no further than asked";
  EXPECT_EQ(s.last()->seq(), 0u) << "not a timeline event";
  ASSERT_TRUE(Accepted(s.run(0, expire(99))));
  EXPECT_EQ(s.last()->event_as_MessagesExpired()->through_seq(), 3u) << "only day D's rows";
  EXPECT_TRUE(Refused(s.run(0, expire(2)), Refusal::not_found)) << "never backwards";
  EXPECT_TRUE(Refused(s.run(0, expire(3)), Refusal::not_found)) << "nor again";
  EXPECT_EQ(s.state().expired_through, 3u);
  s.advance_ms(kDayMs);
  ASSERT_TRUE(Accepted(s.run(0, expire(99))));
  EXPECT_EQ(s.last()->event_as_MessagesExpired()->through_seq(), 6u) << "never past the head";
  ASSERT_TRUE(Accepted(s.run(kHi, send("after"))));
  EXPECT_EQ(s.last()->seq(), 7u) << "later seqs do not change";
  EXPECT_TRUE(s.state().day_marks.size() == 1 && s.state().day_marks.front().last_seq == 7);
}

TEST_F(StreamStateGroup, TheDeploymentDefaultExpiresAndAnExpiredMessageCannotBeRecalled) {
  EngineLimits lim;
  lim.default_keep_days = 2;
  lim.recall_window_ms = 10 * kDayMs;
  Stream h(group_stream(kGroup), dir, lim);
  ASSERT_TRUE(Accepted(h.run(kOwner, create_group(kGroup, {kMember}))));
  ASSERT_TRUE(Accepted(h.run(kMember, send("old"))));
  uint64_t old_id = h.last_event_id();
  h.advance_ms(3 * kDayMs + 1);
  ASSERT_TRUE(Accepted(h.run(0, expire(2))));
  EXPECT_EQ(h.run(kMember, recall(old_id)).kind, Decision::Kind::refuse) << "no longer held";
  EXPECT_TRUE(h.state().day_marks.empty());
  StreamState out;
  ASSERT_TRUE(decode_state(encode_state(h.state()), out));
  EXPECT_TRUE(SameState(out, h.state()));
}

TEST_F(StreamStateGroup, OnlyTheOwnerChangesRoles) {
  standard_group();
  EXPECT_EQ(g.state().members.at(kAdmin), fb::Role::Admin);
  EXPECT_TRUE(Refused(g.run(kAdmin, change_role(kMember, fb::Role::Admin)), Refusal::forbidden));
  EXPECT_TRUE(Refused(g.run(kMember, change_role(kMember, fb::Role::Admin)), Refusal::forbidden));
  EXPECT_TRUE(Refused(g.run(kOwner, change_role(kOutsider, fb::Role::Admin)), Refusal::not_member));
  EXPECT_TRUE(Refused(g.run(kOwner, change_role(kOwner, fb::Role::Member)), Refusal::invalid));
  ASSERT_TRUE(Accepted(g.run(kOwner, change_role(kAdmin, fb::Role::Member))));
  EXPECT_EQ(g.state().members.at(kAdmin), fb::Role::Member);
  EXPECT_TRUE(Refused(g.run(kAdmin, remove_member(kMember)), Refusal::forbidden)) << "demoted";
}

TEST_F(StreamStateGroup, RefusesARoleTheSchemaDoesNotDefine) {
  standard_group();
  for (int8_t bad : {int8_t{3}, int8_t{100}, int8_t{-1}, int8_t{-128}}) {
    EXPECT_TRUE(Refused(g.run(kOwner, change_role(kMember, static_cast<fb::Role>(bad))), Refusal::invalid))
        << "role " << int{bad};
  }
  // Had one got in, the member would pass every "not a plain Member" check.
  EXPECT_EQ(g.state().members.at(kMember), fb::Role::Member);
  EXPECT_TRUE(Refused(g.run(kMember, remove_member(kAdmin)), Refusal::forbidden));
}

TEST_F(StreamStateGroup, ChangingRoleToOwnerTransfersOwnership) {
  standard_group();
  ASSERT_TRUE(Accepted(g.run(kOwner, change_role(kMember, fb::Role::Owner))));
  EXPECT_EQ(g.state().owner, kMember);
  EXPECT_EQ(g.state().members.at(kMember), fb::Role::Owner);
  EXPECT_EQ(g.state().members.at(kOwner), fb::Role::Admin) << "the old owner stays as an admin";
  EXPECT_EQ(std::count_if(g.state().members.begin(), g.state().members.end(),
                          [](auto& m) { return m.second == fb::Role::Owner; }),
            1);

  EXPECT_TRUE(Refused(g.run(kOwner, change_role(kAdmin, fb::Role::Member)), Refusal::forbidden));
  EXPECT_TRUE(Refused(g.run(kOwner, remove_member(kMember)), Refusal::forbidden));
  EXPECT_TRUE(Accepted(g.run(kMember, change_role(kAdmin, fb::Role::Member))));
  EXPECT_TRUE(Refused(g.run(kMember, leave()), Refusal::owner_must_transfer));
  EXPECT_TRUE(Accepted(g.run(kOwner, leave()))) << "no longer the owner";
  EXPECT_TRUE(Accepted(g.run(kMember, remove_member(kAdmin))));
  EXPECT_TRUE(Accepted(g.run(kMember, leave())));
}

TEST_F(StreamStateGroup, AnOwnerWhoLeftKeepsNoOwnerPowersAfterRejoining) {
  // The owner leaves as the last member, someone else joins, the old owner joins again as a
  // plain member: they must not be able to hand out roles.
  ASSERT_TRUE(Accepted(g.run(kOwner, create_public_group(kGroup))));
  ASSERT_TRUE(Accepted(g.run(kOwner, leave())));
  ASSERT_TRUE(Accepted(g.run(kMember, join())));
  ASSERT_TRUE(Accepted(g.run(kOwner, join())));
  EXPECT_EQ(g.state().members.at(kOwner), fb::Role::Member);
  EXPECT_TRUE(Refused(g.run(kOwner, change_role(kMember, fb::Role::Admin)), Refusal::forbidden));
  EXPECT_TRUE(Refused(g.run(kOwner, change_role(kMember, fb::Role::Owner)), Refusal::forbidden));
  EXPECT_NE(g.state().members.at(kOwner), fb::Role::Admin) << "a rejoined member promoted themself";
}

TEST_F(StreamStateGroup, NonMembersCannotUseTheConversation) {
  standard_group();
  EXPECT_TRUE(Refused(g.run(kOutsider, send("hi")), Refusal::not_member));
  EXPECT_TRUE(Refused(g.run(kOutsider, mark_read(1)), Refusal::not_member));
  EXPECT_TRUE(Refused(g.run(kOutsider, recall(1000)), Refusal::not_member));
  EXPECT_TRUE(Accepted(g.run(kMember, send("hi"))));
}

TEST_F(StreamStateGroup, RefusesCommandsOfOtherStreams) {
  standard_group();
  EXPECT_TRUE(Refused(g.run(kOwner, request_friend(kAdmin)), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(g.run(kOwner, block(kAdmin)), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(g.run(kOwner, update_nickname("x")), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(g.run(kOwner, register_user("someone")), Refusal::wrong_stream));
}

// ---- conversations: content, recall, read markers ------------------------------------------------

TEST(StreamStateConversation, ContentMustBeNonEmptyValidUtf8WithinTheLimit) {
  MapDirectory dir;
  EngineLimits limits;
  limits.max_content_bytes = 16;
  Stream w(std::string(kWorldStream), dir, limits);
  EXPECT_TRUE(Refused(w.run(1, send("")), Refusal::invalid));
  EXPECT_TRUE(Refused(w.run(1, send(std::string(17, 'x'))), Refusal::too_large));
  EXPECT_TRUE(Accepted(w.run(1, send(std::string(16, 'x')))));
  for (std::string bad :
       {std::string("\xff"), std::string("ab\xc3"), std::string("\xc0\xaf"), std::string("\xe0\x80\xaf"),
        std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80"), std::string("\x80"),
        std::string("\xf8\x88\x80\x80\x80")}) {
    auto d = w.run(1, send(bad));
    EXPECT_TRUE(Refused(d, Refusal::invalid)) << "content of " << bad.size() << " bytes";
  }
  for (std::string good : {std::string("h\xc3\xa9llo"), std::string("\xe2\x82\xac"),
                           std::string("\xf0\x9f\x98\x80"), std::string("\xf4\x8f\xbf\xbf")}) {
    EXPECT_TRUE(Accepted(w.run(1, send(good))));
  }
  ASSERT_EQ(w.last()->event_type(), fb::Event::MessageAppended);
  EXPECT_EQ(sv(w.last()->event_as_MessageAppended()->content()), "\xf4\x8f\xbf\xbf");
}

TEST(StreamStateConversation, RefusesAMessageTypeTheSchemaDoesNotDefine) {
  MapDirectory dir;
  Stream w(std::string(kWorldStream), dir);
  EXPECT_TRUE(Accepted(w.run(1, send("pic", fb::MessageType::Image))));
  EXPECT_EQ(w.last()->event_as_MessageAppended()->message_type(), fb::MessageType::Image);
  for (int8_t bad : {int8_t{4}, int8_t{127}, int8_t{-1}, int8_t{-128}}) {
    EXPECT_TRUE(Refused(w.run(1, send("x", static_cast<fb::MessageType>(bad))), Refusal::invalid))
        << "message_type " << int{bad};
  }
}

class StreamStateRecall : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Accepted(g.run(kOwner, create_group(kGroup, {kMember}))));
    ASSERT_TRUE(Accepted(g.run(kMember, send("oops"))));
    message_ = g.last_event_id();
    seq_ = g.last()->seq();
  }
  MapDirectory dir{kOwner, kMember};
  Stream g{group_stream(kGroup), dir};
  uint64_t message_ = 0;
  uint64_t seq_ = 0;
};

TEST_F(StreamStateRecall, TheSenderRecallsOnceWithinTheWindow) {
  EXPECT_TRUE(Refused(g.run(kOwner, recall(message_)), Refusal::not_sender)) << "not even the owner";
  g.advance_ms(g.limits().recall_window_ms);  // the window's last millisecond
  ASSERT_TRUE(Accepted(g.run(kMember, recall(message_))));
  ASSERT_EQ(g.last()->event_type(), fb::Event::MessageRecalled);
  EXPECT_EQ(g.last()->event_as_MessageRecalled()->message_id(), message_);
  EXPECT_EQ(g.last()->event_as_MessageRecalled()->recalled_seq(), seq_);
  EXPECT_EQ(g.last()->seq(), seq_ + 1) << "a recall is on the timeline";
  auto held = g.recalls().find(g.id(), message_);
  ASSERT_TRUE(held);
  EXPECT_TRUE(held->recalled);
  EXPECT_EQ(held->seq, seq_);
  EXPECT_TRUE(Refused(g.run(kMember, recall(message_)), Refusal::not_found)) << "twice";
}

TEST_F(StreamStateRecall, NotAfterTheWindow) {
  g.advance_ms(g.limits().recall_window_ms + 1);
  EXPECT_TRUE(Refused(g.run(kMember, recall(message_)), Refusal::recall_window_passed));
  // Still held by the index (the engine may forget it once the window has passed; not held, it
  // gets the same answer: AnUnknownMessage... below).
  ASSERT_TRUE(Accepted(g.run(kOwner, send("later"))));
  EXPECT_TRUE(g.recalls().find(g.id(), message_));
  EXPECT_TRUE(Refused(g.run(kMember, recall(message_)), Refusal::recall_window_passed));
}

// The id MessageIdGenerator makes at `ms` on partition 0 with counter 0.
uint64_t id_made_at(int64_t ms) { return static_cast<uint64_t>(ms - MessageIdGenerator::kEpochMs) << 22; }

TEST_F(StreamStateRecall, AnUnknownMessageIsNotFoundUnlessOlderThanTheWindow) {
  // Made within the window yet not held: never a message of this conversation.
  EXPECT_TRUE(Refused(g.run(kMember, recall(id_made_at(g.now_ms()))), Refusal::not_found));
  EXPECT_TRUE(Refused(g.run(kMember, recall(id_made_at(g.now_ms() - g.limits().recall_window_ms))),
                      Refusal::not_found))
      << "the window's first millisecond";
  EXPECT_TRUE(Refused(g.run(kMember, recall(id_made_at(g.now_ms() + 60'000))), Refusal::not_found))
      << "an id from the future";
  // Older than the window: it may have been one, and can no longer be recalled either way.
  EXPECT_TRUE(Refused(g.run(kMember, recall(id_made_at(g.now_ms() - g.limits().recall_window_ms - 1))),
                      Refusal::recall_window_passed));
  EXPECT_TRUE(Refused(g.run(kMember, recall(0)), Refusal::recall_window_passed));
}

// The engine's recall horizon only goes up: a message below it is past the window as judged
// before, even when the clock stepped back since and the index still holds it.
TEST_F(StreamStateRecall, BelowTheHorizonIsPastTheWindowWhateverTheClockSays) {
  g.recalls().forget_below(message_ + 1);
  EXPECT_TRUE(Refused(g.run(kMember, recall(message_)), Refusal::recall_window_passed));
  EXPECT_TRUE(Refused(g.run(kOwner, recall(message_)), Refusal::recall_window_passed))
      << "judged before the sender, so the answer does not depend on what the index still holds";
}

TEST(StreamStateConversation, MarkReadIsInRangeAndOffTheTimeline) {
  MapDirectory dir{kLo, kHi};
  Stream s(single_stream(kLo, kHi), dir);
  EXPECT_TRUE(Refused(s.run(kHi, mark_read(1)), Refusal::invalid)) << "nothing to read yet";
  ASSERT_TRUE(Accepted(s.run(kLo, send("one"))));
  ASSERT_TRUE(Accepted(s.run(kLo, send("two"))));
  EXPECT_TRUE(Refused(s.run(kHi, mark_read(0)), Refusal::invalid));
  EXPECT_TRUE(Refused(s.run(kHi, mark_read(3)), Refusal::invalid));
  s.advance_ms(5);
  auto d = s.run(kHi, mark_read(2));
  ASSERT_TRUE(Accepted(d));
  EXPECT_FALSE(d.timeline);
  EXPECT_EQ(s.last()->seq(), 0u);
  ASSERT_EQ(s.last()->event_type(), fb::Event::ReadMarked);
  EXPECT_EQ(s.last()->event_as_ReadMarked()->user_id(), kHi);
  EXPECT_EQ(s.last()->event_as_ReadMarked()->seq(), 2u);
  EXPECT_EQ(s.state().last_seq, 2u) << "a read marker takes no seq";
  EXPECT_EQ(s.state().last_event_ms, s.now_ms());
  ASSERT_TRUE(Accepted(s.run(kLo, send("three"))));
  EXPECT_EQ(s.last()->seq(), 3u) << "no gap after a read marker";
}

// ---- world --------------------------------------------------------------------------------------

TEST(StreamStateWorld, AnyActorSendsButNoMembershipCommands) {
  MapDirectory dir;  // world does not consult the directory
  Stream w(std::string(kWorldStream), dir);
  uint64_t seq = 0;
  for (uint64_t actor : {1ull, 77ull, 123456789ull}) {
    ASSERT_TRUE(Accepted(w.run(actor, send("hello world"))));
    EXPECT_EQ(w.last()->seq(), ++seq);
    EXPECT_EQ(w.last()->actor(), actor);
  }
  EXPECT_TRUE(Accepted(w.run(77, mark_read(2))));
  EXPECT_TRUE(Refused(w.run(1, join()), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(w.run(1, leave()), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(w.run(1, create_group(1)), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(w.run(1, remove_member(77)), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(w.run(1, change_role(77, fb::Role::Admin)), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(w.run(1, request_friend(77)), Refusal::wrong_stream));
  EXPECT_TRUE(Refused(w.run(0, send("anonymous")), Refusal::invalid));
  EXPECT_TRUE(w.state().members.empty());
  EXPECT_FALSE(w.state().created);
}

// ---- apply() ------------------------------------------------------------------------------------

std::string event_bytes(std::string stream, uint64_t seq, int64_t ts, fb::EventUnion event) {
  fb::EventEnvelopeT e;
  e.stream = std::move(stream);
  e.seq = seq;
  e.event_id = 1;
  e.timestamp_ms = ts;
  e.actor = 1;
  e.event = std::move(event);
  return encode_event(e);
}

TEST(StreamStateApply, SeqFollowsTimelineEventsOnly) {
  StreamRef ref{StreamKind::world, 0, 0};
  EngineLimits limits;
  StreamState s;
  fb::EventUnion msg;
  msg.Set(fb::MessageAppendedT{{}, fb::MessageType::Text, "x"});
  fb::EventUnion read;
  read.Set(fb::ReadMarkedT{{}, 1, 1});

  auto b1 = event_bytes("world", 1, 100, msg);
  apply(ref, s, **read_event(b1));
  EXPECT_EQ(s.last_seq, 1u);
  EXPECT_EQ(s.last_event_ms, 100);
  auto b2 = event_bytes("world", 0, 150, read);
  apply(ref, s, **read_event(b2));
  EXPECT_EQ(s.last_seq, 1u);
  EXPECT_EQ(s.last_event_ms, 150);
  auto b3 = event_bytes("world", 2, 200, msg);
  apply(ref, s, **read_event(b3));
  EXPECT_EQ(s.last_seq, 2u);
}

TEST(StreamStateApply, MessagesAndRecallsMakeRecallEntriesAndNothingElseDoes) {
  MapDirectory dir{kOwner, kMember};
  Stream g(group_stream(kGroup), dir);
  ASSERT_TRUE(Accepted(g.run(kOwner, create_group(kGroup, {kMember}))));
  EXPECT_FALSE(recall_entry_of(*g.last())) << "a group's creation";
  g.advance_ms(5);
  ASSERT_TRUE(Accepted(g.run(kMember, send("a"))));
  auto sent = recall_entry_of(*g.last());
  ASSERT_TRUE(sent);
  EXPECT_EQ(*sent, (RecentMessage{g.last_event_id(), kMember, 2, g.now_ms(), false}));
  const uint64_t message = g.last_event_id();
  ASSERT_TRUE(Accepted(g.run(kMember, mark_read(2))));
  EXPECT_FALSE(recall_entry_of(*g.last())) << "a read marker";
  ASSERT_TRUE(Accepted(g.run(kMember, recall(message))));
  auto recalled = recall_entry_of(*g.last());
  ASSERT_TRUE(recalled);
  EXPECT_EQ(recalled->message_id, message);
  EXPECT_EQ(recalled->sender, kMember);
  EXPECT_EQ(recalled->seq, 2u) << "the message's seq, not the recall's";
  EXPECT_TRUE(recalled->recalled);
  EXPECT_EQ(g.recalls().size(), 1u) << "one entry per message";
}

// ---- state encoding -----------------------------------------------------------------------------

StreamState rich_state() {
  StreamState s;
  s.last_seq = 4242;
  s.last_event_ms = kStartMs + 17;
  s.created = true;
  s.owner = 9;
  s.members = {{1, fb::Role::Member}, {9, fb::Role::Owner}, {1ull << 52, fb::Role::Admin}};
  s.link = Link::pending_from_hi;
  s.lo_blocks_hi = true;
  s.public_group = true;
  s.banned = {3, 1ull << 52};
  s.devices = {{7, DeviceEntry{fb::PushPlatform::Webhook, "https://hooks.example/u/5", "sess-a"}},
               {1ull << 52, DeviceEntry{fb::PushPlatform::Fcm, "fcm:token", ""}}};
  return s;
}

// The recent messages a conversation's state held before version 6 (the recall index holds them
// since).
const std::vector<RecentMessage> kLegacyRecent = {{0xFFFF'FFFF'FFFF'FFFFull, 1, 4240, kStartMs, false},
                                                  {77, 9, 4242, kStartMs + 17, true}};

// `s` as version 5 wrote it, with kLegacyRecent.
std::string v5_encoding(const StreamState& s) { return testing::v5_encoding(s, kLegacyRecent); }

// An encoding of the current version less its retention fields (a state without any: keep_a,
// keep_b, expired_through and a zero count of day marks), still marked as the current version.
std::string without_retention(const std::string& bytes) { return bytes.substr(0, bytes.size() - 32); }

TEST(StreamStateEncoding, RoundTrips) {
  for (const StreamState& in : {StreamState{}, rich_state()}) {
    std::string bytes = encode_state(in);
    StreamState out;
    out.last_seq = 1;  // decode must replace, not merge
    out.members[5] = fb::Role::Admin;
    ASSERT_TRUE(decode_state(bytes, out));
    EXPECT_TRUE(SameState(out, in));
    EXPECT_EQ(encode_state(out), bytes) << "deterministic";
  }
  StreamState other = rich_state();
  other.hi_blocks_lo = true;
  other.link = Link::friends;
  StreamState out;
  ASSERT_TRUE(decode_state(encode_state(other), out));
  EXPECT_TRUE(SameState(out, other));
  EXPECT_NE(encode_state(other), encode_state(rich_state()));
}

TEST(StreamStateEncoding, RoundTripsAStateBuiltFromEvents) {
  MapDirectory dir{kOwner, kAdmin, kMember};
  Stream g(group_stream(kGroup), dir);
  ASSERT_TRUE(Accepted(g.run(kOwner, create_group(kGroup, {kAdmin, kMember}))));
  ASSERT_TRUE(Accepted(g.run(kOwner, change_role(kAdmin, fb::Role::Admin))));
  ASSERT_TRUE(Accepted(g.run(kMember, send("one"))));
  ASSERT_TRUE(Accepted(g.run(kMember, recall(g.last_event_id()))));
  ASSERT_TRUE(Accepted(g.run(kAdmin, send("two"))));
  ASSERT_TRUE(Accepted(g.run(kOwner, remove_member(kMember))));
  ASSERT_TRUE(Accepted(g.run(kOwner, change_settings(fb::JoinPolicy::Public))));
  StreamState out;
  ASSERT_TRUE(decode_state(encode_state(g.state()), out));
  EXPECT_TRUE(SameState(out, g.state()));
  EXPECT_TRUE(out.public_group);
  EXPECT_EQ(out.banned, std::set<uint64_t>{kMember});
}

// The state store of the build before group settings holds version 1 states: they decode as
// private groups without bans, as that build's events do.
TEST(StreamStateEncoding, DecodesTheStatesOfTheBuildBeforeGroupSettings) {
  StreamState in = rich_state();
  in.public_group = false;
  in.banned.clear();
  in.devices.clear();
  std::string v3 = without_retention(v5_encoding(in));
  std::string v1 = v3.substr(0, v3.size() - 16);  // no banned list, no devices
  v1[0] = 1;
  StreamState out;
  std::vector<RecentMessage> recent;
  ASSERT_TRUE(decode_state(v1, out, &recent));
  EXPECT_TRUE(SameState(out, in));
  EXPECT_EQ(recent, kLegacyRecent);
  EXPECT_EQ(encode_state(out), encode_state(in)) << "written back as the current version";
  EXPECT_FALSE(decode_state(v3.substr(0, v3.size() - 16), out)) << "version 3 needs its banned list and devices";
}

// The build before devices wrote version 2 states: they decode with no devices.
TEST(StreamStateEncoding, DecodesTheStatesOfTheBuildBeforeDevices) {
  StreamState in = rich_state();
  in.devices.clear();
  std::string v3 = without_retention(v5_encoding(in));
  std::string v2 = v3.substr(0, v3.size() - 8);  // no device list
  v2[0] = 2;
  StreamState out;
  ASSERT_TRUE(decode_state(v2, out));
  EXPECT_TRUE(SameState(out, in));
  EXPECT_EQ(encode_state(out), encode_state(in));
}

// The build before login sessions wrote version 3 states: their devices decode with no session.
TEST(StreamStateEncoding, DecodesTheStatesOfTheBuildBeforeDeviceSessions) {
  StreamState in = rich_state();
  for (auto& [id, d] : in.devices) d.session.clear();
  std::string v4 = without_retention(v5_encoding(in));
  std::string v3 = v4.substr(0, v4.size() - 8 * in.devices.size());  // no session per device
  v3[0] = 3;
  StreamState out;
  ASSERT_TRUE(decode_state(v3, out));
  EXPECT_TRUE(SameState(out, in));
  EXPECT_EQ(encode_state(out), encode_state(in));
  v4[0] = 4;
  EXPECT_FALSE(decode_state(v4.substr(0, v4.size() - 8), out)) << "version 4 needs a session per device";
}

// The build before retention wrote version 4 states: no override, nothing expired, no day marks.
TEST(StreamStateEncoding, DecodesTheStatesOfTheBuildBeforeRetention) {
  StreamState in = rich_state();
  std::string v4 = without_retention(v5_encoding(in));
  v4[0] = 4;
  StreamState out;
  ASSERT_TRUE(decode_state(v4, out));
  EXPECT_TRUE(SameState(out, in));
  EXPECT_EQ(encode_state(out), encode_state(in));
  in.keep_a = 30;
  in.keep_b = 0;
  in.expired_through = 4;
  in.day_marks = {{19000, 5}, {19002, 9}};
  ASSERT_TRUE(decode_state(encode_state(in), out));
  EXPECT_TRUE(SameState(out, in));
  EXPECT_FALSE(decode_state(encode_state(in).substr(0, encode_state(in).size() - 16), out)) << "a mark short";
}

// The build before the recall index wrote version 5 states, each conversation's holding its recent
// messages: they decode to the same state, and the messages go to the caller (the state store,
// which puts them in the index).
TEST(StreamStateEncoding, DecodesTheStatesOfTheBuildBeforeTheRecallIndex) {
  StreamState in = rich_state();
  in.keep_a = 30;
  in.expired_through = 4;
  in.day_marks = {{19000, 5}, {19002, 9}};
  std::string v5 = v5_encoding(in);
  StreamState out;
  std::vector<RecentMessage> recent{RecentMessage{1, 1, 1, 1, false}};
  ASSERT_TRUE(decode_state(v5, out, &recent));
  EXPECT_TRUE(SameState(out, in));
  EXPECT_EQ(recent, kLegacyRecent) << "replaced, not appended to";
  EXPECT_EQ(encode_state(out), encode_state(in));
  EXPECT_LT(encode_state(out).size(), v5.size());
  ASSERT_TRUE(decode_state(v5, out)) << "the recent messages may be skipped";
  ASSERT_TRUE(decode_state(encode_state(in), out, &recent));
  EXPECT_TRUE(recent.empty()) << "version 6 has none";
  std::string v6_as_v5 = encode_state(in);
  v6_as_v5[0] = 5;
  EXPECT_FALSE(decode_state(v6_as_v5, out)) << "version 5 needs its recent messages";
}

TEST(StreamStateEncoding, RejectsTruncatedOrPaddedBytes) {
  std::string bytes = encode_state(rich_state());
  for (size_t n = 0; n < bytes.size(); ++n) {
    StreamState out;
    EXPECT_FALSE(decode_state(std::string_view(bytes).substr(0, n), out)) << "prefix of " << n << " bytes";
  }
  StreamState out;
  EXPECT_FALSE(decode_state(bytes + '\0', out)) << "trailing byte";
  std::string other_version = bytes;
  other_version[0] = 7;
  EXPECT_FALSE(decode_state(other_version, out)) << "unknown version";
  // A member count far past the bytes present fails instead of looping or allocating.
  std::string huge = encode_state(StreamState{});
  huge[5 * 8 + 7] = '\x7f';  // the member count's top byte
  EXPECT_FALSE(decode_state(huge, out));
}

// ---- property: the live state is a pure fold of the accepted events -----------------------------

// One random step: (kind, actor, target, extra).
using Step = std::tuple<int, int, int, int>;

RC_GTEST_PROP(StreamStateProperty, ReplayingTheAcceptedEventsRebuildsTheLiveState, ()) {
  MapDirectory dir{1, 2, 3, 4, 5};  // user 6 does not exist
  EngineLimits limits;
  limits.max_group_members = 4;
  limits.max_content_bytes = 8;
  Stream g(group_stream(kGroup), dir, limits);
  std::vector<uint64_t> message_ids;

  // Mostly start from a created group, so that the steps exercise more than "not found".
  if (*rc::gen::inRange(0, 10) != 0) {
    g.run(1, *rc::gen::arbitrary<bool>() ? create_public_group(kGroup, {2}) : create_group(kGroup, {2}));
  }
  // At full size throughout: rapidcheck scales inRange down at small sizes, which would make most
  // early runs a few CreateGroups by user 1. Shrinking still works.
  const auto length = *rc::gen::resize(100, rc::gen::inRange<size_t>(0, 300));
  const auto steps = *rc::gen::resize(
      100, rc::gen::container<std::vector<Step>>(
               length, rc::gen::tuple(rc::gen::inRange(0, 14), rc::gen::inRange(1, 7), rc::gen::inRange(1, 7),
                                      rc::gen::inRange(0, 1 << 20))));
  std::set<fb::Event> seen;
  std::vector<StreamState> states{StreamState{}, g.state()};  // every state the stream went through
  for (auto [kind, actor_i, target_i, extra] : steps) {
    auto actor = static_cast<uint64_t>(actor_i);
    auto target = static_cast<uint64_t>(target_i);
    g.advance_ms(extra % 3 == 0 ? 0 : extra % 50'000);  // windows of 120 s open and close
    Decision d;
    switch (kind) {
      case 0:
        d = g.run(actor, create_group(extra % 4 == 0 ? kGroup + 1 : kGroup, {target}));
        break;
      case 1:
        d = g.run(actor, join(extra % 2 ? target : 0));
        break;
      case 2:
        d = g.run(actor, leave());
        break;
      case 3:
        d = g.run(actor, remove_member(target));
        break;
      case 4:
        d = g.run(actor, change_role(target, static_cast<fb::Role>(extra % 3)));
        break;
      case 5:
        d = g.run(actor, send(std::string(static_cast<size_t>(extra % 10), 'm')));
        break;
      case 6: {
        auto recent = message_ids.empty() ? std::nullopt
                                          : g.recalls().find(g.id(), message_ids[static_cast<size_t>(extra / 2) % message_ids.size()]);
        if (recent && extra % 2 == 0) {  // its sender, or someone else, recalls a recent one
          const auto& m = *recent;
          d = g.run(extra % 4 == 0 ? m.sender : actor, recall(m.message_id));
        } else {
          uint64_t id = message_ids.empty() || extra % 5 == 0 ? 42 : message_ids[extra % message_ids.size()];
          d = g.run(actor, recall(id));
        }
        break;
      }
      case 7:
        d = g.run(actor, mark_read(static_cast<uint64_t>(extra) % (g.state().last_seq + 2)));
        break;
      case 8:
        d = g.run(actor, request_friend(target));
        break;  // never on a group
      case 9:
      case 10:
        d = g.run(actor, join());
        break;
      case 11: {
        auto policy = extra % 3 == 0 ? std::nullopt : std::optional(static_cast<fb::JoinPolicy>(extra % 3 - 1));
        auto history = extra % 5 < 2 ? std::nullopt : std::optional(static_cast<fb::HistoryRule>(extra % 5 - 2));
        d = g.run(actor, change_settings(policy, history));  // history 2: an unknown rule, refused
        break;
      }
      case 12: {
        const auto& banned = g.state().banned;  // mostly someone banned, so that lifting happens
        uint64_t who = banned.empty() || extra % 3 == 0 ? target : *std::next(banned.begin(), extra % banned.size());
        d = g.run(extra % 2 ? g.state().owner : actor, unban(who));
        break;
      }
      default:
        d = g.run(actor, send("hi"));
        break;
    }
    if (d.kind == Decision::Kind::accept) {
      seen.insert(g.last()->event_type());
      if (g.last()->event_type() == fb::Event::MessageAppended) message_ids.push_back(g.last_event_id());
    }
    // At most one member holds the Owner role, and it is the recorded owner.
    for (const auto& [user, role] : g.state().members) {
      if (role == fb::Role::Owner) RC_ASSERT(user == g.state().owner);
    }
    if (d.kind == Decision::Kind::accept) states.push_back(g.state());
  }

  // A refusal decided on the command alone (not remembered by the sequencer) is a refusal on every
  // state: no retry of that command can be accepted, whatever happened since. (A refusal that is
  // not stateless is remembered, so misjudging one that way only costs a record.)
  for (const auto& command : g.stateless_refusals()) {
    for (const auto& state : states) {
      Decision again = g.decide_on(state, command);
      if (again.kind == Decision::Kind::accept) {
        auto c = read_command(command);
        RC_FAIL(std::string("a stateless refusal of ") + std::string(command_type_name((*c)->command_type())) +
                " is accepted on another state of the stream");
      }
    }
  }
  RC_CLASSIFY(!g.stateless_refusals().empty(), "stateless refusals");

  StreamState rebuilt;
  MemoryRecalls rebuilt_recalls;
  uint64_t expected_seq = 0;
  for (const auto& bytes : g.events()) {
    auto ev = read_event(bytes);
    RC_ASSERT(ev.has_value());
    if ((*ev)->event_type() == fb::Event::ReadMarked) {
      RC_ASSERT((*ev)->seq() == 0u);
    } else {
      RC_ASSERT((*ev)->seq() == ++expected_seq);  // 1, 2, 3, ... with no gap
    }
    apply(g.ref(), rebuilt, **ev);
    rebuilt_recalls.record(g.id(), **ev);
  }
  if (auto same = SameState(rebuilt, g.state()); !same)
    RC_FAIL(std::string("replay differs from live: ") + same.message());
  RC_ASSERT(rebuilt_recalls.same_entries(g.recalls()));
  RC_ASSERT(g.state().last_seq == expected_seq);

  StreamState decoded;
  RC_ASSERT(decode_state(encode_state(g.state()), decoded));
  if (auto same = SameState(decoded, g.state()); !same)
    RC_FAIL(std::string("decode(encode(state)) differs: ") + same.message());
  RC_CLASSIFY(seen.contains(fb::Event::RoleChanged) && seen.contains(fb::Event::MemberRemoved) &&
                  seen.contains(fb::Event::MemberLeft) && seen.contains(fb::Event::ReadMarked),
              "roles, removals, leaves and read markers");
  RC_CLASSIFY(seen.contains(fb::Event::MessageRecalled), "recalls");
  RC_CLASSIFY(seen.contains(fb::Event::MemberUnbanned) && seen.contains(fb::Event::GroupSettingsChanged),
              "bans lifted and settings changed");
}

// The same on a one-to-one stream, where most refusals of messages are (blocks, friends-only):
// a stateless refusal is refused again on every state the stream goes through.
RC_GTEST_PROP(StreamStateProperty, AStatelessRefusalOfAOneToOneStreamIsRefusedOnEveryState, ()) {
  MapDirectory dir;
  dir.add(kLo);
  dir.add(kHi, fb::MessagePolicy::FriendsOnly);
  dir.add(kThird);
  EngineLimits limits;
  limits.max_content_bytes = 8;
  limits.max_text_bytes = 8;
  Stream s(single_stream(kLo, kHi), dir, limits);
  constexpr uint64_t kActors[] = {kLo, kHi, kLo, kHi, kThird, 0};
  constexpr uint64_t kTargets[] = {kLo, kHi, kLo, kHi, kThird, kGhost};
  const auto steps = *rc::gen::resize(
      100, rc::gen::container<std::vector<Step>>(
               *rc::gen::resize(100, rc::gen::inRange<size_t>(0, 200)),
               rc::gen::tuple(rc::gen::inRange(0, 11), rc::gen::inRange(0, 6), rc::gen::inRange(0, 6),
                              rc::gen::inRange(0, 1 << 20))));
  std::vector<StreamState> states{StreamState{}};
  for (auto [kind, actor_i, target_i, extra] : steps) {
    uint64_t actor = kActors[actor_i];
    uint64_t target = kTargets[target_i];
    // The other participant mostly, so that requests, blocks and friendship happen.
    if (extra % 3 != 0 && (actor == kLo || actor == kHi)) target = actor == kLo ? kHi : kLo;
    std::string text(static_cast<size_t>(extra % 11), 'x');  // empty, within or over the limit of 8
    s.advance_ms(extra % 60'000);
    Decision d;
    switch (kind) {
      case 0: d = s.run(actor, send(text)); break;
      case 1: d = s.run(actor, request_friend(target, text)); break;
      case 2: d = s.run(actor, accept_friend(target)); break;
      case 3: d = s.run(actor, reject_friend(target)); break;
      case 4: d = s.run(actor, remove_friend(target)); break;
      case 5: d = s.run(actor, block(target)); break;
      case 6: d = s.run(actor, unblock(target)); break;
      case 7: d = s.run(actor, mark_read(static_cast<uint64_t>(extra) % (s.state().last_seq + 2))); break;
      case 8: d = s.run(actor, recall(s.last_event_id() + static_cast<uint64_t>(extra % 2))); break;
      case 9: d = s.run(actor, join()); break;
      default: d = s.run(actor, send("hi")); break;
    }
    if (d.kind == Decision::Kind::accept) states.push_back(s.state());
  }
  for (const auto& command : s.stateless_refusals()) {
    for (const auto& state : states) {
      if (s.decide_on(state, command).kind == Decision::Kind::accept) {
        auto c = read_command(command);
        RC_FAIL(std::string("a stateless refusal of ") + std::string(command_type_name((*c)->command_type())) +
                " by user " + std::to_string((*c)->actor()) + " is accepted on another state of the stream");
      }
    }
  }
  RC_CLASSIFY(states.size() > 5, "more than 5 states");
}

}  // namespace
}  // namespace imlog
