// The dedupe window (engine/README.md, "The dedupe window"): the dedupe index stays exact while
// its storage is bounded. A command that carries a client_sent_at keeps its dedupe entry until the
// engine's clock passes client_sent_at + dedupe_window + clock_skew; a checkpoint then evicts it
// through the store's time index and raises the horizon H, which never goes down. A command not
// in the index and sent before H is refused `retry_window_expired`, never appended.
//
// The property runs a real Sequencer on a LocalLog with a ManualClock and checks, against a model
// that knows only what it has seen:
//   - no (stream, actor, client_msg_id) is ever appended twice (check_log_invariants, and each
//     answer against the event the model knows for the key);
//   - a retry sent within the window — client_sent_at at or after the highest clock the engine
//     was ever shown, less dedupe_window and clock_skew — gets the original's ack (Duplicate, the
//     original seq and event id);
//   - past it a retry gets the original's ack or `retry_window_expired`, never a second event;
//   - a command without client_sent_at is never refused for its age;
//   - a new command whose sent_at is ahead of the engine's clock by more than dedupe_window +
//     clock_skew is refused (`invalid`), never appended: its entry would outlive the window.
// The case mixes new commands (client clocks within the skew, some far behind, some far ahead,
// some without sent_at), retries at any later time, clock jumps forward past the window and back, checkpoints
// (every few ms), restarts (a checkpoint, then catch-up from it) and restarts on a deleted state
// store (a rebuild from the log with no horizon).
//
// Cases: 25 unless RC_PARAMS is set, each of at most ~40 steps.
//
// The second test prints the figure of docs/benchmarks.md ("Storage"): bytes of engine state per
// million messages, before and after the window passes.

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "imlog/core/clock.h"
#include "imlog/core/logging.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::EngineNode;
using testing::LogTail;

constexpr int kDefaultCases = 25;
constexpr const char* kGateway = "gw-window";
constexpr int64_t kWindow = 60'000;  // engine.dedupe_window of the cases: 1 minute
constexpr int64_t kSkew = 5'000;     // engine.clock_skew: 5 s

// ---- the steps of a case ----------------------------------------------------------------------

enum class Step { send, retry, forward, back, restart, wipe };

struct StepSpec {
  Step step = Step::send;
  int64_t amount = 0;  // send: the client's clock minus the engine's (or kNoSentAt); forward/back: ms
  size_t pick = 0;     // retry: which earlier send (modulo their number)
};

constexpr int64_t kNoSentAt = INT64_MIN;

int pick_in(int lo, int hi) { return *rc::gen::resize(100, rc::gen::inRange(lo, hi)); }

