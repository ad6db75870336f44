// The single node's write path through its in-process transports (engine/include/imlog/engine/
// transport.h), with a real sequencer on a real LocalLog: an ack leaves only once its event is
// durable; an ack lost in a crash is answered again, as a duplicate with the original ids, after a
// restart; a failed append answers `unavailable` at once and the retry is taken; a full command
// queue refuses with `overloaded` and drops nothing it took.

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "imlog/core/worker.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/gateway/command_bus.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/holding_log.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::EngineNode;
using testing::HoldingLog;
using testing::LogTail;
using testing::TempDir;

constexpr int32_t kPartitions = 2;
constexpr const char* kGateway = "gw-inproc";

class InProcessPath : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig c;
    c.dir = dir_.str() + "/log";
    auto l = LocalLog::open(c);
    ASSERT_TRUE(l) << l.error().to_string();
    log_ = std::move(*l);
    holding_ = std::make_unique<HoldingLog>(*log_);
    ASSERT_TRUE(testing::create_engine_topics(*log_, kPartitions, "").has_value());
    start();
  }

  void TearDown() override {
    holding_->hold(false);
    holding_->release();
    stop();
  }

  // An engine and a gateway's bus over fresh in-process transports, as `imlog serve` has them.
  void start() {
    commands_ = in_process_commands(kPartitions);
    deliveries_ = in_process_deliveries();
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine";
    ec.instance_id = "inproc";
    ec.checkpoint_interval = std::chrono::hours(1);  // a checkpoint would wait for a held append
    SequencerTransports t{*commands_, *deliveries_};
    auto n = EngineNode::start(*holding_, ec, SystemClock::instance(), &t);
    ASSERT_TRUE(n) << n.error().to_string();
    node_ = std::move(*n);
    ASSERT_TRUE(node_->wait_for_partitions(kPartitions));
    bus_ = std::make_unique<CommandBus>(*commands_, *deliveries_, kGateway, SystemClock::instance());
    ASSERT_TRUE(bus_->start([](std::vector<Push>&&) {}));
  }

  void stop() {
    if (bus_) bus_->stop();
    node_.reset();
    bus_.reset();
    deliveries_.reset();
    commands_.reset();
  }

  // Submits; the future gets the answer.
  std::future<Result<fb::CommandReplyT>> submit(fb::CommandEnvelopeT c, std::chrono::milliseconds timeout = 10s) {
    auto p = std::make_shared<std::promise<Result<fb::CommandReplyT>>>();
    auto f = p->get_future();
    bus_->submit(std::move(c), timeout, [p](Result<fb::CommandReplyT> r) { p->set_value(std::move(r)); });
    return f;
  }

  // The valid event of `client_msg_id` in im.events, read from the log itself.
  std::optional<testing::SeenEvent> event_of(const std::string& client_msg_id) {
    auto tail = LogTail::open(*log_, "");
    if (!tail || !(*tail)->read_to_end()) return std::nullopt;
    for (const auto& e : (*tail)->valid()) {
      if (e.client_msg_id == client_msg_id) return e;
    }
    return std::nullopt;
  }

  TempDir dir_{"imlog-inproc"};
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<HoldingLog> holding_;
  std::unique_ptr<CommandTransport> commands_;
  std::unique_ptr<DeliveryTransport> deliveries_;
  std::unique_ptr<EngineNode> node_;
  std::unique_ptr<CommandBus> bus_;
};

TEST_F(InProcessPath, AnAckLeavesOnlyOnceItsEventIsDurable) {
  holding_->hold(true);
  std::atomic<bool> released{false};
  auto p = std::make_shared<std::promise<bool>>();
  auto acked_after_release = p->get_future();
  bus_->submit(testing::send_message("world", 1, "m1", "hello", "", 0), 10s,
               [p, &released](Result<fb::CommandReplyT> r) {
                 EXPECT_TRUE(r && r->status == fb::ReplyStatus::Accepted);
                 p->set_value(released.load());
               });
  ASSERT_TRUE(testing::wait_until([&] { return holding_->held() == 1; })) << "the event's append never came";
  released = true;
  holding_->hold(false);
  holding_->release();
  ASSERT_EQ(acked_after_release.wait_for(10s), std::future_status::ready) << "no ack after the append";
  EXPECT_TRUE(acked_after_release.get()) << "acked while the event was not yet durable";
  auto e = event_of("m1");
  ASSERT_TRUE(e) << "the acked message is not in the log";
  EXPECT_EQ(e->seq, 1u);
}

