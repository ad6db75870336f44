// The EventLog contract (event_log.h), one suite run against both backends:
//   Local  LocalLog in a fresh temporary directory; "reopen" opens the same directory again.
//   Kafka  KafkaLog against the Kafka mock broker (KafkaMock::shared(), a real broker process over
//          TCP); "reopen" destroys the KafkaLog and opens a new one against the same broker.
// Test names read Backends/EventLogContract.<Case>/<Local|Kafka>.
//
// Kafka group timing (platform-facts.md): a group's first join waits ~3 s, and a rejoin after a
// member leaves waits session.timeout - 1 s (5 s with the test config), so group cases wait on
// their condition with a deadline of 30 s, polling; nothing here sleeps.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "imlog/engine/event_log.h"
#include "imlog/engine/kafka_log.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/partitioner.h"
#include "imlog/testing/kafka_mock.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kReadDeadline = 20s;
constexpr auto kGroupDeadline = 30s;

// ---------------------------------------------------------------------------------------------
// Backends.

class Backend {
 public:
  virtual ~Backend() = default;
  // Opens the log; after the previous one was destroyed, opens the same log again.
  virtual Result<std::unique_ptr<EventLog>> open() = 0;
  // A topic or group name no other test uses.
  virtual std::string unique(const std::string& prefix) = 0;
  // What must exist before create_topic() can succeed (Kafka: the mock has no admin API).
  virtual void prepare_topic(const std::string& name, int32_t partitions) = 0;
};

class LocalBackend final : public Backend {
 public:
  Result<std::unique_ptr<EventLog>> open() override {
    LocalLogConfig config;
    config.dir = dir_.str() + "/log";
    auto log = LocalLog::open(config);
    if (!log) return tl::unexpected(log.error());
    return std::unique_ptr<EventLog>(std::move(*log));
  }
  std::string unique(const std::string& prefix) override {
    return prefix + "-" + std::to_string(++counter_);
  }
  void prepare_topic(const std::string&, int32_t) override {}

 private:
  testing::TempDir dir_{"imlog-contract"};
  int counter_ = 0;
};

class KafkaBackend final : public Backend {
 public:
  Result<std::unique_ptr<EventLog>> open() override {
    auto log = KafkaLog::open(testing::KafkaMock::shared().log_config());
    if (!log) return tl::unexpected(log.error());
    return std::unique_ptr<EventLog>(std::move(*log));
  }
  std::string unique(const std::string& prefix) override {
    return testing::KafkaMock::unique_name(prefix);
  }
  void prepare_topic(const std::string& name, int32_t partitions) override {
    testing::KafkaMock::shared().create_topic(name, partitions);
  }
};

struct BackendParam {
  std::string name;
  std::function<std::unique_ptr<Backend>()> make;
};

void PrintTo(const BackendParam& p, std::ostream* os) { *os << p.name; }

// ---------------------------------------------------------------------------------------------
// Helpers.

// Tracks a group member's notices: on_assigned adds, on_revoked removes, so `held` must always
// equal the consumer's assignment(), whatever protocol (eager or incremental) the backend uses.
class Notices final : public RebalanceListener {
 public:
  void on_assigned(const std::vector<TopicPartition>& ps) override {
    for (const auto& p : ps) {
      held.insert(p);
      ever_assigned.insert(p);
    }
  }
  void on_revoked(const std::vector<TopicPartition>& ps) override {
    for (const auto& p : ps) {
      held.erase(p);
      ever_revoked.insert(p);
    }
  }
  std::set<TopicPartition> held, ever_assigned, ever_revoked;
};

std::set<TopicPartition> as_set(const std::vector<TopicPartition>& v) { return {v.begin(), v.end()}; }

std::set<TopicPartition> all_partitions(const std::string& topic, int32_t n) {
  std::set<TopicPartition> s;
  for (int32_t p = 0; p < n; ++p) s.insert({topic, p});
  return s;
}

