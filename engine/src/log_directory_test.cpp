// LogDirectory's follow loop on a log whose polls fail: a retryable error is retried with back-off
// (no spinning, no log line per poll) and the directory recovers; one it cannot retry — a corrupt
// record — fails its worker, named for /readyz, instead of being retried for ever. And its snapshot:
// a restart reads only what came after it, and a snapshot it cannot trust is read past, not used.

#include "imlog/engine/log_directory.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>

#include "imlog/core/worker.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/event_log_builder.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;

// A log whose consumers' polls fail with `error` while it is set.
class FailingPolls final : public EventLog {
 public:
  explicit FailingPolls(EventLog& inner) : inner_(inner) {}

  void fail_with(std::optional<Error> e) {
    std::lock_guard lock(mu_);
    error_ = std::move(e);
  }
  [[nodiscard]] uint64_t failed_polls() const { return failed_polls_.load(); }

  Status create_topic(const TopicSpec& spec) override { return inner_.create_topic(spec); }
  Result<int32_t> partition_count(std::string_view topic) override { return inner_.partition_count(topic); }
  void append(std::string_view topic, std::vector<OutRecord> records, AppendCallback done) override {
    inner_.append(topic, std::move(records), std::move(done));
  }
  Result<int64_t> end_offset(const TopicPartition& p) override { return inner_.end_offset(p); }
  Result<int64_t> begin_offset(const TopicPartition& p) override { return inner_.begin_offset(p); }
  std::unique_ptr<Consumer> consumer(const ConsumerOptions& o) override {
    return std::make_unique<FailingConsumer>(*this, inner_.consumer(o));
  }
  Status flush(std::chrono::milliseconds timeout) override { return inner_.flush(timeout); }
  [[nodiscard]] std::string describe() const override { return "failing polls over " + inner_.describe(); }

 private:
  class FailingConsumer final : public Consumer {
   public:
    FailingConsumer(FailingPolls& log, std::unique_ptr<Consumer> inner) : log_(log), inner_(std::move(inner)) {}
    Status poll(std::vector<Record>& out, std::chrono::milliseconds timeout) override {
      {
        std::lock_guard lock(log_.mu_);
        if (log_.error_) {
          out.clear();
          log_.failed_polls_++;
          return tl::unexpected(*log_.error_);
        }
      }
      return inner_->poll(out, timeout);
    }
    Status assign(const std::vector<TopicPartitionOffset>& p) override { return inner_->assign(p); }
    Status seek(const TopicPartitionOffset& p) override { return inner_->seek(p); }
    Status commit(const std::vector<TopicPartitionOffset>& o) override { return inner_->commit(o); }
    Result<std::optional<int64_t>> committed(const TopicPartition& p) override { return inner_->committed(p); }
    [[nodiscard]] std::vector<TopicPartition> assignment() const override { return inner_->assignment(); }
    void wakeup() override { inner_->wakeup(); }
    void close() override { inner_->close(); }

   private:
    FailingPolls& log_;
    std::unique_ptr<Consumer> inner_;
  };

  EventLog& inner_;
  std::mutex mu_;
  std::optional<Error> error_;
  std::atomic<uint64_t> failed_polls_{0};
};

std::optional<WorkerReport> directory_worker() {
  for (auto& r : worker_reports()) {
    if (r.name == "directory") return r;
  }
  return std::nullopt;
}

// A LocalLog in `dir`; null (and the test failed) when it cannot be opened.
std::unique_ptr<LocalLog> open_log(const std::string& dir) {
  LocalLogConfig c;
  c.dir = dir;
  auto l = LocalLog::open(c);
  EXPECT_TRUE(l) << l.error().to_string();
  return l ? std::move(*l) : nullptr;
}

class LogDirectoryFollow : public ::testing::Test {
 protected:
  void SetUp() override {
    log_ = open_log(dir_.str() + "/log");
    ASSERT_TRUE(log_);
    ASSERT_TRUE(log_->create_topic(TopicSpec{std::string(kEventsTopic), 2}));
    failing_ = std::make_unique<FailingPolls>(*log_);
    directory_ = std::make_unique<LogDirectory>(*failing_);
    ASSERT_TRUE(directory_->start());
  }

