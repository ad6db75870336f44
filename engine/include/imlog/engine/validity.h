#pragma once
// The validity rule of the event log (docs/architecture.md, "Epochs and fencing"), the ONE
// function every reader applies — sequencer catch-up, projections, router, replay:
//
//   An event is valid iff its envelope's epoch equals the token of the latest EpochStarted
//   before it in its partition. EpochStarted events themselves are valid and open the epoch.
//
// So a zombie sequencer that kept appending after another took its partition is ignored by every
// reader alike, and the state each rebuilds agrees. Events before any EpochStarted are invalid.
//
// Also: event ids are strictly increasing within a partition (message_ids.h), so an event whose id
// is not above the last valid one of its partition is a second copy of a record — which a broker
// can store when a producer's retry crosses a lost answer (librdkafka's mock does) — and invalid.
//
// A reader that resumes from a stored offset must also restore the token current at that offset
// (store token() with the offset). Not thread-safe: one per reading thread.

#include <cstdint>
#include <unordered_map>

#include "imlog/schema/codec.h"

namespace imlog {

class EpochFilter {
 public:
  // Feeds one event of `partition`, in offset order; returns whether it is valid.
  bool accept(int32_t partition, const fb::EventEnvelope& event);

  // The token of the latest EpochStarted seen in the partition (0: none yet).
  [[nodiscard]] uint64_t token(int32_t partition) const;
  void restore(int32_t partition, uint64_t token);

 private:
  struct PartitionState {
    uint64_t token = 0;
    uint64_t last_id = 0;  // of the last valid event
  };
  std::unordered_map<int32_t, PartitionState> partitions_;
};

}  // namespace imlog
