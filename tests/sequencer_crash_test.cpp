// Crash recovery of the sequencer (docs/architecture.md, "Exactly once without broker
// transactions"), on both backends, and the rebuild of its state store from the log.
//
// SequencerCrash/<Local|Kafka>: a child process (sequencer_crash_child) runs a LogDirectory and a
// Sequencer under a steady command load it makes itself, and reports the acks it reads from the
// LOG (valid events naming its gateway) and the Duplicate replies of its delivery topic. The test
// SIGKILLs it at random moments — at once, as the engine starts, or after a random number of new
// acks — sometimes deletes its state store too, and restarts it with --from N, N a little below
// the lowest command not yet acked, so the restarted client re-sends acked and unacked commands
// alike (retries with the same client_msg_id). A last run goes to completion. Then the test reads
// im.events itself and checks: every stream is dense 1..n (valid events only); no
// (stream, actor, client_msg_id) has two valid events; every command has exactly one valid event,
// the one it was acked with (stream, seq, event id), whose stream and actor are the command's; and
// every Duplicate reply repeats its original's ids.
//   Local: a LocalLog directory, owned by the child while it runs; opened here once it is dead.
//   Kafka: a PRIVATE mock broker (KafkaMock::start_private()), since the engine's topic names
//          are fixed. A killed member's group session (6 s) must expire before the restarted one
//          joins, so each Kafka cycle takes ~10 s: 10 kills, and a small volume (the mock keeps
//          ~5 MiB per partition).
// The seed of the kill schedule is printed; IMLOG_TEST_SEED=<n> repeats it.
//
// SequencerRebuild: deleting the state store, or putting back an old copy of it, and restarting
// rebuilds the state from the log: the next message gets the next seq, a retry of an old
// client_msg_id is still a Duplicate with the original ids, membership and claimed names hold.
//
// SequencerAppendFailure: an ack means durable (docs/architecture.md, "Ack when durable"). With
// appends to im.events held back (HoldingLog, a fault-injecting wrapper of a real LocalLog: the
// LocalLog cannot be told to stall or fail one append), a retry of a command whose event is not yet
// durable is not answered until it is; and when that append fails, the answer carries the ids of
// the event written after the sequencer retook the partition, never those of the lost one.

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <set>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "imlog/core/logging.h"
#include "imlog/engine/kafka_log.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/holding_log.h"
#include "imlog/testing/kafka_mock.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::HoldingLog;
using testing::EngineNode;
using testing::LogTail;
using testing::SeenEvent;
using testing::Subprocess;
using testing::TempDir;
namespace fs = std::filesystem;

constexpr const char* kGateway = "gw-crash";
constexpr int32_t kPartitions = 4;

uint64_t test_seed() {
  if (const char* s = std::getenv("IMLOG_TEST_SEED"); s != nullptr && *s != '\0') {
    return std::strtoull(s, nullptr, 10);
  }
  return std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
}

// ---- backends -------------------------------------------------------------------------------

class CrashBackend {
 public:
  virtual ~CrashBackend() = default;
  // The child's arguments naming the log.
  virtual std::vector<std::string> log_args() = 0;
  // Opens the log for the final check (the child is dead by then).
  virtual Result<std::unique_ptr<EventLog>> open() = 0;
};

class LocalCrashBackend final : public CrashBackend {
 public:
  explicit LocalCrashBackend(const TempDir& dir) : log_dir_(dir.str() + "/log") {}
  std::vector<std::string> log_args() override { return {"--log-dir", log_dir_}; }
  Result<std::unique_ptr<EventLog>> open() override {
    LocalLogConfig c;
    c.dir = log_dir_;
    auto l = LocalLog::open(c);
    IMLOG_TRY(l);
    return std::unique_ptr<EventLog>(std::move(*l));
  }

 private:
  std::string log_dir_;
};

// A mock broker of this test's own (the engine's topic names are fixed), with the engine's topics.
class KafkaCrashBackend final : public CrashBackend {
 public:
  KafkaCrashBackend() : mock_(testing::KafkaMock::start_private()) {
    mock_->create_topic(std::string(kCommandsTopic), kPartitions);
    mock_->create_topic(std::string(kEventsTopic), kPartitions);
    mock_->create_topic(delivery_topic(kGateway), 1);
  }
  std::vector<std::string> log_args() override { return {"--bootstrap", mock_->bootstrap()}; }
  Result<std::unique_ptr<EventLog>> open() override {
    auto l = KafkaLog::open(mock_->log_config());
    IMLOG_TRY(l);
    return std::unique_ptr<EventLog>(std::move(*l));
  }

 private:
  std::unique_ptr<testing::KafkaMock> mock_;
};

enum class Backend { local, kafka };
void PrintTo(Backend b, std::ostream* os) { *os << (b == Backend::local ? "Local" : "Kafka"); }

struct CrashPlan {
  uint64_t commands;
  int kills;
  uint64_t window;
  int max_new_acks_before_kill;        // a kill comes after 1..this many new acks
  std::chrono::milliseconds run_deadline;    // to reach the kill moment
  std::chrono::milliseconds final_deadline;  // for the last run to ack everything
};

CrashPlan plan_for(Backend b) {
  if (b == Backend::local) return {3000, 40, 48, 120, 60s, 180s};
  return {360, 10, 24, 30, 90s, 240s};
}

// ---- what the child reports ---------------------------------------------------------------------

struct Ack {
  std::string stream;
  uint64_t seq = 0;
  uint64_t event_id = 0;
  bool operator==(const Ack&) const = default;
};

std::string show(const Ack& a) {
  return a.stream + " seq " + std::to_string(a.seq) + " event " + std::to_string(a.event_id);
}

