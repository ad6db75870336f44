// The sequencer fails closed on a state store it cannot read (engine/README.md, "The sequencer").
//
// A property over random schedules: commands — group setup, new messages to `world` and two
// groups, registrations (some of names already taken), and client retries of earlier
// client_msg_ids — are submitted in chunks to a real Sequencer on a LocalLog whose state store
// (fault_state_store.h) fails reads now and then: the n-th read of a run, or every read of one key
// (a stream's state, one command's dedupe entry, a username). A failing read stops the sequencer
// (its failure()); the test starts another one on the same log and store with the next fault, as a
// supervisor would, until the faults run out. The stream cache is dropped at every checkpoint and
// checkpoints are frequent, so states and dedupe entries are read from the store all the time.
//
// Afterwards, from the log and the answers on the delivery topic:
//   - per stream, timeline seqs are 1, 2, 3, ... (no seq reused, none skipped), no
//     (stream, actor, client_msg_id) has two valid events, no event id is repeated;
//   - every Accepted answer names exactly one valid event, of its command, and no event is named by
//     two Accepted answers; every Duplicate answer names the valid event of its command;
//   - every command ends with an answer other than `unavailable`.
//
// Cases: 20 unless RC_PARAMS is set.

#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "fault_state_store.h"
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
using testing::FaultStateStore;
using testing::LogTail;
using testing::StoreFaults;

constexpr int kDefaultCases = 20;
constexpr const char* kGateway = "gw-fault";
constexpr int kUsers = 3;       // actors 1..3
constexpr int kUsernames = 4;   // registrations choose among u0..u3, so some are taken
constexpr int kMaxRestarts = 40;

int pick(int lo, int hi) { return *rc::gen::resize(100, rc::gen::inRange(lo, hi)); }

// One fault, armed for one run of the sequencer.
struct Fault {
  enum class Kind { nth, stream, dedupe, username } kind = Kind::nth;
  uint64_t n = 0;                                // nth: the n-th read of the run
  std::optional<StoreFaults::Read> read;         // nth: of this kind only
  std::string key;                               // stream, username
  size_t command = 0;                            // dedupe: that command's dedupe key

  std::string show() const {
    switch (kind) {
      case Kind::nth: return "read #" + std::to_string(n) + (read ? " of kind " + std::to_string(static_cast<int>(*read)) : "");
      case Kind::stream: return "every load of " + key;
      case Kind::dedupe: return "every dedupe lookup of command " + std::to_string(command);
      case Kind::username: return "every lookup of username " + key;
    }
    return "";
  }
};

struct Case {
  std::vector<fb::CommandEnvelopeT> commands;  // request id = index + 1
  std::vector<std::string> shown;
  std::vector<size_t> chunks;                  // commands per submission
  std::vector<Fault> faults;                   // run i arms faults[i]; later runs none
  uint64_t max_batch = 4096;
  uint32_t max_inflight = 8;
};

uint64_t request_id_of(size_t i) { return i + 1; }

fb::CommandEnvelopeT copy_command(const fb::CommandEnvelopeT& c) {
  std::string bytes = encode_command(c);
  fb::CommandEnvelopeT out;
  flatbuffers::GetRoot<fb::CommandEnvelope>(bytes.data())->UnPackTo(&out);
  return out;
}

