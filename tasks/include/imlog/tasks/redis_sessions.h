#pragma once
// The session registry of the distributed mode (docs/architecture.md, "Router and tasks"):
// SessionRegistry in Redis, so every gateway, router and tasks worker sees the same sessions.
// Gateways register sessions with a time-to-live refreshed by heartbeats; a crashed gateway's
// sessions expire on their own.
//
// Keys (P = key_prefix), times in the registry clock's Unix milliseconds:
//   P sess:<user>      HASH  field "<gateway>/<session>" → the session's expiry (now + ttl);
//                            the key itself PEXPIREs after ttl, refreshed by every connect and
//                            heartbeat of the user, so a user whose every gateway died vanishes
//   P presence:<user>  HASH  "status" → the chosen status (online/away/busy), "seen" → last seen;
//                            PEXPIREs after presence_ttl, refreshed on every write
//   P online           ZSET  member = user id, score = the latest expiry of the user's sessions
//                            (all_online reads the members scored after now)
// A field whose expiry has passed is not online, whatever Redis still holds: every read checks
// the expiry against the clock. Expired fields are removed lazily by the reader that finds them
// (a script that deletes a field only if it is still expired, so a heartbeat racing the cleanup
// wins). connect, heartbeat and disconnect are each one Lua script, atomic on the server.
//
// Round trips: locate() and presence() of N users are ceil(N / lookup_batch) pipelined round
// trips (N commands appended, then N replies read); all_online() is one ZRANGEBYSCORE plus a
// locate() of its users.
//
// Failures never throw and never crash: a call whose Redis is unreachable is retried once on a
// fresh connection, then gives up — a lookup returns nothing, a write is dropped (set_status says
// so: unavailable) — and is logged and counted (failures()). A restarted Redis is reconnected to
// on the next call. A Redis that lost its data (restart without persistence), or a session
// silent for longer than the ttl, is repaired by the session's next heartbeat(): it writes the
// session whether Redis still had it or not (connect and heartbeat are the same script), so every
// live session is back within one heartbeat interval. That needs each session's calls in order
// (connect, heartbeats, disconnect), as the gateway makes them.
//
// Threading: thread-safe; calls borrow one of pool_size connections.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/tasks/sessions.h"

namespace imlog {

struct RedisSessionsConfig {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string password;  // AUTH when not empty
  int db = 0;            // SELECT when not 0
  // Prefix of every key. Default "imlog:".
  std::string key_prefix = "imlog:";
  // A session not refreshed (heartbeat or connect) for this long is offline. Default 90 s; the
  // gateway's heartbeat interval must be well below it.
  std::chrono::seconds ttl{90};
  // How long a user's chosen status and last-seen time are kept after their last write.
  // Default 30 days.
  std::chrono::seconds presence_ttl{30 * 24 * 3600};
  // Users per pipelined round trip of locate() and presence(). Default 512.
  uint32_t lookup_batch = 512;
  // Connections. Default 4.
  uint32_t pool_size = 4;
  // Connect and per-reply time-outs. Defaults 2 s and 5 s.
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds io_timeout{5000};
};

// Connects once to check the server (unreachable: a retryable error naming host:port; a bad
// field: bad_config naming it). `clock` stamps expiries and last-seen times and must outlive the
// registry.
Result<std::unique_ptr<SessionRegistry>> open_redis_sessions(const RedisSessionsConfig& config,
                                                             const Clock& clock = SystemClock::instance());

// Redis calls that failed (after their one retry) in this process, across every registry.
uint64_t redis_sessions_failures();

}  // namespace imlog
