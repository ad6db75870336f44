// KafkaLog under broker faults, against librdkafka's mock cluster over TCP (imlog-kafka-mock).
//
// Each test starts a mock of its own (KafkaMock::start_private): a broker taken down or errors
// injected into Produce requests would hit every other test sharing a mock, and scripts/test
// runs test binaries in parallel.
//
// The property checked after every fault: each acknowledged record is in the log exactly once,
// at the position its acknowledgement named, and acknowledged records of a partition appear in
// the order they were appended; no record, acknowledged or not, is stored twice.
//
// What the mock cannot show: that idempotence removes the duplicate of a retried produce whose
// first attempt was stored but whose answer was lost. Tried with `produce-delay` past
// socket.timeout.ms: the 2.0.2 mock stores such a retry twice even from an idempotent producer
// (librdkafka's mock source checks producer sequence numbers only for transactional producers). The faults
// below do not lose answers to stored requests, so they pass with idempotence off as well; they check that
// KafkaLog itself loses, duplicates and reorders nothing through them.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "imlog/engine/kafka_log.h"
#include "imlog/testing/kafka_mock.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::KafkaMock;
using testing::wait_until;

// Kafka protocol error codes used for injection.
constexpr int kNotLeaderForPartition = 6;
constexpr int kRequestTimedOut = 7;
constexpr int kNotEnoughReplicas = 19;
constexpr int kTopicAuthorizationFailed = 29;
constexpr int kInvalidRecord = 87;

// Appends batches of records to a topic from a thread of its own, keeping at most `max_pending`
// batches unacknowledged, until stopped. Every value is unique ("b<batch>-r<record>"), so the
// log can be checked against what was acknowledged.
class AppendStream {
 public:
  struct Batch {
    std::vector<OutRecord> records;
    std::optional<Result<std::vector<RecordPosition>>> outcome;
  };

  AppendStream(EventLog& log, std::string topic, std::vector<int32_t> partitions,
               size_t records_per_batch = 10, size_t max_pending = 8)
      : log_(log),
        topic_(std::move(topic)),
        partitions_(std::move(partitions)),
        per_batch_(records_per_batch),
        max_pending_(max_pending) {
    thread_ = std::thread([this] { run(); });
  }

  ~AppendStream() { stop(); }

  // Stops appending and waits for every outstanding acknowledgement (or `timeout`).
  bool stop(std::chrono::milliseconds timeout = 90s) {
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return outstanding_ == 0; });
  }

  size_t acked() {
    std::lock_guard lk(mu_);
    return acked_;
  }
  size_t issued() {
    std::lock_guard lk(mu_);
    return batches_.size();
  }
  size_t outstanding() {
    std::lock_guard lk(mu_);
    return outstanding_;
  }
  // Batches issued from index `first` on that have been acknowledged.
  size_t acked_from(size_t first) {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (size_t i = first; i < batches_.size(); ++i) n += batches_[i].outcome && *batches_[i].outcome;
    return n;
  }
  // Waits until `acked()` reaches `n`.
  bool wait_acked(size_t n, std::chrono::milliseconds deadline) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, deadline, [&] { return acked_ >= n; });
  }
  // Waits until `max_pending` batches are unacknowledged: appends are stalled.
  bool wait_stalled(std::chrono::milliseconds deadline) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, deadline, [&] { return outstanding_ >= max_pending_; });
  }

  // After stop(): the batches, in the order they were appended.
  const std::deque<Batch>& batches() const { return batches_; }

 private:
  void run() {
    std::unique_lock lk(mu_);
    for (size_t b = 0;; ++b) {
      cv_.wait(lk, [&] { return stopping_ || outstanding_ < max_pending_; });
      if (stopping_) return;
      Batch batch;
      for (size_t r = 0; r < per_batch_; ++r) {
        OutRecord rec;
        rec.key = "k" + std::to_string(r);
        rec.value = "b" + std::to_string(b) + "-r" + std::to_string(r);
        rec.partition = partitions_[(b * per_batch_ + r) % partitions_.size()];
        batch.records.push_back(std::move(rec));
      }
      std::vector<OutRecord> copy = batch.records;
      batches_.push_back(std::move(batch));
      ++outstanding_;
      lk.unlock();
      cv_.notify_all();  // wait_stalled() waits for outstanding_ to grow
      log_.append(topic_, std::move(copy), [this, b](Result<std::vector<RecordPosition>> r) {
        // Notified under the lock: once stop() sees outstanding_ reach 0 this stream may be gone.
        std::lock_guard g(mu_);
        if (r) ++acked_;
        batches_[b].outcome = std::move(r);
        --outstanding_;
        cv_.notify_all();
      });
      lk.lock();
    }
  }

  EventLog& log_;
  const std::string topic_;
  const std::vector<int32_t> partitions_;
  const size_t per_batch_;
  const size_t max_pending_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> batches_;  // guarded by mu_ (a deque: elements stay put while it grows)
  size_t outstanding_ = 0;     // guarded by mu_
  size_t acked_ = 0;           // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  std::thread thread_;
};

