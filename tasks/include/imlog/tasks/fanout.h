#pragma once
// The tasks workers' large-group fan-out (docs/architecture.md, "Router and tasks").
//
// The router hands an event of a conversation with more than RouterConfig::large_group_threshold
// members to im.tasks: one FanoutTask per page of the exact audience at that seq
// (task_records.h). FanoutWorkers — any number, in any processes, sharing one consumer group —
// deliver them:
//
//   poll a batch of tasks ─► for each: locate its recipients (SessionRegistry::try_locate,
//   lookup_batch users per call: one pipelined round trip on Redis; a failed lookup is retried
//   with the same backoff and max_attempts, then the task goes to im.dlq — never taken for
//   "nobody online") ─► one Delivery per gateway (recipients + the event, the router's format)
//   ─► hand each gateway its deliveries through the DeliveryTransport, all at once ─► wait until
//   each is delivered (in process) or acknowledged by the log (im.deliver.<gateway>) ─► retry the
//   failed ones after first_backoff, doubling, up to max_attempts ─► a task still failing goes to
//   im.dlq ─► commit the batch's offsets.
//
// A task record that does not decode goes to im.dlq with reason "corrupt task: ..." and the worker
// carries on. A dead letter is a fb::DeadLetter (reason, source topic/partition/offset, attempts,
// original bytes) keyed by the task's key.
//
// Delivery is at least once: offsets are committed only after the deliveries (or the dead letter)
// are acknowledged, so a worker stopped or killed mid-batch leaves its tasks to the group's next
// owner of the partition, which delivers them again — including pages the first worker had
// already delivered. A retried append may also have been partly written. Clients de-duplicate by
// (conversation, seq); the gateway passes a repeated push on as it is (it keeps no seen-set today).
//
// Threading: start() runs one Worker, "tasks" (core/include/imlog/core/worker.h: a poll error is
// retried with back-off, or fails the worker visibly); stop() ends its back-off waits and returns
// once it has left the group. stats() may be read from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/transport.h"
#include "imlog/tasks/sessions.h"

namespace imlog {

struct FanoutConfig {
  // Consumer group of the tasks workers. Default "imlog-tasks". A group with no committed offsets
  // starts at the beginning of im.tasks (tasks the router wrote before the first worker joined are
  // pushed, as at least once promises) — so a renamed group pushes every task im.tasks still
  // retains again: keep the name across deployments, and im.tasks' retention short (its tasks are
  // worth pushing for minutes, not days).
  std::string group = "imlog-tasks";
  // Users per SessionRegistry::locate call. Default 256.
  uint32_t lookup_batch = 256;
  // Attempts of a task's lookup, and of a delivery append, before the task goes to im.dlq. Default 5.
  uint32_t max_attempts = 5;
  // Wait before the first retry; doubles each time, up to max_backoff. Defaults 100 ms and 5 s.
  std::chrono::milliseconds first_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  // Most tasks handled per poll (and per commit). Default 64.
  size_t max_batch = 64;
};

struct FanoutStats {
  std::atomic<uint64_t> tasks{0};          // tasks done (delivered, or dead-lettered)
  std::atomic<uint64_t> deliveries{0};     // recipient-gateway pushes appended
  std::atomic<uint64_t> retries{0};        // delivery appends retried
  std::atomic<uint64_t> lookup_retries{0};  // task lookups retried (the registry failed)
  std::atomic<uint64_t> dead_letters{0};   // records sent to im.dlq
  std::atomic<uint64_t> corrupt{0};        // of which, tasks that did not decode
};

class FanoutWorker {
 public:
  // `log`, `deliveries` and `sessions` must outlive the worker; `clock` stamps dead letters.
  FanoutWorker(EventLog& log, DeliveryTransport& deliveries, SessionRegistry& sessions, FanoutConfig config = {},
               const Clock& clock = SystemClock::instance());
  ~FanoutWorker();
  FanoutWorker(const FanoutWorker&) = delete;
  FanoutWorker& operator=(const FanoutWorker&) = delete;

  // Joins the group on im.tasks and starts the loop. Fails if im.tasks does not exist.
  Status start();
  // Stops the loop (abandoning an unfinished batch, uncommitted) and leaves the group. Idempotent.
  void stop();
  [[nodiscard]] const FanoutStats& stats() const;

  struct Loop;  // private

 private:
  std::unique_ptr<Loop> loop_;
};

}  // namespace imlog
