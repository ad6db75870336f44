#include "metrics.h"

namespace imlog::gw {

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

void Metrics::collect(std::vector<prometheus::MetricFamily>& out) const {
  using metrics::counter;
  using metrics::gauge;
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  out.push_back(gauge("imlog_gateway_ws_connections", "Open WebSocket sessions.",
                      static_cast<double>(ws_connections.load())));
  out.push_back(gauge("imlog_gateway_http_connections", "Open HTTP connections (not upgraded).",
                      static_cast<double>(http_connections.load())));
  out.push_back(counter("imlog_gateway_ws_sessions_total", "WebSocket sessions opened.", d(ws_accepted.load())));
  out.push_back(counter("imlog_gateway_http_requests_total", "HTTP requests handled.", d(http_requests.load())));
  out.push_back(counter("imlog_gateway_frames_in_total", "WebSocket messages received.", d(frames_in.load())));
  out.push_back(counter("imlog_gateway_frames_out_total", "WebSocket messages written.", d(frames_out.load())));
  out.push_back(counter("imlog_gateway_messages_sent_total", "Chat messages accepted by the engine.",
                        d(messages_sent.load())));
  out.push_back(counter("imlog_gateway_pushes_total", "Pushes received from the command bus.", d(pushes_in.load())));
  out.push_back(counter("imlog_gateway_push_frames_total", "Push frames queued to sessions.", d(push_frames.load())));
  out.push_back(counter("imlog_gateway_heartbeat_timeouts_total", "WebSocket peers closed for silence.",
                        d(heartbeat_timeouts.load())));
  out.push_back(counter("imlog_gateway_password_hashes_total",
                        "Argon2id password hashes and verifications (one per register and per login, known user or not).",
                        d(password_hashes.load())));
  out.push_back(counter("imlog_gateway_slow_consumers_total", "Sessions closed because their write queue was full.",
                        d(slow_consumers.load())));
  out.push_back(counter("imlog_gateway_reads_paused_total",
                        "Times a WebSocket session stopped reading its socket with max_inflight_commands unanswered.",
                        d(reads_paused.load())));
  out.push_back(counter("imlog_gateway_late_refusals_total",
                        "WebSocket messages answered overloaded, unhandled, for waiting past gateway.max_frame_wait "
                        "(of errors_total{code=\"overloaded\"}; the rest found a queue full).",
                        d(late_refusals.load())));
  out.push_back(counter("imlog_gateway_ws_writes_total", "WebSocket socket writes; frames_out / writes is the coalescing.",
                        d(socket_writes.load())));
  out.push_back(metrics::histogram("imlog_gateway_command_seconds",
                                   "Time from submitting a command to the engine's answer (the ack).", command_latency));
  out.push_back(metrics::histogram("imlog_gateway_frame_wait_seconds",
                                   "How long a WebSocket message had waited, unread, in socket and read buffers before "
                                   "the gateway read it (at least); past gateway.max_frame_wait it is answered overloaded.",
                                   frame_wait));
  std::lock_guard lock(mu_);
  auto errors = metrics::family("imlog_gateway_errors_total", "Errors returned to clients, by code.",
                                prometheus::MetricType::Counter);
  for (const auto& [code, n] : errors_) metrics::sample(errors, {{"code", code}}, d(n));
  out.push_back(std::move(errors));
  auto statuses = metrics::family("imlog_gateway_http_responses_total", "HTTP responses, by status.",
                                  prometheus::MetricType::Counter);
  for (const auto& [status, n] : statuses_) metrics::sample(statuses, {{"status", std::to_string(status)}}, d(n));
  out.push_back(std::move(statuses));
}

}  // namespace imlog::gw
