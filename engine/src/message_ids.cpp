#include "imlog/engine/message_ids.h"

#include <algorithm>
#include <cstdlib>

#include "imlog/core/logging.h"

#include <spdlog/spdlog.h>

namespace imlog {

MessageIdGenerator::MessageIdGenerator(const Clock& clock, int32_t partition)
    : clock_(clock), partition_bits_(static_cast<uint64_t>(partition) << kCounterBits) {
  if (partition < 0 || partition >= kMaxPartitions) {
    logger("engine")->critical("message id partition {} outside [0, {})", partition, kMaxPartitions);
    std::abort();
  }
}

uint64_t MessageIdGenerator::next() {
  auto ms = static_cast<uint64_t>(std::max<int64_t>(clock_.now_ms() - kEpochMs, 0));
  uint64_t candidate = (ms << (kPartitionBits + kCounterBits)) | partition_bits_;
  constexpr uint64_t kCounterMask = (1u << kCounterBits) - 1;
  if (candidate <= last_) {
    // Same millisecond (or a clock behind the log): count up; past 4096 in one ms, borrow the
    // next millisecond, keeping this partition's bits.
    uint64_t bumped = last_ + 1;
    if ((bumped & kCounterMask) == 0) {
      bumped = ((last_ >> (kPartitionBits + kCounterBits)) + 1) << (kPartitionBits + kCounterBits);
      bumped |= partition_bits_;
    }
    candidate = bumped;
  }
  last_ = candidate;
  return candidate;
}

void MessageIdGenerator::observe(uint64_t id) { last_ = std::max(last_, id); }

}  // namespace imlog
