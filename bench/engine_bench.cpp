// imlog-bench-engine: send-message commands/s through the sequencer (issue: "Commands/s through
// the sequencer on the embedded log (1 and 4 partitions) and on the Kafka mock").
//
//   imlog-bench-engine [--backend local|kafka] [--partitions 1,4] [--commands N] [--streams S]
//
// The commands are written to im.commands first (not timed): S groups created by their owners,
// then N messages from the owners round-robin over the groups. Then a Sequencer starts and the
// clock runs from when it owns every partition until every message is an acknowledged event in
// im.events: reading,
// dedupe, decide, seq assignment, encoding, durable (fsynced) appends, checkpoints. Taking the
// partitions (group join, epoch markers, catch-up) is timed apart and printed first.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "imlog/engine/kafka_log.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/log_directory.h"
#include "imlog/engine/sequencer.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/support.h"

namespace {

using namespace imlog;
using Clock = std::chrono::steady_clock;

std::string command_bytes(const std::string& stream, uint64_t actor, const std::string& cmid,
                          fb::CommandUnion cmd) {
  fb::CommandEnvelopeT c;
  c.stream = stream;
  c.actor = actor;
  c.client_msg_id = cmid;
  c.timestamp_ms = 1;
  c.command = std::move(cmd);
  return encode_command(c);
}

Status fill_commands(EventLog& log, int64_t commands, int streams) {
  std::vector<OutRecord> batch;
  auto flush = [&]() -> Status {
    if (batch.empty()) return {};
    auto r = log.append_wait(kCommandsTopic, std::move(batch));
    batch.clear();
    if (!r) return fail(r.error());
    return {};
  };
  for (int g = 1; g <= streams; ++g) {
    fb::CommandUnion u;
    fb::CreateGroupT cg;
    cg.group_id = static_cast<uint64_t>(g);
    cg.name = "bench group " + std::to_string(g);
    u.Set(std::move(cg));
    std::string stream = group_stream(static_cast<uint64_t>(g));
    batch.push_back(OutRecord{stream, command_bytes(stream, static_cast<uint64_t>(g), "create", std::move(u))});
  }
  IMLOG_TRY(flush());
  std::string content(100, 'm');
  for (int64_t i = 0; i < commands; ++i) {
    auto g = static_cast<uint64_t>(i % streams + 1);
    fb::CommandUnion u;
    fb::SendMessageT sm;
    sm.content = content;
    u.Set(std::move(sm));
    std::string stream = group_stream(g);
    batch.push_back(OutRecord{stream, command_bytes(stream, g, "m-" + std::to_string(i), std::move(u))});
    if (batch.size() == 4096) IMLOG_TRY(flush());
  }
  return flush();
}

// Runs one case; returns commands/s or a negative value.
double run_case(EventLog& log, const std::string& state_dir, int partitions, int64_t commands, int streams) {
  for (auto topic : {kCommandsTopic, kEventsTopic}) {
    if (auto s = log.create_topic(TopicSpec{std::string(topic), partitions, true}); !s) {
      std::fprintf(stderr, "%s\n", s.error().to_string().c_str());
      return -1;
    }
  }
  if (auto s = fill_commands(log, commands, streams); !s) {
    std::fprintf(stderr, "filling im.commands: %s\n", s.error().to_string().c_str());
    return -1;
  }
  LogDirectory directory(log);
  if (!directory.start()) return -1;
  EngineConfig cfg;
  cfg.state_dir = state_dir;
  auto commands_in = log_commands(log);
  auto answers = log_deliveries(log);
  auto keys = open_rocksdb_key_store(state_dir + "-keys");
  if (!keys) {
    std::fprintf(stderr, "%s\n", keys.error().to_string().c_str());
    return -1;
  }
  auto seq = Sequencer::create(log, SequencerTransports{*commands_in, *answers}, directory, **keys,
                               SystemClock::instance(), cfg);
  if (!seq) {
    std::fprintf(stderr, "%s\n", seq.error().to_string().c_str());
    return -1;
  }
  uint64_t expected = static_cast<uint64_t>(commands + streams);
  auto started = Clock::now();
  if (!(*seq)->start()) return -1;
  // The clock starts once the sequencer owns every partition: taking them (a group join, which
  // the Kafka mock delays by 3 s, the epoch markers and catch-up) is reported apart.
  auto deadline = started + std::chrono::minutes(5);
  while ((*seq)->stats().partitions.load() < partitions && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  uint64_t before = (*seq)->stats().events.load();
  auto start = Clock::now();
  std::printf("took %d partitions in %.2f s\n", partitions, std::chrono::duration<double>(start - started).count());
  while ((*seq)->stats().events.load() < expected) {
    if (!(*seq)->failure().empty() || Clock::now() > deadline) {
      std::fprintf(stderr, "sequencer stalled at %llu of %llu events: %s\n",
                   static_cast<unsigned long long>((*seq)->stats().events.load()),
                   static_cast<unsigned long long>(expected), (*seq)->failure().c_str());
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  (*seq)->stop();
  directory.stop();
  return static_cast<double>(expected - before) / secs;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imlog sequencer benchmark"};
  std::string backend = "local";
  std::vector<int> partitions = {1, 4};
  int64_t commands = 1'000'000;
  int streams = 1000;
  app.add_option("--backend", backend)->check(CLI::IsMember({"local", "kafka"}));
  app.add_option("--partitions", partitions)->delimiter(',');
  app.add_option("--commands", commands, "send-message commands per case");
  app.add_option("--streams", streams, "group conversations the messages go to");
  CLI11_PARSE(app, argc, argv);

  for (int p : partitions) {
    imlog::testing::TempDir dir("imlog-bench-engine");
    double rate = -1;
    if (backend == "local") {
      LocalLogConfig cfg;
      cfg.dir = dir.str() + "/log";
      auto log = LocalLog::open(cfg);
      if (!log) return 1;
      rate = run_case(**log, dir.str() + "/engine", p, commands, streams);
    } else {
      // A private broker per case: the sequencer uses fixed topic names.
      std::string pt = std::to_string(p);
      auto mock = imlog::testing::Subprocess::start({(imlog::testing::binary_dir() / "imlog-kafka-mock").string(),
                                                     "--brokers", "3", "--dir", dir.str(), "--topic",
                                                     "im.commands:" + pt, "--topic", "im.events:" + pt});
      if (!imlog::testing::wait_until([&] { return std::filesystem::exists(dir.path() / "control"); },
                                      std::chrono::seconds(20))) {
        return std::fprintf(stderr, "the mock broker did not start\n"), 1;
      }
      std::ifstream in(dir.path() / "bootstrap");
      KafkaLogConfig cfg;
      for (std::string b; std::getline(in, b, ',');) {
        if (!b.empty() && b.back() == '\n') b.pop_back();
        if (!b.empty()) cfg.brokers.push_back(b);
      }
      cfg.session_timeout = std::chrono::milliseconds(6000);
      auto log = KafkaLog::open(cfg);
      if (!log) return std::fprintf(stderr, "%s\n", log.error().to_string().c_str()), 1;
      rate = run_case(**log, dir.str() + "/engine", p, commands, streams);
    }
    if (rate < 0) return 1;
    std::printf("%-6s partitions %d  %lld commands  %10.0f commands/s\n", backend.c_str(), p,
                static_cast<long long>(commands), rate);
    std::printf("RESULT {\"bench\":\"engine\",\"backend\":\"%s\",\"partitions\":%d,\"commands\":%lld,"
                "\"commands_per_s\":%.0f}\n",
                backend.c_str(), p, static_cast<long long>(commands), rate);
    std::fflush(stdout);
  }
  return 0;
}
