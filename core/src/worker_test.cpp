#include "imlog/core/worker.h"

#include <pthread.h>

#include <condition_variable>
#include <mutex>

#include <gtest/gtest.h>

namespace imlog {
namespace {

using namespace std::chrono_literals;

Status retryable(const std::string& what) { return fail(std::errc::resource_unavailable_try_again, what, true); }
Status fatal(const std::string& what) { return fail(std::errc::io_error, what, false); }

// Blocks the test until `done` holds, set by the worker's thread.
struct Signal {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  void set() {
    std::lock_guard lock(mu);
    done = true;
    cv.notify_all();
  }
  bool wait(std::chrono::milliseconds d = 10s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, d, [&] { return done; });
  }
};

// top and perf show the worker's name on its thread (cut to Linux's 15 bytes).
TEST(Worker, ItsThreadCarriesItsName) {
  std::string seen;
  Signal ran;
  Worker w("projector-mysql-model", [&]() -> Status {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    if (!ran.done) seen = name;
    ran.set();
    return {};
  });
  w.start();
  ASSERT_TRUE(ran.wait());
  w.stop();
  EXPECT_EQ(seen, "projector-mysql");
}

TEST(Worker, BacksOffOnRetryableErrorsAndRecovers) {
  std::vector<std::chrono::steady_clock::time_point> calls;
  Signal recovered;
  Worker w("flaky", [&]() -> Status {
    calls.push_back(std::chrono::steady_clock::now());
    if (calls.size() <= 3) return retryable("not yet");
    if (calls.size() == 4) recovered.set();
    return {};
  }, BackOff{20ms, 40ms});
  w.start();
  ASSERT_TRUE(recovered.wait());
  w.stop();
  ASSERT_GE(calls.size(), 4u);
  // 20 ms, then 40 ms, then 40 ms again (capped): the gaps grow and stop growing at max.
  EXPECT_GE(calls[1] - calls[0], 20ms);
  EXPECT_GE(calls[2] - calls[1], 40ms);
  EXPECT_GE(calls[3] - calls[2], 40ms);
  EXPECT_LT(calls[3] - calls[2], 80ms * 10);  // not doubled past the cap (with a loaded machine's slack)
  auto stats = w.stats();
  EXPECT_EQ(stats.retries, 3u);
  EXPECT_GE(stats.iterations, 1u);
  EXPECT_NE(stats.last_error.find("not yet"), std::string::npos);
  EXPECT_EQ(w.state(), WorkerState::stopped);
  EXPECT_TRUE(w.failure().empty());
}

TEST(Worker, AFatalErrorIsReportedOnceAndTheWorkerStaysFailed) {
  int steps = 0, reported = 0;
  Signal failed;
  Worker w("doomed", [&]() -> Status {
    ++steps;
    return fatal("disk gone");
  });
  w.on_failure([&](const Error& e) {
    ++reported;
    EXPECT_EQ(e.message(), "disk gone");
    failed.set();
  });
  uint64_t before = worker_failures_total();
  w.start();
  ASSERT_TRUE(failed.wait());
  w.stop();
  EXPECT_EQ(steps, 1) << "a fatal error is not retried";
  EXPECT_EQ(reported, 1);
  EXPECT_EQ(w.state(), WorkerState::failed);
  EXPECT_NE(w.failure().find("doomed: "), std::string::npos) << w.failure();
  EXPECT_NE(w.failure().find("disk gone"), std::string::npos) << w.failure();
  EXPECT_EQ(worker_failures_total(), before + 1);
  EXPECT_NE(failed_workers().find("doomed: "), std::string::npos);
  bool listed = false;
  for (const auto& r : worker_reports()) listed |= r.name == "doomed" && r.state == WorkerState::failed;
  EXPECT_TRUE(listed);
}

TEST(Worker, AFailureLeavesTheListWithItsWorker) {
  Signal failed;
  {
    Worker w("short-lived", [] { return fatal("boom"); });
    w.on_failure([&](const Error&) { failed.set(); });
    w.start();
    ASSERT_TRUE(failed.wait());
    EXPECT_NE(failed_workers().find("short-lived"), std::string::npos);
  }
  EXPECT_EQ(failed_workers().find("short-lived"), std::string::npos);
}

TEST(Worker, StopJoinsPromptlyWhileBackingOff) {
  Signal retrying;
  Worker w("patient", [&]() -> Status {
    retrying.set();
    return retryable("down");
  }, BackOff{10min, 10min});
  w.start();
  ASSERT_TRUE(retrying.wait());
  auto started = std::chrono::steady_clock::now();
  w.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_EQ(w.state(), WorkerState::stopped);
}

TEST(Worker, StopWakesAStepThatWaits) {
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
  Signal waiting;
  Worker w("sleeper", [&]() -> Status {
    std::unique_lock lock(mu);
    waiting.set();
    cv.wait_for(lock, 10min, [&] { return woken; });
    return {};
  });
  w.on_wake([&] {
    std::lock_guard lock(mu);
    woken = true;
    cv.notify_all();
  });
  w.start();
  ASSERT_TRUE(waiting.wait());
  auto started = std::chrono::steady_clock::now();
  w.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
}

TEST(Worker, APeriodicStepsWaitEndsAtStop) {
  Signal waiting;
  bool woke_by_stop = false;
  Worker* self = nullptr;
  Worker w("ticker", [&]() -> Status {
    waiting.set();
    if (!self->wait_for(10min)) woke_by_stop = true;
    return {};
  });
  self = &w;
  w.start();
  ASSERT_TRUE(waiting.wait());
  auto started = std::chrono::steady_clock::now();
  w.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_TRUE(woke_by_stop);
}

}  // namespace
}  // namespace imlog
