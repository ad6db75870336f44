// The replay tool end to end: the real `replay` binary over an embedded log on disk, against a
// live RocksDB model built the way the server's projector builds it.
//
//   - a rebuild verifies equal to the live model, with digests;
//   - a rebuild killed with SIGKILL mid-way resumes from its checkpoint and still verifies equal;
//   - one damaged row of the live model makes --verify exit non-zero naming that row;
//   - a log held open by another process is refused with a message saying so.

#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <regex>

#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/projector.h"
#include "imlog/projections/rocksdb_model.h"
#include "imlog/testing/event_log_builder.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::Subprocess;
using testing::TempDir;

#define ASSERT_OK(expr)                                                        \
  do {                                                                         \
    auto&& ok_ = (expr);                                                       \
    ASSERT_TRUE(ok_) << #expr << ": " << ok_.error().to_string();              \
  } while (0)

// A data directory with an event log of `messages` messages and more, and the live model built
// from it by a Projector with the WAL on, as `imlog serve --roles projector` builds it. Both are
// closed when this returns, so the replay process can open them.
void make_data_dir(const std::filesystem::path& data, int messages) {
  LocalLogConfig lc;
  lc.dir = (data / "log").string();
  auto log = LocalLog::open(lc);
  ASSERT_OK(log);
  auto b = testing::EventLogBuilder::open(**log, 4);
  ASSERT_OK(b);
  auto& builder = **b;
  std::vector<uint64_t> users;
  for (int i = 0; i < 40; ++i) users.push_back(builder.register_user("user" + std::to_string(i)));
  for (uint64_t g = 1; g <= 5; ++g) builder.create_group(g, users[g], {users[g + 1], users[g + 2], users[g + 3]});
  builder.friend_request(users[0], users[1], "hi");
  builder.friend_accept(users[1], users[0]);
  builder.profile(users[2], "Two", "second user");
  for (int i = 0; i < messages; ++i) {
    uint64_t from = users[static_cast<size_t>(i * 7) % users.size()];
    uint64_t to = users[static_cast<size_t>(i * 11 + 1) % users.size()];
    std::string stream = i % 5 == 0 ? group_stream(1 + static_cast<uint64_t>(i) % 5)
                         : i % 17 == 0 ? std::string(kWorldStream)
                         : from == to ? std::string(kWorldStream)
                                      : single_stream(from, to);
    uint64_t id = builder.message(stream, from, "message " + std::to_string(i) + " about climbing and 咖啡");
    if (i % 50 == 0) builder.recall(stream, from, id, builder.last_seq(stream));
    if (i % 9 == 0) builder.read(stream, to, builder.last_seq(stream));
    if (i % 4000 == 0) builder.new_epoch(builder.partition_of(stream));
    if (i % 3000 == 0) builder.zombie_message(stream, from, "ignored");
    if (i % 700 == 0) builder.refusal(stream, to, "not_friends", "user " + std::to_string(from) + " accepts messages from friends only");
  }
  // Retention: a policy on group 1 and an expiry of most of it (rows, recalls, read markers and
  // search tokens below the cut, the retention_set row too; the override stays), then more
  // messages after it; both users' preferences in a one-to-one, and a group back on the default.
  builder.retention(group_stream(1), users[1], 30);
  builder.retention(single_stream(users[0], users[1]), users[0], 7);
  builder.retention(single_stream(users[0], users[1]), users[1], 0);
  builder.retention(group_stream(3), users[3], 14);
  builder.retention(group_stream(3), users[3], std::nullopt);
  builder.expire(group_stream(1), builder.last_seq(group_stream(1)) - 3);
  builder.message(group_stream(1), users[2], "after the expiry");
  builder.expire(group_stream(2), builder.last_seq(group_stream(2)));  // all of it
  auto ends = builder.ends();
  ASSERT_OK(ends);
  RocksDbModelConfig mc;
  mc.dir = (data / "model").string();
  auto model = open_rocksdb_model(mc);
  ASSERT_OK(model);
  ASSERT_OK(Projector(**log, **model, ProjectorConfig{512}).run_until(*ends));
}

