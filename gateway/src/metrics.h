#pragma once
// The gateway's figures for /metrics (docs/operations.md): relaxed atomics bumped on the I/O
// threads, turned into prometheus-cpp families only when scraped (collect(), registered by the
// gateway with imlog/core/metrics.h). Counts are metrics, not log lines. Thread-safe: every
// member may be updated from any thread.

#include <prometheus/metric_family.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/metrics.h"

namespace imlog::gw {

struct Metrics {
  std::atomic<int64_t> ws_connections{0};
  std::atomic<int64_t> http_connections{0};
  std::atomic<uint64_t> ws_accepted{0};          // WebSocket sessions opened since start
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> frames_in{0};            // WebSocket messages received
  std::atomic<uint64_t> frames_out{0};           // WebSocket messages written
  std::atomic<uint64_t> messages_sent{0};        // messages accepted by the engine (WS + REST)
  std::atomic<uint64_t> pushes_in{0};            // pushes received from the bus
  std::atomic<uint64_t> push_frames{0};          // frames queued to sessions for pushes
  std::atomic<uint64_t> slow_consumers{0};       // sessions dropped for a full write queue
  std::atomic<uint64_t> reads_paused{0};         // times a session stopped reading at max_inflight_commands
  std::atomic<uint64_t> late_refusals{0};        // messages refused for waiting past max_frame_wait
  std::atomic<uint64_t> socket_writes{0};        // WebSocket socket writes (each carries one or more frames)
  std::atomic<uint64_t> heartbeat_timeouts{0};
  std::atomic<uint64_t> password_hashes{0};      // Argon2id hashes and verifications (PasswordHasher)
  metrics::Histogram command_latency;            // submit → engine's answer (the ack)
  metrics::Histogram frame_wait;                 // a WebSocket message's arrival → the session reads it

  // Errors returned to clients, by code ("unauthorized", "rate_limited", "not_member", ...). An
  // error path: takes a lock.
  void error(std::string_view code);
  // HTTP replies by status.
  void http_status(unsigned status);

  // Appends the gateway's families (imlog_gateway_*).
  void collect(std::vector<prometheus::MetricFamily>& out) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, uint64_t, std::less<>> errors_;
  std::map<unsigned, uint64_t> statuses_;
};

}  // namespace imlog::gw