// The crash between the durable append and the ack: the event is on disk, the ack never reached
// the gateway (here: no gateway subscribed when the answer left). After a restart the client's
// retry with the same client_msg_id is answered with the original ids, and nothing is written twice.
TEST_F(InProcessPath, AnAckLostAfterTheDurableAppendIsAnsweredAsADuplicateAfterARestart) {
  // A gateway listening elsewhere: the sequencer's answer to it finds nobody and is lost.
  auto elsewhere = in_process_deliveries();
  auto gone = std::make_unique<CommandBus>(*commands_, *elsewhere, "gw-gone", SystemClock::instance());
  ASSERT_TRUE(gone->start([](std::vector<Push>&&) {}));
  std::promise<Result<fb::CommandReplyT>> never;
  gone->submit(testing::send_message("world", 1, "lost-ack", "hello", "", 0), 500ms,
               [&never](Result<fb::CommandReplyT> r) { never.set_value(std::move(r)); });
  auto answer = never.get_future().get();
  ASSERT_FALSE(answer) << "the gateway got an answer it should not have";
  EXPECT_EQ(answer.error().code(), make_error_code(BusErrc::timed_out));
  ASSERT_TRUE(testing::wait_until([&] { return event_of("lost-ack").has_value(); })) << "the event is not durable";
  auto original = *event_of("lost-ack");
  gone.reset();

  stop();
  start();
  auto retry = submit(testing::send_message("world", 1, "lost-ack", "hello", "", 0)).get();
  ASSERT_TRUE(retry) << retry.error().to_string();
  EXPECT_EQ(retry->status, fb::ReplyStatus::Duplicate);
  EXPECT_EQ(retry->seq, original.seq);
  EXPECT_EQ(retry->event_id, original.event_id);
  auto tail = LogTail::open(*log_, "");
  ASSERT_TRUE(tail && (*tail)->read_to_end());
  size_t copies = 0;
  for (const auto& e : (*tail)->valid()) copies += e.client_msg_id == "lost-ack";
  EXPECT_EQ(copies, 1u);
}

TEST_F(InProcessPath, AFailedAppendIsAnsweredUnavailableAtOnceAndTheRetryIsTaken) {
  holding_->hold(true);
  auto first = submit(testing::send_message("world", 1, "f1", "hello", "", 0), 60s);
  ASSERT_TRUE(testing::wait_until([&] { return holding_->held() == 1; }));
  holding_->hold(false);
  holding_->fail_held();
  ASSERT_EQ(first.wait_for(10s), std::future_status::ready) << "the client waited for its time-out";
  auto r = first.get();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->status, fb::ReplyStatus::Refused);
  EXPECT_EQ(r->code, "unavailable");
  // The sequencer retakes the partition; the retry is accepted, once.
  Result<fb::CommandReplyT> again = fail(BusErrc::unavailable, "not yet");
  ASSERT_TRUE(testing::wait_until([&] {
    again = submit(testing::send_message("world", 1, "f1", "hello", "", 0)).get();
    return again && again->status == fb::ReplyStatus::Accepted;
  }, 30s)) << (again ? again->code + " " + again->message : again.error().to_string());
  auto e = event_of("f1");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->seq, again->seq);
  EXPECT_EQ(e->event_id, again->event_id);
}

TEST(InProcessCommands, AFullQueueRefusesWithOverloadedAndKeepsWhatItTook) {
  auto commands = in_process_commands(1, InProcessLimits{.command_queue = 3});
  int refused = 0;
  for (int i = 0; i < 5; ++i) {
    commands->send("world", "c" + std::to_string(i), [&](const Error& e) {
      EXPECT_EQ(e.code(), make_error_code(LogErrc::overloaded)) << e.to_string();
      EXPECT_TRUE(e.retryable());
      ++refused;
    });
  }
  EXPECT_EQ(refused, 2);
  auto reader = commands->reader(ConsumerOptions{});
  std::vector<Record> got;
  ASSERT_TRUE(reader->poll(got, 0ms));
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].value, "c" + std::to_string(i));
    EXPECT_EQ(got[i].key, "world");
    EXPECT_EQ(got[i].offset, i);
  }
  // Taking them made room again.
  bool ok = true;
  commands->send("world", "c5", [&](const Error&) { ok = false; });
  EXPECT_TRUE(ok);
  // A closed reader (a stopped engine) refuses at once.
  reader->close();
  std::optional<Error> closed;
  commands->send("world", "c6", [&](const Error& e) { closed = e; });
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->code(), make_error_code(LogErrc::closed));
}

