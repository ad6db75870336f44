// A failed background worker seen from outside (issue 16): the single node as a child process with
// one worker made to fail (IMLOG_FAULT_WORKER, core/include/imlog/core/worker.h). /readyz must
// answer 503 naming the worker, /metrics must count it, and commands must be answered at once
// with an error instead of waiting for a time-out.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

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

}  // namespace
}  // namespace imlog::testing