// Every record of the partitions, read from offset 0 to their current ends.
std::map<int32_t, std::vector<Record>> read_partitions(EventLog& log, const std::string& topic,
                                                       int32_t partitions) {
  std::map<int32_t, std::vector<Record>> out;
  std::vector<TopicPartitionOffset> from;
  size_t expected = 0;
  for (int32_t p = 0; p < partitions; ++p) {
    auto begin = log.begin_offset({topic, p});
    auto end = log.end_offset({topic, p});
    EXPECT_TRUE(begin && end) << "offsets of " << topic << "[" << p << "]";
    if (!begin || !end) return out;
    EXPECT_EQ(*begin, 0) << "retention dropped records of " << topic << "[" << p << "]";
    expected += static_cast<size_t>(*end);
    from.push_back({topic, p, 0});
    out[p];
  }
  auto consumer = log.consumer({});
  auto assigned = consumer->assign(from);
  EXPECT_TRUE(assigned) << assigned.error().to_string();
  size_t got = 0;
  std::vector<Record> batch;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (got < expected && std::chrono::steady_clock::now() < deadline) {
    auto s = consumer->poll(batch, 200ms);
    EXPECT_TRUE(s) << s.error().to_string();
    if (!s) break;
    for (auto& r : batch) out[r.partition].push_back(std::move(r));
    got += batch.size();
  }
  EXPECT_EQ(got, expected) << "records read back from " << topic;
  return out;
}

// The property of the file comment, for the batches of `stream` (stopped).
void expect_exactly_once_in_order(EventLog& log, const std::string& topic, int32_t partitions,
                                  const AppendStream& stream) {
  auto stored = read_partitions(log, topic, partitions);
  // Every stored value once.
  std::set<std::string> seen;
  for (const auto& [p, records] : stored) {
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(records[i].offset, static_cast<int64_t>(i)) << "offsets of partition " << p;
      EXPECT_TRUE(seen.insert(records[i].value).second)
          << "value " << records[i].value << " stored twice (again at " << p << "@" << records[i].offset
          << ")";
    }
  }
  // Every acknowledged record where its acknowledgement says, and in append order.
  std::map<int32_t, int64_t> last_offset;
  size_t acked_records = 0;
  for (const auto& batch : stream.batches()) {
    ASSERT_TRUE(batch.outcome.has_value()) << "a batch was never acknowledged nor failed";
    if (!*batch.outcome) continue;
    const auto& positions = **batch.outcome;
    ASSERT_EQ(positions.size(), batch.records.size());
    for (size_t i = 0; i < positions.size(); ++i) {
      const auto& pos = positions[i];
      EXPECT_EQ(pos.partition, batch.records[i].partition);
      const auto& part = stored[pos.partition];
      ASSERT_LT(pos.offset, static_cast<int64_t>(part.size()))
          << batch.records[i].value << " acknowledged at " << pos.partition << "@" << pos.offset
          << " but the partition ends at " << part.size();
      EXPECT_EQ(part[static_cast<size_t>(pos.offset)].value, batch.records[i].value)
          << "at " << pos.partition << "@" << pos.offset;
      auto [it, first] = last_offset.try_emplace(pos.partition, pos.offset);
      if (!first) {
        EXPECT_GT(pos.offset, it->second) << batch.records[i].value << " out of order";
        it->second = pos.offset;
      }
      ++acked_records;
    }
  }
  EXPECT_GT(acked_records, 0u);
}

