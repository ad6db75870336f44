#include "imlog/tasks/lease.h"

#include <unistd.h>

#include <map>
#include <mutex>
#include <random>

#include "imlog/core/redis.h"

namespace imlog {
namespace {

class LocalLeases final : public LeaseStore {
 public:
  explicit LocalLeases(const Clock& clock) : clock_(clock) {}

  Result<std::string> acquire(std::string_view name, std::string_view holder, std::chrono::milliseconds ttl) override {
    std::lock_guard lock(mu_);
    int64_t now = clock_.now_ms();
    auto& l = leases_[std::string(name)];
    if (!l.holder.empty() && l.holder != holder && l.until_ms > now) return l.holder;
    l.holder = std::string(holder);
    l.until_ms = now + ttl.count();
    return std::string();
  }

  void release(std::string_view name, std::string_view holder) override {
    std::lock_guard lock(mu_);
    auto it = leases_.find(std::string(name));
    if (it != leases_.end() && it->second.holder == holder) leases_.erase(it);
  }

 private:
  struct Lease {
    std::string holder;
    int64_t until_ms = 0;
  };
  const Clock& clock_;
  std::mutex mu_;
  std::map<std::string, Lease, std::less<>> leases_;
};

// KEYS[1] the lease; ARGV[1] the holder, ARGV[2] the ttl in ms. Redis expires the key itself.
constexpr std::string_view kAcquireScript = R"lua(
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ''
end
return v
)lua";

constexpr std::string_view kReleaseScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
)lua";

class RedisLeases final : public LeaseStore {
 public:
  explicit RedisLeases(const RedisSessionsConfig& c)
      : prefix_(c.key_prefix), pool_(RedisEndpoint{c.host, c.port, c.password, c.db, c.connect_timeout, c.io_timeout}, 1) {}

  Status check() {
    auto conn = pool_.acquire();
    IMLOG_TRY(conn);
    IMLOG_TRY((*conn)->command({"PING"}, "checking the lease store"));
    return {};
  }

  Result<std::string> acquire(std::string_view name, std::string_view holder, std::chrono::milliseconds ttl) override {
    std::string key = prefix_ + "lease:" + std::string(name), ms = std::to_string(ttl.count());
    Error last = Error(make_error_code(RedisErrc::unavailable), "");
    for (int attempt = 0; attempt < 2; ++attempt) {  // once more on a fresh connection
      auto conn = pool_.acquire();
      if (!conn) {
        last = conn.error();
        continue;
      }
      auto r = (*conn)->command({"EVAL", kAcquireScript, "1", key, holder, ms}, "taking a lease");
      if (r) return std::string(reply_string(r->get()));
      last = r.error();
      if (!last.retryable()) break;
    }
    return fail(last.with_context("lease " + std::string(name)));
  }

  void release(std::string_view name, std::string_view holder) override {
    std::string key = prefix_ + "lease:" + std::string(name);
    if (auto conn = pool_.acquire()) (void)(*conn)->command({"EVAL", kReleaseScript, "1", key, holder}, "releasing a lease");
  }

 private:
  std::string prefix_;
  RedisPool pool_;
};

}  // namespace

std::unique_ptr<LeaseStore> make_local_leases(const Clock& clock) { return std::make_unique<LocalLeases>(clock); }

Result<std::unique_ptr<LeaseStore>> open_redis_leases(const RedisSessionsConfig& config) {
  auto store = std::make_unique<RedisLeases>(config);
  IMLOG_TRY(store->check());
  return std::unique_ptr<LeaseStore>(std::move(store));
}

std::string lease_holder_name() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  std::random_device rd;
  char tail[9];
  std::snprintf(tail, sizeof tail, "%08x", rd());
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + tail;
}

}  // namespace imlog
