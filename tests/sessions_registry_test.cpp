// The session registries against each other: the same behavioural tests run on the in-process
// registry (make_local_sessions) and on the Redis registry (open_redis_sessions) against a REAL
// redis-server — the one scripts/test starts (IMLOG_REDIS_HOST/PORT), or, run by hand without
// those variables, one tests/support starts (servers.h). A missing Redis is a failure, never a
// skip.
//
// Redis only: a silent session expires after its TTL while a heartbeaten one stays (checked with
// an injected clock, and against Redis's own key expiry in real time); two registries — two
// gateways — see each other's sessions; a Redis that restarts (or loses its keys) is reconnected to
// and refilled by heartbeats; an error reply leaves nothing owed on a pooled connection; an unreachable
// Redis is an error naming host:port and a failed lookup returns nothing instead of crashing.
//   build/tests/sessions_registry_test     or     scripts/test -R SessionRegistry

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "imlog/tasks/lease.h"
#include "imlog/tasks/redis_sessions.h"
#include "imlog/tasks/sessions.h"
#include "imlog/testing/servers.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
namespace t = imlog::testing;
using Located = std::vector<std::pair<uint64_t, std::string>>;

// ---- Redis servers -------------------------------------------------------------------------------

struct Raw {
  explicit Raw(const RedisSessionsConfig& c) {
    timeval tv{1, 0};
    ctx = redisConnectWithTimeout(c.host.c_str(), c.port, tv);
  }
  ~Raw() {
    if (ctx) redisFree(ctx);
  }
  [[nodiscard]] bool ok() const { return ctx && !ctx->err; }
  // The reply as text: a string, an integer, or the elements joined by ','; "" when absent.
  std::string run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(ctx, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (!r) return "<no reply>";
    std::string out;
    if (r->type == REDIS_REPLY_INTEGER) out = std::to_string(r->integer);
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR) {
      out.assign(r->str, r->len);
    }
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; ++i) {
      out += (i ? "," : "") + std::string(r->element[i]->str ? r->element[i]->str : "", r->element[i]->len);
    }
    freeReplyObject(r);
    return out;
  }
  redisContext* ctx = nullptr;
};

bool answers(const RedisSessionsConfig& c) {
  Raw raw(c);
  return raw.ok() && raw.run({"PING"}) == "PONG";
}

// A redis-server of this process, on a free port, in a temporary directory.
class OwnRedis {
 public:
  static std::unique_ptr<OwnRedis> start(std::string& problem) {
    std::string server = t::find_program("redis-server");
    if (server.empty()) {
      problem = "no redis-server to start: run scripts/setup";
      return nullptr;
    }
    std::unique_ptr<OwnRedis> r(new OwnRedis(server));
    if (!r->launch()) {
      problem = "redis-server started on port " + std::to_string(r->port) + " did not answer within 20 s";
      return nullptr;
    }
    return r;
  }

  bool launch() {
    process_ = std::make_unique<t::Subprocess>(t::Subprocess::start(
        {server_, "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
         dir_.str(), "--logfile", dir_.str() + "/redis.log"}));
    return t::wait_until([&] { return answers(config()); }, 20s);
  }
  void kill() { process_.reset(); }

  [[nodiscard]] RedisSessionsConfig config() const {
    RedisSessionsConfig c;
    c.host = "127.0.0.1";
    c.port = port;
    return c;
  }
  int port = 0;

 private:
  explicit OwnRedis(std::string server) : server_(std::move(server)) { port = t::free_port(); }
  std::string server_;
  t::TempDir dir_{"imlog-sessions-redis"};
  std::unique_ptr<t::Subprocess> process_;
};

// The Redis of this test binary: scripts/test's, or, outside CI, one tests/support starts.
RedisSessionsConfig shared_redis() {
  const RedisConfig& r = t::TestServers::get().redis;
  RedisSessionsConfig c;
  c.host = r.host;
  c.port = r.port;
  return c;
}

#define REQUIRE_REDIS() \
  ASSERT_TRUE(t::TestServers::get().redis_problem.empty()) << t::TestServers::get().redis_problem

