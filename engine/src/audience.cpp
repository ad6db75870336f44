#include "imlog/engine/audience.h"

namespace imlog {

bool shown_to_actor_only(fb::Event type) {
  return type == fb::Event::ReadMarked || type == fb::Event::UserBlocked || type == fb::Event::UserUnblocked;
}

std::vector<uint64_t> one_to_one_audience(const StreamRef& ref, const fb::EventEnvelope& e) {
  if (shown_to_actor_only(e.event_type())) return {e.actor()};
  return {ref.a, ref.b};
}

}  // namespace imlog