Case generate() {
  Case k;
  auto add = [&](fb::CommandEnvelopeT c, std::string shown) {
    k.shown.push_back("#" + std::to_string(k.commands.size()) + " " + shown);
    k.commands.push_back(std::move(c));
  };
  auto rid = [&] { return request_id_of(k.commands.size()); };
  // Two public groups and their members: most messages to them are accepted.
  add(testing::create_group(1, 1, {}, "g1", kGateway, rid()), "user 1 creates group_1");
  add(testing::create_group(2, 2, {}, "g2", kGateway, rid()), "user 2 creates group_2");
  add(testing::join_group(1, 2, "j12", kGateway, rid()), "user 2 joins group_1");
  add(testing::join_group(1, 3, "j13", kGateway, rid()), "user 3 joins group_1");
  add(testing::join_group(2, 1, "j21", kGateway, rid()), "user 1 joins group_2");
  add(testing::join_group(2, 3, "j23", kGateway, rid()), "user 3 joins group_2");
  int n = pick(10, 50);
  for (int i = 0; i < n; ++i) {
    int what = pick(0, 10);
    if (what < 3 && !k.commands.empty()) {
      size_t j = static_cast<size_t>(pick(0, static_cast<int>(k.commands.size())));
      auto c = copy_command(k.commands[j]);
      c.reply_to->request_id = rid();
      c.trace_id = "t-" + std::to_string(rid());
      add(std::move(c), "retry of #" + std::to_string(j));
    } else if (what < 4) {
      std::string name = "u" + std::to_string(pick(0, kUsernames));
      add(testing::register_user(name, "r" + std::to_string(i), kGateway, rid()), "register " + name);
    } else {
      uint64_t actor = static_cast<uint64_t>(pick(1, kUsers + 1));
      int target = pick(0, 3);
      std::string stream = target == 0 ? std::string(kWorldStream) : group_stream(static_cast<uint64_t>(target));
      std::string cmid = "m" + std::to_string(i);
      add(testing::send_message(stream, actor, cmid, "hello " + std::to_string(i), kGateway, rid()),
          "user " + std::to_string(actor) + " sends " + cmid + " to " + stream);
    }
  }
  for (size_t left = k.commands.size(); left > 0;) {
    size_t c = std::min(left, static_cast<size_t>(pick(1, 9)));
    k.chunks.push_back(c);
    left -= c;
  }
  int faults = pick(1, 6);
  for (int i = 0; i < faults; ++i) {
    Fault f;
    int what = pick(0, 10);
    if (what < 5) {
      f.kind = Fault::Kind::nth;
      f.n = static_cast<uint64_t>(pick(1, 20));
      if (int r = pick(0, 6); r > 0 && r < 4) f.read = static_cast<StoreFaults::Read>(r);  // load, dedupe, name
    } else if (what < 7) {
      f.kind = Fault::Kind::stream;
      int s = pick(0, 4);
      f.key = s == 0 ? std::string(kWorldStream)
              : s < 3 ? group_stream(static_cast<uint64_t>(s))
                      : names_stream("u" + std::to_string(pick(0, kUsernames)));
    } else if (what < 9) {
      f.kind = Fault::Kind::dedupe;
      f.command = static_cast<size_t>(pick(0, static_cast<int>(k.commands.size())));
    } else {
      f.kind = Fault::Kind::username;
      f.key = "u" + std::to_string(pick(0, kUsernames));
    }
    k.faults.push_back(f);
  }
  constexpr uint64_t kBatches[] = {1, 4, 4096};
  constexpr uint32_t kInflight[] = {1, 8};
  k.max_batch = kBatches[pick(0, 3)];
  k.max_inflight = kInflight[pick(0, 2)];
  return k;
}

std::string join_lines(const std::vector<std::string>& v, size_t limit = 40) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < limit; ++i) out += "\n  " + v[i];
  if (v.size() > limit) out += "\n  ... " + std::to_string(v.size() - limit) + " more";
  return out;
}

