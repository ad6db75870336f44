// The RocksDB read model (rocksdb_model.h).
//
// Layout: one column family, text keys (numbers as 16 lowercase hex digits, so byte order is
// numeric order and dump() prints keys as they are):
//
//   m|<conv>|<seq>            a history row: sender, type, message id, time, client_msg_id,
//                             content (system rows: timeline::system_content's JSON); the type's
//                             high bit marks a message whose sender was erased (empty content)
//   mr|<conv>|<seq>           "" : that row was recalled (its content is not shown)
//   me|<conv>                 {through @through}: the conversation's rows up to `through` were
//                             expired (MessagesExpired, schema 9): their m| and mr| rows are
//                             deleted (one range delete each); later seqs are unchanged. Their
//                             t| postings stay and lead nowhere (search skips them): taking them
//                             out costs a walk of each token's blocks per conversation
//   rt|<conv>                 {keep_a, keep_b @seq of the RetentionSet}: the retention overrides
//                             (schema 9) in the engine's layout (StreamState::keep_a, keep_b):
//                             days in decimal, 0 for ever, "" none; a one-to-one's lower user in
//                             keep_a, its higher in keep_b, a group's own in keep_a. Not history:
//                             expiry leaves it
//   i|<id part>|<first id>    block: event id → (conv, seq) for the ids of one id partition
//                             written by one batch (merged: set union)
//   t|<token>|<max id>|<min id>   block: the (conv, seq) postings of one token written by one
//                             batch, keyed by the highest and lowest event id among them (merged:
//                             set union); the search index, see text_index.h
//   x|<user>|<conv>           {in: 1|0 @seq of the join/leave}: the user's conversations
//   r|<user>|<conv>           {read: "" @read seq}: the highest ReadMarked
//   u|<user>                  {username, password_hash, created_at @0; nickname, email @0 from the
//                             registration, then @seq of the user stream; avatar_url, signature,
//                             allow_search, message_policy, push_enabled, quiet_*, mute:<conv>,
//                             time_zone, device:<id> (a push device; "" once removed, by
//                             DeviceRemoved or a logout's RefreshTokenRevoked)}
//   n|<username>              user id (decimal)
//   su|<lower username>|<user>, sk|<lower nickname>|<user>    "" : user search by prefix
//   g|<group>                 {name, description, owner, created_at, join_policy, history}; the
//                             settings only from events that carry them (absent: private, all)
//   gm|<group>|<user>         {in, role, joined_at}; `in`=1's version is the seq of the latest join
//   gb|<group>|<user>         {banned: 1|0, by, at}: from removals that ban, and unbans
//   f|<user>|<other>          {status: outgoing|incoming|friends|"", note, since}
//   b|<user>|<other>          {blocked: 1|0}
//   fg|<user>|<friend>        {group: friend group name}
//   p|<partition>             next offset, token (16 bytes); not part of dump()
//   v|search                  the search index's layout version; not part of dump()
//   v|retention               present once the rt| rows are kept; not part of dump()
//
// A conversation's last seq, time and last message are its last m| row; unread counts are
// computed when asked (no counters anywhere).
//
// Idempotence and determinism. A value in {braces} is a field map written with Merge: every
// field carries a version (the seq of the event that set it, in that event's stream) and the
// merge operator keeps, per field, the highest. Blocks merge by set union. Both merges are
// commutative, associative and idempotent, so applying any event twice — or the events of
// different partitions in any interleaving, as a live projector and a replay do — yields the
// same rows. Every other row is written once with a value that is a function of its event alone.
// dump() lists block rows as the logical rows they hold (t|<token>|<conv>|<seq>,
// i|<id part>|<id>), which do not depend on how events were batched.
//
// Cost per message: one m| Put, a share of the batch's t| and i| blocks (one per distinct token
// and one per id partition per batch), nothing per member of the conversation.
//
// Threading: apply() is serialised by a mutex (the projector calls it from one thread); queries
// run on any thread against the DB, which is thread-safe.

#include "imlog/projections/rocksdb_model.h"

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <functional>
#include <deque>
#include <map>
#include <charconv>
#include <cstring>
#include <mutex>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <rapidjson/document.h>
#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/engine/message_ids.h"
#include "imlog/engine/streams.h"
#include "text_index.h"
#include "timeline.h"

namespace imlog {
namespace {

// ---- errors -----------------------------------------------------------------------------------

enum class ModelErrc { io_error = 1, corrupt_row };

class ModelCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "rocksdb model"; }
  std::string message(int c) const override {
    switch (static_cast<ModelErrc>(c)) {
      case ModelErrc::io_error: return "the model's database failed";
      case ModelErrc::corrupt_row: return "a row of the model does not decode";
    }
    return "unknown";
  }
};

const std::error_category& model_category() {
  static ModelCategory c;
  return c;
}

tl::unexpected<Error> model_fail(ModelErrc e, std::string message, bool retryable = false) {
  return tl::unexpected<Error>(Error(std::error_code(static_cast<int>(e), model_category()), std::move(message), retryable));
}

// ---- primitives -------------------------------------------------------------------------------

constexpr char kHexDigits[] = "0123456789abcdef";

void put_hex(std::string& out, uint64_t v) {
  char buf[16];
  for (int i = 15; i >= 0; --i) {
    buf[i] = kHexDigits[v & 0xf];
    v >>= 4;
  }
  out.append(buf, 16);
}

