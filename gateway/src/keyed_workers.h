#pragma once
// Work that must not run on an I/O thread — read-model queries (RocksDB, MySQL, Redis), the session
// registry's round trips, presence announcements — runs on KeyedWorkers: `threads` workers, each
// with its own FIFO queue of at most `max_queued` tasks. A task goes to the worker of its key (a
// user id), so one user's work runs in the order it was posted (a session's connected, heartbeats,
// disconnected; a client's reads), and a worker stuck on a stalled server holds up only its keys.
//
// Thread-safe. post() returns false when the key's queue is full (the caller drops fire-and-forget
// work or answers 503). stop() runs what is queued and joins; after it post() runs the task on the
// caller's thread (only the io_context's teardown posts then, its threads gone).

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

namespace imlog::gw {

class KeyedWorkers {
 public:
  // `name` names its threads (name_this_thread).
  KeyedWorkers(std::string name, uint32_t threads, size_t max_queued);
  ~KeyedWorkers();
  bool post(uint64_t key, std::function<void()> fn);
  void stop();
  // Tasks waiting in every queue (not the running ones), for /metrics.
  [[nodiscard]] int64_t queued() const { return queued_.load(std::memory_order_relaxed); }

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
  std::atomic<int64_t> queued_{0};
};

}  // namespace imlog::gw
