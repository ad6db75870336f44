#pragma once
// Message ids (event ids): 64-bit, time-ordered, unique across engine instances
// (docs/architecture.md, "Dedupe and seq assignment").
//
//   | 41 bits: ms since 2020-01-01 | 10 bits: partition | 12 bits: counter |
//
// Only the owner of a partition writes its events (fencing makes any other writer's events
// invalid), so partition bits make ids from different partitions distinct, and within a partition
// ids are strictly increasing: next() never returns less than one past the highest id seen in the
// partition (observe()), so a new owner whose clock lags the old one's still never repeats an id.
// 41 bits of milliseconds last until 2089.
//
// Not thread-safe: owned by the sequencer thread of its partition.

#include <cstdint>

#include "imlog/core/clock.h"

namespace imlog {

class MessageIdGenerator {
 public:
  static constexpr int64_t kEpochMs = 1'577'836'800'000;  // 2020-01-01T00:00:00Z
  static constexpr int kPartitionBits = 10;
  static constexpr int kCounterBits = 12;
  static constexpr int32_t kMaxPartitions = 1 << kPartitionBits;

  // Precondition: 0 <= partition < kMaxPartitions.
  MessageIdGenerator(const Clock& clock, int32_t partition);

  uint64_t next();
  // Records an id already in the partition's log, so next() stays above it.
  void observe(uint64_t id);

  // The Unix ms an id was made at.
  static int64_t time_of(uint64_t id) { return static_cast<int64_t>(id >> 22) + kEpochMs; }

 private:
  const Clock& clock_;
  uint64_t partition_bits_;
  uint64_t last_ = 0;
};

}  // namespace imlog
