// The router and the command bus over a real engine on the embedded log, with each pair of
// transports (engine/include/imlog/engine/transport.h): in process, as on the single node, and over
// the log (im.commands, im.deliver.<gateway>), as in the distributed mode. Acks come from the
// sequencer once the event is durable, pushes reach the members who are online, membership is
// derived from the events (a leaver sees their leave and nothing after), and refusals and
// duplicates are answered.

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>

#include "imlog/engine/local_log.h"
#include "imlog/engine/partitioner.h"
#include "imlog/engine/streams.h"
#include "imlog/gateway/command_bus.h"
#include "imlog/tasks/router.h"
#include "imlog/tasks/sessions.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kGateway = "gw-test";

// Collects what a gateway would receive: replies by request and pushes by user.
class Inbox {
 public:
  void push(std::vector<Push>&& batch) {
    for (auto& p : batch) push_one(p);
  }
  void push_one(const Push& p) {
    auto ev = read_event(*p.event_bytes);
    ASSERT_TRUE(ev);
    std::lock_guard lock(mu_);
    for (uint64_t u : p.recipients) {
      pushes_[u].push_back(Seen{(*ev)->event_type(), std::string(sv((*ev)->stream())), (*ev)->seq()});
    }
    cv_.notify_all();
  }

  struct Seen {
    fb::Event type;
    std::string stream;
    uint64_t seq;
  };

  // Waits until `user` has `n` pushes.
  std::vector<Seen> pushes_of(uint64_t user, size_t n, std::chrono::milliseconds deadline = 10s) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, deadline, [&] { return pushes_[user].size() >= n; });
    return pushes_[user];
  }

  size_t count(uint64_t user) {
    std::lock_guard lock(mu_);
    return pushes_[user].size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::vector<Seen>> pushes_;
};

// in_process: the in-process transports with the router delivering everything; single_node: the
// same, configured as the single node is (one-to-one pushes go with the ack,
// EngineConfig::push_one_to_one); log: im.commands and im.deliver.<gateway>.
enum class Transports { in_process, single_node, log };

class RouterTest : public ::testing::TestWithParam<Transports> {
 protected:
  void SetUp() override {
    LocalLogConfig cfg;
    cfg.dir = dir_.str() + "/log";
    auto log = LocalLog::open(cfg);
    ASSERT_TRUE(log) << log.error().to_string();
    log_ = std::move(*log);
    ASSERT_TRUE(testing::create_engine_topics(*log_, 2, kGateway));
    if (GetParam() != Transports::log) {
      commands_ = in_process_commands(2);
      deliveries_ = in_process_deliveries();
    } else {
      commands_ = log_commands(*log_);
      deliveries_ = log_deliveries(*log_);
    }
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine";
    ec.checkpoint_interval = 100ms;
    ec.push_one_to_one = GetParam() == Transports::single_node;
    SequencerTransports transports{*commands_, *deliveries_};
    auto node = testing::EngineNode::start(*log_, ec, SystemClock::instance(), &transports);
    ASSERT_TRUE(node) << node.error().to_string();
    node_ = std::move(*node);
    ASSERT_TRUE(node_->wait_for_partitions(2));
    sessions_ = make_local_sessions();
    one_to_one_pushed_by_engine_ = ec.push_one_to_one;
    start_router();
    bus_ = std::make_unique<CommandBus>(*commands_, *deliveries_, std::string(kGateway), SystemClock::instance());
    ASSERT_TRUE(bus_->start([this](std::vector<Push>&& p) { inbox_.push(std::move(p)); }));
  }

  void TearDown() override {
    if (bus_) bus_->stop();
    if (router_) router_->stop();
    node_.reset();
    bus_.reset();
    router_.reset();
  }

  RouterConfig router_config() const {
    RouterConfig rc;
    rc.one_to_one_pushed_by_engine = one_to_one_pushed_by_engine_;
    rc.commit_interval = 50ms;
    rc.snapshot_path = router_snapshot_;
    return rc;
  }

  void start_router() {
    router_ = std::make_unique<Router>(*log_, *deliveries_, *sessions_, router_config());
    ASSERT_TRUE(router_->start());
  }

