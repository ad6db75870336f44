// End to end, login under attack (issue 12): the built `imlog serve` as a child process on a free
// loopback port, driven over real sockets from several source addresses (127.0.0.x: the client
// binds its socket to one, and all of 127.0.0.0/8 reaches the server).
//
// Wrong passwords earn 429 `rate_limited` with Retry-After for that account from that address,
// while the owner logs in from another; one address is limited across accounts, and through
// registrations of taken names; a success resets its pair; every login costs exactly one password
// hash whether the user exists or not (counted by /metrics, not timed), and an unknown name does
// not wait for the read model; beyond the bound on concurrent hashes, 503 `unavailable` with
// Retry-After instead of a queue. Nothing sleeps; nothing is timed.

#include <sodium.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "imlog/testing/client.h"
#include "imlog/testing/imlog_server.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

// Cheap hashes; small limits and a long first back-off (no test waits one out); a read-model
// wait longer than the client's 15 s time-out, so a login that waited for it would fail.
constexpr std::string_view kTestConfig = R"(
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 60s
  login_throttle:
    account_address_failures: 3
    address_failures: 8
    account_failures: 100
    first_backoff: 1m
    max_backoff: 10m
    window: 1h
)";

std::string unique_name(std::string_view base) {
  static std::atomic<int> n{0};
  return fmt::format("{}_{}_{}", base, ::getpid() % 100000, n++);
}

std::string credentials(std::string_view name, std::string_view password) {
  return fmt::format(R"({{"username":{},"password":{}}})", json_quote(name), json_quote(password));
}

HttpResult login(const HttpClient& from, std::string_view name, std::string_view password) {
  return from.post("/api/v1/auth/login", credentials(name, password));
}

HttpResult register_user(const HttpClient& from, std::string_view name) {
  return from.post("/api/v1/auth/register", credentials(name, "correct horse"));
}

std::string code_of(const HttpResult& r) {
  auto j = r.json();
  return j.IsObject() && j.HasMember("code") && j["code"].IsString() ? j["code"].GetString() : "";
}

// Password hashes and verifications so far (imlog_gateway_password_hashes_total), -1 if absent.
int64_t hashes(const ImlogServer& s) {
  auto m = s.http().get("/metrics");
  constexpr std::string_view kName = "\nimlog_gateway_password_hashes_total ";
  auto at = m.body.find(kName);
  if (m.status != 200 || at == std::string::npos) return -1;
  return std::stoll(m.body.substr(at + kName.size()));
}

// A 429 as promised: code rate_limited, a message, and Retry-After in whole seconds within `max_s`.
void expect_rate_limited(const HttpResult& r, int max_s, std::string_view message_part) {
  EXPECT_EQ(r.status, 429) << r.body << r.error;
  EXPECT_EQ(code_of(r), "rate_limited") << r.body;
  EXPECT_NE(r.body.find(message_part), std::string::npos) << r.body;
  std::string after = r.header("Retry-After");
  ASSERT_FALSE(after.empty()) << "no Retry-After header";
  int s = std::stoi(after);
  EXPECT_GE(s, 1);
  EXPECT_LE(s, max_s);
  EXPECT_NE(r.body.find("retry in " + after + " s"), std::string::npos) << r.body;
}

class E2eLogin : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_GE(sodium_init(), 0);
    dir_ = new TempDir("imlog-e2e-login");
    server_ = new ImlogServer(dir_->str(), kTestConfig);
    EXPECT_TRUE(server_->start()) << "imlog did not become ready on port " << server_->port();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
    server_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_ && server_->running()) << "the server did not start"; }
  static const ImlogServer& s() { return *server_; }
  // A client of the server from `source` (each test uses addresses of its own: the per-address
  // counts would otherwise carry over from test to test).
  static HttpClient from(const std::string& source) { return HttpClient("127.0.0.1", server_->port(), source); }

  static TempDir* dir_;
  static ImlogServer* server_;
};
TempDir* E2eLogin::dir_ = nullptr;
ImlogServer* E2eLogin::server_ = nullptr;

TEST_F(E2eLogin, WrongPasswordsBackOffWhileTheOwnerLogsInFromAnotherAddress) {
  std::string victim = unique_name("victim");
  ASSERT_EQ(register_user(s().http(), victim).status, 201);
  auto attacker = from("127.0.0.3");
  for (int i = 0; i < 3; ++i) {
    auto r = login(attacker, victim, "guess " + std::to_string(i));
    EXPECT_EQ(r.status, 401) << "guess " << i << ": " << r.body;
  }
  int64_t before = hashes(s());
  auto refused = login(attacker, victim, "guess 3");
  expect_rate_limited(refused, 60, "for this username from your address");
  expect_rate_limited(login(attacker, victim, "correct horse"), 60, "from your address");
  EXPECT_EQ(hashes(s()), before) << "a refused attempt costs no hash";

  auto owner = login(from("127.0.0.4"), victim, "correct horse");
  EXPECT_EQ(owner.status, 200) << "the owner, from their own address: " << owner.body;
  EXPECT_EQ(login(from("127.0.0.4"), victim, "typo").status, 401) << "and their own typos are theirs";
}

