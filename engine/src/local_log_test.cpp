// Unit tests of LocalLog beyond the backend contract (tests/event_log_contract_test.cpp): group
// commit, durability, back-pressure, wakeup, in-process group hand-off, a model-based property
// test, a crash test that really kills a writer process, and on-disk corruption.
//
// No test waits by sleeping: the writer thread is held still by an append callback that blocks
// (WriterStall), which makes "what queues up behind a write" deterministic.

#include "imlog/engine/local_log.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "imlog/engine/partitioner.h"
#include "imlog/testing/support.h"

#ifndef IMLOG_LOCAL_LOG_CRASH_CHILD
#error "IMLOG_LOCAL_LOG_CRASH_CHILD must name the crash child executable (engine/CMakeLists.txt)"
#endif

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

LocalLogConfig config_in(const TempDir& dir) {
  LocalLogConfig c;
  c.dir = dir.str() + "/log";
  return c;
}

std::unique_ptr<LocalLog> open_log(const LocalLogConfig& config) {
  auto log = LocalLog::open(config);
  if (!log) {
    ADD_FAILURE() << "opening " << config.dir << ": " << log.error().to_string();
    return nullptr;
  }
  return std::move(*log);
}

#define ASSERT_OK(expr)                                          \
  do {                                                           \
    auto&& ok_r_ = (expr);                                       \
    ASSERT_TRUE(ok_r_) << #expr << ": " << ok_r_.error().to_string(); \
  } while (0)

using AppendResult = Result<std::vector<RecordPosition>>;

// Holds the writer thread inside an append callback until release() (or destruction), so a test
// decides exactly what queues up behind one write.
class WriterStall {
 public:
  WriterStall(EventLog& log, const std::string& topic) {
    auto entered = std::make_shared<std::promise<void>>();
    auto entered_f = entered->get_future();
    auto released = release_.get_future().share();
    log.append(topic, {{"stall", "stall", 0}}, [entered, released](AppendResult r) {
      EXPECT_TRUE(r) << r.error().to_string();
      entered->set_value();
      released.wait();
    });
    entered_f.wait();
  }
  ~WriterStall() { release(); }
  void release() {
    if (!released_) release_.set_value();
    released_ = true;
  }

 private:
  std::promise<void> release_;
  bool released_ = false;
};

// Reads from `c` until `want` records arrived or 10 s passed.
std::vector<Record> read_n(Consumer& c, size_t want) {
  std::vector<Record> all, batch;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (all.size() < want && std::chrono::steady_clock::now() < deadline) {
    auto r = c.poll(batch, 100ms);
    if (!r) {
      ADD_FAILURE() << "poll: " << r.error().to_string();
      break;
    }
    all.insert(all.end(), batch.begin(), batch.end());
  }
  return all;
}

// ---------------------------------------------------------------------------------------------
// Topics and arguments.

TEST(LocalLog, TopicsAndTheirSettingsSurviveReopen) {
  TempDir dir;
  auto config = config_in(dir);
  {
    auto log = open_log(config);
    ASSERT_TRUE(log);
    ASSERT_OK(log->create_topic({"a", 3, true}));
    ASSERT_OK(log->create_topic({"b", 1, false}));
    ASSERT_OK(log->create_topic({"a", 3, true}));  // idempotent
    ASSERT_OK(log->append_wait("a", {{"k", "v", 2}}));
  }
  auto log = open_log(config);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->partition_count("a").value(), 3);
  EXPECT_EQ(log->partition_count("b").value(), 1);
  EXPECT_EQ(log->end_offset({"a", 2}).value(), 1);
  auto mismatch = log->create_topic({"a", 5, true});
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error().code(), LogErrc::topic_mismatch);
  EXPECT_NE(mismatch.error().message().find("3 partitions"), std::string::npos)
      << mismatch.error().message();
  // A topic created after reopen gets a fresh id: its records do not mix with a's.
  ASSERT_OK(log->create_topic({"c", 3, true}));
  EXPECT_EQ(log->end_offset({"c", 2}).value(), 0);
  EXPECT_EQ(log->describe(), "local:" + config.dir);
}

TEST(LocalLog, OpenNamesTheDirectoryItCannotUse) {
  TempDir dir;
  const std::string file = dir.str() + "/not-a-dir";
  std::ofstream(file) << "x";
  LocalLogConfig config;
  config.dir = file;
  auto log = LocalLog::open(config);
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code(), LogErrc::io_error);
  EXPECT_NE(log.error().message().find(file), std::string::npos) << log.error().message();
}