struct Observed {
  std::map<uint64_t, Ack> acks;                  // command → its ack (the first one reported)
  std::vector<std::pair<uint64_t, Ack>> dups;    // Duplicate replies
  std::vector<std::string> problems;
  uint64_t ack_lines = 0;

  void problem(std::string p) {
    if (problems.size() < 1000) problems.push_back(std::move(p));
  }

  enum class Line { other, new_ack, done, failure };

  Line take(const std::string& line) {
    std::istringstream in(line);
    std::string word, cmid;
    in >> word;
    if (word == "done") return Line::done;
    if (word == "started") return Line::other;
    if (word == "ack" || word == "dup") {
      Ack a;
      in >> cmid >> a.stream >> a.seq >> a.event_id;
      auto i = testing::crash_load_index(cmid);
      if (!in || !i) {
        problem("unreadable line `" + line + "`");
        return Line::other;
      }
      // A Duplicate answers the client too, with the original's ids: a command whose ack was lost
      // in a kill (its event durable, its answer not yet sent) is acked by its retry's Duplicate.
      if (word == "dup") dups.emplace_back(*i, a);
      ++ack_lines;
      auto [it, fresh] = acks.emplace(*i, a);
      if (!fresh && !(it->second == a)) {
        problem(cmid + " acked as " + show(it->second) + " and later as " + show(a));
      }
      return fresh ? Line::new_ack : Line::other;
    }
    if (word == "refused") {
      problem("the child saw a refusal: `" + line + "`");
      return Line::other;
    }
    problem("child: `" + line + "`");
    return word == "failure" ? Line::failure : Line::other;
  }

  uint64_t lowest_unacked(uint64_t count) const {
    uint64_t i = 0;
    while (i < count && acks.contains(i)) ++i;
    return i;
  }
};

std::string join(const std::vector<std::string>& v, size_t limit = 20) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < limit; ++i) out += "\n  " + v[i];
  if (v.size() > limit) out += "\n  ... " + std::to_string(v.size() - limit) + " more";
  return out;
}

class SequencerCrash : public ::testing::TestWithParam<Backend> {};