bool parse_hex(std::string_view s, uint64_t& v) {
  if (s.size() != 16) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + 16, v, 16);
  return ec == std::errc() && p == s.data() + 16;
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool get_varint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift <= 63 && !in.empty(); shift += 7) {
    auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

bool get_bytes(std::string_view& in, std::string_view& out) {
  uint64_t n = 0;
  if (!get_varint(in, n) || n > in.size()) return false;
  out = in.substr(0, n);
  in.remove_prefix(n);
  return true;
}

void put_bytes(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

std::string decimal(uint64_t v) { return std::to_string(v); }

uint64_t to_u64(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

int64_t to_i64(std::string_view s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string_view as_sv(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

// ---- field maps: last writer (highest version) wins, per field ----------------------------------
//
//   entry* ; entry = bytes(name) varint(version) bytes(value); entries sorted by name, one per name.

struct Field {
  std::string_view name;
  uint64_t version = 0;
  std::string_view value;
};

bool parse_fields(std::string_view in, std::vector<Field>& out) {
  while (!in.empty()) {
    Field f;
    if (!get_bytes(in, f.name) || !get_varint(in, f.version) || !get_bytes(in, f.value)) return false;
    out.push_back(f);
  }
  return true;
}

// Sorts, keeps the winner of each name (highest version; equal versions: the greater value, so the
// outcome never depends on order), and encodes.
void encode_fields(std::vector<Field>& fields, std::string& out) {
  std::sort(fields.begin(), fields.end(), [](const Field& a, const Field& b) {
    if (a.name != b.name) return a.name < b.name;
    if (a.version != b.version) return a.version > b.version;
    return a.value > b.value;
  });
  std::string_view last;
  bool first = true;
  for (const Field& f : fields) {
    if (!first && f.name == last) continue;
    first = false;
    last = f.name;
    put_bytes(out, f.name);
    put_varint(out, f.version);
    put_bytes(out, f.value);
  }
}

// ---- posting sets: the value of a t| block ------------------------------------------------------
//
//   run* ; run = bytes(conv) varint(n) varint(seq_1) varint(seq_2 - seq_1) ... ; runs by conv, seqs
//   ascending, no duplicates. Merging is set union, so it too is commutative and idempotent.

struct Posting {
  std::string_view conv;
  uint64_t seq = 0;
  bool operator==(const Posting&) const = default;
};

// Orders postings as their rows t|<token>|<conv>|<seq> order: by "<conv>|", then by seq.
bool posting_less(const Posting& a, const Posting& b) {
  size_t n = std::min(a.conv.size(), b.conv.size());
  int c = std::memcmp(a.conv.data(), b.conv.data(), n);
  if (c != 0) return c < 0;
  if (a.conv.size() != b.conv.size()) {
    // One conv is a prefix of the other: the shorter continues with '|', the longer with a byte
    // that is never '|' (conversation ids hold no '|').
    char next_a = a.conv.size() > n ? a.conv[n] : '|';
    char next_b = b.conv.size() > n ? b.conv[n] : '|';
    return static_cast<unsigned char>(next_a) < static_cast<unsigned char>(next_b);
  }
  return a.seq < b.seq;
}

bool parse_postings(std::string_view in, std::vector<Posting>& out) {
  while (!in.empty()) {
    std::string_view conv;
    uint64_t n = 0, seq = 0;
    if (!get_bytes(in, conv) || !get_varint(in, n) || n > in.size()) return false;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t d = 0;
      if (!get_varint(in, d)) return false;
      seq += d;
      out.push_back(Posting{conv, seq});
    }
  }
  return true;
}

// Sorts, removes duplicates and encodes.
void encode_postings(std::vector<Posting>& postings, std::string& out) {
  std::sort(postings.begin(), postings.end(), posting_less);
  postings.erase(std::unique(postings.begin(), postings.end()), postings.end());
  for (size_t i = 0; i < postings.size();) {
    size_t j = i;
    while (j < postings.size() && postings[j].conv == postings[i].conv) ++j;
    put_bytes(out, postings[i].conv);
    put_varint(out, j - i);
    uint64_t prev = 0;
    for (size_t k = i; k < j; ++k) {
      put_varint(out, postings[k].seq - prev);
      prev = postings[k].seq;
    }
    i = j;
  }
}

// Encodes postings in the order given, as one merge operand: consecutive postings of a conv with
// rising seqs share a run. Not canonical — the merge operator sorts when it merges, and every
// read of a merged row goes through it — but it costs no sort on the write path.
void encode_postings_unsorted(const std::vector<Posting>& postings, std::string& out) {
  for (size_t i = 0; i < postings.size();) {
    size_t j = i + 1;
    while (j < postings.size() && postings[j].conv == postings[i].conv && postings[j].seq > postings[j - 1].seq) ++j;
    put_bytes(out, postings[i].conv);
    put_varint(out, j - i);
    uint64_t prev = 0;
    for (size_t k = i; k < j; ++k) {
      put_varint(out, postings[k].seq - prev);
      prev = postings[k].seq;
    }
    i = j;
  }
}

bool is_token_key(std::string_view key) { return key.starts_with("t|"); }

// ---- id sets: the value of an i| block ----------------------------------------------------------
//
//   entry* ; entry = varint(id - previous id) varint(seq) bytes(conv) ; ids ascending, unique.
// Merging is set union by id (an id has one location).

struct IdEntry {
  uint64_t id = 0;
  uint64_t seq = 0;
  std::string_view conv;
};

bool parse_ids(std::string_view in, std::vector<IdEntry>& out) {
  uint64_t id = 0;
  while (!in.empty()) {
    IdEntry e;
    uint64_t d = 0;
    if (!get_varint(in, d) || !get_varint(in, e.seq) || !get_bytes(in, e.conv)) return false;
    id += d;
    e.id = id;
    out.push_back(e);
  }
  return true;
}

void encode_ids(std::vector<IdEntry>& entries, std::string& out) {
  std::sort(entries.begin(), entries.end(), [](const IdEntry& a, const IdEntry& b) { return a.id < b.id; });
  entries.erase(std::unique(entries.begin(), entries.end(), [](const IdEntry& a, const IdEntry& b) { return a.id == b.id; }),
                entries.end());
  uint64_t prev = 0;
  for (const IdEntry& e : entries) {
    put_varint(out, e.id - prev);
    prev = e.id;
    put_varint(out, e.seq);
    put_bytes(out, e.conv);
  }
}

bool is_id_key(std::string_view key) { return key.starts_with("i|"); }

// The partition bits of an event id (message_ids.h): the events of one partition of im.events
// have strictly increasing ids, so a batch's ids of one partition are a contiguous range.
uint32_t id_partition(uint64_t id) {
  return static_cast<uint32_t>((id >> MessageIdGenerator::kCounterBits) &
                               ((1u << MessageIdGenerator::kPartitionBits) - 1));
}

// The merge operator of every merged row: posting sets for t| blocks, field maps for the rest.
class ModelMerge final : public rocksdb::MergeOperator {
 public:
  bool FullMergeV2(const MergeOperationInput& in, MergeOperationOutput* out) const override {
    out->new_value.clear();
    if (is_id_key(as_sv(in.key))) {
      std::vector<IdEntry> ids;
      if (in.existing_value != nullptr && !parse_ids(as_sv(*in.existing_value), ids)) return false;
      for (const auto& op : in.operand_list) {
        if (!parse_ids(as_sv(op), ids)) return false;
      }
      encode_ids(ids, out->new_value);
      return true;
    }
    if (is_token_key(as_sv(in.key))) {
      std::vector<Posting> postings;
      if (in.existing_value != nullptr && !parse_postings(as_sv(*in.existing_value), postings)) return false;
      for (const auto& op : in.operand_list) {
        if (!parse_postings(as_sv(op), postings)) return false;
      }
      encode_postings(postings, out->new_value);
      return true;
    }
    std::vector<Field> fields;
    if (in.existing_value != nullptr && !parse_fields(as_sv(*in.existing_value), fields)) return false;
    for (const auto& op : in.operand_list) {
      if (!parse_fields(as_sv(op), fields)) return false;
    }
    encode_fields(fields, out->new_value);
    return true;
  }
  bool PartialMergeMulti(const rocksdb::Slice& key, const std::deque<rocksdb::Slice>& operands, std::string* out,
                         rocksdb::Logger*) const override {
    if (is_id_key(as_sv(key))) {
      std::vector<IdEntry> ids;
      for (const auto& op : operands) {
        if (!parse_ids(as_sv(op), ids)) return false;
      }
      encode_ids(ids, *out);
      return true;
    }
    if (is_token_key(as_sv(key))) {
      std::vector<Posting> postings;
      for (const auto& op : operands) {
        if (!parse_postings(as_sv(op), postings)) return false;
      }
      encode_postings(postings, *out);
      return true;
    }
    std::vector<Field> fields;
    for (const auto& op : operands) {
      if (!parse_fields(as_sv(op), fields)) return false;
    }
    encode_fields(fields, *out);
    return true;
  }
  const char* Name() const override { return "imlog.ModelMerge"; }
};

// Builds one merge operand; owns the bytes of its values.
class FieldWriter {
 public:
  FieldWriter& set(std::string_view name, uint64_t version, std::string value) {
    values_.push_back(std::move(value));
    names_.emplace_back(name);
    versions_.push_back(version);
    return *this;
  }
  void encode(std::string& out) {
    std::vector<Field> f;
    for (size_t i = 0; i < names_.size(); ++i) f.push_back({names_[i], versions_[i], values_[i]});
    out.clear();
    encode_fields(f, out);
  }

 private:
  std::vector<std::string> names_;
  std::vector<uint64_t> versions_;
  std::vector<std::string> values_;
};

const Field* find_field(const std::vector<Field>& fields, std::string_view name) {
  for (const auto& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string_view field_value(const std::vector<Field>& fields, std::string_view name) {
  const Field* f = find_field(fields, name);
  return f ? f->value : std::string_view();
}

// ---- history rows -----------------------------------------------------------------------------
//
// The value of an m| row: varint sender, byte type, varint event id, varint created_at,
// bytes(client_msg_id), then the content to the end — a function of its event alone, written
// with Put. A recall is its own row (mr|<conv>|<seq>), so re-applying the message cannot undo it.

// The high bit of a row's type byte: its sender was erased (schema 10), its content is empty.
constexpr uint8_t kErasedRow = 0x80;

struct StoredRow {
  uint64_t sender = 0;
  uint8_t type = 0;
  bool erased = false;  // the sender was erased: no content
  uint64_t event_id = 0;
  int64_t created_at = 0;
  std::string_view client_msg_id;
  std::string_view content;
  bool recalled = false;  // from the mr| row, filled by the reader
};

bool is_system(const StoredRow& row) { return row.type == static_cast<uint8_t>(fb::MessageType::System); }

void encode_row(std::string& out, uint64_t sender, uint8_t type, uint64_t event_id, int64_t created_at,
                std::string_view client_msg_id, std::string_view content) {
  out.clear();
  put_varint(out, sender);
  out.push_back(static_cast<char>(type));
  put_varint(out, event_id);
  put_varint(out, static_cast<uint64_t>(created_at));
  put_bytes(out, client_msg_id);
  out.append(content);
}

bool decode_row(std::string_view in, StoredRow& row) {
  uint64_t created = 0;
  if (!get_varint(in, row.sender) || in.empty()) return false;
  row.type = static_cast<uint8_t>(in.front()) & ~kErasedRow;
  row.erased = (static_cast<uint8_t>(in.front()) & kErasedRow) != 0;
  in.remove_prefix(1);
  if (!get_varint(in, row.event_id) || !get_varint(in, created) || !get_bytes(in, row.client_msg_id)) return false;
  row.created_at = static_cast<int64_t>(created);
  row.content = in;
  row.recalled = false;
  return true;
}

MessageView view_of(std::string_view conversation, uint64_t seq, const StoredRow& row) {
  MessageView v;
  v.message_id = row.event_id;
  v.conversation_id = conversation;
  v.seq_id = seq;
  v.sender_id = row.sender;
  v.recalled = row.recalled;
  v.erased = row.erased;
  if (!row.recalled) v.content = row.content;
  v.message_type = timeline::message_type_name(static_cast<fb::MessageType>(row.type));
  v.client_msg_id = row.client_msg_id;
  v.created_at = row.created_at;
  return v;
}

// ---- keys -------------------------------------------------------------------------------------

void key_row(std::string& k, std::string_view conv, uint64_t seq) {
  k.assign("m|");
  k.append(conv);
  k.push_back('|');
  put_hex(k, seq);
}
// A block of the id index: the ids of one id-partition written by one batch, keyed by the smallest.
void key_id_block(std::string& k, uint32_t partition, uint64_t first_id) {
  k.assign("i|");
  put_hex(k, partition);
  k.push_back('|');
  put_hex(k, first_id);
}
void key_recall(std::string& k, std::string_view conv, uint64_t seq) {
  k.assign("mr|");
  k.append(conv);
  k.push_back('|');
  put_hex(k, seq);
}
void key_user_conv(std::string& k, char kind, uint64_t user, std::string_view conv) {
  k.clear();
  k.push_back(kind);
  k.push_back('|');
  put_hex(k, user);
  k.push_back('|');
  k.append(conv);
}
// A block of the search index: the postings of one token written by one batch, keyed by the
// highest and the lowest event id among them. Blocks sort by their highest id, so a search reading
// them backwards knows that every block it has not read holds only ids up to the next key's
// highest (search_messages stops exactly there), and skips a block whose lowest id is past its
// cursor without decoding it.
constexpr size_t kTokenBlockSuffix = 1 + 16 + 1 + 16;  // "|<max id>|<min id>"

// The layout of the search index, in its own row (not part of dump()). Version 1 (no row: every
// build before it) keyed blocks by their first id and indexed single CJK characters and unfolded
// words; opening such a model re-indexes its messages (upgrade_search_index()).
constexpr std::string_view kSearchVersionKey = "v|search";
constexpr std::string_view kSearchIndexVersion = "2";
// Present once the model keeps the retention overrides (rt| rows); not part of dump().
constexpr std::string_view kRetentionVersionKey = "v|retention";
void key_token_block(std::string& k, std::string_view token, uint64_t max_id, uint64_t min_id) {
  k.assign("t|");
  k.append(token);
  k.push_back('|');
  put_hex(k, max_id);
  k.push_back('|');
  put_hex(k, min_id);
}
// The (highest, lowest) event id of a t| block's key; false for a key of another shape.
bool token_block_ids(std::string_view key, size_t prefix_size, uint64_t& max_id, uint64_t& min_id) {
  return key.size() == prefix_size + kTokenBlockSuffix - 1 && key[prefix_size + 16] == '|' &&
         parse_hex(key.substr(prefix_size, 16), max_id) && parse_hex(key.substr(prefix_size + 17, 16), min_id);
}
void key_id1(std::string& k, std::string_view prefix, uint64_t a) {
  k.assign(prefix);
  put_hex(k, a);
}
void key_id2(std::string& k, std::string_view prefix, uint64_t a, uint64_t b) {
  k.assign(prefix);
  put_hex(k, a);
  k.push_back('|');
  put_hex(k, b);
}
void key_text_id(std::string& k, std::string_view prefix, std::string_view text, uint64_t id) {
  k.assign(prefix);
  k.append(text);
  k.push_back('|');
  put_hex(k, id);
}

// The end of a prefix scan: the prefix with its last byte incremented ('|' → '}').
std::string prefix_end(std::string_view prefix) {
  std::string e(prefix);
  while (!e.empty() && static_cast<unsigned char>(e.back()) == 0xff) e.pop_back();
  if (!e.empty()) e.back() = static_cast<char>(static_cast<unsigned char>(e.back()) + 1);
  return e;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// A push device is the field device:<decimal id> of u|<user>: "<platform>\t<token>\t<app_id>\t<ms>"
// (none of them holds a tab: decide() checks their characters); "" once removed.
std::string device_field(uint64_t device_id) { return "device:" + std::to_string(device_id); }

std::string encode_device(std::string_view platform, std::string_view token, std::string_view app_id, int64_t at) {
  std::string out;
  out.append(platform).append("\t").append(token).append("\t").append(app_id).append("\t").append(std::to_string(at));
  return out;
}

DeviceView decode_device(std::string_view id, std::string_view value) {
  DeviceView d;
  d.device_id = to_u64(id);
  std::string* parts[] = {&d.platform, &d.token, &d.app_id};
  for (auto* part : parts) {
    auto tab = value.find('\t');
    *part = value.substr(0, tab);
    value = tab == std::string_view::npos ? std::string_view() : value.substr(tab + 1);
  }
  d.created_at = to_i64(value);
  return d;
}

std::string_view role_name(fb::Role r) {
  switch (r) {
    case fb::Role::Owner: return "owner";
    case fb::Role::Admin: return "admin";
    default: return "member";
  }
}

std::string_view kind_name(StreamKind k) {
  switch (k) {
    case StreamKind::single: return "single";
    case StreamKind::group: return "group";
    case StreamKind::world: return "world";
    case StreamKind::user: return "user";
    case StreamKind::names: return "names";
  }
  return "unknown";
}

// ---- rendering for dump() ---------------------------------------------------------------------

void append_escaped(std::string& out, std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHexDigits[c >> 4];
      out += kHexDigits[c & 0xf];
    } else {
      out += ch;
    }
  }
}

std::string render_raw(std::string_view v) {
  std::string out = "raw:";
  for (unsigned char c : v) {
    out += kHexDigits[c >> 4];
    out += kHexDigits[c & 0xf];
  }
  return out;
}

std::string render_fields(std::string_view v) {
  std::vector<Field> fields;
  if (!parse_fields(v, fields)) return render_raw(v);
  std::string out = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ", ";
    append_escaped(out, fields[i].name);
    out += '=';
    append_escaped(out, fields[i].value);
    out += '@';
    out += std::to_string(fields[i].version);
  }
  out += '}';
  return out;
}

std::string render_row(std::string_view v) {
  StoredRow row;
  if (!decode_row(v, row)) return render_raw(v);
  std::string out = "{sender=" + std::to_string(row.sender) + ", type=" +
                    timeline::message_type_name(static_cast<fb::MessageType>(row.type)) +
                    ", id=" + std::to_string(row.event_id) + ", created_at=" + std::to_string(row.created_at) +
                    ", client_msg_id=";
  append_escaped(out, row.client_msg_id);
  out += ", content=";
  append_escaped(out, row.content);
  out += '}';
  return out;
}

std::string render(std::string_view key, std::string_view value) {
  auto prefix = key.substr(0, key.find('|'));
  if (prefix == "m") return render_row(value);
  if (prefix == "mr") return "recalled";
  if (prefix == "t" || prefix == "su" || prefix == "sk" || prefix == "n") {
    std::string out;
    append_escaped(out, value);
    return out;
  }
  return render_fields(value);
}

// ---- positions --------------------------------------------------------------------------------

void put_be64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t get_be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// ---- the distinct tokens of a batch --------------------------------------------------------------

// Token → dense index for one batch: open addressing over a power-of-two table; token bytes are
// copied into chunks that never move, so the views handed out stay valid until clear().
class TokenTable {
 public:
  // The token's index, and whether it is new in this batch.
  std::pair<uint32_t, bool> intern(std::string_view t) {
    if ((tokens_.size() + 1) * 2 > slots_.size()) grow();
    const size_t h = std::hash<std::string_view>{}(t);
    const size_t mask = slots_.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      uint32_t s = slots_[i];
      if (s == kEmpty) {
        auto idx = static_cast<uint32_t>(tokens_.size());
        slots_[i] = idx;
        tokens_.push_back(copy(t));
        hashes_.push_back(h);
        return {idx, true};
      }
      if (hashes_[s] == h && tokens_[s] == t) return {s, false};
    }
  }
  [[nodiscard]] std::string_view token(uint32_t i) const { return tokens_[i]; }
  [[nodiscard]] size_t size() const { return tokens_.size(); }
  void clear() {
    std::fill(slots_.begin(), slots_.end(), kEmpty);
    tokens_.clear();
    hashes_.clear();
    chunk_used_ = 0;
    chunk_ = 0;
  }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  static constexpr size_t kChunk = 64 * 1024;

  void grow() {
    std::vector<uint32_t> bigger(std::max<size_t>(1024, slots_.size() * 2), kEmpty);
    const size_t mask = bigger.size() - 1;
    for (uint32_t idx = 0; idx < tokens_.size(); ++idx) {
      size_t i = hashes_[idx] & mask;
      while (bigger[i] != kEmpty) i = (i + 1) & mask;
      bigger[i] = idx;
    }
    slots_ = std::move(bigger);
  }

  std::string_view copy(std::string_view t) {
    if (chunks_.empty() || chunk_used_ + t.size() > kChunk) {
      if (!chunks_.empty()) ++chunk_;
      if (chunk_ == chunks_.size()) chunks_.push_back(std::make_unique<char[]>(std::max(kChunk, t.size())));
      chunk_used_ = 0;
    }
    char* at = chunks_[chunk_].get() + chunk_used_;
    std::memcpy(at, t.data(), t.size());
    chunk_used_ += t.size();
    return {at, t.size()};
  }

  std::vector<uint32_t> slots_;
  std::vector<std::string_view> tokens_;
  std::vector<size_t> hashes_;
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t chunk_ = 0, chunk_used_ = 0;
};

// ---- the model --------------------------------------------------------------------------------

constexpr uint32_t kUnreadCap = 999;

// An erasure's conversations with expired rows, each with its expiry's through_seq; found by a
// posting's conversation as it is (no string made per posting in a walk of the whole index).
using ExpiredThrough = std::map<std::string, uint64_t, std::less<>>;

class RocksDbModelImpl final : public RocksDbModel {
 public:
  RocksDbModelImpl(std::unique_ptr<rocksdb::DB> db, RocksDbModelConfig config)
      : db_(std::move(db)), config_(std::move(config)) {
    write_options_.disableWAL = config_.disable_wal;
  }
  // Flushed on close, WAL or not: unflushed writes are lost without a WAL, and with one the next
  // open would replay it.
  ~RocksDbModelImpl() override {
    (void)flush();
    if (auto s = db_->Close(); !s.ok()) {
      logger("projections")->warn("closing the model at {}: {}", config_.dir, s.ToString());
    }
  }

  std::string_view name() const override { return "rocksdb"; }
  Result<std::vector<PartitionPosition>> positions() override;
  Status apply(const EventBatch& batch) override;
  Status dump(const RowVisitor& visit) override;
  Status flush() override;

  Result<HistoryPage> history(std::string_view conversation, const HistoryRange& range) override;
  Result<std::optional<MessageView>> message(uint64_t message_id) override;
  Result<std::vector<ConversationView>> conversations(uint64_t user_id) override;
  Result<std::optional<UserView>> user(uint64_t user_id) override;
  Result<std::optional<Credentials>> credentials(std::string_view username) override;
  Result<std::vector<UserView>> search_users(std::string_view prefix, uint64_t after_user_id,
                                             uint32_t limit) override;
  Result<std::optional<GroupView>> group(uint64_t group_id) override;
  Result<std::vector<MemberView>> members(uint64_t group_id, uint64_t after_user_id, uint32_t limit) override;
  Result<std::vector<BanView>> bans(uint64_t group_id, uint64_t after_user_id, uint32_t limit) override;
  Result<ReadAccess> read_access(std::string_view conversation, uint64_t user_id) override;
  Result<SearchPage> search_messages(const SearchRequest& request) override;
  Result<std::vector<FriendView>> friends(uint64_t user_id) override;
  Result<std::vector<uint64_t>> blocked(uint64_t user_id) override;
  Result<std::vector<std::string>> friend_groups(uint64_t user_id) override;
  Result<RetentionOverrides> retention(std::string_view conversation) override;

 private:
  // Visits the rows `<prefix><user_id>|<other>` in key order, each with the other user's id and
  // the row's fields; `what` names the read in an error.
  using UserRowVisitor = std::function<void(uint64_t other, const std::vector<Field>& fields)>;
  Status scan_user_rows(std::string_view prefix, uint64_t user_id, std::string_view what,
                        const UserRowVisitor& visit);

  // ---- apply ----
  // An event of the batch (its text and erased flag: EventBatch::Item). An erased owner's
  // registration or profile update writes nothing (projection.h).
  void apply_event(const EventBatch::Item& item);
  // Writes what wb_ holds (and clears it); `what` names the write in an error.
  Status write_batch(std::string_view what);
  // Writes what the batch has pending (its rows and blocks so far; not the positions).
  Status write_pending();
  // UserErased: see the definition.
  Status erase_user(uint64_t user);
  Status erase_profile(uint64_t user, std::vector<std::pair<std::string, std::string>>& compact);
  Status erase_messages(uint64_t user, std::vector<std::pair<std::string, std::string>>& compact,
                        ExpiredThrough& expired);
  Status remove_expired_postings(const ExpiredThrough& expired,
                                 std::vector<std::pair<std::string, std::string>>& compact);
  template <class Pred>
  bool drop_postings(const rocksdb::Slice& key, std::vector<Posting>& kept, Pred gone);
  Status remove_postings(const std::map<std::string, std::set<std::pair<std::string, uint64_t>>>& postings,
                         uint64_t min_id, std::vector<std::pair<std::string, std::string>>& compact);
  void apply_names(const fb::EventEnvelope& e);
  void apply_user(const fb::EventEnvelope& e);
  void apply_conversation(const StreamRef& ref, std::string_view conv, const fb::EventEnvelope& e, std::string_view text,
                          bool erased);
  void apply_single(const StreamRef& ref, const fb::EventEnvelope& e);
  void apply_group(const StreamRef& ref, std::string_view conv, const fb::EventEnvelope& e);
  void set_retention(const StreamRef& ref, std::string_view conv, uint64_t by, std::optional<uint32_t> keep_days,
                     uint64_t seq);
  void merge(const std::string& key, FieldWriter& w);
  void put(const std::string& key, std::string_view value);
  void set_membership(uint64_t group, std::string_view conv, uint64_t user, uint64_t version, bool in,
                      std::string_view role, int64_t ts);
  void participate(uint64_t user, std::string_view conv, uint64_t version);
  void index_tokens(std::string_view conv, uint64_t seq, uint64_t event_id, std::string_view content);
  void write_token_blocks();
  void write_id_blocks();

 public:
  // Re-indexes every message when the model's search index is not kSearchIndexVersion (an older
  // build wrote it, or the model is new). Called once by open_rocksdb_model().
  Status upgrade_search_index();
  // Fills in the rt| rows of a model an older build projected (no v|retention row) from the
  // retention_set rows it still has. Called once by open_rocksdb_model().
  Status upgrade_retention();

 private:

  // ---- reads ----
  Result<std::optional<std::string>> get(const std::string& key);
  Status status_error(const rocksdb::Status& s, std::string_view what) const;
  std::unique_ptr<rocksdb::Iterator> iterator(const std::string& lower, const std::string& upper,
                                              rocksdb::Slice& lo, rocksdb::Slice& hi) const;
  Result<std::optional<std::vector<Field>>> get_fields(const std::string& key, std::string& storage);
  Result<std::vector<std::pair<std::string, uint64_t>>> memberships(uint64_t user_id);
  Result<std::optional<MessageView>> row_at(std::string_view conv, uint64_t seq);
  Status mark_recalled(std::string_view conv, std::vector<MessageView>& messages);
  void expire(std::string_view conv, uint64_t through);

  std::unique_ptr<rocksdb::DB> db_;
  RocksDbModelConfig config_;
  rocksdb::WriteOptions write_options_;

  // apply() state, reused across batches (guarded by apply_mu_).
  std::mutex apply_mu_;
  rocksdb::WriteBatch wb_;
  std::string key_, value_;
  TokenList tokens_;
  std::unordered_set<std::string> participants_;  // "<user hex>|<conv>" of this batch (world)
  std::string tail_;
  // The batch's search postings, written as one block per token at the end of the batch.
  TokenTable batch_tokens_;
  std::vector<std::vector<Posting>> postings_;   // index → its postings in this batch
  std::vector<std::pair<uint64_t, uint64_t>> id_ranges_;  // index → its (highest, lowest) event id in the batch
  std::unordered_map<uint32_t, std::vector<IdEntry>> ids_;  // id partition → this batch's rows
};

// ---- apply ------------------------------------------------------------------------------------

void RocksDbModelImpl::merge(const std::string& key, FieldWriter& w) {
  w.encode(value_);
  wb_.Merge(key, value_);
}

void RocksDbModelImpl::put(const std::string& key, std::string_view value) {
  wb_.Put(key, rocksdb::Slice(value.data(), value.size()));
}

Status RocksDbModelImpl::apply(const EventBatch& batch) {
  std::lock_guard lk(apply_mu_);
  wb_.Clear();
  participants_.clear();
  batch_tokens_.clear();
  for (auto& [p, v] : ids_) v.clear();
  for (const auto& item : batch.events) {
    const auto* gone = item.event->event_as_UserErased();
    if (gone == nullptr) {
      apply_event(item);
      continue;
    }
    // What came before is written first, then the erasure reads and rewrites it; a crash before
    // the positions are written re-applies the batch, which every step allows.
    IMLOG_TRY(write_pending());
    IMLOG_TRY(erase_user(gone->user_id()));
  }
  for (const auto& p : batch.positions) {
    key_id1(key_, "p|", static_cast<uint32_t>(p.partition));
    value_.clear();
    put_be64(value_, static_cast<uint64_t>(p.next_offset));
    put_be64(value_, p.token);
    put_be64(value_, p.link);
    put(key_, value_);
  }
  return write_pending();
}

void RocksDbModelImpl::index_tokens(std::string_view conv, uint64_t seq, uint64_t event_id, std::string_view content) {
  tokenize(content, tokens_, kMaxTokensPerMessage);
  for (std::string_view t : tokens_.tokens) {
    auto [id, fresh] = batch_tokens_.intern(t);
    if (fresh) {
      if (postings_.size() <= id) postings_.emplace_back();
      postings_[id].clear();
      if (id_ranges_.size() <= id) id_ranges_.resize(id + 1);
      id_ranges_[id] = {event_id, event_id};
    }
    auto& [max_id, min_id] = id_ranges_[id];
    max_id = std::max(max_id, event_id);
    min_id = std::min(min_id, event_id);
    postings_[id].push_back(Posting{conv, seq});
  }
}

Status RocksDbModelImpl::upgrade_search_index() {
  constexpr size_t kRowsPerWrite = 4096;
  std::lock_guard lk(apply_mu_);
  auto version = get(std::string(kSearchVersionKey));
  IMLOG_TRY(version);
  if (*version && **version == kSearchIndexVersion) return {};
  auto s = db_->DeleteRange(write_options_, db_->DefaultColumnFamily(), "t|", "t}");
  if (!s.ok()) return status_error(s, "removing the search index of an older build");
  std::string lower = "m|", upper = prefix_end(lower);  // mr| rows sort before m|: not in range
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  std::deque<std::string> convs;  // the chunk's postings point into these
  size_t indexed = 0;
  auto write_chunk = [&]() -> Status {
    write_token_blocks();
    batch_tokens_.clear();
    convs.clear();
    return write_batch("re-indexing messages for search");
  };
  wb_.Clear();
  batch_tokens_.clear();
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto key = as_sv(it->key());
    StoredRow row;
    uint64_t seq = 0;
    if (key.size() < 2 + 17 || !parse_hex(key.substr(key.size() - 16), seq) || !decode_row(as_sv(it->value()), row) ||
        is_system(row)) {
      continue;
    }
    convs.emplace_back(key.substr(2, key.size() - 2 - 17));
    index_tokens(convs.back(), seq, row.event_id, row.content);
    if (++indexed % kRowsPerWrite == 0) IMLOG_TRY(write_chunk());
  }
  if (!it->status().ok()) return status_error(it->status(), "re-indexing messages for search");
  IMLOG_TRY(write_chunk());
  s = db_->Put(write_options_, std::string(kSearchVersionKey), std::string(kSearchIndexVersion));
  if (!s.ok()) return status_error(s, "recording the search index version");
  if (indexed > 0) {
    logger("projections")->info("re-indexed {} messages of the model at {} for search (index version {})", indexed,
                                config_.dir, kSearchIndexVersion);
  }
  return {};
}

// A retention_set system row's content ({"event":"retention_set","by":7,"keep_days":30},
// timeline.h): false for any other row.
bool parse_retention_row(std::string_view content, uint64_t& by, std::optional<uint32_t>& keep_days) {
  if (!content.starts_with(R"({"event":"retention_set")")) return false;
  rapidjson::Document d;
  d.Parse(content.data(), content.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("by") || !d["by"].IsUint64()) return false;
  by = d["by"].GetUint64();
  keep_days.reset();
  if (d.HasMember("keep_days") && d["keep_days"].IsUint()) keep_days = d["keep_days"].GetUint();
  return true;
}

// The rt| rows came with v|retention; a model projected before has none, though its history may
// still show the retention_set rows that wrote them. Each is merged as apply() merges it (the
// highest seq wins), so this equals a projection from scratch for every override whose row has
// not expired yet; an expired one is gone with its row (a replay recovers it).
Status RocksDbModelImpl::upgrade_retention() {
  std::lock_guard lk(apply_mu_);
  auto version = get(std::string(kRetentionVersionKey));
  IMLOG_TRY(version);
  if (*version) return {};
  std::string lower = "m|", upper = prefix_end(lower);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  wb_.Clear();
  size_t found = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto key = as_sv(it->key());
    StoredRow row;
    uint64_t seq = 0, by = 0;
    std::optional<uint32_t> keep;
    if (key.size() < 2 + 17 || !parse_hex(key.substr(key.size() - 16), seq) || !decode_row(as_sv(it->value()), row) ||
        !is_system(row) || !parse_retention_row(row.content, by, keep)) {
      continue;
    }
    std::string conv(key.substr(2, key.size() - 2 - 17));
    auto ref = parse_stream(conv);
    if (!ref) continue;
    set_retention(*ref, conv, by, keep, seq);
    ++found;
  }
  if (!it->status().ok()) return status_error(it->status(), "reading the retention_set rows");
  wb_.Put(std::string(kRetentionVersionKey), "1");
  IMLOG_TRY(write_batch("writing the retention overrides of an older model"));
  if (found > 0) {
    logger("projections")->info("filled in {} retention overrides of the model at {} from its history", found,
                                config_.dir);
  }
  return {};
}

void RocksDbModelImpl::write_token_blocks() {
  for (uint32_t t = 0; t < batch_tokens_.size(); ++t) {
    key_token_block(key_, batch_tokens_.token(t), id_ranges_[t].first, id_ranges_[t].second);
    value_.clear();
    encode_postings_unsorted(postings_[t], value_);
    wb_.Merge(key_, value_);
  }
}

void RocksDbModelImpl::write_id_blocks() {
  for (auto& [p, entries] : ids_) {
    if (entries.empty()) continue;
    uint64_t first = UINT64_MAX;
    for (const auto& e : entries) first = std::min(first, e.id);
    key_id_block(key_, p, first);
    value_.clear();
    encode_ids(entries, value_);
    wb_.Merge(key_, value_);
  }
}

void RocksDbModelImpl::apply_event(const EventBatch::Item& item) {
  const fb::EventEnvelope& e = *item.event;
  std::string_view stream = sv(e.stream());
  auto ref = parse_stream(stream);
  if (!ref) return;  // control events and streams this build does not know
  bool profile = e.event_type() == fb::Event::UserRegistered || e.event_type() == fb::Event::ProfileUpdated;
  if (item.erased && profile) return;
  switch (ref->kind) {
    case StreamKind::names: apply_names(e); break;
    case StreamKind::user: apply_user(e); break;
    default: apply_conversation(*ref, stream, e, item.text, item.erased); break;
  }
}

Status RocksDbModelImpl::write_batch(std::string_view what) {
  auto s = db_->Write(write_options_, &wb_);
  wb_.Clear();
  if (!s.ok()) return status_error(s, what);
  return {};
}

// The batch so far, with the search and id blocks it gathered.
Status RocksDbModelImpl::write_pending() {
  write_token_blocks();
  write_id_blocks();
  batch_tokens_.clear();
  for (auto& [p, v] : ids_) v.clear();
  participants_.clear();
  return write_batch("writing a batch");
}

// ---- erasure ----------------------------------------------------------------------------------

// UserErased (schema 10): the user's profile rows (u|, n|, su|, every sk| of theirs, fg|) go; each
// of their messages, in every conversation they ever took part in (x|), keeps its m| row with its
// type marked erased and no content — the row a rebuild writes, as it cannot open the text — and
// loses its search postings. The ranges that held the plaintext are then flushed and compacted
// (bottommost level forced) so it leaves the model's files, not only its newest version.
Status RocksDbModelImpl::erase_user(uint64_t user) {
  std::vector<std::pair<std::string, std::string>> compact;  // [begin, end) ranges
  IMLOG_TRY(erase_profile(user, compact));
  ExpiredThrough expired;  // the user's conversations with expired rows: conv → through
  IMLOG_TRY(erase_messages(user, compact, expired));
  const std::string what = "erasing user " + std::to_string(user);
  IMLOG_TRY(write_batch(what));
  if (!expired.empty()) {  // after the write above: it rewrote some of the same blocks
    IMLOG_TRY(remove_expired_postings(expired, compact));
    IMLOG_TRY(write_batch(what));
  }
  IMLOG_TRY(flush());
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  // One range per key family (the text before the first '|'), spanning all of the family's:
  // a compaction per token or conversation would be thousands of calls for a prolific user.
  std::map<std::string, std::pair<std::string, std::string>> families;
  for (auto& [begin, end] : compact) {
    auto [it, fresh] = families.try_emplace(begin.substr(0, begin.find('|')), begin, end);
    if (fresh) continue;
    it->second.first = std::min(it->second.first, begin);
    it->second.second = std::max(it->second.second, end);
  }
  for (const auto& [family, range] : families) {
    const auto& [begin, end] = range;
    rocksdb::Slice b(begin), e(end);
    auto s = db_->CompactRange(co, &b, &e);
    if (!s.ok()) return status_error(s, "compacting what erased user " + std::to_string(user) + " left");
  }
  return {};
}

Status RocksDbModelImpl::erase_profile(uint64_t user, std::vector<std::pair<std::string, std::string>>& compact) {
  std::string k, storage;
  key_id1(k, "u|", user);
  auto fields = get_fields(k, storage);
  IMLOG_TRY(fields);
  wb_.Delete(k);
  compact.emplace_back(k, k + '\0');
  if (*fields) {
    if (const Field* name = find_field(**fields, "username")) {
      k.assign("n|");
      k.append(name->value);
      auto holder = get(k);  // a later user may hold the name already (the grace period passed)
      IMLOG_TRY(holder);
      if (*holder && **holder == decimal(user)) wb_.Delete(k);
      compact.emplace_back(k, k + '\0');
      key_text_id(k, "su|", lower_ascii(name->value), user);
      wb_.Delete(k);
      compact.emplace_back(k, k + '\0');
    }
  }
  // Every nickname the user ever had left an sk| key: found by their id at the key's end.
  std::string suffix = "|";
  put_hex(suffix, user);
  std::string lower = "sk|", upper = prefix_end(lower);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto key = as_sv(it->key());
    if (!key.ends_with(suffix)) continue;
    wb_.Delete(it->key());
    compact.emplace_back(std::string(key), std::string(key) + '\0');
  }
  if (!it->status().ok()) return status_error(it->status(), "finding the nicknames of an erased user");
  key_id1(lower, "fg|", user);
  lower.push_back('|');
  wb_.DeleteRange(lower, prefix_end(lower));
  compact.emplace_back(lower, prefix_end(lower));
  return {};
}

