// The login throttle in Redis (redis_login_throttle.h has the key layout, login_throttle.h the
// rules).

#include "imlog/tasks/redis_login_throttle.h"

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/redis.h"

namespace imlog {
namespace {

std::atomic<uint64_t> g_failures{0};

// login_backoff_until and LocalLoginThrottle::admit, on the server. Refuses with {index of the key
// with the longest wait, the wait in ms}, or counts a failure on every key and answers {0, 0}.
// KEYS: the attempt's keys. ARGV: now, window, first_backoff, max_backoff, then each key's free
// failures.
constexpr std::string_view kAdmitScript = R"lua(
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local first, max = tonumber(ARGV[3]), tonumber(ARGV[4])
local counts, wait, which = {}, 0, 0
for i, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'n', 't')
  local n, t = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if now - t >= window then n = 0 end
  counts[i] = n
  local free = tonumber(ARGV[4 + i])
  if n >= free then
    local left = t + math.min(first * 2 ^ (n - free), max) - now
    if left > wait then wait, which = left, i end
  end
end
if which > 0 then return {which, math.ceil(wait)} end
for i, k in ipairs(KEYS) do
  redis.call('HSET', k, 'n', counts[i] + 1, 't', ARGV[1])
  redis.call('PEXPIRE', k, ARGV[2])
end
return {0, 0}
)lua";

// Takes one count from each key; the first ARGV[1] keys are cleared instead.
constexpr std::string_view kReleaseScript = R"lua(
local clear = tonumber(ARGV[1])
for i, k in ipairs(KEYS) do
  local n = tonumber(redis.call('HGET', k, 'n'))
  if i <= clear or (n and n <= 1) then
    redis.call('DEL', k)
  elseif n then
    redis.call('HSET', k, 'n', n - 1)
  end
end
return 1
)lua";

class RedisLoginThrottle final : public LoginThrottle {
 public:
  RedisLoginThrottle(const RedisSessionsConfig& redis, const LoginThrottleConfig& config, const Clock& clock)
      : prefix_(redis.key_prefix + "login:"),
        config_(config),
        clock_(clock),
        pool_(RedisEndpoint{redis.host, redis.port, redis.password, redis.db, redis.connect_timeout, redis.io_timeout},
              redis.pool_size),
        logger_(imlog::logger("login-throttle")) {}

  Status check() {
    auto lease = pool_.acquire();
    IMLOG_TRY(lease);
    IMLOG_TRY((*lease)->command({"PING"}, "checking the login throttle's Redis"));
    return {};
  }

  Result<Admission> admit(std::string_view account, std::string_view address) override {
    auto keys = keys_of(account, address);
    std::vector<std::string> frees;
    for (auto [key, kind] : keys) frees.push_back(std::to_string(free_of(kind)));
    std::string now = std::to_string(clock_.now_ms()), window = ms(config_.window);
    std::string first = ms(config_.first_backoff), max = ms(config_.max_backoff), nkeys = std::to_string(keys.size());
    Admission out;
    auto s = with_retry("admitting a login", [&](RedisConnection& c) -> Status {
      std::vector<std::string_view> args{"EVAL", kAdmitScript, nkeys};
      for (const auto& k : keys) args.push_back(k.first);
      // Views of the named strings (a braced list of std::string would copy them into temporaries
      // that die before the command is sent: found by ASan).
      args.insert(args.end(), {std::string_view(now), std::string_view(window), std::string_view(first), std::string_view(max)});
      for (const auto& f : frees) args.push_back(f);
      auto r = c.command(args, "admitting a login");
      IMLOG_TRY(r);
      if (reply_size(r->get()) != 2) return fail(RedisErrc::bad_reply, "the admit script answered no pair");
      int64_t which = reply_integer(reply_at(r->get(), 0));
      if (which < 0 || which > static_cast<int64_t>(keys.size())) {
        return fail(RedisErrc::bad_reply, "the admit script named no key of the attempt");
      }
      out = which == 0 ? Admission{}
                       : Admission{keys[which - 1].second,
                                   std::chrono::milliseconds(reply_integer(reply_at(r->get(), 1)))};
      return {};
    });
    IMLOG_TRY(s);
    return out;
  }

  void succeeded(std::string_view account, std::string_view address) override {
    release(account, address, account.empty() ? 0 : 1, "clearing a login's back-off");
  }

  void abandoned(std::string_view account, std::string_view address) override {
    release(account, address, 0, "taking back an abandoned login");
  }

 private:
  static std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }

  // The attempt's keys, the pair first (the release script clears the leading ones).
  std::vector<std::pair<std::string, ThrottleKey>> keys_of(std::string_view account, std::string_view address) const {
    std::vector<std::pair<std::string, ThrottleKey>> keys;
    std::string addr(address), acct(account);
    if (!account.empty()) keys.emplace_back(prefix_ + "pair:" + addr + " " + acct, ThrottleKey::account_address);
    keys.emplace_back(prefix_ + "addr:" + addr, ThrottleKey::address);
    if (!account.empty()) keys.emplace_back(prefix_ + "acct:" + acct, ThrottleKey::account);
    return keys;
  }

  [[nodiscard]] uint32_t free_of(ThrottleKey k) const {
    switch (k) {
      case ThrottleKey::account_address: return config_.account_address_failures;
      case ThrottleKey::address: return config_.address_failures;
      case ThrottleKey::account: return config_.account_failures;
      case ThrottleKey::none: break;
    }
    return 0;
  }

  void release(std::string_view account, std::string_view address, int clear, std::string_view what) {
    auto keys = keys_of(account, address);
    std::string nkeys = std::to_string(keys.size()), n_clear = std::to_string(clear);
    (void)with_retry(what, [&](RedisConnection& c) -> Status {
      std::vector<std::string_view> args{"EVAL", kReleaseScript, nkeys};
      for (const auto& k : keys) args.push_back(k.first);
      args.push_back(n_clear);
      IMLOG_TRY(c.command(args, what));
      return {};
    });
  }

  // Runs `body` on a pooled connection; a lost connection is retried once on a fresh one. A
  // failure is logged and counted, never thrown.
  Status with_retry(std::string_view what, const std::function<Status(RedisConnection&)>& body) {
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
    logger_->warn("login throttle: {} failed ({} failures so far): {}", what, n, last.to_string());
    return fail(last.with_context("login throttle: " + std::string(what)));
  }

  const std::string prefix_;
  const LoginThrottleConfig config_;
  const Clock& clock_;
  RedisPool pool_;
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace

Result<std::unique_ptr<LoginThrottle>> open_redis_login_throttle(const RedisSessionsConfig& redis,
                                                                 const LoginThrottleConfig& config, const Clock& clock) {
  if (auto p = login_throttle_problem(config); !p.empty()) {
    return fail(RedisErrc::bad_config, "login throttle: " + p);
  }
  auto t = std::make_unique<RedisLoginThrottle>(redis, config, clock);
  IMLOG_TRY(t->check());
  return std::unique_ptr<LoginThrottle>(std::move(t));
}

uint64_t redis_login_throttle_failures() { return g_failures.load(); }

}  // namespace imlog