TEST_P(SequencerCrash, KilledAtRandomMomentsEveryCommandIsAckedExactlyOnce) {
  const Backend backend = GetParam();
  const CrashPlan plan = plan_for(backend);
  const char* name = backend == Backend::local ? "local" : "kafka";
  const uint64_t seed = test_seed();
  std::mt19937_64 rng(seed);
  std::cout << "[" << name << "] seed " << seed << " (IMLOG_TEST_SEED repeats it)" << std::endl;
  const auto started_at = std::chrono::steady_clock::now();

  TempDir dir("imlog-seq-crash");
  std::unique_ptr<CrashBackend> log_backend;
  if (backend == Backend::local) {
    log_backend = std::make_unique<LocalCrashBackend>(dir);
  } else {
    log_backend = std::make_unique<KafkaCrashBackend>();
  }
  const std::string state_dir = dir.str() + "/engine";
  auto spawn = [&](uint64_t from) {
    std::vector<std::string> argv = {(testing::binary_dir() / "sequencer_crash_child").string(),
                                     "--state-dir", state_dir,
                                     "--count", std::to_string(plan.commands),
                                     "--from", std::to_string(from),
                                     "--gateway", kGateway,
                                     "--partitions", std::to_string(kPartitions),
                                     "--window", std::to_string(plan.window),
                                     "--parent-pid", std::to_string(::getpid())};
    for (auto& a : log_backend->log_args()) argv.push_back(a);
    return Subprocess::start(argv);
  };

  Observed seen;
  uint64_t from = 0;
  int kills = 0, wipes = 0, runs = 0, kills_at_once = 0, kills_at_start = 0;
  while (kills < plan.kills) {
    if (rng() % 4 == 0 && fs::exists(state_dir)) {
      fs::remove_all(state_dir);  // the child is dead: deleting its cache only costs a rebuild
      ++wipes;
    }
    Subprocess child = spawn(from);
    ++runs;
    uint64_t moment = rng() % 10;  // 0: at once; 1: as the engine starts; else after new acks
    uint64_t new_acks_wanted = moment < 2 ? 0 : 1 + rng() % static_cast<uint64_t>(plan.max_new_acks_before_kill);
    if (moment == 0) {
      ++kills_at_once;
    } else {
      uint64_t new_acks = 0;
      bool reached = false;
      auto deadline = std::chrono::steady_clock::now() + plan.run_deadline;
      while (!reached && std::chrono::steady_clock::now() < deadline) {
        auto line = child.read_line(1s);
        if (!line) {
          if (child.wait(0ms)) break;  // exited on its own: a failure, reported below
          continue;
        }
        auto kind = seen.take(*line);
        if (kind == Observed::Line::failure || kind == Observed::Line::done) break;
        if (moment == 1 && *line == "started") reached = true;
        if (kind == Observed::Line::new_ack && ++new_acks >= new_acks_wanted) reached = true;
      }
      ASSERT_TRUE(reached) << "run " << runs << " (from " << from << ") did not reach its kill moment ("
                           << (moment == 1 ? std::string("start") : std::to_string(new_acks_wanted) + " new acks")
                           << ") within " << plan.run_deadline.count() << " ms; " << seen.acks.size()
                           << " of " << plan.commands << " acked; problems:" << join(seen.problems);
      if (moment == 1) ++kills_at_start;
    }
    child.kill();
    ++kills;
    uint64_t low = seen.lowest_unacked(plan.commands);
    from = low - std::min<uint64_t>(low, rng() % 24);
  }

  // The last run: to completion.
  Subprocess child = spawn(from);
  ++runs;
  bool done = false;
  auto deadline = std::chrono::steady_clock::now() + plan.final_deadline;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    auto line = child.read_line(1s);
    if (!line) {
      if (child.wait(0ms)) break;
      continue;
    }
    auto kind = seen.take(*line);
    if (kind == Observed::Line::failure) break;
    done = kind == Observed::Line::done;
  }
  ASSERT_TRUE(done) << "the last run did not ack every command within " << plan.final_deadline.count()
                    << " ms: " << seen.acks.size() << " of " << plan.commands
                    << " acked; problems:" << join(seen.problems);
  auto status = child.wait(60s);
  ASSERT_TRUE(status.has_value()) << "the last run did not exit after `done`";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "exit status " << *status;

  // The log itself, read here.
  auto log = log_backend->open();
  ASSERT_TRUE(log) << log.error().to_string();
  auto tail = LogTail::open(**log, kGateway);
  ASSERT_TRUE(tail) << tail.error().to_string();
  auto read = (*tail)->read_to_end(60s);
  ASSERT_TRUE(read) << read.error().to_string();
  const LogTail& t = **tail;

  std::vector<std::string> problems = seen.problems;
  for (const auto& p : t.problems()) problems.push_back("undecodable: " + p);
  for (const auto& v : testing::check_log_invariants(t.valid())) problems.push_back(v);
  std::map<uint64_t, const SeenEvent*> event_of;
  for (const auto& e : t.valid()) {
    auto i = testing::crash_load_index(e.client_msg_id);
    if (!i || *i >= plan.commands || e.gateway != kGateway) {
      problems.push_back("a valid event of no command: " + e.stream + " seq " + std::to_string(e.seq) +
                         " cmid `" + e.client_msg_id + "`");
      continue;
    }
    if (!event_of.emplace(*i, &e).second) problems.push_back(e.client_msg_id + " has two valid events");
    auto c = testing::crash_load_command(*i, kGateway);
    if (e.stream != c.stream || e.actor != c.actor || e.request_id != *i + 1) {
      problems.push_back(e.client_msg_id + ": valid event on " + e.stream + " by " + std::to_string(e.actor) +
                         "; the command is on " + c.stream + " by " + std::to_string(c.actor));
    }
  }
  for (uint64_t i = 0; i < plan.commands; ++i) {
    auto ev = event_of.find(i);
    auto ack = seen.acks.find(i);
    std::string cmid = "c-" + std::to_string(i);
    if (ev == event_of.end()) {
      problems.push_back(cmid + " has no valid event");
      continue;
    }
    Ack in_log{ev->second->stream, ev->second->seq, ev->second->event_id};
    if (ack == seen.acks.end()) {
      problems.push_back(cmid + " was never acked");
    } else if (!(ack->second == in_log)) {
      problems.push_back(cmid + " was acked as " + show(ack->second) + "; the log has " + show(in_log));
    }
  }
  // Every reply in the delivery topic, as the gateway would read it: no refusal, and every ack
  // (Accepted) or Duplicate names the command's valid event in the log — an ack means durable.
  size_t dup_replies = 0;
  for (const auto& r : t.replies()) {
    auto i = testing::crash_load_index(r.client_msg_id);
    auto ev = i ? event_of.find(*i) : event_of.end();
    if (r.status == fb::ReplyStatus::Refused) {
      problems.push_back(r.client_msg_id + ": a " + std::string(fb::EnumNameReplyStatus(r.status)) +
                         " reply `" + r.code + "` (" + r.message + ")");
    } else if (ev == event_of.end()) {
      problems.push_back(r.client_msg_id + ": an ack or Duplicate reply to a command with no valid event");
    } else {
      if (r.status == fb::ReplyStatus::Duplicate) ++dup_replies;
      Ack in_log{ev->second->stream, ev->second->seq, ev->second->event_id};
      Ack said{r.stream, r.seq, r.event_id};
      if (!(said == in_log)) {
        problems.push_back(r.client_msg_id + ": a reply in the topic says " + show(said) +
                           "; the original is " + show(in_log));
      }
    }
  }
  for (const auto& [i, dup] : seen.dups) {
    auto ev = event_of.find(i);
    if (ev == event_of.end()) continue;  // reported above
    Ack in_log{ev->second->stream, ev->second->seq, ev->second->event_id};
    if (!(dup == in_log)) {
      problems.push_back("c-" + std::to_string(i) + ": a Duplicate reply says " + show(dup) +
                         "; the original is " + show(in_log));
    }
  }
  EXPECT_TRUE(problems.empty()) << problems.size() << " problems (seed " << seed << "):" << join(problems);

  auto secs = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_at);
  std::cout << "[" << name << "] " << kills << " kills (" << kills_at_once << " at once, "
            << kills_at_start << " as the engine started, the rest after new acks), " << wipes
            << " state stores deleted, " << runs << " runs; " << plan.commands << " commands, "
            << event_of.size() << " with a valid event, " << seen.ack_lines << " ack lines, "
            << dup_replies << " duplicate replies (" << seen.dups.size() << " dup lines), "
            << t.markers().size() << " epoch markers, "
            << t.rejected().size() << " events rejected by the EpochFilter; "
            << secs.count() / 1000.0 << " s" << std::endl;
  EXPECT_GE(kills, plan.kills);
  EXPECT_GT(dup_replies, 0u) << "no retry of an acked command was ever answered as a duplicate";
}

INSTANTIATE_TEST_SUITE_P(Backends, SequencerCrash, ::testing::Values(Backend::local, Backend::kafka),
                         [](const ::testing::TestParamInfo<Backend>& p) {
                           return p.param == Backend::local ? "Local" : "Kafka";
                         });

