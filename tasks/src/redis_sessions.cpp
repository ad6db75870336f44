// The Redis session registry (redis_sessions.h has the key layout and the failure rules).

#include "imlog/tasks/redis_sessions.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <functional>
#include <map>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/redis.h"

namespace imlog {
namespace {

std::atomic<uint64_t> g_failures{0};

// Connect and heartbeat alike: a heartbeat of a session Redis lost (a restart without persistence,
// a gap longer than the ttl) registers it again. Safe because a session's connect, heartbeats and
// disconnect come in order from its gateway, so no heartbeat follows the disconnect.
// KEYS: sess, online, presence. ARGV: field, expiry, ttl ms, now, presence ttl ms, user.
constexpr std::string_view kConnectScript = R"lua(
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[6])
redis.call('HSET', KEYS[3], 'seen', ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 1
)lua";

// KEYS: sess, online, presence. ARGV: field, now, presence ttl ms, user. The user's online score
// becomes the latest expiry left, or the user leaves the set.
constexpr std::string_view kDisconnectScript = R"lua(
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'seen', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
local best = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local e = tonumber(v)
  if e and e > tonumber(ARGV[2]) and e > best then best = e end
end
if best == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[4])
else
  redis.call('ZADD', KEYS[2], best, ARGV[4])
end
return 1
)lua";

// KEYS: sess. ARGV: now, fields... Deletes each field still expired (a refreshed one stays).
constexpr std::string_view kCleanScript = R"lua(
local now = tonumber(ARGV[1])
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and tonumber(v) <= now then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
)lua";

int64_t to_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() ? v : 0;
}

// "<gateway>/<session>" → gateway (a gateway id may itself hold '/': the session is after the last).
std::string_view gateway_of(std::string_view field) {
  auto at = field.rfind('/');
  return at == std::string_view::npos ? field : field.substr(0, at);
}

class RedisSessions final : public SessionRegistry {
 public:
  RedisSessions(const RedisSessionsConfig& config, const Clock& clock)
      : config_(config), clock_(clock), pool_(endpoint_of(config), config.pool_size),
        logger_(imlog::logger("sessions")) {}

  Status check() {
    auto lease = pool_.acquire();
    IMLOG_TRY(lease);
    IMLOG_TRY((*lease)->command({"PING"}, "checking the sessions registry"));
    return {};
  }

  void connected(uint64_t user, std::string_view gateway, uint64_t session) override {
    run_script(kConnectScript, user, gateway, session, "registering a session");
  }

  void heartbeat(uint64_t user, std::string_view gateway, uint64_t session) override {
    run_script(kConnectScript, user, gateway, session, "refreshing a session");
  }

  void disconnected(uint64_t user, std::string_view gateway, uint64_t session) override {
    std::string keys[3] = {sess_key(user), online_key(), presence_key(user)};
    std::string field = field_of(gateway, session), now = std::to_string(clock_.now_ms());
    std::string pttl = ms(config_.presence_ttl), id = std::to_string(user);
    with_retry("removing a session", [&](RedisConnection& c) -> Status {
      IMLOG_TRY(c.command({"EVAL", kDisconnectScript, "3", keys[0], keys[1], keys[2], field, now, pttl, id},
                          "removing a session"));
      return {};
    });
  }

  void locate(std::span<const uint64_t> users, std::vector<std::pair<uint64_t, std::string>>& out) const override {
    (void)try_locate(users, out);  // a failure was logged and counted; the users look offline
  }

  Status try_locate(std::span<const uint64_t> users,
                    std::vector<std::pair<uint64_t, std::string>>& out) const override {
    int64_t now = clock_.now_ms();
    size_t had = out.size();
    for (size_t from = 0; from < users.size(); from += config_.lookup_batch) {
      auto batch = users.subspan(from, std::min<size_t>(config_.lookup_batch, users.size() - from));
      if (auto s = locate_batch(batch, now, out); !s) {
        out.resize(had);  // nothing rather than a part
        return s;
      }
    }
    return {};
  }

  void all_online(std::vector<std::pair<uint64_t, std::string>>& out) const override {
    std::vector<uint64_t> users;
    std::string now = std::to_string(clock_.now_ms());
    bool ok = with_retry("listing online users", [&](RedisConnection& c) -> Status {
      users.clear();
      // Lazy cleanup of users whose every session expired, in the same round trip.
      c.append({"ZREMRANGEBYSCORE", online_key(), "-inf", now});
      c.append({"ZRANGEBYSCORE", online_key(), "(" + now, "+inf"});
      IMLOG_TRY(c.read("cleaning the online set"));
      auto r = c.read("listing online users");
      IMLOG_TRY(r);
      for (size_t i = 0; i < reply_size(r->get()); ++i) {
        users.push_back(static_cast<uint64_t>(to_int(reply_string(reply_at(r->get(), i)))));
      }
      return {};
    });
    if (ok) locate(users, out);
  }