StepSpec gen_step() {
  StepSpec s;
  int what = pick_in(0, 20);
  if (what < 7) {
    s.step = Step::send;
    int clock = pick_in(0, 10);
    if (clock < 6) s.amount = pick_in(-static_cast<int>(kSkew), static_cast<int>(kSkew) + 1);  // within the skew
    else if (clock < 8) s.amount = -2 * kWindow - pick_in(0, 10'000);                          // far behind
    else if (clock < 9) s.amount = kWindow + kSkew + 1 + pick_in(0, 10'000);                   // far ahead
    else s.amount = kNoSentAt;
  } else if (what < 13) {
    s.step = Step::retry;
    s.pick = static_cast<size_t>(pick_in(0, 1000));
  } else if (what < 16) {
    s.step = Step::forward;
    constexpr int64_t kJumps[] = {1'000, kWindow / 2, kWindow + kSkew + 1, 3 * kWindow};
    s.amount = kJumps[pick_in(0, 4)];
  } else if (what < 18) {
    s.step = Step::back;
    s.amount = pick_in(1, static_cast<int>(2 * kWindow));
  } else {
    s.step = pick_in(0, 3) == 0 ? Step::wipe : Step::restart;
  }
  return s;
}

std::string show(const StepSpec& s) {
  switch (s.step) {
    case Step::send: return s.amount == kNoSentAt ? "send without sent_at" : "send, client clock " + std::to_string(s.amount);
    case Step::retry: return "retry #" + std::to_string(s.pick);
    case Step::forward: return "clock +" + std::to_string(s.amount);
    case Step::back: return "clock -" + std::to_string(s.amount);
    case Step::restart: return "restart";
    case Step::wipe: return "restart on a deleted state store";
  }
  return "?";
}

// ---- one case ---------------------------------------------------------------------------------

#define CASE_OK(expr)                                                                     \
  do {                                                                                    \
    auto&& case_ok_r_ = (expr);                                                           \
    if (!case_ok_r_) RC_FAIL(std::string(#expr) + ": " + case_ok_r_.error().to_string()); \
  } while (0)

struct Sent {
  std::string client_msg_id;
  int64_t sent_at = 0;  // 0: none
};

class Case {
 public:
  Case() : dir_("imlog-seq-window") {}

  // `registered`: wait until the directory knows the sender again (after a restart).
  void start(bool registered = true) {
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine";
    ec.instance_id = "window";
    ec.checkpoint_interval = 5ms;
    ec.dedupe_window = std::chrono::milliseconds(kWindow);
    ec.clock_skew = std::chrono::milliseconds(kSkew);
    auto n = EngineNode::start(*log_, ec, clock_);
    CASE_OK(n);
    node_ = std::move(*n);
    RC_ASSERT(node_->wait_for_partitions(1));
    if (registered) RC_ASSERT(testing::wait_until([&] { return node_->directory().user(ann_).exists; }, 20s));
  }

  void stop() {
    node_->stop();
    RC_ASSERT(node_->sequencer().failure().empty());
    node_.reset();
  }

  void open() {
    LocalLogConfig lc;
    lc.dir = dir_.str() + "/log";
    auto opened = LocalLog::open(lc);
    CASE_OK(opened);
    log_ = std::move(*opened);
    CASE_OK(testing::create_engine_topics(*log_, 1, kGateway));
    auto tail = LogTail::open(*log_, kGateway);
    CASE_OK(tail);
    tail_ = std::move(*tail);
    start(false);
    ann_ = user_id_for(name_bucket("ann"), 1);
    CASE_OK(testing::submit(*log_, {testing::register_user("ann", "reg", kGateway, 1)}));
    auto ok = tail_->wait_for([&] { return tail_->answered(1); }, 20s);
    CASE_OK(ok);
    RC_ASSERT(*ok);
    RC_ASSERT(testing::wait_until([&] { return node_->directory().user(ann_).exists; }, 20s));
  }

  void run(const std::vector<StepSpec>& steps) {
    open();
    std::vector<std::string> shown;
    for (const auto& s : steps) {
      shown.push_back(show(s));
      switch (s.step) {
        case Step::send: {
          Sent sent{"n" + std::to_string(sends_.size()), 0};
          if (s.amount != kNoSentAt) sent.sent_at = clock_.now_ms() + s.amount;
          sends_.push_back(sent);
          submit(sent, shown);
          break;
        }
        case Step::retry:
          if (!sends_.empty()) submit(sends_[s.pick % sends_.size()], shown);
          break;
        case Step::forward: set_clock(clock_.now_ms() + s.amount); break;
        case Step::back: set_clock(clock_.now_ms() - s.amount); break;
        case Step::restart:
          stop();
          start();
          break;
        case Step::wipe:
          stop();
          std::filesystem::remove_all(dir_.str() + "/engine");
          start();
          break;
      }
    }
    stop();
    CASE_OK(log_->flush(10s));
    CASE_OK(tail_->read_to_end());
    std::vector<std::string> problems = problems_;
    for (const auto& v : testing::check_log_invariants(tail_->valid(), tail_->refusals())) problems.push_back(v);
    size_t appended = 0;
    for (const auto& [cmid, event] : appended_) appended += event ? 1 : 0;
    if (tail_->valid().size() != 1 + appended) {
      problems.push_back(std::to_string(tail_->valid().size()) + " valid events; the model has 1 registration and " +
                         std::to_string(appended) + " messages");
    }
    RC_CLASSIFY(expired_ > 0, "a command refused retry_window_expired");
    RC_CLASSIFY(old_duplicates_ > 0, "a retry past the window answered with its original ack");
    RC_CLASSIFY(ahead_ > 0, "a command refused for a sent_at ahead of the clock");
    if (!problems.empty()) {
      std::string text = "steps:";
      for (size_t i = 0; i < shown.size(); ++i) text += "\n  " + std::to_string(i) + ": " + shown[i];
      text += "\nproblems:";
      for (const auto& p : problems) text += "\n  " + p;
      RC_FAIL(text);
    }
  }

  int expired_ = 0;
  int old_duplicates_ = 0;
  int ahead_ = 0;

 private:
  void set_clock(int64_t t) {
    clock_.set_ms(t);
    max_clock_ = std::max(max_clock_, t);
  }

  // The oldest client_sent_at whose retry must still get its original: no cut-off the engine
  // applied can be above the highest clock it was shown, less the window and the skew.
  [[nodiscard]] int64_t guaranteed_from() const { return max_clock_ - kWindow - kSkew; }

  void submit(const Sent& sent, std::vector<std::string>& shown) {
    uint64_t rid = next_request_++;
    auto c = testing::send_message(std::string(kWorldStream), ann_, sent.client_msg_id, "m", kGateway, rid);
    c.client_sent_at = sent.sent_at;
    CASE_OK(testing::submit(*log_, {c}));
    auto ok = tail_->wait_for([&] { return tail_->answered(rid); }, 30s);
    CASE_OK(ok);
    std::string what = "step " + std::to_string(shown.size() - 1) + " (" + sent.client_msg_id + ", sent_at " +
                       std::to_string(sent.sent_at) + ", clock " + std::to_string(clock_.now_ms()) + ")";
    shown.back() += " → " + sent.client_msg_id;
    if (!*ok) {
      problems_.push_back(what + ": no answer");
      return;
    }
    auto replies = tail_->replies_for(rid);
    const testing::SeenEvent* ev = tail_->event_for_request(rid);
    auto& original = appended_[sent.client_msg_id];  // the event of this key, once appended
    bool may_expire = sent.sent_at > 0 && sent.sent_at < guaranteed_from();
    bool ahead = sent.sent_at > clock_.now_ms() + kWindow + kSkew;  // of the engine's clock, past both
    if (ev != nullptr) {
      shown.back() += ": accepted";
      if (original) problems_.push_back(what + ": appended a second time (first as event " +
                                        std::to_string(original->event_id) + ")");
      if (ahead) problems_.push_back(what + ": appended though its sent_at is ahead of the clock past the window");
      original = *ev;
      return;
    }
    if (replies.size() != 1) {
      problems_.push_back(what + ": " + std::to_string(replies.size()) + " replies");
      return;
    }
    const fb::CommandReplyT& r = *replies[0];
    if (r.status == fb::ReplyStatus::Refused && r.code == "retry_window_expired") {
      shown.back() += ": retry_window_expired";
      ++expired_;
      if (!may_expire) {
        problems_.push_back(what + ": refused retry_window_expired within the window (guaranteed from " +
                            std::to_string(guaranteed_from()) + ")");
      }
      return;
    }
    if (r.status == fb::ReplyStatus::Refused && r.code == "invalid" && r.message.find("ahead of the server") != std::string::npos) {
      shown.back() += ": sent_at ahead";
      ++ahead_;
      if (!ahead) problems_.push_back(what + ": refused as ahead of the clock within the bound (" + r.message + ")");
      return;
    }
    if (r.status == fb::ReplyStatus::Duplicate) {
      shown.back() += ": duplicate";
      if (!original) {
        problems_.push_back(what + ": a duplicate of nothing appended");
      } else if (r.seq != original->seq || r.event_id != original->event_id) {
        problems_.push_back(what + ": duplicate names seq " + std::to_string(r.seq) + ", the original is seq " +
                            std::to_string(original->seq));
      }
      if (may_expire) ++old_duplicates_;
      return;
    }
    problems_.push_back(what + ": answered " + std::string(fb::EnumNameReplyStatus(r.status)) + " `" + r.code +
                        "` (" + r.message + ")");
  }

  testing::TempDir dir_;
  ManualClock clock_;
  int64_t max_clock_ = ManualClock().now_ms();
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<LogTail> tail_;
  std::unique_ptr<EngineNode> node_;
  uint64_t ann_ = 0;
  uint64_t next_request_ = 100;
  std::vector<Sent> sends_;
  std::map<std::string, std::optional<testing::SeenEvent>> appended_;
  std::vector<std::string> problems_;

 public:
  ~Case() {
    if (node_) node_->stop();
    node_.reset();
    tail_.reset();
  }
};

TEST(SequencerWindow, NoCommandIsAppendedTwiceAcrossTheWindow) {
  setup_logging(LogConfig{"warn", "text"});
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  if (std::getenv("RC_PARAMS") == nullptr) params.maxSuccess = kDefaultCases;
  rc::detail::TestMetadata metadata;
  metadata.id = "SequencerWindow/NoCommandIsAppendedTwiceAcrossTheWindow";
  metadata.description = metadata.id;
  auto result = rc::detail::checkTestable(
      [] {
        auto steps = *rc::gen::container<std::vector<StepSpec>>(
            static_cast<size_t>(pick_in(5, 40)), rc::gen::exec([] { return gen_step(); }));
        Case c;
        c.run(steps);
      },
      metadata, params);
  if (!result.is<rc::detail::SuccessResult>()) {
    std::ostringstream ss;
    rc::detail::printResultMessage(result, ss);
    FAIL() << ss.str() << "\n(seed " << params.seed << "; rerun with RC_PARAMS=\"seed=" << params.seed << "\")";
    return;
  }
  const auto& success = result.get<rc::detail::SuccessResult>();
  int expired = 0, old = 0, ahead = 0;
  for (const auto& [tags, n] : success.distribution) {
    for (const auto& t : tags) {
      if (t.find("retry_window_expired") != std::string::npos) expired += n;
      if (t.find("original ack") != std::string::npos) old += n;
      if (t.find("ahead of the clock") != std::string::npos) ahead += n;
    }
  }
  std::cout << "window cases passed: " << success.numSuccess << "; " << expired
            << " refused a command retry_window_expired, " << old
            << " answered a retry past the window from the index, " << ahead
            << " refused a sent_at ahead of the clock" << std::endl;
  if (std::getenv("RC_PARAMS") == nullptr) {
    EXPECT_GT(expired, 0) << "no case crossed the window: the property did not exercise eviction";
    EXPECT_GT(ahead, 0) << "no case sent a sent_at ahead of the clock past the skew";
  }
}

// ---- the figure: bytes of engine state per million messages -----------------------------------

// What the state store holds, read with RocksDB itself once the sequencer has stopped, after a full
// compaction with the store's own table options: live key and value bytes by key family (the
// first byte, state_store.h), and the SST files' size.
struct StoreBytes {
  std::map<char, uint64_t> live;  // family → key + value bytes
  uint64_t dedupe_entries = 0;
  uint64_t sst = 0;
  [[nodiscard]] uint64_t total_live() const {
    uint64_t t = 0;
    for (auto [k, v] : live) t += v;
    return t;
  }
};

StoreBytes measure_store(const std::string& dir) {
  StoreBytes out;
  rocksdb::Options options;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(options, dir, &raw);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;
  std::unique_ptr<rocksdb::DB> db(raw);
  EXPECT_TRUE(db->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr).ok());
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    char kind = it->key().size() > 0 ? it->key()[0] : '?';
    out.live[kind] += it->key().size() + it->value().size();
    if (kind == 'd') ++out.dedupe_entries;
  }
  EXPECT_TRUE(db->GetIntProperty("rocksdb.total-sst-files-size", &out.sst));
  return out;
}

std::string describe(const StoreBytes& b, uint64_t messages) {
  std::ostringstream os;
  uint64_t dedupe = (b.live.contains('d') ? b.live.at('d') : 0) + (b.live.contains('t') ? b.live.at('t') : 0);
  os << b.total_live() << " live bytes (by family:";
  for (auto [k, v] : b.live) os << " '" << k << "' " << v;
  os << "), " << b.dedupe_entries << " dedupe entries, " << b.sst << " bytes of SST files; per million messages: "
     << dedupe * 1'000'000 / messages << " of dedupe index ('d' + 't'), " << b.total_live() * 1'000'000 / messages
     << " live in all, " << b.sst * 1'000'000 / messages << " of SST";
  return os.str();
}

// One engine node's world for the tests below: a LocalLog with the engine's topics (one
// partition) in a fresh directory, a tail of kGateway's answers, a ManualClock, and a config whose
// state store lives there too; start() a node on them, again after a stop to restart it.
struct WindowRig {
  explicit WindowRig(const std::string& name) : dir("imlog-seq-window-" + name) {
    setup_logging(LogConfig{"warn", "text"});
    LocalLogConfig lc;
    lc.dir = dir.str() + "/log";
    auto opened = LocalLog::open(lc);
    EXPECT_TRUE(opened) << opened.error().to_string();
    if (!opened) return;
    log = std::move(*opened);
    EXPECT_TRUE(testing::create_engine_topics(*log, 1, kGateway).has_value());
    auto answers = LogTail::open(*log, kGateway);
    EXPECT_TRUE(answers) << answers.error().to_string();
    if (answers) tail = std::move(*answers);
    ec.state_dir = dir.str() + "/engine";
    ec.instance_id = "window-" + name;
    ec.checkpoint_interval = 50ms;  // the window's defaults: 168h and 10m
  }
  [[nodiscard]] bool ok() const { return log && tail; }
  // Registers "ann" on a started node and waits until its directory knows her; her id, 0 if not.
  uint64_t register_ann(EngineNode& node) {
    uint64_t ann = user_id_for(name_bucket("ann"), 1);
    EXPECT_TRUE(testing::submit(*log, {testing::register_user("ann", "reg", kGateway, 1)}).has_value());
    return testing::wait_until([&] { return node.directory().user(ann).exists; }, 30s) ? ann : 0;
  }
  std::unique_ptr<EngineNode> start() {
    auto n = EngineNode::start(*log, ec, clock);
    EXPECT_TRUE(n) << n.error().to_string();
    if (!n) return nullptr;
    EXPECT_TRUE((*n)->wait_for_partitions(1));
    return std::move(*n);
  }

  testing::TempDir dir;
  std::unique_ptr<LocalLog> log;
  std::unique_ptr<LogTail> tail;
  ManualClock clock;
  EngineConfig ec;
};

// The recall index forgets a message once the recall window has passed, and its horizon never
// goes down: after the clock steps back (here across a restart, to a second after the message),
// a recall of the forgotten message is refused `recall_window_passed` — never accepted, and never
// `not_found`, which the engine would remember for good although the message was one.
TEST(SequencerWindow, AForgottenMessageStaysPastTheRecallWindowWhenTheClockStepsBack) {
  WindowRig rig("recall");
  ASSERT_TRUE(rig.ok());
  auto node = rig.start();
  ASSERT_TRUE(node);
  uint64_t ann = rig.register_ann(*node);
  ASSERT_NE(ann, 0u);
  const std::string world(kWorldStream);
  const int64_t sent_at = rig.clock.now_ms();
  ASSERT_TRUE(testing::submit(*rig.log, {testing::send_message(world, ann, "oops", "oops", kGateway, 2)}).has_value());
  auto sent = rig.tail->wait_for([&] { return rig.tail->answered(2); }, 30s);
  ASSERT_TRUE(sent && *sent);
  ASSERT_NE(rig.tail->event_for_request(2), nullptr);
  const uint64_t message = rig.tail->event_for_request(2)->event_id;

  rig.clock.advance_ms(rig.ec.limits.recall_window_ms + 60'000);
  node->stop();  // its last checkpoint evicts the message from the recall index
  ASSERT_TRUE(node->sequencer().failure().empty()) << node->sequencer().failure();
  node.reset();
  rig.clock.set_ms(sent_at + 1'000);  // stepped back: by this clock the window has not passed
  node = rig.start();
  ASSERT_TRUE(node);
  auto recall = testing::command_envelope(world, ann, "recall-oops", kGateway, 3);
  recall.command.Set(fb::RecallMessageT{{}, message});
  ASSERT_TRUE(testing::submit(*rig.log, {recall}).has_value());
  auto answered = rig.tail->wait_for([&] { return rig.tail->answered(3); }, 30s);
  ASSERT_TRUE(answered && *answered);
  auto replies = rig.tail->replies_for(3);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0]->status, fb::ReplyStatus::Refused);
  EXPECT_EQ(replies[0]->code, "recall_window_passed") << replies[0]->message;
  EXPECT_EQ(rig.tail->event_for_request(3), nullptr) << "the recall was accepted";
  node->stop();
  ASSERT_TRUE(node->sequencer().failure().empty()) << node->sequencer().failure();
}

// 20,000 messages to `world` (1,000 a second of the engine's clock), each with a client_msg_id of
// the JS SDK's form (a UUID, 36 bytes) and sent_at, go through a real sequencer; its state store is
// measured when it stops. Then the engine's clock passes the window, one more message comes and a
// checkpoint evicts, from the dedupe index and from the recall index (which forgets the messages
// past the recall window): what is left does not grow with messages (the stream state, the
// checkpoint, the registration's name and dedupe entry, which had no sent_at, the new message's
// dedupe and recall entries, and the horizons).
TEST(SequencerWindow, StateStoreBytesPerMillionMessages) {
  constexpr uint64_t kMessages = 20'000;
  WindowRig rig("bytes");
  ASSERT_TRUE(rig.ok());
  auto node = rig.start();
  ASSERT_TRUE(node);
  uint64_t ann = rig.register_ann(*node);
  ASSERT_NE(ann, 0u);
  std::vector<fb::CommandEnvelopeT> batch;
  for (uint64_t i = 0; i < kMessages; ++i) {
    char cmid[40];
    std::snprintf(cmid, sizeof cmid, "%08llx-1f2e-4d3c-8b4a-%012llx", static_cast<unsigned long long>(i),
                  static_cast<unsigned long long>(i * 7919));
    auto c = testing::send_message(std::string(kWorldStream), ann, cmid, "hello", kGateway, 100 + i);
    c.client_sent_at = rig.clock.now_ms() - 1'000;
    batch.push_back(std::move(c));
    if (batch.size() == 1000) {
      ASSERT_TRUE(testing::submit(*rig.log, batch).has_value());
      batch.clear();
      rig.clock.advance_ms(1'000);
    }
  }
  auto all = rig.tail->wait_for([&] { return rig.tail->answered(100 + kMessages - 1); }, 300s);
  ASSERT_TRUE(all && *all);
  node->stop();
  ASSERT_TRUE(node->sequencer().failure().empty()) << node->sequencer().failure();
  node.reset();
  StoreBytes before = measure_store(rig.ec.state_dir);
  EXPECT_EQ(before.dedupe_entries, kMessages + 1);

  rig.clock.advance_ms(std::chrono::duration_cast<std::chrono::milliseconds>(rig.ec.dedupe_window + rig.ec.clock_skew).count());
  node = rig.start();
  ASSERT_TRUE(node);
  ASSERT_TRUE(testing::wait_until([&] { return node->directory().user(ann).exists; }, 30s));
  auto last = testing::send_message(std::string(kWorldStream), ann, "after-the-window", "hello", kGateway, 99);
  last.client_sent_at = rig.clock.now_ms();
  ASSERT_TRUE(testing::submit(*rig.log, {last}).has_value());
  auto answered = rig.tail->wait_for([&] { return rig.tail->answered(99); }, 30s);
  ASSERT_TRUE(answered && *answered);
  node->stop();  // its last checkpoint evicts
  ASSERT_TRUE(node->sequencer().failure().empty()) << node->sequencer().failure();
  node.reset();
  StoreBytes after = measure_store(rig.ec.state_dir);
  EXPECT_EQ(after.dedupe_entries, 2u) << "the registration's entry (no sent_at) and the last message's";
  EXPECT_LT(after.live['t'], 100u) << "one time index entry";
  EXPECT_EQ(before.live['r'], kMessages * (1 + 8 + 5 + 25)) << "a recall entry per message: 'r', id, `world`, value";
  EXPECT_LT(after.live['r'], 100u) << "the last message's recall entry";
  EXPECT_LT(after.total_live() * 100, before.total_live());
  std::cout << "[ figure   ] engine state, " << kMessages << " messages with sent_at, before the window passes: "
            << describe(before, kMessages) << std::endl;
  std::cout << "[ figure   ] engine state after the window passed and a checkpoint evicted: "
            << describe(after, kMessages) << std::endl;
}

}  // namespace
}  // namespace imlog