  // A new group of `owner` and `member`, accepted; its stream id.
  std::string group_of(uint64_t owner, uint64_t member) {
    uint64_t id = 1000 + static_cast<uint64_t>(++groups_made_);
    auto r = call(testing::create_group(id, owner, {member}, "g", "", 0));
    EXPECT_TRUE(r && r->status == fb::ReplyStatus::Accepted);
    return group_stream(id);
  }

  // Submits and waits for the reply.
  Result<fb::CommandReplyT> call(fb::CommandEnvelopeT c) {
    std::promise<Result<fb::CommandReplyT>> p;
    auto f = p.get_future();
    bus_->submit(std::move(c), 10s, [&p](Result<fb::CommandReplyT> r) { p.set_value(std::move(r)); });
    return f.get();
  }

  uint64_t register_user(const std::string& name) {
    auto r = call(testing::register_user(name, "reg-" + name, "", 0));
    EXPECT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->status, fb::ReplyStatus::Accepted) << r->code << " " << r->message;
    EXPECT_GT(r->result_id, 0u);
    // The directory must know the user before the engine accepts messages to them.
    EXPECT_TRUE(testing::wait_until([&] { return node_->directory().user(r->result_id).exists; }));
    return r->result_id;
  }

  testing::TempDir dir_{"imlog-router"};
  bool one_to_one_pushed_by_engine_ = false;
  std::string router_snapshot_;  // empty: the router keeps no snapshot
  int groups_made_ = 0;
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<CommandTransport> commands_;
  std::unique_ptr<DeliveryTransport> deliveries_;
  std::unique_ptr<testing::EngineNode> node_;
  std::unique_ptr<SessionRegistry> sessions_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<CommandBus> bus_;
  Inbox inbox_;
};

TEST_P(RouterTest, AcksComeOnceDurableAndPushesReachBothUsersOfASingleStream) {
  uint64_t a = register_user("alice");
  uint64_t b = register_user("bob");
  sessions_->connected(a, kGateway, 1);
  sessions_->connected(b, kGateway, 2);
  std::string conv = single_stream(a, b);
  auto r1 = call(testing::send_message(conv, a, "m1", "hello bob", "", 0));
  ASSERT_TRUE(r1) << r1.error().to_string();
  EXPECT_EQ(r1->status, fb::ReplyStatus::Accepted);
  EXPECT_EQ(r1->seq, 1u);
  EXPECT_NE(r1->event_id, 0u);
  auto r2 = call(testing::send_message(conv, b, "m2", "hi alice", "", 0));
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->seq, 2u);
  for (uint64_t u : {a, b}) {
    auto seen = inbox_.pushes_of(u, 2);
    ASSERT_EQ(seen.size(), 2u) << "user " << u;
    EXPECT_EQ(seen[0].seq, 1u);
    EXPECT_EQ(seen[1].seq, 2u);
    EXPECT_EQ(seen[0].type, fb::Event::MessageAppended);
  }
}

