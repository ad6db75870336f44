// The retention worker (imlog/tasks/retention.h) against a real engine on the embedded log, its
// clock a ManualClock moved by days:
//
//   - two workers share the lease: one works, the other stands by and sends nothing;
//   - the engine expires exactly what the policy allows, once: one MessagesExpired per pass that
//     had something to expire, however often the worker sent the command (a repeat is a Duplicate);
//   - the holder stopped, the other takes the lease over, reads the log from its first record and
//     expires what became old since — again once;
//   - the log keeps its invariants (dense seqs, no command twice);
//   - a full engine queue delays an expiry within its pass instead of dropping it till the next.

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <vector>
#include <thread>

#include "imlog/engine/local_log.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/transport.h"
#include "imlog/tasks/lease.h"
#include "imlog/tasks/retention.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
namespace t = imlog::testing;

#define ASSERT_OK(expr)                                                                       \
  do {                                                                                        \
    auto&& ok_ = (expr);                                                                      \
    ASSERT_TRUE(ok_.has_value()) << #expr << ": " << ok_.error().to_string();                 \
  } while (0)

constexpr const char* kGateway = "gw-retention";
constexpr uint64_t kOwner = 1000;

// A command path whose queue is full the first `full_times` sends (refused at once, as the single
// node's in-process queue refuses), then passes commands on to the real one. A fake: a real full
// queue would need an engine that stops reading.
class FullAtFirst final : public CommandTransport {
 public:
  FullAtFirst(CommandTransport& real, int full_times) : real_(real), full_left_(full_times) {}
  void send(std::string stream, std::string command, std::function<void(const Error&)> on_failure) override {
    ++attempts;
    {
      std::lock_guard lock(mu_);
      sent_at.push_back(std::chrono::steady_clock::now());
    }
    if (full_left_-- > 0) {
      return on_failure(Error(make_error_code(LogErrc::overloaded), "the engine has 1 command queued", true));
    }
    real_.send(std::move(stream), std::move(command), std::move(on_failure));
  }
  std::unique_ptr<Consumer> reader(const ConsumerOptions& o) override { return real_.reader(o); }
  Result<int32_t> partitions() override { return real_.partitions(); }
  [[nodiscard]] std::string describe() const override { return "full at first"; }
  std::atomic<int> attempts{0};
  std::vector<std::chrono::steady_clock::time_point> sent_at;  // every attempt's, under mu_
  std::mutex mu_;

 private:
  CommandTransport& real_;
  std::atomic<int> full_left_;
};

class RetentionWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig lc;
    lc.dir = dir_.str() + "/log";
    auto log = LocalLog::open(lc);
    ASSERT_OK(log);
    log_ = std::move(*log);
    ASSERT_OK(t::create_engine_topics(*log_, 2, kGateway));
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine";
    ec.instance_id = "retention-test";
    ec.checkpoint_interval = 50ms;
    auto node = t::EngineNode::start(*log_, ec, clock_);
    ASSERT_OK(node);
    node_ = std::move(*node);
    ASSERT_TRUE(node_->wait_for_partitions(2));
    auto tail = t::LogTail::open(*log_, kGateway);
    ASSERT_OK(tail);
    tail_ = std::move(*tail);
    commands_ = log_commands(*log_);
  }

  void TearDown() override {
    a_.reset();
    b_.reset();
    tail_.reset();
    commands_.reset();
    node_.reset();
    log_.reset();
  }

  // Runs the commands and waits until each is answered with an event.
  void run(std::vector<fb::CommandEnvelopeT> commands) {
    std::vector<uint64_t> ids;
    for (auto& c : commands) {
      c.reply_to->request_id = ++request_;
      ids.push_back(request_);
    }
    ASSERT_OK(t::submit(*log_, commands));
    auto done = tail_->wait_for(
        [&] {
          for (uint64_t id : ids) {
            if (!tail_->event_for_request(id)) return false;
          }
          return true;
        },
        30s);
    ASSERT_OK(done);
    ASSERT_TRUE(*done) << "the engine did not accept every command";
  }

  fb::CommandEnvelopeT send(const std::string& text) {
    return t::send_message(group_stream(1), kOwner, "m" + std::to_string(++client_), text, kGateway, 0);
  }

  // The through_seqs of the MessagesExpired events of group 1 in the log, once at least `n` are
  // read and the tail has read the log to its end.
  std::vector<uint64_t> expiries(size_t n) {
    std::vector<uint64_t> out;
    auto collect = [&] {
      out.clear();
      for (const auto& e : tail_->valid()) {
        if (e.type == fb::Event::MessagesExpired && e.stream == group_stream(1)) out.push_back(e.through_seq);
      }
      return out.size() >= n;
    };
    auto got = tail_->wait_for(collect, 20s);
    EXPECT_TRUE(got && *got) << "only " << out.size() << " expiries, wanted " << n;
    EXPECT_TRUE(tail_->read_to_end().has_value());
    collect();
    return out;
  }

  std::unique_ptr<RetentionWorker> worker() {
    RetentionConfig rc;
    rc.interval = 20ms;
    rc.lease_ttl = 300ms;
    return std::make_unique<RetentionWorker>(*log_, *commands_, rc, leases_.get(), clock_);
  }

  t::TempDir dir_{"imlog-retention-worker"};
  ManualClock clock_{1'764'720'000'000};  // 2025-12-03 00:00 UTC
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<t::EngineNode> node_;
  std::unique_ptr<t::LogTail> tail_;
  std::unique_ptr<CommandTransport> commands_;
  std::unique_ptr<LeaseStore> leases_ = make_local_leases();  // real time: clock_ jumps by days
  std::unique_ptr<RetentionWorker> a_, b_;
  uint64_t request_ = 0, client_ = 0;
};

