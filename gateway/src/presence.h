#pragma once
// Presence pushes (issue 6). Presence is not an event: it lives with the sessions (SessionRegistry)
// and changes when a user's first device connects, their last one goes (closed, or silent past the
// heartbeat timeout) or they choose a status. Each change is told to the user's friends that are
// online: on this gateway straight through the SessionHub, on other gateways as a Delivery with a
// PresenceNote on their im.deliver.<gateway_id> topic (SessionRegistry::locate finds them).
//
// Thread-safe; runs on the caller's thread (a session's strand or a handler); reads the friend list
// from the read model and the registry, never waits on the engine.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <span>
#include <thread>
#include <unordered_set>
#include <vector>

#include "imlog/core/result.h"
#include "keyed_workers.h"
#include "imlog/tasks/sessions.h"

namespace imlog::gw {

struct Services;

class JsonOut;

// {user_id, status, last_seen}
void write_presence(JsonOut& j, const Presence& p);

// {"type":"presence","data":{"user_id","status","last_seen"}}
std::shared_ptr<const std::string> presence_frame(const Presence& p);

// The presence of one user now.
Presence presence_of(Services& svc, uint64_t user);

// {user_id, status: "unknown", last_seen: 0}: a user whose presence the caller may not see.
void write_hidden_presence(JsonOut& j, uint64_t user);

// Of `users`, those whose presence `viewer` may see: themself, and their friends where neither has
// blocked the other (a block does not end a friendship; it hides presence both ways). Reads the
// read model (friends, blocks); fails when it cannot.
Result<std::unordered_set<uint64_t>> presence_visible(Services& svc, uint64_t viewer, std::span<const uint64_t> users);

// What choosing a status came to: `presence` when saved (http_status 200), else an error with the
// HTTP status a REST caller answers and the code and message every caller shows.
struct StatusChoice {
  int http_status = 200;
  std::string code;
  std::string message;
  Presence presence;
};

// Saves `user`'s chosen status (online, away or busy) on their registry worker, tells their online
// friends when they are online, and calls `done` (on that worker) with the presence now. Shared by
// PUT /users/me/status and the WebSocket `set-status` frame.
void choose_status(Services& svc, uint64_t user, std::string_view status_name, std::function<void(StatusChoice)> done);

// Tells `user`'s online friends their presence now, except friends blocked by `user` or who
// blocked `user`. Does nothing once the bus has stopped (shutdown).
void announce_presence(Services& svc, uint64_t user);

}  // namespace imlog::gw
