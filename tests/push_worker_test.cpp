// Offline push (tasks/include/imlog/tasks/push.h): the PushWorker following im.events written by
// EventLogBuilder, on the embedded log on disk and on the Kafka mock broker.
//
//   - an offline recipient's devices get one notification per collapse window, with the count,
//     the latest message's seq and preview, the sender's nickname and the unread badge; an online
//     member, the sender, a muted conversation and a zombie writer's message get none;
//   - a provider that keeps failing is retried max_attempts times, then the notification lands
//     in im.dlq with its reason, and the worker carries on;
//   - a worker restarted with the same group resumes at its committed offset: nothing old again,
//     the next message pushed;
//   - the webhook provider POSTs the JSON to a real HTTP receiver on loopback, with its
//     Idempotency-Key header.
//
// The read model is a small in-memory one (the worker only reads it); e2e_push_test runs the
// whole server with the real models.

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "imlog/engine/kafka_log.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/transport.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/lease.h"
#include "imlog/tasks/push.h"
#include "imlog/tasks/sessions.h"
#include "imlog/tasks/task_records.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/event_log_builder.h"
#include "imlog/testing/http_receiver.h"
#include "imlog/testing/kafka_mock.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
namespace t = imlog::testing;

constexpr uint64_t kGroup = 42;

// Users, group members and unread counts as the worker reads them. Thread-safe.
class MapModel final : public ReadModel {
 public:
  void put(UserView u) {
    std::lock_guard lock(mu_);
    users_[u.user_id] = std::move(u);
  }
  void members_of_group(std::vector<uint64_t> users) {
    std::lock_guard lock(mu_);
    members_ = std::move(users);
  }
  void unread(uint64_t user, uint64_t n) {
    std::lock_guard lock(mu_);
    unread_[user] = n;
  }

  // How often the worker asked: user(), blocked(), pages of members().
  struct Reads {
    uint64_t users = 0, blocked = 0, member_pages = 0;
  };
  Reads reads() {
    std::lock_guard lock(mu_);
    return reads_;
  }

  Result<std::optional<UserView>> user(uint64_t id) override {
    std::lock_guard lock(mu_);
    ++reads_.users;
    auto it = users_.find(id);
    return it == users_.end() ? std::optional<UserView>() : std::optional<UserView>(it->second);
  }
  Result<std::vector<MemberView>> members(uint64_t group, uint64_t after, uint32_t limit) override {
    std::lock_guard lock(mu_);
    ++reads_.member_pages;
    std::vector<MemberView> out;
    for (uint64_t u : members_) {
      if (group == kGroup && u > after && out.size() < limit) out.push_back(MemberView{u, "member", 0});
    }
    return out;
  }
  // The model's conversation list ends at `last_seq` in `stream` (0: somewhere else, never behind).
  void conversation_at(std::string stream, uint64_t last_seq) {
    std::lock_guard lock(mu_);
    conversation_ = std::move(stream);
    last_seq_ = last_seq;
  }
  uint64_t conversation_reads(uint64_t user) {
    std::lock_guard lock(mu_);
    return conversation_reads_[user];
  }

  Result<std::vector<ConversationView>> conversations(uint64_t user) override {
    std::lock_guard lock(mu_);
    ++conversation_reads_[user];
    ConversationView c;
    c.conversation_id = conversation_;
    c.last_seq = last_seq_;
    c.unread = unread_[user];
    return std::vector<ConversationView>{c};
  }
  Result<std::vector<uint64_t>> blocked(uint64_t) override {
    std::lock_guard lock(mu_);
    ++reads_.blocked;
    return std::vector<uint64_t>{};
  }

  Result<HistoryPage> history(std::string_view, const HistoryRange&) override { return HistoryPage{}; }
  Result<std::optional<MessageView>> message(uint64_t) override { return std::optional<MessageView>(); }
  Result<std::optional<Credentials>> credentials(std::string_view) override { return std::optional<Credentials>(); }
  Result<std::vector<UserView>> search_users(std::string_view, uint64_t, uint32_t) override {
    return std::vector<UserView>{};
  }
  Result<std::optional<GroupView>> group(uint64_t) override { return std::optional<GroupView>(); }
  Result<std::vector<BanView>> bans(uint64_t, uint64_t, uint32_t) override { return std::vector<BanView>{}; }
  Result<ReadAccess> read_access(std::string_view, uint64_t) override { return ReadAccess{}; }
  Result<SearchPage> search_messages(const SearchRequest&) override { return SearchPage{}; }
  Result<std::vector<FriendView>> friends(uint64_t) override { return std::vector<FriendView>{}; }
  Result<std::vector<std::string>> friend_groups(uint64_t) override { return std::vector<std::string>{}; }
  Result<RetentionOverrides> retention(std::string_view) override { return RetentionOverrides{}; }

 private:
  std::mutex mu_;
  std::map<uint64_t, UserView> users_;
  std::vector<uint64_t> members_;
  std::map<uint64_t, uint64_t> unread_;
  Reads reads_;
  std::string conversation_ = "somewhere";
  uint64_t last_seq_ = 0;
  std::map<uint64_t, uint64_t> conversation_reads_;
};

UserView user_with_devices(uint64_t id, std::string nickname, std::vector<DeviceView> devices) {
  UserView u;
  u.user_id = id;
  u.nickname = std::move(nickname);
  u.devices = std::move(devices);
  return u;
}

DeviceView fcm(uint64_t id) { return DeviceView{id, "fcm", "fcm-token-" + std::to_string(id), "", 0}; }