// A key prefix no other test (or run) uses.
RedisSessionsConfig redis_config(RedisSessionsConfig base = shared_redis()) {
  static int n = 0;
  base.key_prefix = "imlog-sessions-test:" + std::to_string(::getpid()) + ":" + std::to_string(++n) + ":";
  return base;
}

// ---- the same behaviour from both registries ---------------------------------------------------

using Factory = std::function<std::unique_ptr<SessionRegistry>(const Clock&)>;

struct Kind {
  std::string name;
  Factory make;
};

class SessionRegistryBehaviour : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    if (GetParam().name == "redis") {
      REQUIRE_REDIS();
    }
  }
  std::unique_ptr<SessionRegistry> make(const Clock& clock = SystemClock::instance()) {
    auto s = GetParam().make(clock);
    EXPECT_NE(s, nullptr);
    return s;
  }
};

std::vector<Presence> presence_of(const SessionRegistry& s, std::vector<uint64_t> users) {
  std::vector<Presence> out;
  s.presence(users, out);
  return out;
}

TEST_P(SessionRegistryBehaviour, LocatesEachGatewayOfAUserOnce) {
  auto s = make();
  s->connected(7, "gw-a", 1);
  s->connected(7, "gw-a", 2);
  s->connected(7, "gw-b", 3);
  std::vector<uint64_t> users{7, 8};
  Located out;
  s->locate(users, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (std::pair<uint64_t, std::string>{7, "gw-a"}));
  EXPECT_EQ(out[1], (std::pair<uint64_t, std::string>{7, "gw-b"}));
  EXPECT_EQ(s->devices(7), 3u);
  s->disconnected(7, "gw-a", 1);
  s->disconnected(7, "gw-a", 2);
  EXPECT_EQ(s->devices(7), 1u);
  out.clear();
  s->locate(users, out);
  EXPECT_EQ(out, (Located{{7, "gw-b"}}));
}

TEST_P(SessionRegistryBehaviour, PresenceGoesOnlineAwayAndOfflineWithLastSeen) {
  ManualClock clock(1000);
  auto s = make(clock);
  EXPECT_EQ(presence_of(*s, {5}), (std::vector<Presence>{{5, PresenceStatus::offline, 0}}));

  s->connected(5, "gw", 1);
  EXPECT_EQ(presence_of(*s, {5}), (std::vector<Presence>{{5, PresenceStatus::online, 1000}}));

  clock.advance_ms(500);
  s->heartbeat(5, "gw", 1);
  EXPECT_EQ(s->set_status(5, PresenceStatus::away), SetStatusResult::saved);
  EXPECT_EQ(presence_of(*s, {5}), (std::vector<Presence>{{5, PresenceStatus::away, 1500}}));
  EXPECT_EQ(s->set_status(5, PresenceStatus::offline), SetStatusResult::invalid)
      << "offline is not a status one chooses";

  clock.advance_ms(500);
  s->disconnected(5, "gw", 1);
  EXPECT_EQ(presence_of(*s, {5}), (std::vector<Presence>{{5, PresenceStatus::offline, 2000}}));

  s->connected(5, "gw", 2);
  EXPECT_EQ(presence_of(*s, {5})[0].status, PresenceStatus::away);
  EXPECT_EQ(s->set_status(5, PresenceStatus::online), SetStatusResult::saved);
  EXPECT_EQ(presence_of(*s, {5})[0].status, PresenceStatus::online);
  EXPECT_EQ(s->set_status(5, PresenceStatus::busy), SetStatusResult::saved);
  EXPECT_EQ(presence_of(*s, {5, 6}), (std::vector<Presence>{{5, PresenceStatus::busy, 2000},
                                                             {6, PresenceStatus::offline, 0}}));
}

TEST_P(SessionRegistryBehaviour, AHeartbeatRegistersASessionTheRegistryDidNotKnow) {
  ManualClock clock(3000);
  auto s = make(clock);
  s->disconnected(9, "gw", 1);  // unknown: nothing happens
  EXPECT_EQ(presence_of(*s, {9})[0].last_seen_ms, 0);
  s->heartbeat(9, "gw", 1);  // a live session the registry lost: it is back
  EXPECT_EQ(presence_of(*s, {9}), (std::vector<Presence>{{9, PresenceStatus::online, 3000}}));
  EXPECT_EQ(s->devices(9), 1u);
  Located out;
  s->all_online(out);
  EXPECT_EQ(out, (Located{{9, "gw"}}));
}

