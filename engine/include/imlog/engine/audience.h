#pragma once
// Who is shown an event, where the event alone decides it (docs/architecture.md, "The write
// path"). The router applies it to every event; on the single node the sequencer applies it to
// one-to-one conversations and hands the pushes over with the sender's ack. Pure functions.

#include <cstdint>
#include <vector>

#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"

namespace imlog {

// Blocks concern only the actor's own devices, whatever their stream; so do read markers, except
// in a one-to-one conversation, where the other participant is shown them as read receipts.
bool shown_to_actor_only(const StreamRef& ref, fb::Event type);

// The users shown an event of a one-to-one conversation: both participants, or the actor alone
// (shown_to_actor_only). `ref` must be a single stream.
std::vector<uint64_t> one_to_one_audience(const StreamRef& ref, const fb::EventEnvelope& e);

}  // namespace imlog
