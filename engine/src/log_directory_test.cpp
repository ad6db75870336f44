// LogDirectory's follow loop on a log whose polls fail: a retryable error is retried with back-off
// (no spinning, no log line per poll) and the directory recovers; one it cannot retry — a corrupt
// record — fails its worker, named for /readyz, instead of being retried for ever.

#include "imlog/engine/log_directory.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <optional>

#include "imlog/core/worker.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
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

class LogDirectoryFollow : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig c;
    c.dir = dir_.str() + "/log";
    auto l = LocalLog::open(c);
    ASSERT_TRUE(l) << l.error().to_string();
    log_ = std::move(*l);
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

}  // namespace
}  // namespace imlog