#define CASE_OK(expr)                                                                     \
  do {                                                                                    \
    auto&& case_ok_r_ = (expr);                                                           \
    if (!case_ok_r_) RC_FAIL(std::string(#expr) + ": " + case_ok_r_.error().to_string()); \
  } while (0)

// A sequencer (and its directory) on the faulty store, over the distributed mode's transports on
// the log, so commands a stopped sequencer did not commit are read again by the next one.
struct Engine {
  std::unique_ptr<CommandTransport> commands;
  std::unique_ptr<DeliveryTransport> deliveries;
  std::unique_ptr<LogDirectory> directory;
  std::unique_ptr<Sequencer> sequencer;

  ~Engine() { stop(); }
  void stop() {
    if (sequencer) sequencer->stop();
    if (directory) directory->stop();
  }
};

Result<std::unique_ptr<Engine>> start_engine(EventLog& log, const EngineConfig& config,
                                             std::shared_ptr<StoreFaults> faults,
                                             KeyStore& keys = testing::test_keys()) {
  auto e = std::make_unique<Engine>();
  e->commands = log_commands(log);
  e->deliveries = log_deliveries(log);
  e->directory = std::make_unique<LogDirectory>(log);
  IMLOG_TRY(e->directory->start());
  auto store = StateStore::open(config.state_dir);
  IMLOG_TRY(store);
  auto seq = Sequencer::create(log, SequencerTransports{*e->commands, *e->deliveries}, *e->directory, keys,
                               SystemClock::instance(), config,
                               std::make_unique<FaultStateStore>(std::move(*store), std::move(faults)));
  IMLOG_TRY(seq);
  e->sequencer = std::move(*seq);
  IMLOG_TRY(e->sequencer->start());
  return e;
}

// A LocalLog with the engine's topics under a fresh directory, a tail of kGateway's answers, and an
// engine config whose state store lives there too.
class OneEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig lc;
    lc.dir = dir_.str() + "/log";
    auto log = LocalLog::open(lc);
    ASSERT_TRUE(log) << log.error().to_string();
    log_ = std::move(*log);
    ASSERT_TRUE(testing::create_engine_topics(*log_, 2, kGateway));
    auto tail = LogTail::open(*log_, kGateway);
    ASSERT_TRUE(tail) << tail.error().to_string();
    tail_ = std::move(*tail);
  }
  [[nodiscard]] EngineConfig config(std::string instance) const {
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine";
    ec.instance_id = std::move(instance);
    return ec;
  }

  testing::TempDir dir_{"imlog-seq-one"};
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<LogTail> tail_;
};
class SequencerDedupe : public OneEngine {};
class SequencerKeys : public OneEngine {};
class SequencerRecall : public OneEngine {};

// A dedupe entry goes to the store once its event is durable, not a checkpoint later: a second of
// them written at once held the loop for tens of milliseconds. The retry of a command whose entry
// left memory that way is still answered with its original.
TEST_F(SequencerDedupe, AnEntryIsWrittenOnceItsEventIsDurableNotAtTheCheckpoint) {
  EngineConfig ec = config("ahead");
  ec.checkpoint_interval = std::chrono::hours(1);  // none while the test runs
  auto faults = std::make_shared<StoreFaults>();
  auto engine = start_engine(*log_, ec, faults);
  ASSERT_TRUE(engine) << engine.error().to_string();

  std::string world(kWorldStream);
  for (uint64_t request = 1; request <= 3; ++request) {
    auto c = testing::send_message(world, 4301, "ahead-" + std::to_string(request), "text", kGateway, request);
    ASSERT_TRUE(testing::submit(*log_, {c}));
  }
  auto answered = tail_->wait_for([&] { return tail_->answered(1) && tail_->answered(2) && tail_->answered(3); }, 30s);
  ASSERT_TRUE(answered && *answered);
  EXPECT_TRUE(testing::wait_until([&] { return faults->dedupe_written_ahead() >= 3; }, 10s))
      << faults->dedupe_written_ahead() << " of 3 entries written without a checkpoint";

  auto retry = testing::send_message(world, 4301, "ahead-1", "text, again", kGateway, 4);
  ASSERT_TRUE(testing::submit(*log_, {retry}));
  auto done = tail_->wait_for([&] { return tail_->answered(4); }, 30s);
  ASSERT_TRUE(done && *done);
  const auto* original = tail_->event_for_request(1);
  ASSERT_NE(original, nullptr);
  auto replies = tail_->replies_for(4);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0]->status, fb::ReplyStatus::Duplicate);
  EXPECT_EQ(replies[0]->seq, original->seq);
  EXPECT_EQ(replies[0]->event_id, original->event_id);
  EXPECT_EQ((*engine)->sequencer->failure(), "");
}

