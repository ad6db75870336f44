#include "imlog/core/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <prometheus/text_serializer.h>

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "imlog/core/worker.h"

namespace imlog::metrics {

std::vector<double> Histogram::latency_bounds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> Histogram::size_bounds() { return {1, 4, 16, 64, 256, 1024, 4096, 16384}; }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

prometheus::ClientMetric::Histogram Histogram::snapshot() const {
  prometheus::ClientMetric::Histogram h;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    h.bucket.push_back({cumulative, bounds_[i]});
  }
  cumulative += buckets_[bounds_.size()].load(std::memory_order_relaxed);
  h.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  // The count is the +Inf bucket's, so a scrape racing an observe() stays consistent.
  h.sample_count = cumulative;
  h.sample_sum = sum_.load(std::memory_order_relaxed);
  return h;
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void sample(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, double value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  if (f.type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

void sample(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, const Histogram& h) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.histogram = h.snapshot();
  f.metric.push_back(std::move(m));
}

prometheus::MetricFamily counter(std::string name, std::string help, double value) {
  auto f = family(std::move(name), std::move(help), prometheus::MetricType::Counter);
  sample(f, {}, value);
  return f;
}

prometheus::MetricFamily gauge(std::string name, std::string help, double value) {
  auto f = family(std::move(name), std::move(help), prometheus::MetricType::Gauge);
  sample(f, {}, value);
  return f;
}

prometheus::MetricFamily histogram(std::string name, std::string help, const Histogram& h) {
  auto f = family(std::move(name), std::move(help), prometheus::MetricType::Histogram);
  sample(f, {}, h);
  return f;
}

namespace {

struct Collectors {
  std::mutex mu;  // guards next and all; held while collecting, so a handle's reset() waits for it
  uint64_t next = 1;
  std::map<uint64_t, Collector> all;
};

Collectors& collectors() {
  static auto* c = new Collectors();  // never destroyed: handles may outlive main's statics
  return *c;
}

// imlog_worker_*: every worker alive in the process, by name.
void collect_workers(std::vector<prometheus::MetricFamily>& out) {
  auto workers = worker_reports();
  auto up = family("imlog_worker_up", "Whether a background worker is running (0: stopped or failed).",
                   prometheus::MetricType::Gauge);
  auto failed = family("imlog_worker_failed", "Whether a background worker stopped on an error it cannot retry.",
                       prometheus::MetricType::Gauge);
  auto retries = family("imlog_worker_retries_total", "Retryable errors of a worker, each followed by a back-off.",
                        prometheus::MetricType::Counter);
  for (const auto& w : workers) {
    sample(up, {{"worker", w.name}}, w.state == WorkerState::running ? 1 : 0);
    sample(failed, {{"worker", w.name}}, w.state == WorkerState::failed ? 1 : 0);
    sample(retries, {{"worker", w.name}}, static_cast<double>(w.stats.retries));
  }
  out.push_back(std::move(up));
  out.push_back(std::move(failed));
  out.push_back(std::move(retries));
  out.push_back(counter("imlog_worker_failures_total", "Workers of this process that failed since it started.",
                        static_cast<double>(worker_failures_total())));
}

// The standard process_* figures, from /proc/self.
void collect_process(std::vector<prometheus::MetricFamily>& out) {
  static const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  static const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  // Fields after the command name (which may hold spaces) start at the last ')'.
  auto close = line.rfind(')');
  if (close != std::string::npos) {
    std::istringstream in(line.substr(close + 2));
    std::vector<std::string> f;
    for (std::string s; in >> s;) f.push_back(s);
    // f[0] is field 3 (state): utime 14, stime 15, starttime 22, rss 24 → f[11], f[12], f[19], f[21].
    if (f.size() > 21) {
      double cpu = (std::stod(f[11]) + std::stod(f[12])) / ticks;
      out.push_back(counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", cpu));
      out.push_back(gauge("process_resident_memory_bytes", "Resident memory size, in bytes.", std::stod(f[21]) * page));
      double boot = 0;
      std::ifstream s("/proc/stat");
      for (std::string l; std::getline(s, l);) {
        if (l.rfind("btime ", 0) == 0) boot = std::stod(l.substr(6));
      }
      out.push_back(gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.",
                          boot + std::stod(f[19]) / ticks));
    }
  }
  double fds = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++fds;
    }
    ::closedir(d);
    --fds;  // the directory's own
  }
  out.push_back(gauge("process_open_fds", "Open file descriptors.", fds));
  out.push_back(gauge("process_max_fds", "The limit of open file descriptors.",
                      static_cast<double>(::sysconf(_SC_OPEN_MAX))));
}

}  // namespace

CollectorHandle& CollectorHandle::operator=(CollectorHandle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = 0;
  }
  return *this;
}

void CollectorHandle::reset() {
  if (id_ == 0) return;
  auto& c = collectors();
  std::lock_guard lock(c.mu);
  c.all.erase(id_);
  id_ = 0;
}

prometheus::Registry& registry() {
  static auto* r = new prometheus::Registry();
  return *r;
}

CollectorHandle add_collector(Collector fn) {
  auto& c = collectors();
  std::lock_guard lock(c.mu);
  uint64_t id = c.next++;
  c.all.emplace(id, std::move(fn));
  return CollectorHandle(id);
}

std::string render() {
  auto families = registry().Collect();
  {
    auto& c = collectors();
    std::lock_guard lock(c.mu);
    for (auto& [id, fn] : c.all) fn(families);
  }
  collect_workers(families);
  collect_process(families);
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace imlog::metrics
