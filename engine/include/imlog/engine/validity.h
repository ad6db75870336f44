#pragma once
// The validity rule of the event log (docs/architecture.md, "Epochs and fencing"), the ONE
// function every reader applies — sequencer catch-up, projections, router, replay:
//
//   An event is valid iff its envelope's epoch equals the token of the latest EpochStarted
//   before it in its partition, and it links to the partition's last valid record: its
//   prev_event_id is the event id of the latest valid event or marker before it. EpochStarted
//   events themselves are valid and open the epoch (a second copy of the current marker changes
//   nothing).
//
// The epoch part fences a zombie: a sequencer that kept appending after another took its
// partition is ignored by every reader alike. The link part makes an epoch gapless: when the log
// loses one batch of an epoch (its append failed) but stores a later one that was already in
// flight, the later batch links to events no reader has, so it is invalid to every reader, and
// so is everything the epoch writes after it; the sequencer, told of the failure, retakes the
// partition under a new epoch and decides those commands again. Without it the later batch's
// seqs would stand after a hole. The link also drops a second copy of a record (a broker can
// store a producer's retry twice; librdkafka's mock does): the copy links to a record that is no
// longer the last. Events written before links existed carry prev_event_id 0 and are checked by
// id instead: their id must be above the last valid one's.
//
// A reader that resumes from a stored offset must restore the state current at that offset
// (store state() with the offset). Not thread-safe: one per reading thread.

#include <cstdint>
#include <unordered_map>

#include "imlog/schema/codec.h"

namespace imlog {

class EpochFilter {
 public:
  // What a reader stores with its offset to resume there.
  struct State {
    uint64_t token = 0;  // of the latest EpochStarted (0: none yet)
    uint64_t link = 0;   // event id of the last valid record (0: not known, the next one is taken)
    bool operator==(const State&) const = default;
  };

  // Feeds one event of `partition`, in offset order; returns whether it is valid.
  bool accept(int32_t partition, const fb::EventEnvelope& event);

  // The token of the latest EpochStarted seen in the partition (0: none yet).
  [[nodiscard]] uint64_t token(int32_t partition) const;
  [[nodiscard]] State state(int32_t partition) const;
  void restore(int32_t partition, State state);

 private:
  struct PartitionState {
    uint64_t token = 0;
    uint64_t link = 0;     // event id of the last valid record, marker or event
    uint64_t last_id = 0;  // highest event id of a valid event (the check of unlinked events)
  };
  std::unordered_map<int32_t, PartitionState> partitions_;
};

}  // namespace imlog