// A message's recall index entry goes to the store once its event is durable, ahead of any
// checkpoint, and a recall decided by the next engine finds it there (its pending entries are
// gone with the first engine); a second recall, found among the pending entries, is refused.
TEST_F(SequencerRecall, EntriesAreWrittenAheadAndARestartedEngineDecidesWithThem) {
  EngineConfig ec = config("recall");
  ec.checkpoint_interval = std::chrono::hours(1);  // none while the first engine runs
  auto faults = std::make_shared<StoreFaults>();
  auto engine = start_engine(*log_, ec, faults);
  ASSERT_TRUE(engine) << engine.error().to_string();
  std::string world(kWorldStream);
  ASSERT_TRUE(testing::submit(*log_, {testing::send_message(world, 4301, "to-recall", "oops", kGateway, 1)}));
  auto answered = tail_->wait_for([&] { return tail_->answered(1); }, 30s);
  ASSERT_TRUE(answered && *answered);
  const auto* message = tail_->event_for_request(1);
  ASSERT_NE(message, nullptr);
  const uint64_t message_id = message->event_id;
  EXPECT_TRUE(testing::wait_until([&] { return faults->recalls_written_ahead() >= 1; }, 10s))
      << "the message's entry was not written ahead of the checkpoint";
  (*engine)->stop();
  engine->reset();

  auto second = start_engine(*log_, ec, faults);
  ASSERT_TRUE(second) << second.error().to_string();
  auto recall = [&](const std::string& cmid, uint64_t request) {
    auto c = testing::command_envelope(world, 4301, cmid, kGateway, request);
    c.command.Set(fb::RecallMessageT{{}, message_id});
    return c;
  };
  ASSERT_TRUE(testing::submit(*log_, {recall("recall-1", 2), recall("recall-2", 3)}));
  auto done = tail_->wait_for([&] { return tail_->answered(2) && tail_->answered(3); }, 30s);
  ASSERT_TRUE(done && *done);
  const auto* recalled = tail_->event_for_request(2);
  ASSERT_NE(recalled, nullptr) << "the recall was not accepted";
  EXPECT_EQ(recalled->type, fb::Event::MessageRecalled);
  auto again = tail_->replies_for(3);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0]->status, fb::ReplyStatus::Refused);
  EXPECT_EQ(again[0]->code, "not_found") << again[0]->message;
  EXPECT_EQ((*second)->sequencer->failure(), "");
}

// The data key store failing while `down` (a MySQL key store away): the test process's keys
// otherwise.
class FlakyKeys final : public KeyStore {
 public:
  std::atomic<bool> down{false};
  Result<DataKey> key_for_writing(uint64_t user) override {
    if (down) return fail(KeyErrc::unavailable, "the key store is down (injected)", true);
    return testing::test_keys().key_for_writing(user);
  }
  Result<std::optional<DataKey>> key_for_reading(uint64_t user) override {
    if (down) return fail(KeyErrc::unavailable, "the key store is down (injected)", true);
    return testing::test_keys().key_for_reading(user);
  }
  Status destroy(uint64_t user) override {
    if (destroy_down) return fail(KeyErrc::unavailable, "the key store is down (injected)", true);
    return testing::test_keys().destroy(user);
  }
  std::atomic<bool> destroy_down{false};
};

// A message whose sender's key cannot be had is answered `unavailable`, takes no seq or event id,
// and leaves the engine running; the client's retry, once the store is back, is appended.
TEST_F(SequencerKeys, AKeyStoreThatFailsAnswersUnavailableAndTheEngineGoesOn) {
  EngineConfig ec = config("keys");
  FlakyKeys keys;
  keys.down = true;
  auto engine = start_engine(*log_, ec, std::make_shared<StoreFaults>(), keys);
  ASSERT_TRUE(engine) << engine.error().to_string();

  auto send = [&](uint64_t request) {
    auto c = testing::send_message(std::string(kWorldStream), 4101, "k-1", "sealed later", kGateway, request);
    ASSERT_TRUE(testing::submit(*log_, {c}));
    auto done = tail_->wait_for([&] { return tail_->answered(request); }, 30s);
    ASSERT_TRUE(done && *done) << "no answer to request " << request;
  };
  send(1);
  auto first = tail_->replies_for(1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0]->status, fb::ReplyStatus::Refused);
  EXPECT_EQ(first[0]->code, "unavailable") << first[0]->message;
  EXPECT_EQ(tail_->event_for_request(1), nullptr);
  EXPECT_EQ((*engine)->sequencer->failure(), "");

  keys.down = false;
  send(2);
  const auto* event = tail_->event_for_request(2);
  ASSERT_NE(event, nullptr) << "the retry was not appended";
  EXPECT_EQ(event->seq, 1u) << "the refused try took a seq";
  EXPECT_EQ(event->content, "sealed later");
  EXPECT_EQ((*engine)->sequencer->failure(), "");
}

