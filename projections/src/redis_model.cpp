// The Redis model (redis_model.h): the seeds' cache layout, built from im.events.
//
// Keys (every one under the configured prefix P):
//   hot_messages:<conv>   ZSET score = seq, member = the message JSON (timeline::message_json);
//                         the newest `hot_messages` rows, TTL hot_ttl, refreshed on each write
//   conv_seq:<conv>       STRING, the conversation's last seq (no TTL)
//   read_seq:<conv>       HASH user → read seq, one field per participant (timeline.h rules)
//   unread:<user>         HASH conversation → unread count = conv_seq - read seq
//   projection:positions  HASH partition → "<next_offset>:<token>"
//
// A batch
//   The events are grouped per conversation on the client (rows to add, recalls, read pointer
//   moves coalesced per user), and the whole batch is ONE Lua script call (EVAL, inside
//   MULTI/EXEC) that writes every conversation and, last, the positions. Redis runs a script
//   atomically, and if it fails half-way (a server fault: OOM, a foreign key of the wrong type)
//   the positions — written last — are not stored, so the batch is applied again from the old
//   positions; since every step is idempotent that loses and duplicates nothing. The script is
//   needed because the writes depend on what is stored: unread counts are *derived*
//   (conv_seq - read seq, recomputed for the conversation's participants) instead of HINCRBY'd,
//   which would count a re-applied event twice; conv_seq and read seqs only grow (max); a row is
//   added only where its seq is free (insert-only, like the MySQL messages table); a recall
//   rewrites whatever member sits at the recalled seq to its recalled form.
//
// Idempotence: re-applying events already applied, in log order, changes nothing (ZADD of a
// present seq is skipped, max does not move, unread is recomputed to the same value, trimming
// keeps the newest rows).
//
// history() answers only when conv_seq is known and the ZSET holds every seq of the requested
// range (a TTL'd or trimmed range gives nullopt and the query service asks the ReadModel).
//
// Not Redis Cluster ready: the script writes keys it computes (one conversation's keys and its
// participants' unread hashes), which a cluster would need in one slot.
//
// Threading: apply(), positions(), drop() use one writer connection under a mutex; history()
// and dump() take a pooled connection.

#include "imlog/projections/redis_model.h"

#include <hiredis/hiredis.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <mutex>
#include <unordered_map>

#include "imlog/engine/streams.h"
#include "timeline.h"

namespace imlog {

enum class RedisErrc {
  unavailable = 1,  // cannot connect, or the connection broke (retryable)
  command_failed,   // the server answered an error
  bad_reply,        // a reply or stored value of an unexpected shape
  bad_config,       // a RedisConfig field is unusable
};

}  // namespace imlog

template <>
struct std::is_error_code_enum<imlog::RedisErrc> : std::true_type {};

namespace imlog {
namespace {

class RedisCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "redis"; }
  std::string message(int c) const override {
    switch (static_cast<RedisErrc>(c)) {
      case RedisErrc::unavailable: return "Redis unavailable";
      case RedisErrc::command_failed: return "Redis command failed";
      case RedisErrc::bad_reply: return "unexpected Redis reply";
      case RedisErrc::bad_config: return "bad Redis configuration";
    }
    return "Redis error";
  }
};

const std::error_category& redis_category() {
  static const RedisCategory c;
  return c;
}

}  // namespace

std::error_code make_error_code(RedisErrc e) { return {static_cast<int>(e), redis_category()}; }

