#include "node.h"

#include <spdlog/spdlog.h>

#include "imlog/core/clock.h"
#include "imlog/core/logging.h"
#include "imlog/engine/log_directory.h"
#include "imlog/engine/sequencer.h"
#include "imlog/engine/streams.h"

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
  logger("server")->info("imlog running roles [{}] on {}", fmt::join(p.config.roles, ","), p.log->describe());
  return {};
}

void Node::stop() {
  auto& p = *parts_;
  if (p.sequencer) p.sequencer->stop();
  if (p.directory) p.directory->stop();
  if (p.log) (void)p.log->flush(std::chrono::seconds(10));
  p.sequencer.reset();
  p.directory.reset();
  p.log.reset();
}

std::string Node::failure() const {
  return parts_->sequencer ? parts_->sequencer->failure() : std::string();
}

}  // namespace imlog
