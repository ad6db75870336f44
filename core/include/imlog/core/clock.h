#pragma once
// An injectable clock: tests never depend on the real time. Production code takes a Clock& and
// tests pass a ManualClock. Thread-safe: now_ms() may be called from any thread.

#include <atomic>
#include <cstdint>

namespace imlog {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in Unix milliseconds.
  [[nodiscard]] virtual int64_t now_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  [[nodiscard]] int64_t now_ms() const override;
  // The process-wide instance, for code that is not handed a clock.
  static const SystemClock& instance();
};

// A clock that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}
  [[nodiscard]] int64_t now_ms() const override { return now_.load(std::memory_order_relaxed); }
  void advance_ms(int64_t d) { now_.fetch_add(d, std::memory_order_relaxed); }
  void set_ms(int64_t t) { now_.store(t, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace imlog