TEST(InProcessCommands, AReaderExpectingItsWakeupIsNotWokenPerCommandButGetsThemAllAtTheWakeup) {
  auto commands = in_process_commands(1, InProcessLimits{.command_queue = 16});
  auto reader = commands->reader(ConsumerOptions{});
  auto send = [&](std::string value) { commands->send("world", std::move(value), [](const Error& e) { FAIL() << e.to_string(); }); };
  // Expecting its wakeup (a batch in flight), the reader sleeps through two sends...
  reader->expect_wakeup(true);
  std::atomic<bool> woke{false};
  std::thread other([&] {
    std::this_thread::sleep_for(50ms);
    send("a");
    send("b");
    std::this_thread::sleep_for(300ms);
    woke = true;
    reader->wakeup();  // ... until the wakeup it expected (the batch's completion)
  });
  std::vector<Record> got;
  ASSERT_TRUE(reader->poll(got, 10s));
  EXPECT_TRUE(woke.load()) << "the sends woke a reader that expected its wakeup";
  ASSERT_EQ(got.size(), 2u) << "what came meanwhile is taken together";
  EXPECT_EQ(got[0].value, "a");
  EXPECT_EQ(got[1].value, "b");
  other.join();
  // Without the hint, a send wakes the sleeping reader at once.
  reader->expect_wakeup(false);
  auto started = std::chrono::steady_clock::now();
  std::thread sender([&] {
    std::this_thread::sleep_for(50ms);
    send("c");
  });
  ASSERT_TRUE(reader->poll(got, 10s));
  sender.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "a send must wake a reader that expects nothing";
  // The hint never strands a command: the poll's timeout returns it.
  reader->expect_wakeup(true);
  send("d");  // queued before the poll: taken at once
  ASSERT_TRUE(reader->poll(got, 10s));
  ASSERT_EQ(got.size(), 1u);
  std::thread late([&] {
    std::this_thread::sleep_for(20ms);
    send("e");
  });
  ASSERT_TRUE(reader->poll(got, 300ms));
  late.join();
  if (got.empty()) ASSERT_TRUE(reader->poll(got, 0ms));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "e");
}

TEST(InProcessCommands, TheBusAnswersOverloadedWhenTheQueueIsFull) {
  auto commands = in_process_commands(1, InProcessLimits{.command_queue = 16});
  auto deliveries = in_process_deliveries();
  CommandBus bus(*commands, *deliveries, kGateway, SystemClock::instance());
  ASSERT_TRUE(bus.start([](std::vector<Push>&&) {}));
  int overloaded = 0, unavailable = 0, other = 0;
  for (int i = 0; i < 20; ++i) {
    bus.submit(testing::send_message("world", 1, "o" + std::to_string(i), "x", "", 0), 10s,
               [&](Result<fb::CommandReplyT> r) {
                 if (!r && r.error().code() == make_error_code(BusErrc::overloaded)) {
                   ++overloaded;
                 } else if (!r && r.error().code() == make_error_code(BusErrc::unavailable)) {
                   ++unavailable;
                 } else {
                   ++other;
                 }
               });
  }
  EXPECT_EQ(overloaded, 4) << "16 queued, the 4 beyond refused at once";
  EXPECT_EQ(bus.pending(), 16u);
  bus.stop();  // no engine: the queued ones are answered unavailable, not left hanging
  EXPECT_EQ(bus.pending(), 0u);
  EXPECT_EQ(unavailable, 16);
  EXPECT_EQ(other, 0);
}

