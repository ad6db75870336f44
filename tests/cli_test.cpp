// The `imlog` command line as an operator meets it: the built binary as a child process. A bad
// argument must stop it at once, before it opens or starts anything.

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace imlog::testing