class EventLogContract : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    backend_ = GetParam().make();
    auto log = backend_->open();
    ASSERT_TRUE(log) << log.error().to_string();
    log_ = std::move(*log);
  }

  // Creates a fresh topic and returns its name.
  std::string make_topic(const std::string& prefix, int32_t partitions) {
    std::string name = backend_->unique(prefix);
    backend_->prepare_topic(name, partitions);
    auto created = log_->create_topic({name, partitions, true});
    EXPECT_TRUE(created) << created.error().to_string();
    return name;
  }

  void reopen() {
    log_.reset();
    auto log = backend_->open();
    ASSERT_TRUE(log) << log.error().to_string();
    log_ = std::move(*log);
  }

  std::vector<RecordPosition> append(const std::string& topic, std::vector<OutRecord> records) {
    auto r = log_->append_wait(topic, std::move(records));
    EXPECT_TRUE(r) << "append to " << topic << ": " << r.error().to_string();
    return r ? *r : std::vector<RecordPosition>{};
  }

  std::unique_ptr<Consumer> reader(const std::vector<TopicPartitionOffset>& from,
                                   const std::string& group = "") {
    ConsumerOptions o;
    o.group = group;
    auto c = log_->consumer(o);
    auto assigned = c->assign(from);
    EXPECT_TRUE(assigned) << assigned.error().to_string();
    return c;
  }

  std::unique_ptr<Consumer> member(const std::string& group, const std::string& topic,
                                   Notices* notices, bool start_at_beginning = true) {
    ConsumerOptions o;
    o.group = group;
    o.topics = {topic};
    o.listener = notices;
    o.start_at_beginning = start_at_beginning;
    return log_->consumer(o);
  }

  // Polls until `want` records arrived or the deadline passed.
  static std::vector<Record> read(Consumer& c, size_t want, Clock::duration deadline = kReadDeadline) {
    std::vector<Record> all, batch;
    const auto end = Clock::now() + deadline;
    while (all.size() < want && Clock::now() < end) {
      auto r = c.poll(batch, 100ms);
      if (!r) {
        ADD_FAILURE() << "poll: " << r.error().to_string();
        break;
      }
      all.insert(all.end(), batch.begin(), batch.end());
    }
    return all;
  }

  // Polls every consumer in turn until `done` holds or the deadline passes; records read are
  // appended to `seen` (one vector per consumer).
  static bool poll_until(const std::vector<Consumer*>& consumers, const std::function<bool()>& done,
                         std::vector<std::vector<Record>>* seen = nullptr,
                         Clock::duration deadline = kGroupDeadline) {
    const auto end = Clock::now() + deadline;
    std::vector<Record> batch;
    while (!done()) {
      if (Clock::now() >= end) return false;
      for (size_t i = 0; i < consumers.size(); ++i) {
        auto r = consumers[i]->poll(batch, 100ms);
        if (!r) {
          ADD_FAILURE() << "poll: " << r.error().to_string();
          return false;
        }
        if (seen != nullptr) (*seen)[i].insert((*seen)[i].end(), batch.begin(), batch.end());
      }
    }
    return true;
  }

  // Commits, riding out a rebalance in progress (Kafka refuses commits while a group starts).
  static void commit(Consumer& c, const std::vector<TopicPartitionOffset>& offsets) {
    const auto end = Clock::now() + kGroupDeadline;
    std::vector<Record> ignored;
    while (true) {
      auto r = c.commit(offsets);
      if (r) return;
      if (!r.error().retryable() || Clock::now() >= end) {
        ADD_FAILURE() << "commit: " << r.error().to_string();
        return;
      }
      (void)c.poll(ignored, 100ms);
    }
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<EventLog> log_;
};

// ---------------------------------------------------------------------------------------------
// Cases.

TEST_P(EventLogContract, PerPartitionOrder) {
  const std::string t = make_topic("order", 3);
  // Pipelined appends from one thread land in each partition in call order.
  std::map<int32_t, int> sent;
  for (int i = 0; i < 10; ++i) {
    std::vector<OutRecord> batch;
    for (int j = 0; j < 3; ++j) {
      const int32_t p = (i + j) % 3;
      batch.push_back({"k", std::to_string(p) + ":" + std::to_string(sent[p]++), p});
    }
    log_->append(t, std::move(batch), [](Result<std::vector<RecordPosition>> r) {
      EXPECT_TRUE(r) << r.error().to_string();
    });
  }
  ASSERT_TRUE(log_->flush(kReadDeadline));

  auto c = reader({{t, 0, 0}, {t, 1, 0}, {t, 2, 0}});
  auto records = read(*c, 30);
  ASSERT_EQ(records.size(), 30u);
  std::map<int32_t, int> next;
  for (const auto& r : records) {
    EXPECT_EQ(r.topic, t);
    EXPECT_EQ(r.value, std::to_string(r.partition) + ":" + std::to_string(next[r.partition]++))
        << "partition " << r.partition << " offset " << r.offset;
  }
}