TEST_P(SessionRegistryBehaviour, AllOnlineListsEveryUserOnEveryGatewayOnce) {
  auto s = make();
  s->connected(1, "gw-a", 10);
  s->connected(1, "gw-a", 11);
  s->connected(2, "gw-b", 20);
  s->connected(3, "gw-a", 30);
  s->connected(3, "gw-b", 31);
  s->disconnected(2, "gw-b", 20);
  Located out;
  s->all_online(out);
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, (Located{{1, "gw-a"}, {3, "gw-a"}, {3, "gw-b"}}));
}

TEST_P(SessionRegistryBehaviour, ManyUsersAreLocatedInOrderAcrossBatches) {
  auto s = make();
  std::vector<uint64_t> users;
  for (uint64_t u = 1; u <= 1300; ++u) {
    users.push_back(u);
    if (u % 3 != 0) s->connected(u, u % 2 ? "gw-odd" : "gw-even", u);
  }
  Located out;
  s->locate(users, out);
  Located want;
  for (uint64_t u = 1; u <= 1300; ++u) {
    if (u % 3 != 0) want.emplace_back(u, u % 2 ? "gw-odd" : "gw-even");
  }
  EXPECT_EQ(out, want);
}

TEST_P(SessionRegistryBehaviour, AGatewayIdWithASlashIsKeptWhole) {
  auto s = make();
  s->connected(4, "zone/gw-1", 1);
  Located out;
  s->locate(std::vector<uint64_t>{4}, out);
  EXPECT_EQ(out, (Located{{4, "zone/gw-1"}}));
}

INSTANTIATE_TEST_SUITE_P(
    BothRegistries, SessionRegistryBehaviour,
    ::testing::Values(Kind{"local", [](const Clock& c) { return make_local_sessions(c); }},
                      Kind{"redis",
                           [](const Clock& c) -> std::unique_ptr<SessionRegistry> {
                             auto config = redis_config();
                             config.lookup_batch = 512;  // 1300 users: three pipelined batches
                             auto r = open_redis_sessions(config, c);
                             if (!r) ADD_FAILURE() << r.error().to_string();
                             return r ? std::move(*r) : nullptr;
                           }}),
    [](const ::testing::TestParamInfo<Kind>& info) { return info.param.name; });

// ---- Redis only ----------------------------------------------------------------------------------

std::unique_ptr<SessionRegistry> open_or_fail(const RedisSessionsConfig& c, const Clock& clock) {
  auto r = open_redis_sessions(c, clock);
  EXPECT_TRUE(r) << r.error().to_string();
  return r ? std::move(*r) : nullptr;
}

TEST(RedisSessionRegistry, ASilentSessionExpiresAfterItsTtlWhileAHeartbeatenOneStays) {
  REQUIRE_REDIS();
  ManualClock clock(1'000'000);
  auto config = redis_config();
  config.ttl = 10s;
  auto s = open_or_fail(config, clock);
  ASSERT_TRUE(s);
  s->connected(1, "gw-alive", 1);
  s->connected(1, "gw-crashed", 2);
  s->connected(2, "gw-crashed", 3);
  clock.advance_ms(6000);
  s->heartbeat(1, "gw-alive", 1);
  clock.advance_ms(6000);  // 12 s after connecting: the crashed gateway's sessions are 2 s past their TTL
  Located out;
  s->locate(std::vector<uint64_t>{1, 2}, out);
  EXPECT_EQ(out, (Located{{1, "gw-alive"}}));
  EXPECT_EQ(s->devices(1), 1u);
  EXPECT_EQ(s->devices(2), 0u);
  auto p = presence_of(*s, {1, 2});
  EXPECT_EQ(p[0].status, PresenceStatus::online);
  EXPECT_EQ(p[1].status, PresenceStatus::offline);
  EXPECT_EQ(p[1].last_seen_ms, 1'000'000) << "last seen stays the last sign of life";
  out.clear();
  s->all_online(out);
  EXPECT_EQ(out, (Located{{1, "gw-alive"}}));
  // The lookup removed the expired fields it met.
  Raw raw(config);
  EXPECT_EQ(raw.run({"HKEYS", config.key_prefix + "sess:1"}), "gw-alive/1");
  EXPECT_EQ(raw.run({"EXISTS", config.key_prefix + "sess:2"}), "0");
  // A heartbeat that comes after all (the session was alive, its gateway late) registers it again.
  s->heartbeat(2, "gw-crashed", 3);
  EXPECT_EQ(s->devices(2), 1u);
}

