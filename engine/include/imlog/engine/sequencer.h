#pragma once
// The Sequencer: the only writer of im.events (DESIGN.md §5).
//
// It is a consumer-group member on im.commands. For each partition it is given it
//   1. appends EpochStarted{token} to the same partition of im.events (fencing any older writer),
//   2. catches up: reads im.events from its store's checkpoint to its own marker, applying every
//      valid event (EpochFilter) to the stream states, the dedupe index and the name index,
//   3. then handles commands: dedupe → decide → assign seq → append, many per log append.
//
// Exactly once without broker transactions: a command redelivered after a crash finds its event
// in the dedupe index (rebuilt from the log in step 2) and is re-acked with the original ids;
// command offsets are committed only after the events they produced are acknowledged. Accepted
// commands are acked by the router from the log; refusals and duplicates are answered here, on the
// caller's im.deliver.<gateway> topic, once the batch they came with is durable.
//
// State store: a local RocksDB cache of the derived state (state_store.h), written atomically with
// a checkpoint while no append is in flight. Deleting it costs a rebuild from the log.
//
// Threading: one thread (start()/stop()) runs the loop; append callbacks come from the log's thread
// and are handed to the loop through a queue. Not otherwise thread-safe; stats() may be read from
// any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/engine/directory.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/stream_state.h"

namespace imlog {

struct EngineConfig {
  // Directory of the local state store. Default ./data/engine.
  std::string state_dir = "./data/engine";
  // Names this instance in logs and epoch markers. Default "<hostname>-<pid>".
  std::string instance_id;
  // Consumer group of the sequencers on im.commands. Default "imlog-engine".
  std::string group = "imlog-engine";
  // Most commands taken by one poll and appended as one batch. Default 4096.
  uint64_t max_batch = 4096;
  // Batches appended and not yet acknowledged, at most. Default 8.
  uint32_t max_inflight_batches = 8;
  // How often derived state is written to the store and command offsets committed. Default 1 s.
  std::chrono::milliseconds checkpoint_interval{1000};
  // Stream states kept in memory; beyond this, clean ones are dropped at a checkpoint.
  // Default 1,000,000.
  uint64_t max_cached_streams = 1'000'000;
  EngineLimits limits;
};

struct SequencerStats {
  std::atomic<uint64_t> commands{0};    // commands read
  std::atomic<uint64_t> events{0};      // events appended and acknowledged
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> malformed{0};   // commands that did not decode (dropped, logged)
  std::atomic<uint64_t> epochs{0};      // partitions taken (epoch markers written)
  std::atomic<int32_t> partitions{0};   // partitions owned now
};

class Sequencer {
 public:
  // Opens the state store. The topics im.commands and im.events must exist with the same
  // partition count.
  static Result<std::unique_ptr<Sequencer>> create(EventLog& log, const Directory& directory,
                                                   const Clock& clock, EngineConfig config);
  ~Sequencer();

  // Joins the group and runs the loop on a new thread.
  Status start();
  // Finishes in-flight appends, checkpoints, commits and leaves the group. Idempotent.
  void stop();
  // Whether the loop stopped on an error it cannot recover from (a corrupt event); the message.
  [[nodiscard]] std::string failure() const;

  [[nodiscard]] const SequencerStats& stats() const;

  class Loop;  // private; see sequencer.cpp

 private:
  explicit Sequencer(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
};

}  // namespace imlog
