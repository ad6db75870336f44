#pragma once
// EventLogBuilder: writes im.events directly, as a sequencer would — an EpochStarted opening each
// partition, then events keyed by stream with dense seqs per stream, time-ordered event ids and
// the current epoch token — for tests and benchmarks of the log's readers (projections, replay)
// that need exact control over events, or millions of them faster than through the engine.
// It does not judge commands: what it is told to write is written (the engine's rules are the
// engine's tests' business). It can also write what must be ignored: events of a zombie writer
// (a stale epoch token) and new epochs.
//
// Header-only so that test binaries and benches use it without another library.
// Not thread-safe: one per thread.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/message_ids.h"
#include "imlog/engine/partitioner.h"
#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"

namespace imlog::testing {

class EventLogBuilder {
 public:
  // Creates im.events with `partitions` partitions (or checks it has them) and opens an epoch on
  // each. Events are stamped from `start_ms`, one millisecond apart.
  static Result<std::unique_ptr<EventLogBuilder>> open(EventLog& log, int32_t partitions,
                                                       int64_t start_ms = 1'700'000'000'000) {
    IMLOG_TRY(log.create_topic(TopicSpec{std::string(kEventsTopic), partitions, true}));
    std::unique_ptr<EventLogBuilder> b(new EventLogBuilder(log, partitions, start_ms));
    for (int32_t p = 0; p < partitions; ++p) b->new_epoch(p);
    return b;
  }

  // ---- users -----------------------------------------------------------------------------------

  // A registration on the username's names_ stream; returns the user id the engine would give.
  uint64_t register_user(const std::string& username, const std::string& nickname = "") {
    std::string stream = names_stream(username);
    uint64_t id = user_id_for(name_bucket(username), last_seq(stream) + 1);
    fb::UserRegisteredT r;
    r.user_id = id;
    r.username = username;
    r.password_hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA";
    r.nickname = nickname.empty() ? username : nickname;
    r.email = username + "@example.com";
    emit(stream, 0, std::move(r));
    return id;
  }

  // Empty strings are absent fields (unchanged), as the engine's object-API encoding writes them.
  void profile(uint64_t user, const std::string& nickname, const std::string& signature = "",
               const std::string& avatar_url = "", const std::string& email = "") {
    emit(user_stream(user), user, fb::ProfileUpdatedT{{}, user, nickname, avatar_url, signature, email});
  }

  void settings(uint64_t user, fb::SettingsUpdatedT s) {
    s.user_id = user;
    emit(user_stream(user), user, std::move(s));
  }
  void device(uint64_t user, uint64_t device_id, fb::PushPlatform platform, const std::string& token,
              const std::string& app_id = "") {
    emit(user_stream(user), user, fb::DeviceRegisteredT{{}, user, device_id, platform, token, app_id});
  }
  void remove_device(uint64_t user, uint64_t device_id) {
    emit(user_stream(user), user, fb::DeviceRemovedT{{}, user, device_id});
  }
  // The last event of the user's stream, as the engine writes it (its key is not destroyed here).
  void erase_user(uint64_t user) { emit(user_stream(user), user, fb::UserErasedT{{}, user}); }

  void friend_group(uint64_t user, uint64_t friend_id, const std::string& group) {
    emit(user_stream(user), user, fb::FriendGroupSetT{{}, user, friend_id, group});
  }

  // ---- one-to-one relationship events (on single_<lo>_<hi>) -----------------------------------

  void friend_request(uint64_t from, uint64_t to, const std::string& note = "") {
    emit(single_stream(from, to), from, fb::FriendRequestedT{{}, from, to, note});
  }
  void friend_accept(uint64_t by, uint64_t requester) {
    emit(single_stream(by, requester), by, fb::FriendAcceptedT{{}, by, requester});
  }
  void friend_reject(uint64_t by, uint64_t requester) {
    emit(single_stream(by, requester), by, fb::FriendRejectedT{{}, by, requester});
  }
  void friend_remove(uint64_t by, uint64_t other) {
    emit(single_stream(by, other), by, fb::FriendRemovedT{{}, by, other});
  }
  void block(uint64_t by, uint64_t other) { emit(single_stream(by, other), by, fb::UserBlockedT{{}, by, other}); }
  void unblock(uint64_t by, uint64_t other) {
    emit(single_stream(by, other), by, fb::UserUnblockedT{{}, by, other});
  }