// Redis lost every key of the registry (a restart without persistence, a FLUSHDB): each live
// session is back, locatable and online, after its next heartbeat — without a reconnect.
TEST(RedisSessionRegistry, AHeartbeatAfterRedisLostTheKeysRegistersTheSessionAgain) {
  REQUIRE_REDIS();
  auto config = redis_config();
  auto s = open_or_fail(config, SystemClock::instance());
  ASSERT_TRUE(s);
  s->connected(21, "gw-a", 1);
  s->connected(22, "gw-b", 2);
  ASSERT_EQ(s->set_status(21, PresenceStatus::busy), SetStatusResult::saved);
  Raw raw(config);
  std::string keys = raw.run({"KEYS", config.key_prefix + "*"});
  ASSERT_FALSE(keys.empty());
  std::vector<std::string> del{"DEL"};
  std::stringstream ss(keys);
  for (std::string k; std::getline(ss, k, ',');) del.push_back(k);
  EXPECT_EQ(raw.run(del), std::to_string(del.size() - 1));
  Located out;
  s->locate(std::vector<uint64_t>{21, 22}, out);
  ASSERT_TRUE(out.empty()) << "Redis forgot them";

  s->heartbeat(21, "gw-a", 1);
  s->heartbeat(22, "gw-b", 2);
  s->locate(std::vector<uint64_t>{21, 22}, out);
  EXPECT_EQ(out, (Located{{21, "gw-a"}, {22, "gw-b"}}));
  out.clear();
  s->all_online(out);
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, (Located{{21, "gw-a"}, {22, "gw-b"}}));
  EXPECT_EQ(presence_of(*s, {21})[0].status, PresenceStatus::online) << "the chosen status went with the data";
  EXPECT_EQ(raw.run({"HKEYS", config.key_prefix + "sess:21"}), "gw-a/1");
  EXPECT_NE(raw.run({"PTTL", config.key_prefix + "sess:21"}), "-1") << "the key expires again";
}

TEST(RedisSessionRegistry, RedisDropsTheKeysOfAUserWhoseGatewayWentSilent) {
  REQUIRE_REDIS();
  auto config = redis_config();
  config.ttl = 1s;
  auto s = open_or_fail(config, SystemClock::instance());
  ASSERT_TRUE(s);
  s->connected(3, "gw", 1);
  Raw raw(config);
  EXPECT_EQ(raw.run({"EXISTS", config.key_prefix + "sess:3"}), "1");
  EXPECT_TRUE(t::wait_until([&] { return raw.run({"EXISTS", config.key_prefix + "sess:3"}) == "0"; }, 10s))
      << "the key's own TTL removes it with nobody reading";
  EXPECT_EQ(s->devices(3), 0u);
}

TEST(RedisSessionRegistry, TwoGatewaysSeeEachOthersSessions) {
  REQUIRE_REDIS();
  auto config = redis_config();
  auto a = open_or_fail(config, SystemClock::instance());
  auto b = open_or_fail(config, SystemClock::instance());
  ASSERT_TRUE(a && b);
  a->connected(10, "gw-a", 1);
  b->connected(10, "gw-b", 2);
  b->connected(11, "gw-b", 3);
  for (auto* s : {a.get(), b.get()}) {
    Located out;
    s->locate(std::vector<uint64_t>{10, 11}, out);
    EXPECT_EQ(out, (Located{{10, "gw-a"}, {10, "gw-b"}, {11, "gw-b"}}));
    EXPECT_EQ(s->devices(10), 2u);
  }
  ASSERT_EQ(b->set_status(10, PresenceStatus::busy), SetStatusResult::saved);
  EXPECT_EQ(presence_of(*a, {10})[0].status, PresenceStatus::busy);
  a->disconnected(10, "gw-a", 1);
  Located out;
  b->locate(std::vector<uint64_t>{10}, out);
  EXPECT_EQ(out, (Located{{10, "gw-b"}}));
}