  testing::TempDir dir_{"imlog-log-directory-test"};
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<FailingPolls> failing_;
  std::unique_ptr<LogDirectory> directory_;
};

TEST_F(LogDirectoryFollow, RetryablePollErrorsBackOffThenItRecovers) {
  failing_->fail_with(Error(make_error_code(LogErrc::unavailable), "the broker is away", true));
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(testing::wait_until([] { return directory_worker() && directory_worker()->stats.retries >= 4; }));
  // Back-off 50 + 100 + 200 ms at least before the fourth retry; a spinning loop polls thousands
  // of times in that while.
  EXPECT_GE(std::chrono::steady_clock::now() - started, 350ms);
  EXPECT_LE(failing_->failed_polls(), directory_worker()->stats.retries + 1);
  EXPECT_NE(directory_worker()->stats.last_error.find("the broker is away"), std::string::npos);

  failing_->fail_with(std::nullopt);
  uint64_t before = directory_worker()->stats.iterations;
  EXPECT_TRUE(testing::wait_until([&] { return directory_worker()->stats.iterations > before + 1; }));
  EXPECT_EQ(directory_worker()->state, WorkerState::running);
  EXPECT_EQ(failed_workers().find("directory"), std::string::npos);
}

TEST_F(LogDirectoryFollow, ACorruptRecordFailsTheDirectoryOnceAndNamesIt) {
  failing_->fail_with(Error(make_error_code(LogErrc::corrupt_record), "corrupt record in im.events[1]@7", false));
  ASSERT_TRUE(testing::wait_until([] { return directory_worker()->state == WorkerState::failed; }));
  EXPECT_EQ(failing_->failed_polls(), 1u) << "a record that cannot be read is not read again and again";
  auto failed = failed_workers();
  EXPECT_NE(failed.find("directory: "), std::string::npos) << failed;
  EXPECT_NE(failed.find("corrupt record in im.events[1]@7"), std::string::npos) << failed;
  directory_->stop();  // prompt, and the failure stays
  EXPECT_EQ(directory_worker()->state, WorkerState::failed);
}

// ---- the snapshot ------------------------------------------------------------------------------

uint64_t records_in(EventLog& log, int32_t partitions) {
  uint64_t n = 0;
  for (int32_t p = 0; p < partitions; ++p) {
    n += static_cast<uint64_t>(*log.end_offset(TopicPartition{std::string(kEventsTopic), p}));
  }
  return n;
}

class LogDirectorySnapshot : public ::testing::Test {
 protected:
  void SetUp() override {
    log_ = open_log(dir_.str() + "/log");
    ASSERT_TRUE(log_);
    auto b = testing::EventLogBuilder::open(*log_, 2);
    ASSERT_TRUE(b) << b.error().to_string();
    builder_ = std::move(*b);
    for (int i = 0; i < 20; ++i) users_.push_back(builder_->register_user("user" + std::to_string(i)));
    fb::SettingsUpdatedT s;
    s.message_policy = fb::MessagePolicy::FriendsOnly;
    s.allow_search = false;
    builder_->settings(users_[3], s);
    ASSERT_TRUE(builder_->flush());
  }

  std::unique_ptr<LogDirectory> started() {
    auto d = std::make_unique<LogDirectory>(*log_, LogDirectoryOptions{snapshot_});
    auto s = d->start();
    EXPECT_TRUE(s) << s.error().to_string();
    return d;
  }

  uint64_t records_in_log() { return records_in(*log_, 2); }

  void expect_knows_everyone(const LogDirectory& d) {
    for (uint64_t u : users_) EXPECT_TRUE(d.user(u).exists) << u;
    EXPECT_EQ(d.user(users_[3]).message_policy, fb::MessagePolicy::FriendsOnly);
    EXPECT_FALSE(d.user(users_[3]).allow_search);
    EXPECT_EQ(d.user(users_[4]).message_policy, fb::MessagePolicy::Everyone);
    EXPECT_FALSE(d.user(123456789).exists);
  }

  testing::TempDir dir_{"imlog-log-directory-snapshot-test"};
  std::string snapshot_ = dir_.str() + "/directory.snapshot";
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<testing::EventLogBuilder> builder_;
  std::vector<uint64_t> users_;
};