size_t failed_batches(const AppendStream& stream) {
  size_t n = 0;
  for (const auto& b : stream.batches()) n += b.outcome && !*b.outcome;
  return n;
}

std::string first_failure(const AppendStream& stream) {
  for (const auto& b : stream.batches()) {
    if (b.outcome && !*b.outcome) return b.outcome->error().to_string();
  }
  return "none";
}

class KafkaFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mock_ = KafkaMock::start_private();
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '.');  // parameterised names: "Test/Param"
    topic_ = KafkaMock::unique_name(name);
  }

  std::unique_ptr<KafkaLog> open_log() {
    auto log = KafkaLog::open(mock_->log_config());
    EXPECT_TRUE(log) << log.error().to_string();
    return log ? std::move(*log) : nullptr;
  }

  size_t error_stack(int broker) {
    return std::stoul(mock_->command("error-stack " + std::to_string(broker)));
  }

  std::unique_ptr<KafkaMock> mock_;
  std::string topic_;
};

// The partition leader's broker goes down while appends stream in, and comes back: appends stall
// (the mock never fails over by itself), then every one of them completes, exactly once.
TEST_F(KafkaFaultTest, LeaderBrokerDownThenUpLosesAndDuplicatesNothing) {
  mock_->create_topic(topic_, 1);
  mock_->command("leader " + topic_ + " 0 1");
  auto log = open_log();
  ASSERT_TRUE(log);
  AppendStream stream(*log, topic_, {0});
  ASSERT_TRUE(stream.wait_acked(20, 30s)) << "acked " << stream.acked();

  mock_->broker_down(1);
  size_t first_after_down = stream.issued();
  ASSERT_TRUE(stream.wait_stalled(30s)) << "appends kept completing with the leader down";
  EXPECT_EQ(stream.acked_from(first_after_down), 0u)
      << "batches appended after the leader went down were acknowledged";

  size_t acked_at_up = stream.acked();
  mock_->broker_up(1);
  ASSERT_TRUE(stream.wait_acked(acked_at_up + 20, 60s)) << "acked " << stream.acked();
  ASSERT_TRUE(stream.stop());

  EXPECT_EQ(failed_batches(stream), 0u) << first_failure(stream);
  expect_exactly_once_in_order(*log, topic_, 1, stream);
}

// The leader's broker goes down and leadership moves to another broker: the producer follows the
// new leader and the log stays exactly once, in order, on both partitions.
TEST_F(KafkaFaultTest, LeadershipMovesOffADownBroker) {
  mock_->create_topic(topic_, 2);
  mock_->command("leader " + topic_ + " 0 1");
  mock_->command("leader " + topic_ + " 1 2");
  auto log = open_log();
  ASSERT_TRUE(log);
  AppendStream stream(*log, topic_, {0, 1});
  ASSERT_TRUE(stream.wait_acked(20, 30s)) << "acked " << stream.acked();

  mock_->broker_down(1);
  ASSERT_TRUE(stream.wait_stalled(30s)) << "appends kept completing with a leader down";
  size_t acked_at_move = stream.acked();
  mock_->command("leader " + topic_ + " 0 3");
  ASSERT_TRUE(stream.wait_acked(acked_at_move + 20, 60s)) << "acked " << stream.acked();
  ASSERT_TRUE(stream.stop());
  mock_->broker_up(1);

  EXPECT_EQ(failed_batches(stream), 0u) << first_failure(stream);
  expect_exactly_once_in_order(*log, topic_, 2, stream);
}

// Retriable errors injected into Produce requests: the idempotent producer retries through them.
class RetriableProduceErrorTest : public KafkaFaultTest, public ::testing::WithParamInterface<int> {};

