#pragma once
// Leases: a named right that one holder at a time has, for a time-to-live its holder renews. The
// push worker takes one ("push") so that only one process of a deployment pushes: two workers
// would each read every partition of im.events and notify every device twice (tasks/README.md,
// "Offline push").
//
// A lease also keeps its holder's state (the push worker's progress: push.cpp), which only the
// holder may replace, so a worker that lost its lease cannot overwrite its successor's.
//
// make_local_leases() is the single node's (one process: its leases are that process's only), with
// the state in `<state_dir>/<name>.state` (in memory when state_dir is empty: tests);
// open_redis_leases() keeps both in the session registry's Redis, shared by every process of a
// distributed deployment, under "<key_prefix>lease:<name>" and "<key_prefix>lease:<name>:state".
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
  // Replaces the state kept with lease `name`, durably, if `holder` holds it (else fails,
  // device_or_resource_busy). An error when the store could not be written: retryable.
  virtual Status save_state(std::string_view name, std::string_view holder, std::string_view bytes) = 0;
  // The state last saved with lease `name`; "" when none.
  virtual Result<std::string> load_state(std::string_view name) = 0;
};

std::unique_ptr<LeaseStore> make_local_leases(const Clock& clock = SystemClock::instance(), std::string state_dir = "");

// Fails (unavailable, naming host:port) when Redis cannot be reached.
Result<std::unique_ptr<LeaseStore>> open_redis_leases(const RedisSessionsConfig& config);

// A holder name unique to this process: "<host>:<pid>:<random>".
std::string lease_holder_name();

}  // namespace imlog
