#pragma once
// Presence pushes (issue 6). Presence is not an event: it lives with the sessions (SessionRegistry)
// and changes when a user's first device connects, their last one goes (closed, or silent past the
// heartbeat timeout) or they choose a status. Each change is told to the user's friends that are
// online: on this gateway straight through the SessionHub, on other gateways as a Delivery with a
// PresenceNote on their im.deliver.<gateway_id> topic (SessionRegistry::locate finds them).
//
// Thread-safe; runs on the caller's thread (a session's strand or a handler); reads the friend list
// from the read model and the registry, never waits on the engine.

#include <cstdint>
#include <memory>
#include <string>

#include "imlog/tasks/sessions.h"
#include "services.h"

namespace imlog::gw {

class JsonOut;

// {user_id, status, last_seen}
void write_presence(JsonOut& j, const Presence& p);

// {"type":"presence","data":{"user_id","status","last_seen"}}
std::shared_ptr<const std::string> presence_frame(const Presence& p);

// The presence of one user now.
Presence presence_of(Services& svc, uint64_t user);

// Tells `user`'s online friends their presence now. Does nothing once the bus has stopped (shutdown).
void announce_presence(Services& svc, uint64_t user);

}  // namespace imlog::gw
