#include "commands.h"

#include <chrono>
#include <cstdio>
#include <random>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/query.h"
#include "json.h"

namespace imlog::gw {

void submit_command(Services& svc, std::string trace_id, std::string stream, uint64_t actor,
                    std::string client_msg_id, fb::CommandUnion command, std::function<void(Reply)> done,
                    int64_t client_sent_at) {
  fb::CommandEnvelopeT c;
  c.client_sent_at = client_sent_at;
  c.stream = std::move(stream);
  c.actor = actor;
  c.client_msg_id = std::move(client_msg_id);
  c.timestamp_ms = svc.clock.now_ms();
  c.trace_id = trace_id.empty() ? new_trace_id() : std::move(trace_id);
  c.command = std::move(command);
  static const auto log = logger("gateway");
  log->debug("command {} on {} from user {} (client_msg_id {}) trace_id={}", fb::EnumNameCommand(c.command.type),
             c.stream, c.actor, c.client_msg_id, c.trace_id);
  auto started = std::chrono::steady_clock::now();
  std::string trace = c.trace_id;
  svc.bus.submit(std::move(c), svc.config.command_timeout,
                 [&svc, started, trace = std::move(trace), done = std::move(done)](Reply r) {
                   svc.metrics.command_latency.observe(std::chrono::steady_clock::now() - started);
                   if (r) {
                     log->debug("answer {}{}{} seq {} trace_id={}", fb::EnumNameReplyStatus(r->status),
                                r->code.empty() ? "" : " ", r->code, r->seq, trace);
                   } else {
                     log->debug("no answer: {} trace_id={}", r.error().to_string(), trace);
                   }
                   done(std::move(r));
                 });
}

bool succeeded(const Reply& r) {
  return r && (r->status == fb::ReplyStatus::Accepted || r->status == fb::ReplyStatus::Duplicate);
}

unsigned status_for_code(std::string_view code, bool body_content) {
  if (code == "not_member" || code == "not_participant" || code == "forbidden" || code == "blocked" ||
      code == "you_blocked" || code == "not_friends" || code == "not_sender" || code == "wrong_stream" ||
      code == "banned") {
    return 403;
  }
  if (code == "not_found" || code == "no_pending_request") return 404;
  if (code == "already_exists" || code == "already_member" || code == "already_friends" ||
      code == "already_requested" || code == "owner_must_transfer" || code == "group_full" ||
      code == "recall_window_passed" || code == "retry_window_expired") {
    return 409;
  }
  if (code == "too_large") return body_content ? 413 : 400;
  if (code == "invalid") return 400;
  if (code == "rate_limited") return 429;
  if (code == "unavailable" || code == "overloaded") return 503;
  return 400;
}

Failure failure_of(const Reply& r) {
  using std::chrono::milliseconds;
  if (!r) {
    if (r.error().code() == make_error_code(BusErrc::timed_out)) {
      return {504, "timeout",
              "the engine did not answer in time; the write may still take effect: retry with the same client_msg_id"};
    }
    if (r.error().code() == make_error_code(BusErrc::overloaded)) {
      return {503, "overloaded", "the server is at capacity (" + r.error().message() + "); retry with the same "
              "client_msg_id after a short pause", kOverloadedRetry};
    }
    return {503, "unavailable", "the engine did not take the command (" + r.error().message() + "); retry",
            milliseconds(1000)};
  }
  std::string code = r->code.empty() ? "refused" : r->code;
  std::string message = r->message.empty() ? "the engine refused the command (" + code + ")" : r->message;
  auto retry = code == "unavailable" ? milliseconds(1000) : milliseconds(0);
  return {status_for_code(code, true), std::move(code), std::move(message), retry};
}

void add_retry_after(ApiReply& reply, std::chrono::milliseconds after) {
  if (after.count() <= 0) return;
  auto secs = std::max<int64_t>(1, (after.count() + 999) / 1000);  // whole seconds, rounded up
  reply.headers.emplace_back("Retry-After", std::to_string(secs));
}

void submit_and_respond(Services& svc, Respond respond, std::string stream, uint64_t actor,
                        std::string client_msg_id, fb::CommandUnion command,
                        std::function<ApiReply(const fb::CommandReplyT&)> on_success, int64_t client_sent_at) {
  std::string trace = respond.trace_id();
  submit_command(svc, std::move(trace), std::move(stream), actor, std::move(client_msg_id), std::move(command),
                 [&svc, respond = std::move(respond), on_success = std::move(on_success)](Reply r) {
                   if (succeeded(r)) return respond(on_success(*r));
                   auto f = failure_of(r);
                   svc.metrics.error(f.code);
                   auto reply = error_reply(f.status, f.code, f.message);
                   add_retry_after(reply, f.retry_after);
                   respond(std::move(reply));
                 },
                 client_sent_at);
}

void submit_command(Services& svc, std::string trace_id, std::string stream, uint64_t actor, fb::CommandUnion command,
                    std::function<void(Reply)> done) {
  submit_command(svc, std::move(trace_id), std::move(stream), actor, new_client_msg_id(), std::move(command),
                 std::move(done), svc.clock.now_ms());
}

void submit_and_respond(Services& svc, Respond respond, std::string stream, uint64_t actor, fb::CommandUnion command,
                        std::function<ApiReply(const fb::CommandReplyT&)> on_success) {
  submit_and_respond(svc, std::move(respond), std::move(stream), actor, new_client_msg_id(), std::move(command),
                     std::move(on_success), svc.clock.now_ms());
}

std::string new_client_msg_id() { return "r-" + random_hex(16); }

// Trace ids need to be unique enough to follow one command through the logs, not unpredictable:
// a per-thread generator seeded once from the OS, instead of a getrandom() system call per command.
std::string new_trace_id() {
  thread_local std::mt19937_64 rng(std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32));
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(buf, 16);
}

