#pragma once
// The Sequencer: the only writer of im.events (docs/architecture.md, "The engine").
//
// It reads commands from its CommandTransport (transport.h: an in-process queue on the single
// node, im.commands as a consumer-group member in the distributed mode). For each partition it is
// given it
//   1. appends EpochStarted{token} to the same partition of im.events (fencing any older writer),
//   2. catches up: reads im.events from its store's checkpoint to its own marker, applying every
//      valid event (EpochFilter) to the stream states, the dedupe index and the name index,
//   3. then handles commands: dedupe → decide → assign seq → append, many per log append.
//
// Exactly once without broker transactions: a command redelivered after a crash finds its event
// in the dedupe index (rebuilt from the log in step 2) and is re-acked with the original ids;
// command offsets are committed only after the events they produced are acknowledged.
//
// Answers: every command with a reply_to is answered through the DeliveryTransport — Accepted,
// Duplicate or Refused — once the batch it came with (and every batch before it) is durable and
// the partition's epoch is still ours (fenced_since_verified()), so an ack always means "durable
// and valid". A batch whose append failed answers `unavailable` (retry with the same
// client_msg_id). The events also carry reply_to, so any reader of the log could answer too.
//
// State store: a local RocksDB cache of the derived state (state_store.h), written atomically with
// a checkpoint while no append is in flight. Deleting it costs a rebuild from the log.
//
// Threading: one thread (start()/stop()) runs the loop; append callbacks come from the log's thread
// and are handed to the loop through a queue. Not otherwise thread-safe; stats() may be read from
// any thread.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "imlog/core/clock.h"
#include "imlog/core/metrics.h"
#include "imlog/core/result.h"
#include "imlog/engine/data_keys.h"
#include "imlog/engine/directory.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/transport.h"

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
  // Group commit: the commands that come within this long of the last append wait for the next
  // one, and go out together: one durable append (one fsync on the embedded log), one wake-up of
  // every reader of the log and one answer per gateway for them all. An idle engine appends a
  // command at once; under load an ack waits up to this much longer, and the engine's CPU per
  // command falls (docs/benchmarks.md). 0: append as soon as the last batch is durable.
  // Default 4 ms.
  std::chrono::milliseconds batch_window{4};
  // How often derived state is written to the store and command offsets committed. Default 1 s.
  std::chrono::milliseconds checkpoint_interval{1000};
  // Single node: commands queued for the sequencer at most (the in-process command transport);
  // past it a send is refused at once with `overloaded`. Default 16384.
  size_t command_queue = 16384;
  // Stream states kept in memory; beyond this, clean ones are dropped at a checkpoint.
  // Default 1,000,000.
  uint64_t max_cached_streams = 1'000'000;
  // The dedupe window (engine/README.md, "The dedupe window"): a command that carries a
  // client_sent_at has its dedupe entry kept until the engine's clock passes client_sent_at +
  // dedupe_window + clock_skew; a checkpoint evicts it then. A command sent before the highest
  // cut-off ever applied, and not found in the index, is refused `retry_window_expired`.
  // Commands without a client_sent_at are remembered for ever. Defaults 168h (7 days) and 10m.
  std::chrono::milliseconds dedupe_window{std::chrono::hours(168)};
  std::chrono::milliseconds clock_skew{std::chrono::minutes(10)};
  // Single node (not a config key; the node sets it with RouterConfig::one_to_one_pushed_by_engine):
  // the ack of an accepted event of a one-to-one conversation also carries the event and its
  // audience (audience.h), so the sender's gateway, which is every recipient's too, pushes it
  // without a trip through the router. Default off: in the distributed mode the router finds
  // the recipients' gateways.
  bool push_one_to_one = false;
  EngineLimits limits;
};

class StateStore;  // engine-internal: engine/src/state_store.h

// The sequencer's figures, for /metrics (docs/operations.md). Each is a relaxed atomic the loop
// bumps; nothing on the command path locks or allocates for them.
struct SequencerStats {
  std::atomic<uint64_t> commands{0};    // commands read
  std::atomic<uint64_t> events{0};      // events appended and acknowledged
  std::atomic<uint64_t> refused{0};     // refusals decided (a remembered one answered again is a duplicate)
  std::array<std::atomic<uint64_t>, kRefusalCount> refused_by{};  // by Refusal
  std::atomic<uint64_t> refusals_recorded{0};  // CommandRefused records appended and acknowledged
  std::atomic<uint64_t> duplicates{0};  // retries answered from the dedupe index: acks and refusals
  std::atomic<uint64_t> malformed{0};   // commands that did not decode (dropped, logged)
  std::atomic<uint64_t> epochs{0};      // partitions taken (epoch markers written)
  std::atomic<uint64_t> stood_down{0};  // partitions given up: a newer epoch fenced this sequencer
  std::atomic<uint64_t> append_failures{0};  // event batches the log did not take
  std::atomic<uint64_t> key_destroy_failures{0};  // erasures whose key the store did not destroy at once
  std::atomic<uint64_t> appended_bytes{0};   // key + value bytes of the events appended
  std::atomic<int32_t> partitions{0};   // partitions owned now
  metrics::Histogram batch_commands{metrics::Histogram::size_bounds()};  // commands per batch
  metrics::Histogram append_seconds;    // an event batch's append, until the log says it is durable
  // A checkpoint (waiting out the appends in flight, then the store write): no command is decided
  // meanwhile, so this is the loop's longest regular pause.
  metrics::Histogram checkpoint_seconds;
};

// Where the sequencer reads commands and sends its answers (transport.h). Not owned; must outlive
// the sequencer.
struct SequencerTransports {
  CommandTransport& commands;
  DeliveryTransport& deliveries;
};

class Sequencer {
 public:
  // Opens the state store. The topics im.commands and im.events must exist with the same
  // partition count. `keys` (not owned, must outlive the sequencer) holds the data keys a
  // message's text is sealed with: the sender's, made on their first message.
  static Result<std::unique_ptr<Sequencer>> create(EventLog& log, SequencerTransports transports,
                                                   const Directory& directory, KeyStore& keys, const Clock& clock,
                                                   EngineConfig config);
  // The same on a given state store instead of the one under config.state_dir: the seam tests use
  // to wrap the store (engine/src/sequencer_store_fault_test.cpp).
  static Result<std::unique_ptr<Sequencer>> create(EventLog& log, SequencerTransports transports,
                                                   const Directory& directory, KeyStore& keys, const Clock& clock,
                                                   EngineConfig config, std::unique_ptr<StateStore> store);
  ~Sequencer();

  // Joins the group and runs the loop on a new thread.
  Status start();
  // Finishes in-flight appends, checkpoints, commits and leaves the group. Idempotent.
  void stop();
  // Whether the loop stopped on an error it cannot recover from (a corrupt event, a state store it
  // cannot read); the message.
  [[nodiscard]] std::string failure() const;
  // Why the sequencer cannot answer commands yet, for /readyz; empty once it can. It cannot before
  // its first poll of the commands, and while it takes partitions: writing their epoch markers and
  // catching them up from the log (the message names the partition and how far it is). A member
  // of a Kafka consumer group is ready after its first poll even if the group has not given it a
  // partition yet (a standby never gets one); a partition it is given later makes it not ready
  // until that partition is caught up.
  [[nodiscard]] std::string not_ready() const;

  [[nodiscard]] const SequencerStats& stats() const;

  class Loop;  // private; see sequencer.cpp

 private:
  explicit Sequencer(std::unique_ptr<Loop> loop);
  std::unique_ptr<Loop> loop_;
};

}  // namespace imlog