PushConfig quick_config(std::string group) {
  PushConfig c;
  c.enabled = true;
  c.collapse_window = 300ms;
  c.preview_chars = 5;
  c.max_attempts = 3;
  c.first_backoff = 10ms;
  c.max_backoff = 40ms;
  c.commit_interval = 20ms;
  c.group = std::move(group);
  c.keys = &t::test_keys();
  return c;
}

// Users 1 (Ann, the sender), 2 (Bob: offline, two FCM devices), 3 (Cat: online), 4 (Dan:
// offline, the group muted) with 1..4 in group kGroup.
class PushWorld {
 public:
  void build(EventLog& log, int32_t partitions) {
    log_ = &log;
    ASSERT_TRUE(log.create_topic(TopicSpec{std::string(kDeadLetterTopic), 1, true}));
    // Stamped with the real time: the worker closes a window once the log is read past its end,
    // a partition read to its end counting as read to now less close_delay.
    auto b = t::EventLogBuilder::open(log, partitions, SystemClock::instance().now_ms());
    ASSERT_TRUE(b) << b.error().to_string();
    builder = std::move(*b);
    builder->create_group(kGroup, 1, {2, 3, 4});
    ASSERT_TRUE(builder->flush());
    model.put(user_with_devices(1, "Ann", {fcm(10)}));
    model.put(user_with_devices(2, "Bob", {fcm(20), fcm(21)}));
    model.put(user_with_devices(3, "Cat", {fcm(30)}));
    auto dan = user_with_devices(4, "Dan", {fcm(40)});
    dan.muted = {group_stream(kGroup)};
    model.put(dan);
    model.members_of_group({1, 2, 3, 4});
    model.unread(2, 7);
    sessions->connected(3, "gw-a", 1);
  }

  void send(const std::string& stream, uint64_t from, const std::string& text) {
    builder->message(stream, from, text);
    ASSERT_TRUE(builder->flush());
  }

  std::unique_ptr<t::EventLogBuilder> builder;
  MapModel model;
  std::unique_ptr<SessionRegistry> sessions = make_local_sessions();
  FakePushProvider fake;
  EventLog* log_ = nullptr;
};

std::vector<Record> dead_letters(EventLog& log) {
  std::vector<Record> out;
  auto end = log.end_offset({std::string(kDeadLetterTopic), 0});
  if (!end || *end == 0) return out;
  auto reader = log.consumer(ConsumerOptions{});
  EXPECT_TRUE(reader->assign({{std::string(kDeadLetterTopic), 0, 0}}));
  std::vector<Record> batch;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (static_cast<int64_t>(out.size()) < *end && std::chrono::steady_clock::now() < deadline) {
    EXPECT_TRUE(reader->poll(batch, 200ms));
    for (auto& r : batch) out.push_back(std::move(r));
  }
  return out;
}

// Who the fake provider was called for: user → the devices, ascending (sends run on a pool, so
// they come in no fixed order).
std::map<uint64_t, std::vector<uint64_t>> devices_called(const FakePushProvider& fake) {
  std::map<uint64_t, std::vector<uint64_t>> out;
  for (const auto& n : fake.calls()) out[n.user_id].push_back(n.device.device_id);
  for (auto& entry : out) std::sort(entry.second.begin(), entry.second.end());
  return out;
}

void collapses_and_skips(EventLog& log, int32_t partitions, const std::string& group) {
  PushWorld w;
  w.build(log, partitions);
  PushWorker worker(log, *w.sessions, w.model, PushProviders{nullptr, &w.fake, nullptr}, quick_config(group));
  ASSERT_TRUE(worker.start());
  w.builder->zombie_message(group_stream(kGroup), 1, "a zombie's message");
  w.send(group_stream(kGroup), 1, "first message");
  w.send(group_stream(kGroup), 1, "second one");
  w.send(group_stream(kGroup), 1, "third and last");
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 2; }, 20s)) << worker.stats().sent;
  std::this_thread::sleep_for(500ms);  // anything more would come now
  auto calls = w.fake.calls();
  ASSERT_EQ(calls.size(), 2u) << "one notification per device of the one offline, unmuted member";
  EXPECT_EQ(devices_called(w.fake), (std::map<uint64_t, std::vector<uint64_t>>{{2, {20, 21}}}));
  for (const auto& n : calls) {
    EXPECT_EQ(n.collapsed, 3u);
    EXPECT_EQ(n.conversation_id, group_stream(kGroup));
    EXPECT_EQ(n.seq, w.builder->last_seq(group_stream(kGroup)));
    EXPECT_EQ(n.sender_nickname, "Ann");
    EXPECT_EQ(n.preview, "third\u2026");
    EXPECT_EQ(n.badge, 7u);
  }
  EXPECT_NE(calls[0].key, calls[1].key);
  EXPECT_TRUE(calls[0].key.starts_with("2/" + group_stream(kGroup) + "/")) << calls[0].key;
  EXPECT_EQ(worker.stats().collapsed, 2u);
  EXPECT_EQ(worker.stats().events, 3u) << "the zombie's message is not valid";
  // One latency observation per notification sent, each at least the collapse window.
  auto latency = worker.stats().latency.snapshot();
  EXPECT_EQ(latency.sample_count, 2u);
  EXPECT_GE(latency.sample_sum, 2 * 0.3 - 0.05);

  // A later message opens a new window: one more notification per device.
  w.send(single_stream(1, 2), 1, "hello Bob");
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 4; }, 20s));
  auto later = w.fake.calls();
  ASSERT_EQ(later.size(), 4u);
  EXPECT_EQ(later[2].conversation_id, single_stream(1, 2));
  EXPECT_EQ(later[2].collapsed, 1u);
  worker.stop();
}

