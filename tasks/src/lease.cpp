#include "imlog/tasks/lease.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <random>

#include "imlog/core/redis.h"
#include "imlog/engine/snapshot_file.h"

namespace imlog {
namespace {

Status not_holder(std::string_view name, std::string_view holder) {
  return fail(std::errc::device_or_resource_busy,
              std::string(holder) + " does not hold the lease `" + std::string(name) + "`: its state is not saved");
}

class LocalLeases final : public LeaseStore {
 public:
  LocalLeases(const Clock& clock, std::string state_dir) : clock_(clock), state_dir_(std::move(state_dir)) {}

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
    if (it != leases_.end() && it->second.holder == holder) it->second.holder.clear();  // the state stays
  }

  Status save_state(std::string_view name, std::string_view holder, std::string_view bytes) override {
    std::lock_guard lock(mu_);
    auto& l = leases_[std::string(name)];
    if (l.holder != holder) return not_holder(name, holder);
    if (!state_dir_.empty()) IMLOG_TRY(write_file_atomically(state_path(name), bytes));
    l.state = std::string(bytes);
    return {};
  }

  Result<std::string> load_state(std::string_view name) override {
    std::lock_guard lock(mu_);
    if (state_dir_.empty()) return leases_[std::string(name)].state;
    std::ifstream in(state_path(name), std::ios::binary);
    if (!in) return std::string();
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  struct Lease {
    std::string holder;
    int64_t until_ms = 0;
    std::string state;  // when state_dir_ is empty
  };
  std::string state_path(std::string_view name) const { return state_dir_ + "/" + std::string(name) + ".state"; }
  const Clock& clock_;
  std::string state_dir_;
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

// KEYS[1] the lease, KEYS[2] its state; ARGV[1] the holder, ARGV[2] the state. 1 if saved.
constexpr std::string_view kSaveStateScript = R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
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

  Status save_state(std::string_view name, std::string_view holder, std::string_view bytes) override {
    std::string key = prefix_ + "lease:" + std::string(name);
    auto conn = pool_.acquire();
    IMLOG_TRY(conn);
    auto r = (*conn)->command({"EVAL", kSaveStateScript, "2", key, key + ":state", holder, bytes}, "saving a lease's state");
    IMLOG_TRY(r);
    if (reply_integer(r->get()) != 1) return not_holder(name, holder);
    return {};
  }

  Result<std::string> load_state(std::string_view name) override {
    auto conn = pool_.acquire();
    IMLOG_TRY(conn);
    auto r = (*conn)->command({"GET", prefix_ + "lease:" + std::string(name) + ":state"}, "reading a lease's state");
    IMLOG_TRY(r);
    return std::string(reply_string(r->get()));
  }

 private:
  std::string prefix_;
  RedisPool pool_;
};

}  // namespace

std::unique_ptr<LeaseStore> make_local_leases(const Clock& clock, std::string state_dir) {
  return std::make_unique<LocalLeases>(clock, std::move(state_dir));
}

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