namespace {

struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextFree>;
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

std::string_view reply_str(const redisReply* r) { return r && r->str ? std::string_view(r->str, r->len) : std::string_view(); }

// The batch script (see the file comment). ARGV:
//   1 key prefix, 2 hot cap, 3 hot ttl (s), 4 number of conversations, then per conversation:
//     conv, last seq of the batch ("0": none), #rows, #recalls, #pointer ops,
//     rows: seq, json ...; recalls: seq ...; pointer ops: user, op, seq ... where op is
//     m (raise to max), s (set: re-joined after leaving in this batch), d (no longer a participant);
//   then #positions, then partition, "offset:token" ...
constexpr const char* kBatchScript = R"lua(
local P = ARGV[1]
local cap = tonumber(ARGV[2])
local ttl = ARGV[3]
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local conv, last_s = ARGV[i], ARGV[i + 1]
  local newlast = tonumber(last_s)
  local na, nr, np = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  i = i + 5
  local hot = P .. 'hot_messages:' .. conv
  if na > 0 then
    -- insert-only: skip seqs that already hold a row
    local taken = {}
    local present = redis.call('ZRANGEBYSCORE', hot, ARGV[i], ARGV[i + 2 * (na - 1)], 'WITHSCORES')
    for k = 2, #present, 2 do taken[present[k]] = true end
    local args = {}
    for k = 0, na - 1 do
      local s = ARGV[i + 2 * k]
      if not taken[s] then
        args[#args + 1] = s
        args[#args + 1] = ARGV[i + 2 * k + 1]
        if #args >= 1000 then
          redis.call('ZADD', hot, unpack(args))
          args = {}
        end
      end
    end
    if #args > 0 then redis.call('ZADD', hot, unpack(args)) end
    i = i + 2 * na
  end
  for _ = 1, nr do
    local s = ARGV[i]
    i = i + 1
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', hot, s, s)) do
      local at = string.find(m, ',"content":', 1, true)
      if at then
        local r = string.sub(m, 1, at - 1) .. ',"content":"","recalled":true}'
        if r ~= m then
          redis.call('ZREM', hot, m)
          redis.call('ZADD', hot, s, r)
        end
      end
    end
  end
  if na + nr > 0 then
    redis.call('ZREMRANGEBYRANK', hot, 0, -(cap + 1))
    redis.call('EXPIRE', hot, ttl)
  end
  local seqkey = P .. 'conv_seq:' .. conv
  local last = tonumber(redis.call('GET', seqkey) or '0')
  if newlast > last then
    redis.call('SET', seqkey, last_s)
    last = newlast
  end
  local rkey = P .. 'read_seq:' .. conv
  for _ = 1, np do
    local user, op, s = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    i = i + 3
    if op == 'd' then
      redis.call('HDEL', rkey, user)
      redis.call('HDEL', P .. 'unread:' .. user, conv)
    elseif op == 's' then
      redis.call('HSET', rkey, user, s)
    else
      local cur = redis.call('HGET', rkey, user)
      if (not cur) or tonumber(s) > tonumber(cur) then redis.call('HSET', rkey, user, s) end
    end
  end
  if newlast > 0 or np > 0 then
    local all = redis.call('HGETALL', rkey)
    for k = 1, #all, 2 do
      local u = last - tonumber(all[k + 1])
      if u < 0 then u = 0 end
      redis.call('HSET', P .. 'unread:' .. all[k], conv, string.format('%d', u))
    end
  end
end
local npos = tonumber(ARGV[i])
i = i + 1
for _ = 1, npos do
  redis.call('HSET', P .. 'projection:positions', ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 1
)lua";

// The key families of the model (dump and drop touch nothing else under the prefix).
constexpr std::string_view kFamilies[] = {"hot_messages:", "conv_seq:", "read_seq:", "unread:"};
constexpr std::string_view kPositionsKey = "projection:positions";

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

// One connection. Not thread-safe.
class RedisConn {
 public:
  RedisConn(const RedisConfig& config) : config_(config) {}

  [[nodiscard]] bool broken() const { return !ctx_ || ctx_->err != 0; }

  Status connect() {
    timeval tv{5, 0};
    ctx_.reset(redisConnectWithTimeout(config_.host.c_str(), config_.port, tv));
    if (!ctx_ || ctx_->err) {
      std::string why = ctx_ ? ctx_->errstr : "out of memory";
      ctx_.reset();
      return fail(RedisErrc::unavailable,
                  "Redis " + endpoint() + " is unreachable: " + why +
                      "; check that the server is up and redis.host/redis.port point at it",
                  true);
    }
    timeval io{300, 0};
    redisSetTimeout(ctx_.get(), io);
    if (!config_.password.empty()) IMLOG_TRY(command({"AUTH", config_.password}, "authenticating"));
    if (config_.db != 0) IMLOG_TRY(command({"SELECT", std::to_string(config_.db)}, "selecting db"));
    return {};
  }

  // Appends a command to the pipeline.
  void append(const std::vector<std::string_view>& args) {
    argv_.clear();
    lens_.clear();
    for (auto a : args) {
      argv_.push_back(a.data());
      lens_.push_back(a.size());
    }
    redisAppendCommandArgv(ctx_.get(), static_cast<int>(args.size()), argv_.data(), lens_.data());
  }

  // The next reply of the pipeline; an error reply is an Error.
  Result<ReplyPtr> read(std::string_view what) {
    void* r = nullptr;
    if (redisGetReply(ctx_.get(), &r) != REDIS_OK || r == nullptr) {
      return fail(RedisErrc::unavailable,
                  "Redis " + endpoint() + " connection lost while " + std::string(what) + ": " + ctx_->errstr, true);
    }
    ReplyPtr reply(static_cast<redisReply*>(r));
    if (reply->type == REDIS_REPLY_ERROR) {
      return fail(RedisErrc::command_failed,
                  "Redis " + endpoint() + ": " + std::string(what) + ": " + std::string(reply_str(reply.get())));
    }
    return reply;
  }

  Result<ReplyPtr> command(const std::vector<std::string_view>& args, std::string_view what) {
    append(args);
    return read(what);
  }

  [[nodiscard]] std::string endpoint() const { return config_.host + ":" + std::to_string(config_.port); }

 private:
  const RedisConfig& config_;
  ContextPtr ctx_;
  std::vector<const char*> argv_;
  std::vector<size_t> lens_;
};

// One conversation's part of a batch.
struct ConvBatch {
  struct Row {
    timeline::Row row;
    bool recalled = false;
  };
  std::string conv;
  uint64_t last_seq = 0;
  std::vector<Row> rows;
  std::unordered_map<uint64_t, size_t> row_by_seq;
  std::vector<uint64_t> recalls;
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
  return m;
}

class RedisModelImpl final : public RedisModel {
 public:
  explicit RedisModelImpl(RedisConfig config) : config_(std::move(config)) {}

  Status init() {
    writer_ = std::make_unique<RedisConn>(config_);
    return writer_->connect();
  }

  std::string_view name() const override { return "redis"; }

  Result<std::vector<PartitionPosition>> positions() override {
    std::lock_guard lock(writer_mu_);
    IMLOG_TRY(ensure(*writer_));
    auto r = writer_->command({"HGETALL", key(kPositionsKey)}, "reading projection:positions");
    IMLOG_TRY(r);
    std::vector<PartitionPosition> out;
    const redisReply* rep = r->get();
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
      std::string_view f = reply_str(rep->element[i]), v = reply_str(rep->element[i + 1]);
      PartitionPosition p;
      auto colon = v.find(':');
      if (!parse_num(f, p.partition) || colon == std::string_view::npos ||
          !parse_num(v.substr(0, colon), p.next_offset) || !parse_num(v.substr(colon + 1), p.token)) {
        return fail(RedisErrc::bad_reply, "Redis " + writer_->endpoint() + ": " + key(kPositionsKey) + " field `" +
                                              std::string(f) + "` = `" + std::string(v) +
                                              "` is not <partition> = <offset>:<token>; drop the model and replay");
      }
      out.push_back(p);
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.partition < b.partition; });
    return out;
  }

  Status apply(const EventBatch& batch) override {
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
      if (timeline::row_of(e, row.row)) {
        cb.last_seq = std::max(cb.last_seq, row.row.seq);
        cb.row_by_seq[row.row.seq] = cb.rows.size();
        cb.rows.push_back(std::move(row));
      }
      if (auto* rc = e.event_as_MessageRecalled()) {
        auto r = cb.row_by_seq.find(rc->recalled_seq());
        if (r != cb.row_by_seq.end()) cb.rows[r->second].recalled = true;
        cb.recalls.push_back(rc->recalled_seq());  // also rewrites a row stored before
      }
      moves.clear();
      timeline::pointer_moves(e, *ref, moves);
      for (const auto& m : moves) cb.move(m);
    }

    // The script's arguments (see kBatchScript). Strings live in `store`; `args` views them.
    std::vector<std::string> store;
    store.reserve(8 + convs.size() * 8 + batch.events.size() * 2 + batch.positions.size() * 2);
    auto push = [&](std::string s) { store.push_back(std::move(s)); };
    push("EVAL");
    push(kBatchScript);
    push("0");
    push(config_.key_prefix);
    push(std::to_string(config_.hot_messages));
    push(std::to_string(config_.hot_ttl.count()));
    push(std::to_string(convs.size()));
    for (auto& cb : convs) {
      push(cb.conv);
      push(std::to_string(cb.last_seq));
      push(std::to_string(cb.rows.size()));
      push(std::to_string(cb.recalls.size()));
      push(std::to_string(cb.ops.size()));
      // Rows in seq order, so the script's range probe spans [first, last].
      std::sort(cb.rows.begin(), cb.rows.end(), [](auto& a, auto& b) { return a.row.seq < b.row.seq; });
      for (const auto& r : cb.rows) {
        push(std::to_string(r.row.seq));
        push(timeline::message_json(r.row.message_id, r.row.conversation, r.row.seq, r.row.sender, r.row.type,
                                    r.row.client_msg_id, r.row.created_at, r.row.content, r.recalled));
      }
      for (uint64_t s : cb.recalls) push(std::to_string(s));
      for (const auto& o : cb.ops) {
        push(std::to_string(o.user));
        push(std::string(1, o.op));
        push(std::to_string(o.seq));
      }
    }
    push(std::to_string(batch.positions.size()));
    for (const auto& p : batch.positions) {
      push(std::to_string(p.partition));
      push(std::to_string(p.next_offset) + ":" + std::to_string(p.token));
    }
    std::vector<std::string_view> args(store.begin(), store.end());

    std::lock_guard lock(writer_mu_);
    IMLOG_TRY(ensure(*writer_));
    std::string what = "applying a batch of " + std::to_string(batch.events.size()) + " events";
    writer_->append({"MULTI"});
    writer_->append(args);
    writer_->append({"EXEC"});
    auto multi = writer_->read(what);
    auto queued = writer_->read(what);
    auto exec = writer_->read(what);
    for (auto* r : {&multi, &queued, &exec}) {
      if (!*r) return tl::unexpected(r->error());
    }
    const redisReply* rep = exec->get();
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 1) {
      return fail(RedisErrc::bad_reply, "Redis " + writer_->endpoint() + ": " + what + ": EXEC did not run the batch");
    }
    if (rep->element[0]->type == REDIS_REPLY_ERROR) {
      // The script stopped before storing the positions: the batch will be applied again.
      return fail(RedisErrc::command_failed, "Redis " + writer_->endpoint() + ": " + what + ": " +
                                                 std::string(reply_str(rep->element[0])) +
                                                 " (positions not advanced; the batch is re-applied on retry)");
    }
    return {};
  }

  Status dump(const RowVisitor& visit) override {
    auto conn = acquire();
    IMLOG_TRY(conn);
    auto keys = scan_keys(**conn, /*with_positions=*/false);
    if (!keys) {
      release(std::move(*conn));
      return tl::unexpected(keys.error());
    }
    std::sort(keys->begin(), keys->end());
    const size_t plen = config_.key_prefix.size();
    Status status;
    constexpr size_t kChunk = 256;
    for (size_t done = 0; done < keys->size() && status; done += kChunk) {
      size_t n = std::min(kChunk, keys->size() - done);
      for (size_t i = done; i < done + n; ++i) {
        std::string_view k = std::string_view((*keys)[i]).substr(plen);
        if (k.starts_with("hot_messages:")) {
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
        if (k.starts_with("hot_messages:")) {
          for (size_t j = 0; j + 1 < rep->elements; j += 2) {
            value += reply_str(rep->element[j + 1]);
            value += ':';
            value += reply_str(rep->element[j]);
            value += '\n';
          }
        } else if (k.starts_with("conv_seq:")) {
          value = reply_str(rep);
        } else {
          std::vector<std::string> lines;
          for (size_t j = 0; j + 1 < rep->elements; j += 2) {
            lines.push_back(std::string(reply_str(rep->element[j])) + "=" + std::string(reply_str(rep->element[j + 1])));
          }
          std::sort(lines.begin(), lines.end());
          for (const auto& l : lines) value += l + "\n";
        }
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 0) continue;  // gone since the scan
        if (!visit(k, value)) stop = true;
      }
      if (stop) break;
    }
    release(std::move(*conn));
    return status;
  }

  Status drop() override {
    std::lock_guard lock(writer_mu_);
    IMLOG_TRY(ensure(*writer_));
    auto keys = scan_keys(*writer_, /*with_positions=*/true);
    IMLOG_TRY(keys);
    constexpr size_t kChunk = 512;
    for (size_t done = 0; done < keys->size(); done += kChunk) {
      std::vector<std::string_view> args{"UNLINK"};
      for (size_t i = done; i < std::min(keys->size(), done + kChunk); ++i) args.push_back((*keys)[i]);
      IMLOG_TRY(writer_->command(args, "dropping the model's keys"));
    }
    return {};
  }

  Result<std::optional<HistoryPage>> history(std::string_view conversation, uint64_t after_seq, uint64_t before_seq,
                                             uint32_t limit) override {
    for (int attempt = 0;; ++attempt) {
      auto conn = acquire();
      IMLOG_TRY(conn);
      auto out = history_on(**conn, conversation, after_seq, before_seq, limit);
      bool lost = (*conn)->broken();
      release(std::move(*conn));
      // A pooled connection may have died while idle (a server restart): retry once.
      if (!out && lost && attempt == 0) continue;
      return out;
    }
  }

 private:
  std::string key(std::string_view suffix) const { return config_.key_prefix + std::string(suffix); }

  Status ensure(RedisConn& c) {
    if (c.broken()) return c.connect();
    return {};
  }

  Result<std::unique_ptr<RedisConn>> acquire() {
    {
      std::lock_guard lock(pool_mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    auto c = std::make_unique<RedisConn>(config_);
    IMLOG_TRY(c->connect());
    return c;
  }

  void release(std::unique_ptr<RedisConn> c) {
    if (c->broken()) return;
    std::lock_guard lock(pool_mu_);
    if (idle_.size() < 8) idle_.push_back(std::move(c));
  }

  // Every key of the model's families under the prefix (and the positions key if asked).
  Result<std::vector<std::string>> scan_keys(RedisConn& c, bool with_positions) {
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
      cursor = std::string(reply_str(rep->element[0]));
      for (size_t i = 0; i < rep->element[1]->elements; ++i) {
        std::string_view k = reply_str(rep->element[1]->element[i]);
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

  Result<std::optional<HistoryPage>> history_on(RedisConn& c, std::string_view conversation, uint64_t after_seq,
                                                uint64_t before_seq, uint32_t limit) {
    std::string conv(conversation);
    auto seq = c.command({"GET", key("conv_seq:" + conv)}, "reading conv_seq:" + conv);
    IMLOG_TRY(seq);
    if ((*seq)->type == REDIS_REPLY_NIL) return std::optional<HistoryPage>();
    uint64_t last = 0;
    if (!parse_num(reply_str(seq->get()), last)) {
      return fail(RedisErrc::bad_reply, "Redis " + c.endpoint() + ": " + key("conv_seq:" + conv) + " is not a number");
    }
    // The seq range [a, b] to return and whether more lie beyond it (seqs are dense from 1).
    HistoryPage page;
    uint64_t a = 0, b = 0;
    if (after_seq > 0) {
      uint64_t hi = before_seq > 0 ? std::min(before_seq - 1, last) : last;
      a = after_seq + 1;
      if (a > hi) return std::optional<HistoryPage>(page);
      b = limit == 0 ? a - 1 : std::min(hi, a + limit - 1);
      page.has_more = b < hi;
    } else {
      uint64_t hi = before_seq > 0 ? std::min(before_seq - 1, last) : last;
      if (hi == 0) return std::optional<HistoryPage>(page);
      if (limit == 0) {
        page.has_more = true;
        return std::optional<HistoryPage>(page);
      }
      b = hi;
      a = hi >= limit ? hi - limit + 1 : 1;
      page.has_more = a > 1;
    }
    if (a > b) return std::optional<HistoryPage>(page);
    auto rows = c.command({"ZRANGEBYSCORE", key("hot_messages:" + conv), std::to_string(a), std::to_string(b)},
                          "reading hot_messages:" + conv);
    IMLOG_TRY(rows);
    const redisReply* rep = rows->get();
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != b - a + 1) return std::optional<HistoryPage>();
    page.messages.reserve(rep->elements);
    for (size_t i = 0; i < rep->elements; ++i) {
      rapidjson::Document d;
      auto s = reply_str(rep->element[i]);
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

  RedisConfig config_;
  std::mutex writer_mu_;
  std::unique_ptr<RedisConn> writer_;
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<RedisConn>> idle_;
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
