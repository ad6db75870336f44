// The login throttles against each other: the same behavioural tests, with an injected clock, run
// on the in-process throttle (make_local_login_throttle) and on the Redis one
// (open_redis_login_throttle) against a REAL redis-server — scripts/test's (IMLOG_REDIS_HOST/PORT)
// or, run by hand, one tests/support starts (servers.h). A missing Redis is a failure, never a skip.
//
// Both: back-off starts after the free failures and doubles up to its maximum; another address
// is not locked out; the per-address and per-account limits; a success clears its pair and takes
// back only its own count; refused and abandoned attempts count nothing; failures are forgotten
// after the window; registrations count the address alone; concurrent attempts cannot slip past a
// limit together. In process: the entries stay bounded under a flood of names and addresses, and
// forgotten ones go. Redis: two throttles (two gateways) share their counts, every key expires,
// and an unreachable Redis is an error naming host:port.
//   build/tests/login_throttle_test     or     scripts/test -R LoginThrottle

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "imlog/tasks/login_throttle.h"
#include "imlog/tasks/redis_login_throttle.h"
#include "imlog/testing/servers.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
namespace t = imlog::testing;

// Small numbers, so every limit is reached in a few calls.
LoginThrottleConfig small_config() {
  LoginThrottleConfig c;
  c.account_address_failures = 3;
  c.address_failures = 6;
  c.account_failures = 10;
  c.first_backoff = 1000ms;
  c.max_backoff = 8000ms;
  c.window = 60'000ms;
  c.max_entries = 16;
  return c;
}

RedisSessionsConfig redis_config() {
  static int n = 0;
  const RedisConfig& r = t::TestServers::get().redis;
  RedisSessionsConfig c;
  c.host = r.host;
  c.port = r.port;
  c.key_prefix = "imlog-throttle-test:" + std::to_string(::getpid()) + ":" + std::to_string(++n) + ":";
  return c;
}

#define REQUIRE_REDIS() \
  ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem

using Factory = std::function<std::unique_ptr<LoginThrottle>(const LoginThrottleConfig&, const Clock&)>;

struct Kind {
  std::string name;
  Factory make;
};
void PrintTo(const Kind& k, std::ostream* os) { *os << k.name; }

class LoginThrottleBehaviour : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    if (GetParam().name == "redis") {
      REQUIRE_REDIS();
    }
  }
  std::unique_ptr<LoginThrottle> make(const LoginThrottleConfig& c = small_config()) {
    auto t = GetParam().make(c, clock_);
    EXPECT_NE(t, nullptr);
    return t;
  }
  ManualClock clock_{1'700'000'000'000};
};

// The verdict on one attempt: "ok" when admitted, else the refusing key and the wait in ms.
std::string verdict(LoginThrottle& t, std::string_view account, std::string_view address) {
  auto a = t.admit(account, address);
  if (!a) return "error: " + a.error().to_string();
  if (a->admitted()) return "ok";
  std::string key = a->refused_by == ThrottleKey::account_address ? "pair"
                    : a->refused_by == ThrottleKey::address       ? "address"
                                                                  : "account";
  return key + " " + std::to_string(a->retry_after.count());
}

TEST_P(LoginThrottleBehaviour, BackOffStartsAfterTheFreeFailuresAndDoublesUpToTheMaximum) {
  auto t = make();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok") << "free failure " << i;
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 1000");
  clock_.advance_ms(400);
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 600") << "the wait counts down";
  clock_.advance_ms(600);
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 2000") << "each further failure doubles it";
  clock_.advance_ms(2000);
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 4000");
  clock_.advance_ms(4000);
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 8000");
  clock_.advance_ms(8000);
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 8000") << "capped at max_backoff";
}

TEST_P(LoginThrottleBehaviour, AnotherAddressIsNotLockedOut) {
  auto t = make();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 1000");
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.2"), "ok") << "the victim, from their own address";
  t->succeeded("victim", "10.0.0.2");
  EXPECT_EQ(verdict(*t, "someone", "10.0.0.1"), "ok") << "the guesser's address is not blocked for other accounts yet";
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 1000") << "still blocked for the guessed pair";
}

TEST_P(LoginThrottleBehaviour, OneAddressIsLimitedAcrossAccounts) {
  auto t = make();
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(verdict(*t, "user" + std::to_string(i), "10.0.0.1"), "ok") << "account " << i;
  }
  EXPECT_EQ(verdict(*t, "user9", "10.0.0.1"), "address 1000") << "credential stuffing from one address";
  EXPECT_EQ(verdict(*t, "user9", "10.0.0.2"), "ok") << "the same account from another address";
}

