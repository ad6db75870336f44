#pragma once
// The state of one stream, derived only from its earlier valid events, and the two pure functions
// of event sourcing over it (docs/architecture.md, "State, decide and apply"):
//
//   decide(state, command) → the one event the command produces, or a refusal with a reason code
//   apply(state, event)    → the state after the event
//
// The sequencer runs decide+apply live and apply alone when it catches up from the log, so the
// state it rebuilds after a crash is the state it had. Deduplication is not here: the sequencer
// checks (actor, client_msg_id) before deciding.
//
// Pure and thread-compatible: no I/O, no clock (the caller passes `now_ms`).

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/engine/directory.h"
#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"

namespace imlog {

// Why a command was refused; the code travels to the client as a string (refusal_code()).
enum class Refusal {
  invalid,               // a malformed or incomplete command
  wrong_stream,          // a command that does not belong on this stream
  not_participant,       // writing to a one-to-one stream of two other users
  not_member,            // writing to a group one is not a member of
  not_found,             // the group, user or message does not exist
  already_exists,        // the username is taken, the group id is in use
  already_member,
  forbidden,             // not the owner or an admin
  blocked,               // the other user blocked the sender
  you_blocked,           // the sender blocked the other user (unblock first)
  not_friends,           // the recipient accepts messages from friends only
  already_friends,
  already_requested,
  no_pending_request,
  too_large,             // content or field over its limit
  recall_window_passed,
  not_sender,            // recalling someone else's message
  group_full,
  owner_must_transfer,   // the owner cannot leave a group that still has members
  rate_limited,
  banned,                // removed from the group: no joining (or being added) until unbanned
  // the command's sent_at is older than the dedupe window: its dedupe entry may be gone, so it
  // cannot be told from a retry of a command already appended (the sequencer; never decide())
  retry_window_expired,
};
// How many Refusals there are (the metrics count each).
inline constexpr size_t kRefusalCount = static_cast<size_t>(Refusal::retry_window_expired) + 1;
std::string_view refusal_code(Refusal r);

// Limits the sequencer enforces; part of EngineConfig.
struct EngineLimits {
  uint64_t max_content_bytes = 64 * 1024;     // message content. Default 64 KiB.
  int64_t recall_window_ms = 2 * 60 * 1000;  // a sender may recall for this long. Default 2 min.
  uint32_t max_group_members = 10000;         // Default 10,000.
  uint32_t max_name_bytes = 100;              // group names, nicknames, friend group names
  uint32_t max_text_bytes = 1000;             // descriptions, signatures, friend request notes
  uint32_t max_devices = 10;                  // push devices per user. Default 10.
  // Message retention: the deployment default (retention.default_keep_days) for a conversation
  // with no override; 0 keeps messages for ever. Default 0.
  uint32_t default_keep_days = 0;
  // How long an erased user's username stays claimed after the erasure (engine's clock, from the
  // UserErased's time as the directory reports it); then anyone may register it. Default 30 days.
  int64_t username_grace_ms = 30LL * 24 * 3600 * 1000;
};

// Message retention (docs/data-lifecycle.md, "Message retention").
inline constexpr uint32_t kMaxKeepDays = 36500;        // a policy is 1 to 36,500 days, or for ever (0)
inline constexpr int64_t kDayMs = 24LL * 3600 * 1000;  // the granularity of the engine's age check
inline constexpr size_t kMaxDayMarks = 4096;           // past it, the oldest marks merge (expiry gets later, never earlier)
inline constexpr int64_t kNoOverride = -1;             // a keep_* with no override: the default applies

// The last seq of one UTC day's timeline events (day = timestamp_ms / kDayMs).
struct DayMark {
  int64_t day = 0;
  uint64_t last_seq = 0;
  bool operator==(const DayMark&) const = default;
};

// The limits of a push device's token (checked by decide(); the gateway answers 400 on them).
inline constexpr size_t kMaxDeviceTokenBytes = 4096;  // APNs and FCM tokens
inline constexpr size_t kMaxWebhookUrlBytes = 2048;   // a webhook device's token is its URL
inline constexpr size_t kMaxSessionIdBytes = 64;      // a login session's id (the tokens' `sid`)
inline constexpr size_t kMaxAppIdBytes = 255;
inline constexpr size_t kMaxTimeZoneBytes = 64;       // the longest IANA name is 32

// A push device as the user stream's state keeps it: enough to find a token again and to count.
struct DeviceEntry {
  fb::PushPlatform platform = fb::PushPlatform::Apns;
  std::string token;
  std::string session;  // the login session that registered it ("" : none); its logout removes it
  bool operator==(const DeviceEntry&) const = default;
};

enum class Link : uint8_t { none = 0, pending_from_lo, pending_from_hi, friends };

// A message as the recall index holds it: what decide() needs to judge a RecallMessage.
struct RecentMessage {
  uint64_t message_id = 0;
  uint64_t sender = 0;
  uint64_t seq = 0;
  int64_t timestamp_ms = 0;  // its event's
  bool recalled = false;
  bool operator==(const RecentMessage&) const = default;
};

// The messages of every conversation that may still be recalled, by (stream, message id): kept
// by the sequencer beside the stream states (the state store's recall entries), from each event's
// recall_entry_of(). Not part of a stream's state, so that a checkpoint writes a state whose size
// does not grow with the recall window and the conversation's rate.
class RecallIndex {
 public:
  virtual ~RecallIndex() = default;
  // The message's entry, if `stream` holds it and the index still keeps it (it forgets a message
  // once the recall window has passed).
  [[nodiscard]] virtual std::optional<RecentMessage> find(std::string_view stream, uint64_t message_id) const = 0;
  // Every message id below it is forgotten, as past the window when the engine judged it: a clock
  // stepped back since must not make such a message look recallable, or unknown. Never goes down.
  [[nodiscard]] virtual uint64_t horizon() const = 0;
};

// The entry a valid event puts in the recall index: a MessageAppended's own (not recalled), a
// MessageRecalled's for the message it recalls (recalled; its timestamp the message id's); none
// for any other event.
std::optional<RecentMessage> recall_entry_of(const fb::EventEnvelope& event);

struct StreamState {
  uint64_t last_seq = 0;       // of the timeline: every event but read markers and epoch markers
  int64_t last_event_ms = 0;
  // group_<id>
  bool created = false;
  uint64_t owner = 0;
  std::map<uint64_t, fb::Role> members;  // ordered: encoding must be deterministic
  bool public_group = false;             // join policy Public: anyone may join by themselves
  std::set<uint64_t> banned;             // removed users who may not join again until unbanned
  // single_<lo>_<hi>
  Link link = Link::none;
  bool lo_blocks_hi = false;
  bool hi_blocks_lo = false;
  // user_<id>: the user's push devices by device id (ordered: encoding must be deterministic)
  std::map<uint64_t, DeviceEntry> devices;
  bool erased = false;  // user_<id>: the user erased their account (UserErased); no command after it
  // conversations, retention (schema 9): the override in days (0: for ever; kNoOverride: none) of
  // a group or world in keep_a; of a one-to-one's lower user id in keep_a, the higher in keep_b.
  int64_t keep_a = kNoOverride;
  int64_t keep_b = kNoOverride;
  uint64_t expired_through = 0;  // every timeline row with seq <= it is expired
  // The days of the timeline events above expired_through, oldest first: what lets the engine
  // check an expiry against the events' own times.
  std::deque<DayMark> day_marks;

