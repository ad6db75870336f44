#include "imlog/engine/validity.h"

namespace imlog {

bool EpochFilter::accept(int32_t partition, const fb::EventEnvelope& event) {
  if (event.event_type() == fb::Event::EpochStarted) {
    tokens_[partition] = event.event_as_EpochStarted()->token();
    return true;
  }
  auto it = tokens_.find(partition);
  return it != tokens_.end() && it->second != 0 && event.epoch() == it->second;
}

uint64_t EpochFilter::token(int32_t partition) const {
  auto it = tokens_.find(partition);
  return it == tokens_.end() ? 0 : it->second;
}

void EpochFilter::restore(int32_t partition, uint64_t token) { tokens_[partition] = token; }

}  // namespace imlog