TEST_P(EventLogContract, DenseOffsetsFromZero) {
  const std::string t = make_topic("dense", 2);
  EXPECT_EQ(log_->end_offset({t, 0}).value(), 0);
  EXPECT_EQ(log_->begin_offset({t, 0}).value(), 0);
  int64_t expected = 0;
  for (int batch = 1; batch <= 5; ++batch) {
    std::vector<OutRecord> records(static_cast<size_t>(batch), OutRecord{"k", "v", 0});
    auto positions = append(t, std::move(records));
    ASSERT_EQ(positions.size(), static_cast<size_t>(batch));
    for (const auto& p : positions) {
      EXPECT_EQ(p.partition, 0);
      EXPECT_EQ(p.offset, expected++);
    }
  }
  EXPECT_EQ(log_->end_offset({t, 0}).value(), 15);
  EXPECT_EQ(log_->end_offset({t, 1}).value(), 0);
  EXPECT_EQ(log_->begin_offset({t, 0}).value(), 0);

  auto c = reader({{t, 0, 0}});
  auto records = read(*c, 15);
  ASSERT_EQ(records.size(), 15u);
  for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i].offset, static_cast<int64_t>(i));
}

TEST_P(EventLogContract, KeyedAppendsRouteStably) {
  const std::string t = make_topic("keyed", 4);
  for (int round = 0; round < 2; ++round) {
    for (int k = 0; k < 20; ++k) {
      const std::string key = "stream_" + std::to_string(k);
      auto positions = append(t, {{key, std::to_string(round), kByKey}});
      ASSERT_EQ(positions.size(), 1u);
      EXPECT_EQ(positions[0].partition, partition_for(key, 4)) << key;
    }
  }
  auto c = reader({{t, 0, 0}, {t, 1, 0}, {t, 2, 0}, {t, 3, 0}});
  auto records = read(*c, 40);
  ASSERT_EQ(records.size(), 40u);
  std::set<int32_t> used;
  for (const auto& r : records) {
    EXPECT_EQ(r.partition, partition_for(r.key, 4)) << r.key;
    used.insert(r.partition);
  }
  EXPECT_GT(used.size(), 1u) << "20 keys all in one partition";
}

TEST_P(EventLogContract, ExplicitPartitionOverridesTheKey) {
  const std::string t = make_topic("explicit", 4);
  std::string key = "a";
  while (partition_for(key, 4) == 2) key += "a";
  auto positions = append(t, {{key, "there", 2}});
  ASSERT_EQ(positions.size(), 1u);
  EXPECT_EQ(positions[0], (RecordPosition{2, 0}));
  EXPECT_EQ(log_->end_offset({t, 2}).value(), 1);
  EXPECT_EQ(log_->end_offset({t, partition_for(key, 4)}).value(), 0);
  auto c = reader({{t, 2, 0}});
  auto records = read(*c, 1);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].key, key);
  EXPECT_EQ(records[0].value, "there");
  EXPECT_EQ(records[0].partition, 2);
}

TEST_P(EventLogContract, ResumesFromCommittedOffsets) {
  const std::string t = make_topic("resume", 2);
  const std::string group = backend_->unique("g-resume");
  for (int32_t p = 0; p < 2; ++p) {
    std::vector<OutRecord> records;
    for (int i = 0; i < 10; ++i) records.push_back({"k", std::to_string(p) + "/" + std::to_string(i), p});
    append(t, std::move(records));
  }
  {
    Notices notices;
    auto first = member(group, t, &notices);
    auto records = read(*first, 20, kGroupDeadline);
    ASSERT_EQ(records.size(), 20u);
    // Only the first 4 of each partition are done.
    commit(*first, {{t, 0, 4}, {t, 1, 4}});
    auto c0 = first->committed({t, 0});
    ASSERT_TRUE(c0) << c0.error().to_string();
    EXPECT_EQ(*c0, std::optional<int64_t>(4));
    first->close();
  }
  Notices notices;
  auto second = member(group, t, &notices);
  auto records = read(*second, 12, kGroupDeadline);
  ASSERT_EQ(records.size(), 12u);
  std::map<int32_t, int64_t> next = {{0, 4}, {1, 4}};
  for (const auto& r : records) {
    EXPECT_EQ(r.offset, next[r.partition]++) << "partition " << r.partition;
    EXPECT_EQ(r.value, std::to_string(r.partition) + "/" + std::to_string(r.offset));
  }
}