// An erasure (EraseUser → UserErased) is acked once the user's key is destroyed: their later
// messages are refused `not_found`, and nothing opens what they sealed. A key store that fails the
// destroy does not hold the ack (every projector destroys the key again); the failure is counted.
TEST_F(SequencerKeys, AnErasureDestroysTheKeyBeforeItsAck) {
  EngineConfig ec = config("erase");
  FlakyKeys keys;
  auto engine = start_engine(*log_, ec, std::make_shared<StoreFaults>(), keys);
  ASSERT_TRUE(engine) << engine.error().to_string();
  uint64_t request = 0;
  // "accepted" (acked, its event read), else the answer's code ("duplicate" for a Duplicate).
  auto run = [&](fb::CommandEnvelopeT c) -> std::string {
    c.reply_to->request_id = ++request;
    EXPECT_TRUE(testing::submit(*log_, {c}));
    uint64_t id = request;
    // The reply itself (the event can be read before the engine acks it).
    auto done = tail_->wait_for([&] { return !tail_->replies_for(id).empty(); }, 30s);
    EXPECT_TRUE(done && *done) << "no answer to request " << id;
    for (const auto* r : tail_->replies_for(id)) {
      if (r->status == fb::ReplyStatus::Duplicate) return "duplicate";
      if (r->status == fb::ReplyStatus::Refused) return r->code;
    }
    auto read = tail_->wait_for([&] { return tail_->event_for_request(id) != nullptr; }, 30s);
    return read && *read ? "accepted" : "acked, no event";
  };
  auto erase = [&](uint64_t user) {
    auto c = testing::command_envelope(user_stream(user), user, "erase-" + std::to_string(user), kGateway, 0);
    c.command.Set(fb::EraseUserT{});
    return run(std::move(c));
  };
  constexpr uint64_t kGone = 4'200'001, kStuck = 4'200'002;
  for (uint64_t user : {kGone, kStuck}) {
    EXPECT_EQ(run(testing::send_message(std::string(kWorldStream), user, "m-" + std::to_string(user), "before",
                                        kGateway, 0)),
              "accepted");
  }

  EXPECT_EQ(erase(kGone), "accepted");
  auto gone = testing::test_keys().key_for_reading(kGone);
  ASSERT_FALSE(gone) << "acked before the key was destroyed";
  EXPECT_EQ(gone.error().code(), make_error_code(KeyErrc::erased));
  EXPECT_EQ(run(testing::send_message(std::string(kWorldStream), kGone, "m-after", "after", kGateway, 0)), "not_found");
  EXPECT_EQ(erase(kGone), "duplicate") << "the same erasure retried: its first answer";

  // A send queued right behind the erasure, in the same batch, is refused too: the key goes only
  // once the batch is durable, but nothing is decided for the user after their erasure.
  constexpr uint64_t kQuick = 4'200'003;
  EXPECT_EQ(run(testing::send_message(std::string(kWorldStream), kQuick, "q-1", "before", kGateway, 0)), "accepted");
  auto quick_erase = testing::command_envelope(user_stream(kQuick), kQuick, "erase-quick", kGateway, 0);
  quick_erase.command.Set(fb::EraseUserT{});
  auto behind = testing::send_message(std::string(kWorldStream), kQuick, "q-2", "right behind", kGateway, 0);
  quick_erase.reply_to->request_id = ++request;
  behind.reply_to->request_id = ++request;
  ASSERT_TRUE(testing::submit(*log_, {quick_erase, behind}));
  auto both = tail_->wait_for([&] { return !tail_->replies_for(request).empty(); }, 30s);
  ASSERT_TRUE(both && *both);
  auto refused = tail_->replies_for(request);
  EXPECT_EQ(refused.front()->status, fb::ReplyStatus::Refused);
  EXPECT_EQ(refused.front()->code, "not_found") << refused.front()->message;

  keys.destroy_down = true;
  EXPECT_EQ(erase(kStuck), "accepted");
  EXPECT_EQ((*engine)->sequencer->stats().key_destroy_failures.load(), 1u);
  EXPECT_EQ((*engine)->sequencer->failure(), "");
}

