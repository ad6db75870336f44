// Unit tests of stream ids (streams.h): one spelling per stream, and user ids derived from the
// names buckets.

#include "imlog/engine/streams.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace imlog {
namespace {

bool same(const StreamRef& x, const StreamRef& y) { return x.kind == y.kind && x.a == y.a && x.b == y.b; }

TEST(Streams, ParsesTheFiveForms) {
  struct Case {
    std::string id;
    StreamRef want;
  };
  const std::vector<Case> cases = {
      {"single_1_2", {StreamKind::single, 1, 2}},
      {"single_7_1000000", {StreamKind::single, 7, 1'000'000}},
      {"group_7", {StreamKind::group, 7, 0}},
      {"group_9007199254740991", {StreamKind::group, 9'007'199'254'740'991, 0}},
      {"world", {StreamKind::world, 0, 0}},
      {"user_42", {StreamKind::user, 42, 0}},
      {"names_0", {StreamKind::names, 0, 0}},
      {"names_12", {StreamKind::names, 12, 0}},
      {"names_63", {StreamKind::names, 63, 0}},
  };
  for (const auto& c : cases) {
    auto ref = parse_stream(c.id);
    ASSERT_TRUE(ref.has_value()) << c.id;
    EXPECT_TRUE(same(*ref, c.want)) << c.id << " parsed as kind " << static_cast<int>(ref->kind)
                                    << " a=" << ref->a << " b=" << ref->b;
  }
}

TEST(Streams, RejectsMalformedIds) {
  // clang-format off
  const std::vector<std::string> bad_ids = {
      "", "world_", "World", "worlds", " world",
      "single_2_1", "single_1_1", "single_0_1", "single_1", "single_1_", "single__2", "single_",
      "single_01_2", "single_1_02", "single_1_2_3", "single_1_2x", "single_-1_2", "single_1_+2",
      "group_0", "group_01", "group_", "group_-1", "group_+1", "group_7x", "group_7 ", "group_ 7",
      "group_18446744073709551616", "Group_7", "grp_7",
      "user_", "user_0", "user_007", "user_1a",
      "names_64", "names_00", "names_01", "names_", "names_-1", "names_1_", "names_99999999999999999999",
      "channel_1", "single", "group", "user", "names",
  };
  // clang-format on
  for (const auto& bad : bad_ids) EXPECT_FALSE(parse_stream(bad).has_value()) << "`" << bad << "` parsed";
  // An embedded NUL is junk too.
  EXPECT_FALSE(parse_stream(std::string_view("group_7\0", 8)).has_value());
}

TEST(Streams, SingleStreamOrdersItsIds) {
  EXPECT_EQ(single_stream(5, 3), "single_3_5");
  EXPECT_EQ(single_stream(3, 5), "single_3_5");
  EXPECT_EQ(single_stream(9, 10), "single_9_10") << "numeric, not lexicographic order";
  auto ref = parse_stream(single_stream(1'000'000, 2));
  ASSERT_TRUE(ref.has_value());
  EXPECT_TRUE(same(*ref, {StreamKind::single, 2, 1'000'000}));
}

TEST(Streams, BuildersRoundTripThroughTheParser) {
  for (uint64_t id : {1ull, 7ull, 123456789ull, (1ull << 53) - 1}) {
    auto g = parse_stream(group_stream(id));
    ASSERT_TRUE(g.has_value()) << group_stream(id);
    EXPECT_TRUE(same(*g, {StreamKind::group, id, 0}));
    auto u = parse_stream(user_stream(id));
    ASSERT_TRUE(u.has_value()) << user_stream(id);
    EXPECT_TRUE(same(*u, {StreamKind::user, id, 0}));
  }
  EXPECT_EQ(group_stream(7), "group_7");
  EXPECT_EQ(user_stream(42), "user_42");
  EXPECT_EQ(delivery_topic("gw-1"), "im.deliver.gw-1");
}

TEST(Streams, NamesStreamIsTheNamesBucket) {
  std::set<uint32_t> buckets;
  for (int i = 0; i < 2000; ++i) {
    std::string name = "user" + std::to_string(i);
    uint32_t b = name_bucket(name);
    ASSERT_LT(b, kNameBuckets);
    buckets.insert(b);
    EXPECT_EQ(names_stream(name), "names_" + std::to_string(b));
    auto ref = parse_stream(names_stream(name));
    ASSERT_TRUE(ref.has_value()) << names_stream(name);
    EXPECT_TRUE(same(*ref, {StreamKind::names, b, 0}));
  }
  EXPECT_EQ(buckets.size(), kNameBuckets) << "2000 names should reach every bucket";
  EXPECT_EQ(name_bucket("alice"), name_bucket(std::string("alice")));
  // The bucket is of the exact bytes: case matters.
  EXPECT_EQ(names_stream("Alice"), "names_" + std::to_string(name_bucket("Alice")));
}

TEST(Streams, NameBucketsArePinned) {
  // name_bucket decides which stream claimed a name and so every user id ever issued; a change of
  // hash or seed would re-home names already in the log. These values must never change.
  EXPECT_EQ(name_bucket(""), 0xEF46DB3751D8E999ull % kNameBuckets);       // XXH64("", seed 0)
  EXPECT_EQ(name_bucket("alice"), 0x73A3EA485F2E6049ull % kNameBuckets);  // XXH64("alice", seed 0) % 64 = 9
}

TEST(Streams, UserIdsAreDistinctAcrossBucketsAndExactInJavaScript) {
  std::set<uint64_t> ids;
  for (uint32_t bucket = 0; bucket < kNameBuckets; ++bucket) {
    for (uint64_t nth = 1; nth <= 1000; ++nth) {
      uint64_t id = user_id_for(bucket, nth);
      ASSERT_GT(id, 0u) << "0 means no user";
      ASSERT_TRUE(ids.insert(id).second) << "bucket " << bucket << " nth " << nth << " repeats id " << id;
      // The id says where it came from.
      EXPECT_EQ((id - 1) % kNameBuckets, bucket);
      EXPECT_EQ((id - 1) / kNameBuckets + 1, nth);
    }
  }
  // Dense: the first 64,000 registrations take exactly the ids 1..64,000.
  EXPECT_EQ(*ids.begin(), 1u);
  EXPECT_EQ(*ids.rbegin(), uint64_t{kNameBuckets} * 1000);
  // A trillion registrations in every bucket still fit in 2^53.
  constexpr uint64_t kMaxSafe = (1ull << 53) - 1;
  EXPECT_LE(user_id_for(kNameBuckets - 1, 1'000'000'000'000ull), kMaxSafe);
}

TEST(Streams, ConversationsAreSingleGroupAndWorld) {
  EXPECT_TRUE(is_conversation(StreamKind::single));
  EXPECT_TRUE(is_conversation(StreamKind::group));
  EXPECT_TRUE(is_conversation(StreamKind::world));
  EXPECT_FALSE(is_conversation(StreamKind::user));
  EXPECT_FALSE(is_conversation(StreamKind::names));
}

}  // namespace
}  // namespace imlog
