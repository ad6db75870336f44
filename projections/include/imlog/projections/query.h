#pragma once
// The read side (the query service of docs/architecture.md): the answers clients ask for, from whichever store
// holds them. Callers never care which store answered.
//
//   ReadModel    — one store that can answer every query (RocksDB always; MySQL when configured)
//   HotHistory   — recent messages of a conversation (Redis hot_messages ZSETs), tried first
//   QueryService — history from HotHistory when it covers the range, else the ReadModel; all
//                  other queries from the ReadModel
//
// Read models are eventually consistent with the log; write paths never read them to decide
// (the engine decides). Reads are authorised here: the gateway asks readable_from() before
// history, members and sync, and reads history only from the seq it answers — the group history
// rule (first_readable_seq) is applied in this layer, once, for every store.
//
// Threading: implementations are thread-safe; QueryService is called from gateway threads.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/result.h"

namespace imlog {

struct MessageView {
  uint64_t message_id = 0;
  std::string conversation_id;
  uint64_t seq_id = 0;
  uint64_t sender_id = 0;
  std::string content;        // empty once recalled or erased
  std::string message_type;   // text, image, file, system
  std::string client_msg_id;
  int64_t created_at = 0;     // Unix ms
  bool recalled = false;
  bool erased = false;        // its sender erased their account (schema 10)
  bool operator==(const MessageView&) const = default;
};

struct HistoryPage {
  std::vector<MessageView> messages;  // ascending seq
  bool has_more = false;              // more exist beyond the page in the direction read
};

// A range of one conversation's history as a store reads it: the rows with
// after_seq < seq < before_seq (before_seq 0: no upper bound), the first `limit` of them when
// `forward` (has_more: rows of the range after the page), else the last `limit` (has_more: rows
// of the range before the page).
struct HistoryRange {
  uint64_t after_seq = 0;
  uint64_t before_seq = 0;
  bool forward = false;
  uint32_t limit = 50;
};

// History as a client asks for it (REST and the WebSocket sync):
//   after_seq present (0 included) — the rows after it, oldest first, stopping before before_seq
//                                    if that is given: a catch-up from 0 starts at seq 1;
//   else before_seq > 0            — the page of rows just before it;
//   else                           — the latest page.
struct HistoryRequest {
  std::optional<uint64_t> after_seq;
  uint64_t before_seq = 0;
  uint32_t limit = 50;
};

struct ConversationView {
  std::string conversation_id;
  std::string type;                   // single, group, world
  uint64_t last_seq = 0;
  uint64_t read_seq = 0;
  uint64_t unread = 0;                // messages from others after read_seq; never system rows
  std::optional<MessageView> last_message;
  int64_t updated_at = 0;
  std::string title;                  // group name, or the other user's nickname
  uint64_t peer_id = 0;               // single: the other user
};

// A push device of a user (DeviceRegistered, until DeviceRemoved). Only its owner and the push
// worker read these: never in another user's view of the profile.
struct DeviceView {
  uint64_t device_id = 0;
  std::string platform;  // apns | fcm | webhook
  std::string token;     // the webhook's URL for webhook
  std::string app_id;
  int64_t created_at = 0;  // Unix ms of the (latest) registration
  bool operator==(const DeviceView&) const = default;
};

struct UserView {
  uint64_t user_id = 0;
  std::string username;
  std::string nickname;
  std::string avatar_url;
  std::string signature;
  std::string email;
  bool allow_search = true;
  std::string message_policy = "everyone";  // everyone | friends_only
  bool push_enabled = true;
  int32_t quiet_start_minute = -1;          // -1: no quiet hours
  int32_t quiet_end_minute = -1;
  std::vector<std::string> muted;           // conversation ids
  int64_t created_at = 0;
  std::string time_zone;                    // IANA name; "" : UTC
  std::vector<DeviceView> devices;          // by device id
};

struct Credentials {
  uint64_t user_id = 0;
  std::string password_hash;  // Argon2id string
};

struct GroupView {
  uint64_t group_id = 0;
  std::string name;
  std::string description;
  uint64_t owner_id = 0;
  uint32_t member_count = 0;
  int64_t created_at = 0;
  std::string join_policy = "private";  // private | public
  std::string history = "all";          // all | from_join (schema/events.fbs HistoryRule)
};

// A user removed from a group and not yet unbanned.
struct BanView {
  uint64_t user_id = 0;
  uint64_t banned_by = 0;
  int64_t banned_at = 0;  // Unix ms of the removal
  bool operator==(const BanView&) const = default;
};

// The facts that decide whether, and from which seq, a user reads a conversation, as a read
// model keeps them. first_readable_seq() is the rule that turns them into an answer.
struct ReadAccess {
  bool allowed = false;         // a participant of a single, a current member of a group, a user (world)
  std::string history = "all";  // a group's history rule: all | from_join
  uint64_t joined_seq = 0;      // a group member's latest join (GroupCreated's seq for its first members)
  bool operator==(const ReadAccess&) const = default;
};

// The history rule, written once for every read of a conversation's rows (history, sync, search):
// the lowest seq `access` lets its user read, or 0 when they may read nothing. A member of a
// group whose rule is from_join reads from their latest join on; everyone else reads it all. The
// rule in force is the group's current one: changing it changes what members read from then on.
uint64_t first_readable_seq(const ReadAccess& access);

// A conversation's retention overrides (RetentionSet, schema 9) as a read model keeps them, in the
// engine's layout (StreamState::keep_a, keep_b): days, 0 for ever; none, no override (the
// deployment default stands in). History rows expire, so the models keep these apart from them.
struct RetentionOverrides {
  std::optional<uint32_t> a;  // a group's own; in a one-to-one, the lower user id's preference
  std::optional<uint32_t> b;  // in a one-to-one, the higher user id's preference
  bool operator==(const RetentionOverrides&) const = default;
};

// A conversation's retention policy as GET /conversations/{id}/retention answers it.
struct RetentionPolicy {
  uint32_t keep_days = 0;          // the policy in force: days, 0 for ever
  std::string source = "default";  // what sets keep_days: default | group | user
  uint32_t default_keep_days = 0;  // retention.default_keep_days
  RetentionOverrides overrides;
  bool operator==(const RetentionPolicy&) const = default;
};

// The policy in force over `overrides`, by the engine's own rule (effective_keep_days in
// imlog/engine/stream_state.h), and what sets it: `group`, the group's override; `user`, in a
// one-to-one, a user's own preference (the shorter of the two, or both alike); `default`
// otherwise (world, a group without an override, a one-to-one whose shorter side is a user who
// set nothing).
RetentionPolicy retention_policy(std::string_view conversation, const RetentionOverrides& overrides,
                                 uint32_t default_keep_days);

// Message search as a client asks for it (GET /search/messages, the WebSocket `search` frame).
struct SearchRequest {
  uint64_t user_id = 0;
  std::string text;          // the query: its words and CJK runs must all match (text_index.h)
  std::string conversation;  // "" : every conversation of the user
  uint64_t before_id = 0;    // 0: from the newest; else only messages with a smaller message id
  uint32_t limit = 20;       // clamped to [1, kMaxSearchPage]
};
inline constexpr uint32_t kMaxSearchPage = 50;

// What a read model's search finds: matching messages, highest message id (newest) first.
struct SearchPage {
  std::vector<MessageView> messages;
  uint64_t next_before_id = 0;  // 0: nothing more; else the next page's before_id
};

// Does `text` have anything to search for: a word of two or more characters, or two or more
// CJK characters together (text_index.h)? A query without is refused before it is run.
bool is_searchable(std::string_view text);

// One piece of a result's snippet: text as written, and whether the query matched it.
struct SnippetPart {
  std::string text;
  bool hit = false;
  bool operator==(const SnippetPart&) const = default;
};

struct SearchResult {
  MessageView message;
  std::vector<SnippetPart> snippet;  // the content around the first match, matches marked
};

struct SearchResults {
  std::vector<SearchResult> results;  // newest first
  uint64_t next_before_id = 0;        // 0: nothing more
};

struct MemberView {
  uint64_t user_id = 0;
  std::string role;  // owner, admin, member
  int64_t joined_at = 0;
};

struct FriendView {
  uint64_t user_id = 0;
  std::string status;      // friends, incoming, outgoing
  std::string note;        // the request's note
  std::string group_name;  // the friend group the user filed them under
  int64_t since = 0;
};

// One store's answers. Not found is an empty optional / empty list, not an error; errors are the
// store failing (retryable when it is unreachable).
class ReadModel {
 public:
  virtual ~ReadModel() = default;
  virtual Result<HistoryPage> history(std::string_view conversation, const HistoryRange& range) = 0;
  virtual Result<std::optional<MessageView>> message(uint64_t message_id) = 0;
  virtual Result<std::vector<ConversationView>> conversations(uint64_t user_id) = 0;
  virtual Result<std::optional<UserView>> user(uint64_t user_id) = 0;
  virtual Result<std::optional<Credentials>> credentials(std::string_view username) = 0;
  // Users whose username or nickname starts with `prefix` (case-insensitive), allow_search only,
  // ordered by user id, after `after_user_id`.
  virtual Result<std::vector<UserView>> search_users(std::string_view prefix, uint64_t after_user_id,
                                                     uint32_t limit) = 0;
  virtual Result<std::optional<GroupView>> group(uint64_t group_id) = 0;
  virtual Result<std::vector<MemberView>> members(uint64_t group_id, uint64_t after_user_id, uint32_t limit) = 0;
  // The users banned from a group, by user id after `after_user_id`.
  virtual Result<std::vector<BanView>> bans(uint64_t group_id, uint64_t after_user_id, uint32_t limit) = 0;
  // The facts of `user_id`'s access to `conversation` (ReadAccess; allowed is false for anything
  // that is not a conversation).
  virtual Result<ReadAccess> read_access(std::string_view conversation, uint64_t user_id) = 0;
  // The messages of the user's conversations (only `request.conversation` when given) that
  // match `request.text` (text_index.h), neither recalled nor system rows, below
  // `request.before_id`, newest first. Not limited by the history rule: ask
  // QueryService::search_messages.
  virtual Result<SearchPage> search_messages(const SearchRequest& request) = 0;
  virtual Result<std::vector<FriendView>> friends(uint64_t user_id) = 0;
  virtual Result<std::vector<uint64_t>> blocked(uint64_t user_id) = 0;
  virtual Result<std::vector<std::string>> friend_groups(uint64_t user_id) = 0;
  // The retention overrides of `conversation` (none of either for anything that has none).
  virtual Result<RetentionOverrides> retention(std::string_view conversation) = 0;
};

// Recent history only; nullopt when it cannot answer the whole range (then the ReadModel does).
class HotHistory {
 public:
  virtual ~HotHistory() = default;
  virtual Result<std::optional<HistoryPage>> history(std::string_view conversation, const HistoryRange& range) = 0;
};

// The range a request reads of the rows from `first_seq` on, its limit clamped to [1, 200].
HistoryRange history_range(const HistoryRequest& request, uint64_t first_seq = 1);

class QueryService {
 public:
  explicit QueryService(ReadModel& primary, HotHistory* hot = nullptr) : primary_(primary), hot_(hot) {}

  // The first seq of `conversation` that `user_id` may read (first_readable_seq); 0: none.
  Result<uint64_t> readable_from(std::string_view conversation, uint64_t user_id);
  // History as `request` asks (HistoryRequest), of the rows from `first_seq` on — readable_from's
  // answer for the reader; 0 reads nothing.
  Result<HistoryPage> history(std::string_view conversation, uint64_t first_seq, const HistoryRequest& request);
  // The model's search less what the history rule hides from the user, each result with its
  // snippet. A page holds at most `limit` results, possibly fewer with a next page still to come
  // (next_before_id): pages are read from the model until `limit` readable results are found or
  // kSearchRounds model pages were read.
  Result<SearchResults> search_messages(const SearchRequest& request);
  static constexpr int kSearchRounds = 8;
  // The retention policy of `conversation` (retention_policy()) under the deployment default.
  // Not authorised here: ask readable_from() first.
  Result<RetentionPolicy> retention(std::string_view conversation, uint32_t default_keep_days);
  ReadModel& model() { return primary_; }

 private:
  ReadModel& primary_;
  HotHistory* hot_;
};

}  // namespace imlog
