// A failed background worker seen from outside (issue 16): the single node as a child process with
// one worker made to fail (IMLOG_FAULT_WORKER, core/include/imlog/core/worker.h). /readyz must
// answer 503 naming the worker, /metrics must count it, and commands must be answered at once
// with an error instead of waiting for a time-out.
//
// And a first start on a long log (issue 15): /readyz answers 503 while the engine catches its
// partitions up from offset 0, and once it answers 200 a command is answered at once.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/event_log_builder.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// A command time-out far above what the test allows an answer to take: an answer within the
// allowance came from the failure, not from the time-out.
constexpr const char* kConfig = R"(
gateway:
  command_timeout: 60s
  password_ops_limit: 1
  password_mem_limit: 8KiB
)";
constexpr auto kPromptly = 10s;

class Readiness : public ::testing::Test {
 protected:
  TempDir dir_{"imlog-readiness-test"};
  ImlogServer server_{dir_.str(), kConfig};

  // Starts the node with `worker` failing; returns the /readyz body once it says 503 for it.
  std::string start_with_failed(const std::string& worker) {
    server_.spawn({"IMLOG_FAULT_WORKER=" + worker});
    HttpResult ready;
    bool named = wait_until([&] {
      ready = server_.http().get("/readyz");
      return ready.status == 503 && ready.body.find(worker) != std::string::npos;
    }, 60s);
    EXPECT_TRUE(named) << "last /readyz: " << ready.status << " " << ready.body << ready.error;
    return ready.body;
  }
};

TEST_F(Readiness, AFailedCommandBusIsNamedCountedAndCommandsFailAtOnce) {
  auto body = start_with_failed("command-bus");
  EXPECT_THAT(body, HasSubstr("fault injected by IMLOG_FAULT_WORKER"));

  auto metrics = server_.http().get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.body, HasSubstr("imlog_worker_failed{worker=\"command-bus\"} 1"));
  EXPECT_THAT(metrics.body, HasSubstr("imlog_worker_up{worker=\"router\"} 1"));
  EXPECT_THAT(metrics.body, HasSubstr("imlog_worker_failures_total 1"));

  // Registering is a command: it must come back as an error now, not after the 60 s time-out.
  auto started = std::chrono::steady_clock::now();
  auto reg = server_.http().post("/api/v1/auth/register",
                                 R"({"username":"ready_user","password":"correct horse","nickname":"r"})");
  EXPECT_LT(std::chrono::steady_clock::now() - started, kPromptly);
  EXPECT_EQ(reg.status, 503) << reg.body << reg.error;

  // The process stays up to say so (a gateway process reports through /readyz).
  EXPECT_TRUE(server_.running());
  EXPECT_EQ(server_.http().get("/healthz").status, 200);
}

TEST_F(Readiness, AFailedRouterMakesTheGatewayNotReady) {
  auto body = start_with_failed("router");
  EXPECT_THAT(body, HasSubstr("router: "));
  auto metrics = server_.http().get("/metrics");
  EXPECT_THAT(metrics.body, HasSubstr("imlog_worker_failed{worker=\"router\"} 1"));
  EXPECT_THAT(metrics.body, HasSubstr("imlog_worker_failed{worker=\"command-bus\"} 0"));
}

// An embedded log of `messages` one-to-one messages among 100 users in the node's data directory,
// with no engine state and no read model: the node's first start on it is a rebuild.
void write_log(const std::string& data_dir, int messages) {
  LocalLogConfig lc;
  lc.dir = data_dir + "/log";
  auto log = LocalLog::open(lc);
  ASSERT_TRUE(log) << log.error().to_string();
  auto b = EventLogBuilder::open(**log, 4);
  ASSERT_TRUE(b) << b.error().to_string();
  std::vector<uint64_t> users;
  for (int i = 0; i < 100; ++i) users.push_back((*b)->register_user("catch" + std::to_string(i)));
  for (int i = 0; i < messages; ++i) {
    uint64_t from = users[static_cast<size_t>(i) % users.size()];
    uint64_t to = users[static_cast<size_t>(i * 7 + 1) % users.size()];
    if (from == to) to = users[(static_cast<size_t>(i) + 1) % users.size()];
    (*b)->message(single_stream(from, to), from, "message " + std::to_string(i));
  }
  auto ends = (*b)->ends();
  ASSERT_TRUE(ends) << ends.error().to_string();
}

TEST_F(Readiness, TheEngineCatchingUpALongLogIsNotReady) {
  write_log(server_.data_dir(), 400'000);  // a catch-up that outlasts the node's start by far
  server_.spawn();
  HttpResult ready;
  std::string catching;  // the first /readyz body that said so
  bool up = wait_until([&] {
    ready = server_.http().get("/readyz");
    if (ready.status == 503 && catching.empty() && ready.body.find("catching up partition") != std::string::npos) {
      catching = ready.body;
    }
    return ready.status == 200;
  }, 240s);
  ASSERT_TRUE(up) << "last /readyz: " << ready.status << " " << ready.body << ready.error;
  EXPECT_THAT(catching, HasSubstr("of im.events from the log: offset "))
      << "no /readyz answer said the engine was catching up";

  // Ready means the engine answers: a registration is not left waiting for the catch-up.
  auto started = std::chrono::steady_clock::now();
  auto reg = server_.http().post("/api/v1/auth/register",
                                 R"({"username":"after_catch_up","password":"correct horse","nickname":"a"})");
  EXPECT_LT(std::chrono::steady_clock::now() - started, kPromptly);
  EXPECT_EQ(reg.status, 201) << reg.body << reg.error;
}

}  // namespace
}  // namespace imlog::testing