uint64_t g_injected = 0;  // over all cases: the property must have exercised some faults

void run_case(const Case& k) {
  testing::TempDir dir("imlog-seq-store-fault");
  LocalLogConfig lc;
  lc.dir = dir.str() + "/log";
  auto opened = LocalLog::open(lc);
  CASE_OK(opened);
  LocalLog& log = **opened;
  CASE_OK(testing::create_engine_topics(log, 2, kGateway));
  auto tail = LogTail::open(log, kGateway);
  CASE_OK(tail);

  EngineConfig ec;
  ec.state_dir = dir.str() + "/engine";
  ec.instance_id = "fault";
  ec.max_batch = k.max_batch;
  ec.max_inflight_batches = k.max_inflight;
  ec.checkpoint_interval = 5ms;
  ec.max_cached_streams = 0;  // every checkpoint drops the cache: states come from the store

  size_t runs = 0;
  std::shared_ptr<StoreFaults> faults;
  std::vector<std::string> ran;
  auto arm = [&]() {
    faults = std::make_shared<StoreFaults>();
    if (runs < k.faults.size()) {
      const Fault& f = k.faults[runs];
      switch (f.kind) {
        case Fault::Kind::nth: faults->fail_nth(f.n, f.read); break;
        case Fault::Kind::stream: faults->fail_key(f.key); break;
        case Fault::Kind::username: faults->fail_key(f.key); break;
        case Fault::Kind::dedupe: {
          const auto& c = k.commands[f.command];
          faults->fail_key(StateStore::dedupe_key(c.stream, c.actor, c.client_msg_id));
          break;
        }
      }
      ran.push_back("run " + std::to_string(runs) + ": " + f.show());
    } else {
      ran.push_back("run " + std::to_string(runs) + ": no fault");
    }
    ++runs;
    return faults;
  };
  auto engine = start_engine(log, ec, arm());
  CASE_OK(engine);

  const LogTail& t = **tail;
  auto settled = [&](size_t i) {
    for (const auto* r : t.replies_for(request_id_of(i))) {
      if (!(r->status == fb::ReplyStatus::Refused && r->code == "unavailable")) return true;
    }
    return false;
  };
  std::vector<std::string> problems;
  uint64_t injected = 0;
  size_t submitted = 0;
  for (size_t chunk : k.chunks) {
    CASE_OK(testing::submit(log, {k.commands.begin() + static_cast<ptrdiff_t>(submitted),
                                  k.commands.begin() + static_cast<ptrdiff_t>(submitted + chunk)}));
    submitted += chunk;
    for (;;) {
      auto done = (*tail)->wait_for(
          [&] {
            if (!(*engine)->sequencer->failure().empty()) return true;
            for (size_t i = 0; i < submitted; ++i) {
              if (!settled(i)) return false;
            }
            return true;
          },
          30s);
      CASE_OK(done);
      std::string failure = (*engine)->sequencer->failure();
      if (failure.empty()) {
        if (!*done) problems.push_back("no final answer to some of the first " + std::to_string(submitted) + " commands");
        break;
      }
      // As a supervisor would: the stopped engine's process ends, another starts on the same store.
      ran.back() += " → stopped: " + failure;
      injected += faults->injected();
      (*engine)->stop();
      engine->reset();
      if (runs > kMaxRestarts) RC_FAIL("more than " + std::to_string(kMaxRestarts) + " restarts" + join_lines(ran));
      engine = start_engine(log, ec, arm());
      CASE_OK(engine);
    }
    if (!problems.empty()) break;
  }
  injected += faults->injected();
  (*engine)->stop();
  g_injected += injected;
  CASE_OK(log.flush(std::chrono::seconds(10)));  // the answers are appended without waiting
  CASE_OK((*tail)->read_to_end());

  for (const auto& p : t.problems()) problems.push_back("undecodable: " + p);
  for (const auto& v : testing::check_log_invariants(t.valid())) problems.push_back(v);

  std::map<uint64_t, const testing::SeenEvent*> by_id;
  for (const auto& e : t.valid()) by_id[e.event_id] = &e;
  std::map<uint64_t, size_t> acks;  // event id → Accepted answers naming it
  for (size_t i = 0; i < submitted; ++i) {
    const auto& c = k.commands[i];
    const std::string& what = k.shown[i];
    if (!settled(i)) problems.push_back(what + ": no answer but `unavailable`");
    for (const auto* r : t.replies_for(request_id_of(i))) {
      if (r->status != fb::ReplyStatus::Accepted && r->status != fb::ReplyStatus::Duplicate) continue;
      std::string status(fb::EnumNameReplyStatus(r->status));
      auto it = by_id.find(r->event_id);
      if (it == by_id.end()) {
        problems.push_back(what + ": " + status + " names event " + std::to_string(r->event_id) +
                           ", which is not a valid event of the log");
        continue;
      }
      const auto& e = *it->second;
      if (e.stream != c.stream || e.actor != c.actor || e.client_msg_id != c.client_msg_id || e.seq != r->seq) {
        problems.push_back(what + ": " + status + " seq " + std::to_string(r->seq) + " names " + e.stream +
                           " seq " + std::to_string(e.seq) + " of actor " + std::to_string(e.actor) +
                           " cmid " + e.client_msg_id);
      }
      if (r->status == fb::ReplyStatus::Accepted && ++acks[r->event_id] == 2) {
        problems.push_back(what + ": a second Accepted answer for " + e.stream + " seq " + std::to_string(e.seq));
      }
    }
  }
  RC_TAG(injected > 0 ? "faults injected" : "no fault fired");
  if (!problems.empty()) {
    RC_FAIL("max_batch " + std::to_string(k.max_batch) + ", in-flight " + std::to_string(k.max_inflight) +
            "\nruns:" + join_lines(ran) + "\ncommands:" + join_lines(k.shown, 80) +
            "\nproblems:" + join_lines(problems));
  }
}

TEST(SequencerStoreFaults, AnUnreadableStateStoreNeverYieldsAReusedSeqOrASecondEvent) {
  setup_logging(LogConfig{"off", "text"});  // every case stops engines on purpose: keep it quiet
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  if (std::getenv("RC_PARAMS") == nullptr) params.maxSuccess = kDefaultCases;
  rc::detail::TestMetadata metadata;
  metadata.id = "SequencerStoreFaults/AnUnreadableStateStoreNeverYieldsAReusedSeqOrASecondEvent";
  metadata.description = metadata.id;
  g_injected = 0;
  auto result = rc::detail::checkTestable([] { run_case(generate()); }, metadata, params);
  if (!result.is<rc::detail::SuccessResult>()) {
    std::ostringstream ss;
    rc::detail::printResultMessage(result, ss);
    FAIL() << ss.str() << "\n(seed " << params.seed << "; rerun with RC_PARAMS=\"seed=" << params.seed << "\")";
  }
  std::cout << "cases passed: " << result.get<rc::detail::SuccessResult>().numSuccess << ", faults injected: "
            << g_injected << std::endl;
  EXPECT_GT(g_injected, 0u) << "no case injected a fault: the property tested nothing";
}

}  // namespace
}  // namespace imlog
