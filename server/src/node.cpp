#include "node.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include <spdlog/spdlog.h>

#include "imlog/core/clock.h"
#include "imlog/core/logging.h"
#include "imlog/core/metrics.h"
#include "imlog/core/worker.h"
#include "imlog/engine/log_directory.h"
#include "imlog/engine/sequencer.h"
#include "imlog/engine/streams.h"
#include "imlog/gateway/command_bus.h"
#include "imlog/gateway/gateway.h"
#include "imlog/projections/projector.h"
#include "imlog/projections/query.h"
#include "imlog/projections/rocksdb_model.h"
#include "imlog/tasks/fanout.h"
#include "imlog/tasks/push.h"
#include "imlog/tasks/redis_login_throttle.h"
#include "imlog/tasks/redis_sessions.h"
#include "imlog/tasks/retention.h"
#include "imlog/tasks/router.h"
#include "imlog/tasks/sessions.h"
#include "key_store.h"
#include "ops_server.h"
#include "topics.h"

namespace imlog {
namespace {

// How often a gateway process checks that Kafka, MySQL and Redis answer (for /readyz).
constexpr auto kDependencyCheckInterval = std::chrono::seconds(1);
constexpr int kConnectTimeoutMs = 2000;

// Empty if a TCP connection to `address` ("host:port") opens within the time-out; else why not.
std::string tcp_problem(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return address + ": not host:port";
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return address + ": " + ::gai_strerror(rc);
  }
  std::string why = address + ": no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    int err = rc == 0 ? 0 : errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      err = ::poll(&p, 1, kConnectTimeoutMs) == 1 ? 0 : ETIMEDOUT;
      socklen_t len = sizeof err;
      if (err == 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
    ::close(fd);
    if (err == 0) {
      why.clear();
      break;
    }
    why = address + ": " + std::strerror(err);
  }
  ::freeaddrinfo(res);
  return why;
}

// Empty if any of the brokers accepts a connection; else each one's problem.
std::string kafka_problem(const std::vector<std::string>& brokers) {
  std::string why;
  for (const auto& b : brokers) {
    auto p = tcp_problem(b);
    if (p.empty()) return {};
    why += (why.empty() ? "" : "; ") + p;
  }
  return "no broker of `event_log.kafka.brokers` accepts connections (" + why + ")";
}

}  // namespace

Result<std::unique_ptr<EventLog>> open_event_log(const EventLogSettings& s) {
  if (s.backend == "kafka") {
    auto log = KafkaLog::open(s.kafka);
    IMLOG_TRY(log);
    return std::unique_ptr<EventLog>(std::move(*log));
  }
  auto log = LocalLog::open(s.local);
  IMLOG_TRY(log);
  return std::unique_ptr<EventLog>(std::move(*log));
}

// Tests only: with IMLOG_TEST_CLOCK_FILE set, the node's clock is the system's plus the
// milliseconds that file holds (read again at most every 50 ms; missing or unreadable: 0), so an
// end-to-end test moves the engine's and the retention worker's time forward by days at once
// (tests/e2e_retention_test.cpp). Never set in production: a clock that jumps ahead makes new
// message ids and event times jump with it.
class FileSkewedClock final : public Clock {
 public:
  explicit FileSkewedClock(std::string path) : path_(std::move(path)) {}
  [[nodiscard]] int64_t now_ms() const override {
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto due = next_read_.load(std::memory_order_relaxed);
    if (now >= due && next_read_.compare_exchange_strong(due, now + 50'000'000)) {  // 50 ms in ns
      std::ifstream in(path_);
      int64_t skew = 0;
      if (in >> skew) skew_.store(skew, std::memory_order_relaxed);
    }
    return SystemClock::instance().now_ms() + skew_.load(std::memory_order_relaxed);
  }

 private:
  std::string path_;
  mutable std::atomic<int64_t> next_read_{0};
  mutable std::atomic<int64_t> skew_{0};
};

const Clock& node_clock() {
  static const Clock* clock = [] () -> const Clock* {
    const char* file = std::getenv("IMLOG_TEST_CLOCK_FILE");
    if (file == nullptr || *file == '\0') return &SystemClock::instance();
    logger("server")->warn("IMLOG_TEST_CLOCK_FILE is set: the clock is skewed by {} (tests only)", file);
    return new FileSkewedClock(file);
  }();
  return *clock;
}

// Checks, off the request path, that the servers a gateway process depends on answer, and keeps
// the name of the first one that does not (for /readyz). One Worker, "dependency-check";
// down() is thread-safe.
class DependencyCheck {
 public:
  // `brokers` empty: not on Kafka.
  DependencyCheck(std::vector<std::string> brokers, ReadModel* mysql, HotHistory* redis)
      : brokers_(std::move(brokers)), mysql_(mysql), redis_(redis) {
    check_once();
    worker_.start();
  }
  ~DependencyCheck() { worker_.stop(); }
  [[nodiscard]] std::string down() const {
    std::lock_guard lock(mu_);
    return down_;
  }

