#include "imlog/engine/audience.h"

namespace imlog {

bool shown_to_actor_only(const StreamRef& ref, fb::Event type) {
  if (type == fb::Event::UserBlocked || type == fb::Event::UserUnblocked) return true;
  return type == fb::Event::ReadMarked && ref.kind != StreamKind::single;
}

std::vector<uint64_t> one_to_one_audience(const StreamRef& ref, const fb::EventEnvelope& e) {
  if (shown_to_actor_only(ref, e.event_type())) return {e.actor()};
  return {ref.a, ref.b};
}

}  // namespace imlog