// Whoever pushes a one-to-one event (the router, or the sequencer with its ack on the single
// node), each participant gets it exactly once, a read marker included (the peer's read receipt).
TEST_P(RouterTest, OneToOneEventsArePushedOnceToEachParticipant) {
  uint64_t a = register_user("frank");
  uint64_t b = register_user("grace");
  sessions_->connected(a, kGateway, 1);
  sessions_->connected(b, kGateway, 2);
  std::string conv = single_stream(a, b);
  for (int i = 0; i < 3; ++i) {
    auto r = call(testing::send_message(conv, i % 2 ? b : a, "o" + std::to_string(i), "hi", "", 0));
    ASSERT_TRUE(r) << r.error().to_string();
    ASSERT_EQ(r->status, fb::ReplyStatus::Accepted);
  }
  auto mark = testing::command_envelope(conv, b, "read-1", "", 0);
  fb::MarkReadT read;
  read.seq = 3;
  mark.command.Set(std::move(read));
  ASSERT_EQ(call(std::move(mark))->status, fb::ReplyStatus::Accepted);
  // A world message goes through the router in every mode: once both have it, the router has
  // routed everything before it too.
  ASSERT_TRUE(call(testing::send_message("world", a, "w-after", "x", "", 0)));
  ASSERT_EQ(inbox_.pushes_of(a, 5).size(), 5u);
  ASSERT_EQ(inbox_.pushes_of(b, 5).size(), 5u);
  auto seen_a = inbox_.pushes_of(a, 5);
  auto seen_b = inbox_.pushes_of(b, 5);
  EXPECT_EQ(inbox_.count(a), 5u);  // three messages, b's read marker (a read receipt), the world message
  EXPECT_EQ(inbox_.count(b), 5u);  // the same: its own read marker, for its other devices
  // In the conversation's order (the world message, on another partition, may come first).
  for (const auto* seen : {&seen_a, &seen_b}) {
    std::vector<Inbox::Seen> in_conv;
    for (const auto& p : *seen) {
      if (p.stream == conv) in_conv.push_back(p);
    }
    ASSERT_EQ(in_conv.size(), 4u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(in_conv[i].seq, i + 1);
    EXPECT_EQ(in_conv[3].type, fb::Event::ReadMarked);
  }
}

// A read marker in a group stays with its reader's devices: a receipt to every member for every
// member's read would multiply a group's pushes by its size (one-to-one receipts: above).
TEST_P(RouterTest, AGroupsReadMarkerReachesOnlyTheReader) {
  uint64_t owner = register_user("gowner");
  uint64_t member = register_user("gmember");
  sessions_->connected(owner, kGateway, 1);
  sessions_->connected(member, kGateway, 2);
  std::string g = group_of(owner, member);
  ASSERT_TRUE(call(testing::send_message(g, owner, "gm-1", "hi all", "", 0)));
  auto mark = testing::command_envelope(g, member, "gread-1", "", 0);
  fb::MarkReadT read;
  read.seq = 2;
  mark.command.Set(std::move(read));
  ASSERT_EQ(call(std::move(mark))->status, fb::ReplyStatus::Accepted);
  // Once both have the group's next message, the router has routed the marker: it is on the same
  // partition, before it. (Not a message to another stream: another partition's event may be
  // routed first.)
  ASSERT_TRUE(call(testing::send_message(g, owner, "gm-2", "again", "", 0)));
  auto seen_owner = inbox_.pushes_of(owner, 3);    // the creation and the two messages
  auto seen_member = inbox_.pushes_of(member, 4);  // and, before the second message, its read marker
  ASSERT_EQ(seen_owner.size(), 3u);
  ASSERT_EQ(seen_member.size(), 4u);
  EXPECT_EQ(seen_member[2].type, fb::Event::ReadMarked);
  for (const auto& seen : seen_owner) EXPECT_NE(seen.type, fb::Event::ReadMarked);
  EXPECT_EQ(inbox_.count(owner), 3u);
}

// A router that was stopped picks up where its group committed: what was sent while no router
// ran is pushed when one comes back (a restarted router used to resume at the log's end and
// those pushes were lost until the clients' next sync).
TEST_P(RouterTest, ARestartedRouterPushesWhatWasSentWhileItWasDown) {
  uint64_t a = register_user("henry");
  uint64_t b = register_user("iris");
  sessions_->connected(a, kGateway, 1);
  sessions_->connected(b, kGateway, 2);
  std::string group = group_of(a, b);
  ASSERT_EQ(inbox_.pushes_of(b, 1).size(), 1u);  // the group's creation
  router_->stop();
  router_.reset();
  for (int i = 0; i < 3; ++i) {
    auto r = call(testing::send_message(group, a, "down-" + std::to_string(i), "while down", "", 0));
    ASSERT_TRUE(r) << r.error().to_string();
    ASSERT_EQ(r->status, fb::ReplyStatus::Accepted);
  }
  start_router();
  auto seen = inbox_.pushes_of(b, 4);
  ASSERT_EQ(seen.size(), 4u) << "the messages sent while the router was down were not pushed";
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(seen[i].seq, i + 1);
  // Membership came back with the position: a message after the restart reaches the member too.
  ASSERT_TRUE(call(testing::send_message(group, a, "after", "back", "", 0)));
  EXPECT_EQ(inbox_.pushes_of(b, 5).size(), 5u);
}

// Records in every partition of im.events.
uint64_t events_in(EventLog& log) {
  uint64_t n = 0;
  for (int32_t p = 0; p < *log.partition_count(kEventsTopic); ++p) {
    n += static_cast<uint64_t>(*log.end_offset(TopicPartition{std::string(kEventsTopic), p}));
  }
  return n;
}

// With a snapshot, a restarted router rebuilds membership from it, reading only what came after
// (here: the messages and the join sent while it was down), and its membership is the log's.
TEST_P(RouterTest, ARestartedRouterRebuildsMembershipFromItsSnapshot) {
  router_snapshot_ = dir_.str() + "/router.snapshot";
  router_->stop();
  start_router();  // now with the snapshot path
  uint64_t a = register_user("kate");
  uint64_t b = register_user("liam");
  uint64_t c = register_user("mona");
  for (uint64_t u : {a, b, c}) sessions_->connected(u, kGateway, u);
  std::string group = group_of(a, b);
  ASSERT_EQ(inbox_.pushes_of(b, 1).size(), 1u);
  router_->stop();  // a clean stop commits and writes the snapshot
  ASSERT_TRUE(std::filesystem::exists(router_snapshot_));
  uint64_t before = events_in(*log_);
  ASSERT_EQ(call(testing::join_group(1000 + static_cast<uint64_t>(groups_made_), c, "join-c", "", 0))->status,
            fb::ReplyStatus::Accepted);
  ASSERT_TRUE(call(testing::send_message(group, a, "down", "while down", "", 0)));
  uint64_t after = events_in(*log_);
  start_router();
  EXPECT_EQ(router_->stats().rebuilt_from_log.load(), 0u) << "the snapshot holds up to the committed offsets";
  // The join and the message were pushed (to a, b, c), and the member who joined while the router
  // was down gets the next message: membership is the log's, not the snapshot's.
  ASSERT_GE(inbox_.pushes_of(b, 3).size(), 3u);
  ASSERT_TRUE(call(testing::send_message(group, a, "after", "back", "", 0)));
  auto seen = inbox_.pushes_of(c, 3);
  ASSERT_EQ(seen.size(), 3u) << "mona: her join, the message sent while down, and the one after";
  EXPECT_EQ(seen[2].type, fb::Event::MessageAppended);
  EXPECT_GT(after, before);
}

TEST_P(RouterTest, ADamagedRouterSnapshotIsReadPastAndMembershipRebuiltFromTheLog) {
  router_snapshot_ = dir_.str() + "/router.snapshot";
  router_->stop();
  start_router();
  uint64_t a = register_user("nina");
  uint64_t b = register_user("omar");
  for (uint64_t u : {a, b}) sessions_->connected(u, kGateway, u);
  std::string group = group_of(a, b);
  ASSERT_EQ(inbox_.pushes_of(b, 1).size(), 1u);
  router_->stop();
  {
    std::fstream f(router_snapshot_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    char byte = 0;
    f.read(&byte, 1);
    f.seekp(20);
    f.put(static_cast<char>(byte ^ 0x5a));  // an offset's byte: the checksum no longer holds
  }
  start_router();
  EXPECT_GT(router_->stats().rebuilt_from_log.load(), 0u) << "read from offset 0, not from the damaged snapshot";
  ASSERT_TRUE(call(testing::send_message(group, a, "after", "back", "", 0)));
  EXPECT_EQ(inbox_.pushes_of(b, 2).size(), 2u);
}

// Two routers share the partitions of im.events through their group, each pushing its own
// partitions' events. One stopping hands its partition over: the other loads that partition's
// membership as of the committed offset — from the state it kept of it, and the join and the leave
// made since on the log — and pushes from there: nothing missed, nothing twice.
TEST_P(RouterTest, TwoRoutersShareThePartitionsAndOneTakesOverTheOthersMembership) {
  uint64_t owner = register_user("pat"), m1 = register_user("quinn"), m2 = register_user("ruth"), m3 = register_user("sam");
  for (uint64_t u : {owner, m1, m2, m3}) sessions_->connected(u, kGateway, u);
  auto second = std::make_unique<Router>(*log_, *deliveries_, *sessions_, router_config());
  ASSERT_TRUE(second->start());
  ASSERT_TRUE(testing::wait_until(
      [&] { return router_->stats().partitions.load() == 1 && second->stats().partitions.load() == 1; }))
      << "the group did not share the two partitions";
  std::map<int32_t, uint64_t> group_on;  // partition → a group whose stream is on it
  for (uint64_t id = 500; group_on.size() < 2; ++id) group_on.try_emplace(partition_for(group_stream(id), 2), id);
  for (auto [p, id] : group_on) {
    ASSERT_EQ(call(testing::create_group(id, owner, {m1, m3}, "g", "", 0))->status, fb::ReplyStatus::Accepted);
    ASSERT_EQ(call(testing::join_group(id, m2, "join", "", 0))->status, fb::ReplyStatus::Accepted);
    ASSERT_EQ(call(testing::leave_group(id, m3, "leave", "", 0))->status, fb::ReplyStatus::Accepted);
  }
  ASSERT_EQ(inbox_.pushes_of(m3, 6).size(), 6u);  // in each group: the creation, the join, its own leave
  ASSERT_EQ(inbox_.pushes_of(m2, 4).size(), 4u);  // in each group: its join and the leave
  std::map<int32_t, int64_t> ends;
  for (auto [p, id] : group_on) ends[p] = *log_->end_offset(TopicPartition{std::string(kEventsTopic), p});
  uint64_t rebuilt = router_->stats().rebuilt_from_log.load();

  second->stop();  // commits what it pushed and hands its partition over
  ASSERT_TRUE(testing::wait_until([&] { return router_->stats().partitions.load() == 2; }))
      << "the stopped router's partition was not taken";
  uint64_t read = router_->stats().rebuilt_from_log.load() - rebuilt;
  // It read the partition it took from the state it kept when it handed it over at the second
  // router's start, so the join and the leave made since; and nothing of the partition it kept.
  EXPECT_GT(read, 0u) << "the events of the partition taken were not read";
  EXPECT_LE(read, static_cast<uint64_t>(std::max(ends[0], ends[1]))) << "more was read than the one partition taken";
  for (auto [p, id] : group_on) {
    ASSERT_TRUE(call(testing::send_message(group_stream(id), owner, "after", "after the hand-over", "", 0)));
  }
  // Members as of the log: owner, m1 and m2 get both messages; m3, who left, nothing more.
  EXPECT_EQ(inbox_.pushes_of(owner, 8).size(), 8u);
  EXPECT_EQ(inbox_.pushes_of(m1, 8).size(), 8u);
  auto m2_seen = inbox_.pushes_of(m2, 6);
  ASSERT_EQ(m2_seen.size(), 6u);
  EXPECT_EQ(m2_seen[5].type, fb::Event::MessageAppended);
  EXPECT_EQ(inbox_.count(m3), 6u);
}

// A client that registers and, on the ack, names the new user in its next command must not be
// told the user does not exist while the engine's directory has yet to read the registration
// back from the log (here: never, it is stopped).
TEST_P(RouterTest, AUserIsKnownToTheEngineAsSoonAsItsRegistrationIsAcked) {
  uint64_t owner = register_user("henry");
  node_->directory().stop();
  auto reg = call(testing::register_user("ivy", "reg-ivy", "", 0));
  ASSERT_TRUE(reg) << reg.error().to_string();
  ASSERT_EQ(reg->status, fb::ReplyStatus::Accepted) << reg->code;
  EXPECT_FALSE(node_->directory().user(reg->result_id).exists);
  auto group = call(testing::create_group(88, owner, {reg->result_id}, "g88", "", 0));
  ASSERT_TRUE(group) << group.error().to_string();
  EXPECT_EQ(group->status, fb::ReplyStatus::Accepted) << group->code << " " << group->message;
  // An id nobody registered is still refused.
  auto unknown = call(testing::create_group(89, owner, {reg->result_id + 1000}, "g89", "", 0));
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->code, "not_found") << unknown->message;
}

TEST_P(RouterTest, ARetryIsAnsweredWithTheOriginalIdsAndPushedOnce) {
  uint64_t a = register_user("carol");
  sessions_->connected(a, kGateway, 1);
  auto first = call(testing::send_message("world", a, "same", "once", "", 0));
  auto again = call(testing::send_message("world", a, "same", "twice?", "", 0));
  ASSERT_TRUE(first && again);
  EXPECT_EQ(again->status, fb::ReplyStatus::Duplicate);
  EXPECT_EQ(again->seq, first->seq);
  EXPECT_EQ(again->event_id, first->event_id);
  // A later message proves the router is past both; the retry was pushed to nobody.
  ASSERT_TRUE(call(testing::send_message("world", a, "later", "x", "", 0)));
  EXPECT_EQ(inbox_.pushes_of(a, 2).size(), 2u);
  EXPECT_EQ(inbox_.count(a), 2u);
}

TEST_P(RouterTest, GroupFanOutFollowsMembershipFromTheLog) {
  uint64_t owner = register_user("owner");
  uint64_t m1 = register_user("member1");
  uint64_t m2 = register_user("member2");
  uint64_t outsider = register_user("outsider");
  for (uint64_t u : {owner, m1, m2, outsider}) sessions_->connected(u, kGateway, u);
  ASSERT_EQ(call(testing::create_group(77, owner, {m1, m2}, "g", "", 0))->status, fb::ReplyStatus::Accepted);
  ASSERT_TRUE(call(testing::send_message("group_77", m1, "g1", "to all", "", 0)));
  for (uint64_t u : {owner, m1, m2}) {
    auto seen = inbox_.pushes_of(u, 2);  // the creation and the message
    ASSERT_EQ(seen.size(), 2u) << "user " << u;
    EXPECT_EQ(seen[1].type, fb::Event::MessageAppended);
  }
  // m2 leaves: m2 sees its own leave; the next message reaches owner and m1 only.
  ASSERT_EQ(call(testing::leave_group(77, m2, "l", "", 0))->status, fb::ReplyStatus::Accepted);
  ASSERT_TRUE(call(testing::send_message("group_77", owner, "g2", "after", "", 0)));
  EXPECT_EQ(inbox_.pushes_of(m1, 4).size(), 4u);
  auto m2_seen = inbox_.pushes_of(m2, 3);
  ASSERT_EQ(m2_seen.size(), 3u);
  EXPECT_EQ(m2_seen[2].type, fb::Event::MemberLeft);
  EXPECT_EQ(inbox_.count(m2), 3u);
  EXPECT_EQ(inbox_.count(outsider), 0u);
  // And the engine refuses m2's next send.
  auto refused = call(testing::send_message("group_77", m2, "g3", "let me in", "", 0));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, fb::ReplyStatus::Refused);
  EXPECT_EQ(refused->code, "not_member");
}

