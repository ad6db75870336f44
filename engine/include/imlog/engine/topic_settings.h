#pragma once
// The broker-side settings a topic must keep for imlog not to lose the truth. On a stock Kafka a
// topic made with the broker's defaults deletes records after 7 days (retention.ms), and a
// compacted topic keeps only the last record per key — per stream, for im.events. Either would
// delete conversations that every read model is rebuilt from. KafkaLog::create_topic (`imlog init`)
// creates im.events with these settings, and every role of a Kafka deployment checks them at start
// and refuses to run, naming the setting, when they are not so (server/src/topics.cpp).
//
// The embedded log never deletes a record, so it has nothing to check. librdkafka's mock cluster
// (tests) has no DescribeConfigs: a deployment on it (`event_log.kafka.mock_control` set) is not
// checked, and says so in its log.
//
// Threading: the functions are pure; a TopicConfigSource says whether it is thread-safe.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/result.h"

namespace imlog {

// A topic's settings as the broker reports them (name → value), e.g. "retention.ms" → "-1".
using TopicConfig = std::map<std::string, std::string>;

// Where topic settings are read from: KafkaLog (DescribeConfigs), or a test's fake.
class TopicConfigSource {
 public:
  virtual ~TopicConfigSource() = default;
  // The topic's effective settings. Fails naming the topic when it cannot be read.
  virtual Result<TopicConfig> topic_config(const std::string& topic) = 0;
};

struct TopicRequirement {
  std::string key;
  std::string value;  // the only acceptable value
  std::string why;    // what is lost otherwise, for the error text
};

// What `topic` must have; empty when nothing is lost with it (commands, deliveries, tasks: their
// records are transport, see docs/architecture.md, "The write path").
std::vector<TopicRequirement> required_settings(std::string_view topic);

// The settings `topic` is created with: the requirements as name → value for im.events; for the
// transport topics a finite retention.ms (im.commands and im.tasks a day, im.dlq two weeks,
// im.deliver.* an hour), so a broker does not keep what was read long ago. Nothing checks those
// at start: an operator may change them.
TopicConfig creation_settings(std::string_view topic);

// The first requirement `config` breaks, as an error naming topic, setting, value found and the
// value needed; success when all hold. A setting missing from `config` breaks its requirement.
Status check_topic_config(std::string_view topic, const TopicConfig& config);

// Reads and checks each of `topics`.
Status check_topic_settings(TopicConfigSource& source, const std::vector<std::string>& topics);

}  // namespace imlog