TEST(LocalLog, BadArgumentsNameTheValue) {
  TempDir dir;
  auto log = open_log(config_in(dir));
  ASSERT_TRUE(log);
  auto zero = log->create_topic({"z", 0, true});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code(), LogErrc::bad_argument);
  EXPECT_NE(zero.error().message().find("`z`"), std::string::npos);

  ASSERT_OK(log->create_topic({"t", 2, true}));
  auto bad_partition = log->append_wait("t", {{"k", "v", 7}});
  ASSERT_FALSE(bad_partition);
  EXPECT_EQ(bad_partition.error().code(), LogErrc::bad_argument);
  EXPECT_NE(bad_partition.error().message().find("partition 7"), std::string::npos)
      << bad_partition.error().message();

  auto c = log->consumer({});
  auto negative = c->assign({{"t", 0, -3}});
  ASSERT_FALSE(negative);
  EXPECT_EQ(negative.error().code(), LogErrc::bad_argument);
  EXPECT_NE(negative.error().message().find("-3"), std::string::npos);
  auto past_end = c->assign({{"t", 0, 5}});
  ASSERT_FALSE(past_end);
  EXPECT_EQ(past_end.error().code(), LogErrc::offset_out_of_range);
  auto no_group = c->commit({{"t", 0, 0}});
  ASSERT_FALSE(no_group);
  EXPECT_EQ(no_group.error().code(), LogErrc::bad_argument);
  c.reset();

  ConsumerOptions unknown;
  unknown.group = "g";
  unknown.topics = {"nope"};
  auto member = log->consumer(unknown);
  std::vector<Record> out;
  auto polled = member->poll(out, 0ms);
  ASSERT_FALSE(polled);
  EXPECT_EQ(polled.error().code(), LogErrc::unknown_topic);
  EXPECT_NE(polled.error().message().find("`nope`"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Group commit.

TEST(LocalLogGroupCommit, ConcurrentAppendersAreEachAcknowledgedOnceWithDenseOffsets) {
  TempDir dir;
  auto log = open_log(config_in(dir));
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"g", 4, true}));

  constexpr int kThreads = 8;
  constexpr int kAppendsEach = 400;
  struct Outcome {
    std::atomic<int> calls{0};
    std::vector<RecordPosition> positions;
    std::vector<std::string> values;
  };
  std::vector<Outcome> outcomes(kThreads * kAppendsEach);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAppendsEach; ++i) {
        const int id = t * kAppendsEach + i;
        Outcome& o = outcomes[static_cast<size_t>(id)];
        std::vector<OutRecord> records;
        for (int k = 0; k <= id % 3; ++k) {
          std::string value = "v" + std::to_string(id) + "." + std::to_string(k);
          o.values.push_back(value);
          records.push_back({"key" + std::to_string(id % 37), std::move(value), kByKey});
        }
        log->append("g", std::move(records), [&o, &errors](AppendResult r) {
          if (!r) {
            errors++;
          } else {
            o.positions = std::move(*r);
          }
          o.calls++;
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_OK(log->flush(30s));
  EXPECT_EQ(errors.load(), 0);

  std::map<int32_t, std::set<int64_t>> seen;
  std::map<RecordPosition, std::string> value_at;
  size_t records = 0;
  for (size_t id = 0; id < outcomes.size(); ++id) {
    const Outcome& o = outcomes[id];
    ASSERT_EQ(o.calls.load(), 1) << "callback of append " << id;
    ASSERT_EQ(o.positions.size(), o.values.size());
    for (size_t k = 0; k < o.positions.size(); ++k) {
      const auto& p = o.positions[k];
      EXPECT_EQ(p.partition, partition_for("key" + std::to_string(id % 37), 4));
      EXPECT_TRUE(seen[p.partition].insert(p.offset).second) << "offset given twice";
      if (k > 0) {
        EXPECT_EQ(p.offset, o.positions[k - 1].offset + 1) << "a batch is contiguous";
      }
      value_at[p] = o.values[k];
      ++records;
    }
  }
  for (auto& [p, offsets] : seen) {
    EXPECT_EQ(*offsets.begin(), 0);
    EXPECT_EQ(*offsets.rbegin(), static_cast<int64_t>(offsets.size()) - 1) << "dense";
    EXPECT_EQ(log->end_offset({"g", p}).value(), static_cast<int64_t>(offsets.size()));
  }
  EXPECT_LT(log->stats().commits, outcomes.size()) << "appends were grouped";

  // What the callbacks reported is what the log holds.
  auto c = log->consumer({});
  ASSERT_OK(c->assign({{"g", 0, 0}, {"g", 1, 0}, {"g", 2, 0}, {"g", 3, 0}}));
  auto all = read_n(*c, records);
  ASSERT_EQ(all.size(), records);
  for (const auto& r : all) {
    const RecordPosition at{r.partition, r.offset};
    EXPECT_EQ(r.value, value_at[at]);
  }
}

TEST(LocalLogGroupCommit, AppendsQueuedDuringAWriteShareOneCommit) {
  TempDir dir;
  auto log = open_log(config_in(dir));
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"g", 1, true}));
  const auto before = log->stats();

  std::atomic<int> ok{0};
  {
    WriterStall stall(*log, "g");
    for (int i = 0; i < 300; ++i) {
      log->append("g", {{"k", "v" + std::to_string(i), 0}}, [&ok, i](AppendResult r) {
        if (r && r->at(0).offset == i + 1) ok++;
      });
    }
  }
  ASSERT_OK(log->flush(10s));
  EXPECT_EQ(ok.load(), 300);
  const auto after = log->stats();
  EXPECT_EQ(after.commits - before.commits, 2u) << "the stall's write, then one for all 300";
  EXPECT_EQ(after.records - before.records, 301u);
}

TEST(LocalLogGroupCommit, MaxBatchRecordsSplitsAGroup) {
  TempDir dir;
  auto config = config_in(dir);
  config.max_batch_records = 50;
  auto log = open_log(config);
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"g", 1, true}));
  const auto before = log->stats();
  {
    WriterStall stall(*log, "g");
    for (int i = 0; i < 200; ++i) log->append("g", {{"k", "v", 0}}, [](AppendResult) {});
  }
  ASSERT_OK(log->flush(10s));
  EXPECT_EQ(log->stats().commits - before.commits, 5u) << "the stall's write, then 200 / 50";
}

// ---------------------------------------------------------------------------------------------
// Durability: a group commit is synced iff it holds a durable topic's record or an offset commit.

TEST(LocalLogDurability, OnlyDurableTopicsAndCommitsAreSynced) {
  TempDir dir;
  auto config = config_in(dir);
  auto log = open_log(config);
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"durable", 1, true}));
  ASSERT_OK(log->create_topic({"fast", 1, false}));

  auto s0 = log->stats();
  ASSERT_OK(log->append_wait("fast", {{"k", "v", 0}}));
  auto s1 = log->stats();
  EXPECT_EQ(s1.commits - s0.commits, 1u);
  EXPECT_EQ(s1.wal_syncs - s0.wal_syncs, 0u) << "a non-durable write is not synced";

  ASSERT_OK(log->append_wait("durable", {{"k", "v", 0}}));
  auto s2 = log->stats();
  EXPECT_EQ(s2.commits - s1.commits, 1u);
  EXPECT_EQ(s2.wal_syncs - s1.wal_syncs, 1u);

  {  // a group mixing both is synced once
    WriterStall stall(*log, "fast");
    log->append("fast", {{"k", "v", 0}}, [](AppendResult) {});
    log->append("durable", {{"k", "v", 0}}, [](AppendResult) {});
  }
  ASSERT_OK(log->flush(10s));
  auto s3 = log->stats();
  EXPECT_EQ(s3.commits - s2.commits, 2u);
  EXPECT_EQ(s3.wal_syncs - s2.wal_syncs, 1u);

  ConsumerOptions opts;
  opts.group = "g";
  auto c = log->consumer(opts);
  ASSERT_OK(c->commit({{"fast", 0, 1}}));
  auto s4 = log->stats();
  EXPECT_EQ(s4.wal_syncs - s3.wal_syncs, 1u) << "offset commits are durable";
  c.reset();
  log.reset();

  // The flag is stored with the topic.
  log = open_log(config);
  ASSERT_TRUE(log);
  auto r0 = log->stats();
  ASSERT_OK(log->append_wait("fast", {{"k", "v", 0}}));
  EXPECT_EQ(log->stats().wal_syncs, r0.wal_syncs);
  ASSERT_OK(log->append_wait("durable", {{"k", "v", 0}}));
  EXPECT_EQ(log->stats().wal_syncs, r0.wal_syncs + 1);
}

// ---------------------------------------------------------------------------------------------
// Back-pressure.

TEST(LocalLogBackPressure, FullQueueFailsWithQueueFullAfterTheBlockTimeout) {
  TempDir dir;
  auto config = config_in(dir);
  config.max_pending_bytes = 1000;
  config.append_block_timeout = 50ms;
  auto log = open_log(config);
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"bp", 1, true}));

  std::promise<AppendResult> first, second;
  {
    WriterStall stall(*log, "bp");
    log->append("bp", {{"k", std::string(400, 'a'), 0}},
                [&](AppendResult r) { first.set_value(std::move(r)); });
    // 400 bytes are queued and unwritten; 700 more would pass the 1000-byte limit.
    log->append("bp", {{"k", std::string(700, 'b'), 0}},
                [&](AppendResult r) { second.set_value(std::move(r)); });
  }
  auto a = first.get_future().get();
  auto b = second.get_future().get();
  ASSERT_TRUE(a) << a.error().to_string();
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), LogErrc::queue_full);
  EXPECT_TRUE(b.error().retryable());
  EXPECT_NE(b.error().message().find("max_pending_bytes"), std::string::npos);
  // Once drained, the same append goes through.
  ASSERT_OK(log->append_wait("bp", {{"k", std::string(700, 'b'), 0}}));
}