uint64_t new_group_id() {
  uint64_t id = 0;
  while (id == 0) id = random_u64() & ((uint64_t{1} << 53) - 1);
  return id;
}

void retry_until(Services& svc, std::chrono::milliseconds wait, std::function<bool()> attempt,
                 std::function<void(bool)> done) {
  struct Loop : std::enable_shared_from_this<Loop> {
    Services& svc;
    std::chrono::steady_clock::time_point deadline;
    std::function<bool()> attempt;
    std::function<void(bool)> done;
    Loop(Services& s, std::chrono::steady_clock::time_point d, std::function<bool()> a, std::function<void(bool)> f)
        : svc(s), deadline(d), attempt(std::move(a)), done(std::move(f)) {}
    void step() {
      if (attempt()) return done(true);
      if (std::chrono::steady_clock::now() >= deadline || svc.stopping.load()) return done(false);
      // The next attempt queries the read model: on a query thread, never the timer's I/O thread.
      svc.run_after(std::chrono::milliseconds(25), [self = shared_from_this()] {
        static std::atomic<uint64_t> spread{0};
        if (!self->svc.queries.post(spread++, [self] { self->step(); })) self->done(false);
      });
    }
  };
  auto loop = std::make_shared<Loop>(svc, std::chrono::steady_clock::now() + wait, std::move(attempt), std::move(done));
  loop->step();
}

void authorize_read(Services& svc, std::string conversation, uint64_t user,
                    std::function<void(Result<uint64_t>)> done) {
  auto ref = parse_stream(conversation);
  if (!ref || !is_conversation(ref->kind)) return done(0);
  if (ref->kind == StreamKind::world) return done(1);
  if (ref->kind == StreamKind::single) return done(ref->a == user || ref->b == user ? 1 : 0);
  auto result = std::make_shared<Result<uint64_t>>(0);
  retry_until(
      svc, svc.config.read_model_wait,
      [&svc, conversation, user, result] {
        *result = svc.query.readable_from(conversation, user);
        return !*result || **result > 0;  // a store error ends the wait too
      },
      [result, done = std::move(done)](bool) { done(std::move(*result)); });
}

}  // namespace imlog::gw
