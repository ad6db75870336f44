#include "imlog/engine/validity.h"

#include <algorithm>

namespace imlog {

// A CommandRefused record (a refusal the sequencer remembers; schema 6) is checked like an event:
// its writer's token, linked to the record before it, and the next record linked to it. So every
// reader feeds it to accept() and skips it only afterwards (is_control_record()): a reader that
// dropped it first would take the next event for one after a lost record.
bool EpochFilter::accept(int32_t partition, const fb::EventEnvelope& event) {
  PartitionState& p = partitions_[partition];
  if (event.event_type() == fb::Event::EpochStarted) {
    uint64_t token = event.event_as_EpochStarted()->token();
    if (token == p.token && token != 0) return true;  // a second copy of the current marker
    // A new owner writes its marker before it has read its predecessor's last events, so a
    // marker's id need not exceed theirs; the events of its epoch will (it catches up first).
    p.token = token;
    p.link = event.event_id();
    p.last_id = std::max(p.last_id, event.event_id());
    return true;
  }
  if (p.token == 0 || event.epoch() != p.token) return false;
  if (event.prev_event_id() != 0) {
    if (p.link != 0 && event.prev_event_id() != p.link) return false;  // after a lost record, or a copy
  } else if (p.last_id != 0 && event.event_id() <= p.last_id) {
    return false;  // unlinked (written before links): a second copy
  }
  p.link = event.event_id();
  p.last_id = std::max(p.last_id, event.event_id());
  return true;
}

uint64_t EpochFilter::token(int32_t partition) const {
  auto it = partitions_.find(partition);
  return it == partitions_.end() ? 0 : it->second.token;
}

EpochFilter::State EpochFilter::state(int32_t partition) const {
  auto it = partitions_.find(partition);
  return it == partitions_.end() ? State{} : State{it->second.token, it->second.link};
}

void EpochFilter::restore(int32_t partition, State state) {
  partitions_[partition] = PartitionState{state.token, state.link, state.link};
}

}  // namespace imlog
