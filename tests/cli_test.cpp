// The `imlog` command line as an operator meets it: the built binary as a child process. A bad
// argument must stop it at once, before it opens or starts anything.

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/schema/codec.h"
#include "imlog/tasks/task_records.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

struct Run {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs the built `imlog` with `args` and returns its exit code and output.
Run imlog(const std::vector<std::string>& args) {
  std::string command = (binary_dir() / "imlog").string();
  for (const auto& a : args) command += " '" + a + "'";
  auto p = Subprocess::start({"/bin/sh", "-c", command + " 2>&1"});
  Run run;
  while (auto line = p.read_line(30s)) run.output += *line + "\n";
  auto status = p.wait(30s);
  if (status && WIFEXITED(*status)) run.exit_code = WEXITSTATUS(*status);
  return run;
}

TEST(Cli, VersionFlagAndSubcommandAgree) {
  auto flag = imlog({"--version"});
  EXPECT_EQ(flag.exit_code, 0) << flag.output;
  EXPECT_THAT(flag.output, HasSubstr("imlog 0."));
  auto sub = imlog({"version"});
  EXPECT_EQ(sub.exit_code, 0) << sub.output;
  EXPECT_EQ(sub.output, flag.output);
}

class CliRefuses : public ::testing::Test {
 protected:
  TempDir dir_{"imlog-cli-test"};
  std::string data_ = dir_.str() + "/data";

