#include "imlog/engine/topic_settings.h"

#include "imlog/engine/event_log.h"
#include "imlog/engine/streams.h"

namespace imlog {

std::vector<TopicRequirement> required_settings(std::string_view topic) {
  if (topic != kEventsTopic) return {};
  return {
      {"retention.ms", "-1", "a finite retention deletes old conversations from the log every read model is rebuilt from"},
      {"retention.bytes", "-1", "a size limit deletes the oldest conversations once the partition grows past it"},
      {"cleanup.policy", "delete",
       "compaction keeps only the last event of each conversation (the record key is the stream)"},
      {"unclean.leader.election.enable", "false",
       "an out-of-sync replica elected leader drops events that were already acknowledged"},
  };
}

namespace {

constexpr std::string_view kHour = "3600000";
constexpr std::string_view kDay = "86400000";
constexpr std::string_view kTwoWeeks = "1209600000";

// How long a transport topic keeps its records (retention.ms). Nothing on these topics is the
// truth: each record matters only until its reader has taken it, so they are kept long enough to
// ride out a reader's outage, not for ever.
std::string_view transport_retention(std::string_view topic) {
  if (topic == kCommandsTopic || topic == kTasksTopic) return kDay;  // engines or tasks workers down a day
  if (topic == kDeadLetterTopic) return kTwoWeeks;                   // an operator looks within two weeks
  if (topic.starts_with(kDeliveryTopicPrefix)) return kHour;         // a gateway's pushes; clients sync
  return {};
}

}  // namespace

TopicConfig creation_settings(std::string_view topic) {
  TopicConfig out;
  for (const auto& r : required_settings(topic)) out[r.key] = r.value;
  if (auto ms = transport_retention(topic); !ms.empty()) {
    out["retention.ms"] = std::string(ms);
    out["cleanup.policy"] = "delete";
  }
  return out;
}

Status check_topic_config(std::string_view topic, const TopicConfig& config) {
  for (const auto& r : required_settings(topic)) {
    auto it = config.find(r.key);
    if (it != config.end() && it->second == r.value) continue;
    std::string found = it == config.end() ? "is not reported by the broker" : "is " + it->second;
    return fail(LogErrc::topic_mismatch,
                "topic " + std::string(topic) + ": setting " + r.key + " " + found + ", not " + r.value + " (" +
                    r.why + "); fix it with kafka-configs.sh --alter --entity-type topics --entity-name " +
                    std::string(topic) + " --add-config " + r.key + "=" + r.value);
  }
  return {};
}

Status check_topic_settings(TopicConfigSource& source, const std::vector<std::string>& topics) {
  for (const auto& topic : topics) {
    if (required_settings(topic).empty()) continue;
    auto config = source.topic_config(topic);
    IMLOG_TRY(config);
    IMLOG_TRY(check_topic_config(topic, *config));
  }
  return {};
}

}  // namespace imlog
