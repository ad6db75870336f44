// A rebuild of the engine's state from the log — a first start on a long log, a lost state store —
// writes what it has applied as it goes (each write bounded, a checkpoint with it), says it is not
// ready until it is done, and resumes from its last write when it stops part-way.
//
// The log: a registration and 12,000 messages to `world`, each with a client_msg_id, through a
// real sequencer. Then the state store is deleted and sequencers rebuild it through a store that
// records each write (and may fail one, as a crash would end the rebuild there); a retry of an
// early and of a late message must still be answered as the duplicates they are.

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "imlog/core/logging.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/log_directory.h"
#include "imlog/engine/sequencer.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/transport.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/support.h"
#include "state_store.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::LogTail;

constexpr const char* kGateway = "gw-catch-up";
constexpr uint64_t kMessages = 12'000;

std::string cmid(uint64_t i) { return "m-" + std::to_string(i); }

// One write() as the store saw it, with what the sequencer's not_ready() said at that moment.
struct SeenWrite {
  size_t dedupe = 0;
  std::vector<std::pair<int32_t, int64_t>> checkpoints;  // partition → next event offset
  std::string not_ready;
};

// A real store whose writes are recorded; the n-th write (1-based, 0: none) fails instead.
class RecordingStore final : public StateStore {
 public:
  RecordingStore(std::unique_ptr<StateStore> base, uint64_t fail_write) : base_(std::move(base)), fail_(fail_write) {}

  const Sequencer* sequencer = nullptr;  // set before the sequencer starts

  Result<Checkpoint> checkpoint(int32_t partition) override {
    auto cp = base_->checkpoint(partition);
    if (cp) started_from_.push_back(cp->next_event_offset);
    return cp;
  }
  Result<bool> load(std::string_view stream, StreamState& out) override { return base_->load(stream, out); }
  Result<std::optional<DedupeEntry>> dedupe(std::string_view key) override { return base_->dedupe(key); }
  Result<std::optional<uint64_t>> name_holder(std::string_view username) override {
    return base_->name_holder(username);
  }
  Result<int64_t> dedupe_horizon() override { return base_->dedupe_horizon(); }
  Result<std::optional<RecentMessage>> recall(std::string_view stream, uint64_t message_id) override {
    return base_->recall(stream, message_id);
  }
  Result<uint64_t> recall_horizon() override { return base_->recall_horizon(); }
  Status write(const StoreBatch& batch) override {
    SeenWrite w;
    w.dedupe = batch.dedupe.size();
    for (const auto& [p, cp] : batch.checkpoints) w.checkpoints.emplace_back(p, cp.next_event_offset);
    w.not_ready = sequencer ? sequencer->not_ready() : "";
    std::lock_guard lock(mu_);
    writes_.push_back(std::move(w));
    if (writes_.size() == fail_) return fail(std::errc::io_error, "recording store: the write a crash ends");
    return base_->write(batch);
  }

  // Read once the sequencer has stopped.
  [[nodiscard]] std::vector<SeenWrite> writes() const {
    std::lock_guard lock(mu_);
    return writes_;
  }
  [[nodiscard]] const std::vector<int64_t>& started_from() const { return started_from_; }

 private:
  std::unique_ptr<StateStore> base_;
  uint64_t fail_;
  mutable std::mutex mu_;
  std::vector<SeenWrite> writes_;
  std::vector<int64_t> started_from_;  // the checkpoints read when taking a partition
};

// A sequencer over the log's transports, on a RecordingStore of `state_dir`.
struct Rebuilder {
  std::unique_ptr<CommandTransport> commands;
  std::unique_ptr<DeliveryTransport> deliveries;
  std::unique_ptr<LogDirectory> directory;
  RecordingStore* store = nullptr;  // owned by the sequencer
  std::unique_ptr<Sequencer> sequencer;

  ~Rebuilder() { stop(); }
  void stop() {
    if (sequencer) sequencer->stop();
    if (directory) directory->stop();
  }
};