TEST_P(LoginThrottleBehaviour, AnAccountHasACeilingAcrossAddresses) {
  auto t = make();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(verdict(*t, "victim", "10.0.1." + std::to_string(i)), "ok") << "address " << i;
  }
  EXPECT_EQ(verdict(*t, "victim", "10.0.2.1"), "account 1000") << "an attacker spread over many addresses";
  EXPECT_EQ(verdict(*t, "other", "10.0.2.1"), "ok") << "other accounts are not affected";
  clock_.advance_ms(1000);
  EXPECT_EQ(verdict(*t, "victim", "10.0.2.1"), "ok");
  EXPECT_EQ(verdict(*t, "victim", "10.0.2.2"), "account 2000");
}

TEST_P(LoginThrottleBehaviour, ASuccessClearsItsPairAndTakesBackOnlyItsOwnCount) {
  auto t = make();
  EXPECT_EQ(verdict(*t, "me", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "me", "10.0.0.1"), "ok");  // two typos
  EXPECT_EQ(verdict(*t, "me", "10.0.0.1"), "ok");
  t->succeeded("me", "10.0.0.1");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(verdict(*t, "me", "10.0.0.1"), "ok") << "the pair starts again";
  // The address now holds 5 failures (2 + 3): the success took back its own count only.
  EXPECT_EQ(verdict(*t, "other", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "another", "10.0.0.1"), "address 1000");
}

TEST_P(LoginThrottleBehaviour, RefusedAndAbandonedAttemptsCountNothing) {
  auto t = make();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok");
  for (int i = 0; i < 50; ++i) EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 1000") << i;
  clock_.advance_ms(1000);
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 2000") << "the refusals did not lengthen it";

  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(verdict(*t, "busy", "10.0.0.9"), "ok") << "an attempt without a verdict, " << i;
    t->abandoned("busy", "10.0.0.9");
  }
}

