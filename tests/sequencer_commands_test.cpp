// What the sequencer does with commands it cannot take, and with a log it cannot write
// (docs/architecture.md, "The engine"): a record of im.commands that does not decode is dropped
// and counted, a command whose stream, key or client_msg_id is unusable is refused `invalid`
// without an event, and neither stops the loop; an epoch marker the log refuses stops the engine
// before it decides anything on the partition, and so does an event in the log it cannot read;
// command and event topics of different partition counts keep it from starting at all.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/holding_log.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::EngineNode;
using testing::HoldingLog;
using testing::LogTail;

constexpr const char* kGateway = "gw-commands";

class SequencerCommands : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig c;
    c.dir = dir_.str() + "/log";
    auto l = LocalLog::open(c);
    ASSERT_TRUE(l) << l.error().to_string();
    log_ = std::move(*l);
    holding_ = std::make_unique<HoldingLog>(*log_);
    ASSERT_TRUE(testing::create_engine_topics(*log_, 1, kGateway).has_value());
    auto t = LogTail::open(*log_, kGateway);
    ASSERT_TRUE(t) << t.error().to_string();
    tail_ = std::move(*t);
  }

  void TearDown() override {
    holding_->hold(false);
    holding_->fail_held();
    node_.reset();
    tail_.reset();
  }

  void start_engine(std::chrono::milliseconds checkpoint_interval = 50ms,
                    std::chrono::milliseconds batch_window = EngineConfig{}.batch_window) {
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine";
    ec.instance_id = "commands";
    ec.checkpoint_interval = checkpoint_interval;
    ec.batch_window = batch_window;
    auto n = EngineNode::start(*holding_, ec);
    ASSERT_TRUE(n) << n.error().to_string();
    node_ = std::move(*n);
  }

  // Appends one raw record to im.commands under `key`.
  void append_command(const std::string& key, std::string value) {
    auto r = log_->append_wait(kCommandsTopic, {OutRecord{key, std::move(value), kByKey}});
    ASSERT_TRUE(r) << r.error().to_string();
  }

  // The one reply to `request_id`, once read.
  const fb::CommandReplyT* reply_to(uint64_t request_id) {
    auto ok = tail_->wait_for([&] { return !tail_->replies_for(request_id).empty(); }, 30s);
    if (!ok || !*ok) return nullptr;
    return tail_->replies_for(request_id).front();
  }

  testing::TempDir dir_{"imlog-seq-commands"};
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<HoldingLog> holding_;
  std::unique_ptr<LogTail> tail_;
  std::unique_ptr<EngineNode> node_;
};

TEST_F(SequencerCommands, UnusableCommandsAreRefusedOrDroppedAndTheLoopGoesOn) {
  start_engine();
  ASSERT_TRUE(node_->wait_for_partitions(1));
  const std::string world(kWorldStream);
  append_command(world, "not a command envelope");
  std::vector<fb::CommandEnvelopeT> commands;
  commands.push_back(testing::send_message("nowhere_1", 1, "m1", "hi", kGateway, 1));
  commands.push_back(testing::send_message(world, 1, "", "hi", kGateway, 2));
  commands.push_back(testing::send_message(world, 1, std::string(129, 'k'), "hi", kGateway, 3));
  commands.push_back(testing::send_message(world, 1, std::string(128, 'k'), "hi", kGateway, 4));
  ASSERT_TRUE(testing::submit(*log_, commands).has_value());
  // Keyed by another stream than its own: a gateway never does this, a forged record might.
  append_command("group_7", encode_command(testing::send_message(world, 1, "m5", "hi", kGateway, 5)));
  append_command(world, encode_command(testing::send_message(world, 1, "m6", "hi", kGateway, 6)));

  struct Refused {
    uint64_t request_id;
    std::string message_has;
  };
  for (const auto& r : std::vector<Refused>{{1, "is not a stream id"},
                                             {2, "client_msg_id must be 1 to 128 bytes"},
                                             {3, "client_msg_id must be 1 to 128 bytes"},
                                             {5, "key does not match its stream"}}) {
    const fb::CommandReplyT* reply = reply_to(r.request_id);
    ASSERT_NE(reply, nullptr) << "request " << r.request_id << " was never answered";
    EXPECT_EQ(reply->status, fb::ReplyStatus::Refused) << "request " << r.request_id;
    EXPECT_EQ(reply->code, "invalid") << "request " << r.request_id;
    EXPECT_NE(reply->message.find(r.message_has), std::string::npos) << reply->message;
    EXPECT_EQ(reply->seq, 0u) << "a refusal names no event";
  }
  for (uint64_t accepted : {4u, 6u}) {
    auto ok = tail_->wait_for([&] { return tail_->event_for_request(accepted) != nullptr; }, 30s);
    ASSERT_TRUE(ok && *ok) << "request " << accepted << " has no event: the loop did not go on";
    ASSERT_NE(reply_to(accepted), nullptr);
    EXPECT_EQ(reply_to(accepted)->status, fb::ReplyStatus::Accepted);
  }
  EXPECT_EQ(tail_->event_for_request(4)->seq, 1u);
  EXPECT_EQ(tail_->event_for_request(6)->seq, 2u) << "refusals take no seq";
  ASSERT_TRUE(tail_->read_to_end().has_value());
  EXPECT_EQ(tail_->valid().size(), 2u) << "only the two usable commands have events";
  EXPECT_TRUE(tail_->problems().empty());
  EXPECT_EQ(node_->sequencer().stats().malformed.load(), 1u) << "the undecodable record is counted";
  EXPECT_EQ(node_->sequencer().stats().refused.load(), 4u);
  EXPECT_EQ(node_->sequencer().failure(), "");
}