class PushLocal : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig cfg;
    cfg.dir = dir_.str() + "/log";
    auto log = LocalLog::open(cfg);
    ASSERT_TRUE(log) << log.error().to_string();
    log_ = std::move(*log);
  }
  t::TempDir dir_{"imlog-push"};
  std::unique_ptr<LocalLog> log_;
};

TEST_F(PushLocal, AnOfflineUsersDevicesGetOneNotificationPerWindow) { collapses_and_skips(*log_, 2, "push-local"); }

// Each recipient's settings are read once per step of the worker, not once per message: 40
// messages to a group of 200 offline members, appended at once, would otherwise cost 40 × 199
// reads of each kind. Everyone still gets their one notification.
TEST_F(PushLocal, AnErasureBlanksItsSendersPreviewsNotSentYet) {
  PushWorld w;
  w.build(*log_, 2);
  auto config = quick_config("push-erased");
  config.collapse_window = 1s;  // the erasure is read while the window is open
  PushWorker worker(*log_, *w.sessions, w.model, PushProviders{nullptr, &w.fake, nullptr}, config);
  ASSERT_TRUE(worker.start());
  w.send(single_stream(1, 2), 1, "a secret for Bob");
  w.builder->erase_user(1);
  ASSERT_TRUE(w.builder->flush());
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 2; }, 20s)) << worker.stats().sent;
  for (const auto& n : w.fake.calls()) {
    EXPECT_EQ(n.conversation_id, single_stream(1, 2));
    EXPECT_EQ(n.preview, "") << "the erased sender's text left the worker's memory before the window closed";
    EXPECT_EQ(n.sender_nickname, "") << "the read model (a fake here) still names Ann";
  }
  worker.stop();
}

TEST_F(PushLocal, AGroupsMembersAreReadOncePerStepNotPerMessage) {
  constexpr uint64_t kMembers = 200, kMessages = 40;
  PushWorld w;
  w.build(*log_, 2);
  std::vector<uint64_t> members;
  for (uint64_t u = 100; u < 100 + kMembers; ++u) {
    members.push_back(u);
    w.model.put(user_with_devices(u, "m" + std::to_string(u), {fcm(u * 10)}));
  }
  w.model.members_of_group(members);
  PushWorker worker(*log_, *w.sessions, w.model, PushProviders{nullptr, &w.fake, nullptr}, quick_config("push-reads"));
  ASSERT_TRUE(worker.start());  // a new worker starts at the log's end: the messages come after
  for (uint64_t i = 0; i < kMessages; ++i) w.builder->message(group_stream(kGroup), 100, "news " + std::to_string(i));
  ASSERT_TRUE(w.builder->flush());  // one append
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= kMembers - 1; }, 30s)) << worker.stats().sent;
  std::this_thread::sleep_for(500ms);  // anything more would come now
  worker.stop();
  auto called = devices_called(w.fake);
  EXPECT_EQ(called.size(), kMembers - 1) << "every member but the sender";
  for (const auto& [user, devices] : called) EXPECT_EQ(devices.size(), 1u) << "user " << user;
  auto reads = w.model.reads();
  // The messages come in a step or a few: a few reads per member, never one per message.
  EXPECT_LE(reads.blocked, 4 * kMembers) << "blocked() read per message, not per step";
  EXPECT_LE(reads.member_pages, 8u) << "the group's members paged per message, not per step";
  EXPECT_LE(reads.users, 8 * kMembers);
}

// While the read model has not reached a window's end, the window is asked about again after
// waits that double (100 ms up to 2 s), not at every step; once the model catches up it is sent.
TEST_F(PushLocal, AWindowWaitingForALaggingModelBacksOff) {
  PushWorld w;
  w.build(*log_, 2);
  w.model.conversation_at(group_stream(kGroup), 0);  // the model has none of the group's messages
  PushWorker worker(*log_, *w.sessions, w.model, PushProviders{nullptr, &w.fake, nullptr}, quick_config("push-lag"));
  ASSERT_TRUE(worker.start());
  w.send(group_stream(kGroup), 1, "while the model lags");
  ASSERT_TRUE(t::wait_until([&] { return w.model.conversation_reads(2) > 0; }, 20s)) << "Bob's window never closed";
  auto first = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(3s);
  // Asked at about 0, 0.1, 0.3, 0.7, 1.5 and 3.1 s: at every step (each 100 ms) it would be ~30.
  uint64_t asked = w.model.conversation_reads(2);
  EXPECT_LE(asked, 10u) << "asked the lagging model at every step";
  EXPECT_GE(asked, 3u) << "stopped asking";
  EXPECT_TRUE(w.fake.calls().empty()) << "sent before the model had the message";

  w.model.conversation_at(group_stream(kGroup), w.builder->last_seq(group_stream(kGroup)));
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 2; }, 10s)) << worker.stats().sent;
  EXPECT_LT(std::chrono::steady_clock::now() - first, 3s + 2500ms) << "waited past the longest wait";
  EXPECT_EQ(devices_called(w.fake), (std::map<uint64_t, std::vector<uint64_t>>{{2, {20, 21}}}));
  worker.stop();
}