TEST_P(RetriableProduceErrorTest, IdempotentProducerRidesThrough) {
  mock_->create_topic(topic_, 1);
  mock_->command("leader " + topic_ + " 0 1");
  auto log = open_log();
  ASSERT_TRUE(log);
  // A first append, so the producer has its id and connection before the faults.
  auto warm = log->append_wait(topic_, {{"k", "warm-up"}});
  ASSERT_TRUE(warm) << warm.error().to_string();

  mock_->command("produce-errors 5 " + std::to_string(GetParam()) + " 1");
  AppendStream stream(*log, topic_, {0});
  ASSERT_TRUE(stream.wait_acked(30, 60s)) << "acked " << stream.acked();
  ASSERT_TRUE(stream.stop());

  EXPECT_EQ(error_stack(1), 0u) << "the injected errors were not all served to the producer";
  EXPECT_EQ(failed_batches(stream), 0u) << first_failure(stream);
  expect_exactly_once_in_order(*log, topic_, 1, stream);
}

INSTANTIATE_TEST_SUITE_P(Codes, RetriableProduceErrorTest,
                         ::testing::Values(kNotLeaderForPartition, kRequestTimedOut, kNotEnoughReplicas),
                         [](const auto& info) {
                           switch (info.param) {
                             case kNotLeaderForPartition:
                               return std::string("NotLeader");
                             case kRequestTimedOut:
                               return std::string("RequestTimedOut");
                             default:
                               return std::string("NotEnoughReplicas");
                           }
                         });

// A non-retriable error injected into a Produce request fails that append, as not retryable.
struct PermanentError {
  int code;
  LogErrc expected;
  // Whether the next append succeeds. librdkafka marks a topic whose produce was refused for
  // authorization as failed until its next metadata refresh, so that one does not.
  bool next_append_succeeds;
};

void PrintTo(const PermanentError& e, std::ostream* os) { *os << "code " << e.code; }

class PermanentProduceErrorTest : public KafkaFaultTest,
                                  public ::testing::WithParamInterface<PermanentError> {};

TEST_P(PermanentProduceErrorTest, FailsTheAppendNotRetryable) {
  const PermanentError& param = GetParam();
  mock_->create_topic(topic_, 1);
  mock_->command("leader " + topic_ + " 0 1");
  auto log = open_log();
  ASSERT_TRUE(log);
  auto warm = log->append_wait(topic_, {{"k", "warm-up"}});
  ASSERT_TRUE(warm) << warm.error().to_string();

  mock_->command("produce-errors 1 " + std::to_string(param.code) + " 1");
  auto failed = log->append_wait(topic_, {{"k", "refused"}});
  ASSERT_FALSE(failed) << "an append through an injected error " << param.code << " succeeded";
  EXPECT_EQ(failed.error().code(), make_error_code(param.expected)) << failed.error().to_string();
  EXPECT_FALSE(failed.error().retryable()) << failed.error().to_string();
  EXPECT_EQ(error_stack(1), 0u);

  std::optional<int64_t> after_offset;
  if (param.next_append_succeeds) {
    auto after = log->append_wait(topic_, {{"k", "after"}});
    ASSERT_TRUE(after) << after.error().to_string();
    after_offset = (*after)[0].offset;
  }
  auto stored = read_partitions(*log, topic_, 1);
  ASSERT_FALSE(stored[0].empty());
  EXPECT_EQ(stored[0].front().value, "warm-up");
  for (const auto& r : stored[0]) EXPECT_NE(r.value, "refused") << "at offset " << r.offset;
  if (after_offset) {
    EXPECT_EQ(stored[0].back().value, "after");
    EXPECT_EQ(stored[0].back().offset, *after_offset);
  }
}

INSTANTIATE_TEST_SUITE_P(Codes, PermanentProduceErrorTest,
                         ::testing::Values(PermanentError{kInvalidRecord, LogErrc::io_error, true},
                                           PermanentError{kTopicAuthorizationFailed, LogErrc::io_error,
                                                          false}),
                         [](const auto& info) {
                           return info.param.code == kInvalidRecord ? std::string("InvalidRecord")
                                                                    : std::string("TopicAuthorizationFailed");
                         });

