// The Redis model (redis_model.h): the cache layout described there, built from im.events.
//
// Keys (every one under the configured prefix P):
//   hot_messages:<conv>   ZSET score = seq, member = the message JSON (timeline::message_json);
//                         the newest `hot_messages` rows, TTL hot_ttl, refreshed on each write
//   conv_seq:<conv>       STRING, the conversation's last seq (no TTL)
//   read_seq:<conv>       HASH user → read seq, one field per participant (timeline.h rules)
//   msg_seqs:<conv>       ZSET score = member = seq of each message row (system rows are never
//                         unread); the same newest `hot_messages` seqs and TTL as hot_messages
//   (a MessagesExpired removes every seq at or below its through_seq from both ZSETs, and the
//   unread counts of the conversation's participants are recomputed without them)
//   unread:<user>         HASH conversation → unread count = the msg_seqs above the read seq
//   projection:positions  HASH partition → "<next_offset>:<token>"
//
// A batch, in at most three round trips on one connection:
//   1. read what the writes depend on — MGET of the touched conversations' conv_seq, HGETALL of
//      their read_seq hashes, the stored positions;
//   2. only when the batch re-applies seqs already stored, or recalls a stored row: the
//      hot_messages range holding them; only when a participant's read seq is below conv_seq:
//      the msg_seqs above the lowest read seq;
//   3. MULTI, the writes, the positions (last), EXEC: per conversation one variadic ZADD of the
//      rows not yet stored (insert-only, like the MySQL messages table), the recalled rows
//      rewritten (ZREM + ZADD of the recalled form), ZREMRANGEBYSCORE keeping the newest
//      `hot_messages` seqs, EXPIRE; one MSET of the grown conv_seqs; per conversation one HSET /
//      HDEL of read seqs; per user one HSET of unread:<user> for every conversation of the batch
//      they take part in.
//   Unread counts are derived (the message seqs above the read seq: msg_seqs read in step 2 plus
//   the batch's, recomputed for every participant of a touched conversation), never HINCRBY'd, so re-applying an event cannot count it twice; conv_seq and
//   read seqs only grow. The reads happen outside the transaction: the model assumes one writer
//   per key prefix (the projector — as the positions already do).
//
// Idempotence: re-applying events already applied, in log order, changes nothing (rows at stored
// seqs are skipped, max does not move, unread is recomputed to the same value, trimming keeps the
// same seqs).
//
// Atomicity: EXEC applies the whole transaction; a crash before it applies nothing. Redis does not
// roll back a transaction in which a command fails at run time (only possible if something else
// put a key of the wrong type under the prefix): the positions are then written back to their old
// values and the error returned, so the batch is re-applied — harmless, as every write is
// idempotent. (A crash in the instant between that EXEC and the write-back would leave the
// positions past the failed writes; such a model needs a replay.)
//
// history() answers only when conv_seq is known and the ZSET holds every seq of the requested
// range (a TTL'd or trimmed range gives nullopt and the query service asks the ReadModel).
//
// Not Redis Cluster ready: one transaction spans many conversations' and users' keys, which a
// cluster would need in one slot.
//
// Threading: apply(), positions(), drop() use one writer connection under a mutex; history()
// and dump() take a pooled connection.

#include "imlog/projections/redis_model.h"

#include <hiredis/hiredis.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>

#include "imlog/core/redis.h"
#include "imlog/engine/streams.h"
#include "timeline.h"