// A user's later window waits behind an earlier one that waits for the model: the notifications
// leave in the order of the windows, never the newer first.
TEST_F(PushLocal, ALaterWindowWaitsBehindOneWaitingForTheModel) {
  PushWorld w;
  w.build(*log_, 2);
  w.model.conversation_at(group_stream(kGroup), 0);  // the model lags on the group
  auto config = quick_config("push-order");
  config.close_delay = 50ms;
  PushWorker worker(*log_, *w.sessions, w.model, PushProviders{nullptr, &w.fake, nullptr}, config);
  ASSERT_TRUE(worker.start());
  w.send(group_stream(kGroup), 1, "older, in the group");
  // Bob's group window has been asked about five times (at about 0, 0.1, 0.3, 0.7 and 1.5 s); the
  // next ask is 1.6 s away.
  ASSERT_TRUE(t::wait_until([&] { return w.model.conversation_reads(2) >= 5; }, 20s));
  w.model.conversation_at(group_stream(kGroup), w.builder->last_seq(group_stream(kGroup)));
  w.send(single_stream(1, 2), 1, "newer, one to one");  // its window is due in about 0.4 s
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 4; }, 20s)) << worker.stats().sent;
  worker.stop();
  std::map<uint64_t, std::vector<std::string>> per_device;  // a device's sends are one at a time
  for (const auto& n : w.fake.calls()) per_device[n.device.device_id].push_back(n.conversation_id);
  std::vector<std::string> in_order{group_stream(kGroup), single_stream(1, 2)};
  EXPECT_EQ(per_device, (std::map<uint64_t, std::vector<std::string>>{{20, in_order}, {21, in_order}}))
      << "the newer window was sent first";
}

TEST_F(PushLocal, AFailingProviderIsRetriedThenDeadLettered) {
  PushWorld w;
  w.build(*log_, 1);
  w.model.put(user_with_devices(2, "Bob", {fcm(20)}));
  w.fake.script({SendOutcome::retry, SendOutcome::retry, SendOutcome::retry});
  PushWorker worker(*log_, *w.sessions, w.model, PushProviders{nullptr, &w.fake, nullptr}, quick_config("push-dlq"));
  ASSERT_TRUE(worker.start());
  w.send(single_stream(1, 2), 1, "are you there");
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().dead_lettered >= 1; }, 20s));
  EXPECT_EQ(w.fake.calls().size(), 3u) << "max_attempts sends";
  EXPECT_EQ(worker.stats().retried, 2u);
  EXPECT_EQ(worker.stats().failed, 3u);
  EXPECT_EQ(worker.stats().sent, 0u);
  auto letters = dead_letters(*log_);
  ASSERT_EQ(letters.size(), 1u);
  auto d = read_dead_letter(letters[0].value);
  ASSERT_TRUE(d);
  EXPECT_TRUE(sv((*d)->reason()).starts_with("push to fcm device 20 failed after 3 attempts")) << sv((*d)->reason());
  EXPECT_EQ((*d)->attempts(), 3u);
  EXPECT_EQ(sv((*d)->source_topic()), kEventsTopic);
  // The worker carries on: the next message is pushed.
  w.send(single_stream(1, 2), 1, "hello again");
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 1; }, 20s));
  worker.stop();
}

TEST_F(PushLocal, ARestartedWorkerResumesWhereItCommitted) {
  PushWorld w;
  w.build(*log_, 2);
  auto config = quick_config("push-restart");
  {
    PushWorker first(*log_, *w.sessions, w.model, PushProviders{nullptr, &w.fake, nullptr}, config);
    ASSERT_TRUE(first.start());
    w.send(single_stream(1, 2), 1, "before the restart");
    ASSERT_TRUE(t::wait_until([&] { return first.stats().sent >= 2; }, 20s));
    first.stop();
  }
  // Sent while no worker runs: the restarted one must take it from its committed offset (a worker
  // starting at the log's end would miss it), and nothing before it.
  w.send(single_stream(1, 2), 1, "while it was down");
  FakePushProvider second_fake;
  PushWorker second(*log_, *w.sessions, w.model, PushProviders{nullptr, &second_fake, nullptr}, config);
  ASSERT_TRUE(second.start());
  ASSERT_TRUE(t::wait_until([&] { return second.stats().sent >= 2; }, 20s));
  std::this_thread::sleep_for(500ms);
  auto calls = second_fake.calls();
  ASSERT_EQ(calls.size(), 2u) << "only the message sent while it was down";
  EXPECT_EQ(calls[0].preview, "while\u2026");
  EXPECT_EQ(second.stats().events, 1u);
  second.stop();
}

// ---- the committed position and the progress across a restart ------------------------------------

// A message of im.events as the worker reads it.
struct Sent {
  std::string stream;
  uint64_t sender = 0;
  uint64_t seq = 0;
  int64_t time = 0;
  int64_t offset = 0;
};

// Ann's messages to Bob, Eve and Fay, in log order.
std::vector<Sent> messages_in(EventLog& log) {
  std::vector<Sent> out;
  auto end = log.end_offset({std::string(kEventsTopic), 0});
  EXPECT_TRUE(end);
  auto reader = log.consumer(ConsumerOptions{});
  EXPECT_TRUE(reader->assign({{std::string(kEventsTopic), 0, 0}}));
  std::vector<Record> batch;
  for (int64_t read = 0; end && read < *end;) {
    EXPECT_TRUE(reader->poll(batch, 200ms));
    for (const auto& r : batch) {
      read = r.offset + 1;
      auto e = read_event(r.value);
      if (!e) continue;
      std::string_view stream = sv((*e)->stream());
      bool to_them = stream == single_stream(1, 2) || stream == single_stream(1, 5) || stream == single_stream(1, 6);
      if (to_them && (*e)->event_as_MessageAppended() && (*e)->actor() == 1) {
        out.push_back(Sent{std::string(stream), (*e)->actor(), (*e)->seq(), (*e)->timestamp_ms(), r.offset});
      }
    }
  }
  return out;
}