Status RocksDbModelImpl::erase_messages(uint64_t user, std::vector<std::pair<std::string, std::string>>& compact,
                                        ExpiredThrough& expired) {
  std::vector<std::string> convs;  // every conversation the user took part in, left ones too
  std::string lower;
  key_user_conv(lower, 'x', user, "");
  {
    std::string upper = prefix_end(lower);
    rocksdb::Slice lo, hi;
    auto it = iterator(lower, upper, lo, hi);
    for (it->SeekToFirst(); it->Valid(); it->Next()) convs.emplace_back(as_sv(it->key()).substr(lower.size()));
    if (!it->status().ok()) return status_error(it->status(), "reading an erased user's conversations");
  }
  std::map<std::string, std::set<std::pair<std::string, uint64_t>>> postings;  // token → (conv, seq)
  uint64_t min_id = UINT64_MAX;
  TokenList tokens;
  std::string rows = "m|", rows_end = prefix_end(rows);  // one iterator for all (see remove_postings)
  rocksdb::Slice lo, hi;
  auto it = iterator(rows, rows_end, lo, hi);
  for (const auto& conv : convs) {
    std::string storage, mark = "me|" + conv;
    auto me = get_fields(mark, storage);
    IMLOG_TRY(me);
    if (uint64_t through = *me ? to_u64(field_value(**me, "through")) : 0; through > 0) expired[conv] = through;
    std::string begin = "m|" + conv + "|", end = prefix_end(begin);
    bool touched = false;
    for (it->Seek(begin); it->Valid() && as_sv(it->key()).starts_with(begin); it->Next()) {
      StoredRow row;
      uint64_t seq = 0;
      auto key = as_sv(it->key());
      if (!parse_hex(key.substr(begin.size()), seq) || !decode_row(as_sv(it->value()), row)) continue;
      if (row.sender != user || is_system(row) || row.erased) continue;
      tokenize(row.content, tokens, kMaxTokensPerMessage);
      for (std::string_view t : tokens.tokens) postings[std::string(t)].emplace(conv, seq);
      min_id = std::min(min_id, row.event_id);
      std::string erased;
      encode_row(erased, row.sender, static_cast<uint8_t>(row.type | kErasedRow), row.event_id, row.created_at,
                 row.client_msg_id, "");
      wb_.Put(it->key(), erased);
      touched = true;
    }
    if (!it->status().ok()) return status_error(it->status(), "reading the messages of an erased user");
    if (touched) compact.emplace_back(std::move(begin), std::move(end));
  }
  return remove_postings(postings, min_id, compact);
}

