#pragma once
// Who is connected to this gateway (docs/architecture.md, "The gateway"): the user → sessions index
// pushes go through (SessionHub), and every open connection so stop() can close them
// (ConnectionSet).
//
// Thread-safe. Sessions are held weakly: a session alive only in the hub is already gone.

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace imlog::gw {

// Identifies a message a session sent itself, so the push of that message skips the session that
// got the ack (the sender's *other* devices still get new-message).
uint64_t sent_key(std::string_view conversation, std::string_view client_msg_id);

struct PushInfo {
  uint64_t actor = 0;     // who caused the event
  uint64_t sent_key = 0;  // MessageAppended: sent_key(conversation, client_msg_id); else 0
};

// One frame for one session, with what the session needs to decide whether to send it.
struct PushFrame {
  std::shared_ptr<const std::string> frame;
  PushInfo info;
};

class PushTarget {
 public:
  virtual ~PushTarget() = default;
  // Queues frames, in order; thread-safe (one post to the session's strand).
  virtual void push(std::vector<PushFrame> frames) = 0;
};

// A frame for every session of a user on this gateway (SessionHub::push_all).
struct UserPush {
  uint64_t user_id;
  std::shared_ptr<const std::string> frame;
  PushInfo info;
};

class SessionHub {
 public:
  void add(uint64_t user_id, uint64_t session_id, std::weak_ptr<PushTarget> target);
  void remove(uint64_t user_id, uint64_t session_id);
  // Pushes to every session of the user here; returns how many sessions got it.
  size_t push(uint64_t user_id, const std::shared_ptr<const std::string>& frame, const PushInfo& info);
  // Pushes a batch: each session gets its frames, in the batch's order, in one push() call.
  void push_all(const std::vector<UserPush>& pushes);
  [[nodiscard]] size_t sessions_of(uint64_t user_id) const;

 private:
  struct Entry {
    uint64_t session_id;
    std::weak_ptr<PushTarget> target;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<uint64_t, std::vector<Entry>> users;
  };
  static constexpr size_t kShards = 32;
  Shard& shard(uint64_t user_id) { return shards_[user_id % kShards]; }
  const Shard& shard(uint64_t user_id) const { return shards_[user_id % kShards]; }
  std::array<Shard, kShards> shards_;
};

class Closable {
 public:
  virtual ~Closable() = default;
  // Starts a graceful close (WebSocket: close frame with `code`; HTTP: after the current reply).
  // Thread-safe.
  virtual void shutdown(uint16_t code) = 0;
};

class ConnectionSet {
 public:
  void add(uint64_t id, std::weak_ptr<Closable> c);
  void remove(uint64_t id);
  [[nodiscard]] size_t size() const;
  void shutdown_all(uint16_t code);
  // Waits until empty or the deadline; returns whether it emptied.
  bool wait_empty(std::chrono::milliseconds timeout);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, std::weak_ptr<Closable>> open_;
};

}  // namespace imlog::gw