// Back-pressure: with the leader down nothing drains, so an append that overfills the queue
// blocks for append_block_timeout and then fails with queue_full (retryable); flush() gives up
// with timed_out. Once the broker is back, everything queued completes.
TEST_F(KafkaFaultTest, FullQueueBlocksThenFailsRetryableAndFlushTimesOut) {
  mock_->create_topic(topic_, 1);
  mock_->command("leader " + topic_ + " 0 1");
  auto config = mock_->log_config();
  config.max_pending_bytes = 4096;
  config.append_block_timeout = 300ms;
  auto opened = KafkaLog::open(config);
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& log = **opened;
  auto warm = log.append_wait(topic_, {{"k", "warm-up"}});
  ASSERT_TRUE(warm) << warm.error().to_string();

  mock_->broker_down(1);
  std::vector<OutRecord> big(100, OutRecord{"k", std::string(100, 'v'), 0});
  std::promise<Result<std::vector<RecordPosition>>> outcome;
  auto done = outcome.get_future();
  auto started = std::chrono::steady_clock::now();
  log.append(topic_, std::move(big),
             [&](Result<std::vector<RecordPosition>> r) { outcome.set_value(std::move(r)); });
  EXPECT_GE(std::chrono::steady_clock::now() - started, 300ms) << "append() did not block";

  auto flushed = log.flush(200ms);
  ASSERT_FALSE(flushed) << "flush() succeeded with the leader down";
  EXPECT_EQ(flushed.error().code(), make_error_code(LogErrc::timed_out)) << flushed.error().to_string();
  EXPECT_TRUE(flushed.error().retryable());

  mock_->broker_up(1);
  ASSERT_EQ(done.wait_for(60s), std::future_status::ready) << "the overfull append never completed";
  auto r = done.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), make_error_code(LogErrc::queue_full)) << r.error().to_string();
  EXPECT_TRUE(r.error().retryable());
  auto flushed_again = log.flush(60s);
  EXPECT_TRUE(flushed_again) << flushed_again.error().to_string();
  auto after = log.append_wait(topic_, {{"k", "after"}});
  EXPECT_TRUE(after) << after.error().to_string();
}

// A record over the producer's message.max.bytes is refused before it is sent.
TEST_F(KafkaFaultTest, OversizedRecordFailsAsRecordTooLarge) {
  mock_->create_topic(topic_, 1);
  auto log = open_log();
  ASSERT_TRUE(log);
  auto r = log->append_wait(topic_, {{"k", "small"}, {"k", std::string(2 << 20, 'x')}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), make_error_code(LogErrc::record_too_large)) << r.error().to_string();
  EXPECT_FALSE(r.error().retryable());
}

// Not a fault, but a trap of the mock: any metadata request naming a missing topic creates it
// (4 partitions). A member subscribing to a missing topic gets unknown_topic and creates nothing.
TEST_F(KafkaFaultTest, SubscribingToAMissingTopicFailsAndCreatesNothing) {
  auto log = open_log();
  ASSERT_TRUE(log);
  ConsumerOptions options;
  options.group = KafkaMock::unique_name("g");
  options.topics = {topic_};
  auto member = log->consumer(options);
  std::vector<Record> out;
  auto polled = member->poll(out, 100ms);
  ASSERT_FALSE(polled);
  EXPECT_EQ(polled.error().code(), make_error_code(LogErrc::unknown_topic)) << polled.error().to_string();
  member.reset();

  auto count = log->partition_count(topic_);
  ASSERT_FALSE(count) << topic_ << " was created with " << *count << " partitions";
  EXPECT_EQ(count.error().code(), make_error_code(LogErrc::unknown_topic));
  EXPECT_NO_THROW(mock_->create_topic(topic_, 2));  // still free to create as asked
  EXPECT_EQ(log->partition_count(topic_).value_or(-1), 2);
}

// --- checks that need no broker --------------------------------------------------------------