TEST(LocalLogBackPressure, BlockedAppendProceedsOnceTheQueueDrains) {
  TempDir dir;
  auto config = config_in(dir);
  config.max_pending_bytes = 1000;
  config.append_block_timeout = 60s;
  auto log = open_log(config);
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"bp", 1, true}));

  WriterStall stall(*log, "bp");  // offset 0
  log->append("bp", {{"k", std::string(900, 'a'), 0}}, [](AppendResult r) {  // offset 1
    EXPECT_TRUE(r);
  });
  std::atomic<bool> started{false};
  int64_t end_when_returned = -1;
  std::promise<AppendResult> blocked_result;
  std::thread appender([&] {
    started = true;
    log->append("bp", {{"k", std::string(500, 'b'), 0}},
                [&](AppendResult r) { blocked_result.set_value(std::move(r)); });
    end_when_returned = log->end_offset({"bp", 0}).value();
  });
  ASSERT_TRUE(testing::wait_until([&] { return started.load(); }));
  stall.release();
  appender.join();
  // append() returned only after the 900 bytes ahead of it were written.
  EXPECT_GE(end_when_returned, 2);
  auto r = blocked_result.get_future().get();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->at(0).offset, 2);
}

TEST(LocalLogBackPressure, RecordOverTheLimitIsRefused) {
  TempDir dir;
  auto config = config_in(dir);
  config.max_record_bytes = 100;
  auto log = open_log(config);
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"t", 1, true}));
  auto r = log->append_wait("t", {{"k", std::string(100, 'x'), 0}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), LogErrc::record_too_large);
  EXPECT_NE(r.error().message().find("101 bytes"), std::string::npos) << r.error().message();
  EXPECT_EQ(log->end_offset({"t", 0}).value(), 0);
}

// ---------------------------------------------------------------------------------------------
// Consumers: woken by records and by wakeup(), never by a polling sleep.

TEST(LocalLogConsumer, WakeupReturnsABlockedPoll) {
  TempDir dir;
  auto log = open_log(config_in(dir));
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"t", 1, true}));
  auto c = log->consumer({});
  ASSERT_OK(c->assign({{"t", 0, 0}}));
  std::atomic<bool> polling{false};
  std::chrono::steady_clock::duration took{};
  Status result;
  std::vector<Record> out;
  std::thread poller([&] {
    polling = true;
    const auto start = std::chrono::steady_clock::now();
    result = c->poll(out, 120s);
    took = std::chrono::steady_clock::now() - start;
  });
  ASSERT_TRUE(testing::wait_until([&] { return polling.load(); }));
  c->wakeup();
  poller.join();
  ASSERT_TRUE(result) << result.error().to_string();
  EXPECT_TRUE(out.empty());
  EXPECT_LT(took, 60s) << "poll waited for its time-out instead of the wakeup";
}

TEST(LocalLogConsumer, ABlockedPollIsWokenByAnAppend) {
  TempDir dir;
  auto log = open_log(config_in(dir));
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"t", 2, true}));
  auto c = log->consumer({});
  ASSERT_OK(c->assign({{"t", 0, 0}, {"t", 1, 0}}));
  std::atomic<bool> polling{false};
  std::chrono::steady_clock::duration took{};
  std::vector<Record> out;
  std::thread poller([&] {
    polling = true;
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(c->poll(out, 120s));
    took = std::chrono::steady_clock::now() - start;
  });
  ASSERT_TRUE(testing::wait_until([&] { return polling.load(); }));
  ASSERT_OK(log->append_wait("t", {{"k", "hello", 1}}));
  poller.join();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].value, "hello");
  EXPECT_EQ(out[0].partition, 1);
  EXPECT_GT(out[0].timestamp_ms, 0);
  EXPECT_LT(took, 60s);
}

TEST(LocalLogConsumer, MaxBatchBoundsAPollAndEveryPartitionGetsItsTurn) {
  TempDir dir;
  auto log = open_log(config_in(dir));
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"t", 2, true}));
  std::vector<OutRecord> batch;
  for (int i = 0; i < 100; ++i) batch.push_back({"k", std::to_string(i), i % 2});
  ASSERT_OK(log->append_wait("t", std::move(batch)));
  ConsumerOptions opts;
  opts.max_batch = 7;
  auto c = log->consumer(opts);
  ASSERT_OK(c->assign({{"t", 0, 0}, {"t", 1, 0}}));
  std::vector<Record> out;
  std::set<int32_t> partitions_in_first_two;
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK(c->poll(out, 1s));
    EXPECT_EQ(out.size(), 7u);
    for (auto& r : out) partitions_in_first_two.insert(r.partition);
  }
  EXPECT_EQ(partitions_in_first_two.size(), 2u);
}

TEST(LocalLogConsumer, SeekMovesTheReadPositionBothWays) {
  TempDir dir;
  auto log = open_log(config_in(dir));
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"t", 2, true}));
  std::vector<OutRecord> batch;
  for (int i = 0; i < 10; ++i) batch.push_back({"k", std::to_string(i), 0});
  ASSERT_OK(log->append_wait("t", std::move(batch)));
  ConsumerOptions opts;
  opts.max_batch = 3;
  auto c = log->consumer(opts);
  ASSERT_OK(c->assign({{"t", 0, 0}}));
  std::vector<Record> out;
  ASSERT_OK(c->poll(out, 1s));
  ASSERT_EQ(out.size(), 3u);
  ASSERT_OK(c->seek({"t", 0, 8}));
  ASSERT_OK(c->poll(out, 1s));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].value, "8");
  ASSERT_OK(c->seek({"t", 0, 1}));
  ASSERT_OK(c->poll(out, 1s));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].value, "1");
  EXPECT_EQ(out[2].value, "3");

  auto past_end = c->seek({"t", 0, 11});
  ASSERT_FALSE(past_end);
  EXPECT_EQ(past_end.error().code(), LogErrc::offset_out_of_range);
  auto unassigned = c->seek({"t", 1, 0});
  ASSERT_FALSE(unassigned);
  EXPECT_EQ(unassigned.error().code(), LogErrc::bad_argument);
}

// Group hand-off in one process: a partition moves only after its owner revoked it (and could
// commit there), and the new owner starts at that commit.
TEST(LocalLogGroup, APartitionMovesOnlyAfterItsOwnerRevokedIt) {
  TempDir dir;
  auto log = open_log(config_in(dir));
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({"t", 2, true}));
  ASSERT_OK(log->append_wait("t", {{"a", "0", 0}, {"b", "1", 1}, {"c", "2", 1}}));

  std::vector<std::string> events;
  struct Listener : RebalanceListener {
    std::vector<std::string>* events;
    std::string name;
    Consumer* self = nullptr;
    void on_assigned(const std::vector<TopicPartition>& ps) override {
      for (auto& p : ps) events->push_back(name + " +" + std::to_string(p.partition));
    }
    void on_revoked(const std::vector<TopicPartition>& ps) override {
      for (auto& p : ps) {
        events->push_back(name + " -" + std::to_string(p.partition));
        EXPECT_TRUE(self->commit({{p.topic, p.partition, 1}}));
      }
    }
  };
  Listener l1, l2;
  l1.events = l2.events = &events;
  l1.name = "c1";
  l2.name = "c2";
  ConsumerOptions o1;
  o1.group = "g";
  o1.topics = {"t"};
  o1.listener = &l1;
  ConsumerOptions o2 = o1;
  o2.listener = &l2;

  auto c1 = log->consumer(o1);
  l1.self = c1.get();
  std::vector<Record> out;
  ASSERT_OK(c1->poll(out, 1s));
  EXPECT_EQ(c1->assignment().size(), 2u);

  auto c2 = log->consumer(o2);
  l2.self = c2.get();
  ASSERT_OK(c2->poll(out, 0ms));
  EXPECT_TRUE(c2->assignment().empty()) << "c1 has not revoked yet";
  EXPECT_TRUE(out.empty());

  ASSERT_OK(c1->poll(out, 0ms));  // c1 revokes partition 1 (range: c1 gets 0, c2 gets 1)
  ASSERT_EQ(c1->assignment(), (std::vector<TopicPartition>{{"t", 0}}));
  ASSERT_OK(c2->poll(out, 1s));
  ASSERT_EQ(c2->assignment(), (std::vector<TopicPartition>{{"t", 1}}));
  // c2 starts at the offset c1 committed when it revoked: record 1 of partition 1 is skipped.
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].partition, 1);
  EXPECT_EQ(out[0].offset, 1);
  EXPECT_EQ(out[0].value, "2");
  const std::vector<std::string> want = {"c1 +0", "c1 +1", "c1 -1", "c2 +1"};
  EXPECT_EQ(events, want);

  c2.reset();  // leaves: revokes its partition, and c1 takes it on its next poll
  ASSERT_OK(c1->poll(out, 1s));
  EXPECT_EQ(c1->assignment().size(), 2u);
  EXPECT_EQ(events.back(), "c1 +1");
}

