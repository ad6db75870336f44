// Writer fencing by epoch markers (docs/architecture.md, "Epochs and fencing"): two sequencers that
// both believe they own the partitions of im.events. The zombie is made with two consumer groups on
// one LocalLog: A (group engine-a) runs first; B (group engine-b) starts later, so its EpochStarted
// markers come after A's, and from then on both handle every command — B validly, A as a zombie
// whose events carry its old token — until A stops and B goes on alone. The test shows:
//   - every reader ignores the zombie's events after the new marker: the EpochFilter (LogTail),
//     a fresh LogDirectory (a zombie UserRegistered appended by hand after B's marker is unknown
//     to it), and a sequencer catching up from the log;
//   - the valid events are dense per stream, with one valid event per command and no duplicates,
//     and every command is acked by a valid event;
//   - a fresh sequencer (empty state dir, its own group, so it re-reads every command) rebuilds
//     the same state from the log: every old command is a Duplicate carrying the valid original's
//     ids, and new messages get the next seq after the last valid one;
//   - the zombie itself, restarted on its own state store, does not keep what it wrote while
//     fenced: its retries of those commands are answered with the VALID originals' ids.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "imlog/engine/local_log.h"
#include "imlog/engine/log_directory.h"
#include "imlog/engine/partitioner.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::EngineNode;
using testing::LogTail;
using testing::SeenEvent;

constexpr const char* kGateway = "gw-fence";
constexpr int32_t kPartitions = 2;

std::string join(const std::vector<std::string>& v, size_t limit = 20) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < limit; ++i) out += "\n  " + v[i];
  if (v.size() > limit) out += "\n  ... " + std::to_string(v.size() - limit) + " more";
  return out;
}

class SequencerFencing : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig c;
    c.dir = dir_.str() + "/log";
    auto l = LocalLog::open(c);
    ASSERT_TRUE(l) << l.error().to_string();
    log_ = std::move(*l);
    ASSERT_TRUE(testing::create_engine_topics(*log_, kPartitions, kGateway).has_value());
    auto t = LogTail::open(*log_, kGateway);
    ASSERT_TRUE(t) << t.error().to_string();
    tail_ = std::move(*t);
  }

  void TearDown() override {
    a_.reset();
    b_.reset();
    c_.reset();
    tail_.reset();
    log_.reset();
  }

  std::unique_ptr<EngineNode> start(const std::string& name, const Clock& clock = SystemClock::instance()) {
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine-" + name;
    ec.instance_id = "fence-" + name;
    ec.group = "engine-" + name;
    ec.checkpoint_interval = 50ms;
    auto n = EngineNode::start(*log_, ec, clock);
    EXPECT_TRUE(n) << n.error().to_string();
    if (!n) return nullptr;
    EXPECT_TRUE((*n)->wait_for_partitions(kPartitions)) << name << " did not take the partitions";
    return std::move(*n);
  }

  // Commands [from, to) of the crash-test load (groups, joins, messages to world and groups).
  void submit_range(uint64_t from, uint64_t to) {
    std::vector<fb::CommandEnvelopeT> cs;
    for (uint64_t i = from; i < to; ++i) cs.push_back(testing::crash_load_command(i, kGateway));
    ASSERT_TRUE(testing::submit(*log_, cs).has_value());
  }

  // Every command in [from, to) has a valid event and an answer that acks it (Accepted or
  // Duplicate), as its client would see.
  bool acked(uint64_t from, uint64_t to) {
    for (uint64_t i = from; i < to; ++i) {
      if (tail_->event_for_request(i + 1) == nullptr) return false;
      auto replies = tail_->replies_for(i + 1);
      if (std::none_of(replies.begin(), replies.end(), [](const fb::CommandReplyT* r) {
            return r->status == fb::ReplyStatus::Accepted || r->status == fb::ReplyStatus::Duplicate;
          })) {
        return false;
      }
    }
    return true;
  }

  // Every Accepted reply names its command's valid event: an ack means durable and valid, so a
  // fenced writer must never ack what it wrote after the new epoch. The problems found.
  std::vector<std::string> check_acks_are_valid() {
    std::vector<std::string> out;
    for (const auto& r : tail_->replies()) {
      if (r.status != fb::ReplyStatus::Accepted) continue;
      const SeenEvent* e = tail_->event_for_request(r.request_id);
      if (e == nullptr || e->seq != r.seq || e->event_id != r.event_id) {
        out.push_back(r.client_msg_id + ": acked as seq " + std::to_string(r.seq) + " event " +
                      std::to_string(r.event_id) + (e ? "; the valid event is seq " + std::to_string(e->seq) +
                                                            " event " + std::to_string(e->event_id)
                                                      : "; no valid event"));
      }
    }
    return out;
  }

  // How many replies each command in [from, to) has so far (index: command).
  std::map<uint64_t, size_t> reply_counts(uint64_t from, uint64_t to) {
    std::map<uint64_t, size_t> out;
    for (uint64_t i = from; i < to; ++i) out[i] = tail_->replies_for(i + 1).size();
    return out;
  }

  // Waits until every command of `before` has a reply beyond the count there.
  bool wait_new_replies(const std::map<uint64_t, size_t>& before) {
    auto ok = tail_->wait_for(
        [&] {
          for (auto [i, n] : before) {
            if (tail_->replies_for(i + 1).size() <= n) return false;
          }
          return true;
        },
        30s);
    return ok && *ok;
  }

  // Every reply to the commands of `before` beyond the count there is a Duplicate carrying its
  // valid original's ids; the problems found.
  std::vector<std::string> check_new_duplicates(const std::map<uint64_t, size_t>& before) {
    std::vector<std::string> out;
    for (auto [i, n] : before) {
      auto replies = tail_->replies_for(i + 1);
      const SeenEvent* orig = tail_->event_for_request(i + 1);
      std::string cmid = "c-" + std::to_string(i);
      if (replies.size() <= n || orig == nullptr) {
        out.push_back(cmid + ": " + std::to_string(replies.size() - std::min(n, replies.size())) +
                      " new replies, " + (orig ? "a" : "no") + " valid event");
        continue;
      }
      for (size_t k = n; k < replies.size(); ++k) {
        const fb::CommandReplyT& r = *replies[k];
        if (r.status != fb::ReplyStatus::Duplicate || r.seq != orig->seq || r.event_id != orig->event_id) {
          out.push_back(cmid + ": reply " + std::string(fb::EnumNameReplyStatus(r.status)) + " seq " +
                        std::to_string(r.seq) + " event " + std::to_string(r.event_id) +
                        "; the valid original is seq " + std::to_string(orig->seq) + " event " +
                        std::to_string(orig->event_id));
        }
      }
    }
    return out;
  }

  // The whole log is consistent: invariants, and one valid event per command in [0, commands).
  void expect_consistent(uint64_t commands) {
    auto read = tail_->read_to_end();
    ASSERT_TRUE(read) << read.error().to_string();
    auto problems = testing::check_log_invariants(tail_->valid());
    std::map<std::string, int> per_command;
    for (const auto& e : tail_->valid()) per_command[e.client_msg_id]++;
    for (uint64_t i = 0; i < commands; ++i) {
      std::string cmid = "c-" + std::to_string(i);
      if (per_command[cmid] != 1) {
        problems.push_back(cmid + " has " + std::to_string(per_command[cmid]) + " valid events");
      }
    }
    EXPECT_TRUE(problems.empty()) << join(problems);
  }

  testing::TempDir dir_{"imlog-seq-fencing"};
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<LogTail> tail_;
  // A's clock runs an hour ahead, so the zombie's event ids differ from the valid ones (with one
  // clock, both writers would make the same ids for the same commands, and a test could not tell
  // the zombie's answers from the valid ones).
  ManualClock a_clock_{SystemClock::instance().now_ms() + 3'600'000};
  std::unique_ptr<EngineNode> a_, b_, c_;
};

