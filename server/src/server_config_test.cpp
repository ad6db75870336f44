#include "server_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "imlog/core/config.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using ::testing::HasSubstr;

// A config file of this test's own: ctest runs tests in parallel processes, so a fixed name under
// /tmp would be one file shared (and overwritten) between them. The directory goes at exit.
std::string write_config(const std::string& text) {
  static const imlog::testing::TempDir dir("imlog-config-test");
  static int files = 0;
  std::string path = dir.str() + "/config-" + std::to_string(++files) + ".yaml";
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const std::string& text) {
  try {
    load_server_config(write_config(text), "");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ServerConfig, NoFileIsAWorkingSingleNodeUnderData) {
  ServerConfig c = load_server_config("", "");
  EXPECT_EQ(c.event_log.backend, "local");
  EXPECT_EQ(c.event_log.local.dir, "./data/log");
  EXPECT_EQ(c.engine.state_dir, "./data/engine");
  EXPECT_TRUE(has_role(c, "engine"));
  EXPECT_TRUE(has_role(c, "gateway"));
}

TEST(ServerConfig, DataDirOverrideMovesEveryDefaultDirectory) {
  const imlog::testing::TempDir dir("imlog-config-data");
  ServerConfig c = load_server_config("", dir.str());
  EXPECT_EQ(c.event_log.local.dir, dir.str() + "/log");
  EXPECT_EQ(c.engine.state_dir, dir.str() + "/engine");
}

TEST(ServerConfig, ReadsAFullDeployment) {
  ServerConfig c = load_server_config(write_config(R"(
data_dir: /var/lib/imlog
roles: [engine, router]
log: {level: debug, format: json}
event_log:
  backend: kafka
  partitions: 16
  kafka:
    brokers: [k1:9092, k2:9092]
    linger: 2ms
    properties: {compression.type: lz4}
engine:
  max_batch: 2048
  checkpoint_interval: 500ms
  limits: {max_content_bytes: 32KiB, recall_window: 5m, max_group_members: 5000}
)"), "");
  EXPECT_EQ(c.event_log.kafka.brokers.size(), 2u);
  EXPECT_EQ(c.event_log.kafka.properties.at("compression.type"), "lz4");
  EXPECT_EQ(c.event_log.partitions, 16);
  EXPECT_EQ(c.engine.limits.max_content_bytes, 32u * 1024);
  EXPECT_EQ(c.engine.limits.recall_window_ms, 300000);
  EXPECT_TRUE(has_role(c, "router"));
  EXPECT_FALSE(has_role(c, "gateway"));
  EXPECT_EQ(c.engine.state_dir, "/var/lib/imlog/engine");
}

TEST(ServerConfig, DedupeWindowAndClockSkew) {
  ServerConfig d = load_server_config("", "");
  EXPECT_EQ(d.engine.dedupe_window, std::chrono::hours(168)) << "7 days";
  EXPECT_EQ(d.engine.clock_skew, std::chrono::minutes(10));
  ServerConfig c = load_server_config(write_config("engine: {dedupe_window: 720h, clock_skew: 2m}\n"), "");
  EXPECT_EQ(c.engine.dedupe_window, std::chrono::hours(720));
  EXPECT_EQ(c.engine.clock_skew, std::chrono::minutes(2));
  EXPECT_THAT(error_of("engine: {dedupe_window: 10m}"), HasSubstr("`engine.dedupe_window`"));
  EXPECT_THAT(error_of("engine: {dedupe_window: 9000h}"), HasSubstr("`engine.dedupe_window`"));
  EXPECT_THAT(error_of("engine: {clock_skew: 25h}"), HasSubstr("`engine.clock_skew`"));
  EXPECT_THAT(error_of("engine: {clock_skew: often}"), HasSubstr("`engine.clock_skew`"));
}

TEST(ServerConfig, RetentionDefaultIsTheEnginesToo) {
  ServerConfig d = load_server_config("", "");
  EXPECT_EQ(d.retention.default_keep_days, 0u) << "for ever";
  EXPECT_EQ(d.engine.limits.default_keep_days, 0u);
  EXPECT_EQ(d.retention.interval, std::chrono::minutes(10));
  ServerConfig c = load_server_config(write_config("retention: {default_keep_days: 90, interval: 1h}\n"), "");
  EXPECT_EQ(c.retention.default_keep_days, 90u);
  EXPECT_EQ(c.engine.limits.default_keep_days, 90u) << "the engine enforces the same default";
  EXPECT_EQ(c.gateway.default_keep_days, 90u) << "the gateway answers the same default";
  EXPECT_EQ(c.retention.interval, std::chrono::hours(1));
  EXPECT_THAT(error_of("retention: {default_keep_days: 36501}"), HasSubstr("`retention.default_keep_days`"));
  EXPECT_THAT(error_of("retention: {default_keep_days: -1}"), HasSubstr("`retention.default_keep_days`"));
  EXPECT_THAT(error_of("retention: {interval: 10ms}"), HasSubstr("`retention.interval`"));
  EXPECT_THAT(error_of("retention: {keep: forever}"), HasSubstr("retention.keep"));
}

TEST(ServerConfig, GatewayDefaultsAndSection) {
  ServerConfig d = load_server_config("", "");
  EXPECT_EQ(d.gateway.listen, "127.0.0.1:8080");
  EXPECT_TRUE(d.gateway.jwt_secret.empty()) << "a single node keeps its secret under data_dir";
  EXPECT_FALSE(d.gateway.gateway_id.empty());
  ServerConfig c = load_server_config(write_config(R"(
gateway:
  listen: 0.0.0.0:9000
  threads: 4
  gateway_id: gw-7
  jwt_secret: 0123456789abcdef0123
  access_token_ttl: 5m
  max_frame_bytes: 256KiB
  ws_rate: 20
  heartbeat_timeout: 30s
)"), "");
  EXPECT_EQ(c.gateway.listen, "0.0.0.0:9000");
  EXPECT_EQ(c.gateway.threads, 4u);
  EXPECT_EQ(c.gateway.gateway_id, "gw-7");
  EXPECT_EQ(c.gateway.access_token_ttl, std::chrono::minutes(5));
  EXPECT_EQ(c.gateway.max_frame_bytes, 256u * 1024);
  EXPECT_EQ(c.gateway.ws_rate, 20);
  EXPECT_EQ(c.gateway.heartbeat_timeout, std::chrono::seconds(30));
  EXPECT_THAT(error_of("gateway: {jwt_secret: short}"), HasSubstr("`gateway.jwt_secret`"));
  EXPECT_THAT(error_of("gateway: {ws_rate: 0}"), HasSubstr("`gateway.ws_rate`"));
  EXPECT_THAT(error_of("gateway: {listn: x}"), HasSubstr("`gateway.listn`"));
}

TEST(ServerConfig, ReadModelSections) {
  ServerConfig d = load_server_config("", "/srv/im");
  EXPECT_EQ(d.model.dir, "/srv/im/model");
  EXPECT_FALSE(d.mysql.has_value()) << "MySQL is off unless configured";
  EXPECT_FALSE(d.redis.has_value());
  ServerConfig c = load_server_config(write_config(R"(
model: {dir: /fast/model}
mysql: {host: db1, port: 3307, user: im, password: pw, database: im_main, pool_size: 8,
        keys_database: im_keys}
redis: {host: cache1, db: 2, key_prefix: "im:", hot_messages: 100, hot_ttl: 1h}
)"), "");
  EXPECT_EQ(c.model.dir, "/fast/model");
  ASSERT_TRUE(c.mysql.has_value());
  EXPECT_EQ(c.mysql->host, "db1");
  EXPECT_EQ(c.mysql->port, 3307);
  EXPECT_EQ(c.mysql->database, "im_main");
  EXPECT_EQ(c.mysql->pool_size, 8);
  EXPECT_EQ(c.mysql->keys_database, "im_keys");
  ASSERT_TRUE(c.redis.has_value());
  EXPECT_EQ(c.redis->key_prefix, "im:");
  EXPECT_EQ(c.redis->hot_messages, 100u);
  EXPECT_EQ(c.redis->hot_ttl, std::chrono::hours(1));
  ServerConfig empty = load_server_config(write_config("mysql: {}\nredis:\n"), "");
  EXPECT_TRUE(empty.mysql.has_value()) << "an empty section turns the model on with defaults";
  EXPECT_TRUE(empty.redis.has_value());
  EXPECT_THAT(error_of("mysql: {database: \"im-main\"}"), HasSubstr("`mysql.database`"));
  EXPECT_EQ(empty.mysql->keys_database, "imlog_keys");
  EXPECT_THAT(error_of("mysql: {keys_database: \"im keys\"}"), HasSubstr("`mysql.keys_database`"));
  EXPECT_THAT(error_of("mysql: {keys_database: imlog}"), HasSubstr("`mysql.keys_database`"));
  EXPECT_THAT(error_of("mysql: {database: im, keys_database: im_replay}"),
              HasSubstr("`mysql.keys_database`"));
  EXPECT_THAT(error_of("mysql: {port: 0}"), HasSubstr("`mysql.port`"));
  EXPECT_THAT(error_of("mysql: {hots: x}"), HasSubstr("`mysql.hots`"));
  EXPECT_THAT(error_of("redis: {db: 16}"), HasSubstr("`redis.db`"));
  EXPECT_THAT(error_of("redis: {hot_ttl: 0s}"), HasSubstr("`redis.hot_ttl`"));
  EXPECT_THAT(error_of("model: {path: x}"), HasSubstr("`model.path`"));
}

TEST(ServerConfig, SessionsInRedisTakeTheRedisConnection) {
  ServerConfig d = load_server_config("", "");
  EXPECT_FALSE(d.sessions.has_value()) << "the single node keeps sessions in process";
  EXPECT_TRUE(d.event_log.mock_control.empty());
  ServerConfig c = load_server_config(write_config(R"(
event_log:
  backend: kafka
  kafka: {brokers: [k1:9092], mock_control: 127.0.0.1:4000}
redis: {host: cache1, port: 6380, password: pw, db: 3}
gateway: {heartbeat_timeout: 40s}
sessions: {key_prefix: "s:", ttl: 45s, lookup_batch: 64, pool_size: 2}
)"), "");
  ASSERT_TRUE(c.sessions.has_value());
  EXPECT_EQ(c.sessions->host, "cache1") << "host, port, password and db default to the redis section's";
  EXPECT_EQ(c.sessions->port, 6380);
  EXPECT_EQ(c.sessions->password, "pw");
  EXPECT_EQ(c.sessions->db, 3);
  EXPECT_EQ(c.sessions->key_prefix, "s:");
  EXPECT_EQ(c.sessions->ttl, std::chrono::seconds(45));
  EXPECT_EQ(c.sessions->lookup_batch, 64u);
  EXPECT_EQ(c.sessions->pool_size, 2u);
  EXPECT_EQ(c.event_log.mock_control, "127.0.0.1:4000");
  ServerConfig own = load_server_config(write_config("sessions: {host: r2, port: 7000}\n"), "");
  EXPECT_EQ(own.sessions->host, "r2");
  EXPECT_EQ(own.sessions->port, 7000);
  EXPECT_THAT(error_of("sessions: {ttl: 1s}"), HasSubstr("`sessions.ttl`"));
  EXPECT_THAT(error_of("sessions: {db: 20}"), HasSubstr("`sessions.db`"));
  // Idle users refresh their entry only every heartbeat: a shorter time-to-live loses them.
  EXPECT_THAT(error_of("sessions: {ttl: 45s}"), HasSubstr("below gateway.heartbeat_timeout (60000ms)"));
  EXPECT_THAT(error_of("gateway: {heartbeat_timeout: 50s}\nsessions: {ttl: 45s}"), HasSubstr("`sessions.ttl`"));
  EXPECT_EQ(load_server_config(write_config("gateway: {heartbeat_timeout: 45s}\nsessions: {ttl: 45s}\n"), "").sessions->ttl,
            std::chrono::seconds(45));
  EXPECT_THAT(error_of("sessions: {tll: 5s}"), HasSubstr("`sessions.tll`"));
}

TEST(ServerConfig, RouterAndTasksSections) {
  ServerConfig d = load_server_config("", "");
  EXPECT_EQ(d.router.large_group_threshold, 500u);
  EXPECT_EQ(d.router.group, "imlog-router");
  EXPECT_EQ(d.router.commit_interval, std::chrono::seconds(1));
  EXPECT_EQ(d.tasks.group, "imlog-tasks");
  ServerConfig c = load_server_config(write_config(R"(
router: {large_group_threshold: 200, task_page: 100, group: r2, commit_interval: 250ms}
tasks: {group: fan, lookup_batch: 64, max_attempts: 3, first_backoff: 50ms, max_backoff: 2s, max_batch: 16}
)"), "");
  EXPECT_EQ(c.router.large_group_threshold, 200u);
  EXPECT_EQ(c.router.task_page, 100u);
  EXPECT_EQ(c.router.group, "r2");
  EXPECT_EQ(c.router.commit_interval, std::chrono::milliseconds(250));
  EXPECT_EQ(c.tasks.group, "fan");
  EXPECT_EQ(c.tasks.lookup_batch, 64u);
  EXPECT_EQ(c.tasks.max_attempts, 3u);
  EXPECT_EQ(c.tasks.first_backoff, std::chrono::milliseconds(50));
  EXPECT_EQ(c.tasks.max_backoff, std::chrono::seconds(2));
  EXPECT_EQ(c.tasks.max_batch, 16u);
  EXPECT_THAT(error_of("tasks: {first_backoff: 2s, max_backoff: 1s}"), HasSubstr("`tasks.max_backoff`"));
  EXPECT_THAT(error_of("router: {large_group_threshold: 1}"), HasSubstr("`router.large_group_threshold`"));
  EXPECT_THAT(error_of("router: {group: ''}"), HasSubstr("`router.group`"));
  EXPECT_THAT(error_of("router: {commit_interval: 0ms}"), HasSubstr("`router.commit_interval`"));
}

TEST(ServerConfig, PushSection) {
  ServerConfig d = load_server_config("", "");
  EXPECT_FALSE(d.push.enabled) << "off unless asked for";
  EXPECT_EQ(d.push.collapse_window, std::chrono::seconds(2));
  EXPECT_EQ(d.push.close_delay, std::chrono::seconds(1));
  EXPECT_EQ(d.push.preview_chars, 100u);
  EXPECT_EQ(d.push.group, "imlog-push");
  EXPECT_FALSE(d.push.webhook_private_addresses) << "webhooks reach public addresses only";
  ServerConfig c = load_server_config(write_config(R"(
push: {enabled: true, collapse_window: 500ms, close_delay: 250ms, preview_chars: 0, max_attempts: 2, first_backoff: 20ms,
       max_backoff: 1s, timeout: 2s, group: p2, commit_interval: 100ms, webhook_private_addresses: true,
       webhook_secret: 0123456789abcdef, max_in_flight: 4}
)"), "");
  EXPECT_TRUE(c.push.enabled);
  EXPECT_EQ(c.push.collapse_window, std::chrono::milliseconds(500));
  EXPECT_EQ(c.push.close_delay, std::chrono::milliseconds(250));
  EXPECT_EQ(c.push.preview_chars, 0u);
  EXPECT_EQ(c.push.max_attempts, 2u);
  EXPECT_EQ(c.push.first_backoff, std::chrono::milliseconds(20));
  EXPECT_EQ(c.push.max_backoff, std::chrono::seconds(1));
  EXPECT_EQ(c.push.timeout, std::chrono::seconds(2));
  EXPECT_EQ(c.push.group, "p2");
  EXPECT_EQ(c.push.commit_interval, std::chrono::milliseconds(100));
  EXPECT_TRUE(c.push.webhook_private_addresses);
  EXPECT_EQ(c.push.webhook_secret, "0123456789abcdef");
  EXPECT_EQ(c.push.max_in_flight, 4u);
  EXPECT_EQ(d.push.max_in_flight, 16u);
  EXPECT_THAT(error_of("push: {enabled: true}"), HasSubstr("`push.webhook_secret`"));
  EXPECT_THAT(error_of("push: {enabled: true, webhook_secret: fifteen-bytes!!}"), HasSubstr("`push.webhook_secret`"));
  EXPECT_THAT(error_of("push: {max_in_flight: 0}"), HasSubstr("`push.max_in_flight`"));
  EXPECT_EQ(d.push.lease_ttl, std::chrono::seconds(10));
  EXPECT_THAT(error_of("push: {lease_ttl: 500ms}"), HasSubstr("`push.lease_ttl`"));
  EXPECT_FALSE(d.fcm) << "no FCM unless configured";
  EXPECT_FALSE(d.apns);
  ServerConfig p = load_server_config(write_config(R"(
push:
  timeout: 3s
  fcm: {service_account_file: /etc/imlog/fcm.json}
  apns: {key_file: /etc/imlog/AuthKey.p8, key_id: KEY1234567, team_id: TEAM123456, topic: com.example.chat,
         endpoint: https://api.sandbox.push.apple.com}
)"), "");
  ASSERT_TRUE(p.fcm);
  EXPECT_EQ(p.fcm->service_account_file, "/etc/imlog/fcm.json");
  EXPECT_EQ(p.fcm->endpoint, "https://fcm.googleapis.com");
  EXPECT_EQ(p.fcm->timeout, std::chrono::seconds(3)) << "push.timeout bounds every provider";
  ASSERT_TRUE(p.apns);
  EXPECT_EQ(p.apns->team_id, "TEAM123456");
  EXPECT_EQ(p.apns->endpoint, "https://api.sandbox.push.apple.com");
  EXPECT_FALSE(p.apns->prior_knowledge);
  EXPECT_THAT(error_of("push: {fcm: {endpoint: x}}"), HasSubstr("`push.fcm.service_account_file`"));
  EXPECT_THAT(error_of("push: {apns: {key_file: k, key_id: K, topic: t}}"), HasSubstr("`push.apns.team_id`"));
  EXPECT_THAT(error_of("push: {apns: {key_file: k, key_id: K, team_id: T, topic: t, colour: red}}"),
              HasSubstr("colour"));
  EXPECT_THAT(error_of("push: {collapse_window: 11m}"), HasSubstr("`push.collapse_window`"));
  EXPECT_THAT(error_of("push: {close_delay: 2m}"), HasSubstr("`push.close_delay`"));
  EXPECT_THAT(error_of("push: {preview_chars: 1001}"), HasSubstr("`push.preview_chars`"));
  EXPECT_THAT(error_of("push: {max_attempts: 0}"), HasSubstr("`push.max_attempts`"));
  EXPECT_THAT(error_of("push: {first_backoff: 2s, max_backoff: 1s}"), HasSubstr("`push.max_backoff`"));
  EXPECT_THAT(error_of("push: {timeout: 10ms}"), HasSubstr("`push.timeout`"));
  EXPECT_THAT(error_of("push: {group: ''}"), HasSubstr("`push.group`"));
  EXPECT_THAT(error_of("push: {enabled: maybe}"), HasSubstr("`push.enabled`"));
  EXPECT_THAT(error_of("push: {collapse: 1s}"), HasSubstr("push.collapse"));
}

TEST(ServerConfig, AvatarsAndRegistryWorkers) {
  ServerConfig d = load_server_config("", "/srv/im");
  EXPECT_EQ(d.gateway.avatar_dir, "/srv/im/avatars");
  ServerConfig c = load_server_config(write_config(R"(
gateway: {avatar_dir: "off", avatar_upload_interval: 1m, registry_threads: 2, registry_queue: 500}
)"), "");
  EXPECT_EQ(c.gateway.avatar_dir, "") << "off: uploads refused";
  EXPECT_EQ(c.gateway.avatar_upload_interval, std::chrono::minutes(1));
  EXPECT_EQ(c.gateway.registry_threads, 2u);
  EXPECT_EQ(c.gateway.registry_queue, 500u);
  EXPECT_THAT(error_of("gateway: {registry_threads: 0}"), HasSubstr("`gateway.registry_threads`"));
}

TEST(ServerConfig, LoginThrottleAndPasswordQueue) {
  ServerConfig d = load_server_config("", "");
  EXPECT_EQ(d.gateway.password_queue, 32u);
  EXPECT_EQ(d.gateway.login_throttle.account_address_failures, 5u);
  EXPECT_EQ(d.gateway.login_throttle.address_failures, 20u);
  EXPECT_EQ(d.gateway.login_throttle.account_failures, 100u);
  EXPECT_EQ(d.gateway.login_throttle.window, std::chrono::hours(1));
  EXPECT_TRUE(d.gateway.trusted_proxies.empty());
  EXPECT_TRUE(d.gateway.cors_origins.empty()) << "same origin only by default";
  ServerConfig c = load_server_config(write_config(R"(
gateway:
  password_queue: 4
  trusted_proxies: [10.0.0.0/8, "fd00::1"]
  cors_origins: [https://chat.example.com, "http://localhost:3000"]
  login_throttle:
    account_address_failures: 3
    address_failures: 50
    account_failures: 500
    first_backoff: 2s
    max_backoff: 10m
    window: 30m
    max_entries: 1000
)"), "");
  EXPECT_EQ(c.gateway.password_queue, 4u);
  EXPECT_EQ(c.gateway.trusted_proxies, (std::vector<std::string>{"10.0.0.0/8", "fd00::1"}));
  EXPECT_EQ(c.gateway.cors_origins, (std::vector<std::string>{"https://chat.example.com", "http://localhost:3000"}));
  const auto& t = c.gateway.login_throttle;
  EXPECT_EQ(t.account_address_failures, 3u);
  EXPECT_EQ(t.address_failures, 50u);
  EXPECT_EQ(t.account_failures, 500u);
  EXPECT_EQ(t.first_backoff, std::chrono::seconds(2));
  EXPECT_EQ(t.max_backoff, std::chrono::minutes(10));
  EXPECT_EQ(t.window, std::chrono::minutes(30));
  EXPECT_EQ(t.max_entries, 1000u);
  EXPECT_THAT(error_of("gateway: {password_queue: 0}"), HasSubstr("`gateway.password_queue`"));
  EXPECT_THAT(error_of("gateway: {login_throttle: {address_failures: 0}}"),
              HasSubstr("`gateway.login_throttle.address_failures`"));
  EXPECT_THAT(error_of("gateway: {login_throttle: {max_backoff: 2h}}"), HasSubstr("`gateway.login_throttle.window`"));
  EXPECT_THAT(error_of("gateway: {login_throttle: {first_backoff: 1h, max_backoff: 1m}}"),
              HasSubstr("`gateway.login_throttle.max_backoff`"));
  EXPECT_THAT(error_of("gateway: {login_throttle: {windw: 1h}}"), HasSubstr("`gateway.login_throttle.windw`"));
  EXPECT_THAT(error_of("gateway: {trusted_proxies: {a: b}}"), HasSubstr("`gateway.trusted_proxies`"));
}

TEST(ServerConfig, TheEnginesBatchWindow) {
  EXPECT_EQ(load_server_config("", "").engine.batch_window, std::chrono::milliseconds(4));
  ServerConfig c = load_server_config(write_config("engine: {batch_window: 0ms}\n"), "");
  EXPECT_EQ(c.engine.batch_window, std::chrono::milliseconds(0));
  EXPECT_THAT(error_of("engine: {batch_window: 1s}"), HasSubstr("`engine.batch_window`"));
  EXPECT_THAT(error_of("engine: {batch_window: -1ms}"), HasSubstr("`engine.batch_window`"));
}

TEST(ServerConfig, BadKeysAreNamed) {
  EXPECT_THAT(error_of("event_log: {backend: kafak}"), HasSubstr("`event_log.backend`"));
  EXPECT_THAT(error_of("event_log: {backend: kafka}"), HasSubstr("`event_log.kafka.brokers`"));
  EXPECT_THAT(error_of("event_log: {partitions: 0}"), HasSubstr("`event_log.partitions`"));
  EXPECT_THAT(error_of("roles: [gatway]"), HasSubstr("`gatway` is not a role"));
  EXPECT_THAT(error_of("engine: {limits: {recall_window: forever}}"), HasSubstr("`engine.limits.recall_window`"));
  EXPECT_THAT(error_of("engin: {}"), HasSubstr("unknown config key `engin`"));
  EXPECT_THAT(error_of("roles: []"), HasSubstr("`roles`: names no role"));
}

CommandLine roles_flag(std::vector<std::string> roles) {
  CommandLine c;
  c.roles = std::move(roles);
  return c;
}

CommandLine listen_flag(std::string listen) {
  CommandLine c;
  c.listen = std::move(listen);
  return c;
}

// What apply_command_line throws for `flags` over the defaults, or "no error".
std::string flag_error(const CommandLine& flags, const std::string& yaml = "") {
  auto config = load_server_config(write_config(yaml), "");
  try {
    apply_command_line(config, flags);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ServerConfig, CommandLineIsCheckedLikeTheFile) {
  EXPECT_EQ(flag_error(roles_flag({"gatway"})),
            "--roles: `gatway` is not a role: use all, gateway, engine, projector, router or tasks");
  EXPECT_THAT(error_of("roles: [gatway]"),
              HasSubstr("`gatway` is not a role: use all, gateway, engine, projector, router or tasks"));
  EXPECT_THAT(flag_error(roles_flag({"engine", ""})), HasSubstr("`` is not a role"));
  EXPECT_THAT(flag_error(listen_flag("127.0.0.1")), HasSubstr("--listen: `127.0.0.1` is not host:port"));
  EXPECT_THAT(flag_error(listen_flag("example.org:80")), HasSubstr("--listen: `example.org`"));
  EXPECT_THAT(flag_error({}, "gateway: {listen: \"1.2.3.4:99999\"}"), HasSubstr("config key `gateway.listen`: port"));
  // A process without the gateway role never listens, so its address is not its concern.
  EXPECT_EQ(flag_error(roles_flag({"engine"}), "gateway: {listen: nowhere}"), "no error");
  // Every process has an ops listener, so its address is checked whatever the roles.
  CommandLine ops = roles_flag({"engine"});
  ops.ops_listen = "9101";
  EXPECT_THAT(flag_error(ops),
              HasSubstr("--ops-listen: `9101` is not host:port"));
  EXPECT_THAT(flag_error(roles_flag({"engine"}), "ops: {listen: \"example.org:9101\"}"),
              HasSubstr("config key `ops.listen`: "));
  EXPECT_THAT(error_of("ops: {port: 9101}"), HasSubstr("ops.port"));
}

TEST(ServerConfig, CommandLineOverridesTheFile) {
  auto config = load_server_config(write_config("roles: [engine]"), "");
  apply_command_line(config, CommandLine{.roles = {"gateway", "router"}, .listen = "0.0.0.0:9100", .gateway_id = "gw-9",
                                         .ops_listen = "127.0.0.1:9200"});
  EXPECT_EQ(config.ops_listen, "127.0.0.1:9200");
  EXPECT_EQ(config.roles, (std::vector<std::string>{"gateway", "router"}));
  EXPECT_EQ(config.gateway.listen, "0.0.0.0:9100");
  EXPECT_EQ(config.gateway.gateway_id, "gw-9");
}

}  // namespace
}  // namespace imlog
