// The state store's dedupe window (state_store.h): a write with a cut-off evicts the entries sent
// before it through the time index, keeps those without a time, raises the horizon and never
// lowers it, and leaves out a pending entry sent before the horizon.

#include "state_store.h"

#include <gtest/gtest.h>

#include "imlog/testing/support.h"

namespace imlog {
namespace {

class DedupeWindowStore : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = StateStore::open(dir_.str());
    ASSERT_TRUE(s) << s.error().to_string();
    store_ = std::move(*s);
  }

  static std::string key(const std::string& cmid) { return StateStore::dedupe_key("world", 7, cmid); }

  void write(std::vector<std::pair<std::string, int64_t>> entries, int64_t cutoff = 0) {
    StoreBatch b;
    uint64_t seq = 1;
    for (auto& [cmid, sent_at] : entries) {
      DedupeEntry e{seq, 100 + seq, 0, {}, {}, sent_at};
      ++seq;
      b.dedupe.emplace_back(key(cmid), e);
    }
    b.dedupe_cutoff = cutoff;
    auto s = store_->write(b);
    ASSERT_TRUE(s) << s.error().to_string();
  }

  bool has(const std::string& cmid) {
    auto e = store_->dedupe(key(cmid));
    EXPECT_TRUE(e) << e.error().to_string();
    return e && e->has_value();
  }

  int64_t horizon() {
    auto h = store_->dedupe_horizon();
    EXPECT_TRUE(h) << h.error().to_string();
    return h ? *h : -1;
  }

  testing::TempDir dir_{"imlog-state-store"};
  std::unique_ptr<StateStore> store_;
};

TEST_F(DedupeWindowStore, ACutOffEvictsWhatWasSentBeforeItAndKeepsTheRest) {
  write({{"a", 1000}, {"b", 2000}, {"c", 3000}, {"untimed", 0}});
  EXPECT_EQ(horizon(), 0);
  write({}, 2500);
  EXPECT_EQ(horizon(), 2500);
  EXPECT_FALSE(has("a"));
  EXPECT_FALSE(has("b"));
  EXPECT_TRUE(has("c"));
  EXPECT_TRUE(has("untimed")) << "an entry without a time is kept for ever";
  write({}, 1'000'000);
  EXPECT_FALSE(has("c"));
  EXPECT_TRUE(has("untimed"));
}

TEST_F(DedupeWindowStore, TheHorizonNeverGoesDown) {
  write({{"a", 5000}}, 4000);
  EXPECT_EQ(horizon(), 4000);
  write({{"b", 4500}}, 1000);  // a clock stepped back
  EXPECT_EQ(horizon(), 4000);
  EXPECT_TRUE(has("a"));
  EXPECT_TRUE(has("b"));
}

TEST_F(DedupeWindowStore, AnEntrySentBeforeTheHorizonIsNotWritten) {
  write({}, 4000);
  // Catch-up re-reads an old event after its entry was evicted: it must not come back for ever.
  write({{"old", 3999}, {"new", 4000}});
  EXPECT_FALSE(has("old"));
  EXPECT_TRUE(has("new"));
  write({}, 4001);
  EXPECT_FALSE(has("new")) << "and its time index entry was written, so it is evicted in turn";
}

TEST_F(DedupeWindowStore, ARefusalKeepsItsCodeAndIsEvictedLikeAnyEntry) {
  StoreBatch b;
  b.dedupe.emplace_back(key("r"), DedupeEntry{0, 9, 0, "blocked", "user 3 has blocked you", 1500});
  ASSERT_TRUE(store_->write(b));
  auto e = store_->dedupe(key("r"));
  ASSERT_TRUE(e && e->has_value());
  EXPECT_EQ((*e)->code, "blocked");
  EXPECT_EQ((*e)->message, "user 3 has blocked you");
  write({}, 1501);
  EXPECT_FALSE(has("r"));
}

}  // namespace
}  // namespace imlog
