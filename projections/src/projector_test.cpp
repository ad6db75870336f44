// The Projector: what reaches a sink (valid events only, epoch markers and zombie events
// consumed but not passed), positions and tokens after each batch, resuming with the epoch filter
// restored, following a growing log on its own thread, stopping on a corrupt record without
// skipping it, and a crash between applying a batch and storing its positions.

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "imlog/engine/streams.h"
#include "projection_test_util.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::LogFixture;
using testing::Rows;
using testing::rows_of;

// Records what it is given; positions like a real sink.
class RecordingSink final : public ProjectionSink {
 public:
  std::string_view name() const override { return "recording"; }
  Result<std::vector<PartitionPosition>> positions() override {
    std::lock_guard lk(mu_);
    return positions_;
  }
  Status apply(const EventBatch& batch) override {
    std::lock_guard lk(mu_);
    for (const auto& item : batch.events) {
      types.push_back(item.event->event_type());
      contents.emplace_back(item.event->event_as_MessageAppended() ? sv(item.event->event_as_MessageAppended()->content())
                                                                    : std::string_view());
    }
    for (const auto& p : batch.positions) {
      auto it = std::find_if(positions_.begin(), positions_.end(),
                             [&](const PartitionPosition& q) { return q.partition == p.partition; });
      if (it == positions_.end()) {
        positions_.push_back(p);
      } else {
        *it = p;
      }
    }
    ++batches;
    return {};
  }
  Status dump(const RowVisitor&) override { return {}; }

  size_t size() {
    std::lock_guard lk(mu_);
    return types.size();
  }

  std::mutex mu_;
  std::vector<fb::Event> types;
  std::vector<std::string> contents;
  std::vector<PartitionPosition> positions_;
  int batches = 0;
};

TEST(Projector, PassesOnlyValidEventsAndStoresPositionsWithTokens) {
  LogFixture f(1);
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann");
  b.message(std::string(kWorldStream), ann, "one");
  b.zombie_message(std::string(kWorldStream), ann, "zombie");
  b.new_epoch(0);
  b.message(std::string(kWorldStream), ann, "two");
  auto ends = b.ends();
  IMLOG_ASSERT_OK(ends);
  ASSERT_EQ((*ends)[0], 6);  // marker, registration, one, zombie, marker, two

  RecordingSink sink;
  Projector p(*f.log, sink, ProjectorConfig{2});
  std::vector<ProjectorProgress> progress;
  IMLOG_ASSERT_OK(p.run_until(*ends, [&](const ProjectorProgress& pr) { progress.push_back(pr); }));
  EXPECT_EQ(sink.types, (std::vector<fb::Event>{fb::Event::UserRegistered, fb::Event::MessageAppended,
                                                fb::Event::MessageAppended}));
  EXPECT_EQ(sink.contents, (std::vector<std::string>{"", "one", "two"}));
  ASSERT_EQ(sink.positions_.size(), 1u);
  EXPECT_EQ(sink.positions_[0].next_offset, 6);
  EXPECT_EQ(sink.positions_[0].token, 2u);  // the builder's second epoch on the only partition
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().consumed, 6);
  EXPECT_EQ(progress.back().target, 6);
  EXPECT_EQ(progress.back().applied, 3u);
  EXPECT_EQ(p.applied(), 3u);
  EXPECT_EQ(p.lag(), 0);
}

// A remembered refusal (CommandRefused) is a control record: it advances the positions, never
// reaches a sink, and the events after it still pass.
TEST(Projector, RefusalRecordsAdvancePositionsButNeverReachTheSink) {
  LogFixture f(1);
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann");
  b.refusal(std::string(kWorldStream), ann, "blocked", "user 9 has blocked you");
  b.message(std::string(kWorldStream), ann, "after");
  b.refusal(std::string(kWorldStream), ann, "not_member", "not a member");
  auto ends = b.ends();
  IMLOG_ASSERT_OK(ends);
  ASSERT_EQ((*ends)[0], 5);  // marker, registration, refusal, message, refusal

  RecordingSink sink;
  Projector p(*f.log, sink, ProjectorConfig{2});
  IMLOG_ASSERT_OK(p.run_until(*ends, [](const ProjectorProgress&) {}));
  EXPECT_EQ(sink.types, (std::vector<fb::Event>{fb::Event::UserRegistered, fb::Event::MessageAppended}));
  EXPECT_EQ(sink.contents, (std::vector<std::string>{"", "after"}));
  ASSERT_EQ(sink.positions_.size(), 1u);
  EXPECT_EQ(sink.positions_[0].next_offset, 5);
  EXPECT_EQ(p.applied(), 2u);
}

