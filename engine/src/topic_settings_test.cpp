// The decisions of the topic-settings check (topic_settings.h), against a fake config source: no
// broker that answers DescribeConfigs runs here (librdkafka's mock cluster has no Admin API).
#include "imlog/engine/topic_settings.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "imlog/engine/streams.h"

namespace imlog {
namespace {

// A fake TopicConfigSource: answers from a map, and counts the topics asked for.
class FakeTopicConfigs final : public TopicConfigSource {
 public:
  std::map<std::string, TopicConfig> topics;
  std::vector<std::string> asked;

  Result<TopicConfig> topic_config(const std::string& topic) override {
    asked.push_back(topic);
    auto it = topics.find(topic);
    if (it == topics.end()) return fail(std::errc::no_such_file_or_directory, "topic " + topic + " is unknown");
    return it->second;
  }
};

const std::string kEvents(kEventsTopic);

// What a stock Kafka reports for a topic created with the broker's defaults.
TopicConfig broker_defaults() {
  return {{"retention.ms", "604800000"},
          {"retention.bytes", "-1"},
          {"cleanup.policy", "delete"},
          {"unclean.leader.election.enable", "false"},
          {"segment.bytes", "1073741824"}};
}

TopicConfig as_created() {
  TopicConfig c = broker_defaults();
  for (const auto& [k, v] : creation_settings(kEventsTopic)) c[k] = v;
  return c;
}

TEST(TopicSettings, TheEventsTopicAsImlogCreatesItPasses) {
  FakeTopicConfigs fake;
  fake.topics[kEvents] = as_created();
  EXPECT_TRUE(check_topic_settings(fake, {kEvents}).has_value());
  EXPECT_EQ(fake.asked, std::vector<std::string>{kEvents});
}

TEST(TopicSettings, TransportTopicsAreCreatedWithAFiniteRetentionAndTheEventsTopicWithNone) {
  EXPECT_EQ(creation_settings(kEventsTopic).at("retention.ms"), "-1");
  EXPECT_EQ(creation_settings(kCommandsTopic).at("retention.ms"), "86400000");
  EXPECT_EQ(creation_settings(kTasksTopic).at("retention.ms"), "86400000");
  EXPECT_EQ(creation_settings(kDeadLetterTopic).at("retention.ms"), "1209600000");
  EXPECT_EQ(creation_settings(delivery_topic("gw-1")).at("retention.ms"), "3600000");
  for (auto topic : {std::string(kCommandsTopic), std::string(kTasksTopic), delivery_topic("gw-1")}) {
    EXPECT_EQ(creation_settings(topic).at("cleanup.policy"), "delete") << topic;
    EXPECT_EQ(creation_settings(topic).count("retention.bytes"), 0u) << topic;
  }
  EXPECT_TRUE(creation_settings("some.other.topic").empty());
}

TEST(TopicSettings, TheBrokersSevenDayDefaultIsRefusedNamingTheSetting) {
  FakeTopicConfigs fake;
  fake.topics[kEvents] = broker_defaults();
  auto s = check_topic_settings(fake, {kEvents});
  ASSERT_FALSE(s.has_value());
  const std::string text = s.error().to_string();
  EXPECT_NE(text.find("im.events"), std::string::npos) << text;
  EXPECT_NE(text.find("retention.ms is 604800000, not -1"), std::string::npos) << text;
  EXPECT_NE(text.find("--add-config retention.ms=-1"), std::string::npos) << text;
}

TEST(TopicSettings, ACompactedEventsTopicIsRefused) {
  TopicConfig c = as_created();
  c["cleanup.policy"] = "compact,delete";
  auto s = check_topic_config(kEventsTopic, c);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().to_string().find("cleanup.policy is compact,delete, not delete"), std::string::npos)
      << s.error().to_string();
}

TEST(TopicSettings, ASettingTheBrokerDoesNotReportIsRefused) {
  TopicConfig c = as_created();
  c.erase("unclean.leader.election.enable");
  auto s = check_topic_config(kEventsTopic, c);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().to_string().find("unclean.leader.election.enable is not reported by the broker"),
            std::string::npos)
      << s.error().to_string();
}

TEST(TopicSettings, TransportTopicsAreNotReadAtAll) {
  FakeTopicConfigs fake;  // knows no topic: reading one would fail
  EXPECT_TRUE(check_topic_settings(fake, {std::string(kCommandsTopic), "im.deliver.gw-1"}).has_value());
  EXPECT_TRUE(fake.asked.empty());
}

TEST(TopicSettings, AnUnreadableTopicFailsTheCheck) {
  FakeTopicConfigs fake;
  auto s = check_topic_settings(fake, {kEvents});
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().to_string().find("im.events is unknown"), std::string::npos) << s.error().to_string();
}

// Any mix of right and wrong values: the check passes exactly when every requirement holds.
RC_GTEST_PROP(TopicSettings, PassesExactlyWhenEveryRequirementHolds, ()) {
  TopicConfig c = broker_defaults();
  bool all_hold = true;
  for (const auto& r : required_settings(kEventsTopic)) {
    switch (*rc::gen::inRange(0, 3)) {
      case 0: c[r.key] = r.value; break;
      case 1:
        c[r.key] = *rc::gen::suchThat(rc::gen::string<std::string>(), [&](const std::string& v) { return v != r.value; });
        all_hold = false;
        break;
      default:
        c.erase(r.key);
        all_hold = false;
        break;
    }
  }
  RC_ASSERT(check_topic_config(kEventsTopic, c).has_value() == all_hold);
}

}  // namespace
}  // namespace imlog