TEST_P(LoginThrottleBehaviour, FailuresAreForgottenAfterTheWindow) {
  auto t = make();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 1000");
  clock_.advance_ms(59'999);
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok") << "the back-off ended; the count is still there";
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 2000");
  clock_.advance_ms(60'000);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "ok") << "forgotten: free again, " << i;
  EXPECT_EQ(verdict(*t, "victim", "10.0.0.1"), "pair 1000");
}

TEST_P(LoginThrottleBehaviour, RegistrationsCountTheAddressAlone) {
  auto t = make();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(verdict(*t, "", "10.0.0.1"), "ok") << "a taken name probed, " << i;
  EXPECT_EQ(verdict(*t, "", "10.0.0.1"), "address 1000");
  EXPECT_EQ(verdict(*t, "anyone", "10.0.0.1"), "address 1000") << "logins from that address too";
  EXPECT_EQ(verdict(*t, "", "10.0.0.2"), "ok");
  t->succeeded("", "10.0.0.2");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(verdict(*t, "", "10.0.0.2"), "ok") << "a success took its count back";
}

TEST_P(LoginThrottleBehaviour, ConcurrentAttemptsCannotSlipPastTheLimitTogether) {
  auto t = make();
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 5; ++j) {
        if (verdict(*t, "victim", "10.0.0.1") == "ok") admitted++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 3) << "exactly the free failures, however the 40 attempts interleave";
}

INSTANTIATE_TEST_SUITE_P(
    BothThrottles, LoginThrottleBehaviour,
    ::testing::Values(Kind{"local",
                           [](const LoginThrottleConfig& c, const Clock& clock) -> std::unique_ptr<LoginThrottle> {
                             return make_local_login_throttle(c, clock);
                           }},
                      Kind{"redis",
                           [](const LoginThrottleConfig& c, const Clock& clock) -> std::unique_ptr<LoginThrottle> {
                             auto r = open_redis_login_throttle(redis_config(), c, clock);
                             if (!r) ADD_FAILURE() << r.error().to_string();
                             return r ? std::move(*r) : nullptr;
                           }}),
    [](const ::testing::TestParamInfo<Kind>& i) { return i.param.name; });

// ---- in process ----------------------------------------------------------------------------------

TEST(LocalLoginThrottle, AFloodOfNamesAndAddressesStaysBounded) {
  ManualClock clock;
  auto t = make_local_login_throttle(small_config(), clock);  // 16 entries per table
  for (int i = 0; i < 5000; ++i) {
    auto a = t->admit("name" + std::to_string(i), "10." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ".1");
    ASSERT_TRUE(a && a->admitted()) << i;
  }
  EXPECT_EQ(t->entries(), 48u) << "16 pairs, 16 addresses, 16 accounts";
  // The newest entries are the ones kept: the latest account still counts its failures.
  for (int i = 0; i < 9; ++i) (void)t->admit("name4999", "10.9.9." + std::to_string(i));
  EXPECT_FALSE(t->admit("name4999", "10.9.9.100")->admitted()) << "the newest account's 10 failures are kept";
}

TEST(LocalLoginThrottle, ForgottenEntriesAreDropped) {
  ManualClock clock;
  auto t = make_local_login_throttle(small_config(), clock);
  for (int i = 0; i < 10; ++i) (void)t->admit("name" + std::to_string(i), "10.0.0." + std::to_string(i));
  EXPECT_EQ(t->entries(), 30u);
  clock.advance_ms(60'000);
  (void)t->admit("late", "10.0.1.1");
  EXPECT_EQ(t->entries(), 3u) << "only the new attempt's entries are left";
}

TEST(LoginThrottleConfig, ProblemsNameTheField) {
  auto c = small_config();
  EXPECT_EQ(login_throttle_problem(c), "");
  c.window = 1000ms;
  EXPECT_NE(login_throttle_problem(c).find("window"), std::string::npos);
  c = small_config();
  c.address_failures = 0;
  EXPECT_NE(login_throttle_problem(c).find("address_failures"), std::string::npos);
  c = small_config();
  c.max_backoff = 10ms;
  EXPECT_NE(login_throttle_problem(c).find("max_backoff"), std::string::npos);
}

// ---- Redis ---------------------------------------------------------------------------------------

TEST(RedisLoginThrottle, TwoGatewaysShareTheirCounts) {
  REQUIRE_REDIS();
  ManualClock clock;
  auto config = redis_config();
  auto a = open_redis_login_throttle(config, small_config(), clock);
  auto b = open_redis_login_throttle(config, small_config(), clock);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(verdict(**a, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(**b, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(**a, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(**b, "victim", "10.0.0.1"), "pair 1000") << "gateway b sees gateway a's failures";
  clock.advance_ms(1000);
  EXPECT_EQ(verdict(**b, "victim", "10.0.0.1"), "ok");
  EXPECT_EQ(verdict(**a, "victim", "10.0.0.1"), "pair 2000") << "and gateway a gateway b's";
}

TEST(RedisLoginThrottle, EveryKeyExpiresAfterTheWindow) {
  REQUIRE_REDIS();
  auto config = redis_config();
  auto t = open_redis_login_throttle(config, small_config());
  ASSERT_TRUE(t);
  ASSERT_EQ(verdict(**t, "victim", "10.0.0.1"), "ok");
  RedisConfig rc;
  rc.host = config.host;
  rc.port = config.port;
  t::RawRedis raw(rc);
  EXPECT_EQ(raw.run({"EVAL", "return #redis.call('KEYS', ARGV[1])", "0", config.key_prefix + "*"}), "3")
      << raw.run({"KEYS", config.key_prefix + "*"});
  for (std::string key : {"login:pair:10.0.0.1 victim", "login:addr:10.0.0.1", "login:acct:victim"}) {
    int64_t pttl = std::stoll(raw.run({"PTTL", config.key_prefix + key}));
    EXPECT_GT(pttl, 0) << key;
    EXPECT_LE(pttl, 60'000) << key;
  }
  (*t)->succeeded("victim", "10.0.0.1");
  EXPECT_EQ(raw.run({"EXISTS", config.key_prefix + "login:pair:10.0.0.1 victim"}), "0") << "a success deletes the pair";
  EXPECT_EQ(raw.run({"EXISTS", config.key_prefix + "login:addr:10.0.0.1"}), "0") << "its count was the only one";
}

TEST(RedisLoginThrottle, AnUnreachableRedisIsAnErrorNamingIt) {
  auto config = redis_config();
  config.port = t::free_port();
  config.connect_timeout = 500ms;
  auto t = open_redis_login_throttle(config, small_config());
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().to_string().find("127.0.0.1:" + std::to_string(config.port)), std::string::npos)
      << t.error().to_string();
  EXPECT_TRUE(t.error().retryable());
}

}  // namespace
}  // namespace imlog