TEST_P(EventLogContract, NewMemberWithoutCommitStartsAtTheEndWhenAsked) {
  const std::string t = make_topic("latest", 1);
  append(t, {{"k", "old", 0}, {"k", "old", 0}});
  Notices notices;
  auto c = member(backend_->unique("g-latest"), t, &notices, /*start_at_beginning=*/false);
  // "The end" is where the member's position is set, which Kafka does some time after the
  // assignment; so keep appending until records arrive, and check none of them is old.
  std::vector<Record> got, batch;
  const auto deadline = Clock::now() + kGroupDeadline;
  while (got.empty() && Clock::now() < deadline) {
    if (!c->assignment().empty()) append(t, {{"k", "new", 0}});
    ASSERT_TRUE(c->poll(batch, 200ms));
    got.insert(got.end(), batch.begin(), batch.end());
  }
  ASSERT_FALSE(got.empty()) << "no record reached a member that starts at the end";
  for (const auto& r : got) {
    EXPECT_EQ(r.value, "new") << "offset " << r.offset;
    EXPECT_GE(r.offset, 2);
  }
}

TEST_P(EventLogContract, GroupMembersSharePartitionsAndTheSurvivorTakesOver) {
  const std::string t = make_topic("share", 4);
  const std::string group = backend_->unique("g-share");
  const auto all = all_partitions(t, 4);

  Notices n1, n2;
  auto c1 = member(group, t, &n1);
  ASSERT_TRUE(poll_until({c1.get()}, [&] { return as_set(c1->assignment()) == all; }))
      << "a lone member gets every partition";
  EXPECT_EQ(n1.held, all);

  auto c2 = member(group, t, &n2);
  auto shared = [&] {
    auto a1 = as_set(c1->assignment());
    auto a2 = as_set(c2->assignment());
    std::set<TopicPartition> both;
    both.insert(a1.begin(), a1.end());
    both.insert(a2.begin(), a2.end());
    return !a1.empty() && !a2.empty() && a1.size() + a2.size() == 4 && both == all &&
           n1.held == a1 && n2.held == a2;
  };
  ASSERT_TRUE(poll_until({c1.get(), c2.get()}, shared))
      << "c1 holds " << c1->assignment().size() << ", c2 holds " << c2->assignment().size();
  const auto moved = as_set(c2->assignment());
  for (const auto& p : moved) {
    EXPECT_TRUE(n1.ever_revoked.count(p)) << "partition " << p.partition
                                          << " moved to c2 without c1 revoking it";
  }

  // Each member reads only its own partitions; both commit what they read.
  for (int32_t p = 0; p < 4; ++p) append(t, {{"k", "a" + std::to_string(p), p}, {"k", "b", p}});
  std::vector<std::vector<Record>> seen(2);
  ASSERT_TRUE(poll_until({c1.get(), c2.get()},
                         [&] { return seen[0].size() + seen[1].size() >= 8; }, &seen));
  const auto a1 = as_set(c1->assignment());
  for (const auto& r : seen[0]) EXPECT_TRUE(a1.count({t, r.partition})) << r.partition;
  for (const auto& r : seen[1]) EXPECT_TRUE(moved.count({t, r.partition})) << r.partition;
  EXPECT_EQ(seen[0].size() + seen[1].size(), 8u);
  std::vector<TopicPartitionOffset> c1_done, c2_done;
  for (const auto& p : a1) c1_done.push_back({t, p.partition, 2});
  for (const auto& p : moved) c2_done.push_back({t, p.partition, 2});
  commit(*c1, c1_done);
  commit(*c2, c2_done);

  // c2 leaves: c1 takes every partition, with notices, and resumes where each was committed.
  c2->close();
  c2.reset();
  ASSERT_TRUE(poll_until({c1.get()}, [&] { return as_set(c1->assignment()) == all; }))
      << "the survivor did not take over";
  EXPECT_EQ(n1.held, all);
  for (const auto& p : moved) EXPECT_TRUE(n1.ever_assigned.count(p)) << p.partition;

  for (int32_t p = 0; p < 4; ++p) append(t, {{"k", "c" + std::to_string(p), p}});
  auto after = read(*c1, 4, kGroupDeadline);
  ASSERT_EQ(after.size(), 4u);
  std::set<int32_t> partitions;
  for (const auto& r : after) {
    EXPECT_EQ(r.offset, 2) << "partition " << r.partition << " was not resumed at its commit";
    partitions.insert(r.partition);
  }
  EXPECT_EQ(partitions.size(), 4u);
}

