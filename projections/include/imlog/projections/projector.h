#pragma once
// Projector: runs one ProjectionSink over im.events (docs/architecture.md, "Projections"). Reads
// every partition from the sink's stored positions, keeps only valid events (EpochFilter, restored
// from the positions), and hands batches to the sink, whose apply() stores the new positions
// atomically with the changes.
//
// Threading: start() runs the loop on its own thread until stop(); run_until() applies on the
// caller's thread while a helper thread it owns reads and decodes the log, two batches in flight
// (replay, tests); stop() from another thread ends either. Counters may be read from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "imlog/core/metrics.h"
#include "imlog/engine/data_keys.h"
#include "imlog/engine/event_log.h"
#include "imlog/projections/projection.h"

namespace imlog {

struct ProjectorConfig {
  // Most records read and applied as one batch. Default 4096.
  uint64_t max_batch = 4096;
  // Where the data keys are that open the messages' sealed text (data_keys.h); not owned. Needed
  // for any log with sealed messages: without it such a message fails the pass, naming it.
  KeyStore* keys = nullptr;
};

struct ProjectorProgress {
  int64_t consumed = 0;   // records read so far (valid or not)
  int64_t target = 0;     // records to read in all (run_until), 0 when following the log
  uint64_t applied = 0;   // valid events applied
};

class Projector {
 public:
  Projector(EventLog& log, ProjectionSink& sink, ProjectorConfig config = {});
  ~Projector();

  // Follows the log on a new thread until stop().
  Status start();
  void stop();
  // Waits, up to `timeout`, until the sink's stored positions reach the end the log has now: a
  // node stopping on a signal lets its projections take what its sequencer wrote last. Returns
  // whether they did (false also when the loop failed or the positions cannot be read).
  bool drain(std::chrono::milliseconds timeout);
  // The error that stopped the loop, if any.
  [[nodiscard]] std::optional<Error> failure() const;

  // Applies everything before `end_offsets` (index = partition), then returns. `progress` is called
  // after every batch. For replay and tests.
  Status run_until(const std::vector<int64_t>& end_offsets,
                   const std::function<void(const ProjectorProgress&)>& progress = {});

  // Records between the sink's positions and the end of the log, as of the last batch.
  [[nodiscard]] int64_t lag() const { return lag_.load(); }
  [[nodiscard]] uint64_t applied() const { return applied_.load(); }
  // Each call of the sink's apply() (one batch) while following the log, for /metrics.
  [[nodiscard]] const metrics::Histogram& apply_seconds() const { return apply_seconds_; }
  // Batches the sink refused retryably (its server away) and that were applied again.
  [[nodiscard]] uint64_t apply_retries() const { return apply_retries_.load(); }
  [[nodiscard]] std::string_view model() const { return sink_.name(); }

  struct Loop;  // private

 private:
  EventLog& log_;
  ProjectionSink& sink_;
  ProjectorConfig config_;
  std::atomic<int64_t> lag_{0};
  std::atomic<uint64_t> applied_{0};
  metrics::Histogram apply_seconds_;
  std::atomic<uint64_t> apply_retries_{0};
  std::unique_ptr<Loop> loop_;
};

}  // namespace imlog
