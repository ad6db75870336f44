#pragma once
// The gateway's Prometheus metrics (/metrics): plain atomics, rendered as text exposition format.
// Counts are metrics, not log lines. Thread-safe: every member may be updated from any thread.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace imlog::gw {

class Histogram {
 public:
  // Upper bounds in seconds (Prometheus `le`), ascending; +Inf is implicit.
  static constexpr std::array<double, 14> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  void observe(std::chrono::nanoseconds d);
  void render(std::string& out, std::string_view name, std::string_view help) const;

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};  // per bucket, not cumulative
  std::atomic<uint64_t> sum_ns_{0};
  std::atomic<uint64_t> count_{0};
};

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
  std::atomic<uint64_t> reads_paused{0};
  std::atomic<uint64_t> socket_writes{0};         // WebSocket socket writes (each carries one or more frames)         // times a session stopped reading at max_inflight_commands
  std::atomic<uint64_t> heartbeat_timeouts{0};
  std::atomic<uint64_t> password_hashes{0};      // Argon2id hashes and verifications (PasswordHasher)
  Histogram command_latency;                     // submit → engine's answer

  // Errors returned to clients, by code ("unauthorized", "rate_limited", "not_member", ...).
  void error(std::string_view code);
  // HTTP replies by status.
  void http_status(unsigned status);

  [[nodiscard]] std::string render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, uint64_t, std::less<>> errors_;
  std::map<unsigned, uint64_t> statuses_;
};

}  // namespace imlog::gw
