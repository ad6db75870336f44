// The in-process login throttle (login_throttle.h has the rules).

#include "imlog/tasks/login_throttle.h"

#include <algorithm>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

namespace imlog {

std::string login_throttle_problem(const LoginThrottleConfig& c) {
  if (c.account_address_failures < 1 || c.address_failures < 1 || c.account_failures < 1) {
    return "account_address_failures, address_failures and account_failures must each be at least 1";
  }
  if (c.first_backoff.count() < 1) return "first_backoff must be at least 1ms";
  if (c.max_backoff < c.first_backoff) return "max_backoff must be at least first_backoff";
  if (c.window < c.max_backoff) return "window must be at least max_backoff (a key would forget its back-off early)";
  if (c.max_entries < 16) return "max_entries must be at least 16";
  return {};
}

int64_t login_backoff_until(int64_t failures, int64_t last_ms, uint32_t free, const LoginThrottleConfig& c) {
  if (failures < free) return 0;
  int64_t backoff = c.max_backoff.count();
  int64_t doublings = failures - free;
  if (doublings < 62 && c.first_backoff.count() <= (backoff >> doublings)) backoff = c.first_backoff.count() << doublings;
  return last_ms + backoff;
}

namespace {

// One kind of key: key → (failures, last failure), ordered by last failure (the most recent at the
// front), at most `cap` entries. Not thread-safe: LocalLoginThrottle locks around it.
class Table {
 public:
  Table(uint32_t free, size_t cap) : free_(free), cap_(cap) {}

  // The end of `key`'s back-off (0: none) at `now`.
  [[nodiscard]] int64_t until(const std::string& key, int64_t now, const LoginThrottleConfig& c) const {
    auto it = entries_.find(key);
    if (it == entries_.end() || now - it->second.last_ms >= c.window.count()) return 0;
    return login_backoff_until(it->second.failures, it->second.last_ms, free_, c);
  }

  void count(const std::string& key, int64_t now, const LoginThrottleConfig& c) {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      order_.push_front(key);
      it = entries_.emplace(key, Entry{0, now, order_.begin()}).first;
      while (entries_.size() > cap_) drop_oldest();
    } else {
      order_.splice(order_.begin(), order_, it->second.pos);
    }
    if (now - it->second.last_ms >= c.window.count()) it->second.failures = 0;
    it->second.failures++;
    it->second.last_ms = now;
  }

  void uncount(const std::string& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    if (--it->second.failures <= 0) erase(it);
  }

  void clear(const std::string& key) {
    auto it = entries_.find(key);
    if (it != entries_.end()) erase(it);
  }

  // Drops the entries whose failures are forgotten: the oldest are at the back.
  void expire(int64_t now, const LoginThrottleConfig& c) {
    while (!order_.empty() && now - entries_.at(order_.back()).last_ms >= c.window.count()) drop_oldest();
  }

  [[nodiscard]] size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    int64_t failures;
    int64_t last_ms;
    std::list<std::string>::iterator pos;
  };
  using Map = std::unordered_map<std::string, Entry>;

  void erase(Map::iterator it) {
    order_.erase(it->second.pos);
    entries_.erase(it);
  }
  void drop_oldest() { erase(entries_.find(order_.back())); }

  const uint32_t free_;
  const size_t cap_;
  Map entries_;
  std::list<std::string> order_;
};

// Pairs keyed "<address> <account>": an address holds no space, so the key is unambiguous.
std::string pair_key(std::string_view account, std::string_view address) {
  std::string k(address);
  k += ' ';
  k += account;
  return k;
}

}  // namespace

struct LocalLoginThrottle::State {
  State(const LoginThrottleConfig& c, const Clock& clk)
      : config(c),
        clock(clk),
        pairs(c.account_address_failures, c.max_entries),
        addresses(c.address_failures, c.max_entries),
        accounts(c.account_failures, c.max_entries) {}
  const LoginThrottleConfig config;
  const Clock& clock;
  mutable std::mutex mu;
  Table pairs;
  Table addresses;
  Table accounts;
};

LocalLoginThrottle::LocalLoginThrottle(const LoginThrottleConfig& config, const Clock& clock)
    : s_(std::make_unique<State>(config, clock)) {}
LocalLoginThrottle::~LocalLoginThrottle() = default;

Result<Admission> LocalLoginThrottle::admit(std::string_view account, std::string_view address) {
  auto& s = *s_;
  int64_t now = s.clock.now_ms();
  std::string pair = pair_key(account, address), addr(address), acct(account);
  std::lock_guard lock(s.mu);
  for (Table* t : {&s.pairs, &s.addresses, &s.accounts}) t->expire(now, s.config);
  Admission a;
  auto consider = [&](const Table& t, const std::string& key, ThrottleKey which) {
    int64_t wait = t.until(key, now, s.config) - now;
    if (wait > a.retry_after.count()) a = Admission{which, std::chrono::milliseconds(wait)};
  };
  if (!account.empty()) consider(s.pairs, pair, ThrottleKey::account_address);
  consider(s.addresses, addr, ThrottleKey::address);
  if (!account.empty()) consider(s.accounts, acct, ThrottleKey::account);
  if (!a.admitted()) return a;
  if (!account.empty()) {
    s.pairs.count(pair, now, s.config);
    s.accounts.count(acct, now, s.config);
  }
  s.addresses.count(addr, now, s.config);
  return a;
}

void LocalLoginThrottle::succeeded(std::string_view account, std::string_view address) {
  std::lock_guard lock(s_->mu);
  if (!account.empty()) {
    s_->pairs.clear(pair_key(account, address));
    s_->accounts.uncount(std::string(account));
  }
  s_->addresses.uncount(std::string(address));
}

void LocalLoginThrottle::abandoned(std::string_view account, std::string_view address) {
  std::lock_guard lock(s_->mu);
  if (!account.empty()) {
    s_->pairs.uncount(pair_key(account, address));
    s_->accounts.uncount(std::string(account));
  }
  s_->addresses.uncount(std::string(address));
}

size_t LocalLoginThrottle::entries() const {
  std::lock_guard lock(s_->mu);
  return s_->pairs.size() + s_->addresses.size() + s_->accounts.size();
}

std::unique_ptr<LocalLoginThrottle> make_local_login_throttle(const LoginThrottleConfig& config, const Clock& clock) {
  return std::make_unique<LocalLoginThrottle>(config, clock);
}

}  // namespace imlog