// Removes from the block at `key` (its postings in `kept`) those `gone` matches: the block is
// rewritten, or deleted when nothing is left. Whether it changed.
template <class Pred>
bool RocksDbModelImpl::drop_postings(const rocksdb::Slice& key, std::vector<Posting>& kept, Pred gone) {
  size_t before = kept.size();
  std::erase_if(kept, gone);
  if (kept.size() == before) return false;
  if (kept.empty()) {
    wb_.Delete(key);
  } else {
    std::string value;
    encode_postings(kept, value);
    wb_.Put(key, value);
  }
  return true;
}

// The postings of an erased user's expired rows: their rows are gone, so which of a conversation's
// expired postings were theirs is not known here; every posting at or below each conversation's
// expiry goes. A rebuild, which cannot open the user's text, indexed none of theirs and applies
// the same rule at the erasure, so the two stay equal. One walk of the whole index per erasure of
// a user with expired rows.
Status RocksDbModelImpl::remove_expired_postings(const ExpiredThrough& expired,
                                                 std::vector<std::pair<std::string, std::string>>& compact) {
  std::string lower = "t|", upper = prefix_end(lower);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  bool touched = false;
  std::vector<Posting> kept;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    kept.clear();
    if (!parse_postings(as_sv(it->value()), kept)) continue;
    touched |= drop_postings(it->key(), kept, [&](const Posting& p) {
      auto e = expired.find(p.conv);
      return e != expired.end() && p.seq <= e->second;
    });
  }
  if (!it->status().ok()) return status_error(it->status(), "removing the postings of expired rows");
  if (touched) compact.emplace_back(lower, upper);
  return {};
}