// engine.batch_window: the commands that come within it of the last append wait for the next
// one and share it; the first command of an idle engine does not wait; stop() does not wait the
// window out.
TEST_F(SequencerCommands, CommandsWithinTheBatchWindowShareOneAppend) {
  start_engine(50ms, 6s);
  ASSERT_TRUE(node_->wait_for_partitions(1));
  const std::string world(kWorldStream);
  const auto first_sent = std::chrono::steady_clock::now();
  ASSERT_TRUE(testing::submit(*log_, {testing::send_message(world, 1, "m1", "hi", kGateway, 1)}).has_value());
  ASSERT_NE(reply_to(1), nullptr);
  EXPECT_LT(std::chrono::steady_clock::now() - first_sent, 5s) << "an idle engine appends at once";
  const size_t appends = holding_->appends_to(std::string(kEventsTopic));
  for (uint64_t id = 2; id <= 6; ++id) {  // five commands, each its own synced append to im.commands
    std::this_thread::sleep_for(50ms);
    auto m = testing::send_message(world, 1, "m" + std::to_string(id), "hi", kGateway, id);
    ASSERT_TRUE(testing::submit(*log_, {m}).has_value());
  }
  for (uint64_t id = 2; id <= 6; ++id) {
    const fb::CommandReplyT* reply = reply_to(id);
    ASSERT_NE(reply, nullptr) << "request " << id;
    EXPECT_EQ(reply->status, fb::ReplyStatus::Accepted);
  }
  EXPECT_EQ(holding_->appends_to(std::string(kEventsTopic)) - appends, 1u) << "five commands, one append";
  const auto stopping = std::chrono::steady_clock::now();
  node_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 4s) << "stop() waited the window out";
}

TEST_F(SequencerCommands, AnEpochMarkerTheLogRefusesStopsTheEngineBeforeItDecides) {
  holding_->hold(true);
  start_engine();
  ASSERT_TRUE(testing::wait_until([&] { return holding_->held() == 1; }, 30s)) << "no epoch marker was appended";
  holding_->fail_held();
  ASSERT_TRUE(testing::wait_until([&] { return !node_->sequencer().failure().empty(); }, 30s))
      << "the engine went on without its epoch marker";
  EXPECT_NE(node_->sequencer().failure().find("epoch marker of partition 0"), std::string::npos)
      << node_->sequencer().failure();
  EXPECT_EQ(node_->sequencer().stats().partitions.load(), 0) << "a partition without a marker is not owned";

  holding_->hold(false);
  append_command(std::string(kWorldStream),
                 encode_command(testing::send_message(std::string(kWorldStream), 1, "m1", "hi", kGateway, 1)));
  ASSERT_TRUE(tail_->poll(500ms).has_value());
  EXPECT_TRUE(tail_->valid().empty()) << "a stopped engine wrote an event";
  EXPECT_TRUE(tail_->markers().empty()) << "the refused marker is on the log";
  EXPECT_EQ(holding_->appends_to(std::string(kEventsTopic)), 1u) << "nothing was appended after the marker";
}

// The log loses batch A but stores batch B, appended after it while A was in flight. B's events
// link past the hole, so no reader takes them (validity.h); the engine, told A failed, answers
// both batches `unavailable`, retakes the partition under a new epoch and decides their commands
// again: every message has exactly one valid event and the seqs have no gap. The failure comes
// as each way an append fails: back-pressure, a broker's time-out, an unreachable log.
class SequencerLostBatch : public SequencerCommands, public ::testing::WithParamInterface<LogErrc> {};