TEST_P(EventLogContract, ReadsExactlyToTheEnd) {
  const std::string t = make_topic("end", 2);
  append(t, {{"a", "1", 0}, {"a", "2", 0}, {"b", "3", 1}});
  append(t, {{"a", "4", 0}, {"a", "5", 0}, {"a", "6", 0}, {"a", "7", 0}});
  append(t, {{"b", "8", 1}, {"b", "9", 1}});
  const int64_t end0 = log_->end_offset({t, 0}).value();
  const int64_t end1 = log_->end_offset({t, 1}).value();
  EXPECT_EQ(end0, 6);
  EXPECT_EQ(end1, 3);

  auto c = reader({{t, 0, 0}, {t, 1, 0}});
  std::map<int32_t, int64_t> next = {{0, 0}, {1, 0}};
  std::vector<Record> batch;
  const auto deadline = Clock::now() + kReadDeadline;
  while ((next[0] < end0 || next[1] < end1) && Clock::now() < deadline) {
    ASSERT_TRUE(c->poll(batch, 100ms));
    for (const auto& r : batch) {
      EXPECT_EQ(r.offset, next[r.partition]++);
      EXPECT_LT(r.offset, r.partition == 0 ? end0 : end1);
    }
  }
  EXPECT_EQ(next[0], end0);
  EXPECT_EQ(next[1], end1);
  ASSERT_TRUE(c->poll(batch, 200ms));
  EXPECT_TRUE(batch.empty()) << "a record past the end";
}

TEST_P(EventLogContract, ReopenKeepsRecordsAndCommittedOffsets) {
  const std::string t = make_topic("reopen", 2);
  const std::string group = backend_->unique("g-reopen");
  append(t, {{"k", "0", 0}, {"k", "1", 0}, {"k", "2", 0}, {"k", "3", 0}, {"k", "4", 0}});
  append(t, {{"k", "x", 1}, {"k", "y", 1}, {"k", "z", 1}});
  {
    auto c = reader({{t, 0, 0}}, group);
    commit(*c, {{t, 0, 3}, {t, 1, 1}});
  }
  reopen();

  EXPECT_EQ(log_->partition_count(t).value(), 2);
  EXPECT_EQ(log_->end_offset({t, 0}).value(), 5);
  EXPECT_EQ(log_->end_offset({t, 1}).value(), 3);
  auto again = log_->create_topic({t, 2, true});
  EXPECT_TRUE(again) << "create_topic is idempotent: " << again.error().to_string();

  auto c = reader({{t, 0, 0}, {t, 1, 0}}, group);
  auto c0 = c->committed({t, 0});
  auto c1 = c->committed({t, 1});
  ASSERT_TRUE(c0 && c1);
  EXPECT_EQ(*c0, std::optional<int64_t>(3));
  EXPECT_EQ(*c1, std::optional<int64_t>(1));
  auto records = read(*c, 8);
  ASSERT_EQ(records.size(), 8u);
  std::map<int32_t, std::string> values;
  for (const auto& r : records) values[r.partition] += r.value;
  EXPECT_EQ(values[0], "01234");
  EXPECT_EQ(values[1], "xyz");
}