TEST_F(LogDirectorySnapshot, ARestartReadsOnlyWhatCameAfterTheSnapshot) {
  auto first = started();
  EXPECT_EQ(first->read_at_start(), records_in_log());
  first->stop();
  ASSERT_TRUE(std::filesystem::exists(snapshot_));

  auto again = started();
  EXPECT_EQ(again->read_at_start(), 0u) << "everything was in the snapshot";
  expect_knows_everyone(*again);
  again->stop();

  users_.push_back(builder_->register_user("late"));
  ASSERT_TRUE(builder_->flush());
  auto third = started();
  EXPECT_EQ(third->read_at_start(), 1u) << "only the registration after the snapshot";
  expect_knows_everyone(*third);
}

TEST_F(LogDirectorySnapshot, AFollowingDirectoryWritesItsSnapshotWhileRunning) {
  auto d = std::make_unique<LogDirectory>(*log_, LogDirectoryOptions{snapshot_, std::chrono::milliseconds(10)});
  ASSERT_TRUE(d->start());
  users_.push_back(builder_->register_user("while-running"));
  ASSERT_TRUE(builder_->flush());
  ASSERT_TRUE(testing::wait_until([&] { return d->user(users_.back()).exists; }));
  // A later poll writes it (no stop(): a SIGKILL gives no chance to write one at the end).
  auto written = [&] {
    LogDirectory probe(*log_, LogDirectoryOptions{snapshot_});
    return probe.start() && probe.read_at_start() == 0 && probe.user(users_.back()).exists;
  };
  EXPECT_TRUE(testing::wait_until(written));
}

TEST_F(LogDirectorySnapshot, ADamagedSnapshotIsReadPastNotTrusted) {
  started()->stop();
  {
    std::fstream f(snapshot_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');  // one byte of a user entry or offset: the checksum no longer matches
  }
  auto d = started();
  EXPECT_EQ(d->read_at_start(), records_in_log()) << "read from offset 0";
  expect_knows_everyone(*d);
}

// Another log in this test's directory, with `partitions` partitions and `users` registered.
struct OtherLog {
  std::unique_ptr<LocalLog> log;
  std::vector<uint64_t> users;
};
OtherLog other_log(const std::string& dir, int32_t partitions, int users) {
  OtherLog o;
  o.log = open_log(dir);
  if (!o.log) return o;
  auto b = testing::EventLogBuilder::open(*o.log, partitions);
  EXPECT_TRUE(b);
  if (!b) return o;
  for (int i = 0; i < users; ++i) o.users.push_back((*b)->register_user("other" + std::to_string(i)));
  EXPECT_TRUE((*b)->flush());
  return o;
}

TEST_F(LogDirectorySnapshot, ASnapshotAheadOfTheLogIsAnotherLogsAndIsNotUsed) {
  started()->stop();
  // The same data dir's engine state beside a fresh, shorter log (the log was replaced).
  auto other = other_log(dir_.str() + "/other-log", 2, 1);
  ASSERT_TRUE(other.log);
  uint64_t only = other.users.at(0);
  LogDirectory d(*other.log, LogDirectoryOptions{snapshot_});
  ASSERT_TRUE(d.start());
  EXPECT_TRUE(d.user(only).exists);
  EXPECT_EQ(d.size(), 1u) << "nothing of the first log's users (ids are per log: one may recur)";
}

TEST_F(LogDirectorySnapshot, ASnapshotOfAnotherPartitionCountIsNotUsed) {
  started()->stop();
  auto other = other_log(dir_.str() + "/four", 4, 30);
  ASSERT_TRUE(other.log);
  LogDirectory d(*other.log, LogDirectoryOptions{snapshot_});
  ASSERT_TRUE(d.start());
  EXPECT_EQ(d.size(), 30u) << "the other log's users alone, none of the first log's";
  EXPECT_EQ(d.read_at_start(), records_in(*other.log, 4)) << "read from offset 0";
  for (uint64_t u : other.users) EXPECT_TRUE(d.user(u).exists) << u;
}

}  // namespace
}  // namespace imlog