TEST_F(E2eLogin, ASuccessfulLoginResetsItsBackOff) {
  std::string me = unique_name("forgetful");
  ASSERT_EQ(register_user(s().http(), me).status, 201);
  auto mine = from("127.0.0.9");
  EXPECT_EQ(login(mine, me, "typo 1").status, 401);
  EXPECT_EQ(login(mine, me, "typo 2").status, 401);
  EXPECT_EQ(login(mine, me, "correct horse").status, 200);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(login(mine, me, "typo again").status, 401) << "counted afresh, " << i;
  expect_rate_limited(login(mine, me, "correct horse"), 60, "for this username from your address");
}

TEST_F(E2eLogin, OneAddressIsLimitedAcrossAccountsAndThroughTakenNames) {
  auto stuffer = from("127.0.0.5");
  for (int i = 0; i < 8; ++i) {
    auto r = login(stuffer, unique_name("nobody"), "password123");
    EXPECT_EQ(r.status, 401) << "account " << i << ": " << r.body;
  }
  expect_rate_limited(login(stuffer, unique_name("nobody"), "password123"), 60, "from your address");
  std::string someone = unique_name("someone");
  EXPECT_EQ(register_user(from("127.0.0.6"), someone).status, 201) << "another address is not affected";

  auto prober = from("127.0.0.8");
  for (int i = 0; i < 8; ++i) {
    auto r = register_user(prober, someone);
    EXPECT_EQ(r.status, 409) << "probe " << i << ": " << r.body;
  }
  expect_rate_limited(register_user(prober, unique_name("fresh")), 60, "from your address");
  EXPECT_EQ(login(from("127.0.0.6"), someone, "correct horse").status, 200);
}

TEST_F(E2eLogin, EveryLoginCostsExactlyOneHashWhetherTheUserExistsOrNot) {
  auto client = from("127.0.0.7");
  std::string known = unique_name("known");
  int64_t h0 = hashes(s());
  ASSERT_GE(h0, 0) << "no imlog_gateway_password_hashes_total in /metrics";
  ASSERT_EQ(register_user(client, known).status, 201);
  int64_t h1 = hashes(s());
  EXPECT_EQ(h1 - h0, 1) << "register";

  auto unknown = login(client, unique_name("unknown"), "correct horse");
  EXPECT_EQ(unknown.status, 401) << "an unknown name answers without waiting for the read model: " << unknown.error;
  EXPECT_EQ(code_of(unknown), "unauthorized");
  int64_t h2 = hashes(s());
  EXPECT_EQ(h2 - h1, 1) << "unknown user";

  auto invalid = login(client, "no such/name!", "correct horse");
  EXPECT_EQ(invalid.status, 401);
  int64_t h3 = hashes(s());
  EXPECT_EQ(h3 - h2, 1) << "a name that cannot exist";

  auto wrong = login(client, known, "wrong horse");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.body, unknown.body) << "the same answer as for an unknown user";
  int64_t h4 = hashes(s());
  EXPECT_EQ(h4 - h3, 1) << "known user, wrong password";

  EXPECT_EQ(login(client, known, "correct horse").status, 200);
  EXPECT_EQ(hashes(s()) - h4, 1) << "known user, right password";
}

// A server whose single password thread may hold one hash, each slow enough that a burst of
// concurrent logins overlaps it: the rest are refused at once instead of queueing.
TEST(E2eLoginOverload, BeyondTheBoundOnConcurrentHashesLoginsGet503WithRetryAfter) {
  ASSERT_GE(sodium_init(), 0);
  TempDir dir("imlog-e2e-login-overload");
  ImlogServer server(dir.str(), R"(
log: {level: warn}
gateway:
  password_ops_limit: 4
  password_mem_limit: 64MiB
  password_threads: 1
  password_queue: 1
)");
  ASSERT_TRUE(server.start()) << "imlog did not become ready on port " << server.port();
  int64_t before = hashes(server);
  constexpr int kBurst = 12;
  std::vector<HttpResult> results(kBurst);
  std::vector<std::thread> threads;
  for (int i = 0; i < kBurst; ++i) {
    threads.emplace_back([&, i] {
      HttpClient c("127.0.0.1", server.port(), fmt::format("127.0.1.{}", i + 1));
      results[i] = login(c, unique_name("burst"), "correct horse");
    });
  }
  for (auto& t : threads) t.join();
  int unauthorized = 0, unavailable = 0;
  for (const auto& r : results) {
    if (r.status == 401) {
      ++unauthorized;
      continue;
    }
    ASSERT_EQ(r.status, 503) << r.body << r.error;
    EXPECT_EQ(code_of(r), "unavailable") << r.body;
    EXPECT_EQ(r.header("Retry-After"), "1");
    ++unavailable;
  }
  EXPECT_GE(unauthorized, 1);
  EXPECT_GE(unavailable, 1) << "12 logins at once, one hash at a time: some must be refused";
  EXPECT_EQ(hashes(server) - before, unauthorized) << "a refused login costs no hash";
}

}  // namespace
}  // namespace imlog::testing
