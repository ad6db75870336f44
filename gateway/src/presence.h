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
#include "imlog/tasks/sessions.h"

namespace imlog::gw {

struct Services;

// Runs the SessionRegistry's round trips and presence announcements off the I/O threads: the
// registry may be Redis and the friend list MySQL, and each call may block for seconds while they
// are down. `threads` workers, each with its own FIFO queue of at most `max_queued` tasks; a task
// goes to the worker of its key (a user id), so one user's work — a session's connected, its
// heartbeats, its disconnected — runs in the order it was posted.
//
// Thread-safe. post() returns false when the key's queue is full (the caller drops fire-and-forget
// work or answers 503). stop() runs what is queued and joins; after it post() runs the task on the
// caller's thread (only the io_context's teardown posts then, its threads gone).
class RegistryWorkers {
 public:
  RegistryWorkers(uint32_t threads, size_t max_queued);
  ~RegistryWorkers();
  bool post(uint64_t key, std::function<void()> fn);
  void stop();

 private:
  struct Worker {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> queue;
    bool stopping = false;
    bool exited = false;  // the thread ran the last of its queue and returned
    std::thread thread;
  };
  void run(Worker& w);

  const size_t max_queued_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stopped_{false};
};

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