TEST_P(SequencerLostBatch, ALostBatchFollowedByAStoredOneLeavesNoSeqGap) {
  // A checkpoint waits for every append in flight: one due while batch A is held would keep the
  // engine from reading batch B at all.
  start_engine(std::chrono::hours(1));
  ASSERT_TRUE(node_->wait_for_partitions(1));
  const std::string world(kWorldStream);
  holding_->hold(true);
  auto submit_three = [&](const std::string& prefix, uint64_t first_request) {
    std::vector<fb::CommandEnvelopeT> commands;
    for (uint64_t i = 0; i < 3; ++i) {
      commands.push_back(testing::send_message(world, 1, prefix + std::to_string(i), "hi", kGateway, first_request + i));
    }
    ASSERT_TRUE(testing::submit(*log_, commands).has_value());
  };
  submit_three("a", 1);
  ASSERT_TRUE(testing::wait_until([&] { return node_->sequencer().stats().commands.load() == 3 && holding_->held() >= 1; }, 30s));
  submit_three("b", 4);
  ASSERT_TRUE(testing::wait_until([&] { return node_->sequencer().stats().commands.load() == 6 && holding_->held() >= 2; }, 30s));
  ASSERT_EQ(holding_->held(), 2u) << "the two submissions are two batches in flight";
  holding_->hold(false);
  holding_->fail_first_release_rest(GetParam());

  for (uint64_t request = 1; request <= 6; ++request) {
    auto ok = tail_->wait_for([&] { return tail_->event_for_request(request) != nullptr; }, 30s);
    ASSERT_TRUE(ok && *ok) << "request " << request << " has no valid event after the retake";
    ASSERT_FALSE(tail_->replies_for(request).empty());
    EXPECT_EQ(tail_->replies_for(request).front()->code, "unavailable")
        << "request " << request << ": its batch, or one before it, was not durable";
  }
  ASSERT_TRUE(tail_->read_to_end().has_value());
  EXPECT_EQ(testing::check_log_invariants(tail_->valid()), std::vector<std::string>{});
  EXPECT_EQ(tail_->valid().size(), 6u) << "one valid event per message";
  EXPECT_EQ(tail_->rejected().size(), 3u) << "batch B as first written links past the lost batch";
  EXPECT_EQ(node_->sequencer().failure(), "");
}

INSTANTIATE_TEST_SUITE_P(Failures, SequencerLostBatch,
                         ::testing::Values(LogErrc::queue_full, LogErrc::timed_out, LogErrc::unavailable),
                         [](const ::testing::TestParamInfo<LogErrc>& info) {
                           switch (info.param) {
                             case LogErrc::queue_full: return std::string("QueueFull");
                             case LogErrc::timed_out: return std::string("TimedOut");
                             default: return std::string("Unavailable");
                           }
                         });

TEST_F(SequencerCommands, AnUndecodableEventInTheLogStopsTheEngineNamingWhereItIs) {
  // Decided on a state that skipped an event, the engine would give its seqs out again: it must
  // refuse to own the partition instead.
  auto bad = log_->append_wait(kEventsTopic, {OutRecord{std::string(kWorldStream), "not an event", 0}});
  ASSERT_TRUE(bad) << bad.error().to_string();
  start_engine();
  ASSERT_TRUE(testing::wait_until([&] { return !node_->sequencer().failure().empty(); }, 30s))
      << "the engine caught up over an undecodable event";
  EXPECT_NE(node_->sequencer().failure().find("im.events partition 0 offset 0"), std::string::npos)
      << node_->sequencer().failure();
  EXPECT_EQ(node_->sequencer().stats().partitions.load(), 0);
  append_command(std::string(kWorldStream),
                 encode_command(testing::send_message(std::string(kWorldStream), 1, "m1", "hi", kGateway, 1)));
  ASSERT_TRUE(tail_->poll(500ms).has_value());
  EXPECT_TRUE(tail_->valid().empty()) << "a stopped engine wrote an event";
  EXPECT_TRUE(tail_->replies_for(1).empty()) << "a stopped engine answered";
}

TEST(SequencerTopics, CommandsAndEventsWithOtherPartitionCountsAreRefusedAtStart) {
  testing::TempDir dir{"imlog-seq-topics"};
  LocalLogConfig c;
  c.dir = dir.str() + "/log";
  auto log = LocalLog::open(c);
  ASSERT_TRUE(log) << log.error().to_string();
  ASSERT_TRUE((*log)->create_topic(TopicSpec{std::string(kCommandsTopic), 2, true}).has_value());
  ASSERT_TRUE((*log)->create_topic(TopicSpec{std::string(kEventsTopic), 1, true}).has_value());
  ASSERT_TRUE((*log)->create_topic(TopicSpec{delivery_topic(kGateway), 1, false}).has_value());
  EngineConfig ec;
  ec.state_dir = dir.str() + "/engine";
  auto node = EngineNode::start(**log, ec);
  ASSERT_FALSE(node) << "an engine started on 2 command partitions and 1 event partition";
  EXPECT_EQ(node.error().code(), make_error_code(LogErrc::topic_mismatch));
  EXPECT_NE(node.error().message().find("they must be equal"), std::string::npos) << node.error().to_string();
  auto events = (*log)->end_offset(TopicPartition{std::string(kEventsTopic), 0});
  ASSERT_TRUE(events.has_value());
  EXPECT_EQ(*events, 0) << "no epoch marker may be written";
}

}  // namespace
}  // namespace imlog
