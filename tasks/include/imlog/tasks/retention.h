#pragma once
// Message retention (issue 18): the tasks role's RetentionWorker finds the conversations with rows
// older than their policy and has the engine expire them (tasks/README.md, "Message retention";
// docs/data-lifecycle.md, "Message retention").
//
// It follows every partition of im.events from its first record (the validity rule, control
// records skipped) and keeps, per conversation, exactly what the engine keeps for retention
// (apply_retention() of stream_state.h: the overrides, how far it is expired, the days of the
// rows above that). Once it has read what the log held at its start, every `interval` it
// computes, with the engine's own functions (effective_keep_days, expirable_through), how far each
// conversation may be expired now, and for each that may go further sends ExpireMessages
// {through_seq} (actor 0, no reply) through the command path. The engine decides again on its own
// state and clock, and writes MessagesExpired, which every read model applies; the worker reads
// it back like any event. A command lost on its way is sent again at the next interval. Once
// caught up it reads in batches half an interval apart (at most 1 s), not at every append.
//
// One worker per deployment works: with a LeaseStore, only the holder of the lease "retention"
// reads and sends; every other stands by, asking for the lease every third of its time-to-live,
// and takes over (reading the log itself) once the holder is gone. A holder that lost it drops
// what it read and stands by. Two working at once would do no harm, only work twice: a
// command's client_msg_id is "expire:<through_seq>:<hour>", so the same expiry sent twice within
// the hour is a Duplicate for the engine, not a second event.
//
// Threading: one Worker, "retention".

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/transport.h"
#include "imlog/tasks/lease.h"

namespace imlog {

struct RetentionConfig {
  // retention.default_keep_days: the policy of a conversation without an override (0: for ever).
  // The engine is given the same value (EngineLimits::default_keep_days); they must agree.
  uint32_t default_keep_days = 0;
  std::chrono::milliseconds interval{std::chrono::minutes(10)};  // retention.interval
  std::chrono::milliseconds lease_ttl{10000};
  uint64_t max_batch = 4096;
};

struct RetentionStats {
  std::atomic<uint64_t> events{0};         // conversation events read
  std::atomic<uint64_t> conversations{0};  // conversations followed
  std::atomic<uint64_t> expiries_sent{0};  // ExpireMessages commands sent
  std::atomic<uint64_t> expired{0};        // MessagesExpired events read
  std::atomic<uint64_t> scans{0};          // passes over the conversations
  std::atomic<bool> caught_up{false};      // read what the log held at start
};

class RetentionWorker {
 public:
  // Everything passed must outlive the worker. `leases`: the single-worker lease (above); none:
  // this worker always works. `clock` decides what is old enough to send. start() only starts the
  // worker's thread; stop() gives the lease back.
  RetentionWorker(EventLog& log, CommandTransport& commands, RetentionConfig config, LeaseStore* leases = nullptr,
                  const Clock& clock = SystemClock::instance());
  ~RetentionWorker();
  Status start();
  void stop();
  [[nodiscard]] const RetentionStats& stats() const;
  struct Loop;  // private

 private:
  std::unique_ptr<Loop> loop_;
};

}  // namespace imlog