// ---- a refusal survives a crash --------------------------------------------------------------
//
// SequencerRefusalCrash/<Local|Kafka>: a refused command is remembered (a CommandRefused record on
// im.events), so when it is read again after a crash — its command offset was never committed —
// it gets the same refusal, even though the state it would now be decided on accepts it. The child
// runs a --script: user 1 creates the private group_1, user 2 asks to join it (refused
// `forbidden`: only its owner or an admin adds members), user 1 makes it public. Once the three
// are answered the child is SIGKILLed; with a checkpoint interval of an hour no checkpoint was
// written, so no command offset was committed. The restarted engine rebuilds group_1 from the log
// (public now) and reads the three commands again: the join must be refused again with the same
// code and message — decided again, it would be accepted. Its client's retry (same
// client_msg_id, new request id) gets the same refusal too, while user 3's join with a new
// client_msg_id is accepted: the state did change. The log then holds the three accepted events,
// dense, and exactly one refusal record.

struct ReplyLine {
  uint64_t request_id = 0;
  std::string status;
  std::string cmid;
  uint64_t seq = 0;
  uint64_t event_id = 0;
  std::string code;
  std::string message;
};

// "reply <request_id> <status> <cmid> <seq> <event_id> <code or -> <message...>" (the child's --script output).
std::optional<ReplyLine> parse_reply(const std::string& line) {
  std::istringstream in(line);
  std::string word;
  ReplyLine r;
  in >> word >> r.request_id >> r.status >> r.cmid >> r.seq >> r.event_id >> r.code;
  if (!in || word != "reply") return std::nullopt;
  if (r.code == "-") r.code.clear();
  std::getline(in, r.message);
  if (!r.message.empty() && r.message.front() == ' ') r.message.erase(0, 1);
  return r;
}

std::string show(const ReplyLine& r) {
  return r.status + " " + (r.code.empty() ? "" : "`" + r.code + "` (" + r.message + ") ") + "seq " +
         std::to_string(r.seq) + " event " + std::to_string(r.event_id);
}

// Writes commands as the child's --script file: one hex-encoded CommandEnvelope a line.
void write_script(const std::string& path, const std::vector<fb::CommandEnvelopeT>& commands) {
  std::ofstream out(path);
  for (const auto& c : commands) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char b : encode_command(c)) out << kHex[b >> 4] << kHex[b & 15];
    out << "\n";
  }
}

class SequencerRefusalCrash : public ::testing::TestWithParam<Backend> {};