// Takes the postings of erased messages out of their tokens' t| blocks (rewritten, or
// deleted when nothing is left): a block can hold them only if its highest id is at least the
// lowest id among the messages.
Status RocksDbModelImpl::remove_postings(const std::map<std::string, std::set<std::pair<std::string, uint64_t>>>& postings,
                                         uint64_t min_id, std::vector<std::pair<std::string, std::string>>& compact) {
  // One iterator for every token: making one costs a sort of the memtable in a bulk load's model.
  std::string lower = "t|", upper = prefix_end(lower);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  for (const auto& [token, gone] : postings) {
    std::string prefix = "t|" + token + "|", first = prefix;
    put_hex(first, min_id);
    for (it->Seek(first); it->Valid() && as_sv(it->key()).starts_with(prefix); it->Next()) {
      std::vector<Posting> kept;
      if (!parse_postings(as_sv(it->value()), kept)) continue;
      drop_postings(it->key(), kept, [&](const Posting& p) { return gone.contains({std::string(p.conv), p.seq}); });
    }
    if (!it->status().ok()) return status_error(it->status(), "removing search postings");
    compact.emplace_back(prefix, prefix_end(prefix));
  }
  return {};
}

void RocksDbModelImpl::apply_names(const fb::EventEnvelope& e) {
  auto* r = e.event_as_UserRegistered();
  if (r == nullptr) return;
  uint64_t id = r->user_id();
  key_id1(key_, "u|", id);
  FieldWriter w;
  w.set("username", 0, std::string(sv(r->username())))
      .set("password_hash", 0, std::string(sv(r->password_hash())))
      .set("nickname", 0, std::string(sv(r->nickname())))
      .set("email", 0, std::string(sv(r->email())))
      .set("created_at", 0, decimal(static_cast<uint64_t>(e.timestamp_ms())));
  merge(key_, w);
  key_.assign("n|");
  key_.append(sv(r->username()));
  put(key_, decimal(id));
  key_text_id(key_, "su|", lower_ascii(sv(r->username())), id);
  put(key_, "");
  if (r->nickname() && r->nickname()->size() > 0) {
    key_text_id(key_, "sk|", lower_ascii(sv(r->nickname())), id);
    put(key_, "");
  }
}

void RocksDbModelImpl::apply_user(const fb::EventEnvelope& e) {
  const uint64_t v = e.seq();
  switch (e.event_type()) {
    case fb::Event::ProfileUpdated: {
      auto* p = e.event_as_ProfileUpdated();
      FieldWriter w;
      if (p->nickname()) {
        w.set("nickname", v, std::string(sv(p->nickname())));
        if (p->nickname()->size() > 0) {
          key_text_id(key_, "sk|", lower_ascii(sv(p->nickname())), p->user_id());
          put(key_, "");
        }
      }
      if (p->avatar_url()) w.set("avatar_url", v, std::string(sv(p->avatar_url())));
      if (p->signature()) w.set("signature", v, std::string(sv(p->signature())));
      if (p->email()) w.set("email", v, std::string(sv(p->email())));
      key_id1(key_, "u|", p->user_id());
      merge(key_, w);
      break;
    }
    case fb::Event::SettingsUpdated: {
      auto* s = e.event_as_SettingsUpdated();
      FieldWriter w;
      if (auto b = s->allow_search()) w.set("allow_search", v, *b ? "1" : "0");
      if (auto m = s->message_policy()) {
        w.set("message_policy", v, *m == fb::MessagePolicy::FriendsOnly ? "friends_only" : "everyone");
      }
      if (auto b = s->push_enabled()) w.set("push_enabled", v, *b ? "1" : "0");
      if (auto q = s->quiet_start_minute()) w.set("quiet_start_minute", v, std::to_string(*q));
      if (auto q = s->quiet_end_minute()) w.set("quiet_end_minute", v, std::to_string(*q));
      if (s->muted()) {
        for (auto* c : *s->muted()) w.set("mute:" + std::string(sv(c)), v, "1");
      }
      if (s->unmuted()) {
        for (auto* c : *s->unmuted()) w.set("mute:" + std::string(sv(c)), v, "0");
      }
      if (s->time_zone()) w.set("time_zone", v, std::string(sv(s->time_zone())));
      key_id1(key_, "u|", s->user_id());
      merge(key_, w);
      break;
    }
    case fb::Event::DeviceRegistered: {
      auto* d = e.event_as_DeviceRegistered();
      FieldWriter w;
      w.set(device_field(d->device_id()), v,
            encode_device(push_platform_name(d->platform()), sv(d->token()), sv(d->app_id()), e.timestamp_ms()));
      key_id1(key_, "u|", d->user_id());
      merge(key_, w);
      break;
    }
    case fb::Event::DeviceRemoved: {
      auto* d = e.event_as_DeviceRemoved();
      FieldWriter w;
      w.set(device_field(d->device_id()), v, "");  // removed: an empty value, as an unmute is "0"
      key_id1(key_, "u|", d->user_id());
      merge(key_, w);
      break;
    }
    case fb::Event::RefreshTokenRevoked: {  // a logout removes the devices of its session (schema 7)
      auto* t = e.event_as_RefreshTokenRevoked();
      if (!t->removed_devices() || t->removed_devices()->size() == 0) break;
      FieldWriter w;
      for (uint64_t device : *t->removed_devices()) w.set(device_field(device), v, "");
      key_id1(key_, "u|", t->user_id());
      merge(key_, w);
      break;
    }
    case fb::Event::FriendGroupSet: {
      auto* g = e.event_as_FriendGroupSet();
      key_id2(key_, "fg|", g->user_id(), g->friend_id());
      FieldWriter w;
      w.set("group", v, std::string(sv(g->group_name())));
      merge(key_, w);
      break;
    }
    default: break;  // refresh-token revocations and the like: not part of this model
  }
}

// Expiry (MessagesExpired): the rows and recall marks at or below `through` go, by range deletes
// in this batch's write, after any Put of the same batch (a WriteBatch applies in order). The
// search postings and the id index of those rows stay (search and message() find no row behind
// them and skip them); docs/data-lifecycle.md, "Message retention", says so.
void RocksDbModelImpl::expire(std::string_view conv, uint64_t through) {
  std::string upper;
  key_row(key_, conv, 0);
  key_row(upper, conv, through + 1);
  wb_.DeleteRange(key_, upper);
  key_recall(key_, conv, 0);
  key_recall(upper, conv, through + 1);
  wb_.DeleteRange(key_, upper);
  key_.assign("me|");
  key_.append(conv);
  FieldWriter w;
  w.set("through", through, decimal(through));
  merge(key_, w);
}

void RocksDbModelImpl::participate(uint64_t user, std::string_view conv, uint64_t version) {
  if (user == 0) return;
  key_user_conv(key_, 'x', user, conv);
  if (!participants_.insert(key_).second) return;
  FieldWriter w;
  w.set("in", version, "1");
  merge(key_, w);
}

void RocksDbModelImpl::apply_conversation(const StreamRef& ref, std::string_view conv, const fb::EventEnvelope& e,
                                          std::string_view text, bool erased) {
  const uint64_t seq = e.seq();
  if (seq == 0) {
    if (uint64_t through = timeline::expired_through(e)) expire(conv, through);
    if (auto* r = e.event_as_ReadMarked()) {
      key_user_conv(key_, 'r', r->user_id(), conv);
      FieldWriter w;
      w.set("read", r->seq(), "");
      merge(key_, w);
      if (ref.kind == StreamKind::world) participate(r->user_id(), conv, 1);
    }
    return;
  }

  // The history row.
  key_row(key_, conv, seq);
  if (auto* m = e.event_as_MessageAppended()) {
    auto type = static_cast<uint8_t>(static_cast<uint8_t>(m->message_type()) | (erased ? kErasedRow : 0));
    encode_row(value_, e.actor(), type, e.event_id(), e.timestamp_ms(), sv(e.client_msg_id()), erased ? "" : text);
    wb_.Put(key_, value_);
    if (m->message_type() != fb::MessageType::System && !erased) index_tokens(conv, seq, e.event_id(), text);
  } else {
    std::string content = timeline::system_content(e);
    encode_row(value_, e.actor(), static_cast<uint8_t>(fb::MessageType::System), e.event_id(), e.timestamp_ms(),
               sv(e.client_msg_id()), content);
    wb_.Put(key_, value_);
  }
  ids_[id_partition(e.event_id())].push_back(IdEntry{e.event_id(), seq, conv});

  if (auto* r = e.event_as_MessageRecalled()) {
    // Present or not: a second recall of the same message (which the engine refuses anyway)
    // would leave the same row.
    key_recall(key_, conv, r->recalled_seq());
    put(key_, "");
  }
  if (auto* r = e.event_as_RetentionSet()) set_retention(ref, conv, r->by(), r->keep_days(), seq);
  switch (ref.kind) {
    case StreamKind::single:
      if (seq == 1) {
        participate(ref.a, conv, 1);
        participate(ref.b, conv, 1);
      }
      apply_single(ref, e);
      break;
    case StreamKind::group: apply_group(ref, conv, e); break;
    case StreamKind::world: participate(e.actor(), conv, 1); break;
    default: break;
  }
}

// RetentionSet: the override of the side it names (apply_retention in stream_state.cpp picks the
// same), versioned by its seq so a replay or any batching leaves the latest.
void RocksDbModelImpl::set_retention(const StreamRef& ref, std::string_view conv, uint64_t by,
                                     std::optional<uint32_t> keep_days, uint64_t seq) {
  const bool side_b = retention_sets_second_side(ref, by);
  key_.assign("rt|");
  key_.append(conv);
  FieldWriter w;
  w.set(side_b ? "keep_b" : "keep_a", seq, keep_days ? decimal(*keep_days) : std::string());
  merge(key_, w);
}

void RocksDbModelImpl::apply_single(const StreamRef&, const fb::EventEnvelope& e) {
  const uint64_t v = e.seq();
  const std::string since = decimal(static_cast<uint64_t>(e.timestamp_ms()));
  auto friend_row = [&](uint64_t user, uint64_t other, std::string_view status, const flatbuffers::String* note,
                        bool set_since) {
    key_id2(key_, "f|", user, other);
    FieldWriter w;
    w.set("status", v, std::string(status));
    if (note) w.set("note", v, std::string(sv(note)));
    if (set_since) w.set("since", v, since);
    merge(key_, w);
  };
  auto block_row = [&](uint64_t user, uint64_t other, bool blocked) {
    key_id2(key_, "b|", user, other);
    FieldWriter w;
    w.set("blocked", v, blocked ? "1" : "0");
    merge(key_, w);
  };
  switch (e.event_type()) {
    case fb::Event::FriendRequested: {
      auto* f = e.event_as_FriendRequested();
      friend_row(f->from(), f->to(), "outgoing", f->note(), true);
      friend_row(f->to(), f->from(), "incoming", f->note(), true);
      break;
    }
    case fb::Event::FriendAccepted: {
      auto* f = e.event_as_FriendAccepted();
      friend_row(f->by(), f->requester(), "friends", nullptr, true);
      friend_row(f->requester(), f->by(), "friends", nullptr, true);
      break;
    }
    case fb::Event::FriendRejected: {
      auto* f = e.event_as_FriendRejected();
      friend_row(f->by(), f->requester(), "", nullptr, false);
      friend_row(f->requester(), f->by(), "", nullptr, false);
      break;
    }
    case fb::Event::FriendRemoved: {
      auto* f = e.event_as_FriendRemoved();
      friend_row(f->by(), f->other(), "", nullptr, false);
      friend_row(f->other(), f->by(), "", nullptr, false);
      break;
    }
    case fb::Event::UserBlocked: block_row(e.event_as_UserBlocked()->by(), e.event_as_UserBlocked()->blocked(), true); break;
    case fb::Event::UserUnblocked:
      block_row(e.event_as_UserUnblocked()->by(), e.event_as_UserUnblocked()->unblocked(), false);
      break;
    default: break;
  }
}