// An error reply in the middle of a pipeline (here WRONGTYPE: the presence key is not a hash) must
// not leave the replies after it on the pooled connection for the next caller to read as its own.
TEST(RedisSessionRegistry, AnErrorReplyLeavesNoRepliesOwedToTheNextCallerOfThePool) {
  REQUIRE_REDIS();
  auto config = redis_config();
  config.pool_size = 1;  // every call borrows the same connection
  auto s = open_or_fail(config, SystemClock::instance());
  ASSERT_TRUE(s);
  s->connected(1, "gw-a", 1);
  Raw raw(config);
  ASSERT_EQ(raw.run({"SET", config.key_prefix + "presence:2", "not a hash"}), "OK");
  uint64_t failures = redis_sessions_failures();
  // HSET answers WRONGTYPE; the PEXPIRE piped after it answers 1. The status was not saved: said so.
  EXPECT_EQ(s->set_status(2, PresenceStatus::away), SetStatusResult::unavailable);
  EXPECT_EQ(redis_sessions_failures(), failures + 1);
  for (int call = 0; call < 3; ++call) {
    Located out;
    s->locate(std::vector<uint64_t>{1, 3}, out);
    EXPECT_EQ(out, (Located{{1, "gw-a"}})) << "call " << call << " read another command's reply";
    EXPECT_EQ(s->devices(1), 1u) << "call " << call;
  }
}

TEST(RedisSessionRegistry, ReconnectsAfterRedisRestartsAndFailsSoftWhileItIsDown) {
  std::string problem;
  auto own = OwnRedis::start(problem);
  ASSERT_TRUE(own) << problem;
  auto config = redis_config(own->config());
  config.connect_timeout = 500ms;
  auto s = open_or_fail(config, SystemClock::instance());
  ASSERT_TRUE(s);
  s->connected(1, "gw", 1);
  EXPECT_EQ(s->devices(1), 1u);

  own->kill();
  uint64_t failures = redis_sessions_failures();
  Located out;
  s->locate(std::vector<uint64_t>{1}, out);  // must not throw or crash
  EXPECT_TRUE(out.empty());
  auto tried = s->try_locate(std::vector<uint64_t>{1}, out);  // the fan-out worker's lookup says why
  ASSERT_FALSE(tried) << "a failed lookup is not 'nobody online'";
  EXPECT_TRUE(tried.error().retryable());
  EXPECT_NE(tried.error().message().find("127.0.0.1:" + std::to_string(own->port)), std::string::npos)
      << tried.error().message();
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(s->devices(1), 0u);
  EXPECT_EQ(presence_of(*s, {1})[0].status, PresenceStatus::offline);
  s->connected(2, "gw", 2);  // dropped, counted
  EXPECT_EQ(s->set_status(1, PresenceStatus::busy), SetStatusResult::unavailable) << "not saved, and said so";
  EXPECT_GE(redis_sessions_failures(), failures + 6);

  ASSERT_TRUE(own->launch()) << "restarting redis-server on port " << own->port;
  s->heartbeat(1, "gw", 1);  // the restarted server lost its data: the next heartbeat registers again
  EXPECT_EQ(s->devices(1), 1u);
  out.clear();
  s->locate(std::vector<uint64_t>{1}, out);
  EXPECT_EQ(out, (Located{{1, "gw"}}));
}

TEST(RedisSessionRegistry, BadConfigAndAnUnreachableServerAreNamed) {
  RedisSessionsConfig bad;
  bad.port = 0;
  auto r = open_redis_sessions(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("port 0"), std::string::npos) << r.error().message();
  bad = RedisSessionsConfig{};
  bad.ttl = 0s;
  r = open_redis_sessions(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("ttl"), std::string::npos) << r.error().message();

  RedisSessionsConfig down;
  down.port = t::free_port();  // nothing listens there
  r = open_redis_sessions(down);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().retryable());
  EXPECT_NE(r.error().message().find("127.0.0.1:" + std::to_string(down.port)), std::string::npos)
      << r.error().message();
}