TEST_P(SequencerRefusalCrash, ARefusedCommandReadAgainAfterAKillGetsTheSameRefusal) {
  const Backend backend = GetParam();
  TempDir dir("imlog-seq-refusal");
  std::unique_ptr<CrashBackend> log_backend;
  if (backend == Backend::local) {
    log_backend = std::make_unique<LocalCrashBackend>(dir);
  } else {
    log_backend = std::make_unique<KafkaCrashBackend>();
  }
  const std::string state_dir = dir.str() + "/engine";
  // Each run: the child on its script until the answers to `wanted` request ids came; then killed.
  auto run = [&](const std::string& name, const std::vector<fb::CommandEnvelopeT>& script,
                 std::set<uint64_t> wanted) {
    std::string file = dir.str() + "/" + name + ".script";
    write_script(file, script);
    std::vector<std::string> argv = {(testing::binary_dir() / "sequencer_crash_child").string(),
                                     "--state-dir", state_dir,
                                     "--script", file,
                                     "--checkpoint-ms", "3600000",  // no checkpoint before the kill
                                     "--gateway", kGateway,
                                     "--partitions", std::to_string(kPartitions),
                                     "--parent-pid", std::to_string(::getpid())};
    for (auto& a : log_backend->log_args()) argv.push_back(a);
    Subprocess child = Subprocess::start(argv);
    std::map<uint64_t, std::vector<ReplyLine>> replies;
    std::vector<std::string> other;
    auto deadline = std::chrono::steady_clock::now() + 90s;
    auto all_answered = [&] {
      return std::all_of(wanted.begin(), wanted.end(), [&](uint64_t rid) { return replies.contains(rid); });
    };
    while (!all_answered() && std::chrono::steady_clock::now() < deadline) {
      auto line = child.read_line(1s);
      if (!line) {
        if (child.wait(0ms)) break;
        continue;
      }
      if (auto r = parse_reply(*line)) {
        replies[r->request_id].push_back(*r);
      } else if (*line != "started") {
        other.push_back(*line);
      }
    }
    child.kill();
    EXPECT_TRUE(all_answered()) << name << ": not every command was answered within 90 s; the child said:"
                                << join(other);
    return replies;
  };

  const uint64_t owner = 1, joiner = 2, newcomer = 3;
  auto create = testing::create_group(1, owner, {}, "g-create", kGateway, 1, fb::JoinPolicy::Private);
  auto join_cmd = testing::join_group(1, joiner, "g-join", kGateway, 2);
  auto go_public = testing::command_envelope(group_stream(1), owner, "g-public", kGateway, 3);
  fb::ChangeGroupSettingsT settings;
  settings.join_policy = fb::JoinPolicy::Public;
  go_public.command.Set(std::move(settings));

  auto first = run("first", {create, join_cmd, go_public}, {1, 2, 3});
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(first[1].front().status, "Accepted") << show(first[1].front());
  ASSERT_EQ(first[2].front().status, "Refused") << show(first[2].front());
  ASSERT_EQ(first[2].front().code, "forbidden") << show(first[2].front());
  ASSERT_EQ(first[3].front().status, "Accepted") << show(first[3].front());
  const ReplyLine refusal = first[2].front();

  // The restarted engine reads create, join and go_public again (nothing was committed), then the
  // client's retry of the join and a newcomer's join.
  auto retry = testing::join_group(1, joiner, "g-join", kGateway, 4);
  auto newcomer_joins = testing::join_group(1, newcomer, "g-join-3", kGateway, 5);
  auto second = run("second", {retry, newcomer_joins}, {1, 2, 3, 4, 5});
  ASSERT_FALSE(HasFailure());
  for (uint64_t rid : {2, 4}) {
    for (const auto& r : second[rid]) {
      EXPECT_EQ(r.status, "Refused") << "request " << rid << " (the join, " << (rid == 2 ? "read again" : "retried")
                                     << ") is now " << show(r) << "; it was " << show(refusal);
      EXPECT_EQ(r.code, refusal.code) << "request " << rid;
      EXPECT_EQ(r.message, refusal.message) << "request " << rid;
      EXPECT_EQ(r.seq, 0u) << "request " << rid;
    }
  }
  for (uint64_t rid : {1, 3}) {
    for (const auto& r : second[rid]) {
      EXPECT_EQ(r.status, "Duplicate") << "request " << rid << " read again: " << show(r);
      EXPECT_EQ(r.seq, first[rid].front().seq) << "request " << rid;
      EXPECT_EQ(r.event_id, first[rid].front().event_id) << "request " << rid;
    }
  }
  ASSERT_EQ(second[5].size(), 1u);
  EXPECT_EQ(second[5].front().status, "Accepted") << "the newcomer's join (the group is public now): "
                                                  << show(second[5].front());
  EXPECT_EQ(second[5].front().seq, 3u);

  // The log: create, go_public and the newcomer's join, dense; one refusal record, the join's.
  auto log = log_backend->open();
  ASSERT_TRUE(log) << log.error().to_string();
  auto tail = LogTail::open(**log, kGateway);
  ASSERT_TRUE(tail) << tail.error().to_string();
  auto read = (*tail)->read_to_end(60s);
  ASSERT_TRUE(read) << read.error().to_string();
  const LogTail& t = **tail;
  EXPECT_TRUE(t.problems().empty()) << join(t.problems());
  auto broken = testing::check_log_invariants(t.valid(), t.refusals());
  EXPECT_TRUE(broken.empty()) << join(broken);
  std::vector<std::string> valid;
  for (const auto& e : t.valid()) valid.push_back(e.client_msg_id + " seq " + std::to_string(e.seq));
  EXPECT_EQ(valid, (std::vector<std::string>{"g-create seq 1", "g-public seq 2", "g-join-3 seq 3"}));
  ASSERT_EQ(t.refusals().size(), 1u);
  const auto& rec = t.refusals().front();
  EXPECT_EQ(rec.stream, group_stream(1));
  EXPECT_EQ(rec.actor, joiner);
  EXPECT_EQ(rec.client_msg_id, "g-join");
  EXPECT_EQ(rec.code, refusal.code);
  EXPECT_EQ(rec.message, refusal.message);
  EXPECT_EQ(rec.seq, 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, SequencerRefusalCrash, ::testing::Values(Backend::local, Backend::kafka),
                         [](const ::testing::TestParamInfo<Backend>& p) {
                           return p.param == Backend::local ? "Local" : "Kafka";
                         });

// ---- rebuild from the log --------------------------------------------------------------------

constexpr const char* kRebuildGateway = "gw-rebuild";

// One LocalLog and the engine's topics, with users registered; nodes started and stopped on it.
class SequencerRebuild : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig c;
    c.dir = dir_.str() + "/log";
    auto l = LocalLog::open(c);
    ASSERT_TRUE(l) << l.error().to_string();
    log_ = std::move(*l);
    ASSERT_TRUE(testing::create_engine_topics(*log_, 2, kRebuildGateway).has_value());
    auto t = LogTail::open(*log_, kRebuildGateway);
    ASSERT_TRUE(t) << t.error().to_string();
    tail_ = std::move(*t);
    start_node();
    std::vector<fb::CommandEnvelopeT> regs;
    for (const char* name : {"ann", "bob", "cyd"}) {
      regs.push_back(testing::register_user(name, "reg-" + std::string(name), kRebuildGateway, next_rid_++));
    }
    auto results = run(std::move(regs));
    for (const auto& r : results) {
      ASSERT_TRUE(r.has_value()) << "a registration was not accepted";
      users_.push_back(r->result_id);
    }
    ASSERT_TRUE(testing::wait_until([&] {
      for (uint64_t id : users_) {
        if (!node_->directory().user(id).exists) return false;
      }
      return true;
    }));
  }

  void TearDown() override {
    node_.reset();
    tail_.reset();
    log_.reset();
  }

  std::string state_dir() const { return dir_.str() + "/engine"; }

  void start_node() {
    EngineConfig ec;
    ec.state_dir = state_dir();
    ec.instance_id = "rebuild-" + std::to_string(++node_count_);
    ec.checkpoint_interval = 50ms;
    auto n = EngineNode::start(*log_, ec);
    ASSERT_TRUE(n) << n.error().to_string();
    node_ = std::move(*n);
  }

  void stop_node() {
    node_->stop();
    EXPECT_EQ(node_->sequencer().failure(), "");
    node_.reset();
  }

  // Submits the commands and waits until each is answered: its valid event, or nullopt when it
  // was answered by a reply instead (see reply_to()).
  std::vector<std::optional<SeenEvent>> run(std::vector<fb::CommandEnvelopeT> commands) {
    EXPECT_TRUE(testing::submit(*log_, commands).has_value());
    auto answered = [&](const fb::CommandEnvelopeT& c) {
      return tail_->answered(c.reply_to->request_id);
    };
    auto ok = tail_->wait_for(
        [&] { return std::all_of(commands.begin(), commands.end(), answered); }, 30s);
    EXPECT_TRUE(ok && *ok) << "commands not answered within 30 s";
    std::vector<std::optional<SeenEvent>> out;
    for (const auto& c : commands) {
      const SeenEvent* e = tail_->event_for_request(c.reply_to->request_id);
      out.push_back(e ? std::optional<SeenEvent>(*e) : std::nullopt);
    }
    return out;
  }

  // The one reply to a command, if it got exactly one.
  std::optional<fb::CommandReplyT> reply_to(const fb::CommandEnvelopeT& c) {
    auto r = tail_->replies_for(c.reply_to->request_id);
    if (r.size() != 1) return std::nullopt;
    return *r[0];
  }

  fb::CommandEnvelopeT msg(const std::string& stream, uint64_t actor, const std::string& cmid) {
    return testing::send_message(stream, actor, cmid, "text of " + cmid, kRebuildGateway, next_rid_++);
  }
  fb::CommandEnvelopeT retry(const fb::CommandEnvelopeT& c) {
    fb::CommandEnvelopeT r = c;
    r.reply_to->request_id = next_rid_++;
    if (auto* m = r.command.AsSendMessage()) m->content = "different content on the retry";
    return r;
  }

  // The history both tests start from: a group with members, one member leaving, messages to
  // world, the group and a one-to-one stream.
  struct History {
    std::vector<fb::CommandEnvelopeT> commands;
    std::vector<std::optional<SeenEvent>> events;
  };
  History make_history(const std::string& prefix) {
    uint64_t ann = users_[0], bob = users_[1], cyd = users_[2];
    History h;
    h.commands.push_back(testing::create_group(7, ann, {bob}, prefix + "create", kRebuildGateway, next_rid_++));
    h.commands.push_back(msg("world", ann, prefix + "w1"));
    h.commands.push_back(msg("group_7", bob, prefix + "g1"));
    h.commands.push_back(msg(single_stream(ann, bob), bob, prefix + "s1"));
    h.commands.push_back(testing::leave_group(7, bob, prefix + "leave", kRebuildGateway, next_rid_++));
    h.commands.push_back(testing::join_group(7, cyd, prefix + "join", kRebuildGateway, next_rid_++));
    h.commands.push_back(msg("group_7", cyd, prefix + "g2"));
    h.commands.push_back(msg("world", cyd, prefix + "w2"));
    h.events = run(h.commands);
    for (size_t i = 0; i < h.events.size(); ++i) {
      EXPECT_TRUE(h.events[i].has_value()) << "history command " << i << " was not accepted";
    }
    return h;
  }

  // After a restart on a rebuilt or stale store: the next seqs, duplicates, membership and names
  // are what the log says.
  void expect_state_matches_log(const History& h, const std::string& prefix) {
    uint64_t ann = users_[0], bob = users_[1], cyd = users_[2];
    auto last = testing::last_seqs(tail_->valid());
    std::vector<fb::CommandEnvelopeT> next = {
        msg("world", bob, prefix + "after-w"),
        msg("group_7", cyd, prefix + "after-g"),
        msg(single_stream(ann, bob), ann, prefix + "after-s"),
    };
    auto events = run(next);
    for (size_t i = 0; i < next.size(); ++i) {
      ASSERT_TRUE(events[i].has_value()) << next[i].stream << ": the next message was not accepted";
      EXPECT_EQ(events[i]->seq, last[next[i].stream] + 1) << next[i].stream << ": the next seq";
    }
    // Retries of old commands, with other content: the original ids again, no new event.
    std::vector<fb::CommandEnvelopeT> retries;
    for (const auto& c : h.commands) retries.push_back(retry(c));
    fb::CommandEnvelopeT ann_again = testing::register_user("ann", "reg-ann", kRebuildGateway, next_rid_++);
    retries.push_back(ann_again);
    auto retried = run(retries);
    for (size_t i = 0; i < retries.size(); ++i) {
      EXPECT_FALSE(retried[i].has_value()) << "a retry of " << retries[i].client_msg_id << " wrote an event";
      auto r = reply_to(retries[i]);
      ASSERT_TRUE(r.has_value()) << "no single reply to the retry of " << retries[i].client_msg_id;
      ASSERT_TRUE(i >= h.events.size() || h.events[i].has_value());
      EXPECT_EQ(r->status, fb::ReplyStatus::Duplicate) << retries[i].client_msg_id << ": " << r->code;
      if (i < h.commands.size()) {
        EXPECT_EQ(r->seq, h.events[i]->seq) << retries[i].client_msg_id;
        EXPECT_EQ(r->event_id, h.events[i]->event_id) << retries[i].client_msg_id;
        EXPECT_EQ(r->result_id, h.events[i]->result_id) << retries[i].client_msg_id;
      } else {
        EXPECT_EQ(r->result_id, ann) << "the retried registration names another user";
      }
    }
    // State rebuilt from the log: bob left group_7, cyd joined; "ann" is taken.
    std::vector<fb::CommandEnvelopeT> checks = {
        msg("group_7", bob, prefix + "bob-after-leaving"),
        testing::join_group(7, cyd, prefix + "cyd-joins-again", kRebuildGateway, next_rid_++),
        testing::register_user("ann", "another-ann", kRebuildGateway, next_rid_++),
        testing::create_group(7, cyd, {}, prefix + "create-again", kRebuildGateway, next_rid_++),
    };
    const char* codes[] = {"not_member", "already_member", "already_exists", "already_exists"};
    auto refused = run(checks);
    for (size_t i = 0; i < checks.size(); ++i) {
      EXPECT_FALSE(refused[i].has_value()) << checks[i].client_msg_id << " was accepted";
      auto r = reply_to(checks[i]);
      ASSERT_TRUE(r.has_value()) << checks[i].client_msg_id;
      EXPECT_EQ(r->status, fb::ReplyStatus::Refused) << checks[i].client_msg_id;
      EXPECT_EQ(r->code, codes[i]) << checks[i].client_msg_id << ": " << r->message;
    }
    stop_node();
    auto read = tail_->read_to_end();
    ASSERT_TRUE(read) << read.error().to_string();
    auto broken = testing::check_log_invariants(tail_->valid());
    EXPECT_TRUE(broken.empty()) << join(broken);
    EXPECT_TRUE(tail_->rejected().empty()) << tail_->rejected().size() << " events rejected";
  }

  TempDir dir_{"imlog-seq-rebuild"};
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<LogTail> tail_;
  std::unique_ptr<EngineNode> node_;
  std::vector<uint64_t> users_;
  uint64_t next_rid_ = 1;
  int node_count_ = 0;
};