namespace imlog {


namespace {

// A stored message JSON's flags: its tail from ,"content": holds ,"recalled":true or
// ,"erased":true only past an emptied content (a quote inside content is escaped, so the
// patterns cannot match there).
bool has_flag(std::string_view tail, std::string_view flag) { return tail.find(flag) != std::string_view::npos; }

// The recalled form of a stored message JSON (timeline::message_json): its prefix up to
// ,"content": then ,"content":"","recalled":true, its erased flag if it had one, and }. Already
// recalled → unchanged.
std::string recalled_form(std::string_view m) {
  auto at = m.find(",\"content\":");
  if (at == std::string_view::npos) return std::string(m);
  bool erased = has_flag(m.substr(at), ",\"erased\":true");
  return std::string(m.substr(0, at)) + ",\"content\":\"\",\"recalled\":true" + (erased ? ",\"erased\":true" : "") + "}";
}

// The erased form of a stored message JSON (timeline::message_json): its prefix up to ,"content":
// then ,"content":"", its recalled flag if it had one, and ,"erased":true}.
std::string erased_form(std::string_view m) {
  auto at = m.find(",\"content\":");
  if (at == std::string_view::npos) return std::string(m);
  bool recalled = has_flag(m.substr(at), ",\"recalled\":true");
  return std::string(m.substr(0, at)) + ",\"content\":\"\"" + (recalled ? ",\"recalled\":true" : "") + ",\"erased\":true}";
}

// Whether a stored message JSON is a message (not a system row) sent by `user`.
bool is_message_of(std::string_view m, uint64_t user) {
  rapidjson::Document d;
  d.Parse(m.data(), m.size());
  if (d.HasParseError() || !d.IsObject()) return false;
  auto sender = d.FindMember("sender_id");
  auto type = d.FindMember("message_type");
  return sender != d.MemberEnd() && sender->value.IsUint64() && sender->value.GetUint64() == user &&
         type != d.MemberEnd() && type->value.IsString() && std::string_view(type->value.GetString()) != "system";
}

// The key families of the model (dump and drop touch nothing else under the prefix).
constexpr std::string_view kFamilies[] = {"hot_messages:", "msg_seqs:", "conv_seq:", "read_seq:", "unread:"};
constexpr std::string_view kPositionsKey = "projection:positions";

bool is_zset(std::string_view key) { return key.starts_with("hot_messages:") || key.starts_with("msg_seqs:"); }

// The seqs of `sorted` above `floor`.
size_t count_above(const std::vector<uint64_t>& sorted, uint64_t floor) {
  return static_cast<size_t>(sorted.end() - std::upper_bound(sorted.begin(), sorted.end(), floor));
}

// A glob pattern matching exactly the literal `s`.
std::string glob_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

template <class T>
bool parse_num(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// A stored position: "<offset>:<token>:<link>", or "<offset>:<token>" as written before epoch links
// were stored (the link is then 0, not known).
bool parse_position(std::string_view v, PartitionPosition& p) {
  auto first = v.find(':');
  if (first == std::string_view::npos || !parse_num(v.substr(0, first), p.next_offset)) return false;
  std::string_view rest = v.substr(first + 1);
  auto second = rest.find(':');
  if (second == std::string_view::npos) return parse_num(rest, p.token);
  return parse_num(rest.substr(0, second), p.token) && parse_num(rest.substr(second + 1), p.link);
}

// One conversation's part of a batch.
struct ConvBatch {
  struct Row {
    timeline::Row row;
    bool recalled = false;
  };
  std::string conv;
  uint64_t last_seq = 0;
  std::vector<Row> rows;          // sorted by seq once the batch is grouped
  std::vector<uint64_t> recalls;
  uint64_t expired = 0;           // the highest MessagesExpired through_seq of the batch
  // Pointer ops coalesced per user, in order of first appearance.
  struct Op {
    uint64_t user = 0;
    char op = 'm';
    uint64_t seq = 0;
  };
  std::vector<Op> ops;
  std::unordered_map<uint64_t, size_t> op_by_user;

  void move(const timeline::PointerMove& m) {
    auto [it, inserted] = op_by_user.try_emplace(m.user, ops.size());
    if (inserted) {
      ops.push_back({m.user, m.kind == timeline::PointerMove::Kind::leave ? 'd' : 'm', m.seq});
      return;
    }
    Op& o = ops[it->second];
    if (m.kind == timeline::PointerMove::Kind::leave) {
      o.op = 'd';
      o.seq = 0;
    } else if (o.op == 'd') {
      o.op = 's';  // left and came back within the batch: the pointer starts afresh
      o.seq = m.seq;
    } else {
      o.seq = std::max(o.seq, m.seq);
    }
  }
};

// The seq at and below which a conversation's rows are trimmed once the batch is applied: only
// the newest `hot` seqs are kept, of hot_messages and msg_seqs alike, and none the batch expired.
uint64_t window_floor(const ConvBatch& cb, uint64_t old_last, uint64_t hot) {
  uint64_t last = std::max(old_last, cb.last_seq);
  return std::max(last > hot ? last - hot : 0, cb.expired);
}

// The lowest read seq a participant may have once the batch is applied (read seqs only grow,
// or restart at a join within the batch); UINT64_MAX when the conversation has none.
uint64_t lowest_read(const ConvBatch& cb, const std::map<uint64_t, uint64_t>& stored_reads) {
  uint64_t lo = UINT64_MAX;
  for (const auto& [user, seq] : stored_reads) lo = std::min(lo, seq);
  for (const auto& o : cb.ops) {
    if (o.op != 'd') lo = std::min(lo, o.seq);
  }
  return lo;
}

MessageView parse_message(const rapidjson::Value& v) {
  MessageView m;
  auto get_str = [&](const char* k) -> std::string {
    auto it = v.FindMember(k);
    return it != v.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString(), it->value.GetStringLength())
                                                        : std::string();
  };
  auto get_u64 = [&](const char* k) -> uint64_t {
    auto it = v.FindMember(k);
    return it != v.MemberEnd() && it->value.IsUint64() ? it->value.GetUint64() : 0;
  };
  std::string id = get_str("message_id");
  parse_num(id, m.message_id);
  m.conversation_id = get_str("conversation_id");
  m.seq_id = get_u64("seq_id");
  m.sender_id = get_u64("sender_id");
  m.content = get_str("content");
  m.message_type = get_str("message_type");
  m.client_msg_id = get_str("client_msg_id");
  auto it = v.FindMember("created_at");
  m.created_at = it != v.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : 0;
  auto rc = v.FindMember("recalled");
  m.recalled = rc != v.MemberEnd() && rc->value.IsBool() && rc->value.GetBool();
  auto er = v.FindMember("erased");
  m.erased = er != v.MemberEnd() && er->value.IsBool() && er->value.GetBool();
  return m;
}

// Commands in the Redis protocol (RESP), written straight into one buffer that is handed to
// hiredis whole: no per-argument copies or formatting.
class Resp {
 public:
  void clear() {
    buf_.clear();
    commands_ = 0;
  }
  void command(size_t args) {
    buf_ += '*';
    number(args);
    ++commands_;
  }
  void arg(std::string_view a) {
    buf_ += '$';
    number(a.size());
    buf_.append(a);
    buf_ += "\r\n";
  }
  void arg(uint64_t v) {
    char tmp[24];
    auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, v);
    arg(std::string_view(tmp, static_cast<size_t>(end - tmp)));
  }
  [[nodiscard]] const std::string& data() const { return buf_; }
  [[nodiscard]] size_t commands() const { return commands_; }