TEST(LocalLog, ClosingDrainsQueuedAppends) {
  TempDir dir;
  auto config = config_in(dir);
  std::atomic<int> ok{0}, calls{0};
  {
    auto log = open_log(config);
    ASSERT_TRUE(log);
    ASSERT_OK(log->create_topic({"t", 1, true}));
    for (int i = 0; i < 2000; ++i) {
      log->append("t", {{"k", "v", 0}}, [&](AppendResult r) {
        calls++;
        if (r) ok++;
      });
    }
  }
  EXPECT_EQ(calls.load(), 2000);
  EXPECT_EQ(ok.load(), 2000);
  auto log = open_log(config);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->end_offset({"t", 0}).value(), 2000);
}

// ---------------------------------------------------------------------------------------------
// Trimming: transport topics lose what every group has consumed, less a margin; im.events never.

LocalLogConfig trim_config(const TempDir& dir, uint64_t keep) {
  LocalLogConfig c = config_in(dir);
  c.trimmed_topics = {"tr"};
  c.trim_keep_records = keep;
  c.trim_interval = 0ms;  // trim() only: each test decides when
  return c;
}

void append_numbered(LocalLog& log, const std::string& topic, int32_t partition, int from, int n) {
  std::vector<OutRecord> records;
  for (int i = from; i < from + n; ++i) records.push_back({"k", "v" + std::to_string(i), partition});
  ASSERT_OK(log.append_wait(topic, std::move(records)));
}

void commit_as(LocalLog& log, const std::string& group, const TopicPartitionOffset& at) {
  ConsumerOptions o;
  o.group = group;
  auto c = log.consumer(o);
  ASSERT_OK(c->commit({at}));
}

// Reads [from, end) of a partition; every record's value must be "v<offset>".
void expect_readable(LocalLog& log, const std::string& topic, int32_t partition, int64_t from) {
  const int64_t end = log.end_offset({topic, partition}).value();
  auto c = log.consumer({});
  ASSERT_OK(c->assign({{topic, partition, from}}));
  std::vector<Record> out;
  int64_t next = from;
  for (int polls = 0; next < end && polls < 1000; ++polls) {
    ASSERT_OK(c->poll(out, 5s));
    for (const auto& r : out) {
      ASSERT_EQ(r.offset, next);
      ASSERT_EQ(r.value, "v" + std::to_string(next));
      ++next;
    }
  }
  EXPECT_EQ(next, end);
}

TEST(LocalLogTrim, TrimsWhatEveryGroupCommittedLessTheMargin) {
  TempDir dir("imlog-trim");
  auto config = trim_config(dir, 10);
  {
    auto log = open_log(config);
    ASSERT_OK(log->create_topic({"tr", 2, true}));
    append_numbered(*log, "tr", 0, 0, 100);
    append_numbered(*log, "tr", 1, 0, 100);
    // Nobody committed: nothing is known to be consumed.
    EXPECT_EQ(log->trim().value(), 0u);
    EXPECT_EQ(log->begin_offset({"tr", 0}).value(), 0);

    commit_as(*log, "fast", {"tr", 0, 90});
    commit_as(*log, "slow", {"tr", 0, 50});
    EXPECT_EQ(log->trim().value(), 40u) << "the slower group's 50, less 10 kept";
    EXPECT_EQ(log->begin_offset({"tr", 0}).value(), 40);
    EXPECT_EQ(log->begin_offset({"tr", 1}).value(), 0) << "no group committed partition 1";
    EXPECT_EQ(log->stats().trimmed_records, 40u);
    expect_readable(*log, "tr", 0, 40);

    // A read below the first kept record is refused, naming what is left, as Kafka does with
    // auto.offset.reset=error.
    auto c = log->consumer({});
    auto below = c->assign({{"tr", 0, 39}});
    ASSERT_FALSE(below);
    EXPECT_EQ(below.error().code(), LogErrc::offset_out_of_range);
    EXPECT_NE(below.error().message().find("holds 40..100"), std::string::npos) << below.error().message();

    // A new group starting at the beginning starts at the first kept record.
    ConsumerOptions o;
    o.group = "new";
    o.topics = {"tr"};
    auto member = log->consumer(o);
    std::vector<Record> out;
    ASSERT_OK(member->poll(out, 5s));
    ASSERT_FALSE(out.empty());
    for (const auto& r : out) {
      if (r.partition == 0) {
        EXPECT_GE(r.offset, 40);
      }
    }
  }
  // The first offset survives a reopen.
  auto log = open_log(config);
  EXPECT_EQ(log->begin_offset({"tr", 0}).value(), 40);
  EXPECT_EQ(log->end_offset({"tr", 0}).value(), 100);
  expect_readable(*log, "tr", 0, 40);
}

TEST(LocalLogTrim, AReaderOvertakenByTheTrimmerGetsOffsetOutOfRange) {
  TempDir dir("imlog-trim");
  auto log = open_log(trim_config(dir, 0));
  ASSERT_OK(log->create_topic({"tr", 1, true}));
  append_numbered(*log, "tr", 0, 0, 20);
  auto reader = log->consumer({});
  ASSERT_OK(reader->assign({{"tr", 0, 5}}));
  commit_as(*log, "g", {"tr", 0, 10});
  ASSERT_EQ(log->trim().value(), 10u);
  std::vector<Record> out;
  auto r = reader->poll(out, 1s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), LogErrc::offset_out_of_range) << r.error().to_string();
  ASSERT_OK(reader->seek({"tr", 0, 10}));
  ASSERT_OK(reader->poll(out, 5s));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.front().offset, 10);
}

