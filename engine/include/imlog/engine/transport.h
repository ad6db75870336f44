#pragma once
// The two transport seams around the sequencer (docs/architecture.md, "The write path"). Only
// im.events is the truth; how a command reaches the sequencer and how its answer and the pushes
// reach a gateway is transport, and each has two implementations:
//
//   commands    gateway ──CommandTransport──▶ sequencer
//               in process: one bounded queue, no log append, no fsync (the single node);
//               log: im.commands, read by the engines' consumer group (the distributed mode).
//   deliveries  sequencer, router, tasks ──DeliveryTransport──▶ gateway
//               in process: the gateway's handler called directly (the single node);
//               log: im.deliver.<gateway_id>, read by that gateway.
//
// Why the in-process paths are as safe as the log: a command is acked only once its event is
// durable in im.events. A command lost from a queue (a crash, a full queue, a failed append) was
// never acked, and the client's retry with the same client_msg_id is deduplicated by the
// sequencer. Deliveries were never durable: a lost push is caught up by `sync`, a lost ack by the
// client's retry.
//
// Code above these seams does not know which implementation it has.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"

namespace imlog {

// Commands on their way to the sequencer. Thread-safe.
class CommandTransport {
 public:
  virtual ~CommandTransport() = default;

  // Gateway side. Hands an encoded CommandEnvelope keyed by its stream to the engine. Never
  // blocks. `on_failure` runs at most once, on any thread, when the hand-over failed (the
  // command then never reaches the engine): LogErrc::overloaded when the engine's queue is full
  // (retry later), or the log's error. No call means the command was handed over; the engine's
  // answer comes through the DeliveryTransport.
  virtual void send(std::string stream, std::string command, std::function<void(const Error&)> on_failure) = 0;

  // Engine side. A reader of the commands for the sequencer; `options.group` and `.listener` as
  // for EventLog::consumer (the listener hears which partitions this reader owns). Records carry
  // the partition partition_for(stream) and a per-partition offset. In process there is one
  // reader, owning every partition; commit() and seek() are accepted and do nothing (nothing is
  // re-read: a lost command is retried by its client).
  virtual std::unique_ptr<Consumer> reader(const ConsumerOptions& options) = 0;

  // How many partitions commands are spread over (those of im.events, for the sequencer to check).
  virtual Result<int32_t> partitions() = 0;

  // "im.commands" or "in-process queue (N commands)", for logs.
  [[nodiscard]] virtual std::string describe() const = 0;
};

// Encoded Delivery records (schema/events.fbs) on their way to one gateway. Thread-safe.
class DeliveryTransport {
 public:
  virtual ~DeliveryTransport() = default;

  // Called with a batch of a gateway's deliveries, in the order they were sent; the handler owns
  // them (in process they are the sender's own strings, moved, never copied). Must not block.
  using Handler = std::function<void(std::vector<std::string>&& deliveries)>;

  // Sender side. `done`, when set, runs once on any thread: ok once the deliveries are handed to
  // the gateway (in process: its handler returned, or no such gateway is here — nobody to deliver
  // to) or written to its topic (the log's acknowledgement), else the log's error. Without `done`
  // it is fire and forget: a failure is logged at debug level (acks are retried by clients,
  // pushes caught up by sync).
  using Delivered = std::function<void(Status)>;
  virtual void deliver(std::string_view gateway_id, std::vector<std::string> deliveries, Delivered done) = 0;

  // Gateway side. Starts handing the gateway's deliveries to `handler` — in process on the
  // sender's thread, on the log a reader thread of the subscription's own — until the returned
  // subscription is destroyed. One subscription per gateway id.
  class Subscription {
   public:
    virtual ~Subscription() = default;
    // Why deliveries stopped for good (its reader worker failed); empty while they flow.
    [[nodiscard]] virtual std::string failure() const { return {}; }
  };
  virtual Result<std::unique_ptr<Subscription>> subscribe(const std::string& gateway_id, Handler handler) = 0;
};

// The single node's transports.
struct InProcessLimits {
  // Commands queued for the sequencer and not yet taken; past it send() fails with overloaded.
  // Default 16384.
  size_t command_queue = 16384;
};
// `partitions`: those of im.events (a command's partition is its event's).
std::unique_ptr<CommandTransport> in_process_commands(int32_t partitions, InProcessLimits limits = {});
std::unique_ptr<DeliveryTransport> in_process_deliveries();

// The distributed mode's transports, over `log` (which must outlive them): im.commands and
// im.deliver.<gateway_id>. A gateway's subscription creates its delivery topic when missing
// (one partition, not synced) and reads it from its end.
std::unique_ptr<CommandTransport> log_commands(EventLog& log);
std::unique_ptr<DeliveryTransport> log_deliveries(EventLog& log);

}  // namespace imlog