// Deliveries whose reader fails on demand, as a gateway's im.deliver.<id> reader does when its
// worker meets an error it cannot retry.
class BreakableDeliveries final : public DeliveryTransport {
 public:
  void deliver(std::string_view, std::vector<std::string>, Delivered done) override {
    if (done) done({});
  }
  Result<std::unique_ptr<Subscription>> subscribe(const std::string&, Handler) override {
    return std::unique_ptr<Subscription>(std::make_unique<Sub>(*this));
  }
  void break_with(std::string why) {
    std::lock_guard lock(mu_);
    why_ = std::move(why);
  }

 private:
  struct Sub final : Subscription {
    explicit Sub(BreakableDeliveries& d) : d(d) {}
    [[nodiscard]] std::string failure() const override {
      std::lock_guard lock(d.mu_);
      return d.why_;
    }
    BreakableDeliveries& d;
  };
  mutable std::mutex mu_;
  std::string why_;
};

TEST(InProcessCommands, WhenNoAnswerCanComeTheBusFailsWaitingAndNewRequestsAtOnce) {
  auto commands = in_process_commands(1);
  BreakableDeliveries deliveries;
  CommandBus bus(*commands, deliveries, kGateway, SystemClock::instance());
  ASSERT_TRUE(bus.start([](std::vector<Push>&&) {}));
  std::promise<Error> waiting;
  bus.submit(testing::send_message("world", 1, "w1", "x", "", 0), 10min, [&](Result<fb::CommandReplyT> r) {
    waiting.set_value(r ? Error() : r.error());
  });
  ASSERT_EQ(bus.pending(), 1u);

  deliveries.break_with("deliveries im.deliver.gw-inproc: topic deleted");
  auto answered = waiting.get_future();
  ASSERT_EQ(answered.wait_for(5s), std::future_status::ready) << "a request outlived its bus's failure";
  Error e = answered.get();
  EXPECT_EQ(e.code(), make_error_code(BusErrc::unavailable));
  EXPECT_NE(e.message().find("topic deleted"), std::string::npos) << e.message();
  EXPECT_NE(failed_workers().find("command-bus: "), std::string::npos) << failed_workers();

  std::optional<Error> next;
  bus.submit(testing::send_message("world", 1, "w2", "x", "", 0), 10min, [&](Result<fb::CommandReplyT> r) {
    next = r ? Error() : r.error();
  });
  ASSERT_TRUE(next) << "a request after the failure must be answered before submit returns";
  EXPECT_EQ(next->code(), make_error_code(BusErrc::unavailable));
  EXPECT_EQ(bus.pending(), 0u);
}

// Commands a transport holds on to, with their failure callbacks, as a Kafka producer holds its
// in-flight appends: it may report a failure after the gateway's bus is gone (at the log's close).
class HeldCommands final : public CommandTransport {
 public:
  void send(std::string, std::string, std::function<void(const Error&)> on_failure) override {
    held.push_back(std::move(on_failure));
  }
  std::unique_ptr<Consumer> reader(const ConsumerOptions&) override { return nullptr; }
  Result<int32_t> partitions() override { return 1; }
  [[nodiscard]] std::string describe() const override { return "held commands"; }
  std::vector<std::function<void(const Error&)>> held;
};

TEST(CommandBusLifetime, AHandOverFailureReportedAfterTheBusIsGoneTouchesNothing) {
  HeldCommands commands;
  auto deliveries = in_process_deliveries();
  int answers = 0;
  {
    CommandBus bus(commands, *deliveries, kGateway, SystemClock::instance());
    ASSERT_TRUE(bus.start([](std::vector<Push>&&) {}));
    bus.submit(testing::send_message("world", 1, "late", "x", "", 0), 10s, [&](Result<fb::CommandReplyT> r) {
      ++answers;
      EXPECT_FALSE(r);
    });
    ASSERT_EQ(commands.held.size(), 1u);
  }  // stopping answers the waiting request `unavailable`
  EXPECT_EQ(answers, 1);
  // The transport reports its failure only now: the bus's state is gone (ASan would name a use
  // after free), and the request is not answered twice.
  commands.held[0](Error(make_error_code(LogErrc::closed), "the log closed with the append in flight", false));
  EXPECT_EQ(answers, 1);
}

}  // namespace
}  // namespace imlog