TEST_F(SequencerRebuild, DeletedStateStoreIsRebuiltFromTheLog) {
  History h = make_history("a-");
  stop_node();
  ASSERT_GT(fs::remove_all(state_dir()), 0u);
  start_node();
  expect_state_matches_log(h, "b-");
}

TEST_F(SequencerRebuild, StaleStateStoreCatchesUpFromItsCheckpoint) {
  // An old copy of the store (taken while no engine ran) put back after more history was written:
  // the engine must catch up from the copy's checkpoint, not trust it as current.
  stop_node();
  fs::copy(state_dir(), dir_.str() + "/engine-old", fs::copy_options::recursive);
  start_node();
  History h = make_history("a-");
  stop_node();
  fs::remove_all(state_dir());
  fs::rename(dir_.str() + "/engine-old", state_dir());
  start_node();
  expect_state_matches_log(h, "b-");
}

// A refusal that depends on state is remembered by a graceful restart (the state store keeps it),
// and by a restart whose store was deleted (the log does: its CommandRefused record); a refusal
// decided on the command alone writes nothing.
TEST_F(SequencerRebuild, ARefusalIsRememberedByTheStoreAndByTheLog) {
  uint64_t ann = users_[0], bob = users_[1], cyd = users_[2];
  auto settings = [&](fb::JoinPolicy policy, const std::string& cmid) {
    auto c = testing::command_envelope(group_stream(8), ann, cmid, kRebuildGateway, next_rid_++);
    fb::ChangeGroupSettingsT s;
    s.join_policy = policy;
    c.command.Set(std::move(s));
    return c;
  };
  auto bob_joins = [&] { return testing::join_group(8, bob, "p-join", kRebuildGateway, next_rid_++); };
  auto created = run({testing::create_group(8, ann, {}, "p-create", kRebuildGateway, next_rid_++,
                                            fb::JoinPolicy::Private)});
  ASSERT_TRUE(created[0].has_value());
  auto first_join = bob_joins();
  EXPECT_FALSE(run({first_join})[0].has_value());
  auto refused = reply_to(first_join);
  ASSERT_TRUE(refused.has_value());
  ASSERT_EQ(refused->status, fb::ReplyStatus::Refused);
  ASSERT_EQ(refused->code, "forbidden") << refused->message;
  // A stateless refusal (empty content): answered, not recorded.
  auto empty = msg("group_8", ann, "p-empty");
  empty.command.AsSendMessage()->content = "";
  EXPECT_FALSE(run({empty})[0].has_value());
  ASSERT_TRUE(reply_to(empty).has_value());
  EXPECT_EQ(reply_to(empty)->code, "invalid");
  ASSERT_TRUE(run({settings(fb::JoinPolicy::Public, "p-public")})[0].has_value());

  auto expect_same_refusal = [&](const char* when) {
    auto again = bob_joins();
    EXPECT_FALSE(run({again})[0].has_value()) << when << ": the retried join was accepted";
    auto r = reply_to(again);
    ASSERT_TRUE(r.has_value()) << when;
    EXPECT_EQ(r->status, fb::ReplyStatus::Refused) << when;
    EXPECT_EQ(r->code, refused->code) << when;
    EXPECT_EQ(r->message, refused->message) << when;
    EXPECT_EQ(r->seq, 0u) << when;
    EXPECT_EQ(r->event_id, 0u) << when;
  };
  expect_same_refusal("live");
  stop_node();
  start_node();
  expect_same_refusal("after a restart on the store");
  stop_node();
  ASSERT_GT(fs::remove_all(state_dir()), 0u);
  start_node();
  expect_same_refusal("after a restart with the store deleted");
  // The group is public now: a join with a new client_msg_id is accepted.
  auto cyd_joins = run({testing::join_group(8, cyd, "p-join-cyd", kRebuildGateway, next_rid_++)});
  ASSERT_TRUE(cyd_joins[0].has_value());
  EXPECT_EQ(cyd_joins[0]->seq, 3u);
  stop_node();
  ASSERT_TRUE(tail_->read_to_end().has_value());
  auto broken = testing::check_log_invariants(tail_->valid(), tail_->refusals());
  EXPECT_TRUE(broken.empty()) << join(broken);
  ASSERT_EQ(tail_->refusals().size(), 1u) << "one refusal record: the join's (not the empty message's)";
  EXPECT_EQ(tail_->refusals()[0].client_msg_id, "p-join");
  EXPECT_EQ(tail_->refusals()[0].actor, bob);
  EXPECT_TRUE(tail_->rejected().empty());
}