std::unique_ptr<Rebuilder> rebuild(EventLog& log, const EngineConfig& config, uint64_t fail_write) {
  auto r = std::make_unique<Rebuilder>();
  r->commands = log_commands(log);
  r->deliveries = log_deliveries(log);
  r->directory = std::make_unique<LogDirectory>(log);
  EXPECT_TRUE(r->directory->start().has_value());
  auto base = StateStore::open(config.state_dir);
  EXPECT_TRUE(base) << base.error().to_string();
  auto store = std::make_unique<RecordingStore>(std::move(*base), fail_write);
  r->store = store.get();
  auto seq = Sequencer::create(log, SequencerTransports{*r->commands, *r->deliveries}, *r->directory,
                               testing::test_keys(), SystemClock::instance(), config, std::move(store));
  EXPECT_TRUE(seq) << seq.error().to_string();
  r->sequencer = std::move(*seq);
  r->store->sequencer = r->sequencer.get();
  EXPECT_TRUE(r->sequencer->start().has_value());
  return r;
}

class SequencerCatchUp : public ::testing::Test {
 protected:
  void SetUp() override {
    setup_logging(LogConfig{"warn", "text"});
    LocalLogConfig lc;
    lc.dir = dir_.str() + "/log";
    auto log = LocalLog::open(lc);
    ASSERT_TRUE(log) << log.error().to_string();
    log_ = std::move(*log);
    ASSERT_TRUE(testing::create_engine_topics(*log_, 1, kGateway).has_value());
    auto tail = LogTail::open(*log_, kGateway);
    ASSERT_TRUE(tail) << tail.error().to_string();
    tail_ = std::move(*tail);
    config_.state_dir = dir_.str() + "/engine";
    config_.instance_id = "catch-up";
    config_.checkpoint_interval = 50ms;
    write_the_log();
    std::filesystem::remove_all(config_.state_dir);  // the rebuild starts from offset 0
    config_.checkpoint_interval = 0ms;  // a save before every poll of the catch-up but the first
  }

  void write_the_log() {
    auto node = testing::EngineNode::start(*log_, config_);
    ASSERT_TRUE(node) << node.error().to_string();
    ann_ = user_id_for(name_bucket("ann"), 1);
    ASSERT_TRUE(testing::submit(*log_, {testing::register_user("ann", "reg", kGateway, 1)}).has_value());
    ASSERT_TRUE(testing::wait_until([&] { return (*node)->directory().user(ann_).exists; }, 30s));
    std::vector<fb::CommandEnvelopeT> batch;
    for (uint64_t i = 0; i < kMessages; ++i) {
      batch.push_back(testing::send_message(std::string(kWorldStream), ann_, cmid(i), "hello", kGateway, 100 + i));
      if (batch.size() == 1000) {
        ASSERT_TRUE(testing::submit(*log_, batch).has_value());
        batch.clear();
      }
    }
    auto all = tail_->wait_for([&] { return tail_->answered(100 + kMessages - 1); }, 120s);
    ASSERT_TRUE(all && *all);
    (*node)->stop();
    ASSERT_TRUE((*node)->sequencer().failure().empty()) << (*node)->sequencer().failure();
  }

  // Retries one message of every 1,000 (request ids from `first`): each must be answered as the
  // duplicate it is, with its original seq, by a sequencer whose state was rebuilt — whichever
  // save of the catch-up it fell in. Then a new message takes the next seq.
  void expect_the_state_is_whole(uint64_t first) {
    for (uint64_t i = 5; i < kMessages; i += 1000) {
      auto answer = retry(i, first++);
      EXPECT_EQ(answer.status, fb::ReplyStatus::Duplicate) << "message " << i << ": " << answer.code << ": " << answer.message;
      EXPECT_EQ(answer.seq, i + 1) << "message " << i;
    }
    auto c = testing::send_message(std::string(kWorldStream), ann_, "new-after-rebuild", "hi", kGateway, first);
    EXPECT_TRUE(testing::submit(*log_, {c}).has_value());
    auto got = tail_->wait_for([&] { return !tail_->replies_for(first).empty(); }, 60s);
    ASSERT_TRUE(got && *got) << "no answer to a new message";
    auto replies = tail_->replies_for(first);
    EXPECT_EQ(replies.back()->status, fb::ReplyStatus::Accepted) << replies.back()->code << ": " << replies.back()->message;
    EXPECT_EQ(replies.back()->seq, kMessages + 1);
  }

