#pragma once
// What a conversation's history and read pointers are, derived from events — the one definition
// the MySQL and Redis models share (and that the RocksDB model follows; see the rules below), so
// that every store answers history and unread counts alike.
//
// History rows. Every event with seq > 0 on a conversation stream (single_<lo>_<hi>, group_<id>,
// world) is one row of its history, so history has no seq gaps:
//   - MessageAppended: message_id = event_id, sender = actor, content, type text|image|file|system;
//   - any other timeline event (membership, friendship, blocks, role changes, recalls): a row of
//     type "system", sender = actor, content = a JSON object
//       {"event":"<snake_case type>", <each payload field of events.fbs in declaration order>}
//     with user/group ids and seqs as numbers, message ids as decimal strings, enums as lowercase
//     names (group settings as codec.h names them), strings as strings, e.g.
//     {"event":"member_joined","user_id":7,"invited_by":0}. Fields a later schema version added
//     appear only when the event carries them (a set join_policy or history, a removal's
//     "ban":true), so the rows of older events read as they always did;
//   - MessageRecalled also empties the recalled message's content and marks it recalled;
//   - a message whose sender was erased (schema 10: their key destroyed, UserErased) has empty
//     content and is marked erased — written so when its text cannot be opened any more (a
//     replay after the erasure), and rewritten so by UserErased (a live model), so both agree;
//   - RetentionSet (schema 9) is a system row {"event":"retention_set","by":7,"keep_days":30}
//     ("keep_days" absent: back to the deployment default; 0: for ever).
// ReadMarked (seq 0) is not a row. MessagesExpired (seq 0, schema 9) is not a row either: it
// removes every row of its conversation with seq <= through_seq (expired_through()), its search
// tokens with it; later rows keep their seqs. Unread counts count only rows that remain.
//
// Read pointers. A user's read seq in a conversation only grows. It is raised by ReadMarked, by
// every timeline event the user is the actor of (their own messages included), and on joining
// to just before the join (GroupCreated's initial members: seq - 1; MemberJoined's user:
// seq - 1). Hence no own row is ever above the read seq and
//     unread = message rows (not system rows) with seq > read_seq = messages from others.
// Redis counts only within its window of the newest rows (redis_model.h); RocksDB stops at 999.
// The participants of a conversation (whose unread is kept) are: both users of a single stream
// (from its first event), a group's current members, and anyone who wrote to or read `world`.
//
// Pure functions; thread-safe.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"

namespace imlog::timeline {

// One history row. Views point into the event (valid while it lives).
struct Row {
  uint64_t message_id = 0;
  std::string_view conversation;
  uint64_t seq = 0;
  uint64_t sender = 0;
  std::string content;
  std::string type;  // text, image, file, system
  std::string_view client_msg_id;
  int64_t created_at = 0;
  bool erased = false;  // the sender was erased: content is empty
};

// The history row of an event of a conversation stream; false when it makes none (seq 0).
// `text`: a message's text (EventBatch::Item::text), its content; `erased`: its sender was erased
// (EventBatch::Item::erased), the row is marked so.
bool row_of(const fb::EventEnvelope& event, std::string_view text, bool erased, Row& out);

// The through_seq of a MessagesExpired (every row at or below it is gone); 0 for any other event.
uint64_t expired_through(const fb::EventEnvelope& event);

// "text", "image", "file", "system"; "type_<n>" for a value this build does not know.
std::string message_type_name(fb::MessageType type);

// The JSON content of a system row (see above).
std::string system_content(const fb::EventEnvelope& event);

// "MessageRecalled" → "message_recalled".
std::string snake_case(std::string_view type_name);

struct PointerMove {
  enum class Kind : uint8_t {
    raise,  // read seq := max(read seq, seq); makes the user a participant
    leave,  // the user is no longer a participant (left or removed from a group)
  };
  uint64_t user = 0;
  uint64_t seq = 0;
  Kind kind = Kind::raise;
};

// The pointer moves of one event of a conversation stream, in the order they apply.
void pointer_moves(const fb::EventEnvelope& event, const StreamRef& stream, std::vector<PointerMove>& out);

// Appends `s` as a JSON string literal (quotes included). Escapes ", \ and control characters;
// other bytes are copied (the log's strings are UTF-8).
void append_json_string(std::string& out, std::string_view s);

// The wire contract's message object (`Message` in docs/api/openapi.yaml) with content last and,
// only when recalled, "recalled":true after it, and only when erased, "erased":true last:
//   {"message_id":"<id>","conversation_id":"..","seq_id":N,"sender_id":N,"message_type":"..",
//    "client_msg_id":"..","created_at":N,"content":".."}
// A recalled or erased message's JSON is its prefix up to ,"content": followed by
// ,"content":"" and the flags — the Redis model rewrites stored members that way.
struct MessageFlags {
  bool recalled = false;
  bool erased = false;
};
std::string message_json(uint64_t message_id, std::string_view conversation, uint64_t seq, uint64_t sender,
                         std::string_view type, std::string_view client_msg_id, int64_t created_at,
                         std::string_view content, MessageFlags flags);
// The same, appended to `out`.
void append_message_json(std::string& out, uint64_t message_id, std::string_view conversation, uint64_t seq,
                         uint64_t sender, std::string_view type, std::string_view client_msg_id, int64_t created_at,
                         std::string_view content, MessageFlags flags);

}  // namespace imlog::timeline
