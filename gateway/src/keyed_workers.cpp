#include "keyed_workers.h"

#include <algorithm>

#include "imlog/core/threads.h"

namespace imlog::gw {

KeyedWorkers::KeyedWorkers(std::string name, uint32_t threads, size_t max_queued)
    : max_queued_(std::max<size_t>(1, max_queued)) {
  for (uint32_t i = 0; i < std::max<uint32_t>(1, threads); ++i) workers_.push_back(std::make_unique<Worker>());
  for (auto& w : workers_) {
    w->thread = std::thread([this, name, &w = *w] {
      name_this_thread(name);
      run(w);
    });
  }
}

KeyedWorkers::~KeyedWorkers() { stop(); }

bool KeyedWorkers::post(uint64_t key, std::function<void()> fn) {
  Worker& w = *workers_[key % workers_.size()];
  {
    std::lock_guard lock(w.mu);
    if (!w.exited) {
      if (!w.stopping && w.queue.size() >= max_queued_) return false;
      w.queue.push_back(std::move(fn));  // while stopping, still behind the user's earlier work
      queued_.fetch_add(1, std::memory_order_relaxed);
      w.cv.notify_one();
      return true;
    }
  }
  fn();  // the worker is gone
  return true;
}

void KeyedWorkers::stop() {
  if (stopped_.exchange(true)) return;
  for (auto& w : workers_) {
    std::lock_guard lock(w->mu);
    w->stopping = true;
    w->cv.notify_one();
  }
  for (auto& w : workers_) w->thread.join();
}

void KeyedWorkers::run(Worker& w) {
  std::unique_lock lock(w.mu);
  for (;;) {
    w.cv.wait(lock, [&] { return w.stopping || !w.queue.empty(); });
    if (w.queue.empty()) {  // stopping, and everything queued has run
      w.exited = true;
      return;
    }
    auto fn = std::move(w.queue.front());
    w.queue.pop_front();
    queued_.fetch_sub(1, std::memory_order_relaxed);
    lock.unlock();
    fn();
    fn = nullptr;
    lock.lock();
  }
}

}  // namespace imlog::gw