 private:
  Status step() {
    if (worker_.wait_for(kDependencyCheckInterval)) check_once();
    return {};
  }

  // Each probe is cheap and fails when its server is unreachable: a TCP connection to a Kafka
  // broker (a librdkafka request to a cluster whose brokers are all down waits on its own
  // reconnects), a read of MySQL and of Redis.
  void check_once() {
    std::string why;
    if (!brokers_.empty()) {
      if (auto p = kafka_problem(brokers_); !p.empty()) why = "Kafka is unreachable: " + p;
    }
    if (why.empty() && mysql_) {
      if (auto r = mysql_->user(0); !r) why = "MySQL is unreachable: " + r.error().to_string();
    }
    if (why.empty() && redis_) {
      if (auto r = redis_->history(kWorldStream, HistoryRange{.limit = 1}); !r) {
        why = "Redis is unreachable: " + r.error().to_string();
      }
    }
    std::lock_guard lock(mu_);
    if (why != down_) {
      if (why.empty()) {
        logger("server")->info("dependencies reachable again: ready");
      } else {
        logger("server")->warn("not ready: {}", why);
      }
    }
    down_ = std::move(why);
  }

  std::vector<std::string> brokers_;
  ReadModel* mysql_;
  HotHistory* redis_;
  mutable std::mutex mu_;  // guards down_
  std::string down_;
  Worker worker_{"dependency-check", [this] { return step(); }};
};

struct Node::Parts {
  ServerConfig config;
  std::unique_ptr<EventLog> log;
  // Commands and deliveries: in process on the embedded log (one process holds every role), over
  // im.commands and im.deliver.<gateway> on Kafka (engine/include/imlog/engine/transport.h).
  std::unique_ptr<CommandTransport> commands;
  std::unique_ptr<DeliveryTransport> deliveries;
  // The data keys messages are sealed with (data_keys.h): beside the data on the single node, in
  // MySQL when the log is Kafka, so that every process opens what any engine sealed.
  std::unique_ptr<KeyStore> keys;
  std::unique_ptr<LogDirectory> directory;
  std::unique_ptr<Sequencer> sequencer;
  // Read models, opened by whichever role needs them first: the projector writes them, the
  // gateway reads them. RocksDB is the single node's (and a local projector's) model; a gateway
  // of a distributed deployment reads MySQL, with Redis for recent history.
  std::unique_ptr<RocksDbModel> model;
  std::unique_ptr<MysqlModel> mysql;
  std::unique_ptr<RedisModel> redis;
  // A Redis connection used only to probe the session registry's server (sessions configured and
  // no Redis read model).
  std::unique_ptr<RedisModel> sessions_probe;
  // In process on the single node; in Redis when the `sessions:` section is present.
  std::unique_ptr<SessionRegistry> sessions;
  // With `sessions:`, the login throttle every gateway shares, in the same Redis; without, each
  // gateway keeps its own (null here).
  std::unique_ptr<LoginThrottle> login_throttle;
  std::unique_ptr<Router> router;
  std::unique_ptr<FanoutWorker> fanout;
  // Offline push (push.enabled): the webhook provider is real; APNs and FCM have none here.
  std::unique_ptr<PushProvider> webhook;
  std::unique_ptr<PushProvider> fcm;
  std::unique_ptr<PushProvider> apns;
  std::unique_ptr<LeaseStore> push_leases;
  std::unique_ptr<PushWorker> push;
  std::unique_ptr<LeaseStore> retention_leases;
  std::unique_ptr<RetentionWorker> retention;
  std::unique_ptr<QueryService> query;
  std::unique_ptr<DependencyCheck> dependencies;
  std::unique_ptr<Gateway> gateway;
  std::vector<std::unique_ptr<Projector>> projectors;
  std::atomic<bool> started{false};
  // The roles' figures for /metrics (imlog/core/metrics.h), unregistered before what they read.
  std::vector<metrics::CollectorHandle> collectors;
  // The ops listener: every process without the gateway role, and any with ops.listen set.
  std::unique_ptr<OpsServer> ops;

  // ---- metrics (docs/operations.md lists each) --------------------------------------------------