struct ReplayRun {
  int status = -1;  // exit code, or -1 when it did not exit normally
  std::vector<std::string> lines;
  [[nodiscard]] std::string text() const {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
  [[nodiscard]] bool has(const std::string& s) const { return text().find(s) != std::string::npos; }
};

std::string replay_binary() { return (testing::binary_dir() / "replay").string(); }

// Runs replay with its stderr joined to stdout, to the end.
ReplayRun run_replay(const std::vector<std::string>& args) {
  std::string cmd = "exec '" + replay_binary() + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  auto p = Subprocess::start({"/bin/sh", "-c", cmd});
  ReplayRun r;
  while (auto line = p.read_line(120s)) r.lines.push_back(*line);
  auto st = p.wait(60s);
  if (st && WIFEXITED(*st)) r.status = WEXITSTATUS(*st);
  return r;
}

TEST(Replay, RebuildsTheRocksDbModelAndVerifiesItEqualToTheLiveOne) {
  TempDir dir("imlog-replay");
  auto data = dir.path() / "data";
  ASSERT_NO_FATAL_FAILURE(make_data_dir(data, 5000));
  ReplayRun r = run_replay({"--projection", "rocksdb", "--data-dir", data.string(), "--verify"});
  EXPECT_EQ(r.status, 0) << r.text();
  EXPECT_TRUE(r.has("starting at 0")) << r.text();
  EXPECT_TRUE(r.has("(100.0%)")) << r.text();
  EXPECT_TRUE(r.has("verify: equal:")) << r.text();
  EXPECT_TRUE(std::filesystem::exists(data / "model.replay" / "CURRENT"));

  // Again: nothing left to do, still equal, same digest.
  ReplayRun again = run_replay({"--projection", "rocksdb", "--data-dir", data.string(), "--verify"});
  EXPECT_EQ(again.status, 0) << again.text();
  auto digest = [](const ReplayRun& x) {
    for (const auto& l : x.lines) {
      if (l.starts_with("verify: equal:")) return l;
    }
    return std::string();
  };
  EXPECT_EQ(digest(r), digest(again));
  EXPECT_FALSE(digest(r).empty());
}

// Expiry is an event: the live model and the rebuilt one both lose the expired rows at the same
// seq (and verify equal), later rows keep their seqs, a conversation expired whole has no rows.
TEST(Replay, ExpiredRowsAreGoneAtTheSameSeqFromTheLiveAndTheRebuiltModel) {
  TempDir dir("imlog-replay-expiry");
  auto data = dir.path() / "data";
  ASSERT_NO_FATAL_FAILURE(make_data_dir(data, 500));
  ReplayRun r = run_replay({"--projection", "rocksdb", "--data-dir", data.string(), "--verify"});
  ASSERT_EQ(r.status, 0) << r.text();
  EXPECT_TRUE(r.has("verify: equal:")) << r.text();
  for (const char* model : {"model", "model.replay"}) {
    SCOPED_TRACE(model);
    RocksDbModelConfig mc;
    mc.dir = (data / model).string();
    auto m = open_rocksdb_model(mc);
    ASSERT_OK(m);
    auto all = (*m)->history(group_stream(1), HistoryRange{0, 0, true, 200});
    ASSERT_OK(all);
    ASSERT_EQ(all->messages.size(), 4u) << "the 3 rows above the cut and the one after the expiry";
    uint64_t last = all->messages.back().seq_id;
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(all->messages[i].seq_id, last - 3 + i) << "seqs unchanged";
    EXPECT_EQ(all->messages.back().content, "after the expiry");
    auto none = (*m)->history(group_stream(2), HistoryRange{0, 0, true, 200});
    ASSERT_OK(none);
    EXPECT_TRUE(none->messages.empty());
    auto kept = (*m)->retention(group_stream(1));
    ASSERT_OK(kept);
    EXPECT_EQ(kept->a, 30u) << "the override outlives its expired retention_set row";
    auto back = (*m)->retention(group_stream(3));
    ASSERT_OK(back);
    EXPECT_EQ(*back, RetentionOverrides{}) << "set, then back to the default";
  }
}

TEST(Replay, AReplayKilledMidwayResumesFromItsCheckpointAndStillVerifiesEqual) {
  TempDir dir("imlog-replay-kill");
  auto data = dir.path() / "data";
  ASSERT_NO_FATAL_FAILURE(make_data_dir(data, 60000));
  auto target = (dir.path() / "rebuilt").string();
  int64_t checkpointed = 0;
  {
    auto child = Subprocess::start({replay_binary(), "--projection", "rocksdb", "--data-dir", data.string(), "--target",
                                    target, "--batch", "100", "--checkpoint-every", "2000"});
    while (auto line = child.read_line(60s)) {
      if (line->starts_with("checkpoint: ")) {
        child.kill();  // SIGKILL right after the first checkpoint: no chance to clean up
        checkpointed = std::stoll(line->substr(12));
        break;
      }
    }
    ASSERT_GT(checkpointed, 0) << "no checkpoint line before the end of the output";
  }
  ReplayRun resumed = run_replay({"--projection", "rocksdb", "--data-dir", data.string(), "--target", target, "--verify"});
  EXPECT_EQ(resumed.status, 0) << resumed.text();
  // It continued from what the killed run made durable — not from 0, not past the end.
  int64_t resumed_at = -1, total = -1;
  const std::regex start_line(R"((\d+) events in \d+ partitions; resuming at (\d+))");
  for (const auto& l : resumed.lines) {
    std::smatch m;
    if (std::regex_search(l, m, start_line)) {
      total = std::stoll(m[1]);
      resumed_at = std::stoll(m[2]);
    }
  }
  EXPECT_GE(resumed_at, checkpointed) << resumed.text();
  EXPECT_LT(resumed_at, total) << "the killed replay had already finished: " << resumed.text();
  EXPECT_TRUE(resumed.has("verify: equal:")) << resumed.text();
}

TEST(Replay, VerifyNamesTheFirstRowThatDiffersFromTheLiveModel) {
  TempDir dir("imlog-replay-diff");
  auto data = dir.path() / "data";
  ASSERT_NO_FATAL_FAILURE(make_data_dir(data, 2000));
  ReplayRun first = run_replay({"--projection", "rocksdb", "--data-dir", data.string()});
  ASSERT_EQ(first.status, 0) << first.text();

  // Damage one history row of the live model behind its back.
  std::string key;
  {
    RocksDbModelConfig mc;
    mc.dir = (data / "model").string();
    auto model = open_rocksdb_model(mc);
    ASSERT_OK(model);
    ASSERT_OK((*model)->dump([&](std::string_view k, std::string_view) {
      if (k.starts_with("m|group_3|")) key = k;
      return key.empty();
    }));
  }
  ASSERT_FALSE(key.empty());
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), (data / "model").string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, "tampered").ok());
    ASSERT_TRUE(db->Close().ok());
  }
  ReplayRun r = run_replay({"--projection", "rocksdb", "--data-dir", data.string(), "--verify"});
  EXPECT_EQ(r.status, 3) << r.text();
  EXPECT_TRUE(r.has("verify: DIFFERENT")) << r.text();
  EXPECT_TRUE(r.has("key `" + key + "`")) << r.text();
  EXPECT_TRUE(r.has("live `raw:74616d7065726564`")) << r.text();  // "tampered", as undecodable bytes
  EXPECT_FALSE(r.has("verify: equal")) << r.text();
}