// A refusal that depends on state is remembered on the log (a CommandRefused record): the router
// pushes it to no one — its sender heard it as the answer — and the sender's retry with the same
// client_msg_id gets the same refusal after the state changed, in process as over the log.
TEST_P(RouterTest, ARefusalIsPushedToNoOneAndItsRetryGetsItAgain) {
  uint64_t a = register_user("jack");
  uint64_t b = register_user("kate");
  sessions_->connected(a, kGateway, 1);
  sessions_->connected(b, kGateway, 2);
  std::string conv = single_stream(a, b);
  auto on_conv = [&](const std::string& cmid, auto command) {
    auto c = testing::command_envelope(conv, a, cmid, "", 0);
    c.command.Set(std::move(command));
    return c;
  };
  ASSERT_EQ(call(on_conv("blk", fb::BlockUserT{{}, b}))->status, fb::ReplyStatus::Accepted);
  auto refused = call(testing::send_message(conv, b, "m1", "hello?", "", 0));
  ASSERT_TRUE(refused) << refused.error().to_string();
  ASSERT_EQ(refused->status, fb::ReplyStatus::Refused);
  ASSERT_EQ(refused->code, "blocked");
  ASSERT_EQ(call(on_conv("unblk", fb::UnblockUserT{{}, b}))->status, fb::ReplyStatus::Accepted);
  auto again = call(testing::send_message(conv, b, "m1", "hello?", "", 0));
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(again->status, fb::ReplyStatus::Refused) << "the retry after the unblock: " << again->code;
  EXPECT_EQ(again->code, refused->code);
  EXPECT_EQ(again->message, refused->message);
  auto fresh = call(testing::send_message(conv, b, "m2", "hello!", "", 0));
  ASSERT_TRUE(fresh) << fresh.error().to_string();
  EXPECT_EQ(fresh->status, fb::ReplyStatus::Accepted) << fresh->code;
  // A world message after everything: once both have it, the router has routed all before it.
  ASSERT_TRUE(call(testing::send_message("world", a, "w-after", "x", "", 0)));
  ASSERT_TRUE(testing::wait_until([&] {
    auto pa = inbox_.pushes_of(a, 1, 0ms), pb = inbox_.pushes_of(b, 1, 0ms);
    auto world = [](const Inbox::Seen& s) { return s.stream == "world"; };
    return std::any_of(pa.begin(), pa.end(), world) && std::any_of(pb.begin(), pb.end(), world);
  }));
  for (uint64_t u : {a, b}) {
    for (const auto& s : inbox_.pushes_of(u, 0, 0ms)) {
      EXPECT_NE(s.type, fb::Event::CommandRefused) << "user " << u << " was pushed a refusal record";
    }
  }
  auto seen_a = inbox_.pushes_of(a, 0, 0ms);
  EXPECT_TRUE(std::any_of(seen_a.begin(), seen_a.end(), [&](const Inbox::Seen& s) {
    return s.type == fb::Event::MessageAppended && s.stream == conv;
  })) << "the message accepted after the unblock reached its recipient";
}