// Bob (2, two devices), Eve (5) and Fay (6), all offline, get a message from Ann in turn, 0.7 s
// apart (each every 2.1 s), stamped ahead of the clock (so the log's progress alone closes
// windows): their 3 s collapse windows overlap one another in one unbroken chain.
class PushChain : public PushLocal {
 protected:
  static constexpr uint64_t kTo[] = {2, 5, 6};
  void build() {
    world.build(*log_, 1);
    world.model.put(user_with_devices(5, "Eve", {fcm(50)}));
    world.model.put(user_with_devices(6, "Fay", {fcm(60)}));
  }
  PushConfig config(std::string group) {
    auto c = quick_config(std::move(group));
    c.collapse_window = 3s;
    return c;
  }
  void send(int n) {
    for (int i = 0; i < n; ++i, ++sent_) {
      world.builder->advance_ms(700);
      world.send(single_stream(1, kTo[sent_ % 3]), 1, "m" + std::to_string(sent_));
    }
  }
  // The same three, in an order and at gaps (100 ms to 1 s) drawn from a fixed seed.
  void send_irregular(int n) {
    for (int i = 0; i < n; ++i, ++sent_) {
      world.builder->advance_ms(std::uniform_int_distribution<int64_t>(100, 1000)(random_));
      uint64_t to = kTo[std::uniform_int_distribution<size_t>(0, 2)(random_)];
      world.send(single_stream(1, to), 1, "m" + std::to_string(sent_));
    }
  }
  // Every window of theirs closes: Bob answers Ann, far ahead of the rest.
  void close_all() {
    world.builder->advance_ms(60'000);
    world.send(single_stream(1, 2), 2, "much later");
  }
  // The notifications their devices should get, keyed as the worker keys them, with
  // (collapsed, seq), from the messages in the log.
  std::map<std::string, std::pair<uint32_t, uint64_t>> expected(int64_t window_ms) {
    std::map<uint64_t, std::vector<Sent>> to;
    for (auto& m : messages_in(*log_)) {
      for (uint64_t u : kTo) {
        if (m.stream == single_stream(1, u)) to[u].push_back(m);
      }
    }
    std::map<uint64_t, std::vector<uint64_t>> devices{{2, {20, 21}}, {5, {50}}, {6, {60}}};
    std::map<std::string, std::pair<uint32_t, uint64_t>> out;
    for (auto& [user, ms] : to) {
      for (size_t i = 0; i < ms.size();) {
        size_t j = i;
        while (j < ms.size() && ms[j].time < ms[i].time + window_ms) ++j;
        for (uint64_t d : devices[user]) {
          out[fmt::format("{}/{}/{}/{}", user, ms[i].stream, ms[i].seq, d)] = {static_cast<uint32_t>(j - i), ms[j - 1].seq};
        }
        i = j;
      }
    }
    return out;
  }
  static void add_calls(const FakePushProvider& fake, std::map<std::string, std::pair<uint32_t, uint64_t>>& got,
                        int& repeated) {
    for (const auto& n : fake.calls()) {
      if (n.user_id == 1) continue;  // Ann: her window stays open
      auto [it, fresh] = got.try_emplace(n.key, n.collapsed, n.seq);
      if (fresh) continue;
      repeated++;
      EXPECT_EQ(it->second, std::make_pair(n.collapsed, n.seq)) << n.key << " sent again with another payload";
    }
  }

  PushWorld world;
  int sent_ = 0;
  std::mt19937 random_{1};  // a seed whose restart falls inside windows already sent
};

TEST_F(PushChain, TheCommittedPositionKeepsUpWhileWindowsOverlap) {
  build();
  auto leases = make_local_leases();
  PushWorker worker(*log_, *world.sessions, world.model, PushProviders{nullptr, &world.fake, nullptr},
                    config("push-chain"), nullptr, leases.get());
  ASSERT_TRUE(worker.start());
  send(30);
  auto messages = messages_in(*log_);
  ASSERT_EQ(messages.size(), 30u);
  // Only the last windows are open (about the last three messages): the position is past the rest.
  int64_t past = messages[25].offset;
  ConsumerOptions group;
  group.group = "push-chain";
  auto reader = log_->consumer(group);
  auto at = [&] {
    auto c = reader->committed({std::string(kEventsTopic), 0});
    return c && *c ? **c : -1;
  };
  EXPECT_TRUE(t::wait_until([&] { return at() >= past; }, 10s))
      << "committed " << at() << ", expected at least " << past << " (" << worker.stats().sent << " sent)";
  worker.stop();
}

// Stopped mid-chain and started again (as after a kill, from the committed position and the saved
// progress): every window is notified under its key with the same payload, none formed anew from
// a part of one already sent.
TEST_F(PushChain, ARestartMidChainFormsTheSameWindows) {
  build();
  auto leases = make_local_leases();
  auto c = config("push-chain-restart");
  FakePushProvider first_fake, second_fake;
  {
    PushWorker first(*log_, *world.sessions, world.model, PushProviders{nullptr, &first_fake, nullptr}, c, nullptr,
                     leases.get());
    ASSERT_TRUE(first.start());
    send_irregular(40);
    ASSERT_TRUE(t::wait_until([&] { return first.stats().events >= 40; }, 20s)) << first.stats().events;
    std::this_thread::sleep_for(300ms);  // the windows the log's progress closed are sent
    first.stop();
  }
  send_irregular(40);
  close_all();
  PushWorker second(*log_, *world.sessions, world.model, PushProviders{nullptr, &second_fake, nullptr}, c, nullptr,
                    leases.get());
  ASSERT_TRUE(second.start());
  auto want = expected(c.collapse_window.count());
  std::map<std::string, std::pair<uint32_t, uint64_t>> got;
  int repeated = 0;
  ASSERT_TRUE(t::wait_until(
      [&] {
        got.clear();
        repeated = 0;
        add_calls(first_fake, got, repeated);
        add_calls(second_fake, got, repeated);
        return got.size() >= want.size();
      },
      20s))
      << got.size() << " of " << want.size();
  std::this_thread::sleep_for(300ms);  // anything more would come now
  got.clear();
  repeated = 0;
  add_calls(first_fake, got, repeated);
  add_calls(second_fake, got, repeated);
  EXPECT_EQ(got, want);
  EXPECT_GT(second_fake.calls().size(), 0u);
  second.stop();
}

// A provider answering per device: `answers` (sent when not named), and device `slow` held until
// release(). Records each notification. Thread-safe.
class ByDeviceProvider final : public PushProvider {
 public:
  std::map<uint64_t, SendOutcome> answers;
  uint64_t slow = 0;