  void collect_log() {
    auto* local = dynamic_cast<LocalLog*>(log.get());
    if (!local) return;  // Kafka: the brokers have their own metrics; the sequencer times its appends
    collectors.push_back(metrics::add_collector([local](std::vector<prometheus::MetricFamily>& out) {
      auto st = local->stats();
      out.push_back(metrics::counter("imlog_log_group_commits_total", "Writes of the embedded log (one per group commit).",
                                     static_cast<double>(st.commits)));
      out.push_back(metrics::counter("imlog_log_fsyncs_total", "WAL fsyncs of the embedded log.",
                                     static_cast<double>(st.wal_syncs)));
      out.push_back(metrics::counter("imlog_log_records_total", "Records written to the embedded log.",
                                     static_cast<double>(st.records)));
      out.push_back(metrics::counter("imlog_log_written_bytes_total",
                                     "Bytes written to the embedded log (records with their framing, offsets).",
                                     static_cast<double>(st.bytes)));
      out.push_back(metrics::counter("imlog_log_trimmed_records_total",
                                     "Records of transport topics trimmed once every consumer group committed them.",
                                     static_cast<double>(st.trimmed_records)));
      out.push_back(metrics::histogram("imlog_log_fsync_seconds",
                                       "Time of each synced group commit of the embedded log: its WAL write and fsync.",
                                       local->synced_write_seconds()));
    }));
  }

  void collect_sequencer() {
    Sequencer* seq = sequencer.get();
    collectors.push_back(metrics::add_collector([seq](std::vector<prometheus::MetricFamily>& out) {
      const auto& st = seq->stats();
      auto d = [](uint64_t v) { return static_cast<double>(v); };
      out.push_back(metrics::counter("imlog_sequencer_commands_total", "Commands read from im.commands.",
                                     d(st.commands.load())));
      out.push_back(metrics::counter("imlog_sequencer_events_total", "Events appended to im.events and acknowledged.",
                                     d(st.events.load())));
      auto refusals = metrics::family("imlog_sequencer_refusals_total", "Commands refused, by reason.",
                                      prometheus::MetricType::Counter);
      for (size_t i = 0; i < kRefusalCount; ++i) {
        metrics::sample(refusals, {{"reason", std::string(refusal_code(static_cast<Refusal>(i)))}},
                        d(st.refused_by[i].load()));
      }
      out.push_back(std::move(refusals));
      out.push_back(metrics::counter("imlog_sequencer_duplicates_total",
                                     "Retried commands answered with their original outcome.", d(st.duplicates.load())));
      out.push_back(metrics::counter("imlog_sequencer_refusals_recorded_total",
                                     "Refusals remembered on im.events (CommandRefused records) and acknowledged.",
                                     d(st.refusals_recorded.load())));
      out.push_back(metrics::counter("imlog_sequencer_malformed_commands_total",
                                     "Commands that did not decode (dropped, logged).", d(st.malformed.load())));
      out.push_back(metrics::counter("imlog_sequencer_partitions_taken_total",
                                     "Partitions taken, each with an epoch marker that fences the previous owner.",
                                     d(st.epochs.load())));
      out.push_back(metrics::counter("imlog_sequencer_fenced_total",
                                     "Partitions this sequencer gave up because a newer epoch fenced it.",
                                     d(st.stood_down.load())));
      out.push_back(metrics::counter("imlog_sequencer_append_failures_total",
                                     "Event batches the log did not take (their commands answered unavailable).",
                                     d(st.append_failures.load())));
      out.push_back(metrics::counter("imlog_sequencer_key_destroy_failures_total",
                                     "Erasures whose data key the key store did not destroy at once (the projectors do).",
                                     d(st.key_destroy_failures.load())));
      out.push_back(metrics::counter("imlog_sequencer_appended_bytes_total",
                                     "Key and value bytes of the events appended to im.events.",
                                     d(st.appended_bytes.load())));
      out.push_back(metrics::gauge("imlog_sequencer_partitions_owned", "Partitions of im.commands this sequencer owns.",
                                   static_cast<double>(st.partitions.load())));
      out.push_back(metrics::histogram("imlog_sequencer_batch_commands", "Commands per batch the sequencer decides.",
                                       st.batch_commands));
      out.push_back(metrics::histogram("imlog_sequencer_append_seconds",
                                       "Time from appending a batch of events to the log saying it is durable.",
                                       st.append_seconds));
      out.push_back(metrics::histogram("imlog_sequencer_checkpoint_seconds",
                                       "Time a checkpoint held the sequencer: the appends in flight, then the state store write.",
                                       st.checkpoint_seconds));
    }));
  }

  void collect_projectors() {
    std::vector<Projector*> ps;
    for (auto& p : projectors) ps.push_back(p.get());
    collectors.push_back(metrics::add_collector([ps](std::vector<prometheus::MetricFamily>& out) {
      auto lag = metrics::family("imlog_projector_lag_events", "Events of im.events the read model has not applied yet.",
                                 prometheus::MetricType::Gauge);
      auto applied = metrics::family("imlog_projector_applied_events_total", "Events applied to the read model.",
                                     prometheus::MetricType::Counter);
      auto retries = metrics::family("imlog_projector_apply_retries_total",
                                     "Batches the read model refused retryably (its server away) and got again.",
                                     prometheus::MetricType::Counter);
      auto seconds = metrics::family("imlog_projector_apply_seconds", "Time of each batch applied to the read model.",
                                     prometheus::MetricType::Histogram);
      auto failed = metrics::family("imlog_projector_failed", "Whether the projector stopped on an error (1) or runs (0).",
                                    prometheus::MetricType::Gauge);
      for (Projector* p : ps) {
        std::vector<prometheus::ClientMetric::Label> model{{"model", std::string(p->model())}};
        metrics::sample(lag, model, static_cast<double>(p->lag()));
        metrics::sample(applied, model, static_cast<double>(p->applied()));
        metrics::sample(retries, model, static_cast<double>(p->apply_retries()));
        metrics::sample(seconds, model, p->apply_seconds());
        metrics::sample(failed, model, p->failure() ? 1 : 0);
      }
      for (auto* f : {&lag, &applied, &retries, &seconds, &failed}) out.push_back(std::move(*f));
    }));
  }