void RocksDbModelImpl::set_membership(uint64_t group, std::string_view conv, uint64_t user, uint64_t version, bool in,
                                      std::string_view role, int64_t ts) {
  key_id2(key_, "gm|", group, user);
  FieldWriter w;
  w.set("in", version, in ? "1" : "0");
  if (!role.empty()) w.set("role", version, std::string(role));
  if (in) w.set("joined_at", version, decimal(static_cast<uint64_t>(ts)));
  merge(key_, w);
  key_user_conv(key_, 'x', user, conv);
  FieldWriter x;
  x.set("in", version, in ? "1" : "0");
  merge(key_, x);
}

// The settings an event carries, as g| fields at version `v`.
template <class Event>
void set_group_settings(FieldWriter& w, uint64_t v, const Event& ev) {
  if (auto p = ev.join_policy()) w.set("join_policy", v, std::string(join_policy_name(*p)));
  if (auto h = ev.history()) w.set("history", v, std::string(history_rule_name(*h)));
}

void RocksDbModelImpl::apply_group(const StreamRef& ref, std::string_view conv, const fb::EventEnvelope& e) {
  const uint64_t v = e.seq();
  const uint64_t gid = ref.a;
  auto ban_row = [&](uint64_t user, bool banned, uint64_t by) {
    key_id2(key_, "gb|", gid, user);
    FieldWriter w;
    w.set("banned", v, banned ? "1" : "0");
    if (banned) w.set("by", v, decimal(by)).set("at", v, decimal(static_cast<uint64_t>(e.timestamp_ms())));
    merge(key_, w);
  };
  switch (e.event_type()) {
    case fb::Event::GroupCreated: {
      auto* g = e.event_as_GroupCreated();
      key_id1(key_, "g|", gid);
      FieldWriter w;
      w.set("name", v, std::string(sv(g->name())))
          .set("description", v, std::string(sv(g->description())))
          .set("owner", v, decimal(g->owner()))
          .set("created_at", v, decimal(static_cast<uint64_t>(e.timestamp_ms())));
      set_group_settings(w, v, *g);
      merge(key_, w);
      set_membership(gid, conv, g->owner(), v, true, "owner", e.timestamp_ms());
      if (g->members()) {
        for (uint64_t m : *g->members()) {
          if (m != g->owner()) set_membership(gid, conv, m, v, true, "member", e.timestamp_ms());
        }
      }
      break;
    }
    case fb::Event::MemberJoined:
      set_membership(gid, conv, e.event_as_MemberJoined()->user_id(), v, true, "member", e.timestamp_ms());
      break;
    case fb::Event::MemberLeft:
      set_membership(gid, conv, e.event_as_MemberLeft()->user_id(), v, false, "", 0);
      break;
    case fb::Event::MemberRemoved: {
      auto* r = e.event_as_MemberRemoved();
      set_membership(gid, conv, r->user_id(), v, false, "", 0);
      if (r->ban()) ban_row(r->user_id(), true, r->by());
      break;
    }
    case fb::Event::MemberUnbanned:
      ban_row(e.event_as_MemberUnbanned()->user_id(), false, 0);
      break;
    case fb::Event::GroupSettingsChanged: {
      key_id1(key_, "g|", gid);
      FieldWriter w;
      set_group_settings(w, v, *e.event_as_GroupSettingsChanged());
      merge(key_, w);
      break;
    }
    case fb::Event::RoleChanged: {
      auto* r = e.event_as_RoleChanged();
      key_id2(key_, "gm|", gid, r->user_id());
      FieldWriter w;
      w.set("role", v, std::string(role_name(r->role())));
      merge(key_, w);
      if (r->role() == fb::Role::Owner) {
        // Ownership moves; the old owner (the only one who may change roles) stays an admin.
        key_id2(key_, "gm|", gid, r->by());
        FieldWriter old;
        old.set("role", v, "admin");
        merge(key_, old);
        key_id1(key_, "g|", gid);
        FieldWriter g;
        g.set("owner", v, decimal(r->user_id()));
        merge(key_, g);
      }
      break;
    }
    default: break;
  }
}

// ---- positions, dump, flush -------------------------------------------------------------------

Status RocksDbModelImpl::status_error(const rocksdb::Status& s, std::string_view what) const {
  return model_fail(s.IsCorruption() ? ModelErrc::corrupt_row : ModelErrc::io_error,
                    std::string(what) + " in the model at " + config_.dir + ": " + s.ToString(),
                    s.IsBusy() || s.IsTimedOut() || s.IsTryAgain());
}

std::unique_ptr<rocksdb::Iterator> RocksDbModelImpl::iterator(const std::string& lower, const std::string& upper,
                                                              rocksdb::Slice& lo, rocksdb::Slice& hi) const {
  rocksdb::ReadOptions ro;
  lo = rocksdb::Slice(lower);
  hi = rocksdb::Slice(upper);
  ro.iterate_lower_bound = &lo;
  ro.iterate_upper_bound = &hi;
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(ro));
}

Result<std::vector<PartitionPosition>> RocksDbModelImpl::positions() {
  std::vector<PartitionPosition> out;
  std::string lower = "p|", upper = prefix_end("p|");
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    uint64_t p = 0;
    auto k = as_sv(it->key()).substr(2);
    auto v = it->value();
    // 16 bytes: written before epoch links were stored (the link is then 0, not known).
    if (!parse_hex(k, p) || (v.size() != 16 && v.size() != 24)) {
      return model_fail(ModelErrc::corrupt_row, "the position row `" + std::string(as_sv(it->key())) +
                                                    "` of the model at " + config_.dir + " does not decode");
    }
    out.push_back(PartitionPosition{static_cast<int32_t>(p), static_cast<int64_t>(get_be64(v.data())),
                                    get_be64(v.data() + 8), v.size() == 24 ? get_be64(v.data() + 16) : 0});
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "reading positions").error());
  return out;
}

Status RocksDbModelImpl::dump(const RowVisitor& visit) {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  ro.readahead_size = 2 << 20;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  std::string rendered, row_key, token_prefix;
  std::vector<std::string> block_values;
  std::vector<Posting> postings;
  it->SeekToFirst();
  while (it->Valid()) {
    auto key = as_sv(it->key());
    if (key.starts_with("p|") || key.starts_with("v|")) {
      it->Next();
      continue;
    }
    if (is_id_key(key)) {
      // The id index is stored in blocks too: its rows are i|<id partition>|<id> → <conv>#<seq>.
      std::string group(key.substr(0, key.rfind('|') + 1));
      block_values.clear();
      for (; it->Valid() && as_sv(it->key()).starts_with(group); it->Next()) block_values.emplace_back(as_sv(it->value()));
      std::vector<IdEntry> ids;
      for (const auto& v : block_values) {
        if (!parse_ids(v, ids)) {
          return model_fail(ModelErrc::corrupt_row, "an id index block under `" + group + "` of the model at " +
                                                        config_.dir + " does not decode");
        }
      }
      std::sort(ids.begin(), ids.end(), [](const IdEntry& a, const IdEntry& b) { return a.id < b.id; });
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i > 0 && ids[i].id == ids[i - 1].id) continue;
        row_key.assign(group);
        put_hex(row_key, ids[i].id);
        rendered.assign(ids[i].conv);
        rendered += '#';
        rendered += std::to_string(ids[i].seq);
        if (!visit(row_key, rendered)) return {};
      }
      continue;
    }
    if (!is_token_key(key)) {
      rendered = render(key, as_sv(it->value()));
      if (!visit(key, rendered)) return {};
      it->Next();
      continue;
    }
    // The search index is stored in blocks that depend on how events were batched; its rows
    // are the postings, one row t|<token>|<conv>|<seq> each, whatever the batching.
    token_prefix.assign(key.substr(0, key.size() >= kTokenBlockSuffix ? key.size() - kTokenBlockSuffix + 1 : 0));
    block_values.clear();
    for (; it->Valid() && as_sv(it->key()).starts_with(token_prefix); it->Next()) {
      block_values.emplace_back(as_sv(it->value()));
    }
    postings.clear();
    for (const auto& v : block_values) {
      if (!parse_postings(v, postings)) {
        return model_fail(ModelErrc::corrupt_row, "a search index block under `" + token_prefix + "` of the model at " +
                                                      config_.dir + " does not decode");
      }
    }
    std::sort(postings.begin(), postings.end(), posting_less);
    postings.erase(std::unique(postings.begin(), postings.end()), postings.end());
    for (const auto& p : postings) {
      row_key.assign(token_prefix);
      row_key.append(p.conv);
      row_key.push_back('|');
      put_hex(row_key, p.seq);
      if (!visit(row_key, "")) return {};
    }
  }
  if (!it->status().ok()) return status_error(it->status(), "dumping");
  return {};
}

Status RocksDbModelImpl::flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  fo.allow_write_stall = true;  // never wait for a stall to clear: a stop must end
  auto s = db_->Flush(fo);
  if (!s.ok()) return status_error(s, "flushing");
  return {};
}

// ---- reads ------------------------------------------------------------------------------------

Result<std::optional<std::string>> RocksDbModelImpl::get(const std::string& key) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), key, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return tl::unexpected(status_error(s, "reading `" + key + "`").error());
  return std::optional<std::string>(std::move(v));
}

Result<std::optional<std::vector<Field>>> RocksDbModelImpl::get_fields(const std::string& key, std::string& storage) {
  auto v = get(key);
  IMLOG_TRY(v);
  if (!*v) return std::optional<std::vector<Field>>();
  storage = std::move(**v);
  std::vector<Field> fields;
  if (!parse_fields(storage, fields)) {
    return model_fail(ModelErrc::corrupt_row, "the row `" + key + "` of the model at " + config_.dir + " does not decode");
  }
  return std::optional<std::vector<Field>>(std::move(fields));
}

Result<std::optional<MessageView>> RocksDbModelImpl::row_at(std::string_view conv, uint64_t seq) {
  std::string k;
  key_row(k, conv, seq);
  auto v = get(k);
  IMLOG_TRY(v);
  if (!*v) return std::optional<MessageView>();
  StoredRow row;
  if (!decode_row(**v, row)) {
    return model_fail(ModelErrc::corrupt_row, "the row `" + k + "` of the model at " + config_.dir + " does not decode");
  }
  key_recall(k, conv, seq);
  auto r = get(k);
  IMLOG_TRY(r);
  row.recalled = r->has_value();
  return std::optional<MessageView>(view_of(conv, seq, row));
}

// Marks the recalled messages of a page (ascending seqs of one conversation): one range read of
// the recall rows it spans.
Status RocksDbModelImpl::mark_recalled(std::string_view conv, std::vector<MessageView>& messages) {
  if (messages.empty()) return {};
  std::string lower, upper;
  key_recall(lower, conv, messages.front().seq_id);
  key_recall(upper, conv, messages.back().seq_id + 1);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    auto key = as_sv(it->key());
    uint64_t seq = 0;
    if (!parse_hex(key.substr(key.size() - 16), seq)) continue;
    auto m = std::lower_bound(messages.begin(), messages.end(), seq,
                              [](const MessageView& v, uint64_t s) { return v.seq_id < s; });
    if (m != messages.end() && m->seq_id == seq) {
      m->recalled = true;
      m->content.clear();
    }
  }
  if (!it->status().ok()) return status_error(it->status(), "reading recalls");
  return {};
}

