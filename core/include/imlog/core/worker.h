#pragma once
// Worker: the one lifecycle of every background loop (docs/architecture.md, "Operations").
//
// A worker owns a thread that calls its step until stop(). A step returns a Status:
//   - success: the next step runs at once (a step that waits for work waits inside itself, on a
//     poll or a condition, and returns when stop() has called the worker's wake hook);
//   - a retryable error: the worker backs off (capped exponential: first, 2×first, ... up to max;
//     reset by the next success), logs the error once per run of failures, and calls the step again;
//   - a non-retryable error: the worker stops for good in state `failed`, keeping the error. It is
//     logged once at error level, counted, passed to the on_failure hook, and listed by
//     failed_workers() until the worker is destroyed — /readyz names it, /metrics counts it.
//
// Threading: start(), stop() and the destructor from the owner's thread; everything else from any
// thread. stop() is prompt even while backing off: the back-off waits on a condition stop() sets,
// as does wait_for(), a periodic step's wait.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "imlog/core/result.h"

namespace imlog {

enum class WorkerState { stopped, running, failed };

struct BackOff {
  std::chrono::milliseconds first{50};
  std::chrono::milliseconds max{5000};
};

struct WorkerStats {
  uint64_t iterations = 0;  // steps that succeeded
  uint64_t retries = 0;     // steps that failed retryably (each followed by a back-off)
  std::string last_error;   // the last error of any kind; empty if none yet
};

class Worker {
 public:
  using Step = std::function<Status()>;

  // `name` says which loop this is in logs, /readyz and /metrics ("router", "command-bus", ...).
  Worker(std::string name, Step step, BackOff backoff = {});
  ~Worker();  // stop()
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Called by stop() to end a step's wait early (e.g. a consumer's wakeup()). Set before start().
  void on_wake(std::function<void()> wake);
  // Called once, on the worker's thread, when it fails. Set before start().
  void on_failure(std::function<void(const Error&)> failed);

  void start();
  // Requests the stop, wakes the step and any back-off, joins. Idempotent. A failed worker stays
  // failed.
  void stop();

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] WorkerState state() const;
  // True once stop() was called: a step that loops inside itself checks it.
  [[nodiscard]] bool stopping() const { return stopping_.load(); }
  // Waits `d` unless stop() comes first; false when stopping. For a step that runs on a period
  // (the step's own wait, with no stop flag or condition of its own).
  bool wait_for(std::chrono::milliseconds d);
  // "<name>: <error>" once failed; empty otherwise.
  [[nodiscard]] std::string failure() const;
  [[nodiscard]] WorkerStats stats() const;

 private:
  void run();
  void record_failure(const Error& e);

  const std::string name_;
  const Step step_;
  const BackOff backoff_;
  std::function<void()> wake_;
  std::function<void(const Error&)> failed_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;  // guards state_, stats_, failure_; cv_ waits on it
  std::condition_variable cv_;
  WorkerState state_ = WorkerState::stopped;
  WorkerStats stats_;
  std::string failure_;
  std::thread thread_;
};

// One line per worker of this process, for /metrics and /readyz.
struct WorkerReport {
  std::string name;
  WorkerState state;
  WorkerStats stats;
  std::string failure;
};
// Every worker alive in this process (started or not), in creation order.
std::vector<WorkerReport> worker_reports();
// "<name>: <error>" of each failed worker alive in this process, joined with "; "; empty if none.
std::string failed_workers();
// Workers that failed since the process started (they stay counted after they are destroyed).
uint64_t worker_failures_total();

}  // namespace imlog