  // Retries message i as request `request_id` and returns the answer.
  fb::CommandReplyT retry(uint64_t i, uint64_t request_id) {
    auto c = testing::send_message(std::string(kWorldStream), ann_, cmid(i), "hello", kGateway, request_id);
    EXPECT_TRUE(testing::submit(*log_, {c}).has_value());
    auto got = tail_->wait_for([&] { return !tail_->replies_for(request_id).empty(); }, 60s);
    EXPECT_TRUE(got && *got) << "no answer to the retry of message " << i;
    auto replies = tail_->replies_for(request_id);
    return replies.empty() ? fb::CommandReplyT{} : *replies.back();
  }

  testing::TempDir dir_{"imlog-seq-catch-up"};
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<LogTail> tail_;
  EngineConfig config_;
  uint64_t ann_ = 0;
};

// Writes made while the sequencer said it was catching partition 0 up.
std::vector<SeenWrite> catch_up_writes(const std::vector<SeenWrite>& all) {
  std::vector<SeenWrite> out;
  for (const auto& w : all) {
    if (w.not_ready.find("catching up partition 0") != std::string::npos) out.push_back(w);
  }
  return out;
}

TEST_F(SequencerCatchUp, ARebuildWritesAsItGoesAndIsNotReadyUntilDone) {
  auto r = rebuild(*log_, config_, 0);
  ASSERT_TRUE(testing::wait_until([&] { return r->sequencer->not_ready().empty(); }, 120s))
      << r->sequencer->not_ready();
  ASSERT_TRUE(r->sequencer->failure().empty()) << r->sequencer->failure();
  expect_the_state_is_whole(50'001);
  r->stop();

  auto during = catch_up_writes(r->store->writes());
  ASSERT_GE(during.size(), 2u) << "the rebuild wrote nothing before its end";
  size_t saved = 0;
  int64_t last = -1;
  for (const auto& w : during) {
    EXPECT_LT(w.dedupe, kMessages / 2) << "one write held most of the log's dedupe entries";
    ASSERT_EQ(w.checkpoints.size(), 1u);
    EXPECT_GT(w.checkpoints[0].second, last) << "a later save did not checkpoint a later offset";
    last = w.checkpoints[0].second;
    saved += w.dedupe;
  }
  EXPECT_GT(saved, kMessages / 2) << "most entries should be written during the catch-up, not after it";
  EXPECT_GT(last, 0);
}

TEST_F(SequencerCatchUp, ARebuildEndedPartWayResumesFromItsLastWrite) {
  // The second write of the catch-up fails: the sequencer stops there, as a crash would end it.
  auto first = rebuild(*log_, config_, 2);
  ASSERT_TRUE(testing::wait_until([&] { return !first->sequencer->failure().empty(); }, 120s));
  first->stop();
  auto before = first->store->writes();
  ASSERT_EQ(before.size(), 2u);
  EXPECT_EQ(catch_up_writes(before).size(), 2u) << "both writes were to be the catch-up's";
  int64_t resumed_at = before[0].checkpoints.at(0).second;  // the write that went through
  ASSERT_GT(resumed_at, 0);
  first.reset();

  auto second = rebuild(*log_, config_, 0);
  ASSERT_TRUE(testing::wait_until([&] { return second->sequencer->not_ready().empty(); }, 120s))
      << second->sequencer->not_ready();
  ASSERT_FALSE(second->store->started_from().empty());
  EXPECT_EQ(second->store->started_from().front(), resumed_at);
  expect_the_state_is_whole(60'001);
  second->stop();
}

}  // namespace
}  // namespace imlog
