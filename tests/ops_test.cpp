// The ops listener and the operator kit (docs/operations.md): a real scrape of every role passes
// `promtool check metrics`; deploy/'s alert rules pass `promtool check rules`; the rules and the
// Grafana dashboard name only metrics a real node exposes; a process without the gateway serves
// /metrics, /healthz and /readyz on --ops-listen, and refuses to start on a taken one.
//
// promtool comes with Debian's `prometheus` package, which scripts/setup installs: a missing one
// fails these tests, it does not skip them.

#include <signal.h>
#include <sys/wait.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

// Push on, so its metrics are in the scrape the dashboard and the alerts are checked against; no
// device is ever registered, so nothing is sent.
constexpr const char* kConfig = R"(
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
push:
  enabled: true
  webhook_secret: ops-test-secret-of-32-bytes-long
)";

const std::string kSource = IMLOG_SOURCE_DIR;
const std::string kAlerts = kSource + "/deploy/prometheus/imlog-alerts.yml";
const std::string kDashboard = kSource + "/deploy/grafana/imlog-dashboard.json";

struct Run {
  int status = -1;  // the exit code, or -1 if it did not exit
  std::string output;
};

// Runs `command` in sh, stdout and stderr together.
Run shell(const std::string& command) {
  auto p = Subprocess::start({"/bin/sh", "-c", command + " 2>&1"});
  Run r;
  while (auto line = p.read_line(60s)) r.output += *line + "\n";
  auto st = p.wait(60s);
  if (st && WIFEXITED(*st)) r.status = WEXITSTATUS(*st);
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The families a scrape declares (`# TYPE <name> <type>`).
std::set<std::string> families(const std::string& scrape) {
  std::set<std::string> out;
  std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) )");
  for (std::sregex_iterator it(scrape.begin(), scrape.end(), type), end; it != end; ++it) out.insert((*it)[1]);
  return out;
}

// The metric names `text` mentions (imlog_* and process_*), a histogram's series as its family.
std::set<std::string> mentioned(const std::string& text) {
  std::set<std::string> out;
  std::regex name(R"(\b((imlog|process)_[a-z0-9_]+))");
  for (std::sregex_iterator it(text.begin(), text.end(), name), end; it != end; ++it) {
    std::string n = (*it)[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s = suffix;
      if (n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0) n.resize(n.size() - s.size());
    }
    out.insert(n);
  }
  return out;
}

class OpsKit : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("imlog-ops-test");
    server_ = new ImlogServer(dir_->str(), kConfig);
    started_ = server_->start();
    if (!started_) return;
    // Some traffic, so the counters and histograms have moved: a registration is a command.
    server_->http().post("/api/v1/auth/register", R"({"username":"ops_user","password":"correct horse"})");
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  void SetUp() override { ASSERT_TRUE(started_) << "the node did not start"; }

  static std::string scrape() {
    auto m = server_->http().get("/metrics");
    EXPECT_EQ(m.status, 200) << m.error;
    return m.body;
  }

  static TempDir* dir_;
  static ImlogServer* server_;
  static bool started_;
};
TempDir* OpsKit::dir_ = nullptr;
ImlogServer* OpsKit::server_ = nullptr;
bool OpsKit::started_ = false;

TEST_F(OpsKit, ARealScrapePassesPromtool) {
  auto text = scrape();
  // The single node runs every role: each one's figures are in its one scrape.
  for (const char* name : {"imlog_gateway_frames_in_total", "imlog_sequencer_commands_total",
                           "imlog_projector_lag_events", "imlog_router_deliveries_total",
                           "imlog_fanout_dead_letters_total", "imlog_log_fsync_seconds", "imlog_worker_up",
                           "process_resident_memory_bytes"}) {
    EXPECT_THAT(text, HasSubstr("# TYPE " + std::string(name) + " ")) << name;
  }
  std::string file = dir_->str() + "/scrape.txt";
  std::ofstream(file) << text;
  auto r = shell("promtool check metrics < " + file);
  ASSERT_NE(r.status, 127) << "promtool is missing: scripts/setup installs it (Debian package `prometheus`)";
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "") << "promtool found problems";
}