TEST(LocalLogTrim, AFullyTrimmedPartitionKeepsItsOffsetsAcrossReopen) {
  TempDir dir("imlog-trim");
  auto config = trim_config(dir, 0);
  {
    auto log = open_log(config);
    ASSERT_OK(log->create_topic({"tr", 1, true}));
    append_numbered(*log, "tr", 0, 0, 30);
    commit_as(*log, "g", {"tr", 0, 30});
    EXPECT_EQ(log->trim().value(), 30u);
  }
  auto log = open_log(config);
  EXPECT_EQ(log->begin_offset({"tr", 0}).value(), 30);
  EXPECT_EQ(log->end_offset({"tr", 0}).value(), 30) << "no record left, and the offsets go on";
  auto at = log->append_wait("tr", {{"k", "v30", 0}});
  ASSERT_OK(at);
  EXPECT_EQ(at->front().offset, 30);
  expect_readable(*log, "tr", 0, 30);
}

TEST(LocalLogTrim, EventsAreNeverTrimmed) {
  TempDir dir("imlog-trim");
  LocalLogConfig refused = config_in(dir);
  refused.trimmed_topics = {"im.tasks", "im.events"};
  auto bad = LocalLog::open(refused);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), LogErrc::bad_argument);
  EXPECT_NE(bad.error().message().find("im.events"), std::string::npos) << bad.error().message();

  // The defaults trim the transport topics: im.tasks goes, im.events stays whole, though every
  // group committed both to their ends.
  LocalLogConfig config = config_in(dir);
  config.trim_keep_records = 0;
  config.trim_interval = 0ms;
  auto log = open_log(config);
  for (const char* t : {"im.events", "im.tasks", "im.commands"}) ASSERT_OK(log->create_topic({t, 1, true}));
  append_numbered(*log, "im.events", 0, 0, 50);
  append_numbered(*log, "im.tasks", 0, 0, 50);
  for (const char* g : {"router", "tasks", "projector"}) {
    commit_as(*log, g, {"im.events", 0, 50});
    commit_as(*log, g, {"im.tasks", 0, 50});
  }
  EXPECT_EQ(log->trim().value(), 50u);
  EXPECT_EQ(log->begin_offset({"im.tasks", 0}).value(), 50);
  EXPECT_EQ(log->begin_offset({"im.events", 0}).value(), 0);
  expect_readable(*log, "im.events", 0, 0);
}

// The figure of docs/benchmarks.md ("Storage: the embedded log's transport topics"): the bytes
// on disk of im.tasks before and after trimming, for 20,000 fan-out-task-sized records.
TEST(LocalLogTrim, TrimmingGivesTheDiskSpaceBack) {
  TempDir dir("imlog-trim");
  LocalLogConfig config = config_in(dir);
  config.trim_keep_records = 1000;
  config.trim_interval = 0ms;
  auto log = open_log(config);
  ASSERT_OK(log->create_topic({"im.tasks", 4, true}));
  const std::string task(8000, 't');  // a page of 1000 recipients is about 8 KB
  for (int batch = 0; batch < 200; ++batch) {
    std::vector<OutRecord> records;
    for (int i = 0; i < 100; ++i) records.push_back({"group_7/" + std::to_string(batch * 100 + i), task, kByKey});
    ASSERT_OK(log->append_wait("im.tasks", std::move(records)));
  }
  ASSERT_OK(log->flush(30s));
  for (int32_t p = 0; p < 4; ++p) {
    commit_as(*log, "tasks", {"im.tasks", p, log->end_offset({"im.tasks", p}).value()});
  }
  const uint64_t before = log->approximate_bytes("im.tasks").value();
  const uint64_t removed = log->trim().value();
  const uint64_t after = log->approximate_bytes("im.tasks").value();
  std::cout << "[ figure   ] im.tasks: 20000 records of 8000 bytes, 4 partitions, 1000 kept per partition: "
            << before << " bytes before trimming, " << after << " after (" << removed << " records removed)\n";
  EXPECT_EQ(removed, 16000u);
  EXPECT_LT(after, before / 3);
}