  // `imlog serve` with `args` fails, saying `why`, and has created nothing (started no role).
  void expect_refused(std::vector<std::string> args, const std::string& why) {
    args.insert(args.begin(), {"serve", "--data-dir", data_});
    auto run = imlog(args);
    EXPECT_GT(run.exit_code, 0) << run.output;  // 1 for ours, 109 for CLI11's parse errors
    EXPECT_THAT(run.output, HasSubstr(why));
    EXPECT_FALSE(std::filesystem::exists(data_)) << "a role started before the arguments were checked";
  }
};

TEST_F(CliRefuses, AMisspelledRole) {
  expect_refused({"--roles", "engine,gatway"}, "--roles: `gatway` is not a role");
}

TEST_F(CliRefuses, AMisspelledRoleInTheFileWithTheSameWords) {
  std::string config = dir_.str() + "/imlog.yaml";
  std::ofstream(config) << "roles: [gatway]\n";
  expect_refused({"--config", config}, "`gatway` is not a role: use all, gateway");
}

TEST_F(CliRefuses, AListenAddressThatIsNotHostPort) {
  expect_refused({"--listen", "127.0.0.1"}, "--listen: `127.0.0.1` is not host:port");
  expect_refused({"--roles", "engine,gateway", "--listen", "localhost:99999"}, "--listen: port `99999`");
}

TEST_F(CliRefuses, AnUnknownFlag) { expect_refused({"--role", "engine"}, "--role"); }

// `imlog dlq` over the embedded log (the node stopped): two dead letters written as a tasks worker
// writes them, one of a readable task and one corrupt; list shows both with their trace ids,
// show decodes the task, replay puts the original task back on im.tasks under its key.
TEST(Cli, DlqListsShowsAndReplaysDeadLetters) {
  TempDir dir("imlog-cli-dlq");
  const std::string data = dir.str() + "/data";
  auto init = imlog({"init", "--data-dir", data});
  ASSERT_EQ(init.exit_code, 0) << init.output;
  fb::FanoutTaskT task;
  task.stream = "group_7";
  task.seq = 42;
  task.task_id = task_id(task.stream, task.seq, 0);
  task.pages = 1;
  task.recipients = {3, 4};
  task.trace_id = "5f0c2a9e41d7b803";
  fb::EventEnvelopeT e;
  e.stream = "group_7";
  e.seq = 42;
  e.event_id = 1;
  e.trace_id = task.trace_id;
  e.event.Set(fb::MessageAppendedT{{}, fb::MessageType::Text, "hi"});
  auto event = encode_event(e);
  task.event.assign(event.begin(), event.end());
  const std::string task_bytes = encode_task(task);
  {
    LocalLogConfig config;
    config.dir = data + "/log";
    auto log = LocalLog::open(config);
    ASSERT_TRUE(log) << log.error().to_string();
    Record good{std::string(kTasksTopic), 1, 17, 0, "group_7/0", task_bytes};
    Record bad{std::string(kTasksTopic), 1, 18, 0, "junk", "not a task"};
    // A push notification's dead letter names the message in im.events; its value is the JSON.
    Record push{std::string(kEventsTopic), 0, 5, 0, "2/single_1_2/1/20", R"({"key":"2/single_1_2/1/20"})"};
    auto r = (*log)->append_wait(kDeadLetterTopic, {dead_letter(good, "delivery to im.deliver.gw-1 failed after 5 attempts", 5, 1764756000000),
                                                    dead_letter(bad, "corrupt task: x", 0, 1764756001000),
                                                    dead_letter(push, "push to webhook device 20 failed after 5 attempts: HTTP 500", 5, 1764756002000)});
    ASSERT_TRUE(r) << r.error().to_string();
  }
  auto list = imlog({"dlq", "--data-dir", data, "list"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_THAT(list.output, HasSubstr("im.tasks 1:17  attempts 5  trace_id=5f0c2a9e41d7b803  delivery to im.deliver.gw-1"));
  EXPECT_THAT(list.output, HasSubstr("2025-12-03T10:00:00Z"));
  EXPECT_THAT(list.output, HasSubstr("im.tasks 1:18  attempts 0  trace_id=  corrupt task: x"));
  EXPECT_THAT(list.output, HasSubstr("3 dead letters in im.dlq"));
  // Where the first one is: the start of its line.
  auto at = list.output.find("  2025-12-03T10:00:00Z");
  ASSERT_NE(at, std::string::npos);
  auto where = list.output.substr(list.output.rfind('\n', at) == std::string::npos ? 0 : list.output.rfind('\n', at) + 1);
  where = where.substr(0, where.find(' '));

  auto show = imlog({"dlq", "--data-dir", data, "show", where});
  ASSERT_EQ(show.exit_code, 0) << show.output;
  EXPECT_THAT(show.output, HasSubstr(R"("task":{"task_id":"group_7/42/0","stream":"group_7","seq":42,"page":0,"pages":1,"recipients":[3,4]})"));
  EXPECT_THAT(show.output, HasSubstr(R"("trace_id":"5f0c2a9e41d7b803")"));
  auto missing = imlog({"dlq", "--data-dir", data, "show", "0:999"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("no dead letter at `0:999` in im.dlq"));

  // A push's dead letter is never appended to im.events again.
  auto push_at = list.output.find("  2025-12-03T10:00:02Z");
  ASSERT_NE(push_at, std::string::npos) << list.output;
  auto push_line = list.output.substr(list.output.rfind('\n', push_at) == std::string::npos ? 0 : list.output.rfind('\n', push_at) + 1);
  auto refused = imlog({"dlq", "--data-dir", data, "replay", push_line.substr(0, push_line.find(' '))});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("came from im.events, not im.tasks; only fan-out tasks are replayed"));

  auto replay = imlog({"dlq", "--data-dir", data, "replay", where});
  ASSERT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_THAT(replay.output, HasSubstr("to im.tasks partition"));
  LocalLogConfig config;
  config.dir = data + "/log";
  auto log = LocalLog::open(config);
  ASSERT_TRUE(log) << log.error().to_string();
  auto parts = (*log)->partition_count(kTasksTopic);
  ASSERT_TRUE(parts);
  std::vector<TopicPartitionOffset> from;
  for (int32_t p = 0; p < *parts; ++p) from.push_back(TopicPartitionOffset{std::string(kTasksTopic), p, 0});
  auto consumer = (*log)->consumer(ConsumerOptions{});
  ASSERT_TRUE(consumer->assign(from));
  std::vector<Record> batch;
  ASSERT_TRUE(consumer->poll(batch, 5s));
  ASSERT_EQ(batch.size(), 1u) << "the replayed task, once";
  EXPECT_EQ(batch[0].key, "group_7/0");
  EXPECT_EQ(batch[0].value, task_bytes) << "the original bytes";
}

}  // namespace
}  // namespace imlog::testing