TEST(Projector, ResumesWithTheEpochFilterRestoredFromThePositions) {
  LogFixture f(1);
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann");
  b.message(std::string(kWorldStream), ann, "before");
  auto first = b.ends();
  IMLOG_ASSERT_OK(first);
  RecordingSink sink;
  IMLOG_ASSERT_OK(Projector(*f.log, sink, {}).run_until(*first));
  ASSERT_EQ(sink.types.size(), 2u);

  // After the resume point: a zombie of the current epoch's predecessor and valid events. A
  // resumed reader that did not restore the token would reject every event (token 0).
  b.zombie_message(std::string(kWorldStream), ann, "zombie");
  b.message(std::string(kWorldStream), ann, "after");
  auto second = b.ends();
  IMLOG_ASSERT_OK(second);
  IMLOG_ASSERT_OK(Projector(*f.log, sink, {}).run_until(*second));
  EXPECT_EQ(sink.contents, (std::vector<std::string>{"", "before", "after"}));
}

TEST(Projector, MissingPartitionsStartAtZeroAndPartitionsOfAnotherLogAreRefused) {
  LogFixture f(3);
  auto& b = *f.builder;
  for (int i = 0; i < 30; ++i) b.message(group_stream(static_cast<uint64_t>(i)), 1, "m");
  auto ends = b.ends();
  IMLOG_ASSERT_OK(ends);
  RecordingSink sink;
  IMLOG_ASSERT_OK(Projector(*f.log, sink, {}).run_until(*ends));
  EXPECT_EQ(sink.types.size(), 30u);
  EXPECT_EQ(sink.positions_.size(), 3u);

  RecordingSink foreign;
  foreign.positions_.push_back(PartitionPosition{7, 1, 1});
  auto r = Projector(*f.log, foreign, {}).run_until(*ends);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("partition 7"), std::string::npos) << r.error().message();

  auto past = *ends;
  past[0] += 1;
  auto r2 = Projector(*f.log, sink, {}).run_until(past);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code(), LogErrc::bad_argument);
}

TEST(Projector, FollowsAGrowingLogUntilStopped) {
  LogFixture f(2);
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann");
  IMLOG_ASSERT_OK(b.flush());
  RecordingSink sink;
  Projector p(*f.log, sink, ProjectorConfig{16});
  IMLOG_ASSERT_OK(p.start());
  for (int i = 0; i < 100; ++i) b.message(group_stream(static_cast<uint64_t>(i % 5 + 1)), ann, "m" + std::to_string(i));
  IMLOG_ASSERT_OK(b.flush());
  EXPECT_TRUE(testing::wait_until([&] { return sink.size() == 101; }, 20s)) << sink.size();
  EXPECT_TRUE(testing::wait_until([&] { return p.lag() == 0 && p.applied() == 101; }, 20s))
      << "lag " << p.lag() << " applied " << p.applied();
  p.stop();  // wakes the blocked poll
  EXPECT_FALSE(p.failure().has_value());
  // More events after stop are not applied.
  b.message(std::string(kWorldStream), ann, "late");
  IMLOG_ASSERT_OK(b.flush());
  EXPECT_EQ(sink.size(), 101u);
}

// Finds the stored frame of the record whose value contains `mark` in the LocalLog's database
// and damages one byte after the mark. The log must be closed.
void damage_record(const std::string& log_dir, const std::string& mark) {
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), log_dir, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  std::string key, value;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->value().ToString().find(mark) != std::string::npos) {
      key = it->key().ToString();
      value = it->value().ToString();
    }
  }
  ASSERT_FALSE(key.empty()) << mark << " not found";
  value[value.find(mark) + 2] ^= 0x20;
  it.reset();
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  ASSERT_TRUE(db->Close().ok());
}