  void collect_router() {
    Router* r = router.get();
    collectors.push_back(metrics::add_collector([r](std::vector<prometheus::MetricFamily>& out) {
      const auto& st = r->stats();
      out.push_back(metrics::counter("imlog_router_events_total", "Events of im.events the router read.",
                                     static_cast<double>(st.events.load())));
      out.push_back(metrics::counter("imlog_router_deliveries_total",
                                     "Pushes the router sent to gateways (one per recipient gateway).",
                                     static_cast<double>(st.deliveries.load())));
      out.push_back(metrics::counter("imlog_router_tasks_total", "Fan-out tasks of large groups written to im.tasks.",
                                     static_cast<double>(st.tasks.load())));
      out.push_back(metrics::gauge("imlog_router_partitions_owned", "Partitions of im.events this router owns.",
                                   static_cast<double>(st.partitions.load())));
      out.push_back(metrics::counter("imlog_router_partitions_taken_total",
                                     "Partitions of im.events taken from the routers' group (start, rebalances).",
                                     static_cast<double>(st.taken.load())));
      out.push_back(metrics::counter("imlog_router_partitions_released_total",
                                     "Partitions of im.events handed back to the routers' group.",
                                     static_cast<double>(st.released.load())));
      out.push_back(metrics::counter("imlog_router_rebuilt_events_total",
                                     "Events read to rebuild membership when taking partitions.",
                                     static_cast<double>(st.rebuilt_from_log.load())));
      out.push_back(metrics::gauge("imlog_router_lag_events",
                                   "Events of the owned partitions not pushed yet (measured at each commit).",
                                   static_cast<double>(st.lag.load())));
    }));
  }

  void collect_fanout() {
    FanoutWorker* f = fanout.get();
    collectors.push_back(metrics::add_collector([f](std::vector<prometheus::MetricFamily>& out) {
      const auto& st = f->stats();
      auto d = [](uint64_t v) { return static_cast<double>(v); };
      out.push_back(metrics::counter("imlog_fanout_tasks_total", "Fan-out tasks done (delivered or dead-lettered).",
                                     d(st.tasks.load())));
      out.push_back(metrics::counter("imlog_fanout_deliveries_total", "Pushes the fan-out workers sent to gateways.",
                                     d(st.deliveries.load())));
      out.push_back(metrics::counter("imlog_fanout_retries_total", "Delivery appends retried.", d(st.retries.load())));
      out.push_back(metrics::counter("imlog_fanout_lookup_retries_total",
                                     "Session lookups retried (the registry failed).", d(st.lookup_retries.load())));
      out.push_back(metrics::counter("imlog_fanout_dead_letters_total", "Records sent to im.dlq.",
                                     d(st.dead_letters.load())));
      out.push_back(metrics::counter("imlog_fanout_corrupt_tasks_total", "Tasks that did not decode (dead-lettered).",
                                     d(st.corrupt.load())));
    }));
  }

  void collect_retention() {
    RetentionWorker* r = retention.get();
    collectors.push_back(metrics::add_collector([r](std::vector<prometheus::MetricFamily>& out) {
      const auto& st = r->stats();
      auto d = [](uint64_t v) { return static_cast<double>(v); };
      out.push_back(metrics::counter("imlog_retention_expiries_sent_total",
                                     "ExpireMessages commands the retention worker sent.", d(st.expiries_sent.load())));
      out.push_back(metrics::counter("imlog_retention_expired_total", "MessagesExpired events the retention worker read.",
                                     d(st.expired.load())));
      out.push_back(metrics::gauge("imlog_retention_conversations", "Conversations the retention worker follows.",
                                   d(st.conversations.load())));
    }));
  }