// Property: over any interleaving of appends, commits by several groups (forward or back), trims
// and reopens, a trim removes only records below every group's commit less the margin, and every
// record from the first kept one to the end reads back as written.
RC_GTEST_PROP(LocalLogTrimModel, NothingUncommittedIsEverRemoved, ()) {
  const auto keep = *rc::gen::inRange<uint64_t>(0, 4);
  TempDir dir("imlog-trim-model");
  auto config = trim_config(dir, keep);
  auto log = open_log(config);
  RC_ASSERT(log != nullptr);
  RC_ASSERT(log->create_topic({"tr", 2, /*durable=*/false}).has_value());
  std::array<int64_t, 2> end{0, 0}, begin{0, 0};
  std::map<std::pair<int, int32_t>, int64_t> committed;  // (group, partition) → offset
  const auto steps = *rc::gen::inRange(1, 40);
  for (int step = 0; step < steps; ++step) {
    const int op = *rc::gen::inRange(0, 10);
    const auto p = *rc::gen::inRange<int32_t>(0, 2);
    const auto pi = static_cast<size_t>(p);
    if (op < 4) {
      const int n = *rc::gen::inRange(1, 8);
      std::vector<OutRecord> records;
      for (int i = 0; i < n; ++i) records.push_back({"k", "v" + std::to_string(end[pi] + i), p});
      RC_ASSERT(log->append_wait("tr", std::move(records)).has_value());
      end[pi] += n;
    } else if (op < 7) {
      const int group = *rc::gen::inRange(0, 3);
      const int64_t at = *rc::gen::inRange<int64_t>(0, end[pi] + 1);
      ConsumerOptions o;
      o.group = "g" + std::to_string(group);
      RC_ASSERT(log->consumer(o)->commit({{"tr", p, at}}).has_value());
      committed[{group, p}] = at;
    } else if (op < 9) {
      RC_ASSERT(log->trim().has_value());
      for (int32_t q = 0; q < 2; ++q) {
        std::optional<int64_t> lowest;
        for (const auto& [gp, at] : committed) {
          if (gp.second == q) lowest = std::min(lowest.value_or(at), at);
        }
        const auto qi = static_cast<size_t>(q);
        const int64_t got = log->begin_offset({"tr", q}).value();
        // Nothing a group has not committed: a trim moves the start only up to the lowest commit
        // (a group may commit below the start afterwards, and then nothing moves).
        if (got != begin[qi]) RC_ASSERT(lowest && got <= *lowest);
        if (lowest) {
          const int64_t target = std::min(*lowest, end[qi]) - static_cast<int64_t>(keep);
          begin[qi] = std::max(begin[qi], target);
        }
        RC_ASSERT(got == begin[qi]);
      }
    } else {
      log.reset();
      log = open_log(config);
      RC_ASSERT(log != nullptr);
    }
    for (int32_t q = 0; q < 2; ++q) {
      const auto qi = static_cast<size_t>(q);
      RC_ASSERT(log->begin_offset({"tr", q}).value() == begin[qi]);
      RC_ASSERT(log->end_offset({"tr", q}).value() == end[qi]);
      auto c = log->consumer({});
      RC_ASSERT(c->assign({{"tr", q, begin[qi]}}).has_value());
      std::vector<Record> out;
      int64_t next = begin[qi];
      for (int polls = 0; next < end[qi] && polls < 100; ++polls) {
        RC_ASSERT(c->poll(out, 5s).has_value());
        for (const auto& r : out) {
          RC_ASSERT(r.offset == next);
          RC_ASSERT(r.value == "v" + std::to_string(next));
          ++next;
        }
      }
      RC_ASSERT(next == end[qi]);
      if (begin[qi] > 0) {
        auto below = c->assign({{"tr", q, begin[qi] - 1}});
        RC_ASSERT(!below.has_value());
        RC_ASSERT(below.error().code() == make_error_code(LogErrc::offset_out_of_range));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Model-based property: random appends, reads, commits and reopens; the log always equals a
// vector of records per partition, and the group resumes from its last commit after a reopen.

constexpr int32_t kModelPartitions = 3;

struct LogModel {
  std::vector<std::vector<std::pair<std::string, std::string>>> partitions =
      std::vector<std::vector<std::pair<std::string, std::string>>>(kModelPartitions);
  std::vector<int64_t> position = std::vector<int64_t>(kModelPartitions, 0);
  std::map<int32_t, int64_t> committed;
};

struct LogSut {
  TempDir dir{"imlog-model"};
  LocalLogConfig config = config_in(dir);
  std::unique_ptr<LocalLog> log;
  std::unique_ptr<Consumer> consumer;

  LogSut() {
    open();
    // Not durable: the model checks contents, not fsync (LocalLogDurability does), and a sync per
    // append would make this property slow for nothing.
    RC_ASSERT(log->create_topic({"m", kModelPartitions, /*durable=*/false}).has_value());
    start_consumer();
  }
  void open() {
    auto r = LocalLog::open(config);
    if (!r) RC_FAIL("open: " + r.error().to_string());
    log = std::move(*r);
  }
  void start_consumer() {
    ConsumerOptions o;
    o.group = "g";
    o.topics = {"m"};
    o.max_batch = 5;  // several polls per read
    consumer = log->consumer(o);
  }
};

using LogCommand = rc::state::Command<LogModel, LogSut>;

struct AppendCmd : LogCommand {
  std::vector<OutRecord> records;
  AppendCmd() {
    const auto n = *rc::gen::inRange<size_t>(1, 6);
    for (size_t i = 0; i < n; ++i) {
      OutRecord r;
      r.key = *rc::gen::element<std::string>("alice", "bob", "carol", "dave", "", "world");
      r.value = *rc::gen::container<std::string>(rc::gen::arbitrary<char>());
      r.partition = *rc::gen::elementOf(std::vector<int32_t>{kByKey, kByKey, 0, 1, 2});
      records.push_back(std::move(r));
    }
  }
  static int32_t target(const OutRecord& r) {
    return r.partition == kByKey ? partition_for(r.key, kModelPartitions) : r.partition;
  }
  void apply(LogModel& m) const override {
    for (const auto& r : records) {
      m.partitions[static_cast<size_t>(target(r))].push_back({r.key, r.value});
    }
  }
  void run(const LogModel& m, LogSut& s) const override {
    auto sizes = std::vector<int64_t>(kModelPartitions);
    for (int32_t p = 0; p < kModelPartitions; ++p) {
      sizes[static_cast<size_t>(p)] = static_cast<int64_t>(m.partitions[static_cast<size_t>(p)].size());
    }
    auto r = s.log->append_wait("m", records);
    RC_ASSERT(r.has_value());
    RC_ASSERT(r->size() == records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      const int32_t p = target(records[i]);
      RC_ASSERT((*r)[i].partition == p);
      RC_ASSERT((*r)[i].offset == sizes[static_cast<size_t>(p)]++);
    }
  }
  void show(std::ostream& os) const override { os << "Append(" << records.size() << ")"; }
};

struct ReadAllCmd : LogCommand {
  void apply(LogModel& m) const override {
    for (int32_t p = 0; p < kModelPartitions; ++p) {
      m.position[static_cast<size_t>(p)] =
          static_cast<int64_t>(m.partitions[static_cast<size_t>(p)].size());
    }
  }
  void run(const LogModel& m, LogSut& s) const override {
    size_t want = 0;
    for (int32_t p = 0; p < kModelPartitions; ++p) {
      const auto pi = static_cast<size_t>(p);
      want += m.partitions[pi].size() - static_cast<size_t>(m.position[pi]);
      auto end = s.log->end_offset({"m", p});
      RC_ASSERT(end.has_value());
      RC_ASSERT(*end == static_cast<int64_t>(m.partitions[pi].size()));
    }
    std::vector<int64_t> next = m.position;
    std::vector<Record> out;
    size_t got = 0;
    for (int polls = 0; got < want && polls < 1000; ++polls) {
      auto r = s.consumer->poll(out, 1s);
      RC_ASSERT(r.has_value());
      for (const auto& rec : out) {
        const auto pi = static_cast<size_t>(rec.partition);
        RC_ASSERT(rec.topic == "m");
        RC_ASSERT(rec.offset == next[pi]);
        RC_ASSERT(rec.offset < static_cast<int64_t>(m.partitions[pi].size()));
        RC_ASSERT(rec.key == m.partitions[pi][static_cast<size_t>(rec.offset)].first);
        RC_ASSERT(rec.value == m.partitions[pi][static_cast<size_t>(rec.offset)].second);
        ++next[pi];
        ++got;
      }
    }
    RC_ASSERT(got == want);
    RC_ASSERT(s.consumer->poll(out, 0ms).has_value());
    RC_ASSERT(out.empty());
  }
  void show(std::ostream& os) const override { os << "ReadAll"; }
};

struct CommitCmd : LogCommand {
  void apply(LogModel& m) const override {
    for (int32_t p = 0; p < kModelPartitions; ++p) {
      m.committed[p] = m.position[static_cast<size_t>(p)];
    }
  }
  void run(const LogModel& m, LogSut& s) const override {
    std::vector<TopicPartitionOffset> offsets;
    for (int32_t p = 0; p < kModelPartitions; ++p) {
      offsets.push_back({"m", p, m.position[static_cast<size_t>(p)]});
    }
    RC_ASSERT(s.consumer->commit(offsets).has_value());
    for (int32_t p = 0; p < kModelPartitions; ++p) {
      auto c = s.consumer->committed({"m", p});
      RC_ASSERT(c.has_value());
      RC_ASSERT(*c == std::optional<int64_t>(m.position[static_cast<size_t>(p)]));
    }
  }
  void show(std::ostream& os) const override { os << "Commit"; }
};

struct ReopenCmd : LogCommand {
  void apply(LogModel& m) const override {
    for (int32_t p = 0; p < kModelPartitions; ++p) {
      auto it = m.committed.find(p);
      m.position[static_cast<size_t>(p)] = it == m.committed.end() ? 0 : it->second;
    }
  }
  void run(const LogModel&, LogSut& s) const override {
    s.consumer.reset();
    s.log.reset();
    s.open();
    s.start_consumer();
  }
  void show(std::ostream& os) const override { os << "Reopen"; }
};

RC_GTEST_PROP(LocalLogModel, BehavesLikeAVectorPerPartition, ()) {
  LogModel model;
  LogSut sut;
  rc::state::check(model, sut, [](const LogModel& m) {
    return rc::gen::weightedOneOf<std::shared_ptr<const LogCommand>>({
        {6, rc::state::gen::execOneOfWithArgs<AppendCmd>()()},
        {3, rc::state::gen::execOneOfWithArgs<ReadAllCmd>()()},
        {2, rc::state::gen::execOneOfWithArgs<CommitCmd>()()},
        {1, rc::state::gen::execOneOfWithArgs<ReopenCmd>()()},
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Crash test: a child process appends continuously and is killed with SIGKILL at random moments;
// after each kill every acknowledged record is there, intact, offsets are dense, and every record
// in the log decodes.

constexpr const char* kCrashTopics[2] = {"crash.durable", "crash.fast"};  // as in the child
constexpr int32_t kCrashPartitions = 2;

uint64_t crash_mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Mirrors crash_payload() in local_log_crash_child.cpp.
std::string crash_payload(int topic, int32_t partition, int64_t offset) {
  uint64_t h = crash_mix((static_cast<uint64_t>(topic) << 56) ^
                         (static_cast<uint64_t>(partition) << 48) ^ static_cast<uint64_t>(offset));
  std::string v = "t" + std::to_string(topic) + "p" + std::to_string(partition) + "o" +
                  std::to_string(offset) + "|";
  const size_t len = 8 + h % 240;
  for (size_t i = 0; i < len; ++i) {
    h = crash_mix(h);
    v.push_back(static_cast<char>('a' + h % 26));
  }
  return v;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// acked[topic][partition]: offset -> checksum the child printed after its callback.
using Acked = std::array<std::array<std::map<int64_t, uint64_t>, kCrashPartitions>, 2>;

void parse_ack(const std::string& line, Acked& acked) {
  int topic = -1, partition = -1;
  int64_t offset = -1;
  uint64_t sum = 0;
  ASSERT_EQ(std::sscanf(line.c_str(), "A %d %d %" SCNd64 " %" SCNx64, &topic, &partition, &offset,
                        &sum),
            4)
      << "child said: " << line;
  ASSERT_TRUE(topic >= 0 && topic < 2 && partition >= 0 && partition < kCrashPartitions) << line;
  acked[static_cast<size_t>(topic)][static_cast<size_t>(partition)][offset] = sum;
}

// The last "C <partition> <offset>" the trimming child printed, per partition of its durable topic.
using Commits = std::array<int64_t, kCrashPartitions>;

bool parse_line(const std::string& line, Acked& acked, Commits& commits) {
  int partition = -1;
  int64_t offset = -1;
  if (std::sscanf(line.c_str(), "C %d %" SCNd64, &partition, &offset) == 2) {
    EXPECT_TRUE(partition >= 0 && partition < kCrashPartitions) << line;
    if (partition < 0 || partition >= kCrashPartitions) return false;
    commits[static_cast<size_t>(partition)] = offset;
    return true;
  }
  parse_ack(line, acked);
  return !::testing::Test::HasFatalFailure();
}

// With trimming: the group's commit is at least the last one the child printed, and the first
// kept record is at most that commit (nothing uncommitted was trimmed).
void verify_trim_bounds(LocalLog& log, const Commits& printed, int kill) {
  if (!log.partition_count(kCrashTopics[0])) {  // killed before it created the topics
    EXPECT_EQ(printed, Commits{});
    return;
  }
  ConsumerOptions o;
  o.group = "g";
  auto c = log.consumer(o);
  for (int32_t p = 0; p < kCrashPartitions; ++p) {
    auto committed = c->committed({kCrashTopics[0], p});
    ASSERT_TRUE(committed) << committed.error().to_string();
    const int64_t at = committed->value_or(0);
    EXPECT_GE(at, printed[static_cast<size_t>(p)]) << "after kill " << kill << ": a commit was lost";
    EXPECT_LE(log.begin_offset({kCrashTopics[0], p}).value(), at)
        << "after kill " << kill << ": records the group had not committed were trimmed";
  }
}

// Reopens the log and checks it against everything acknowledged so far, from each partition's
// first kept record; returns records seen. `printed` (the trimming child's commits) also checks
// the trim bounds.
int64_t verify_after_crash(const LocalLogConfig& config, const Acked& acked, int kill,
                           const Commits* printed = nullptr, int64_t* trimmed = nullptr) {
  auto log = open_log(config);
  if (!log) return -1;
  if (printed != nullptr) verify_trim_bounds(*log, *printed, kill);
  int64_t total = 0;
  for (int t = 0; t < 2; ++t) {
    for (int32_t p = 0; p < kCrashPartitions; ++p) {
      const auto& acks = acked[static_cast<size_t>(t)][static_cast<size_t>(p)];
      auto end = log->end_offset({kCrashTopics[t], p});
      if (!end) {
        // The child may die before creating the topics on its first run.
        EXPECT_TRUE(acks.empty()) << end.error().to_string();
        continue;
      }
      if (!acks.empty()) {
        EXPECT_GT(*end, acks.rbegin()->first)
            << "after kill " << kill << ": acknowledged record " << kCrashTopics[t] << "/" << p
            << "@" << acks.rbegin()->first << " is lost";
      }
      const int64_t begin = log->begin_offset({kCrashTopics[t], p}).value();
      if (trimmed != nullptr) *trimmed += begin;
      if (!acks.empty() && acks.rbegin()->first < begin) {
        EXPECT_TRUE(printed != nullptr) << "a topic that is not trimmed starts at " << begin;
      }
      auto c = log->consumer({});
      EXPECT_TRUE(c->assign({{kCrashTopics[t], p, begin}}));
      std::vector<Record> out;
      int64_t next = begin;
      while (next < *end) {
        auto r = c->poll(out, 5s);
        if (!r) {
          ADD_FAILURE() << "after kill " << kill << ": " << r.error().to_string();
          return -1;
        }
        if (out.empty()) {
          ADD_FAILURE() << "after kill " << kill << ": no record at " << next << " below end "
                        << *end;
          return -1;
        }
        for (const auto& rec : out) {
          if (rec.offset != next) {
            ADD_FAILURE() << "offsets not dense: " << rec.offset << " after " << next - 1;
            return -1;
          }
          if (rec.value != crash_payload(t, p, rec.offset) || rec.key != "k" + std::to_string(rec.offset)) {
            ADD_FAILURE() << "after kill " << kill << ": record " << kCrashTopics[t] << "/" << p
                          << "@" << rec.offset << " has the wrong contents";
            return -1;
          }
          if (auto a = acks.find(rec.offset); a != acks.end() && a->second != fnv1a(rec.value)) {
            ADD_FAILURE() << "checksum of acknowledged record " << rec.offset << " differs";
            return -1;
          }
          ++next;
        }
      }
      total += next - begin;
    }
  }
  return total;
}

TEST(LocalLogCrash, AcknowledgedRecordsSurviveSigkill) {
  TempDir dir("imlog-crash");
  auto config = config_in(dir);
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  std::cout << "[ crash    ] seed " << seed << "\n";
  Acked acked;
  int kills = 0;
  int64_t acks = 0, records = 0;
  for (int round = 0; round < 24; ++round) {
    auto child = testing::Subprocess::start({IMLOG_LOCAL_LOG_CRASH_CHILD, config.dir});
    // Kill after a random number of acknowledgements: 0 kills it while it opens the log.
    const int wait_for = round % 6 == 0 ? 0 : static_cast<int>(rng() % 3000);
    for (int i = 0; i < wait_for; ++i) {
      auto line = child.read_line(30s);
      ASSERT_TRUE(line) << "the child stopped acknowledging (round " << round << ")";
      ASSERT_NO_FATAL_FAILURE(parse_ack(*line, acked));
      ++acks;
    }
    child.kill();
    ++kills;
    // Lines already in the pipe were acknowledged before the kill.
    while (auto line = child.read_line(5s)) {
      ASSERT_NO_FATAL_FAILURE(parse_ack(*line, acked));
      ++acks;
    }
    records = verify_after_crash(config, acked, kills);
    ASSERT_GE(records, 0) << "round " << round;
  }
  std::cout << "[ crash    ] " << kills << " SIGKILLs, " << acks << " acknowledgements checked, "
            << records << " records in the log\n";
  RecordProperty("kills", kills);
  EXPECT_GE(kills, 20);
  EXPECT_GT(acks, 1000);
}

// The same, with the durable topic trimmed every 2 ms behind a group committing what was
// acknowledged: a kill during a trim (its range delete, its file deletion, its compaction) loses
// no record at or above the first kept one, no commit, and never trims past the commit.
TEST(LocalLogCrash, AKillWhileTrimmingLosesNothingUncommitted) {
  TempDir dir("imlog-crash-trim");
  auto config = config_in(dir);
  config.trimmed_topics = {kCrashTopics[0]};
  config.trim_interval = 0ms;
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  std::cout << "[ crash    ] seed " << seed << "\n";
  Acked acked;
  Commits commits{};
  int kills = 0;
  int64_t trimmed = 0;
  for (int round = 0; round < 16; ++round) {
    auto child = testing::Subprocess::start({IMLOG_LOCAL_LOG_CRASH_CHILD, config.dir, "trim"});
    const int wait_for = round % 6 == 0 ? 0 : static_cast<int>(rng() % 3000);
    for (int i = 0; i < wait_for; ++i) {
      auto line = child.read_line(30s);
      ASSERT_TRUE(line) << "the child stopped acknowledging (round " << round << ")";
      ASSERT_TRUE(parse_line(*line, acked, commits));
    }
    child.kill();
    ++kills;
    while (auto line = child.read_line(5s)) ASSERT_TRUE(parse_line(*line, acked, commits));
    trimmed = 0;
    ASSERT_GE(verify_after_crash(config, acked, kills, &commits, &trimmed), 0) << "round " << round;
  }
  std::cout << "[ crash    ] " << kills << " SIGKILLs while trimming; " << trimmed
            << " records trimmed by the end\n";
  EXPECT_GT(trimmed, 0) << "the child never trimmed: the test proved nothing";
}

// ---------------------------------------------------------------------------------------------
// Corruption: damaged bytes are reported as corrupt_record naming topic, partition and offset,
// never returned as data, never skipped.

std::string marked_value(int i) {
  char head[32];
  std::snprintf(head, sizeof head, "RECORD-%05d-", i);
  return head + std::string(80, 'x');
}

void write_marked_records(const LocalLogConfig& config, const std::string& topic, int n) {
  auto log = open_log(config);
  ASSERT_TRUE(log);
  ASSERT_OK(log->create_topic({topic, 1, true}));
  std::vector<OutRecord> records;
  for (int i = 0; i < n; ++i) records.push_back({"key", marked_value(i), 0});
  ASSERT_OK(log->append_wait(topic, std::move(records)));
  // Destruction flushes the memtable into an SST.
}

// Reads from offset 0 until an error; returns the error and how many records came before it.
std::pair<std::optional<Error>, int64_t> read_until_error(LocalLog& log, const std::string& topic) {
  auto c = log.consumer({});
  EXPECT_TRUE(c->assign({{topic, 0, 0}}));
  std::vector<Record> out;
  int64_t next = 0;
  for (int polls = 0; polls < 1000; ++polls) {
    auto r = c->poll(out, 1s);
    if (!r) {
      // Polling again reports the same record again: it is not skipped.
      auto again = c->poll(out, 0ms);
      EXPECT_FALSE(again);
      if (!again) {
        EXPECT_EQ(again.error().message(), r.error().message());
      }
      return {r.error(), next};
    }
    if (out.empty()) break;
    for (const auto& rec : out) {
      EXPECT_EQ(rec.offset, next);
      EXPECT_EQ(rec.value, marked_value(static_cast<int>(rec.offset))) << "damaged data returned";
      ++next;
    }
  }
  return {std::nullopt, next};
}

void expect_names(const Error& e, const std::string& topic, int64_t offset) {
  std::cout << "[ corrupt  ] " << e.message() << "\n";
  EXPECT_EQ(e.code(), LogErrc::corrupt_record) << e.to_string();
  EXPECT_FALSE(e.retryable());
  EXPECT_NE(e.message().find("topic `" + topic + "`"), std::string::npos) << e.message();
  EXPECT_NE(e.message().find("partition 0"), std::string::npos) << e.message();
  EXPECT_NE(e.message().find("offset " + std::to_string(offset)), std::string::npos)
      << e.message();
}

TEST(LocalLogCorruption, AByteFlippedInAnSstIsReportedNotReturned) {
  TempDir dir;
  auto config = config_in(dir);
  ASSERT_NO_FATAL_FAILURE(write_marked_records(config, "sst", 400));

  // Flip one payload byte of record 300 in whichever SST holds it.
  const std::string mark = marked_value(300).substr(0, 13);
  bool flipped = false;
  for (const auto& entry : std::filesystem::directory_iterator(config.dir)) {
    if (entry.path().extension() != ".sst") continue;
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto at = bytes.find(mark);
    if (at == std::string::npos) continue;
    f.seekp(static_cast<std::streamoff>(at + mark.size() + 10));
    f.put('X');  // an 'x' becomes 'X'
    flipped = true;
  }
  ASSERT_TRUE(flipped) << "record 300 is in no SST: the log did not flush on close";

  auto log = open_log(config);
  ASSERT_TRUE(log);
  auto [error, before] = read_until_error(*log, "sst");
  ASSERT_TRUE(error) << "read " << before << " records and no error";
  // RocksDB's block checksum fails for the whole block holding record 300: the error names the
  // first offset that could not be read, and everything before it was delivered intact.
  EXPECT_LE(before, 300);
  expect_names(*error, "sst", before);
}

TEST(LocalLogCorruption, ARecordFailingItsChecksumIsReportedExactly) {
  TempDir dir;
  auto config = config_in(dir);
  ASSERT_NO_FATAL_FAILURE(write_marked_records(config, "crc", 100));

  // Damage record 42's value through RocksDB itself, so only the record's own CRC can tell.
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), config.dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    const std::string mark = marked_value(42).substr(0, 13);
    std::string key, value;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->value().ToString().find(mark) != std::string::npos) {
        key = it->key().ToString();
        value = it->value().ToString();
      }
    }
    ASSERT_FALSE(key.empty());
    value[value.find(mark) + mark.size() + 3] = 'y';
    it.reset();
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
    ASSERT_TRUE(db->Close().ok());
  }

  auto log = open_log(config);
  ASSERT_TRUE(log);
  auto [error, before] = read_until_error(*log, "crc");
  ASSERT_TRUE(error) << "read " << before << " records and no error";
  EXPECT_EQ(before, 42);
  expect_names(*error, "crc", 42);
  EXPECT_NE(error->message().find("checksum"), std::string::npos) << error->message();

  // Reading past it works: a reader that seeks beyond the damage gets the rest.
  auto c = log->consumer({});
  ASSERT_OK(c->assign({{"crc", 0, 43}}));
  auto rest = read_n(*c, 57);
  ASSERT_EQ(rest.size(), 57u);
  EXPECT_EQ(rest.front().offset, 43);
}

}  // namespace
}  // namespace imlog
