#pragma once
// The process's metrics (docs/operations.md): what /metrics serves on every role's ops listener,
// through prometheus-cpp's data model and its text serializer.
//
// Two kinds of source, one registry:
//   - prometheus-cpp families registered in registry() (labelled counters a component resolves
//     once, e.g. refusals by reason: Counter::Increment is a lock-free atomic);
//   - scrape-time collectors (add_collector): a component's own relaxed atomics and Histograms,
//     turned into MetricFamily only when /metrics is read, so the hot path is an atomic increment
//     and nothing else — no lock, no allocation, no string.
// Every process also has its workers' figures (imlog_worker_*, core/include/imlog/core/worker.h)
// and the standard process_* ones (CPU, RSS, open fds, start time).
//
// Threading: everything here is thread-safe. A collector runs on the scraping thread, so it reads
// only atomics (or takes a lock of its own) and must not block.

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace imlog::metrics {

// A histogram whose observe() is a few relaxed atomic increments (prometheus-cpp's Histogram takes
// a mutex per observation). Fixed upper bounds, ascending; +Inf is implicit.
class Histogram {
 public:
  // Seconds: 100 µs to 10 s (latencies of appends, fsyncs, applies, acks).
  static std::vector<double> latency_bounds();
  // Counts: 1 to 16384, powers of 4 (batch sizes).
  static std::vector<double> size_bounds();
  explicit Histogram(std::vector<double> bounds = latency_bounds());
  void observe(double value);
  void observe(std::chrono::nanoseconds d) { observe(std::chrono::duration<double>(d).count()); }
  [[nodiscard]] prometheus::ClientMetric::Histogram snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket (not cumulative), +Inf last
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Builders for collectors.
prometheus::MetricFamily counter(std::string name, std::string help, double value);
prometheus::MetricFamily gauge(std::string name, std::string help, double value);
prometheus::MetricFamily histogram(std::string name, std::string help, const Histogram& h);
// An empty family of `type`, to add labelled samples to with sample().
prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type);
// Adds one sample with `labels` to `f` (counter, gauge or histogram per the family's type).
void sample(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, double value);
void sample(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, const Histogram& h);

using Collector = std::function<void(std::vector<prometheus::MetricFamily>&)>;

// Keeps a collector registered until destroyed (or reset()).
class CollectorHandle {
 public:
  CollectorHandle() = default;
  explicit CollectorHandle(uint64_t id) : id_(id) {}
  CollectorHandle(CollectorHandle&& o) noexcept : id_(o.id_) { o.id_ = 0; }
  CollectorHandle& operator=(CollectorHandle&& o) noexcept;
  ~CollectorHandle() { reset(); }
  void reset();

 private:
  uint64_t id_ = 0;
};

// The process's prometheus-cpp registry.
prometheus::Registry& registry();
// Registers `c`, called at every scrape until the handle goes. Hold the handle in the object whose
// figures it reads, declared after them, so it is unregistered before they are destroyed.
[[nodiscard]] CollectorHandle add_collector(Collector c);
// Every family of the process — the registry's, every collector's, the workers', the process's —
// in the Prometheus text format (0.0.4), by prometheus-cpp's TextSerializer.
std::string render();
// The Content-Type of render()'s text.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace imlog::metrics