  bool operator==(const StreamState&) const = default;
};

// The usernames already claimed (kept by the sequencer beside the stream states).
class NameIndex {
 public:
  virtual ~NameIndex() = default;
  // The user holding `username` (the latest to register it); none when it is free.
  [[nodiscard]] virtual std::optional<uint64_t> holder(std::string_view username) const = 0;
};

struct DecideContext {
  const Directory& directory;
  const EngineLimits& limits;
  int64_t now_ms = 0;
  const NameIndex* names = nullptr;  // required for names_ streams
  const RecallIndex* recalls = nullptr;  // required for RecallMessage
};

struct Decision {
  enum class Kind { accept, refuse } kind = Kind::refuse;
  fb::EventUnion event;      // accept
  bool timeline = true;      // accept: takes the stream's next seq (false for read markers)
  uint64_t result_id = 0;    // accept: the id the command created (user id of a registration)
  Refusal refusal = Refusal::invalid;
  std::string message;       // refuse: names what is wrong
  // refuse: the command is refused whatever the state of its stream, the directory and the clock
  // — its own fields, its stream or its actor decide it (malformed, over a configured limit, on
  // the wrong stream, someone else's user stream). The sequencer does not remember such a refusal
  // (every retry is refused again). Otherwise (the default, and the safe side when in doubt) the
  // refusal depends on state, and the sequencer records it on the log (CommandRefused) so a
  // redelivery or a retry gets it again instead of a decision on a later state.
  bool stateless = false;

  static Decision refuse(Refusal r, std::string message);
  // A refusal decided on the command alone (stateless).
  static Decision refuse_stateless(Refusal r, std::string message);
};

Decision decide(const StreamRef& stream, const StreamState& state,
                const fb::CommandEnvelope& command, const DecideContext& ctx);

// Applies a valid event of this stream. Precondition: event.stream() names `stream`.
void apply(const StreamRef& stream, StreamState& state, const fb::EventEnvelope& event);

// The retention a conversation has: its days, 0 for ever. A group's or world's override, else the
// default; in a one-to-one the shorter of its two users' (each their override, else the default).
uint32_t effective_keep_days(const StreamRef& stream, const StreamState& state, uint32_t default_keep_days);

// The highest seq the policy lets expire at `now_ms`: the last seq of the last day that ended at
// least keep_days before now (so a row goes within a day after its age passes the policy); never
// below state.expired_through. keep_days 0: state.expired_through.
uint64_t expirable_through(const StreamState& state, uint32_t keep_days, int64_t now_ms);

// The retention part of apply() (which calls it for every conversation event): the overrides,
// expired_through and the day marks. All the retention task (imlog/tasks/retention.h) keeps of a
// conversation, so it judges what may expire as the engine will. Not for control records.
void apply_retention(const StreamRef& stream, StreamState& state, const fb::EventEnvelope& event);

// Is `token` acceptable for `platform`? Empty when it is, else what is wrong. APNs: 64 to 200
// hex digits; FCM: 1 to kMaxDeviceTokenBytes of [A-Za-z0-9_:.-]; webhook: an http:// or https://
// URL of at most kMaxWebhookUrlBytes printable ASCII without spaces.
std::string check_device_token(fb::PushPlatform platform, std::string_view token);

// Deterministic binary encoding of a state, for the state store. decode_state() also reads the
// encodings of the builds before group settings (version 1: every group private, no bans — which
// is what the events that build wrote decode to) and before devices (version 2: none).
std::string encode_state(const StreamState& state);
// The same into `out` (cleared first), whose capacity a caller encoding many states reuses.
void encode_state(const StreamState& state, std::string& out);
// Before version 6 a conversation's state held its recent messages: they go to `legacy_recent`
// (when given), for the store to move into the recall index.
bool decode_state(std::string_view bytes, StreamState& out, std::vector<RecentMessage>* legacy_recent = nullptr);

}  // namespace imlog
