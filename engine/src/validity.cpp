#include "imlog/engine/validity.h"

#include <algorithm>

namespace imlog {

bool EpochFilter::accept(int32_t partition, const fb::EventEnvelope& event) {
  PartitionState& p = partitions_[partition];
  if (event.event_type() == fb::Event::EpochStarted) {
    // A new owner writes its marker before it has read its predecessor's last events, so a
    // marker's id need not exceed theirs; the events of its epoch will (it catches up first).
    p.token = event.event_as_EpochStarted()->token();
    p.last_id = std::max(p.last_id, event.event_id());
    return true;
  }
  if (p.last_id != 0 && event.event_id() <= p.last_id) return false;  // a second copy
  if (p.token == 0 || event.epoch() != p.token) return false;
  p.last_id = event.event_id();
  return true;
}

uint64_t EpochFilter::token(int32_t partition) const {
  auto it = partitions_.find(partition);
  return it == partitions_.end() ? 0 : it->second.token;
}

void EpochFilter::restore(int32_t partition, uint64_t token) { partitions_[partition] = PartitionState{token, 0}; }

}  // namespace imlog