  void collect_push() {
    PushWorker* p = push.get();
    collectors.push_back(metrics::add_collector([p](std::vector<prometheus::MetricFamily>& out) {
      const auto& st = p->stats();
      auto d = [](uint64_t v) { return static_cast<double>(v); };
      out.push_back(metrics::counter("imlog_push_messages_total", "Messages the push worker read.", d(st.events.load())));
      out.push_back(metrics::counter("imlog_push_sent_total", "Notifications a push provider accepted.",
                                     d(st.sent.load())));
      out.push_back(metrics::counter("imlog_push_collapsed_total",
                                     "Messages folded into a notification of an open collapse window.",
                                     d(st.collapsed.load())));
      out.push_back(metrics::counter("imlog_push_failed_total", "Push attempts that failed (each attempt).",
                                     d(st.failed.load())));
      out.push_back(metrics::counter("imlog_push_retried_total", "Push attempts tried again after a back-off.",
                                     d(st.retried.load())));
      out.push_back(metrics::counter("imlog_push_dead_letters_total", "Notifications given up on and sent to im.dlq.",
                                     d(st.dead_lettered.load())));
      out.push_back(metrics::counter("imlog_push_unsupported_total",
                                     "Notifications not sent: no provider for the device's platform (APNs, FCM).",
                                     d(st.unsupported.load())));
      out.push_back(metrics::counter("imlog_push_skipped_total",
                                     "Recipients not pushed: online, push off, quiet hours, muted, blocked, no device.",
                                     d(st.skipped.load())));
      out.push_back(metrics::gauge("imlog_push_lag_seconds", "Age of the latest message the push worker read, when read.",
                                   static_cast<double>(st.lag_ms.load()) / 1000.0));
      auto failures = metrics::family("imlog_push_failures_total", "Push attempts that failed, by reason.",
                                      prometheus::MetricType::Counter);
      for (size_t i = 1; i < st.failures.size(); ++i) {
        metrics::sample(failures, {{"reason", std::string(push_failure_name(static_cast<PushFailure>(i)))}},
                        d(st.failures[i].load()));
      }
      out.push_back(std::move(failures));
      out.push_back(metrics::counter("imlog_push_devices_removed_total",
                                     "Devices removed (RemoveDevice submitted) because a provider said the token is invalid.",
                                     d(st.devices_removed.load())));
      out.push_back(metrics::gauge("imlog_push_in_flight", "Sends a push provider is working on now.",
                                   d(st.in_flight.load())));
      out.push_back(metrics::histogram("imlog_push_latency_seconds",
                                       "From a collapse window's first message (its event time) to the provider's "
                                       "answer that the notification was sent.",
                                       st.latency));
    }));
  }

  void collect_node() {
    collectors.push_back(metrics::add_collector([this](std::vector<prometheus::MetricFamily>& out) {
      auto ready = not_ready();
      out.push_back(metrics::gauge("imlog_ready", "Whether /readyz answers 200 (1) or 503 (0).", ready.empty() ? 1 : 0));
      auto build = metrics::family("imlog_build_info", "The version this process runs (always 1).",
                                   prometheus::MetricType::Gauge);
      metrics::sample(build, {{"version", IMLOG_VERSION}}, 1);
      out.push_back(std::move(build));
      auto roles = metrics::family("imlog_role", "The roles this process runs (always 1).", prometheus::MetricType::Gauge);
      for (const char* r : {"gateway", "engine", "projector", "router", "tasks"}) {
        if (has_role(config, r)) metrics::sample(roles, {{"role", r}}, 1);
      }
      out.push_back(std::move(roles));
    }));
  }

  Status open_transports() {
    if (config.event_log.backend == "kafka") {
      commands = log_commands(*log);
      deliveries = log_deliveries(*log);
      return {};
    }
    auto partitions = log->partition_count(kEventsTopic);
    IMLOG_TRY(partitions);
    commands = in_process_commands(*partitions, InProcessLimits{config.engine.command_queue});
    deliveries = in_process_deliveries();
    // One gateway holds every session here: a one-to-one event's pushes go with its ack, and the
    // router leaves those events alone (docs/architecture.md, "Threads and queues of the single node").
    config.engine.push_one_to_one = true;
    config.router.one_to_one_pushed_by_engine = true;
    return {};
  }

  Status open_keys() {
    auto store = open_key_store(config);
    IMLOG_TRY(store);
    keys = std::make_unique<CachedKeyStore>(std::move(*store), kKeyCacheTtl);
    return {};
  }

  Status open_model() {
    if (model) return {};
    auto m = open_rocksdb_model(config.model);
    IMLOG_TRY(m);
    model = std::move(*m);
    return {};
  }

  Status open_mysql() {
    if (mysql || !config.mysql) return {};
    auto m = open_mysql_model(*config.mysql);
    IMLOG_TRY(m);
    mysql = std::move(*m);
    return {};
  }

  Status open_redis() {
    if (redis || !config.redis) return {};
    auto r = open_redis_model(*config.redis);
    IMLOG_TRY(r);
    redis = std::move(*r);
    return {};
  }

  Status open_sessions() {
    if (sessions) return {};
    if (!config.sessions) {
      sessions = make_local_sessions();
      return {};
    }
    auto s = open_redis_sessions(*config.sessions);
    IMLOG_TRY(s);
    sessions = std::move(*s);
    return {};
  }