TEST_P(RouterTest, OfflineUsersGetNoPushAndMalformedStreamsAreRefused) {
  uint64_t a = register_user("dave");
  ASSERT_TRUE(call(testing::send_message("world", a, "w1", "nobody online", "", 0)));
  EXPECT_EQ(inbox_.count(a), 0u);
  // A command whose stream is malformed is refused by the engine, not left hanging.
  auto bad = call(testing::send_message("group_x", a, "b1", "?", "", 0));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, fb::ReplyStatus::Refused);
  EXPECT_EQ(bad->code, "invalid");
}

// With no sequencer, a command on the log is stored but never answered: it times out. In process
// the queue is closed with its reader, so the command is refused at once. Either way the error is
// retryable and never an ack.
TEST_P(RouterTest, ACommandNobodyAnswersFailsAsRetryable) {
  uint64_t a = register_user("erin");
  node_->stop();
  std::promise<Result<fb::CommandReplyT>> p;
  auto f = p.get_future();
  bus_->submit(testing::send_message("world", a, "t1", "anyone?", "", 0), 200ms,
               [&p](Result<fb::CommandReplyT> r) { p.set_value(std::move(r)); });
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  auto r = f.get();
  ASSERT_FALSE(r);
  auto want = GetParam() == Transports::log ? BusErrc::timed_out : BusErrc::unavailable;
  EXPECT_EQ(r.error().code(), make_error_code(want)) << r.error().to_string();
  EXPECT_TRUE(r.error().retryable());
}

INSTANTIATE_TEST_SUITE_P(Transports, RouterTest,
                         ::testing::Values(Transports::in_process, Transports::single_node, Transports::log),
                         [](const auto& info) {
                           switch (info.param) {
                             case Transports::in_process: return "InProcess";
                             case Transports::single_node: return "SingleNode";
                             case Transports::log: return "Log";
                           }
                           return "Unknown";
                         });

}  // namespace
}  // namespace imlog