  SendResult send(const PushNotification& n) override {
    std::unique_lock lock(mu_);
    calls_.push_back(n);
    if (n.device.device_id == slow) cv_.wait_for(lock, 20s, [this] { return released_; });
    auto it = answers.find(n.device.device_id);
    SendOutcome o = it == answers.end() ? SendOutcome::sent : it->second;
    if (o == SendOutcome::invalid_token) return {o, "unregistered", PushFailure::invalid_token};
    return {o, "", PushFailure::none};
  }
  void release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }
  std::vector<uint64_t> devices_called() {
    std::lock_guard lock(mu_);
    std::vector<uint64_t> out;
    for (const auto& n : calls_) out.push_back(n.device.device_id);
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::vector<PushNotification> calls_;
};

// The commands a worker handed to the in-process transport within `wait`.
std::vector<fb::CommandEnvelopeT> commands_of(CommandTransport& commands, size_t want, std::chrono::milliseconds wait) {
  std::vector<fb::CommandEnvelopeT> out;
  auto reader = commands.reader(ConsumerOptions{});
  std::vector<Record> batch;
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    EXPECT_TRUE(reader->poll(batch, 100ms));
    for (const auto& r : batch) {
      auto c = read_command(r.value);
      EXPECT_TRUE(c) << "an undecodable command";
      if (c) out.emplace_back(std::move(*std::unique_ptr<fb::CommandEnvelopeT>((*c)->UnPack())));
    }
  }
  return out;
}

// A provider's invalid-token answer removes the device the way DELETE /api/v1/devices/{id} does: a
// RemoveDevice command on the user's stream, with a dedupe key of the device's, so the engine
// writes DeviceRemoved once. The worker sends nothing more to it meanwhile (the read model lags).
TEST_F(PushLocal, AnInvalidTokenRemovesTheDeviceByACommand) {
  PushWorld w;
  w.build(*log_, 1);
  auto commands = in_process_commands(1);
  ByDeviceProvider provider;
  provider.answers[20] = SendOutcome::invalid_token;
  PushWorker worker(*log_, *w.sessions, w.model, PushProviders{nullptr, &provider, nullptr}, quick_config("push-gone"),
                    commands.get());
  ASSERT_TRUE(worker.start());
  w.send(single_stream(1, 2), 1, "hello Bob");
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().devices_removed >= 1 && worker.stats().sent >= 1; }, 20s));
  auto sent = commands_of(*commands, 1, 5s);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].stream, user_stream(2));
  EXPECT_EQ(sent[0].actor, 2u);
  EXPECT_EQ(sent[0].client_msg_id, "push-invalid-token:20");
  ASSERT_EQ(sent[0].command.type, fb::Command::RemoveDevice);
  EXPECT_EQ(sent[0].command.AsRemoveDevice()->device_id, 20u);
  EXPECT_FALSE(sent[0].reply_to) << "nobody waits for the answer";
  EXPECT_EQ(worker.stats().failures[static_cast<size_t>(PushFailure::invalid_token)], 1u);
  EXPECT_EQ(worker.stats().dead_lettered, 0u) << "a removed device is not a dead letter";

  // The model still lists device 20 (the engine's DeviceRemoved has not reached it): not sent to.
  w.send(single_stream(1, 2), 1, "again");
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 2; }, 20s));
  std::this_thread::sleep_for(500ms);
  auto called = provider.devices_called();
  std::sort(called.begin(), called.end());  // a window's devices are sent to concurrently
  EXPECT_EQ(called, (std::vector<uint64_t>{20, 21, 21})) << "device 20 once, 21 twice";
  EXPECT_TRUE(commands_of(*commands, 1, 300ms).empty()) << "removed once";
  worker.stop();
}

