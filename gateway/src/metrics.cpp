#include "metrics.h"

#include <fmt/format.h>

#include "imlog/core/worker.h"

namespace imlog::gw {

void Histogram::observe(std::chrono::nanoseconds d) {
  double s = std::chrono::duration<double>(d).count();
  size_t i = 0;
  while (i < kBounds.size() && s > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(0, d.count())), std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, kBounds[i], cumulative);
  }
  cumulative += buckets_[kBounds.size()].load(std::memory_order_relaxed);
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
  out += fmt::format("{}_sum {}\n", name, static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
  out += fmt::format("{}_count {}\n", name, count_.load(std::memory_order_relaxed));
}

void Metrics::error(std::string_view code) {
  std::lock_guard lock(mu_);
  auto it = errors_.find(code);
  if (it == errors_.end()) it = errors_.emplace(std::string(code), 0).first;
  ++it->second;
}

void Metrics::http_status(unsigned status) {
  std::lock_guard lock(mu_);
  ++statuses_[status];
}

namespace {
void gauge(std::string& out, std::string_view name, std::string_view help, int64_t v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
}
void counter(std::string& out, std::string_view name, std::string_view help, uint64_t v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
}

// Every worker of the process (core/include/imlog/core/worker.h), by name.
void render_workers(std::string& out) {
  auto workers = worker_reports();
  out += "# HELP imlog_worker_up Whether a background worker is running (0: stopped or failed).\n"
         "# TYPE imlog_worker_up gauge\n";
  for (const auto& w : workers) {
    out += fmt::format("imlog_worker_up{{worker=\"{}\"}} {}\n", w.name, w.state == WorkerState::running ? 1 : 0);
  }
  out += "# HELP imlog_worker_failed Whether a background worker stopped on an error it cannot retry.\n"
         "# TYPE imlog_worker_failed gauge\n";
  for (const auto& w : workers) {
    out += fmt::format("imlog_worker_failed{{worker=\"{}\"}} {}\n", w.name, w.state == WorkerState::failed ? 1 : 0);
  }
  out += "# HELP imlog_worker_retries_total Retryable errors of a worker, each followed by a back-off.\n"
         "# TYPE imlog_worker_retries_total counter\n";
  for (const auto& w : workers) out += fmt::format("imlog_worker_retries_total{{worker=\"{}\"}} {}\n", w.name, w.stats.retries);
  counter(out, "imlog_worker_failures_total", "Workers of this process that failed since it started.",
          worker_failures_total());
}
}  // namespace

std::string Metrics::render() const {
  std::string out;
  out.reserve(4096);
  gauge(out, "imlog_gateway_ws_connections", "Open WebSocket sessions.", ws_connections.load());
  gauge(out, "imlog_gateway_http_connections", "Open HTTP connections (not upgraded).", http_connections.load());
  counter(out, "imlog_gateway_ws_sessions_total", "WebSocket sessions opened.", ws_accepted.load());
  counter(out, "imlog_gateway_http_requests_total", "HTTP requests handled.", http_requests.load());
  counter(out, "imlog_gateway_frames_in_total", "WebSocket messages received.", frames_in.load());
  counter(out, "imlog_gateway_frames_out_total", "WebSocket messages written.", frames_out.load());
  counter(out, "imlog_gateway_messages_sent_total", "Chat messages accepted by the engine.", messages_sent.load());
  counter(out, "imlog_gateway_pushes_total", "Pushes received from the command bus.", pushes_in.load());
  counter(out, "imlog_gateway_push_frames_total", "Push frames queued to sessions.", push_frames.load());
  counter(out, "imlog_gateway_heartbeat_timeouts_total", "WebSocket peers closed for silence.",
          heartbeat_timeouts.load());
  counter(out, "imlog_gateway_password_hashes_total",
          "Argon2id password hashes and verifications (one per register and per login, known user or not).",
          password_hashes.load());
  counter(out, "imlog_gateway_slow_consumers_total", "Sessions closed because their write queue was full.",
          slow_consumers.load());
  counter(out, "imlog_gateway_reads_paused_total",
          "Times a WebSocket session stopped reading its socket with max_inflight_commands unanswered.",
          reads_paused.load());
  counter(out, "imlog_gateway_ws_writes_total", "WebSocket socket writes; frames_out / writes is the coalescing.",
          socket_writes.load());
  render_workers(out);
  command_latency.render(out, "imlog_gateway_command_seconds", "Time from submitting a command to the engine's answer.");
  std::lock_guard lock(mu_);
  out += "# HELP imlog_gateway_errors_total Errors returned to clients, by code.\n# TYPE imlog_gateway_errors_total counter\n";
  for (const auto& [code, n] : errors_) out += fmt::format("imlog_gateway_errors_total{{code=\"{}\"}} {}\n", code, n);
  out += "# HELP imlog_gateway_http_responses_total HTTP responses, by status.\n# TYPE imlog_gateway_http_responses_total counter\n";
  for (const auto& [status, n] : statuses_) {
    out += fmt::format("imlog_gateway_http_responses_total{{status=\"{}\"}} {}\n", status, n);
  }
  return out;
}

}  // namespace imlog::gw
