#include "imlog/core/worker.h"

#include <algorithm>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/threads.h"

namespace imlog {
namespace {

// Every live worker, so /readyz and /metrics see them without each role wiring its own.
struct Registry {
  std::mutex mu;
  std::vector<const Worker*> workers;
  std::atomic<uint64_t> failures{0};
};

Registry& registry() {
  static Registry r;
  return r;
}

// IMLOG_FAULT_WORKER=<name>: that worker fails at its first step (fault injection for the tests
// of what a failure looks like from outside: /readyz, /metrics, answers; docs/architecture.md,
// "Operations").
bool fault_injected(const std::string& name) {
  const char* target = std::getenv("IMLOG_FAULT_WORKER");
  return target != nullptr && name == target;
}

}  // namespace

Worker::Worker(std::string name, Step step, BackOff backoff)
    : name_(std::move(name)), step_(std::move(step)), backoff_(backoff) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  r.workers.push_back(this);
}

Worker::~Worker() {
  stop();
  auto& r = registry();
  std::lock_guard lock(r.mu);
  r.workers.erase(std::find(r.workers.begin(), r.workers.end(), this));
}

void Worker::on_wake(std::function<void()> wake) { wake_ = std::move(wake); }
void Worker::on_failure(std::function<void(const Error&)> failed) { failed_ = std::move(failed); }

void Worker::start() {
  {
    std::lock_guard lock(mu_);
    state_ = WorkerState::running;
  }
  thread_ = std::thread([this] {
    name_this_thread(name_);
    run();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (wake_) wake_();
  thread_.join();
  std::lock_guard lock(mu_);
  if (state_ == WorkerState::running) state_ = WorkerState::stopped;
}

WorkerState Worker::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::string Worker::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

WorkerStats Worker::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

bool Worker::wait_for(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, d, [&] { return stopping_.load(); });
}

void Worker::record_failure(const Error& e) {
  {
    std::lock_guard lock(mu_);
    state_ = WorkerState::failed;
    failure_ = name_ + ": " + e.to_string();
    stats_.last_error = e.to_string();
  }
  registry().failures++;
  logger("worker")->error("{} failed and stopped: {}", name_, e.to_string());
  if (failed_) failed_(e);
}

void Worker::run() {
  if (fault_injected(name_)) {
    return record_failure(Error(std::make_error_code(std::errc::io_error), "fault injected by IMLOG_FAULT_WORKER"));
  }
  auto delay = backoff_.first;
  bool failing = false;  // in a run of retryable errors: logged at its start and end only
  while (!stopping_) {
    Status s = step_();
    if (s) {
      if (failing) logger("worker")->info("{} recovered", name_);
      failing = false;
      delay = backoff_.first;
      std::lock_guard lock(mu_);
      stats_.iterations++;
      continue;
    }
    if (!s.error().retryable()) return record_failure(s.error());
    if (!failing) logger("worker")->warn("{}: {}; retrying with back-off", name_, s.error().to_string());
    failing = true;
    {
      std::lock_guard lock(mu_);
      stats_.retries++;
      stats_.last_error = s.error().to_string();
    }
    if (!wait_for(delay)) return;
    delay = std::min(delay * 2, backoff_.max);
  }
}

std::vector<WorkerReport> worker_reports() {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<WorkerReport> out;
  for (const Worker* w : r.workers) out.push_back(WorkerReport{w->name(), w->state(), w->stats(), w->failure()});
  return out;
}

std::string failed_workers() {
  std::string out;
  for (const auto& w : worker_reports()) {
    if (w.state == WorkerState::failed) out += (out.empty() ? "" : "; ") + w.failure;
  }
  return out;
}

uint64_t worker_failures_total() { return registry().failures.load(); }

}  // namespace imlog