 private:
  void number(uint64_t v) {
    char tmp[24];
    auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, v);
    buf_.append(tmp, end);
    buf_ += "\r\n";
  }
  std::string buf_;
  size_t commands_ = 0;
};

// Owns the strings a pipeline's arguments view; views stay valid as it grows.
class Arena {
 public:
  std::string_view add(std::string s) {
    store_.push_back(std::move(s));
    return store_.back();
  }

 private:
  std::deque<std::string> store_;
};

class RedisModelImpl final : public RedisModel {
 public:
  explicit RedisModelImpl(RedisConfig config)
      : config_(std::move(config)), endpoint_(endpoint_of(config_)), writer_(endpoint_), readers_(endpoint_, 8) {}

  Status init() { return writer_.connect(); }

  std::string_view name() const override { return "redis"; }

  Result<std::vector<PartitionPosition>> positions() override {
    std::lock_guard lock(writer_mu_);
    IMLOG_TRY(ensure(writer_));
    auto r = writer_.command({"HGETALL", key(kPositionsKey)}, "reading projection:positions");
    IMLOG_TRY(r);
    std::vector<PartitionPosition> out;
    const redisReply* rep = r->get();
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
      std::string_view f = reply_string(rep->element[i]), v = reply_string(rep->element[i + 1]);
      PartitionPosition p;
      if (!parse_num(f, p.partition) || !parse_position(v, p)) {
        return fail(RedisErrc::bad_reply, "Redis " + writer_.endpoint() + ": " + key(kPositionsKey) + " field `" +
                                              std::string(f) + "` = `" + std::string(v) +
                                              "` is not <partition> = <offset>:<token>:<link>; drop the model and replay");
      }
      out.push_back(p);
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.partition < b.partition; });
    return out;
  }

  // A batch with erasures (UserErased) is applied in parts: the events before each erasure (with
  // no positions), the erasure, and the rest with the batch's positions. A crash between parts
  // leaves the positions before the batch, and every part is idempotent, so the batch is simply
  // applied again.
  Status apply(const EventBatch& batch) override {
    bool erasure = std::any_of(batch.events.begin(), batch.events.end(), [](const EventBatch::Item& item) {
      return item.event != nullptr && item.event->event_type() == fb::Event::UserErased;
    });
    if (!erasure) return apply_part(batch);
    EventBatch part;
    for (const auto& item : batch.events) {
      const auto* gone = item.event ? item.event->event_as_UserErased() : nullptr;
      if (gone == nullptr) {
        part.events.push_back(item);
        continue;
      }
      IMLOG_TRY(apply_part(part));
      part.events.clear();
      IMLOG_TRY(erase_user(gone->user_id()));
    }
    part.positions = batch.positions;
    return apply_part(part);
  }

  // UserErased (schema 10): every stored message of the user, in every conversation's hot rows,
  // is rewritten to its erased form (timeline::message_json: empty content, "erased":true) — the
  // form a rebuild writes, as it cannot open their text. Scans the hot_messages keys: an erasure
  // is rare, and which conversations hold the user's newest messages is not kept.
  Status erase_user(uint64_t user) {
    std::lock_guard lock(writer_mu_);
    IMLOG_TRY(ensure(writer_));
    RedisConnection& c = writer_;
    auto keys = scan_keys(c, false);
    IMLOG_TRY(keys);
    const std::string what = "erasing the messages of user " + std::to_string(user);
    for (const auto& k : *keys) {
      if (!std::string_view(k).substr(config_.key_prefix.size()).starts_with("hot_messages:")) continue;
      auto r = c.command({"ZRANGE", k, "0", "-1", "WITHSCORES"}, what);
      IMLOG_TRY(r);
      const redisReply* rep = r->get();
      for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        std::string_view member = reply_string(rep->element[i]);
        if (!is_message_of(member, user)) continue;
        std::string erased = erased_form(member);
        if (erased == member) continue;
        std::string score(reply_string(rep->element[i + 1]));
        IMLOG_TRY(c.command({"MULTI"}, what));
        c.append({"ZREM", k, member});
        c.append({"ZADD", k, score, erased});
        c.append({"EXEC"});
        for (int n = 0; n < 3; ++n) IMLOG_TRY(c.read(what));
      }
    }
    return {};
  }

  Status apply_part(const EventBatch& batch) {
    // Group by conversation, in order of first appearance.
    std::vector<ConvBatch> convs;
    std::unordered_map<std::string_view, size_t> conv_index;
    std::vector<timeline::PointerMove> moves;
    for (const auto& item : batch.events) {
      if (!item.event) continue;
      const fb::EventEnvelope& e = *item.event;
      auto stream = sv(e.stream());
      auto ref = parse_stream(stream);
      if (!ref || !is_conversation(ref->kind)) continue;
      auto [it, inserted] = conv_index.try_emplace(stream, convs.size());
      if (inserted) {
        convs.emplace_back();
        convs.back().conv = std::string(stream);
      }
      ConvBatch& cb = convs[it->second];
      ConvBatch::Row row;
      if (timeline::row_of(e, item.text, item.erased, row.row)) {
        cb.last_seq = std::max(cb.last_seq, row.row.seq);
        cb.rows.push_back(std::move(row));
      }
      if (auto* rc = e.event_as_MessageRecalled()) {
        cb.recalls.push_back(rc->recalled_seq());  // marks a row of this batch, or rewrites a stored one
      }
      // Rows of the batch it expires are never added; stored ones are removed in step 3.
      cb.expired = std::max(cb.expired, timeline::expired_through(e));
      moves.clear();
      timeline::pointer_moves(e, *ref, moves);
      for (const auto& m : moves) cb.move(m);
    }
    for (auto& cb : convs) {
      // A stream's events arrive in seq order, so this is usually a check that finds them sorted.
      auto by_seq = [](const ConvBatch::Row& a, const ConvBatch::Row& b) { return a.row.seq < b.row.seq; };
      if (!std::is_sorted(cb.rows.begin(), cb.rows.end(), by_seq)) std::sort(cb.rows.begin(), cb.rows.end(), by_seq);
      for (uint64_t s : cb.recalls) {
        auto r = std::lower_bound(cb.rows.begin(), cb.rows.end(), s,
                                  [](const ConvBatch::Row& row, uint64_t seq) { return row.row.seq < seq; });
        if (r != cb.rows.end() && r->row.seq == s) r->recalled = true;
      }
    }

    std::lock_guard lock(writer_mu_);
    IMLOG_TRY(ensure(writer_));
    RedisConnection& c = writer_;
    const std::string what = "applying a batch of " + std::to_string(batch.events.size()) + " events";

    // ---- 1. read what the writes depend on: last seqs, read seqs, the stored positions ----
    Arena arena;
    std::vector<std::string_view> mget{"MGET"};
    for (const auto& cb : convs) mget.push_back(arena.add(key("conv_seq:" + cb.conv)));
    if (convs.size()) c.append(mget);
    for (const auto& cb : convs) c.append({"HGETALL", arena.add(key("read_seq:" + cb.conv))});
    const std::string positions_key = key(kPositionsKey);
    c.append({"HGETALL", positions_key});
    std::vector<uint64_t> old_last(convs.size(), 0);
    std::vector<std::map<uint64_t, uint64_t>> reads(convs.size());
    std::map<std::string, std::string> old_positions;
    Status read_status;
    auto take = [&](auto&& on_reply) {
      auto r = c.read(what);
      if (!r) {
        if (read_status) read_status = tl::unexpected(r.error());
        return;
      }
      on_reply(r->get());
    };
    if (convs.size()) {
      take([&](const redisReply* rep) {
        for (size_t i = 0; i < convs.size() && i < rep->elements; ++i) parse_num(reply_string(rep->element[i]), old_last[i]);
      });
    }
    for (size_t i = 0; i < convs.size(); ++i) {
      take([&](const redisReply* rep) {
        for (size_t j = 0; j + 1 < rep->elements; j += 2) {
          uint64_t user = 0, seq = 0;
          if (parse_num(reply_string(rep->element[j]), user) && parse_num(reply_string(rep->element[j + 1]), seq)) {
            reads[i][user] = seq;
          }
        }
      });
    }
    take([&](const redisReply* rep) {
      for (size_t j = 0; j + 1 < rep->elements; j += 2) {
        old_positions[std::string(reply_string(rep->element[j]))] = std::string(reply_string(rep->element[j + 1]));
      }
    });
    IMLOG_TRY(read_status);

    // ---- 2. rows at seqs already stored (a re-applied batch) and rows being recalled ----
    // Only then is a hot_messages range read; a batch of new messages skips this round trip.
    std::vector<std::map<uint64_t, std::vector<std::string>>> stored(convs.size());
    std::vector<size_t> probed;
    for (size_t i = 0; i < convs.size(); ++i) {
      const auto& cb = convs[i];
      uint64_t lo = UINT64_MAX, hi = 0;
      for (const auto& r : cb.rows) {
        if (r.row.seq <= old_last[i]) lo = std::min(lo, r.row.seq), hi = std::max(hi, r.row.seq);
      }
      for (uint64_t s : cb.recalls) lo = std::min(lo, s), hi = std::max(hi, s);
      if (lo > hi) continue;
      c.append({"ZRANGEBYSCORE", arena.add(key("hot_messages:" + cb.conv)), arena.add(std::to_string(lo)),
                arena.add(std::to_string(hi)), "WITHSCORES"});
      probed.push_back(i);
    }
    // The stored message seqs above the lowest read seq the batch leaves, for the unread counts.
    std::vector<std::vector<uint64_t>> stored_msgs(convs.size());
    std::vector<size_t> msg_probed;
    for (size_t i = 0; i < convs.size(); ++i) {
      uint64_t lo = std::max(window_floor(convs[i], old_last[i], config_.hot_messages), lowest_read(convs[i], reads[i]));
      if (lo >= old_last[i]) continue;
      c.append({"ZRANGEBYSCORE", arena.add(key("msg_seqs:" + convs[i].conv)), arena.add("(" + std::to_string(lo)),
                arena.add(std::to_string(old_last[i]))});
      msg_probed.push_back(i);
    }
    for (size_t i : probed) {
      take([&](const redisReply* rep) {
        for (size_t j = 0; j + 1 < rep->elements; j += 2) {
          uint64_t seq = 0;
          if (parse_num(reply_string(rep->element[j + 1]), seq)) {
            stored[i][seq].emplace_back(reply_string(rep->element[j]));
          }
        }
      });
    }
    for (size_t i : msg_probed) {
      take([&](const redisReply* rep) {
        for (size_t j = 0; j < rep->elements; ++j) {
          uint64_t seq = 0;
          if (parse_num(reply_string(rep->element[j]), seq)) stored_msgs[i].push_back(seq);
        }
      });
    }
    IMLOG_TRY(read_status);

    // ---- 3. the writes, and the positions, in one MULTI/EXEC ----
    Resp& w = resp_;
    w.clear();
    w.command(1);
    w.arg("MULTI");
    std::vector<std::pair<std::string, uint64_t>> grown;  // conv_seq key, new last seq
    std::map<uint64_t, std::vector<std::pair<std::string_view, uint64_t>>> unread_by_user;  // user → (conv, n)
    std::string json;
    std::vector<std::string_view> hset, hdel;
    const uint64_t ttl = static_cast<uint64_t>(config_.hot_ttl.count());
    for (size_t i = 0; i < convs.size(); ++i) {
      const auto& cb = convs[i];
      const std::string hot = key("hot_messages:" + cb.conv);
      auto is_stored = [&](uint64_t seq) {
        auto st = stored[i].find(seq);
        return st != stored[i].end() && !st->second.empty();
      };
      // Rows at or below `last - hot_messages` would be trimmed by this same transaction: a batch
      // with many messages of one conversation (a replay) writes only the newest window of them.
      const uint64_t last = std::max(old_last[i], cb.last_seq);
      const uint64_t keep_above = window_floor(cb, old_last[i], config_.hot_messages);
      auto wanted = [&](const ConvBatch::Row& r) { return r.row.seq > keep_above && !is_stored(r.row.seq); };
      size_t adds = 0, new_rows = 0;
      for (const auto& r : cb.rows) {
        new_rows += is_stored(r.row.seq) ? 0 : 1;  // insert-only
        adds += wanted(r) ? 1 : 0;
      }
      bool touched_hot = new_rows > 0;
      if (adds > 0) {
        w.command(2 + 2 * adds);
        w.arg("ZADD");
        w.arg(hot);
        for (const auto& r : cb.rows) {
          if (!wanted(r)) continue;
          w.arg(r.row.seq);
          json.clear();
          timeline::append_message_json(json, r.row.message_id, r.row.conversation, r.row.seq, r.row.sender,
                                        r.row.type, r.row.client_msg_id, r.row.created_at, r.row.content,
                                        {r.recalled, r.row.erased});
          w.arg(json);
        }
      }
      for (uint64_t s : cb.recalls) {
        auto st = stored[i].find(s);
        if (st == stored[i].end()) continue;  // not stored (trimmed, or added by this batch already recalled)
        for (const auto& m : st->second) {
          std::string r = recalled_form(m);
          if (r == m) continue;
          w.command(3);
          w.arg("ZREM");
          w.arg(hot);
          w.arg(m);
          w.command(4);
          w.arg("ZADD");
          w.arg(hot);
          w.arg(s);
          w.arg(r);
          touched_hot = true;
        }
      }
      // The message seqs above the old last (system rows are never unread), within the window.
      std::vector<uint64_t> new_msgs;
      for (const auto& r : cb.rows) {
        if (r.row.seq > old_last[i] && r.row.seq > keep_above && r.row.type != "system") new_msgs.push_back(r.row.seq);
      }
      const std::string msgs = key("msg_seqs:" + cb.conv);
      if (!new_msgs.empty()) {
        w.command(2 + 2 * new_msgs.size());
        w.arg("ZADD");
        w.arg(msgs);
        for (uint64_t seq : new_msgs) {
          w.arg(seq);
          w.arg(seq);
        }
      }
      if (cb.expired > 0) {  // expiry: every row at or below it goes, of both sets
        for (const std::string* z : {&hot, &msgs}) {
          w.command(4);
          w.arg("ZREMRANGEBYSCORE");
          w.arg(*z);
          w.arg("-inf");
          w.arg(cb.expired);
        }
      }
      if (touched_hot) {
        for (const std::string* z : {&hot, &msgs}) {
          if (last > config_.hot_messages) {
            // Keep the newest `hot_messages` seqs.
            w.command(4);
            w.arg("ZREMRANGEBYSCORE");
            w.arg(*z);
            w.arg("-inf");
            w.arg(last - config_.hot_messages);
          }
          w.command(3);
          w.arg("EXPIRE");
          w.arg(*z);
          w.arg(ttl);
        }
      }
      if (last > old_last[i]) grown.emplace_back(key("conv_seq:" + cb.conv), last);
      // Read seqs: apply the coalesced moves; every participant's unread is recomputed.
      auto& rs = reads[i];
      hset.clear();
      hdel.clear();
      for (const auto& o : cb.ops) {
        auto it = rs.find(o.user);
        if (o.op == 'd') {
          if (it != rs.end()) rs.erase(it);
          hdel.push_back(arena.add(std::to_string(o.user)));
          w.command(3);
          w.arg("HDEL");
          w.arg(key("unread:" + std::to_string(o.user)));
          w.arg(cb.conv);
          continue;
        }
        if (o.op == 's' || it == rs.end() || it->second < o.seq) {
          rs[o.user] = o.seq;
          hset.push_back(arena.add(std::to_string(o.user)));
          hset.push_back(arena.add(std::to_string(o.seq)));
        }
      }
      const std::string rkey = key("read_seq:" + cb.conv);
      for (auto* cmd : {&hdel, &hset}) {
        if (cmd->empty()) continue;
        w.command(2 + cmd->size());
        w.arg(cmd == &hdel ? "HDEL" : "HSET");
        w.arg(rkey);
        for (auto a : *cmd) w.arg(a);
      }
      if (cb.last_seq > 0 || !cb.ops.empty() || cb.expired > 0) {
        for (const auto& [user, read] : rs) {
          uint64_t floor = std::max(read, keep_above);
          unread_by_user[user].emplace_back(cb.conv, count_above(stored_msgs[i], floor) + count_above(new_msgs, floor));
        }
      }
    }
    if (!grown.empty()) {
      w.command(1 + 2 * grown.size());
      w.arg("MSET");
      for (const auto& [k, v] : grown) {
        w.arg(k);
        w.arg(v);
      }
    }
    std::string ukey = key("unread:");
    const size_t ukey_len = ukey.size();
    for (const auto& [user, fields] : unread_by_user) {
      ukey.resize(ukey_len);
      ukey += std::to_string(user);
      w.command(2 + 2 * fields.size());
      w.arg("HSET");
      w.arg(ukey);
      for (const auto& [conv, n] : fields) {
        w.arg(conv);
        w.arg(n);
      }
    }
    if (!batch.positions.empty()) {  // last: see the file comment
      w.command(2 + 2 * batch.positions.size());
      w.arg("HSET");
      w.arg(positions_key);
      for (const auto& p : batch.positions) {
        w.arg(static_cast<uint64_t>(p.partition));
        w.arg(std::to_string(p.next_offset) + ":" + std::to_string(p.token) + ":" + std::to_string(p.link));
      }
    }
    const size_t ncmds = w.commands() - 1;
    w.command(1);
    w.arg("EXEC");
    c.append_raw(w.data(), w.commands());
    Status queued;
    for (size_t i = 0; i < ncmds + 1; ++i) {  // +OK, then +QUEUED per command
      auto r = c.read(what);
      if (!r && c.lost()) return tl::unexpected(r.error());
      if (!r && queued) queued = tl::unexpected(r.error());
    }
    auto exec = c.read(what);
    IMLOG_TRY(queued);  // a command refused at queue time: EXEC aborted, nothing applied
    IMLOG_TRY(exec);
    const redisReply* rep = exec->get();
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != ncmds) {
      return fail(RedisErrc::bad_reply, "Redis " + c.endpoint() + ": " + what + ": EXEC did not run the batch");
    }
    for (size_t i = 0; i < rep->elements; ++i) {
      if (rep->element[i]->type != REDIS_REPLY_ERROR) continue;
      // Redis does not roll back a transaction whose command failed at run time (a key of the
      // wrong type under the prefix): put the positions back, so the batch is applied again —
      // every write is idempotent, so what did run is harmless.
      std::string err = "Redis " + c.endpoint() + ": " + what + ": " + std::string(reply_string(rep->element[i]));
      auto restored = restore_positions(c, batch, old_positions);
      if (!restored) {
        return fail(RedisErrc::command_failed, err + "; restoring the positions failed too (" +
                                                   restored.error().to_string() + "): drop the model and replay");
      }
      return fail(RedisErrc::command_failed, err + " (positions left where they were; the batch is re-applied on retry)");
    }
    return {};
  }

  Status dump(const RowVisitor& visit) override {
    auto conn = readers_.acquire();
    IMLOG_TRY(conn);
    auto keys = scan_keys(**conn, /*with_positions=*/false);
    if (!keys) return tl::unexpected(keys.error());
    std::sort(keys->begin(), keys->end());
    const size_t plen = config_.key_prefix.size();
    Status status;
    constexpr size_t kChunk = 256;
    for (size_t done = 0; done < keys->size() && status; done += kChunk) {
      size_t n = std::min(kChunk, keys->size() - done);
      for (size_t i = done; i < done + n; ++i) {
        std::string_view k = std::string_view((*keys)[i]).substr(plen);
        if (is_zset(k)) {
          (*conn)->append({"ZRANGE", (*keys)[i], "0", "-1", "WITHSCORES"});
        } else if (k.starts_with("conv_seq:")) {
          (*conn)->append({"GET", (*keys)[i]});
        } else {
          (*conn)->append({"HGETALL", (*keys)[i]});
        }
      }
      bool stop = false;
      for (size_t i = done; i < done + n; ++i) {
        auto r = (*conn)->read("dumping " + (*keys)[i]);
        if (!r) {
          status = tl::unexpected(r.error());
          continue;  // drain the pipeline
        }
        if (stop || !status) continue;
        std::string_view k = std::string_view((*keys)[i]).substr(plen);
        const redisReply* rep = r->get();
        std::string value;
        if (rep->type == REDIS_REPLY_NIL) continue;  // expired since the scan
        if (is_zset(k)) {
          for (size_t j = 0; j + 1 < rep->elements; j += 2) {
            value += reply_string(rep->element[j + 1]);
            value += ':';
            value += reply_string(rep->element[j]);
            value += '\n';
          }
        } else if (k.starts_with("conv_seq:")) {
          value = reply_string(rep);
        } else {
          std::vector<std::string> lines;
          for (size_t j = 0; j + 1 < rep->elements; j += 2) {
            lines.push_back(std::string(reply_string(rep->element[j])) + "=" + std::string(reply_string(rep->element[j + 1])));
          }
          std::sort(lines.begin(), lines.end());
          for (const auto& l : lines) value += l + "\n";
        }
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 0) continue;  // gone since the scan
        if (!visit(k, value)) stop = true;
      }
      if (stop) break;
    }
    return status;
  }

  Status drop() override {
    std::lock_guard lock(writer_mu_);
    IMLOG_TRY(ensure(writer_));
    auto keys = scan_keys(writer_, /*with_positions=*/true);
    IMLOG_TRY(keys);
    constexpr size_t kChunk = 512;
    for (size_t done = 0; done < keys->size(); done += kChunk) {
      std::vector<std::string_view> args{"UNLINK"};
      for (size_t i = done; i < std::min(keys->size(), done + kChunk); ++i) args.push_back((*keys)[i]);
      IMLOG_TRY(writer_.command(args, "dropping the model's keys"));
    }
    return {};
  }

  Result<std::optional<HistoryPage>> history(std::string_view conversation, const HistoryRange& range) override {
    for (int attempt = 0;; ++attempt) {
      auto conn = readers_.acquire();
      IMLOG_TRY(conn);
      auto out = history_on(**conn, conversation, range);
      // A pooled connection may have died while idle (a server restart): retry once.
      bool lost = (*conn)->lost();
      if (!out && lost && attempt == 0) continue;
      return out;
    }
  }

 private:
  // Puts back the positions a failed batch overwrote (HSET of the old values, HDEL of new fields).
  Status restore_positions(RedisConnection& c, const EventBatch& batch, const std::map<std::string, std::string>& old) {
    std::vector<std::string> set{"HSET", key(kPositionsKey)}, del{"HDEL", key(kPositionsKey)};
    for (const auto& p : batch.positions) {
      std::string f = std::to_string(p.partition);
      auto it = old.find(f);
      if (it != old.end()) {
        set.push_back(f);
        set.push_back(it->second);
      } else {
        del.push_back(f);
      }
    }
    for (auto* cmd : {&set, &del}) {
      if (cmd->size() <= 2) continue;
      std::vector<std::string_view> args(cmd->begin(), cmd->end());
      IMLOG_TRY(c.command(args, "restoring projection:positions"));
    }
    return {};
  }

  std::string key(std::string_view suffix) const { return config_.key_prefix + std::string(suffix); }

  Status ensure(RedisConnection& c) {
    if (c.broken()) return c.connect();
    return {};
  }

  // Every key of the model's families under the prefix (and the positions key if asked).
  Result<std::vector<std::string>> scan_keys(RedisConnection& c, bool with_positions) {
    std::vector<std::string> out;
    std::string cursor = "0";
    std::string pattern = glob_escape(config_.key_prefix) + "*";
    const size_t plen = config_.key_prefix.size();
    do {
      auto r = c.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}, "scanning keys");
      IMLOG_TRY(r);
      const redisReply* rep = r->get();
      if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
        return fail(RedisErrc::bad_reply, "Redis " + c.endpoint() + ": SCAN returned an unexpected reply");
      }
      cursor = std::string(reply_string(rep->element[0]));
      for (size_t i = 0; i < rep->element[1]->elements; ++i) {
        std::string_view k = reply_string(rep->element[1]->element[i]);
        std::string_view rest = k.substr(plen);
        bool ours = with_positions && rest == kPositionsKey;
        for (auto f : kFamilies) ours = ours || rest.starts_with(f);
        if (ours) out.emplace_back(k);
      }
    } while (cursor != "0");
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());  // SCAN may repeat a key
    return out;
  }

  Result<std::optional<HistoryPage>> history_on(RedisConnection& c, std::string_view conversation,
                                                const HistoryRange& range) {
    std::string conv(conversation);
    auto seq = c.command({"GET", key("conv_seq:" + conv)}, "reading conv_seq:" + conv);
    IMLOG_TRY(seq);
    if ((*seq)->type == REDIS_REPLY_NIL) return std::optional<HistoryPage>();
    uint64_t last = 0;
    if (!parse_num(reply_string(seq->get()), last)) {
      return fail(RedisErrc::bad_reply, "Redis " + c.endpoint() + ": " + key("conv_seq:" + conv) + " is not a number");
    }
    // The seqs of the range are [lo, hi] (dense from 1); the page is [a, b] within it.
    HistoryPage page;
    if (range.after_seq >= last) return std::optional<HistoryPage>(page);
    const uint64_t lo = range.after_seq + 1;
    const uint64_t hi = range.before_seq > 0 ? std::min(range.before_seq - 1, last) : last;
    if (lo > hi) return std::optional<HistoryPage>(page);
    if (range.limit == 0) {
      page.has_more = true;
      return std::optional<HistoryPage>(page);
    }
    uint64_t a = 0, b = 0;
    if (range.forward) {
      a = lo;
      b = hi - lo >= range.limit ? lo + range.limit - 1 : hi;
      page.has_more = b < hi;
    } else {
      b = hi;
      a = hi - lo >= range.limit ? hi - range.limit + 1 : lo;
      page.has_more = a > lo;
    }
    auto rows = c.command({"ZRANGEBYSCORE", key("hot_messages:" + conv), std::to_string(a), std::to_string(b)},
                          "reading hot_messages:" + conv);
    IMLOG_TRY(rows);
    const redisReply* rep = rows->get();
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != b - a + 1) return std::optional<HistoryPage>();
    page.messages.reserve(rep->elements);
    for (size_t i = 0; i < rep->elements; ++i) {
      rapidjson::Document d;
      auto s = reply_string(rep->element[i]);
      d.Parse(s.data(), s.size());
      if (d.HasParseError() || !d.IsObject()) {
        return fail(RedisErrc::bad_reply, "Redis " + c.endpoint() + ": a member of " + key("hot_messages:" + conv) +
                                              " is not a message object; drop the model and replay");
      }
      page.messages.push_back(parse_message(d));
      if (page.messages.back().seq_id != a + i) return std::optional<HistoryPage>();  // not the dense range
    }
    return std::optional<HistoryPage>(std::move(page));
  }

  static RedisEndpoint endpoint_of(const RedisConfig& c) {
    RedisEndpoint e;
    e.host = c.host;
    e.port = c.port;
    e.password = c.password;
    e.db = c.db;
    e.connect_timeout = std::chrono::seconds(5);
    e.io_timeout = std::chrono::seconds(300);  // a large batch's transaction, or a dump
    return e;
  }

  RedisConfig config_;
  RedisEndpoint endpoint_;
  std::mutex writer_mu_;
  RedisConnection writer_;  // applies batches (under writer_mu_)
  Resp resp_;               // the writer's transaction buffer, reused (under writer_mu_)
  RedisPool readers_;       // dumps and history reads
};

}  // namespace

Result<std::unique_ptr<RedisModel>> open_redis_model(const RedisConfig& config) {
  if (config.hot_messages == 0) {
    return fail(RedisErrc::bad_config, "redis.hot_messages is 0: set it to at least 1 (default 300)");
  }
  auto m = std::make_unique<RedisModelImpl>(config);
  IMLOG_TRY(m->init());
  return std::unique_ptr<RedisModel>(std::move(m));
}

}  // namespace imlog