TEST_P(EventLogContract, WakeupReturnsABlockedPoll) {
  const std::string t = make_topic("wakeup", 1);
  auto c = reader({{t, 0, 0}});
  std::atomic<bool> polling{false};
  Clock::duration took{};
  Status result;
  std::vector<Record> out;
  std::thread poller([&] {
    polling = true;
    const auto start = Clock::now();
    result = c->poll(out, 120s);
    took = Clock::now() - start;
  });
  ASSERT_TRUE(testing::wait_until([&] { return polling.load(); }));
  c->wakeup();
  poller.join();
  EXPECT_TRUE(result) << result.error().to_string();
  EXPECT_TRUE(out.empty());
  EXPECT_LT(took, 60s) << "poll ran to its time-out: wakeup() did not end it";
}

TEST_P(EventLogContract, ClearErrorsOnBadArguments) {
  const std::string t = make_topic("args", 2);
  const std::string missing = backend_->unique("never-created");

  auto empty_name = log_->create_topic({"", 1, true});
  ASSERT_FALSE(empty_name);
  EXPECT_EQ(empty_name.error().code(), LogErrc::bad_argument);

  auto no_partitions = log_->create_topic({backend_->unique("zero"), 0, true});
  ASSERT_FALSE(no_partitions);
  EXPECT_EQ(no_partitions.error().code(), LogErrc::bad_argument);

  auto mismatch = log_->create_topic({t, 3, true});
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error().code(), LogErrc::topic_mismatch);
  EXPECT_NE(mismatch.error().message().find(t), std::string::npos) << mismatch.error().message();

  auto unknown = log_->append_wait(missing, {{"k", "v", kByKey}});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), LogErrc::unknown_topic) << unknown.error().to_string();
  EXPECT_NE(unknown.error().message().find(missing), std::string::npos)
      << unknown.error().message();

  auto unnamed = log_->append_wait("", {{"k", "v", kByKey}});
  ASSERT_FALSE(unnamed);
  EXPECT_EQ(unnamed.error().code(), LogErrc::bad_argument);

  for (int32_t bad : {2, 9, -5}) {
    auto out_of_range = log_->append_wait(t, {{"k", "v", bad}});
    ASSERT_FALSE(out_of_range) << "partition " << bad;
    EXPECT_EQ(out_of_range.error().code(), LogErrc::bad_argument);
    EXPECT_NE(out_of_range.error().message().find(std::to_string(bad)), std::string::npos)
        << out_of_range.error().message();
  }

  auto end_unknown = log_->end_offset({missing, 0});
  ASSERT_FALSE(end_unknown);
  EXPECT_EQ(end_unknown.error().code(), LogErrc::unknown_topic);
  auto end_bad = log_->end_offset({t, 7});
  ASSERT_FALSE(end_bad);
  EXPECT_EQ(end_bad.error().code(), LogErrc::bad_argument);
  auto count_unknown = log_->partition_count(missing);
  ASSERT_FALSE(count_unknown);
  EXPECT_EQ(count_unknown.error().code(), LogErrc::unknown_topic);

  auto c = log_->consumer({});
  auto negative = c->assign({{t, 0, -1}});
  ASSERT_FALSE(negative);
  EXPECT_EQ(negative.error().code(), LogErrc::bad_argument);
  c.reset();

  // Over both backends' limit (LocalLog: max_record_bytes 1 MiB; Kafka: message.max.bytes).
  auto too_large = log_->append_wait(t, {{"k", std::string(3u << 20, 'x'), 0}});
  ASSERT_FALSE(too_large);
  EXPECT_EQ(too_large.error().code(), LogErrc::record_too_large) << too_large.error().to_string();

  // Nothing above was written.
  EXPECT_EQ(log_->end_offset({t, 0}).value(), 0);
  EXPECT_EQ(log_->end_offset({t, 1}).value(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Backends, EventLogContract,
    ::testing::Values(
        BackendParam{"Local", [] { return std::unique_ptr<Backend>(new LocalBackend()); }},
        BackendParam{"Kafka", [] { return std::unique_ptr<Backend>(new KafkaBackend()); }}),
    [](const ::testing::TestParamInfo<BackendParam>& info) { return info.param.name; });

}  // namespace
}  // namespace imlog
