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
// Routers scale out like the engines: every router joins the consumer group RouterConfig::group
// over im.events, and the group shares the partitions among them (a group's membership lives in
// its stream's partition, so a partition's state is its own). Pushes are at least once: the
// offset a router commits for a partition it owns is the position up to which every push and task
// is out (delivered in process, or acknowledged by the log); it is committed every
// commit_interval, when the partition is taken, when it is handed over, and on a clean stop. A
// router taking a partition — at start, at a rebalance, after another router died (even by
// SIGKILL) — loads the partition's state (membership, the epoch filter) as of the group's
// committed offset, from what it kept of the partition or from its snapshot when they hold up to
// no further, else by reading that partition from its first record, without delivering; then it
// delivers from there: what was pushed after the last commit is pushed again (clients drop a seq
// they already have), and nothing is skipped. A partition the group never committed starts at
// the log's end when the group is new: a new router does not push old messages (clients catch up
// with sync). After a failed delivery it reads its partitions again from what is out.
//
// Threading: one Worker, "router" (core/include/imlog/core/worker.h): a poll error is retried with
// back-off, or fails the router visibly (/readyz, /metrics). Deliveries leave without waiting for
// their answers; the callbacks only count them.

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
  // The consumer group of the routers: it shares the partitions of im.events among them and holds
  // their committed positions across restarts and hand-overs. Default "imlog-router".
  std::string group = "imlog-router";
  // How often what is out is committed: a killed router, restarted, pushes again at most this
  // much of the log. Default 1s.
  std::chrono::milliseconds commit_interval{1000};
  // A file the router keeps group membership in, with the offsets it holds up to and the epoch
  // filter's state (engine/include/imlog/engine/snapshot_file.h), per partition, so taking a
  // partition rebuilds membership from there up to the committed offset instead of from offset 0.
  // It holds the partitions the router owns and the state it kept of those it handed over. Written after a commit that
  // left nothing on its way, at most every `snapshot_every`, and at a clean stop. Empty: none
  // (not a config key: the server puts it in <data_dir>/router/). A missing, damaged or foreign
  // snapshot, or one past the committed offset, is ignored with a warning.
  std::string snapshot_path;
  std::chrono::milliseconds snapshot_every{30000};
  // Single node (not a config key; set with EngineConfig::push_one_to_one): events of one-to-one
  // conversations that answered a gateway's command were pushed with their ack; the router
  // delivers only those without one. Default off.
  bool one_to_one_pushed_by_engine = false;
};

struct RouterStats {
  std::atomic<uint64_t> events{0};
  std::atomic<uint64_t> deliveries{0};   // recipient-gateway pushes
  std::atomic<uint64_t> tasks{0};        // fan-out tasks written to im.tasks
  // Records read to rebuild membership when taking a partition: from the state it kept or its
  // snapshot, or from offset 0.
  std::atomic<uint64_t> rebuilt_from_log{0};
  std::atomic<int32_t> partitions{0};  // partitions of im.events owned now
  std::atomic<uint64_t> taken{0};      // partitions taken from the group (start and rebalances)
  std::atomic<uint64_t> released{0};   // partitions handed back to the group
  // Events of the owned partitions not yet out, measured at each commit.
  std::atomic<int64_t> lag{0};
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
