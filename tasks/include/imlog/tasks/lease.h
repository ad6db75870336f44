#pragma once
// Leases: a named right that one holder at a time has, for a time-to-live its holder renews. The
// push worker takes one ("push") so that only one process of a deployment pushes: two workers
// would each read every partition of im.events and notify every device twice (tasks/README.md,
// "Offline push").
//
// make_local_leases() is the single node's (one process: its leases are that process's only);
// open_redis_leases() keeps them in the session registry's Redis, shared by every process of a
// distributed deployment, under "<key_prefix>lease:<name>".
//
// Thread-safe.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/tasks/redis_sessions.h"

namespace imlog {

class LeaseStore {
 public:
  virtual ~LeaseStore() = default;
  // Takes lease `name` for `holder` until now + `ttl` when nobody holds it, its time ran out, or
  // `holder` holds it already (a renewal). "" when `holder` has it; otherwise who holds it. An
  // error when the store could not be asked (Redis down): retryable.
  virtual Result<std::string> acquire(std::string_view name, std::string_view holder, std::chrono::milliseconds ttl) = 0;
  // Gives the lease up if `holder` holds it. Best effort: a failure leaves it to expire.
  virtual void release(std::string_view name, std::string_view holder) = 0;
};

std::unique_ptr<LeaseStore> make_local_leases(const Clock& clock = SystemClock::instance());

// Fails (unavailable, naming host:port) when Redis cannot be reached.
Result<std::unique_ptr<LeaseStore>> open_redis_leases(const RedisSessionsConfig& config);

// A holder name unique to this process: "<host>:<pid>:<random>".
std::string lease_holder_name();

}  // namespace imlog
