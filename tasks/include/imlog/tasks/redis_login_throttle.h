#pragma once
// The login throttle of the distributed mode (login_throttle.h has the rules): the same counts in
// Redis, so every gateway refuses a guesser that another gateway has been answering. It uses the
// session registry's Redis (the `sessions:` section: host, port, password, db, key_prefix, pool
// and time-outs).
//
// Keys (P = key_prefix), each a HASH {n: failures counted, t: the last one, Unix ms of the
// throttle's clock}, PEXPIREd `window` after its last failure:
//   P login:pair:<address> <account>   P login:addr:<address>   P login:acct:<account>
// admit() is one Lua script (read the keys, refuse or count all of them), atomic on the server, so
// two gateways admitting at once cannot both slip past a limit; succeeded() and abandoned() are
// another. Keys are bounded by their expiry: at most the failures the gateways can hash within one
// `window` (and a refused attempt writes nothing).
//
// Failures never throw: a call whose connection broke is retried once on a fresh connection; then
// admit() returns the error (the gateway admits the attempt: an unreachable Redis must not stop
// every login — the bound on concurrent hashes still holds) and the others drop their update. Each
// failure is logged and counted (redis_login_throttle_failures()).
//
// Thread-safe; calls borrow one of pool_size connections.

#include <cstdint>
#include <memory>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/tasks/login_throttle.h"
#include "imlog/tasks/redis_sessions.h"

namespace imlog {

// Connects once to check the server (unreachable: a retryable error naming host:port).
Result<std::unique_ptr<LoginThrottle>> open_redis_login_throttle(const RedisSessionsConfig& redis,
                                                                 const LoginThrottleConfig& config,
                                                                 const Clock& clock = SystemClock::instance());

// Redis calls of login throttles that failed (after their one retry) in this process.
uint64_t redis_login_throttle_failures();

}  // namespace imlog