TEST(KafkaErrorMapping, CodesMapToLogErrcAndRetryability) {
  struct Case {
    int code;
    LogErrc errc;
    bool retryable;
  };
  // librdkafka's local errors are negative (rdkafka.h); broker errors are Kafka protocol codes.
  const Case cases[] = {
      {-192, LogErrc::timed_out, true},             // _MSG_TIMED_OUT
      {-185, LogErrc::timed_out, true},             // _TIMED_OUT
      {7, LogErrc::timed_out, true},                // REQUEST_TIMED_OUT
      {-195, LogErrc::unavailable, true},           // _TRANSPORT
      {-187, LogErrc::unavailable, true},           // _ALL_BROKERS_DOWN
      {6, LogErrc::unavailable, true},              // NOT_LEADER_FOR_PARTITION
      {5, LogErrc::unavailable, true},              // LEADER_NOT_AVAILABLE
      {19, LogErrc::unavailable, true},             // NOT_ENOUGH_REPLICAS
      {-184, LogErrc::queue_full, true},            // _QUEUE_FULL
      {10, LogErrc::record_too_large, false},       // MSG_SIZE_TOO_LARGE
      {18, LogErrc::record_too_large, false},       // RECORD_LIST_TOO_LARGE
      {3, LogErrc::unknown_topic, false},           // UNKNOWN_TOPIC_OR_PART
      {-188, LogErrc::unknown_topic, false},        // _UNKNOWN_TOPIC
      {-190, LogErrc::bad_argument, false},         // _UNKNOWN_PARTITION
      {1, LogErrc::offset_out_of_range, false},     // OFFSET_OUT_OF_RANGE
      {-140, LogErrc::offset_out_of_range, false},  // _AUTO_OFFSET_RESET
      {27, LogErrc::rebalance_in_progress, true},   // REBALANCE_IN_PROGRESS
      {22, LogErrc::rebalance_in_progress, true},   // ILLEGAL_GENERATION
      {29, LogErrc::io_error, false},               // TOPIC_AUTHORIZATION_FAILED
      {31, LogErrc::io_error, false},               // CLUSTER_AUTHORIZATION_FAILED
      {87, LogErrc::io_error, false},               // INVALID_RECORD
      {-150, LogErrc::io_error, false},             // _FATAL
      {-152, LogErrc::closed, false},               // _PURGE_QUEUE
      {-197, LogErrc::closed, false},               // _DESTROY
      {-199, LogErrc::corrupt_record, false},       // _BAD_MSG
      {36, LogErrc::topic_mismatch, false},         // TOPIC_ALREADY_EXISTS
  };
  for (const auto& c : cases) {
    Error e = KafkaLog::error_from_code(c.code, "appending to t");
    EXPECT_EQ(e.code(), make_error_code(c.errc)) << c.code << ": " << e.to_string();
    EXPECT_EQ(e.retryable(), c.retryable) << c.code << ": " << e.to_string();
    EXPECT_TRUE(e.message().starts_with("appending to t: ")) << e.message();
  }
  // The message names librdkafka's code, so logs can be searched for it.
  EXPECT_NE(KafkaLog::error_from_code(6, "x").message().find("NOT_LEADER_FOR_PARTITION"), std::string::npos);
}

TEST(KafkaLogOpen, RejectsAnEmptyBrokerList) {
  KafkaLogConfig c;
  auto log = KafkaLog::open(c);
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code(), make_error_code(LogErrc::bad_argument));
  EXPECT_NE(log.error().message().find("brokers"), std::string::npos) << log.error().message();
}

TEST(KafkaLogOpen, RejectsABadPropertyNamingIt) {
  KafkaLogConfig c;
  c.brokers = {"127.0.0.1:9"};
  c.properties["no.such.property"] = "1";
  auto log = KafkaLog::open(c);
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code(), make_error_code(LogErrc::bad_argument));
  EXPECT_NE(log.error().message().find("no.such.property"), std::string::npos) << log.error().message();

  c.properties = {{"compression.type", "no-such-codec"}};
  log = KafkaLog::open(c);
  ASSERT_FALSE(log);
  EXPECT_NE(log.error().message().find("compression.type"), std::string::npos) << log.error().message();
}

}  // namespace
}  // namespace imlog