  // The gateway's read side. With a local projector (the single node) the RocksDB model it writes;
  // without one, the MySQL model the projector process writes. Redis, when configured, answers
  // recent history first.
  Status open_query() {
    IMLOG_TRY(open_redis());
    if (has_role(config, "projector") || !config.mysql) {
      if (config.event_log.backend == "kafka" && !has_role(config, "projector")) {
        return fail(std::errc::invalid_argument,
                    "a gateway without the projector role reads the MySQL read model: add a `mysql:` section "
                    "(or run the projector role in this process)");
      }
      IMLOG_TRY(open_model());
      query = std::make_unique<QueryService>(*model, redis.get());
      return {};
    }
    IMLOG_TRY(open_mysql());
    query = std::make_unique<QueryService>(*mysql, redis.get());
    return {};
  }

  // Probes for /readyz: Kafka when the log is Kafka, MySQL and Redis when this process uses them
  // (the session registry's Redis when it runs the gateway, the router or the tasks role).
  Status start_dependency_check() {
    HotHistory* redis_probe = redis.get();
    bool uses_sessions = has_role(config, "gateway") || has_role(config, "router") || has_role(config, "tasks");
    if (!redis_probe && config.sessions && uses_sessions) {
      RedisConfig rc;
      rc.host = config.sessions->host;
      rc.port = config.sessions->port;
      rc.password = config.sessions->password;
      rc.db = config.sessions->db;
      rc.key_prefix = config.sessions->key_prefix;
      auto r = open_redis_model(rc);
      IMLOG_TRY(r);
      sessions_probe = std::move(*r);
      redis_probe = sessions_probe.get();
    }
    std::vector<std::string> brokers;
    if (config.event_log.backend == "kafka") brokers = config.event_log.kafka.brokers;
    dependencies = std::make_unique<DependencyCheck>(std::move(brokers), mysql.get(), redis_probe);
    return {};
  }

  // The gateway role: REST + WebSocket over the command bus and the query service.
  Status start_gateway() {
    IMLOG_TRY(open_query());
    IMLOG_TRY(open_sessions());
    GatewayConfig gc = config.gateway;
    if (gc.jwt_secret.empty()) {
      if (config.event_log.backend == "kafka") {
        return fail(std::errc::invalid_argument,
                    "config key `gateway.jwt_secret` is empty: gateways of a distributed deployment must share one "
                    "secret (16+ bytes); set it in the config");
      }
      auto secret = load_or_create_secret(config.data_dir + "/secret");
      IMLOG_TRY(secret);
      gc.jwt_secret = std::move(*secret);
    }
    // The bus creates its delivery topic itself, except on the mock cluster (no Admin API).
    if (config.event_log.backend == "kafka" && !config.event_log.mock_control.empty()) {
      IMLOG_TRY(ensure_topic(*log, config.event_log, TopicSpec{delivery_topic(gc.gateway_id), 1, false}));
    }
    IMLOG_TRY(start_dependency_check());
    if (config.sessions) {
      auto t = open_redis_login_throttle(*config.sessions, gc.login_throttle);
      IMLOG_TRY(t);
      login_throttle = std::move(*t);
    }
    auto bus = std::make_unique<CommandBus>(*commands, *deliveries, gc.gateway_id, node_clock());
    auto gw = Gateway::create(std::move(gc), GatewayDeps{std::move(bus), *query, *sessions, *keys, node_clock(),
                                                         [this] { return not_ready(); }, login_throttle.get()});
    IMLOG_TRY(gw);
    gateway = std::move(*gw);
    return gateway->start();
  }

  // The projector role: one Projector per read model — RocksDB always, MySQL and Redis when
  // configured.
  Status start_projectors() {
    IMLOG_TRY(open_model());
    IMLOG_TRY(open_mysql());
    IMLOG_TRY(open_redis());
    ProjectorConfig pc;
    pc.keys = keys.get();
    projectors.push_back(std::make_unique<Projector>(*log, *model, pc));
    if (mysql) projectors.push_back(std::make_unique<Projector>(*log, *mysql, pc));
    if (redis) projectors.push_back(std::make_unique<Projector>(*log, *redis, pc));
    for (auto& p : projectors) IMLOG_TRY(p->start());
    collect_projectors();
    return {};
  }

  Status start_router() {
    IMLOG_TRY(open_sessions());
    auto router_config = config.router;
    std::error_code ec;
    std::filesystem::create_directories(config.data_dir + "/router", ec);
    if (ec) return fail(std::errc::io_error, "cannot create " + config.data_dir + "/router: " + ec.message());
    router_config.snapshot_path = config.data_dir + "/router/membership.snapshot";
    router = std::make_unique<Router>(*log, *deliveries, *sessions, router_config);
    IMLOG_TRY(router->start());
    collect_router();
    return {};
  }