  // ---- groups ----------------------------------------------------------------------------------

  // Without settings, as a group created before schema 3 (private, all history); with them, as
  // the engine writes every GroupCreated now.
  void create_group(uint64_t group_id, uint64_t owner, std::vector<uint64_t> members, const std::string& name = "",
                    std::optional<fb::JoinPolicy> policy = std::nullopt,
                    std::optional<fb::HistoryRule> history = std::nullopt) {
    fb::GroupCreatedT g;
    g.group_id = group_id;
    g.owner = owner;
    g.name = name.empty() ? "group " + std::to_string(group_id) : name;
    g.description = "about " + g.name;
    g.members = std::move(members);
    if (policy) g.join_policy = *policy;
    if (history) g.history = *history;
    emit(group_stream(group_id), owner, std::move(g));
  }
  void group_settings(uint64_t group_id, uint64_t by, std::optional<fb::JoinPolicy> policy,
                      std::optional<fb::HistoryRule> history) {
    fb::GroupSettingsChangedT c;
    if (policy) c.join_policy = *policy;
    if (history) c.history = *history;
    c.by = by;
    emit(group_stream(group_id), by, std::move(c));
  }
  void join(uint64_t group_id, uint64_t user, uint64_t invited_by = 0) {
    emit(group_stream(group_id), invited_by ? invited_by : user, fb::MemberJoinedT{{}, user, invited_by});
  }
  void leave(uint64_t group_id, uint64_t user) { emit(group_stream(group_id), user, fb::MemberLeftT{{}, user}); }
  // ban false: a removal as written before schema 3.
  void remove(uint64_t group_id, uint64_t user, uint64_t by, bool ban = false) {
    emit(group_stream(group_id), by, fb::MemberRemovedT{{}, user, by, ban});
  }
  void unban(uint64_t group_id, uint64_t user, uint64_t by) {
    emit(group_stream(group_id), by, fb::MemberUnbannedT{{}, user, by});
  }
  void role(uint64_t group_id, uint64_t user, fb::Role role, uint64_t by) {
    emit(group_stream(group_id), by, fb::RoleChangedT{{}, user, role, by});
  }

  // ---- conversations ---------------------------------------------------------------------------

  // A message; returns its id (the event id).
  uint64_t message(const std::string& stream, uint64_t sender, const std::string& content,
                   fb::MessageType type = fb::MessageType::Text) {
    return emit(stream, sender, fb::MessageAppendedT{{}, type, content});
  }
  void recall(const std::string& stream, uint64_t sender, uint64_t message_id, uint64_t recalled_seq) {
    emit(stream, sender, fb::MessageRecalledT{{}, message_id, recalled_seq});
  }
  void read(const std::string& stream, uint64_t user, uint64_t seq) {
    emit(stream, user, fb::ReadMarkedT{{}, user, seq}, /*timeline=*/false);
  }
  // Retention (schema 9): a policy (keep_days: 0 for ever, nullopt the default), and an expiry
  // of every row through `through_seq` as the retention task's command makes the engine write it
  // (actor 0, off the timeline).
  void retention(const std::string& stream, uint64_t by, std::optional<uint32_t> keep_days) {
    emit(stream, by, fb::RetentionSetT{{}, by, keep_days});
  }
  void expire(const std::string& stream, uint64_t through_seq) {
    emit(stream, 0, fb::MessagesExpiredT{{}, through_seq}, /*timeline=*/false);
  }

  // ---- what readers must ignore, and epochs ----------------------------------------------------

  // A message from a writer that lost the partition: a stale token and the seq the stream's next
  // valid event will also take. Every reader must ignore it.
  void zombie_message(const std::string& stream, uint64_t sender, const std::string& content) {
    int32_t p = partition_of(stream);
    fb::EventEnvelopeT e = envelope(stream, sender, p, last_seq(stream) + 1);
    e.epoch = tokens_[static_cast<size_t>(p)] + 1'000'000;  // never a token of this log
    e.event.Set(fb::MessageAppendedT{{}, fb::MessageType::Text, content});
    push(p, stream, e);
  }

  // A refusal the sequencer remembers (CommandRefused, a control record: seq 0). Every reader must
  // take it through its EpochFilter and then skip it.
  void refusal(const std::string& stream, uint64_t actor, const std::string& code, const std::string& message) {
    emit(stream, actor, fb::CommandRefusedT{{}, code, message}, /*timeline=*/false);
  }

