#pragma once
// CommandBus: how a gateway talks to the engine (DESIGN.md §5, §8). A command goes to im.commands
// keyed by its stream, with reply_to = (this gateway, a request id); the answer comes back on this
// gateway's own topic im.deliver.<gateway_id>: from the router once the event is durable and valid
// (Accepted), or from the sequencer (Refused, Duplicate). The same topic carries pushes: events
// for users connected here.
//
// Threading: submit() is thread-safe; callbacks run on the bus's reader thread and must not block
// (post to the session's strand).

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
#include "imlog/engine/event_log.h"
#include "imlog/schema/codec.h"

namespace imlog {

enum class BusErrc {
  timed_out = 1,  // no answer in time: the command may still take effect; retry with the same client_msg_id
  unavailable,    // the log refused the command (retryable)
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
  CommandBus(EventLog& log, std::string gateway_id, const Clock& clock);
  ~CommandBus();

  // Creates im.deliver.<gateway_id> (not synced: its loss is harmless) and starts reading it.
  Status start(std::function<void(Push)> on_push);
  void stop();

  // Sends the command (reply_to is filled in). `done` runs once: with the reply — Accepted or
  // Duplicate (both mean the event is durable and valid) or Refused (code and message say why) —
  // or with an Error: timed_out after `timeout`, unavailable when the log refused the command.
  void submit(fb::CommandEnvelopeT command, std::chrono::milliseconds timeout,
              std::function<void(Result<fb::CommandReplyT>)> done);

  // Writes `delivery` to gateway `gateway_id`'s topic (presence pushes to friends on other
  // gateways). Fire and forget: a lost push is harmless. Thread-safe.
  void deliver(std::string_view gateway_id, const fb::DeliveryT& delivery);

  [[nodiscard]] const std::string& gateway_id() const;

  struct State;  // private

 private:
  std::unique_ptr<State> state_;
};

}  // namespace imlog

template <>
struct std::is_error_code_enum<imlog::BusErrc> : std::true_type {};
