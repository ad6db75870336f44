#include "node.h"

#include <atomic>
#include <vector>

#include <spdlog/spdlog.h>

#include "imlog/core/clock.h"
#include "imlog/core/logging.h"
#include "imlog/engine/log_directory.h"
#include "imlog/engine/sequencer.h"
#include "imlog/engine/streams.h"
#include "imlog/gateway/command_bus.h"
#include "imlog/gateway/gateway.h"
#include "imlog/projections/projector.h"
#include "imlog/projections/query.h"
#include "imlog/projections/rocksdb_model.h"
#include "imlog/tasks/router.h"
#include "imlog/tasks/sessions.h"

namespace imlog {

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

Status create_topics(EventLog& log, const EventLogSettings& s) {
  for (auto topic : {kCommandsTopic, kEventsTopic, kTasksTopic, kDeadLetterTopic}) {
    IMLOG_TRY(log.create_topic(TopicSpec{std::string(topic), s.partitions, true}));
  }
  return {};
}

struct Node::Parts {
  ServerConfig config;
  std::unique_ptr<EventLog> log;
  std::unique_ptr<LogDirectory> directory;
  std::unique_ptr<Sequencer> sequencer;
  // Read side and delivery: the RocksDB read model (opened by whichever role needs it first), the
  // in-process session registry shared by the router and the gateway.
  std::unique_ptr<RocksDbModel> model;
  std::unique_ptr<SessionRegistry> sessions;
  std::unique_ptr<Router> router;
  std::unique_ptr<QueryService> query;
  std::unique_ptr<Gateway> gateway;
  // The projector role: one Projector per read model — RocksDB always, MySQL and Redis when
  // configured (those sinks are owned here; the RocksDB one is `model`).
  std::vector<std::unique_ptr<ProjectionSink>> other_sinks;
  std::vector<std::unique_ptr<Projector>> projectors;
  std::atomic<bool> started{false};

  Status open_model() {
    if (model) return {};
    auto m = open_rocksdb_model(config.model);
    IMLOG_TRY(m);
    model = std::move(*m);
    return {};
  }

  // The gateway role: REST + WebSocket over the command bus and the query service.
  Status start_gateway() {
    IMLOG_TRY(open_model());
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
    query = std::make_unique<QueryService>(*model);
    auto bus = std::make_unique<CommandBus>(*log, gc.gateway_id, SystemClock::instance());
    auto gw = Gateway::create(std::move(gc), GatewayDeps{std::move(bus), *query, *sessions, SystemClock::instance(),
                                                         [this] { return not_ready(); }});
    IMLOG_TRY(gw);
    gateway = std::move(*gw);
    return gateway->start();
  }

  Status start_projectors() {
    IMLOG_TRY(open_model());
    if (config.mysql) {
      auto m = open_mysql_model(*config.mysql);
      IMLOG_TRY(m);
      other_sinks.push_back(std::move(*m));
    }
    if (config.redis) {
      auto r = open_redis_model(*config.redis);
      IMLOG_TRY(r);
      other_sinks.push_back(std::move(*r));
    }
    projectors.push_back(std::make_unique<Projector>(*log, *model));
    for (auto& sink : other_sinks) projectors.push_back(std::make_unique<Projector>(*log, *sink));
    for (auto& p : projectors) IMLOG_TRY(p->start());
    return {};
  }

  // Why /readyz fails: empty when ready.
  [[nodiscard]] std::string not_ready() const {
    if (!started.load()) return "the node is starting";
    return failure_text();
  }

  [[nodiscard]] std::string failure_text() const {
    if (sequencer) {
      if (auto f = sequencer->failure(); !f.empty()) return f;
    }
    for (const auto& p : projectors) {
      if (auto f = p->failure()) return "projector: " + f->to_string();
    }
    return {};
  }
};

Node::Node(ServerConfig config) : parts_(std::make_unique<Parts>()) { parts_->config = std::move(config); }
Node::~Node() { stop(); }

Status Node::start() {
  auto& p = *parts_;
  auto log = open_event_log(p.config.event_log);
  IMLOG_TRY(log);
  p.log = std::move(*log);
  // The embedded log belongs to this process alone, so it may create its topics on first start;
  // a Kafka deployment creates them once with `imlog init`.
  if (p.config.event_log.backend == "local") IMLOG_TRY(create_topics(*p.log, p.config.event_log));
  if (has_role(p.config, "engine")) {
    p.directory = std::make_unique<LogDirectory>(*p.log);
    IMLOG_TRY(p.directory->start());
    auto seq = Sequencer::create(*p.log, *p.directory, SystemClock::instance(), p.config.engine);
    IMLOG_TRY(seq);
    p.sequencer = std::move(*seq);
    IMLOG_TRY(p.sequencer->start());
  }
  if (has_role(p.config, "projector")) IMLOG_TRY(p.start_projectors());
  p.sessions = make_local_sessions();
  if (has_role(p.config, "router")) {
    p.router = std::make_unique<Router>(*p.log, *p.sessions);
    IMLOG_TRY(p.router->start());
  }
  if (has_role(p.config, "gateway")) IMLOG_TRY(p.start_gateway());
  p.started = true;
  logger("server")->info("imlog running roles [{}] on {}", fmt::join(p.config.roles, ","), p.log->describe());
  return {};
}

void Node::stop() {
  auto& p = *parts_;
  p.started = false;
  if (p.gateway) p.gateway->stop();  // first: stop taking requests, drain the connections
  if (p.router) p.router->stop();
  for (auto& projector : p.projectors) projector->stop();
  if (p.sequencer) p.sequencer->stop();
  if (p.directory) p.directory->stop();
  if (p.log) (void)p.log->flush(std::chrono::seconds(10));
  p.gateway.reset();
  p.query.reset();
  p.router.reset();
  p.projectors.clear();
  p.other_sinks.clear();
  p.sequencer.reset();
  p.directory.reset();
  p.model.reset();
  p.log.reset();
}

std::string Node::failure() const {
  return parts_->failure_text();
}

}  // namespace imlog