// Sends run on a pool: a device whose receiver does not answer holds one send, not Bob's other
// device nor another user's.
TEST_F(PushLocal, ASlowSendDoesNotHoldTheOthers) {
  PushWorld w;
  w.build(*log_, 2);
  w.model.put(user_with_devices(5, "Eve", {fcm(50)}));
  ByDeviceProvider provider;
  provider.slow = 20;
  PushWorker worker(*log_, *w.sessions, w.model, PushProviders{nullptr, &provider, nullptr}, quick_config("push-slow"));
  ASSERT_TRUE(worker.start());
  w.send(single_stream(1, 2), 1, "to Bob");
  w.send(single_stream(1, 5), 1, "to Eve");
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 2; }, 20s))
      << "device 21 and Eve's 50 were held by device 20: sent " << worker.stats().sent;
  EXPECT_EQ(worker.stats().in_flight, 1u) << "device 20 still sending";
  provider.release();
  ASSERT_TRUE(t::wait_until([&] { return worker.stats().sent >= 3; }, 20s));
  EXPECT_EQ(worker.stats().in_flight, 0u);
  auto called = provider.devices_called();
  std::sort(called.begin(), called.end());
  EXPECT_EQ(called, (std::vector<uint64_t>{20, 21, 50}));
  worker.stop();
}

// The single-worker rule: a second worker with push enabled refuses to start, naming the setting
// and the holder, while the first runs and renews its lease; once the first stops (releasing it),
// or is killed (its lease expires), another starts.
TEST_F(PushLocal, ASecondWorkerRefusesToStartWhileOneRuns) {
  PushWorld w;
  w.build(*log_, 1);
  auto leases = make_local_leases();
  auto config = quick_config("push-one");
  config.lease_ttl = 300ms;
  auto worker = [&](FakePushProvider& p) {
    return std::make_unique<PushWorker>(*log_, *w.sessions, w.model, PushProviders{nullptr, &p, nullptr}, config,
                                        nullptr, leases.get());
  };
  FakePushProvider a, b;
  auto first = worker(a);
  ASSERT_TRUE(first->start());
  std::this_thread::sleep_for(600ms);  // two lease times: the first renews it
  auto second = worker(b);
  auto started = std::chrono::steady_clock::now();
  auto refused = second->start();
  ASSERT_FALSE(refused) << "two push workers";
  EXPECT_GE(std::chrono::steady_clock::now() - started, 300ms) << "it waited for a lease a dead worker would free";
  EXPECT_NE(refused.error().message().find("push.enabled"), std::string::npos) << refused.error().message();
  EXPECT_NE(refused.error().message().find(":"), std::string::npos) << "names the holder: " << refused.error().message();
  w.send(single_stream(1, 2), 1, "only once");
  ASSERT_TRUE(t::wait_until([&] { return first->stats().sent >= 2; }, 20s));
  EXPECT_TRUE(b.calls().empty());
  first->stop();
  first.reset();
  auto third = worker(b);
  ASSERT_TRUE(third->start()) << "the stopped worker released its lease";
  third->stop();

  // A killed worker never releases: its lease runs out.
  auto killed = leases->acquire("push", "killed-host:1:0", 300ms);
  ASSERT_TRUE(killed && killed->empty());
  auto fourth = worker(b);
  started = std::chrono::steady_clock::now();
  ASSERT_TRUE(fourth->start());
  EXPECT_GE(std::chrono::steady_clock::now() - started, 250ms);
  fourth->stop();
}

constexpr std::string_view kSecret = "a-secret-of-16+bytes";

std::unique_ptr<PushProvider> webhook(std::chrono::milliseconds timeout, bool allow_private,
                                      const Clock& clock = SystemClock::instance()) {
  auto p = make_webhook_provider(WebhookOptions{timeout, allow_private, std::string(kSecret)}, clock);
  EXPECT_TRUE(p) << p.error().to_string();
  return p ? std::move(*p) : nullptr;
}

PushNotification to_webhook(int port, std::string path) {
  PushNotification n;
  n.user_id = 2;
  n.device = DeviceView{20, "webhook", "http://127.0.0.1:" + std::to_string(port) + path, "", 0};
  n.key = "2/single_1_2/1/20";
  n.conversation_id = "single_1_2";
  n.seq = 1;
  n.sender_nickname = "Ann";
  n.preview = "hi";
  return n;
}

// A known answer, computed apart from the code under test:
//   printf '%s' '1764756000.{"key":"k"}' | openssl dgst -sha256 -hmac 'a-secret-of-16+bytes'
TEST(PushWebhook, TheSignatureIsHmacSha256OfTheTimestampAndBody) {
  EXPECT_EQ(webhook_signature(kSecret, 1764756000, R"({"key":"k"})"),
            "v1=6e8c45b61619477c7d5cc8a270d5821c21f1e4b0e1e99ee41d26ff151d85f1fa");
  EXPECT_NE(webhook_signature("another-secret-of-16", 1764756000, R"({"key":"k"})"),
            webhook_signature(kSecret, 1764756000, R"({"key":"k"})"));
  EXPECT_NE(webhook_signature(kSecret, 1764756001, R"({"key":"k"})"),
            webhook_signature(kSecret, 1764756000, R"({"key":"k"})"));
}

TEST(PushWebhook, AShortSecretIsRefused) {
  auto p = make_webhook_provider(WebhookOptions{2s, true, "short"});
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message().find("push.webhook_secret"), std::string::npos) << p.error().message();
}

