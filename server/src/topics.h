#pragma once
// The topics of a deployment (docs/architecture.md, "Topics and keys") and how they are created: on
// the embedded log and on a real Kafka through EventLog::create_topic (the Admin API); on
// librdkafka's mock cluster (tests), which has no Admin API, through the mock tool's control socket
// (`event_log.kafka.mock_control`). im.events is created with the settings that keep it for ever
// (topic_settings.h), and verify_topic_settings checks them at every start. Every call is idempotent: a topic that exists with the asked
// partition count is left alone.
//
// Threading: call from one thread (main, or a role's start()).

#include <string>
#include <vector>

#include "imlog/core/result.h"
#include "imlog/engine/event_log.h"
#include "server_config.h"

namespace imlog {

// Creates one topic. `done`, if given, gets a line saying what happened ("created", "exists").
Status ensure_topic(EventLog& log, const EventLogSettings& settings, const TopicSpec& spec,
                    std::vector<std::string>* done = nullptr);

// im.commands, im.events, im.tasks, im.dlq with the configured partitions, and the delivery topic
// of each of `gateway_ids` (one partition: a gateway's deliveries stay in order).
Status create_topics(EventLog& log, const EventLogSettings& settings, const std::vector<std::string>& gateway_ids = {},
                     std::vector<std::string>* done = nullptr);

// On Kafka, checks that the topics holding the truth keep it (engine/.../topic_settings.h): fails
// naming the setting when im.events would lose records. The embedded log passes; a deployment on
// the Kafka mock (mock_control set) is not checked and logs a warning saying so.
Status verify_topic_settings(EventLog& log, const EventLogSettings& settings);

}  // namespace imlog
