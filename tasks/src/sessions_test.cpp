#include "imlog/tasks/sessions.h"

#include <gtest/gtest.h>

// The registries' behaviour (locate, presence, heartbeats) is one suite run against both the
// in-process and the Redis registry: tests/sessions_registry_test.cpp.

namespace imlog {
namespace {

TEST(PresenceNames, RoundTrip) {
  for (auto st : {PresenceStatus::offline, PresenceStatus::online, PresenceStatus::away, PresenceStatus::busy}) {
    EXPECT_EQ(parse_presence(presence_name(st)), st);
  }
  EXPECT_FALSE(parse_presence("asleep").has_value());
  EXPECT_FALSE(parse_presence("").has_value());
}

}  // namespace
}  // namespace imlog