TEST_F(RetentionWorkerTest, OneWorkerExpiresWhatThePolicyAllowsOnceAndTheOtherTakesOver) {
  std::vector<fb::CommandEnvelopeT> day0;
  day0.push_back(t::create_group(1, kOwner, {}, "g1", kGateway, 0));
  day0.push_back(send("old one"));
  day0.push_back(send("old two"));
  auto keep = t::command_envelope(group_stream(1), kOwner, "keep", kGateway, 0);
  keep.command.Set(fb::SetRetentionT{{}, 1});
  day0.push_back(std::move(keep));
  ASSERT_NO_FATAL_FAILURE(run(std::move(day0)));  // seqs 1..4 on day 0

  a_ = worker();
  ASSERT_OK(a_->start());
  ASSERT_TRUE(t::wait_until([&] { return a_->stats().caught_up.load(); }, 10s));
  b_ = worker();
  ASSERT_OK(b_->start());
  clock_.advance_ms(kDayMs);
  ASSERT_NO_FATAL_FAILURE(run({send("day one")}));  // 5, day 1: day 0 ended less than a day ago
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(a_->stats().expiries_sent.load(), 0u) << "nothing is a day old past its day yet";

  clock_.advance_ms(kDayMs + 1000);  // day 2: day 0 ended a day ago, day 1 not yet
  ASSERT_TRUE(t::wait_until([&] { return a_->stats().expired.load() == 1; }, 10s));
  std::this_thread::sleep_for(200ms);  // ten more passes
  EXPECT_EQ(expiries(1), (std::vector<uint64_t>{4})) << "day 0's rows, once; day 1's too young";
  EXPECT_GE(a_->stats().expiries_sent.load(), 1u);
  EXPECT_EQ(b_->stats().expiries_sent.load(), 0u) << "the second worker stands by";
  EXPECT_EQ(b_->stats().events.load(), 0u) << "and reads nothing";

  // The holder stops; the other takes over, reads from the start, and expires day 1 when due.
  a_->stop();
  clock_.advance_ms(kDayMs);
  ASSERT_TRUE(t::wait_until([&] { return b_->stats().expired.load() == 2; }, 20s))
      << "the standby worker took the lease, read the first expiry and made the second";
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(expiries(2), (std::vector<uint64_t>{4, 5}));
  EXPECT_TRUE(t::check_log_invariants(tail_->valid(), tail_->refusals()).empty());
  EXPECT_TRUE(tail_->problems().empty());
  for (const auto& r : tail_->refusals()) ADD_FAILURE() << "a refusal was recorded: " << r.code << " " << r.message;
}

TEST_F(RetentionWorkerTest, AFullQueueDelaysAnExpiryWithinItsPass) {
  std::vector<fb::CommandEnvelopeT> day0;
  day0.push_back(t::create_group(1, kOwner, {}, "g1", kGateway, 0));
  day0.push_back(send("old one"));
  auto keep = t::command_envelope(group_stream(1), kOwner, "keep", kGateway, 0);
  keep.command.Set(fb::SetRetentionT{{}, 1});
  day0.push_back(std::move(keep));
  ASSERT_NO_FATAL_FAILURE(run(std::move(day0)));  // seqs 1..3 on day 0
  clock_.advance_ms(2 * kDayMs + 1000);            // day 0 ended a day ago: its rows may go

  FullAtFirst full(*commands_, 3);
  RetentionConfig rc;
  rc.interval = std::chrono::hours(1);  // one pass: the first, once caught up
  RetentionWorker worker(*log_, full, rc, nullptr, clock_);
  ASSERT_OK(worker.start());
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().expired.load() == 1; }, 10s))
      << "the expiry refused three times was sent again in the same pass, not an hour later";
  EXPECT_EQ(worker.stats().scans.load(), 1u);
  EXPECT_EQ(worker.stats().expiries_sent.load(), 1u);
  EXPECT_EQ(full.attempts.load(), 4);
  EXPECT_EQ(expiries(1), (std::vector<uint64_t>{3}));
  worker.stop();
}

TEST_F(RetentionWorkerTest, APassSendsInBurstsAndLeavesTheQueueToClients) {
  constexpr uint64_t kGroups = 300;  // more than a burst (256)
  std::vector<fb::CommandEnvelopeT> day0;
  for (uint64_t g = 1; g <= kGroups; ++g) {
    const std::string stream = group_stream(g);
    day0.push_back(t::create_group(g, kOwner, {}, "g" + std::to_string(g), kGateway, 0));
    day0.push_back(t::send_message(stream, kOwner, "m" + std::to_string(g), "old", kGateway, 0));
    auto keep = t::command_envelope(stream, kOwner, "keep" + std::to_string(g), kGateway, 0);
    keep.command.Set(fb::SetRetentionT{{}, 1});
    day0.push_back(std::move(keep));
  }
  ASSERT_NO_FATAL_FAILURE(run(std::move(day0)));
  clock_.advance_ms(2 * kDayMs + 1000);

  FullAtFirst recording(*commands_, 0);
  RetentionConfig rc;
  rc.interval = std::chrono::hours(1);
  RetentionWorker worker(*log_, recording, rc, nullptr, clock_);
  ASSERT_OK(worker.start());
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().expired.load() == kGroups; }, 30s))
      << worker.stats().expired.load() << " of " << kGroups << " expired";
  EXPECT_EQ(worker.stats().scans.load(), 1u) << "all in one pass";
  std::lock_guard lock(recording.mu_);
  ASSERT_EQ(recording.sent_at.size(), kGroups);
  EXPECT_GE(recording.sent_at[256] - recording.sent_at[255], 90ms) << "the next waits for the pause";
  worker.stop();
}

}  // namespace
}  // namespace imlog
