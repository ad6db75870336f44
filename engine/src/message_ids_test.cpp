// Unit tests of message ids (message_ids.h): strictly increasing per partition whatever the clock
// does, partition bits intact, never shared between partitions. The clock is a ManualClock.

#include "imlog/engine/message_ids.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <cstdint>
#include <set>
#include <tuple>
#include <vector>

#include "imlog/core/clock.h"

namespace imlog {
namespace {

using Gen = MessageIdGenerator;

constexpr int64_t kNow = 1'700'000'000'000;  // 2023-11-14
constexpr uint64_t kCounterMask = (1u << Gen::kCounterBits) - 1;

int32_t partition_of(uint64_t id) {
  return static_cast<int32_t>((id >> Gen::kCounterBits) & ((1u << Gen::kPartitionBits) - 1));
}
uint64_t counter_of(uint64_t id) { return id & kCounterMask; }

TEST(MessageIds, StrictlyIncreaseWhileTheClockStandsStill) {
  ManualClock clock(kNow);
  Gen ids(clock, 3);
  uint64_t prev = ids.next();
  for (int i = 0; i < 10'000; ++i) {  // more than two counters' worth in one ms
    uint64_t id = ids.next();
    ASSERT_GT(id, prev) << "at " << i;
    ASSERT_EQ(partition_of(id), 3) << "at " << i;
    prev = id;
  }
}

TEST(MessageIds, StrictlyIncreaseWhenTheClockGoesBackwards) {
  ManualClock clock(kNow);
  Gen ids(clock, 9);
  uint64_t prev = 0;
  for (int64_t back : {1, 1000, 3'600'000, 86'400'000}) {
    for (int i = 0; i < 100; ++i) {
      uint64_t id = ids.next();
      ASSERT_GT(id, prev);
      prev = id;
    }
    clock.advance_ms(-back);
    uint64_t id = ids.next();
    EXPECT_GT(id, prev) << "after the clock went back " << back << " ms";
    EXPECT_EQ(partition_of(id), 9);
    prev = id;
  }
  // Once the clock is past the last id's time again, ids follow the clock.
  clock.set_ms(kNow + 10'000);
  uint64_t id = ids.next();
  EXPECT_GT(id, prev);
  EXPECT_EQ(Gen::time_of(id), kNow + 10'000);
}

TEST(MessageIds, ABurstPastTheCounterBorrowsTheNextMillisecond) {
  ManualClock clock(kNow);
  Gen ids(clock, 1023);
  std::vector<uint64_t> burst;
  for (uint64_t i = 0; i < 3 * (kCounterMask + 1) + 5; ++i) burst.push_back(ids.next());
  for (size_t i = 0; i < burst.size(); ++i) {
    ASSERT_EQ(partition_of(burst[i]), 1023) << "at " << i;
    ASSERT_EQ(counter_of(burst[i]), i % (kCounterMask + 1)) << "at " << i;
    ASSERT_EQ(Gen::time_of(burst[i]), kNow + static_cast<int64_t>(i / (kCounterMask + 1))) << "at " << i;
    if (i > 0) {
      ASSERT_GT(burst[i], burst[i - 1]) << "at " << i;
    }
  }
  // The clock moves on by one ms, into the time the burst borrowed: still above.
  clock.advance_ms(1);
  EXPECT_GT(ids.next(), burst.back());
}

TEST(MessageIds, PartitionBitsArePreserved) {
  for (int32_t p : {0, 1, 2, 511, 512, 1022, 1023}) {
    ManualClock clock(kNow);
    Gen ids(clock, p);
    for (int i = 0; i < 5000; ++i) {
      if (i == 2500) clock.advance_ms(-50);
      uint64_t id = ids.next();
      ASSERT_EQ(partition_of(id), p) << "partition " << p << " at " << i;
    }
  }
}

TEST(MessageIds, ObserveKeepsNextAboveTheLog) {
  // A previous owner of partition 5 whose clock ran a minute ahead wrote these ids.
  ManualClock ahead(kNow + 60'000);
  Gen old_owner(ahead, 5);
  uint64_t highest = 0;
  for (int i = 0; i < 5000; ++i) highest = old_owner.next();

  ManualClock behind(kNow);
  Gen ids(behind, 5);
  ids.observe(highest);
  ids.observe(highest - 100);  // an older id changes nothing
  ids.observe(0);
  uint64_t prev = highest;
  for (int i = 0; i < 5000; ++i) {
    uint64_t id = ids.next();
    ASSERT_GT(id, prev) << "at " << i;
    ASSERT_EQ(partition_of(id), 5);
    prev = id;
  }
  EXPECT_GE(Gen::time_of(prev), kNow + 60'000);
}

TEST(MessageIds, ObservingAFullCounterMovesToTheNextMillisecond) {
  ManualClock clock(kNow);
  Gen ids(clock, 6);
  uint64_t first = ids.next();
  uint64_t full = first | kCounterMask;  // the last id of that ms in partition 6
  ids.observe(full);
  uint64_t id = ids.next();
  EXPECT_GT(id, full);
  EXPECT_EQ(partition_of(id), 6);
  EXPECT_EQ(counter_of(id), 0u);
  EXPECT_EQ(Gen::time_of(id), kNow + 1);
}

TEST(MessageIds, TwoPartitionsNeverCollide) {
  ManualClock clock(kNow);
  Gen p3(clock, 3);
  Gen p4(clock, 4);
  std::set<uint64_t> seen;
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 5000; ++i) {  // bursts past the counter in both
      ASSERT_TRUE(seen.insert(p3.next()).second);
      ASSERT_TRUE(seen.insert(p4.next()).second);
    }
    clock.advance_ms(round % 2 ? -7 : 1);
  }
  EXPECT_EQ(seen.size(), 6u * 5000 * 2);
}

TEST(MessageIds, TimeOfRoundTripsTheMillisecond) {
  for (int64_t ms : {Gen::kEpochMs, Gen::kEpochMs + 1, kNow, int64_t{3'000'000'000'000} /* 2065 */}) {
    ManualClock clock(ms);
    Gen ids(clock, 77);
    EXPECT_EQ(Gen::time_of(ids.next()), ms) << ms;
  }
  ManualClock clock(kNow);
  Gen ids(clock, 0);
  for (int i = 0; i < 1000; ++i) {
    clock.advance_ms(13);
    ASSERT_EQ(Gen::time_of(ids.next()), clock.now_ms());
  }
}

TEST(MessageIds, AClockBeforeTheEpochIsClampedToIt) {
  ManualClock clock(0);
  Gen ids(clock, 2);
  uint64_t a = ids.next();
  uint64_t b = ids.next();
  EXPECT_GT(b, a);
  EXPECT_EQ(Gen::time_of(a), Gen::kEpochMs);
  EXPECT_EQ(partition_of(a), 2);
  EXPECT_NE(a, 0u) << "0 is no message";
}

// Clock operations: (what, amount). 0: stand still, 1: forward, 2: back, 3: burst of `amount` ids.
using ClockOp = std::tuple<int, int>;

RC_GTEST_PROP(MessageIds, IncreasingPerPartitionAndDisjointAcrossPartitions, ()) {
  const auto pa = *rc::gen::inRange(0, Gen::kMaxPartitions);
  const auto pb = *rc::gen::distinctFrom(rc::gen::inRange(0, Gen::kMaxPartitions), pa);
  const auto ops = *rc::gen::container<std::vector<ClockOp>>(
      rc::gen::tuple(rc::gen::inRange(0, 4), rc::gen::inRange(0, 9000)));
  ManualClock clock(kNow);
  Gen a(clock, pa);
  Gen b(clock, pb);
  uint64_t last_a = 0, last_b = 0;
  std::set<uint64_t> seen;
  for (auto [what, amount] : ops) {
    int n = 1;
    switch (what) {
      case 1:
        clock.advance_ms(amount % 100);
        break;
      case 2:
        clock.advance_ms(-(amount % 100));
        break;
      case 3:
        n = amount;
        break;
      default:
        break;
    }
    for (int i = 0; i < n; ++i) {
      uint64_t x = a.next();
      uint64_t y = b.next();
      RC_ASSERT(x > last_a);
      RC_ASSERT(y > last_b);
      RC_ASSERT(partition_of(x) == pa);
      RC_ASSERT(partition_of(y) == pb);
      RC_ASSERT(seen.insert(x).second);
      RC_ASSERT(seen.insert(y).second);
      last_a = x;
      last_b = y;
    }
  }
}

}  // namespace
}  // namespace imlog