TEST(PushWebhook, PostsTheSignedJsonWithItsIdempotencyKey) {
  t::HttpReceiver receiver;
  ManualClock clock(1764756000123);
  auto provider = webhook(2s, /*allow_private=*/true, clock);
  auto n = to_webhook(receiver.port(), "/hook/2");
  auto r = provider->send(n);
  EXPECT_EQ(r.outcome, SendOutcome::sent) << r.detail;
  // The same notification again (a retry): the same key, a signature of its own time.
  clock.advance_ms(5000);
  EXPECT_EQ(provider->send(n).outcome, SendOutcome::sent);
  auto reqs = receiver.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_TRUE(reqs[0].starts_with("POST /hook/2 HTTP/1.1\r\n")) << reqs[0];
  EXPECT_EQ(t::HttpReceiver::header(reqs[0], "Content-Type"), "application/json");
  EXPECT_EQ(t::HttpReceiver::body(reqs[0]), push_payload_json(n));
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(t::HttpReceiver::header(reqs[i], "Idempotency-Key"), "2/single_1_2/1/20");
    int64_t ts = 1764756000 + 5 * i;
    EXPECT_EQ(t::HttpReceiver::header(reqs[i], "X-Imlog-Timestamp"), std::to_string(ts));
    EXPECT_EQ(t::HttpReceiver::header(reqs[i], "X-Imlog-Signature"),
              webhook_signature(kSecret, ts, t::HttpReceiver::body(reqs[i])));
  }
}

// Each answer of the receiver and what it means: 2xx sent, 410 the device is gone, 5xx and 429
// tried again, another 4xx not worth retrying, no answer within the time-out tried again.
TEST(PushWebhook, EachAnswerHasItsOutcomeAndReason) {
  t::HttpReceiver receiver([](const std::string& req) {
    std::string path = req.substr(5, req.find(' ', 5) - 5);
    if (path == "/ok") return t::HttpAnswer{204};
    if (path == "/gone") return t::HttpAnswer{410};
    if (path == "/busy") return t::HttpAnswer{503};
    if (path == "/slow-down") return t::HttpAnswer{429};
    if (path == "/bad") return t::HttpAnswer{400};
    if (path == "/hang") return t::HttpAnswer{200, "", 5s};
    return t::HttpAnswer{404};
  });
  auto provider = webhook(500ms, /*allow_private=*/true);
  struct Case {
    std::string path;
    SendOutcome outcome;
    PushFailure reason;
  };
  for (const auto& c : std::vector<Case>{{"/ok", SendOutcome::sent, PushFailure::none},
                                         {"/gone", SendOutcome::invalid_token, PushFailure::invalid_token},
                                         {"/busy", SendOutcome::retry, PushFailure::server_error},
                                         {"/slow-down", SendOutcome::retry, PushFailure::throttled},
                                         {"/bad", SendOutcome::failed, PushFailure::rejected},
                                         {"/hang", SendOutcome::retry, PushFailure::timeout}}) {
    auto started = std::chrono::steady_clock::now();
    auto r = provider->send(to_webhook(receiver.port(), c.path));
    EXPECT_EQ(r.outcome, c.outcome) << c.path << ": " << r.detail;
    EXPECT_EQ(r.reason, c.reason) << c.path << ": " << push_failure_name(r.reason);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 3s) << c.path << ": the time-out bounds a send";
  }
  EXPECT_EQ(receiver.requests().size(), 6u);
}

TEST(PushWebhook, ANobodyListeningIsRetryable) {
  int port = t::free_port();
  auto provider = webhook(1s, /*allow_private=*/true);
  auto r = provider->send(to_webhook(port, "/"));
  EXPECT_EQ(r.outcome, SendOutcome::retry);
  EXPECT_EQ(r.reason, PushFailure::network) << r.detail;
}

// A URL is the user's to choose: by default it must not reach loopback or private addresses, also
// when a name resolves to one.
TEST(PushWebhook, PrivateAddressesAreRefusedUnlessAllowed) {
  t::HttpReceiver receiver;
  auto provider = webhook(2s, /*allow_private=*/false);
  PushNotification n;
  for (std::string host : {"127.0.0.1", "localhost"}) {
    n.device = DeviceView{20, "webhook", "http://" + host + ":" + std::to_string(receiver.port()) + "/x", "", 0};
    auto r = provider->send(n);
    EXPECT_EQ(r.outcome, SendOutcome::failed) << host << ": " << r.detail;
    EXPECT_EQ(r.reason, PushFailure::address_refused);
    EXPECT_NE(r.detail.find("private or loopback"), std::string::npos) << r.detail;
  }
  for (std::string url : {"http://10.1.2.3/x", "http://192.168.0.1/x", "http://169.254.169.254/latest", "http://[::1]/x",
                          "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x"}) {
    n.device.token = url;
    EXPECT_EQ(provider->send(n).outcome, SendOutcome::failed) << url;
  }
  EXPECT_TRUE(receiver.requests().empty());
}

TEST(PushKafka, AnOfflineUsersDevicesGetOneNotificationPerWindow) {
  auto mock = t::KafkaMock::start_private();
  mock->create_topic(std::string(kEventsTopic), 2);
  mock->create_topic(std::string(kDeadLetterTopic), 1);
  auto log = KafkaLog::open(mock->log_config());
  ASSERT_TRUE(log) << log.error().to_string();
  collapses_and_skips(**log, 2, t::KafkaMock::unique_name("push"));
}

}  // namespace
}  // namespace imlog