TEST(Projector, StopsOnACorruptRecordNamingItAndNeverSkipsIt) {
  testing::TempDir dir("imlog-proj-corrupt");
  LocalLogConfig lc;
  lc.dir = (dir.path() / "log").string();
  {
    auto log = LocalLog::open(lc);
    IMLOG_ASSERT_OK(log);
    auto b = testing::EventLogBuilder::open(**log, 1);
    IMLOG_ASSERT_OK(b);
    uint64_t ann = (*b)->register_user("ann");
    for (int i = 0; i < 10; ++i) (*b)->message(std::string(kWorldStream), ann, i == 6 ? "DAMAGE-ME" : "fine");
    IMLOG_ASSERT_OK((*b)->flush());
  }
  ASSERT_NO_FATAL_FAILURE(damage_record(lc.dir, "DAMAGE-ME"));
  auto log = LocalLog::open(lc);
  IMLOG_ASSERT_OK(log);
  RecordingSink sink;
  {
    Projector p(**log, sink, ProjectorConfig{4});
    IMLOG_ASSERT_OK(p.start());
    ASSERT_TRUE(testing::wait_until([&] { return p.failure().has_value(); }, 20s));
    auto e = *p.failure();
    EXPECT_EQ(e.code(), LogErrc::corrupt_record) << e.to_string();
    EXPECT_NE(e.message().find("im.events"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("partition 0"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("offset 8"), std::string::npos) << e.message();  // marker, user, 6 messages
    p.stop();
  }
  // Everything before the damaged record was applied, nothing at or after it.
  ASSERT_EQ(sink.positions_.size(), 1u);
  EXPECT_LE(sink.positions_[0].next_offset, 8);
  EXPECT_EQ(sink.size(), static_cast<size_t>(sink.positions_[0].next_offset - 1));
}

TEST(Projector, ARecordThatIsNotAnEventFailsTheRunNamingIt) {
  LogFixture f(1);
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann");
  IMLOG_ASSERT_OK(b.flush());
  std::vector<OutRecord> junk;
  junk.push_back(OutRecord{"world", "this is not a flatbuffer", 0});
  IMLOG_ASSERT_OK(f.log->append_wait(kEventsTopic, std::move(junk)));
  b.message(std::string(kWorldStream), ann, "after the junk");
  auto ends = b.ends();
  IMLOG_ASSERT_OK(ends);
  RecordingSink sink;
  auto r = Projector(*f.log, sink, {}).run_until(*ends);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("partition 0 offset 2"), std::string::npos) << r.error().message();
  EXPECT_TRUE(sink.contents.empty() || sink.contents.back() != "after the junk");
}

// Writes each batch's changes without its positions and then fails, as a process that died
// between writing data and storing how far it got would leave its store.
class CrashAfterData final : public ProjectionSink {
 public:
  CrashAfterData(ProjectionSink& inner, int crash_at) : inner_(inner), crash_at_(crash_at) {}
  std::string_view name() const override { return inner_.name(); }
  Result<std::vector<PartitionPosition>> positions() override { return inner_.positions(); }
  Status apply(const EventBatch& batch) override {
    if (++batches_ < crash_at_) return inner_.apply(batch);
    EventBatch without_positions;
    without_positions.events = batch.events;
    IMLOG_TRY(inner_.apply(without_positions));
    return fail(LogErrc::io_error, "simulated crash after the data, before the positions");
  }
  Status dump(const RowVisitor& visit) override { return inner_.dump(visit); }

 private:
  ProjectionSink& inner_;
  int crash_at_;
  int batches_ = 0;
};

TEST(Projector, ACrashBetweenApplyAndPositionsLosesAndDuplicatesNothing) {
  LogFixture f(2);
  auto& b = *f.builder;
  std::vector<uint64_t> users;
  for (const char* n : {"ann", "bob", "cat"}) users.push_back(b.register_user(n));
  b.create_group(5, users[0], {users[1]});
  for (int i = 0; i < 120; ++i) {
    uint64_t from = users[static_cast<size_t>(i) % 3];
    std::string stream = i % 3 == 0 ? group_stream(5) : i % 3 == 1 ? std::string(kWorldStream) : single_stream(users[0], users[2]);
    uint64_t id = b.message(stream, from, "message number " + std::to_string(i));
    if (i % 10 == 0) b.recall(stream, from, id, b.last_seq(stream));
    if (i % 7 == 0) b.read(stream, users[1], b.last_seq(stream));
  }
  auto ends = b.ends();
  IMLOG_ASSERT_OK(ends);
  auto reference = f.model("reference");
  IMLOG_ASSERT_OK(Projector(*f.log, *reference, ProjectorConfig{16}).run_until(*ends));
  const Rows expected = rows_of(*reference);

  for (int crash_at : {1, 2, 5, 9}) {
    const std::string name = "crash" + std::to_string(crash_at);
    {
      auto model = f.model(name);
      CrashAfterData crashing(*model, crash_at);
      auto r = Projector(*f.log, crashing, ProjectorConfig{16}).run_until(*ends);
      ASSERT_FALSE(r) << "no crash at batch " << crash_at;
    }
    // Restart: reopen the store and resume from the positions it kept.
    auto model = f.model(name);
    auto resumed_from = model->positions();
    IMLOG_ASSERT_OK(resumed_from);
    IMLOG_ASSERT_OK(Projector(*f.log, *model, ProjectorConfig{16}).run_until(*ends));
    EXPECT_EQ(rows_of(*model), expected) << "crash at batch " << crash_at;
  }
}

}  // namespace
}  // namespace imlog