TEST_F(SequencerFencing, ZombieEventsAreIgnoredByEveryReaderAndStateRebuildsFromTheValidLog) {
  // 1. A alone: groups, joins, messages.
  a_ = start("a", a_clock_);
  ASSERT_NE(a_, nullptr);
  submit_range(0, 40);
  auto ok = tail_->wait_for([&] { return acked(0, 40); }, 30s);
  ASSERT_TRUE(ok && *ok) << "A did not ack commands 0..39";

  // 2. B takes the same partitions in another group: its markers fence A. B re-reads every
  //    command from the start of im.commands; it caught up from the log, so all are duplicates.
  auto before = reply_counts(0, 40);
  b_ = start("b");
  ASSERT_NE(b_, nullptr);
  ASSERT_TRUE(wait_new_replies(before)) << "B did not answer commands 0..39 again";
  auto dups = check_new_duplicates(before);
  EXPECT_TRUE(dups.empty()) << "B's duplicates:" << join(dups);

  // 3. New commands reach both. A, the zombie, still appends (with its old token); B's events are
  //    the valid ones.
  uint64_t a_events = a_->sequencer().stats().events.load();
  submit_range(40, 100);
  ok = tail_->wait_for([&] { return acked(40, 100); }, 30s);
  ASSERT_TRUE(ok && *ok) << "commands 40..99 were not all acked by valid events";
  ASSERT_TRUE(testing::wait_until([&] { return a_->sequencer().stats().events.load() > a_events; }, 30s))
      << "the zombie wrote nothing after B's markers; the test shows nothing";
  a_->stop();
  EXPECT_EQ(a_->sequencer().failure(), "");
  // B alone: history the zombie never saw.
  submit_range(100, 110);
  ok = tail_->wait_for([&] { return acked(100, 110); }, 30s);
  ASSERT_TRUE(ok && *ok) << "B did not ack commands 100..109";
  b_->stop();
  EXPECT_EQ(b_->sequencer().failure(), "");

  // 4. By hand, as a zombie would: a registration with A's token, after B's marker.
  ASSERT_TRUE(tail_->read_to_end().has_value());
  std::map<int32_t, uint64_t> a_token, b_token;
  std::map<int32_t, int64_t> b_marker_offset;
  for (const auto& m : tail_->markers()) {
    if (m.writer == "fence-a") a_token[m.partition] = m.token;
    if (m.writer == "fence-b") {
      b_token[m.partition] = m.token;
      b_marker_offset[m.partition] = m.offset;
    }
  }
  ASSERT_EQ(a_token.size(), static_cast<size_t>(kPartitions));
  ASSERT_EQ(b_token.size(), static_cast<size_t>(kPartitions));
  const std::string zombie_name = "zed";
  const uint64_t zombie_user = 999'983;
  {
    fb::EventEnvelopeT e;
    e.stream = names_stream(zombie_name);
    e.seq = 1;
    e.event_id = 1;
    e.timestamp_ms = 1'700'000'000'000;
    int32_t p = partition_for(e.stream, kPartitions);
    e.epoch = a_token[p];
    fb::UserRegisteredT u;
    u.user_id = zombie_user;
    u.username = zombie_name;
    u.password_hash = "x";
    e.event.Set(std::move(u));
    ASSERT_TRUE(log_->append_wait(kEventsTopic, {OutRecord{e.stream, encode_event(e), p}}).has_value());
  }

  // Every reader ignores the zombie's events after B's markers.
  ASSERT_TRUE(tail_->read_to_end().has_value());
  std::vector<std::string> problems;
  size_t zombie_after_b = 0;
  for (const auto& e : tail_->rejected()) {
    if (e.epoch == a_token[e.partition] && e.offset > b_marker_offset[e.partition]) ++zombie_after_b;
  }
  for (const auto& e : tail_->valid()) {
    if (e.offset > b_marker_offset[e.partition] && e.epoch != b_token[e.partition]) {
      problems.push_back("a valid event after B's marker with another token: " + e.stream + " seq " +
                         std::to_string(e.seq));
    }
  }
  EXPECT_TRUE(problems.empty()) << join(problems);
  EXPECT_GE(zombie_after_b, 2u) << "the zombie's events after B's markers (hand-made included)";
  auto false_acks = check_acks_are_valid();
  EXPECT_TRUE(false_acks.empty()) << "acks of events no reader accepts:" << join(false_acks);
  LogDirectory directory(*log_);
  ASSERT_TRUE(directory.start().has_value());
  EXPECT_FALSE(directory.user(zombie_user).exists) << "the directory took the zombie's registration";
  directory.stop();
  expect_consistent(110);
  std::cout << "zombie events after the new epoch: " << zombie_after_b << ", valid events: "
            << tail_->valid().size() << ", markers: " << tail_->markers().size() << std::endl;

  // 5. A fresh sequencer C (empty state, its own group) re-reads every command: all duplicates of
  //    the valid originals; then new commands get the next seqs, dense after the valid ones.
  before = reply_counts(0, 110);
  c_ = start("c");
  ASSERT_NE(c_, nullptr);
  ASSERT_TRUE(wait_new_replies(before)) << "C did not answer commands 0..109 again";
  dups = check_new_duplicates(before);
  EXPECT_TRUE(dups.empty()) << "C's duplicates:" << join(dups);
  auto last_before = testing::last_seqs(tail_->valid());
  submit_range(110, 130);
  ok = tail_->wait_for([&] { return acked(110, 130); }, 30s);
  ASSERT_TRUE(ok && *ok) << "C did not ack commands 110..129";
  std::map<std::string, uint64_t> first_new;
  for (uint64_t i = 110; i < 130; ++i) {
    const SeenEvent* e = tail_->event_for_request(i + 1);
    if (!first_new.contains(e->stream)) first_new[e->stream] = e->seq;
  }
  for (const auto& [stream, seq] : first_new) {
    EXPECT_EQ(seq, last_before[stream] + 1) << stream << ": C's first new seq";
  }
  c_->stop();
  EXPECT_EQ(c_->sequencer().failure(), "");
  expect_consistent(130);

  // 6. The zombie, restarted on its own store and group, alone: what it wrote while fenced is not
  //    its state, and it knows the history written since by B and C. Its answers to retries of the
  //    commands it handled as a zombie carry the valid ids; its new events stay dense.
  before = reply_counts(40, 100);
  a_.reset();
  a_ = start("a", a_clock_);
  ASSERT_NE(a_, nullptr);
  submit_range(40, 100);  // client retries
  submit_range(130, 140);
  ASSERT_TRUE(wait_new_replies(before)) << "the restarted A did not answer the retries";
  ok = tail_->wait_for([&] { return acked(130, 140); }, 30s);
  ASSERT_TRUE(ok && *ok) << "the restarted A did not ack commands 130..139";
  a_->stop();
  EXPECT_EQ(a_->sequencer().failure(), "");
  ASSERT_TRUE(log_->flush(10s).has_value());  // the engine's replies are appended without waiting
  ASSERT_TRUE(tail_->read_to_end().has_value());
  problems = check_new_duplicates(before);
  EXPECT_TRUE(problems.empty()) << "the restarted zombie's answers to retries:" << join(problems);
  false_acks = check_acks_are_valid();
  EXPECT_TRUE(false_acks.empty()) << "acks of events no reader accepts:" << join(false_acks);
  expect_consistent(140);
}

}  // namespace
}  // namespace imlog