// The key store opens every sealed message: a replay never builds into it (--from-scratch would
// delete it first).
TEST(Replay, RefusesTheKeyStoreAsItsTarget) {
  TempDir dir("imlog-replay-keys");
  auto data = dir.path() / "data";
  ASSERT_NO_FATAL_FAILURE(make_data_dir(data, 10));
  ReplayRun first = run_replay({"--projection", "rocksdb", "--data-dir", data.string()});
  ASSERT_EQ(first.status, 0) << first.text();
  ASSERT_TRUE(std::filesystem::exists(data / "keys" / "CURRENT"));
  ReplayRun r = run_replay({"--projection", "rocksdb", "--data-dir", data.string(), "--target",
                            (data / "keys").string(), "--from-scratch"});
  EXPECT_NE(r.status, 0) << r.text();
  EXPECT_TRUE(r.has("is the key store")) << r.text();
  EXPECT_TRUE(std::filesystem::exists(data / "keys" / "CURRENT")) << "the key store was removed";
}

TEST(Replay, RefusesALogThatAnotherProcessHasOpenAndAMissingLog) {
  TempDir dir("imlog-replay-busy");
  auto data = dir.path() / "data";
  ASSERT_NO_FATAL_FAILURE(make_data_dir(data, 10));
  {
    LocalLogConfig lc;
    lc.dir = (data / "log").string();
    auto held = LocalLog::open(lc);
    ASSERT_OK(held);
    ReplayRun r = run_replay({"--projection", "rocksdb", "--data-dir", data.string()});
    EXPECT_EQ(r.status, 1) << r.text();
    EXPECT_TRUE(r.has("in use by another process")) << r.text();
  }
  ReplayRun missing = run_replay({"--projection", "rocksdb", "--data-dir", (dir.path() / "nothing").string()});
  EXPECT_EQ(missing.status, 1) << missing.text();
  EXPECT_TRUE(missing.has("no embedded event log")) << missing.text();
  ReplayRun no_mysql = run_replay({"--projection", "mysql", "--data-dir", data.string()});
  EXPECT_EQ(no_mysql.status, 1) << no_mysql.text();
  EXPECT_TRUE(no_mysql.has("no `mysql` section")) << no_mysql.text();
  ReplayRun bad = run_replay({"--projection", "cassandra"});
  EXPECT_NE(bad.status, 0) << bad.text();
}

}  // namespace
}  // namespace imlog
