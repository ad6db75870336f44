// The state store's dedupe window (state_store.h): a write with a cut-off evicts the entries sent
// before it through the time index, keeps those without a time, raises the horizon and never
// lowers it, and leaves out a pending entry sent before the horizon. The recall index likewise,
// by message id, and the recent messages of a state stored before it move into it on load.

#include "state_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>


#include "imlog/testing/support.h"
#include "stream_state_test_util.h"

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

class RecallIndexStore : public DedupeWindowStore {
 protected:
  // The id of a message made at `ms` after the id epoch (partition and counter 0).
  static uint64_t id_at(int64_t ms) { return static_cast<uint64_t>(ms) << 22; }

  void put(std::vector<RecentMessage> entries, uint64_t cutoff = 0, const std::string& stream = "world") {
    StoreBatch b;
    for (const auto& m : entries) b.recalls.emplace_back(StateStore::recall_key(stream, m.message_id), m);
    b.recall_cutoff = cutoff;
    auto s = store_->write(b);
    ASSERT_TRUE(s) << s.error().to_string();
  }

  std::optional<RecentMessage> find(uint64_t id, const std::string& stream = "world") {
    auto m = store_->recall(stream, id);
    EXPECT_TRUE(m) << m.error().to_string();
    return m ? *m : std::nullopt;
  }
};

TEST_F(RecallIndexStore, AnEntryIsFoundByItsStreamAndMessageId) {
  RecentMessage m{id_at(1000), 7, 42, 1'600'000'000'000, false};
  put({m});
  EXPECT_EQ(find(m.message_id), m);
  EXPECT_FALSE(find(m.message_id, "group_5")) << "another conversation's message";
  EXPECT_FALSE(find(m.message_id + 1));
  m.recalled = true;
  put({m});
  EXPECT_EQ(find(m.message_id), m) << "a recall replaces the entry";
}

TEST_F(RecallIndexStore, ACutOffRemovesTheEarlierMessagesAndNeverGoesDown) {
  put({{id_at(1000), 1, 1, 1, false}, {id_at(2000), 1, 2, 2, false}, {id_at(3000), 1, 3, 3, false}});
  put({{id_at(2000), 1, 1, 1, false}}, 0, "group_9");
  put({}, id_at(2500));
  EXPECT_FALSE(find(id_at(1000)));
  EXPECT_FALSE(find(id_at(2000)));
  EXPECT_FALSE(find(id_at(2000), "group_9")) << "every stream's";
  EXPECT_TRUE(find(id_at(3000)));
  put({{id_at(2400), 1, 4, 4, false}, {id_at(2600), 1, 5, 5, false}}, id_at(1000));  // a clock stepped back
  EXPECT_FALSE(find(id_at(2400))) << "below the horizon: a catch-up's old message is not written";
  EXPECT_TRUE(find(id_at(2600)));
  EXPECT_TRUE(find(id_at(3000))) << "a lower cut-off removes nothing";
  auto horizon = store_->recall_horizon();
  ASSERT_TRUE(horizon);
  EXPECT_EQ(*horizon, id_at(2500));
  put({}, id_at(3001));
  EXPECT_FALSE(find(id_at(3000)));
  horizon = store_->recall_horizon();
  ASSERT_TRUE(horizon);
  EXPECT_EQ(*horizon, id_at(3001));
}

// A state written by the build before the recall index (version 5) held the conversation's recent
// messages: loading it puts them in the index, where a recall finds them after the upgrade.
TEST_F(RecallIndexStore, TheRecentMessagesOfAStateStoredBeforeTheIndexMoveIntoIt) {
  StreamState state;
  state.last_seq = 9;
  const std::vector<RecentMessage> held = {{id_at(5000), 3, 8, 50, false}, {id_at(6000), 4, 9, 60, true}};
  std::string v5 = testing::v5_encoding(state, held);
  store_.reset();
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_.str(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "sgroup_3", v5).ok());
  }
  SetUp();
  EXPECT_FALSE(find(id_at(5000), "group_3")) << "not before the state is read";
  StreamState out;
  auto loaded = store_->load("group_3", out);
  ASSERT_TRUE(loaded && *loaded);
  EXPECT_EQ(out, state);
  EXPECT_EQ(find(id_at(5000), "group_3"), held[0]);
  EXPECT_EQ(find(id_at(6000), "group_3"), held[1]);
  // ... and the state is stored again as the current version, so the move happens once.
  store_.reset();
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir_.str(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string stored;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "sgroup_3", &stored).ok());
    EXPECT_EQ(stored, encode_state(state));
  }
}

}  // namespace
}  // namespace imlog