// ---- appends held back or failed -------------------------------------------------------------

constexpr const char* kHoldGateway = "gw-hold";

class SequencerAppendFailure : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalLogConfig c;
    c.dir = dir_.str() + "/log";
    auto l = LocalLog::open(c);
    ASSERT_TRUE(l) << l.error().to_string();
    log_ = std::move(*l);
    holding_ = std::make_unique<HoldingLog>(*log_);
    ASSERT_TRUE(testing::create_engine_topics(*log_, 2, kHoldGateway).has_value());
    auto t = LogTail::open(*log_, kHoldGateway);
    ASSERT_TRUE(t) << t.error().to_string();
    tail_ = std::move(*t);
    EngineConfig ec;
    ec.state_dir = dir_.str() + "/engine";
    ec.instance_id = "hold";
    // A checkpoint waits for every append in flight: none may come while an append is held.
    ec.checkpoint_interval = std::chrono::hours(1);
    auto n = EngineNode::start(*holding_, ec);
    ASSERT_TRUE(n) << n.error().to_string();
    node_ = std::move(*n);
    ASSERT_TRUE(node_->wait_for_partitions(2));
  }

  void TearDown() override {
    if (holding_) {
      holding_->hold(false);
      holding_->release();
    }
    node_.reset();
    tail_.reset();
    holding_.reset();
    log_.reset();
  }

  // X is appended and held; its retry X' is handled (a duplicate of X, in a batch of its own);
  // then Z, on the same stream, is appended and held too — so X' was fully handled, its answer
  // sent or not, before Z's append.
  void hold_original_then_retry() {
    holding_->hold(true);
    ASSERT_TRUE(testing::submit(*log_, {x_}).has_value());
    ASSERT_TRUE(testing::wait_until([&] { return holding_->held() == 1; })) << "X's append never came";
    ASSERT_TRUE(testing::submit(*log_, {x_retry_}).has_value());
    ASSERT_TRUE(testing::wait_until([&] { return node_->sequencer().stats().duplicates.load() == 1; }))
        << "the retry was not handled as a duplicate";
    ASSERT_TRUE(testing::submit(*log_, {z_}).has_value());
    ASSERT_TRUE(testing::wait_until([&] { return holding_->held() == 2; })) << "Z's append never came";
    EXPECT_EQ(holding_->appends_to(delivery_topic(kHoldGateway)), 0u)
        << "the retry (or anything) was answered while X's event was not durable";
  }

  // Once everything is answered: X and Z have one valid event each, dense, and every answer to
  // the retry either carries X's valid ids (Duplicate) or tells it to retry (`unavailable`: it was
  // decided on a state the engine dropped), and at least one is the Duplicate.
  void expect_answers_match_the_log() {
    auto has_duplicate = [&] {
      auto rs = tail_->replies_for(2);
      return std::any_of(rs.begin(), rs.end(), [](const auto* r) { return r->status == fb::ReplyStatus::Duplicate; });
    };
    auto ok = tail_->wait_for(
        [&] { return tail_->event_for_request(1) && tail_->event_for_request(3) && has_duplicate(); }, 30s);
    ASSERT_TRUE(ok && *ok) << "X, its retry and Z were not all answered";
    node_->stop();
    EXPECT_EQ(node_->sequencer().failure(), "");
    ASSERT_TRUE(log_->flush(10s).has_value());
    ASSERT_TRUE(tail_->read_to_end().has_value());
    auto broken = testing::check_log_invariants(tail_->valid());
    EXPECT_TRUE(broken.empty()) << join(broken);
    EXPECT_EQ(tail_->valid().size(), 2u) << "valid events: X and Z";
    const SeenEvent* x = tail_->event_for_request(1);
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->seq, 1u);
    for (const auto* r : tail_->replies_for(2)) {
      if (r->status == fb::ReplyStatus::Refused && r->code == "unavailable") continue;  // told to retry
      EXPECT_EQ(r->status, fb::ReplyStatus::Duplicate);
      EXPECT_EQ(r->seq, x->seq) << "the retry's answer names another seq than X's valid event";
      EXPECT_EQ(r->event_id, x->event_id) << "the retry's answer names another event than X's valid one";
    }
  }

  TempDir dir_{"imlog-seq-hold"};
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<HoldingLog> holding_;
  std::unique_ptr<LogTail> tail_;
  std::unique_ptr<EngineNode> node_;
  fb::CommandEnvelopeT x_ = testing::send_message("world", 1, "x", "first", kHoldGateway, 1);
  fb::CommandEnvelopeT x_retry_ = testing::send_message("world", 1, "x", "first, again", kHoldGateway, 2);
  fb::CommandEnvelopeT z_ = testing::send_message("world", 2, "z", "second", kHoldGateway, 3);
};

TEST_F(SequencerAppendFailure, DuplicateIsAnsweredOnlyOnceItsOriginalIsDurable) {
  hold_original_then_retry();
  holding_->hold(false);
  holding_->release();
  expect_answers_match_the_log();
  EXPECT_EQ(tail_->replies_for(2).size(), 1u);
}

TEST_F(SequencerAppendFailure, AfterAFailedAppendAnswersCarryTheIdsWrittenOnTheRetake) {
  hold_original_then_retry();
  uint64_t epochs = node_->sequencer().stats().epochs.load();
  holding_->hold(false);
  holding_->fail_held();  // X's batch and Z's: nothing of them reaches the log
  ASSERT_TRUE(testing::wait_until([&] { return node_->sequencer().stats().epochs.load() > epochs; }))
      << "the sequencer did not retake the partition after the failed append";
  expect_answers_match_the_log();
}

}  // namespace
}  // namespace imlog
