#pragma once
// Writes: how a client request becomes a command on the CommandBus, and how the engine's answer
// becomes a status (refusal codes → HTTP statuses, as docs/api/openapi.yaml lists them). Reads: the
// authorisation every history / members / sync read goes through.
//
// Thread-safe free functions over Services.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "api.h"
#include "client_frames.h"
#include "imlog/core/result.h"
#include "imlog/gateway/command_bus.h"
#include "imlog/schema/codec.h"
#include "services.h"

namespace imlog::gw {

using Reply = Result<fb::CommandReplyT>;

// Submits a command and calls `done` once with the answer (on the bus's thread: don't block).
// Measures the latency. `trace_id` names the command in every role's log lines, its event and its
// reply; empty: a new one (new_trace_id).
// `client_sent_at`: the client's `sent_at` (Unix ms), which bounds how long the engine remembers
// the command for dedupe; 0: none given, remembered for ever.
void submit_command(Services& svc, std::string trace_id, std::string stream, uint64_t actor,
                    std::string client_msg_id, fb::CommandUnion command, std::function<void(Reply)> done,
                    int64_t client_sent_at = 0);

// Accepted or Duplicate (both: the event is durable and valid).
bool succeeded(const Reply& r);

// The error a failed answer becomes: code (the refusal code, "timeout", "unavailable") and message.
struct Failure {
  unsigned status = 500;
  std::string code;
  std::string message;
  // When to try again (Retry-After on REST, retry_after_ms in an error frame); 0: no hint.
  std::chrono::milliseconds retry_after{0};
};
Failure failure_of(const Reply& r);
// How long a client is asked to wait after `overloaded`.
inline constexpr std::chrono::milliseconds kOverloadedRetry{200};
// Adds `Retry-After` (whole seconds, at least 1) when `after` is positive.
void add_retry_after(ApiReply& reply, std::chrono::milliseconds after);
// The HTTP status for a refusal code.
unsigned status_for_code(std::string_view code, bool body_content);

// For REST writes: submits under respond's trace id, then answers with `on_success(reply)` or the
// mapped error.
void submit_and_respond(Services& svc, Respond respond, std::string stream, uint64_t actor,
                        std::string client_msg_id, fb::CommandUnion command,
                        std::function<ApiReply(const fb::CommandReplyT&)> on_success, int64_t client_sent_at = 0);

// The same for a command the gateway names itself (the client sent no client_msg_id): a new id
// (new_client_msg_id), and the gateway's clock as its sent_at, so that the engine keeps its dedupe
// entry for the dedupe window only (engine/README.md, "The dedupe window") — nobody retries an id
// the gateway made, and a redelivery comes within seconds.
void submit_command(Services& svc, std::string trace_id, std::string stream, uint64_t actor, fb::CommandUnion command,
                    std::function<void(Reply)> done);
void submit_and_respond(Services& svc, Respond respond, std::string stream, uint64_t actor, fb::CommandUnion command,
                        std::function<ApiReply(const fb::CommandReplyT&)> on_success);

// "r-<32 hex>": for writes whose client sent no client_msg_id.
std::string new_client_msg_id();
// 16 hex digits naming one command in every log line that handles it.
std::string new_trace_id();
// A random group id in [1, 2^53).
uint64_t new_group_id();

// From which seq may `user` read `conversation`? 0: not at all. One-to-one streams and world are
// decided here (from seq 1); groups ask the query service (QueryService::readable_from, where the
// group's history rule applies), and a "no" is retried until config.read_model_wait passes (the
// membership may not be projected yet). `done` runs once, on any thread.
void authorize_read(Services& svc, std::string conversation, uint64_t user,
                    std::function<void(Result<uint64_t>)> done);

// Calls `attempt` until it returns true or `wait` passes, then `done(held)`. The first attempt runs
// on the caller's thread, the next ones on query threads (Services::queries), 25 ms apart; a full
// query queue ends the wait as if it passed.
void retry_until(Services& svc, std::chrono::milliseconds wait, std::function<bool()> attempt,
                 std::function<void(bool)> done);

}  // namespace imlog::gw