  // The tasks role: a fan-out worker in the tasks consumer group (large groups;
  // docs/architecture.md, "Router and tasks").
  Status start_tasks() {
    IMLOG_TRY(open_sessions());
    fanout = std::make_unique<FanoutWorker>(*log, *deliveries, *sessions, config.tasks);
    IMLOG_TRY(fanout->start());
    collect_fanout();
    IMLOG_TRY(start_retention());
    return config.push.enabled ? start_push() : Status{};
  }

  // The retention worker (imlog/tasks/retention.h): one per deployment by a lease in the
  // registry's Redis when there is one; on the single node its own process's. On Kafka without
  // `sessions:` each tasks process runs one: harmless (the engine answers a repeated expiry as a
  // duplicate), only repeated work.
  Status start_retention() {
    if (config.sessions) {
      auto l = open_redis_leases(*config.sessions);
      IMLOG_TRY(l);
      retention_leases = std::move(*l);
    } else if (config.event_log.backend != "kafka") {
      retention_leases = make_local_leases();
    } else {
      logger("server")->info("retention: no `sessions:` Redis for its lease; every tasks process runs a retention worker");
    }
    retention = std::make_unique<RetentionWorker>(*log, *commands, config.retention, retention_leases.get(), node_clock());
    IMLOG_TRY(retention->start());
    collect_retention();
    return {};
  }

  // The offline push worker (imlog/tasks/push.h), on the read model the gateway reads.
  Status start_push() {
    IMLOG_TRY(open_query());
    auto hook = make_webhook_provider(
        WebhookOptions{config.push.timeout, config.push.webhook_private_addresses, config.push.webhook_secret});
    IMLOG_TRY(hook);
    webhook = std::move(*hook);
    if (config.fcm) {
      auto f = make_fcm_provider(*config.fcm);
      if (!f) return fail(f.error().with_context("push.fcm"));
      fcm = std::move(*f);
    }
    if (config.apns) {
      auto a = make_apns_provider(*config.apns);
      if (!a) return fail(a.error().with_context("push.apns"));
      apns = std::move(*a);
    }
    // One push worker per deployment (push.h): the lease, and the worker's progress kept with it,
    // are in the session registry's Redis when there is one; the single node's embedded log admits
    // one process anyway.
    if (config.sessions) {
      auto l = open_redis_leases(*config.sessions);
      IMLOG_TRY(l);
      push_leases = std::move(*l);
    } else if (config.event_log.backend == "kafka") {
      return fail(std::errc::invalid_argument,
                  "push.enabled on the Kafka log needs the `sessions:` Redis section: the push worker's "
                  "single-process lease is kept there");
    } else {
      // The worker's progress (push.cpp) is kept beside the data, like the router's snapshot.
      std::error_code ec;
      std::filesystem::create_directories(config.data_dir + "/push", ec);
      if (ec) return fail(std::errc::io_error, "cannot create " + config.data_dir + "/push: " + ec.message());
      push_leases = make_local_leases(SystemClock::instance(), config.data_dir + "/push");
    }
    // Invalid tokens are removed by RemoveDevice commands, the way the gateway removes a device.
    config.push.keys = keys.get();
    push = std::make_unique<PushWorker>(*log, *sessions, query->model(),
                                        PushProviders{apns.get(), fcm.get(), webhook.get()}, config.push,
                                        commands.get(), push_leases.get());
    IMLOG_TRY(push->start());
    collect_push();
    return {};
  }

  Status start_engine() {
    std::error_code ec;
    std::filesystem::create_directories(config.engine.state_dir, ec);
    if (ec) {
      return fail(std::errc::io_error, "cannot create the engine state directory `" + config.engine.state_dir +
                                           "` (engine.state_dir): " + ec.message());
    }
    directory = std::make_unique<LogDirectory>(*log, LogDirectoryOptions{config.engine.state_dir + "/directory.snapshot"});
    IMLOG_TRY(directory->start());
    auto seq = Sequencer::create(*log, SequencerTransports{*commands, *deliveries}, *directory, *keys,
                                 node_clock(), config.engine);
    IMLOG_TRY(seq);
    sequencer = std::move(*seq);
    IMLOG_TRY(sequencer->start());
    collect_sequencer();
    return {};
  }

  // Why /readyz fails: empty when ready. A gateway cannot serve while anything it needs failed:
  // the in-process sequencer, a projector, or any worker of this process (the router, the
  // directory, the bus's own) — the worker is named — nor while the sequencer of this process
  // catches its partitions up from the log (a first start, or a lost state store).
  [[nodiscard]] std::string not_ready() const {
    // Nothing else is read before the roles are up (the ops listener answers from its own thread
    // while they start).
    if (!started.load()) return "the node is starting";
    if (auto f = failure_text(); !f.empty()) return f;
    if (auto f = failed_workers(); !f.empty()) return "failed: " + f;
    if (sequencer) {
      if (auto why = sequencer->not_ready(); !why.empty()) return why;
    }
    return dependencies ? dependencies->down() : std::string();
  }

