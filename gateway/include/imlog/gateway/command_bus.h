#pragma once
// CommandBus: how a gateway talks to the engine (docs/architecture.md, "The write path"). A
// command goes out through the CommandTransport keyed by its stream, with reply_to = (this
// gateway, a request id); the sequencer's answer — Accepted, Duplicate or Refused, sent once the
// event is durable and valid — comes back through the DeliveryTransport, which also carries the
// pushes for users connected here. On the single node both transports are in process; in the
// distributed mode they are im.commands and im.deliver.<gateway_id>.
//
// Threading: submit() and deliver() are thread-safe. Answers and pushes run on the delivery
// transport's thread (the sequencer's or the router's on the single node) and must not block:
// post to the session's strand. A thread of the bus's own fails requests whose time-out passed.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/engine/transport.h"
#include "imlog/schema/codec.h"

namespace imlog {

enum class BusErrc {
  timed_out = 1,  // no answer in time: the command may still take effect; retry with the same client_msg_id
  unavailable,    // the transport refused the command (retryable)
  overloaded,     // the engine's queue is full: retry after a short pause (retryable)
};
const std::error_category& bus_category();
inline std::error_code make_error_code(BusErrc e) { return {static_cast<int>(e), bus_category()}; }

// An event, or a presence change, for some users connected to this gateway. `event` stays valid
// while the shared_ptr lives.
struct Push {
  std::vector<uint64_t> recipients;
  std::shared_ptr<const std::string> event_bytes;  // an EventEnvelope; null for a presence push
  std::optional<fb::PresenceNoteT> presence;       // a friend's presence (not an event)
};

class CommandBus {
 public:
  // The transports must outlive the bus.
  CommandBus(CommandTransport& commands, DeliveryTransport& deliveries, std::string gateway_id, const Clock& clock);
  ~CommandBus();

  // Runs a task on the gateway's I/O threads, tasks in the order given (a strand).
  using Executor = std::function<void(std::function<void()>)>;

  // Subscribes to this gateway's deliveries; `on_pushes` gets the pushes of each delivered batch,
  // in order. With `executor`, each batch is handled there — one hand-over per batch, after which
  // every answer and push reaches its session from an I/O thread without waking another thread;
  // without it, on the transport's thread.
  Status start(std::function<void(std::vector<Push>&&)> on_pushes, Executor executor = {});
  // Ends the subscription; requests still waiting are failed with unavailable.
  void stop();

  // Sends the command (reply_to is filled in). `done` runs once: with the reply — Accepted or
  // Duplicate (both mean the event is durable and valid) or Refused (code and message say why) —
  // or with an Error: timed_out after `timeout`, overloaded when the engine's queue is full,
  // unavailable when the transport refused the command.
  void submit(fb::CommandEnvelopeT command, std::chrono::milliseconds timeout,
              std::function<void(Result<fb::CommandReplyT>)> done);

  // Sends `delivery` to gateway `gateway_id` (presence pushes to friends on other gateways). Fire
  // and forget: a lost push is harmless. Thread-safe.
  void deliver(std::string_view gateway_id, const fb::DeliveryT& delivery);

  // Requests waiting for an answer.
  [[nodiscard]] size_t pending() const;

  [[nodiscard]] const std::string& gateway_id() const;

  struct State;  // private

 private:
  // Shared so that a transport's failure callback, which may outlive the bus (a Kafka append
  // failing at the log's shutdown), holds it weakly and finds it gone instead of freed.
  std::shared_ptr<State> state_;
};

}  // namespace imlog

template <>
struct std::is_error_code_enum<imlog::BusErrc> : std::true_type {};