  // A new writer takes the partition: EpochStarted with a fresh token.
  void new_epoch(int32_t partition) {
    fb::EventEnvelopeT e;
    e.event_id = ids_[static_cast<size_t>(partition)].next();
    e.timestamp_ms = clock_.now_ms();
    fb::EpochStartedT m;
    m.token = next_token_++;
    m.partition = partition;
    m.writer = "builder-" + std::to_string(m.token);
    tokens_[static_cast<size_t>(partition)] = m.token;
    e.event.Set(std::move(m));
    push(partition, "", e);
  }

  // ---- state and output ------------------------------------------------------------------------

  [[nodiscard]] uint64_t last_seq(const std::string& stream) const {
    auto it = seqs_.find(stream);
    return it == seqs_.end() ? 0 : it->second;
  }
  [[nodiscard]] int32_t partition_of(const std::string& stream) const { return partition_for(stream, partitions_); }
  [[nodiscard]] int32_t partitions() const { return partitions_; }
  [[nodiscard]] uint64_t events() const { return events_; }
  void advance_ms(int64_t ms) { clock_.advance_ms(ms); }
  // Events are buffered and appended in batches of this many. Default 4096.
  void set_batch(size_t n) { batch_ = n == 0 ? 1 : n; }

  // Appends what is buffered and waits for the log's acknowledgement.
  Status flush() {
    if (pending_.empty()) return {};
    auto r = log_.append_wait(kEventsTopic, std::move(pending_));
    pending_.clear();
    if (!r) return tl::unexpected(r.error());
    return {};
  }
  // The end offset of every partition, after a flush().
  Result<std::vector<int64_t>> ends() {
    IMLOG_TRY(flush());
    std::vector<int64_t> out;
    for (int32_t p = 0; p < partitions_; ++p) {
      auto e = log_.end_offset({std::string(kEventsTopic), p});
      IMLOG_TRY(e);
      out.push_back(*e);
    }
    return out;
  }
  // The first append failure, if any (appends happen inside the builder's calls).
  [[nodiscard]] const std::optional<Error>& error() const { return error_; }

 private:
  EventLogBuilder(EventLog& log, int32_t partitions, int64_t start_ms)
      : log_(log), partitions_(partitions), clock_(start_ms), tokens_(static_cast<size_t>(partitions), 0) {
    for (int32_t p = 0; p < partitions; ++p) ids_.emplace_back(clock_, p);
  }

  fb::EventEnvelopeT envelope(const std::string& stream, uint64_t actor, int32_t p, uint64_t seq) {
    clock_.advance_ms(1);
    fb::EventEnvelopeT e;
    e.stream = stream;
    e.seq = seq;
    e.event_id = ids_[static_cast<size_t>(p)].next();
    e.timestamp_ms = clock_.now_ms();
    e.actor = actor;
    e.epoch = tokens_[static_cast<size_t>(p)];
    e.trace_id = "trace-" + std::to_string(events_);
    e.client_msg_id = "c-" + std::to_string(++client_ids_);
    return e;
  }

  template <class T>
  uint64_t emit(const std::string& stream, uint64_t actor, T event, bool timeline = true) {
    int32_t p = partition_of(stream);
    uint64_t seq = timeline ? ++seqs_[stream] : 0;
    fb::EventEnvelopeT e = envelope(stream, actor, p, seq);
    e.event.Set(std::move(event));
    push(p, stream, e);
    return e.event_id;
  }

  void push(int32_t p, const std::string& key, const fb::EventEnvelopeT& e) { append(p, key, encode_event(e)); }

  void append(int32_t p, const std::string& key, std::string value) {
    pending_.push_back(OutRecord{key, std::move(value), p});
    ++events_;
    if (pending_.size() >= batch_) {
      if (auto s = flush(); !s && !error_) error_ = s.error();
    }
  }

  EventLog& log_;
  int32_t partitions_;
  ManualClock clock_;
  std::vector<MessageIdGenerator> ids_;
  std::vector<uint64_t> tokens_;
  uint64_t next_token_ = 1;
  std::map<std::string, uint64_t> seqs_;
  std::vector<OutRecord> pending_;
  size_t batch_ = 4096;
  uint64_t events_ = 0;
  uint64_t client_ids_ = 0;
  std::optional<Error> error_;
};

}  // namespace imlog::testing