  // What ends the process. A failed worker does too, except in a gateway process: that one stays
  // up answering 503 on /readyz with the worker's name, and failing commands at once, so the
  // failure is seen where it is asked about; a process without a gateway exits (its supervisor
  // restarts it), its last scrape and log saying why.
  [[nodiscard]] std::string failure_text() const {
    if (sequencer) {
      if (auto f = sequencer->failure(); !f.empty()) return f;
    }
    for (const auto& p : projectors) {
      if (auto f = p->failure()) return "projector: " + f->to_string();
    }
    if (!gateway) return failed_workers();
    return {};
  }
};

Node::Node(ServerConfig config) : parts_(std::make_unique<Parts>()) { parts_->config = std::move(config); }
Node::~Node() { stop(); }

Status Node::start() {
  auto& p = *parts_;
  std::error_code ec;
  std::filesystem::create_directories(p.config.data_dir, ec);
  if (ec) {
    return fail(std::errc::io_error, "cannot create the data directory `" + p.config.data_dir + "` (data_dir / --data-dir): " +
                                         ec.message());
  }
  // The ops listener first: a probe sees 503 "starting" rather than nothing while roles start,
  // and a taken port stops the process before it opens anything.
  std::string ops_listen = p.config.ops_listen.empty() ? default_ops_listen(p.config.roles) : p.config.ops_listen;
  if (!ops_listen.empty()) {
    p.ops = std::make_unique<OpsServer>(ops_listen, [&p] { return p.not_ready(); });
    IMLOG_TRY(p.ops->start());
  }
  auto log = open_event_log(p.config.event_log);
  IMLOG_TRY(log);
  p.log = std::move(*log);
  p.collect_log();
  // The embedded log belongs to this process alone, so it may create its topics on first start;
  // a Kafka deployment creates them once with `imlog init`.
  if (p.config.event_log.backend == "local") IMLOG_TRY(create_topics(*p.log, p.config.event_log));
  // Every role reads or writes im.events: none runs on a topic that would delete it.
  IMLOG_TRY(verify_topic_settings(*p.log, p.config.event_log));
  IMLOG_TRY(p.open_transports());
  // The roles that seal or open message text; a router alone never does.
  if (has_role(p.config, "engine") || has_role(p.config, "projector") || has_role(p.config, "gateway") ||
      has_role(p.config, "tasks")) {
    IMLOG_TRY(p.open_keys());
  }
  if (has_role(p.config, "engine")) IMLOG_TRY(p.start_engine());
  if (has_role(p.config, "projector")) IMLOG_TRY(p.start_projectors());
  if (has_role(p.config, "tasks")) IMLOG_TRY(p.start_tasks());
  if (has_role(p.config, "router")) IMLOG_TRY(p.start_router());
  if (has_role(p.config, "gateway")) IMLOG_TRY(p.start_gateway());
  // A process without the gateway probes what it depends on too, for its own /readyz.
  if (!p.dependencies) IMLOG_TRY(p.start_dependency_check());
  p.collect_node();
  p.started = true;
  logger("server")->info("imlog running roles [{}] on {}", fmt::join(p.config.roles, ","), p.log->describe());
  return {};
}

void Node::stop() {
  auto& p = *parts_;
  p.started = false;
  if (p.ops) p.ops->stop();
  p.collectors.clear();  // before anything they read goes
  if (p.gateway) p.gateway->stop();  // first: stop taking requests, drain the connections
  if (p.router) p.router->stop();
  if (p.fanout) p.fanout->stop();
  if (p.push) p.push->stop();
  if (p.retention) p.retention->stop();
  if (p.sequencer) p.sequencer->stop();
  // What the sequencer wrote last reaches the read models before they stop (bounded).
  for (auto& projector : p.projectors) {
    if (!projector->drain(p.config.gateway.drain_timeout)) {
      logger("server")->warn("the {} projection stops {} records short of the log's end; it takes them at its next start",
                             projector->model(), projector->lag());
    }
    projector->stop();
  }
  if (p.directory) p.directory->stop();
  if (p.log) (void)p.log->flush(std::chrono::seconds(10));
  p.gateway.reset();
  p.ops.reset();
  p.login_throttle.reset();
  p.dependencies.reset();
  p.query.reset();
  p.router.reset();
  p.fanout.reset();
  p.push.reset();
  p.retention.reset();
  p.retention_leases.reset();
  p.webhook.reset();
  p.fcm.reset();
  p.apns.reset();
  p.push_leases.reset();
  p.projectors.clear();
  p.sequencer.reset();
  p.directory.reset();
  p.sessions.reset();
  p.sessions_probe.reset();
  p.redis.reset();
  p.mysql.reset();
  p.model.reset();
  p.keys.reset();
  p.deliveries.reset();
  p.commands.reset();
  p.log.reset();
}

std::string Node::failure() const {
  return parts_->failure_text();
}

}  // namespace imlog