  uint32_t devices(uint64_t user) const override {
    uint32_t n = 0;
    int64_t now = clock_.now_ms();
    bool ok = with_retry("counting devices", [&](RedisConnection& c) -> Status {
      n = 0;
      auto r = c.command({"HVALS", sess_key(user)}, "counting devices");
      IMLOG_TRY(r);
      for (size_t i = 0; i < reply_size(r->get()); ++i) {
        if (to_int(reply_string(reply_at(r->get(), i))) > now) ++n;
      }
      return {};
    });
    return ok ? n : 0;
  }

  SetStatusResult set_status(uint64_t user, PresenceStatus status) override {
    if (status == PresenceStatus::offline) return SetStatusResult::invalid;
    std::string key = presence_key(user), pttl = ms(config_.presence_ttl);
    bool ok = with_retry("setting a status", [&](RedisConnection& c) -> Status {
      c.append({"HSET", key, "status", presence_name(status)});
      c.append({"PEXPIRE", key, pttl});
      IMLOG_TRY(c.read("setting a status"));
      IMLOG_TRY(c.read("setting a status"));
      return {};
    });
    return ok ? SetStatusResult::saved : SetStatusResult::unavailable;
  }

  void presence(std::span<const uint64_t> users, std::vector<Presence>& out) const override {
    int64_t now = clock_.now_ms();
    for (size_t from = 0; from < users.size(); from += config_.lookup_batch) {
      auto batch = users.subspan(from, std::min<size_t>(config_.lookup_batch, users.size() - from));
      presence_batch(batch, now, out);
    }
  }