// ---- leases (lease.h): the push worker's single-worker rule ---------------------------------------

// One holder at a time; renewals by the holder; a release or the time-to-live frees it. The
// in-process store runs on a manual clock, the Redis one on Redis's own expiry.
void lease_behaviour(LeaseStore& a, LeaseStore& b, const std::function<void(std::chrono::milliseconds)>& pass) {
  auto acquire = [](LeaseStore& s, std::string holder, std::chrono::milliseconds ttl) {
    auto r = s.acquire("push", holder, ttl);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : std::string("error");
  };
  EXPECT_EQ(acquire(a, "host-a:1", 400ms), "");
  EXPECT_EQ(acquire(b, "host-b:2", 400ms), "host-a:1") << "held by a: b is told who holds it";
  EXPECT_EQ(acquire(a, "host-a:1", 400ms), "") << "a renewal";
  auto other = a.acquire("other", "host-b:2", 400ms);
  ASSERT_TRUE(other);
  EXPECT_EQ(*other, "") << "another name is another lease";
  b.release("push", "host-b:2");  // not b's: nothing happens
  EXPECT_EQ(acquire(b, "host-b:2", 400ms), "host-a:1");
  a.release("push", "host-a:1");
  EXPECT_EQ(acquire(b, "host-b:2", 400ms), "") << "released";
  // A holder that stops renewing (a killed worker) loses it after its ttl.
  pass(600ms);
  EXPECT_EQ(acquire(a, "host-a:3", 400ms), "") << "expired";

  // The holder's state: saved by the holder only, read by anyone, kept across a release.
  auto none = b.load_state("push");
  ASSERT_TRUE(none) << none.error().to_string();
  EXPECT_EQ(*none, "");
  const std::string bytes("progress\0with a NUL", 20);
  auto saved = a.save_state("push", "host-a:3", bytes);
  ASSERT_TRUE(saved) << saved.error().to_string();
  auto theirs = b.save_state("push", "host-b:2", "a stale worker's");
  ASSERT_FALSE(theirs) << "only the holder saves";
  EXPECT_EQ(theirs.error().code(), std::errc::device_or_resource_busy);
  a.release("push", "host-a:3");
  auto read = b.load_state("push");
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_EQ(*read, bytes) << "kept across a release, for the next holder";
}

TEST(Leases, InProcess) {
  ManualClock clock;
  auto leases = make_local_leases(clock);
  lease_behaviour(*leases, *leases, [&](std::chrono::milliseconds d) { clock.advance_ms(d.count()); });
}

TEST(Leases, TheSingleNodesStateIsAFileThatOutlivesTheProcess) {
  t::TempDir dir("imlog-lease-state");
  ManualClock clock;
  {
    auto leases = make_local_leases(clock, dir.str());
    ASSERT_EQ(*leases->acquire("push", "host-a:1", 1s), "");
    ASSERT_TRUE(leases->save_state("push", "host-a:1", "one"));
    ASSERT_TRUE(leases->save_state("push", "host-a:1", "two"));
  }
  auto next = make_local_leases(clock, dir.str());  // a restarted process
  auto read = next->load_state("push");
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_EQ(*read, "two");
  EXPECT_FALSE(next->save_state("push", "host-b:2", "three")) << "not holding it";
  EXPECT_EQ(*next->load_state("push"), "two");
}

TEST(Leases, InRedisSharedByTwoProcesses) {
  REQUIRE_REDIS();
  auto config = redis_config();
  auto a = open_redis_leases(config), b = open_redis_leases(config);
  ASSERT_TRUE(a && b);
  lease_behaviour(**a, **b, [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); });
  EXPECT_NE(lease_holder_name(), lease_holder_name()) << "unique per call";
  RedisSessionsConfig down;
  down.port = t::free_port();
  auto r = open_redis_leases(down);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().retryable());
}

}  // namespace
}  // namespace imlog
