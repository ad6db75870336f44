#pragma once
// Login throttling: wrong passwords earn a back-off, counted under three keys so that an attacker
// is slowed down without being able to lock a user out from the user's own address.
//
//   (account, address)  one guesser at one account: `account_address_failures` free, then
//                       back-off. A successful login from that address clears it.
//   address             one source, whatever accounts it tries (credential stuffing):
//                       `address_failures` free, then back-off.
//   account             one account, from every address: `account_failures` free, then back-off.
//                       The ceiling for an attacker spread over many addresses — and the only key
//                       an attacker can push for someone else, hence its generous default.
//
// A key with n counted failures, the last at time t, refuses attempts until
//   t + min(first_backoff * 2^(n - free), max_backoff)   when n >= free (never while n < free),
// and forgets its failures `window` after the last one.
//
// An attempt is counted as a failure when it is admitted, before its password is checked, so that
// concurrent guesses cannot all slip past the limit together; a success takes that count back from
// the address and the account (and clears the pair), an attempt that ended without a verdict
// (overload, a store error) takes it back everywhere. A refused attempt counts nothing.
//
// Callers pass opaque keys: the gateway passes a digest of the username (so no typed name, or
// password typed into the name field, is kept) and the client's address (an IPv6 one cut to its
// /64). An empty account checks and counts the address alone (registration: a name that is taken
// counts as a failure, so names cannot be enumerated through it faster than through login).
//
// Two implementations behave the same (tests/login_throttle_test.cpp runs one suite on both):
// make_local_login_throttle, in process, for one gateway; open_redis_login_throttle
// (redis_login_throttle.h), shared by every gateway of a distributed deployment.
//
// Thread-safe.

#include <chrono>
#include <cstdint>
#include <cstddef>
#include <memory>
#include <string_view>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"

namespace imlog {

struct LoginThrottleConfig {
  // Failures allowed before back-off starts, per key (see above). Defaults 5, 20, 100.
  uint32_t account_address_failures = 5;
  uint32_t address_failures = 20;
  uint32_t account_failures = 100;
  // The first back-off; it doubles with each further failure, up to max_backoff.
  // Defaults 1 s and 15 min.
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{15 * 60 * 1000};
  // A key's failures are forgotten this long after its last one; at least max_backoff.
  // Default 1 h.
  std::chrono::milliseconds window{60 * 60 * 1000};
  // In process: entries kept per key kind (pairs, addresses, accounts); beyond it the least
  // recently failed go first. Redis keys expire after `window` instead. Default 50000.
  uint32_t max_entries = 50'000;
};

// Empty when usable; otherwise what is wrong, naming the field ("window must be ...").
std::string login_throttle_problem(const LoginThrottleConfig& c);

// Which key refused an attempt.
enum class ThrottleKey : uint8_t { none = 0, account_address = 1, address = 2, account = 3 };

struct Admission {
  ThrottleKey refused_by = ThrottleKey::none;  // none: admitted (and counted)
  std::chrono::milliseconds retry_after{0};    // refused: the wait until an attempt may be admitted
  [[nodiscard]] bool admitted() const { return refused_by == ThrottleKey::none; }
};

class LoginThrottle {
 public:
  virtual ~LoginThrottle() = default;
  // Refuses the attempt while any of its keys backs off; otherwise admits it and counts it as a
  // failure. An error: the store is unavailable (nothing was counted).
  virtual Result<Admission> admit(std::string_view account, std::string_view address) = 0;
  // The admitted attempt's password was right: clears (account, address) and takes the attempt's
  // count back from the address and the account.
  virtual void succeeded(std::string_view account, std::string_view address) = 0;
  // The admitted attempt ended without a verdict: takes its count back from every key.
  virtual void abandoned(std::string_view account, std::string_view address) = 0;
};

// In process, for one gateway: each key kind in a table of at most max_entries, ordered by last
// failure, so forgotten entries are dropped from the back as time passes and a flood of new names
// or addresses pushes out the least recent ones instead of growing it. `clock` must outlive it.
class LocalLoginThrottle final : public LoginThrottle {
 public:
  LocalLoginThrottle(const LoginThrottleConfig& config, const Clock& clock);
  ~LocalLoginThrottle() override;
  Result<Admission> admit(std::string_view account, std::string_view address) override;
  void succeeded(std::string_view account, std::string_view address) override;
  void abandoned(std::string_view account, std::string_view address) override;
  // Entries held, over the three tables.
  [[nodiscard]] size_t entries() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

std::unique_ptr<LocalLoginThrottle> make_local_login_throttle(const LoginThrottleConfig& config,
                                                              const Clock& clock = SystemClock::instance());

// The back-off end of a key with `failures` counted, the last at `last_ms`, under `free` free
// failures: 0 when it does not back off. Both implementations follow it (the Redis one in Lua).
int64_t login_backoff_until(int64_t failures, int64_t last_ms, uint32_t free, const LoginThrottleConfig& c);

}  // namespace imlog