 private:
  static RedisEndpoint endpoint_of(const RedisSessionsConfig& c) {
    return RedisEndpoint{c.host, c.port, c.password, c.db, c.connect_timeout, c.io_timeout};
  }
  static std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }
  std::string sess_key(uint64_t user) const { return config_.key_prefix + "sess:" + std::to_string(user); }
  std::string presence_key(uint64_t user) const { return config_.key_prefix + "presence:" + std::to_string(user); }
  std::string online_key() const { return config_.key_prefix + "online"; }
  static std::string field_of(std::string_view gateway, uint64_t session) {
    return std::string(gateway) + "/" + std::to_string(session);
  }

  // Runs `body` on a pooled connection; a lost connection is retried once on a fresh one. A
  // failure is logged and counted, never thrown. Returns whether `body` succeeded.
  bool with_retry(std::string_view what, const std::function<Status(RedisConnection&)>& body) const {
    return try_with_retry(what, body).has_value();
  }
  // As with_retry, returning the failure (named "sessions registry: <what>: ...").
  Status try_with_retry(std::string_view what, const std::function<Status(RedisConnection&)>& body) const {
    Error last;
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto lease = pool_.acquire();
      if (!lease) {
        last = lease.error();
        continue;
      }
      auto s = body(**lease);
      if (s) return {};
      last = s.error();
      if (!last.retryable()) break;
    }
    uint64_t n = ++g_failures;
    logger_->warn("sessions registry: {} failed ({} failures so far): {}", what, n, last.to_string());
    return fail(last.with_context("sessions registry: " + std::string(what)));
  }

  void run_script(std::string_view script, uint64_t user, std::string_view gateway, uint64_t session,
                  std::string_view what) {
    int64_t now = clock_.now_ms();
    auto ttl = std::chrono::duration_cast<std::chrono::milliseconds>(config_.ttl);
    std::string keys[3] = {sess_key(user), online_key(), presence_key(user)};
    std::string field = field_of(gateway, session), expiry = std::to_string(now + ttl.count());
    std::string ttl_ms = ms(ttl), now_s = std::to_string(now), pttl = ms(config_.presence_ttl);
    std::string id = std::to_string(user);
    with_retry(what, [&](RedisConnection& c) -> Status {
      IMLOG_TRY(c.command({"EVAL", script, "3", keys[0], keys[1], keys[2], field, expiry, ttl_ms, now_s, pttl, id},
                          what));
      return {};
    });
  }

  // One pipelined round trip: HGETALL of each user's sessions; then, if some fields had expired,
  // one more to clean them. A failure appends nothing.
  Status locate_batch(std::span<const uint64_t> users, int64_t now,
                      std::vector<std::pair<uint64_t, std::string>>& out) const {
    std::vector<std::string> keys;
    keys.reserve(users.size());
    for (uint64_t u : users) keys.push_back(sess_key(u));
    std::vector<std::pair<uint64_t, std::string>> found;
    std::map<size_t, std::vector<std::string>> expired;  // user index → fields
    auto ok = try_with_retry("locating users", [&](RedisConnection& c) -> Status {
      found.clear();
      expired.clear();
      for (const auto& k : keys) c.append({"HGETALL", k});
      for (size_t i = 0; i < users.size(); ++i) {
        auto r = c.read("locating users");
        IMLOG_TRY(r);
        collect(users[i], r->get(), now, found, [&](std::string_view f) { expired[i].emplace_back(f); });
      }
      return {};
    });
    if (!ok) return ok;  // nothing rather than a part
    out.insert(out.end(), found.begin(), found.end());
    if (!expired.empty()) clean(keys, expired, now);
    return {};
  }

  // The gateways of one user's live fields, each once and in order; expired fields to `stale`.
  static void collect(uint64_t user, const redisReply* r, int64_t now,
                      std::vector<std::pair<uint64_t, std::string>>& found,
                      const std::function<void(std::string_view)>& stale) {
    std::vector<std::string_view> gateways;
    for (size_t j = 0; j + 1 < reply_size(r); j += 2) {
      std::string_view field = reply_string(reply_at(r, j));
      if (to_int(reply_string(reply_at(r, j + 1))) <= now) {
        stale(field);
        continue;
      }
      gateways.push_back(gateway_of(field));
    }
    std::sort(gateways.begin(), gateways.end());
    gateways.erase(std::unique(gateways.begin(), gateways.end()), gateways.end());
    for (auto g : gateways) found.emplace_back(user, std::string(g));
  }

  void clean(const std::vector<std::string>& keys, const std::map<size_t, std::vector<std::string>>& expired,
             int64_t now) const {
    std::string now_s = std::to_string(now);
    with_retry("cleaning expired sessions", [&](RedisConnection& c) -> Status {
      for (const auto& [i, fields] : expired) {
        std::vector<std::string_view> args{"EVAL", kCleanScript, "1", keys[i], now_s};
        args.insert(args.end(), fields.begin(), fields.end());
        c.append(args);
      }
      for (size_t n = 0; n < expired.size(); ++n) IMLOG_TRY(c.read("cleaning expired sessions"));
      return {};
    });
  }

  void presence_batch(std::span<const uint64_t> users, int64_t now, std::vector<Presence>& out) const {
    std::vector<Presence> got;
    bool ok = with_retry("reading presence", [&](RedisConnection& c) -> Status {
      got.clear();
      for (uint64_t u : users) {
        c.append({"HMGET", presence_key(u), "status", "seen"});
        c.append({"HVALS", sess_key(u)});
      }
      for (uint64_t u : users) {
        auto p = c.read("reading presence");
        IMLOG_TRY(p);
        auto s = c.read("reading sessions");
        IMLOG_TRY(s);
        got.push_back(presence_of(u, p->get(), s->get(), now));
      }
      return {};
    });
    if (!ok) {  // Redis failed: the users are reported offline, never seen
      for (uint64_t u : users) out.push_back(Presence{.user_id = u});
      return;
    }
    out.insert(out.end(), got.begin(), got.end());
  }

  static Presence presence_of(uint64_t user, const redisReply* p, const redisReply* sessions, int64_t now) {
    Presence out{.user_id = user};
    if (reply_size(p) == 2) out.last_seen_ms = to_int(reply_string(reply_at(p, 1)));
    bool online = false;
    for (size_t i = 0; i < reply_size(sessions); ++i) {
      online = online || to_int(reply_string(reply_at(sessions, i))) > now;
    }
    if (!online) return out;
    out.status = PresenceStatus::online;
    if (reply_size(p) == 2 && !reply_is_nil(reply_at(p, 0))) {
      out.status = parse_presence(reply_string(reply_at(p, 0))).value_or(PresenceStatus::online);
      if (out.status == PresenceStatus::offline) out.status = PresenceStatus::online;
    }
    return out;
  }

  RedisSessionsConfig config_;
  const Clock& clock_;
  mutable RedisPool pool_;
  std::shared_ptr<spdlog::logger> logger_;
};

Status validate(const RedisSessionsConfig& c) {
  auto bad = [](std::string what) { return fail(RedisErrc::bad_config, std::move(what)); };
  if (c.host.empty()) return bad("sessions registry: redis host is empty: set it to the Redis server's address");
  if (c.port <= 0 || c.port > 65535) {
    return bad("sessions registry: redis port " + std::to_string(c.port) + " is not a TCP port (1-65535)");
  }
  if (c.ttl.count() <= 0) return bad("sessions registry: ttl must be at least 1 s");
  if (c.presence_ttl.count() <= 0) return bad("sessions registry: presence_ttl must be at least 1 s");
  if (c.lookup_batch == 0) return bad("sessions registry: lookup_batch must be at least 1");
  if (c.pool_size == 0) return bad("sessions registry: pool_size must be at least 1");
  return {};
}

}  // namespace

Result<std::unique_ptr<SessionRegistry>> open_redis_sessions(const RedisSessionsConfig& config, const Clock& clock) {
  IMLOG_TRY(validate(config));
  auto s = std::make_unique<RedisSessions>(config, clock);
  IMLOG_TRY(s->check());
  return std::unique_ptr<SessionRegistry>(std::move(s));
}

uint64_t redis_sessions_failures() { return g_failures.load(); }

}  // namespace imlog
