#pragma once
// The router (docs/architecture.md, "Router and tasks"): turns valid events into pushes.
//
// It reads im.events (every partition) and, for each valid event, finds the event's audience (a
// conversation's members, both users of a one-to-one stream, everyone online for world, the user
// themselves for their own stream), looks up where they are online (SessionRegistry) and sends
// one Delivery per gateway with the recipients and the event bytes through the DeliveryTransport
// (transport.h). The sender's ack is the sequencer's, not the router's.
// Membership is derived from the events the router reads (it reads every event in order), so a
// member who joined at seq 41 receives seq 42.
//
// Large groups: for an event of a group over large_group_threshold members the router looks up no
// sessions; it writes the exact audience at that seq, in pages of task_page users, as FanoutTasks
// to im.tasks (task_records.h), and FanoutWorkers deliver them. The ack is still the sequencer's.
//
// On start it reads the log from the beginning to rebuild membership without delivering, then
// delivers from the end it found: a restarted router does not push old messages again (clients
// catch up with sync).
//
// Threading: one Worker, "router" (core/include/imlog/core/worker.h): a poll error is retried with
// back-off, or fails the router visibly (/readyz, /metrics).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/transport.h"
#include "imlog/tasks/sessions.h"

namespace imlog {

struct RouterConfig {
  // Most events read per batch. Default 4096.
  uint64_t max_batch = 4096;
  // An event of a group with more members than this is handed to the tasks workers (im.tasks,
  // fanout.h) instead of being delivered by the router; the single node runs a worker too. When
  // im.tasks does not exist at start, the router delivers every group itself. Default 500.
  uint32_t large_group_threshold = 500;
  // Members per task (one page of the audience). Default 1000.
  uint32_t task_page = 1000;
  // Single node (not a config key; set with EngineConfig::push_one_to_one): events of one-to-one
  // conversations that answered a gateway's command were pushed with their ack; the router
  // delivers only those without one. Default off.
  bool one_to_one_pushed_by_engine = false;
};

struct RouterStats {
  std::atomic<uint64_t> events{0};
  std::atomic<uint64_t> deliveries{0};   // recipient-gateway pushes
  std::atomic<uint64_t> tasks{0};        // fan-out tasks written to im.tasks
};

class Router {
 public:
  // `log`, `deliveries` and `sessions` must outlive the router.
  Router(EventLog& log, DeliveryTransport& deliveries, SessionRegistry& sessions, RouterConfig config = {});
  ~Router();
  Status start();
  void stop();
  [[nodiscard]] const RouterStats& stats() const;

  struct Loop;  // private

 private:
  std::unique_ptr<Loop> loop_;
};

}  // namespace imlog