Result<HistoryPage> RocksDbModelImpl::history(std::string_view conversation, const HistoryRange& range) {
  const uint32_t limit = std::clamp<uint32_t>(range.limit, 1, 1000);
  HistoryPage page;
  if (range.after_seq == UINT64_MAX || (range.before_seq > 0 && range.before_seq <= range.after_seq + 1)) {
    return page;  // an empty range
  }
  // The iterator's bounds are the range: m|<conv>|<after + 1> up to m|<conv>|<before> or the
  // conversation's end.
  std::string lower, upper;
  key_row(lower, conversation, range.after_seq + 1);
  if (range.before_seq > 0) {
    key_row(upper, conversation, range.before_seq);
  } else {
    upper = prefix_end(lower.substr(0, lower.size() - 16));
  }
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  auto take = [&]() -> Status {
    auto key = as_sv(it->key());
    uint64_t seq = 0;
    StoredRow row;
    if (!parse_hex(key.substr(key.size() - 16), seq) || !decode_row(as_sv(it->value()), row)) {
      return model_fail(ModelErrc::corrupt_row, "the row `" + std::string(key) + "` of the model at " + config_.dir +
                                                    " does not decode");
    }
    page.messages.push_back(view_of(conversation, seq, row));
    return {};
  };
  if (range.forward) {
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (page.messages.size() == limit) {
        page.has_more = true;
        break;
      }
      IMLOG_TRY(take());
    }
  } else {
    for (it->SeekToLast(); it->Valid(); it->Prev()) {
      if (page.messages.size() == limit) {
        page.has_more = true;
        break;
      }
      IMLOG_TRY(take());
    }
    std::reverse(page.messages.begin(), page.messages.end());
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "reading history").error());
  IMLOG_TRY(mark_recalled(conversation, page.messages));
  return page;
}

Result<std::optional<MessageView>> RocksDbModelImpl::message(uint64_t message_id) {
  // The block with the greatest first id not above the id holds it, if any does; after a
  // re-application in other batches an older, overlapping block may: look a few further back.
  constexpr int kMaxBlocks = 64;
  std::string lower, upper, k;
  key_id_block(lower, id_partition(message_id), 0);
  upper = prefix_end(lower.substr(0, lower.size() - 16));
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  key_id_block(k, id_partition(message_id), message_id);
  std::vector<IdEntry> entries;
  std::string block;
  int n = 0;
  for (it->SeekForPrev(k); it->Valid() && n < kMaxBlocks; it->Prev(), ++n) {
    block.assign(as_sv(it->value()));
    entries.clear();
    if (!parse_ids(block, entries)) {
      return model_fail(ModelErrc::corrupt_row, "the id index block `" + std::string(as_sv(it->key())) +
                                                    "` of the model at " + config_.dir + " does not decode");
    }
    auto e = std::lower_bound(entries.begin(), entries.end(), message_id,
                              [](const IdEntry& x, uint64_t id) { return x.id < id; });
    if (e != entries.end() && e->id == message_id) return row_at(e->conv, e->seq);
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "reading the id index").error());
  return std::optional<MessageView>();
}

// The conversations a user takes part in, with the seq of the join (x| rows with in=1).
Result<std::vector<std::pair<std::string, uint64_t>>> RocksDbModelImpl::memberships(uint64_t user_id) {
  std::vector<std::pair<std::string, uint64_t>> out;
  std::string lower;
  key_user_conv(lower, 'x', user_id, "");
  std::string upper = prefix_end(lower);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  std::vector<Field> fields;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    fields.clear();
    if (!parse_fields(as_sv(it->value()), fields)) continue;
    const Field* in = find_field(fields, "in");
    if (in == nullptr || in->value != "1") continue;
    out.emplace_back(std::string(as_sv(it->key()).substr(lower.size())), in->version);
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "reading conversations").error());
  return out;
}

Result<std::vector<ConversationView>> RocksDbModelImpl::conversations(uint64_t user_id) {
  auto convs = memberships(user_id);
  IMLOG_TRY(convs);
  std::vector<ConversationView> out;
  std::string storage, k;
  for (const auto& [conv, join_seq] : *convs) {
    auto ref = parse_stream(conv);
    if (!ref) continue;
    // The conversation's last row gives last_seq, updated_at and the last message.
    std::string lower, upper;
    key_row(lower, conv, 0);
    upper = prefix_end(lower.substr(0, lower.size() - 16));
    rocksdb::Slice lo, hi;
    auto it = iterator(lower, upper, lo, hi);
    it->SeekToLast();
    if (!it->Valid()) {
      if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "reading conversations").error());
      continue;
    }
    ConversationView v;
    v.conversation_id = conv;
    v.type = kind_name(ref->kind);
    key_user_conv(k, 'r', user_id, conv);
    auto r = get_fields(k, storage);
    IMLOG_TRY(r);
    uint64_t read = 0;
    if (*r) {
      if (const Field* f = find_field(**r, "read")) read = f->version;
    }
    // Joining reads what came before (timeline.h): the floor is the seq before the join.
    read = std::max(read, join_seq > 0 ? join_seq - 1 : 0);
    // Scan back from the last row: own rows raise the read seq to themselves; messages of others
    // above the read seq are unread, system rows (joins, role changes, recalls) are not.
    uint64_t unread = 0;
    for (; it->Valid(); it->Prev()) {
      auto key = as_sv(it->key());
      uint64_t seq = 0;
      StoredRow row;
      if (!parse_hex(key.substr(key.size() - 16), seq) || !decode_row(as_sv(it->value()), row)) {
        return model_fail(ModelErrc::corrupt_row, "the row `" + std::string(key) + "` of the model at " + config_.dir +
                                                      " does not decode");
      }
      if (v.last_seq == 0) {
        v.last_seq = seq;
        v.updated_at = row.created_at;
        v.last_message = view_of(conv, seq, row);
      }
      if (seq <= read) break;
      if (row.sender == user_id) {
        read = seq;
        break;
      }
      if (!is_system(row) && ++unread >= kUnreadCap) break;
    }
    if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "counting unread").error());
    v.read_seq = std::min(read, v.last_seq);
    v.unread = unread;
    std::vector<MessageView> last{*v.last_message};
    IMLOG_TRY(mark_recalled(conv, last));
    v.last_message = std::move(last.front());
    if (ref->kind == StreamKind::group) {
      key_id1(k, "g|", ref->a);
      auto g = get_fields(k, storage);
      IMLOG_TRY(g);
      if (*g) v.title = field_value(**g, "name");
    } else if (ref->kind == StreamKind::single) {
      v.peer_id = ref->a == user_id ? ref->b : ref->a;
      auto peer = user(v.peer_id);
      IMLOG_TRY(peer);
      if (*peer) v.title = (*peer)->nickname;
    } else {
      v.title = "world";
    }
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(), [](const ConversationView& a, const ConversationView& b) {
    if (a.updated_at != b.updated_at) return a.updated_at > b.updated_at;
    return a.conversation_id < b.conversation_id;
  });
  return out;
}

Result<std::optional<UserView>> RocksDbModelImpl::user(uint64_t user_id) {
  std::string k, storage;
  key_id1(k, "u|", user_id);
  auto f = get_fields(k, storage);
  IMLOG_TRY(f);
  if (!*f || find_field(**f, "username") == nullptr) return std::optional<UserView>();
  const auto& fields = **f;
  UserView u;
  u.user_id = user_id;
  u.username = field_value(fields, "username");
  u.nickname = field_value(fields, "nickname");
  u.avatar_url = field_value(fields, "avatar_url");
  u.signature = field_value(fields, "signature");
  u.email = field_value(fields, "email");
  if (const Field* a = find_field(fields, "allow_search")) u.allow_search = a->value == "1";
  if (const Field* m = find_field(fields, "message_policy")) u.message_policy = m->value;
  if (const Field* p = find_field(fields, "push_enabled")) u.push_enabled = p->value == "1";
  if (const Field* q = find_field(fields, "quiet_start_minute")) u.quiet_start_minute = static_cast<int32_t>(to_i64(q->value));
  if (const Field* q = find_field(fields, "quiet_end_minute")) u.quiet_end_minute = static_cast<int32_t>(to_i64(q->value));
  for (const Field& x : fields) {
    if (x.name.starts_with("mute:") && x.value == "1") u.muted.emplace_back(x.name.substr(5));
    if (x.name.starts_with("device:") && !x.value.empty()) u.devices.push_back(decode_device(x.name.substr(7), x.value));
  }
  std::sort(u.devices.begin(), u.devices.end(), [](const auto& a, const auto& b) { return a.device_id < b.device_id; });
  u.time_zone = field_value(fields, "time_zone");
  u.created_at = to_i64(field_value(fields, "created_at"));
  return std::optional<UserView>(std::move(u));
}

Result<std::optional<Credentials>> RocksDbModelImpl::credentials(std::string_view username) {
  std::string k = "n|";
  k.append(username);
  auto v = get(k);
  IMLOG_TRY(v);
  if (!*v) return std::optional<Credentials>();
  uint64_t id = to_u64(**v);
  std::string storage;
  key_id1(k, "u|", id);
  auto f = get_fields(k, storage);
  IMLOG_TRY(f);
  if (!*f) return std::optional<Credentials>();
  return std::optional<Credentials>(Credentials{id, std::string(field_value(**f, "password_hash"))});
}

Result<std::vector<UserView>> RocksDbModelImpl::search_users(std::string_view prefix, uint64_t after_user_id,
                                                             uint32_t limit) {
  constexpr size_t kMaxCandidates = 10000;
  limit = std::clamp<uint32_t>(limit, 1, 1000);
  std::string lp = lower_ascii(prefix);
  std::vector<uint64_t> ids;
  if (lp.empty()) {
    // No prefix: every user, in id order.
    std::string lower, upper = prefix_end("u|");
    key_id1(lower, "u|", after_user_id + 1);
    rocksdb::Slice lo, hi;
    auto it = iterator(lower, upper, lo, hi);
    for (it->SeekToFirst(); it->Valid() && ids.size() < kMaxCandidates; it->Next()) {
      uint64_t id = 0;
      if (parse_hex(as_sv(it->key()).substr(2), id)) ids.push_back(id);
    }
  } else {
    for (std::string_view index : {"su|", "sk|"}) {
      std::string lower = std::string(index) + lp, upper = prefix_end(lower);
      rocksdb::Slice lo, hi;
      auto it = iterator(lower, upper, lo, hi);
      size_t n = 0;
      for (it->SeekToFirst(); it->Valid() && n < kMaxCandidates; it->Next(), ++n) {
        auto key = as_sv(it->key());
        uint64_t id = 0;
        if (key.size() >= 16 && parse_hex(key.substr(key.size() - 16), id) && id > after_user_id) ids.push_back(id);
      }
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  }
  std::vector<UserView> out;
  for (uint64_t id : ids) {
    if (out.size() == limit) break;
    auto u = user(id);
    IMLOG_TRY(u);
    if (!*u || !(*u)->allow_search) continue;
    // The nickname index keeps former nicknames: check the current one.
    if (!lp.empty() && !lower_ascii((*u)->username).starts_with(lp) && !lower_ascii((*u)->nickname).starts_with(lp)) {
      continue;
    }
    out.push_back(std::move(**u));
  }
  return out;
}

Result<std::optional<GroupView>> RocksDbModelImpl::group(uint64_t group_id) {
  std::string k, storage;
  key_id1(k, "g|", group_id);
  auto f = get_fields(k, storage);
  IMLOG_TRY(f);
  if (!*f || find_field(**f, "name") == nullptr) return std::optional<GroupView>();
  GroupView g;
  g.group_id = group_id;
  g.name = field_value(**f, "name");
  g.description = field_value(**f, "description");
  g.owner_id = to_u64(field_value(**f, "owner"));
  g.created_at = to_i64(field_value(**f, "created_at"));
  if (const Field* p = find_field(**f, "join_policy")) g.join_policy = p->value;
  if (const Field* h = find_field(**f, "history")) g.history = h->value;
  std::string lower, upper;
  key_id1(lower, "gm|", group_id);
  lower.push_back('|');
  upper = prefix_end(lower);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  std::vector<Field> fields;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    fields.clear();
    if (parse_fields(as_sv(it->value()), fields) && field_value(fields, "in") == "1") ++g.member_count;
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "counting members").error());
  return std::optional<GroupView>(std::move(g));
}