TEST_F(OpsKit, AlertRulesPassPromtool) {
  auto r = shell("promtool check rules " + kAlerts);
  ASSERT_NE(r.status, 127) << "promtool is missing: scripts/setup installs it (Debian package `prometheus`)";
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("SUCCESS"));
}

TEST_F(OpsKit, RulesAndDashboardNameOnlyRealMetrics) {
  auto real = families(scrape());
  for (const auto& path : {kAlerts, kDashboard}) {
    auto text = read_file(path);
    ASSERT_FALSE(text.empty()) << path;
    auto names = mentioned(text);
    EXPECT_GT(names.size(), 5u) << path;
    for (const auto& n : names) EXPECT_TRUE(real.count(n)) << path << " names `" << n << "`, which no node exposes";
  }
}

TEST(OpsListener, AProcessWithoutTheGatewayServesOpsOnItsOwnAddress) {
  TempDir dir("imlog-ops-engine");
  int port = free_port();
  std::string ops = fmt::format("127.0.0.1:{}", port);
  auto p = Subprocess::start({(binary_dir() / "imlog").string(), "serve", "--roles", "engine", "--data-dir",
                              dir.str() + "/data", "--ops-listen", ops});
  HttpClient http("127.0.0.1", port);
  ASSERT_TRUE(wait_until([&] { return http.get("/readyz").status == 200; }, 60s)) << http.get("/readyz").body;
  EXPECT_EQ(http.get("/healthz").status, 200);
  EXPECT_EQ(http.get("/nothing-here").status, 404);
  auto m = http.get("/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_THAT(m.body, HasSubstr("imlog_role{role=\"engine\"} 1"));
  EXPECT_THAT(m.body, HasSubstr("# TYPE imlog_sequencer_commands_total counter"));
  EXPECT_THAT(m.body, HasSubstr("imlog_ready 1"));
  EXPECT_THAT(m.body, Not(HasSubstr("imlog_gateway_")));
  // The build it runs, as `imlog --version` names it.
  auto version = Subprocess::start({(binary_dir() / "imlog").string(), "--version"});
  auto line = version.read_line(30s);
  ASSERT_TRUE(line && line->rfind("imlog ", 0) == 0) << line.value_or("(nothing)");
  EXPECT_THAT(m.body, HasSubstr(fmt::format("imlog_build_info{{version=\"{}\"}} 1", line->substr(6))));

  // A second process on the same ops address stops at start, naming the flag.
  auto second = Subprocess::start({(binary_dir() / "imlog").string(), "serve", "--roles", "engine", "--data-dir",
                                   dir.str() + "/data2", "--ops-listen", ops});
  auto st = second.wait(30s);
  ASSERT_TRUE(st && WIFEXITED(*st)) << "the second process kept running";
  EXPECT_EQ(WEXITSTATUS(*st), 1);
  p.signal(SIGTERM);
  auto first = p.wait(30s);
  ASSERT_TRUE(first && WIFEXITED(*first));
  EXPECT_EQ(WEXITSTATUS(*first), 0);
}

// A process without the gateway answers /readyz 503 on its ops listener when one of its workers
// fails, naming it in a JSON body the gateway's own readiness shares.
TEST(OpsListener, ItsReadyzNamesAFailedWorker) {
  TempDir dir("imlog-ops-fault");
  int port = free_port();
  auto p = Subprocess::start({(binary_dir() / "imlog").string(), "serve", "--roles", "engine", "--data-dir",
                              dir.str() + "/data", "--ops-listen", fmt::format("127.0.0.1:{}", port)},
                             {"IMLOG_FAULT_WORKER=directory"});
  HttpClient http("127.0.0.1", port);
  // 503 "starting" first, then 503 naming the failed worker.
  ASSERT_TRUE(wait_until([&] { return http.get("/readyz").body.find("directory") != std::string::npos; }, 60s))
      << http.get("/readyz").body;
  auto r = http.get("/readyz");
  EXPECT_EQ(r.status, 503);
  EXPECT_STREQ(r.json()["code"].GetString(), "not_ready") << r.body;
  EXPECT_THAT(r.body, HasSubstr("fault injected by IMLOG_FAULT_WORKER")) << r.body;
  EXPECT_EQ(http.get("/healthz").status, 200);
}

}  // namespace
}  // namespace imlog::testing