Result<std::vector<MemberView>> RocksDbModelImpl::members(uint64_t group_id, uint64_t after_user_id, uint32_t limit) {
  limit = std::clamp<uint32_t>(limit, 1, 10000);
  std::vector<MemberView> out;
  std::string lower, upper;
  key_id2(lower, "gm|", group_id, after_user_id + 1);
  key_id1(upper, "gm|", group_id);
  upper = prefix_end(upper + "|");
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  std::vector<Field> fields;
  for (it->SeekToFirst(); it->Valid() && out.size() < limit; it->Next()) {
    fields.clear();
    if (!parse_fields(as_sv(it->value()), fields) || field_value(fields, "in") != "1") continue;
    auto key = as_sv(it->key());
    MemberView m;
    parse_hex(key.substr(key.size() - 16), m.user_id);
    m.role = field_value(fields, "role");
    m.joined_at = to_i64(field_value(fields, "joined_at"));
    out.push_back(std::move(m));
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "reading members").error());
  return out;
}

Result<std::vector<BanView>> RocksDbModelImpl::bans(uint64_t group_id, uint64_t after_user_id, uint32_t limit) {
  limit = std::clamp<uint32_t>(limit, 1, 10000);
  std::vector<BanView> out;
  std::string lower, upper;
  key_id2(lower, "gb|", group_id, after_user_id + 1);
  key_id1(upper, "gb|", group_id);
  upper = prefix_end(upper + "|");
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  std::vector<Field> fields;
  for (it->SeekToFirst(); it->Valid() && out.size() < limit; it->Next()) {
    fields.clear();
    if (!parse_fields(as_sv(it->value()), fields) || field_value(fields, "banned") != "1") continue;
    auto key = as_sv(it->key());
    BanView b;
    parse_hex(key.substr(key.size() - 16), b.user_id);
    b.banned_by = to_u64(field_value(fields, "by"));
    b.banned_at = to_i64(field_value(fields, "at"));
    out.push_back(b);
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "reading bans").error());
  return out;
}

Result<ReadAccess> RocksDbModelImpl::read_access(std::string_view conversation, uint64_t user_id) {
  ReadAccess access;
  auto ref = parse_stream(conversation);
  if (!ref || user_id == 0) return access;
  switch (ref->kind) {
    case StreamKind::single: access.allowed = user_id == ref->a || user_id == ref->b; break;
    case StreamKind::group: {
      std::string k, storage;
      key_id2(k, "gm|", ref->a, user_id);
      auto f = get_fields(k, storage);
      IMLOG_TRY(f);
      const Field* in = *f ? find_field(**f, "in") : nullptr;
      if (in == nullptr || in->value != "1") break;
      access.allowed = true;
      access.joined_seq = in->version;
      key_id1(k, "g|", ref->a);
      auto g = get_fields(k, storage);
      IMLOG_TRY(g);
      if (*g) {
        if (const Field* h = find_field(**g, "history")) access.history = h->value;
      }
      break;
    }
    case StreamKind::world: {
      auto u = user(user_id);
      IMLOG_TRY(u);
      access.allowed = u->has_value();
      break;
    }
    default: break;
  }
  return access;
}

// Reads the blocks of the query's longest token backwards (highest event id first), checks each
// posting of a searched conversation against its row (matches(): every token, every CJK run, not
// recalled), and stops once `limit` results are above every id a block not yet read can hold:
// the page is then exact, and the next one starts below its last result. A search that reads
// kMaxPostings postings first ends its page where its reading ended, with a cursor to go on.
Result<SearchPage> RocksDbModelImpl::search_messages(const SearchRequest& request) {
  constexpr size_t kMaxPostings = 200'000;
  const uint32_t limit = std::clamp<uint32_t>(request.limit, 1, kMaxSearchPage);
  SearchQuery query = parse_search_query(request.text);
  if (!query.searchable()) return SearchPage{};
  std::string_view lead = *std::max_element(query.tokens.begin(), query.tokens.end(),
                                            [](std::string_view a, std::string_view b) { return a.size() < b.size(); });
  auto convs = memberships(request.user_id);
  IMLOG_TRY(convs);
  std::unordered_set<std::string_view> searched;
  for (const auto& c : *convs) {
    if (request.conversation.empty() || c.first == request.conversation) searched.insert(c.first);
  }
  if (searched.empty()) return SearchPage{};
  const uint64_t before = request.before_id == 0 ? UINT64_MAX : request.before_id;

  std::map<uint64_t, MessageView, std::greater<>> found;  // by id, highest first
  std::set<std::pair<std::string, uint64_t>> seen;
  TokenList content_tokens;
  std::string lower = "t|" + std::string(lead) + "|", upper = prefix_end(lower);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  std::vector<Posting> postings;
  std::string block;
  size_t postings_read = 0;
  uint64_t unread_max = 0;  // read stopped at the bound: ids up to this one were not all read
  bool exhausted = true;    // every block was read
  for (it->SeekToLast(); it->Valid(); it->Prev()) {
    uint64_t max_id = 0, min_id = 0;
    if (!token_block_ids(as_sv(it->key()), lower.size(), max_id, min_id)) continue;  // a longer token
    if (found.size() >= limit && std::next(found.begin(), limit - 1)->first > max_id) {
      exhausted = false;  // the page is complete: what is left cannot enter it
      break;
    }
    if (postings_read >= kMaxPostings) {
      exhausted = false;
      unread_max = max_id;
      break;
    }
    if (min_id >= before) continue;
    block.assign(as_sv(it->value()));
    postings.clear();
    if (!parse_postings(block, postings)) {
      return model_fail(ModelErrc::corrupt_row, "the search index block `" + std::string(as_sv(it->key())) +
                                                    "` of the model at " + config_.dir + " does not decode");
    }
    postings_read += postings.size();
    for (const Posting& p : postings) {
      if (!searched.contains(p.conv) || !seen.emplace(std::string(p.conv), p.seq).second) continue;
      auto m = row_at(p.conv, p.seq);
      IMLOG_TRY(m);
      if (!*m || (*m)->recalled || (*m)->message_id >= before) continue;
      tokenize((*m)->content, content_tokens, kMaxTokensPerMessage);
      if (matches(query, content_tokens, (*m)->content)) found.emplace((*m)->message_id, std::move(**m));
    }
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), "searching").error());
  std::vector<MessageView> newest_first;
  newest_first.reserve(found.size());
  for (auto& [id, m] : found) newest_first.push_back(std::move(m));
  return search_page(std::move(newest_first), limit, unread_max, exhausted);
}

Status RocksDbModelImpl::scan_user_rows(std::string_view prefix, uint64_t user_id, std::string_view what,
                                        const UserRowVisitor& visit) {
  std::string lower;
  key_id1(lower, prefix, user_id);
  lower.push_back('|');
  std::string upper = prefix_end(lower);
  rocksdb::Slice lo, hi;
  auto it = iterator(lower, upper, lo, hi);
  std::vector<Field> fields;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    fields.clear();
    if (!parse_fields(as_sv(it->value()), fields)) continue;
    auto key = as_sv(it->key());
    uint64_t other = 0;
    if (parse_hex(key.substr(key.size() - 16), other)) visit(other, fields);
  }
  if (!it->status().ok()) return tl::unexpected(status_error(it->status(), what).error());
  return {};
}

Result<std::vector<FriendView>> RocksDbModelImpl::friends(uint64_t user_id) {
  std::vector<FriendView> out;
  IMLOG_TRY(scan_user_rows("f|", user_id, "reading friends", [&](uint64_t other, const std::vector<Field>& fields) {
    auto status = field_value(fields, "status");
    if (status.empty()) return;
    out.push_back(FriendView{.user_id = other,
                             .status = std::string(status),
                             .note = std::string(field_value(fields, "note")),
                             .group_name = {},  // from its own row, below
                             .since = to_i64(field_value(fields, "since"))});
  }));
  std::string k, storage;
  for (auto& f : out) {
    key_id2(k, "fg|", user_id, f.user_id);
    auto g = get_fields(k, storage);
    IMLOG_TRY(g);
    if (*g) f.group_name = field_value(**g, "group");
  }
  return out;
}

Result<std::vector<uint64_t>> RocksDbModelImpl::blocked(uint64_t user_id) {
  std::vector<uint64_t> out;
  IMLOG_TRY(scan_user_rows("b|", user_id, "reading blocks", [&](uint64_t other, const std::vector<Field>& fields) {
    if (field_value(fields, "blocked") == "1") out.push_back(other);
  }));
  return out;
}

Result<std::vector<std::string>> RocksDbModelImpl::friend_groups(uint64_t user_id) {
  std::vector<std::string> out;
  IMLOG_TRY(scan_user_rows("fg|", user_id, "reading friend groups", [&](uint64_t, const std::vector<Field>& fields) {
    auto g = field_value(fields, "group");
    if (!g.empty()) out.emplace_back(g);
  }));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<RetentionOverrides> RocksDbModelImpl::retention(std::string_view conversation) {
  std::string k = "rt|", storage;
  k.append(conversation);
  auto f = get_fields(k, storage);
  IMLOG_TRY(f);
  RetentionOverrides out;
  if (!*f) return out;
  auto days = [&](std::string_view name) -> Result<std::optional<uint32_t>> {
    std::string_view v = field_value(**f, name);
    if (v.empty()) return std::optional<uint32_t>();
    uint32_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size()) {
      return model_fail(ModelErrc::corrupt_row, "the retention row `" + k + "` of the model at " + config_.dir +
                                                    " has " + std::string(name) + " `" + std::string(v) +
                                                    "`, not a number of days");
    }
    return std::optional<uint32_t>(n);
  };
  auto a = days("keep_a");
  IMLOG_TRY(a);
  auto b = days("keep_b");
  IMLOG_TRY(b);
  out.a = *a;
  out.b = *b;
  return out;
}

}  // namespace

Result<std::unique_ptr<RocksDbModel>> open_rocksdb_model(const RocksDbModelConfig& config) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.merge_operator = std::make_shared<ModelMerge>();
  o.IncreaseParallelism(2);
  o.write_buffer_size = 64ull << 20;
  o.max_write_buffer_number = 4;
  o.target_file_size_base = 64ull << 20;
  o.max_bytes_for_level_base = 256ull << 20;
  // Fresh data (L0, L1) uncompressed: flushes stay cheap; older levels LZ4 when available.
  auto supported = rocksdb::GetSupportedCompressions();
  auto deep = std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end()
                  ? rocksdb::kLZ4Compression
                  : rocksdb::kNoCompression;
  o.compression_per_level = {rocksdb::kNoCompression, rocksdb::kNoCompression, deep, deep, deep, deep, deep};
  if (config.bulk_load) {
    o.memtable_factory = std::make_shared<rocksdb::VectorRepFactory>();
    o.allow_concurrent_memtable_write = false;
    // Flushed files stay in L0 while the target fills (no compaction competing for the two
    // cores); whoever opens it next without bulk_load compacts it in the background.
    o.disable_auto_compactions = true;
    o.level0_slowdown_writes_trigger = 1 << 20;
    o.level0_stop_writes_trigger = 1 << 20;
  }
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, config.dir, &raw);
  if (!s.ok()) {
    std::string hint = s.IsIOError() && s.ToString().find("lock") != std::string::npos
                           ? ": is another process (a running imlog) using it?"
                           : "";
    return model_fail(ModelErrc::io_error, "cannot open the RocksDB model at " + config.dir + ": " + s.ToString() + hint,
                      false);
  }
  auto model = std::make_unique<RocksDbModelImpl>(std::unique_ptr<rocksdb::DB>(raw), config);
  IMLOG_TRY(model->upgrade_search_index());
  IMLOG_TRY(model->upgrade_retention());
  return std::unique_ptr<RocksDbModel>(std::move(model));
}

}  // namespace imlog
