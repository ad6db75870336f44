#include "server_config.h"

#include <algorithm>

#include "imlog/core/config.h"

namespace imlog {
namespace {

const std::vector<std::string> kRoles = {"all", "gateway", "engine", "projector", "router", "tasks"};

void read_local(ConfigSection s, LocalLogConfig& c) {
  s.read("dir", c.dir);
  s.read_size("max_pending_bytes", c.max_pending_bytes);
  s.read("append_block_timeout", c.append_block_timeout);
  s.read_size("max_record_bytes", c.max_record_bytes);
  s.read("max_batch_records", c.max_batch_records);
  s.read("trim_keep_records", c.trim_keep_records);
  s.read("trim_interval", c.trim_interval);
  if (c.trim_interval.count() < 0) s.fail("trim_interval", "must not be negative (0: never)");
  s.finish();
}

void read_kafka(ConfigSection s, KafkaLogConfig& c, std::string& mock_control) {
  s.read("brokers", c.brokers);
  s.read("client_id", c.client_id);
  s.read("linger", c.linger);
  s.read("fetch_wait", c.fetch_wait);
  s.read("session_timeout", c.session_timeout);
  s.read("delivery_timeout", c.delivery_timeout);
  s.read_size("max_pending_bytes", c.max_pending_bytes);
  s.read("append_block_timeout", c.append_block_timeout);
  s.read("replication_factor", c.replication_factor);
  s.read("properties", c.properties);
  s.read("mock_control", mock_control);
  s.finish();
}

void read_event_log(ConfigSection s, EventLogSettings& c) {
  s.read("backend", c.backend);
  if (c.backend != "local" && c.backend != "kafka") {
    s.fail("backend", "`" + c.backend + "` is unknown: use `local` or `kafka`");
  }
  s.read("partitions", c.partitions);
  if (c.partitions < 1 || c.partitions > 1024) s.fail("partitions", "must be between 1 and 1024");
  read_local(s.section("local"), c.local);
  read_kafka(s.section("kafka"), c.kafka, c.mock_control);
  if (c.backend == "kafka" && c.kafka.brokers.empty()) {
    s.fail("kafka.brokers", "is empty: list the bootstrap brokers, or use backend: local");
  }
  s.finish();
}

void read_engine(ConfigSection s, EngineConfig& c) {
  s.read("state_dir", c.state_dir);
  s.read("instance_id", c.instance_id);
  s.read("group", c.group);
  s.read("max_batch", c.max_batch);
  if (c.max_batch == 0) s.fail("max_batch", "must be at least 1");
  int64_t inflight = c.max_inflight_batches;
  s.read("max_inflight_batches", inflight);
  if (inflight < 1) s.fail("max_inflight_batches", "must be at least 1");
  c.max_inflight_batches = static_cast<uint32_t>(inflight);
  s.read("batch_window", c.batch_window);
  if (c.batch_window.count() < 0 || c.batch_window > std::chrono::milliseconds(100)) {
    s.fail("batch_window", "must be between 0ms and 100ms");
  }
  s.read("checkpoint_interval", c.checkpoint_interval);
  s.read("max_cached_streams", c.max_cached_streams);
  s.read("dedupe_window", c.dedupe_window);
  if (c.dedupe_window < std::chrono::hours(1) || c.dedupe_window > std::chrono::hours(24 * 366)) {
    s.fail("dedupe_window", "must be between 1h and 8784h (366 days)");
  }
  s.read("clock_skew", c.clock_skew);
  if (c.clock_skew.count() < 0 || c.clock_skew > std::chrono::hours(24)) {
    s.fail("clock_skew", "must be between 0ms and 24h");
  }
  std::chrono::milliseconds grace(c.limits.username_grace_ms);
  s.read("username_grace", grace);
  if (grace.count() < 0 || grace > std::chrono::hours(24 * 3660)) s.fail("username_grace", "must be between 0s and 87840h");
  c.limits.username_grace_ms = grace.count();
  uint64_t queue = c.command_queue;
  s.read("command_queue", queue);
  if (queue < 16 || queue > 10'000'000) s.fail("command_queue", "must be between 16 and 10000000");
  c.command_queue = queue;
  auto lim = s.section("limits");
  lim.read_size("max_content_bytes", c.limits.max_content_bytes);
  std::chrono::milliseconds recall(c.limits.recall_window_ms);
  lim.read("recall_window", recall);
  c.limits.recall_window_ms = recall.count();
  int64_t members = c.limits.max_group_members;
  lim.read("max_group_members", members);
  if (members < 2) lim.fail("max_group_members", "must be at least 2");
  c.limits.max_group_members = static_cast<uint32_t>(members);
  lim.finish();
  s.finish();
}

void read_u32(ConfigSection& s, std::string_view key, uint32_t& out, int64_t min, int64_t max) {
  int64_t v = out;
  s.read(key, v);
  if (v < min || v > max) s.fail(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  out = static_cast<uint32_t>(v);
}

// gateway.login_throttle (imlog/tasks/login_throttle.h).
void read_login_throttle(ConfigSection s, LoginThrottleConfig& c) {
  read_u32(s, "account_address_failures", c.account_address_failures, 1, 1'000'000);
  read_u32(s, "address_failures", c.address_failures, 1, 1'000'000);
  read_u32(s, "account_failures", c.account_failures, 1, 1'000'000);
  s.read("first_backoff", c.first_backoff);
  if (c.first_backoff.count() < 1) s.fail("first_backoff", "must be at least 1ms");
  s.read("max_backoff", c.max_backoff);
  if (c.max_backoff < c.first_backoff) s.fail("max_backoff", "must be at least first_backoff");
  s.read("window", c.window);
  if (c.window < c.max_backoff) {
    s.fail("window", "must be at least max_backoff (a key would forget its failures while still backing off)");
  }
  read_u32(s, "max_entries", c.max_entries, 16, 10'000'000);
  s.finish();
}

// gateway.avatar_dir: `off` while reading (an empty value means "the default under data_dir").
constexpr const char* kAvatarsOff = "\x01off";

void read_gateway(ConfigSection s, GatewayConfig& c) {
  s.read("listen", c.listen);
  read_u32(s, "threads", c.threads, 0, 256);
  s.read("gateway_id", c.gateway_id);
  s.read("jwt_secret", c.jwt_secret);
  if (!c.jwt_secret.empty() && c.jwt_secret.size() < 16) {
    s.fail("jwt_secret", "must be at least 16 bytes; leave it out on a single node to generate one");
  }
  s.read("access_token_ttl", c.access_token_ttl);
  s.read("refresh_token_ttl", c.refresh_token_ttl);
  s.read("password_ops_limit", c.password_ops_limit);
  s.read_size("password_mem_limit", c.password_mem_limit);
  read_u32(s, "password_threads", c.password_threads, 1, 64);
  read_u32(s, "password_queue", c.password_queue, 1, 4096);
  read_login_throttle(s.section("login_throttle"), c.login_throttle);
  s.read("trusted_proxies", c.trusted_proxies);
  s.read("cors_origins", c.cors_origins);
  s.read_size("max_body_bytes", c.max_body_bytes);
  uint64_t header = c.max_header_bytes;
  s.read_size("max_header_bytes", header);
  if (header < 1024 || header > (1u << 20)) s.fail("max_header_bytes", "must be between 1KiB and 1MiB");
  c.max_header_bytes = static_cast<uint32_t>(header);
  s.read_size("max_frame_bytes", c.max_frame_bytes);
  s.read("http_timeout", c.http_timeout);
  s.read("http_idle_timeout", c.http_idle_timeout);
  s.read("ws_handshake_timeout", c.ws_handshake_timeout);
  s.read("heartbeat_timeout", c.heartbeat_timeout);
  s.read("ws_rate", c.ws_rate);
  s.read("ws_burst", c.ws_burst);
  if (c.ws_rate <= 0) s.fail("ws_rate", "must be positive (frames per second)");
  if (c.ws_burst < 1) s.fail("ws_burst", "must be at least 1");
  read_u32(s, "max_queued_frames", c.max_queued_frames, 16, 1 << 20);
  s.read_size("max_queued_bytes", c.max_queued_bytes);
  read_u32(s, "max_inflight_commands", c.max_inflight_commands, 1, 1 << 16);
  s.read("max_frame_wait", c.max_frame_wait);
  read_u32(s, "query_threads", c.query_threads, 1, 256);
  read_u32(s, "query_queue", c.query_queue, 1, 1'000'000);
  s.read("command_timeout", c.command_timeout);
  s.read("read_model_wait", c.read_model_wait);
  s.read("drain_timeout", c.drain_timeout);
  s.read("web_dir", c.web_dir);
  s.read("avatar_dir", c.avatar_dir);
  // `off` turns uploads off (the gateway answers 503, and /avatars/<name> 404).
  if (c.avatar_dir == "off") c.avatar_dir = kAvatarsOff;
  s.read_size("avatar_max_bytes", c.avatar_max_bytes);
  s.read("avatar_upload_interval", c.avatar_upload_interval);
  read_u32(s, "registry_threads", c.registry_threads, 1, 64);
  read_u32(s, "registry_queue", c.registry_queue, 16, 1 << 24);
  s.finish();
}

void read_port(ConfigSection& s, int32_t& port) {
  s.read("port", port);
  if (port < 1 || port > 65535) s.fail("port", "must be between 1 and 65535");
}

void read_model(ConfigSection s, RocksDbModelConfig& c) {
  s.read("dir", c.dir);
  s.finish();
}

void read_mysql(ConfigSection s, MysqlConfig& c) {
  s.read("host", c.host);
  if (c.host.empty()) s.fail("host", "is empty: name the MySQL server, or remove the `mysql` section");
  read_port(s, c.port);
  s.read("user", c.user);
  s.read("password", c.password);
  s.read("database", c.database);
  if (c.database.empty() || c.database.size() > 48 ||
      c.database.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
          std::string::npos) {
    s.fail("database", "`" + c.database + "` must be 1 to 48 letters, digits or _ (replay builds `<database>_replay`)");
  }
  s.read("keys_database", c.keys_database);
  if (c.keys_database.empty() || c.keys_database.size() > 64 ||
      c.keys_database.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
          std::string::npos) {
    s.fail("keys_database", "`" + c.keys_database + "` must be 1 to 64 letters, digits or _");
  }
  if (c.keys_database == c.database || c.keys_database == c.database + "_replay") {
    s.fail("keys_database",
           "`" + c.keys_database + "` is a read model's database: the keys need their own (replay rebuilds it)");
  }
  s.read("pool_size", c.pool_size);
  if (c.pool_size < 1 || c.pool_size > 256) s.fail("pool_size", "must be between 1 and 256");
  s.finish();
}

void read_redis(ConfigSection s, RedisConfig& c) {
  s.read("host", c.host);
  if (c.host.empty()) s.fail("host", "is empty: name the Redis server, or remove the `redis` section");
  read_port(s, c.port);
  s.read("password", c.password);
  s.read("db", c.db);
  if (c.db < 0 || c.db > 15) s.fail("db", "must be between 0 and 15");
  s.read("key_prefix", c.key_prefix);
  read_u32(s, "hot_messages", c.hot_messages, 1, 100000);
  std::chrono::milliseconds ttl = c.hot_ttl;
  s.read("hot_ttl", ttl);
  if (ttl < std::chrono::seconds(1)) s.fail("hot_ttl", "must be at least 1s");
  c.hot_ttl = std::chrono::duration_cast<std::chrono::seconds>(ttl);
  s.finish();
}

void read_router(ConfigSection s, RouterConfig& c) {
  s.read("max_batch", c.max_batch);
  if (c.max_batch == 0) s.fail("max_batch", "must be at least 1");
  read_u32(s, "large_group_threshold", c.large_group_threshold, 2, 1000000);
  read_u32(s, "task_page", c.task_page, 1, 100000);
  s.read("group", c.group);
  if (c.group.empty()) s.fail("group", "is empty: name the routers' consumer group");
  s.read("commit_interval", c.commit_interval);
  if (c.commit_interval.count() < 1) s.fail("commit_interval", "must be at least 1ms");
  s.finish();
}

void read_tasks(ConfigSection s, FanoutConfig& c) {
  s.read("group", c.group);
  if (c.group.empty()) s.fail("group", "is empty: name the tasks workers' consumer group");
  read_u32(s, "lookup_batch", c.lookup_batch, 1, 100000);
  read_u32(s, "max_attempts", c.max_attempts, 1, 1000);
  s.read("first_backoff", c.first_backoff);
  s.read("max_backoff", c.max_backoff);
  if (c.first_backoff.count() < 1 || c.max_backoff < c.first_backoff) {
    s.fail("max_backoff", "must be at least first_backoff, and first_backoff at least 1ms");
  }
  uint64_t batch = c.max_batch;
  s.read("max_batch", batch);
  if (batch < 1 || batch > 100000) s.fail("max_batch", "must be between 1 and 100000");
  c.max_batch = batch;
  s.finish();
}

// The `push:` section (imlog/tasks/push.h): the tasks role's offline push worker.
void read_fcm(ConfigSection s, FcmOptions& f) {
  s.read("service_account_file", f.service_account_file);
  if (f.service_account_file.empty()) s.fail("service_account_file", "is empty: name the service account's JSON key file");
  s.read("endpoint", f.endpoint);
  s.read("token_uri", f.token_uri);
  s.finish();
}

void read_apns(ConfigSection s, ApnsOptions& a) {
  s.read("key_file", a.key_file);
  s.read("key_id", a.key_id);
  s.read("team_id", a.team_id);
  s.read("topic", a.topic);
  s.read("endpoint", a.endpoint);
  s.read("prior_knowledge", a.prior_knowledge);
  for (auto [key, value] : {std::pair<const char*, std::string*>{"key_file", &a.key_file}, {"key_id", &a.key_id},
                            {"team_id", &a.team_id}, {"topic", &a.topic}}) {
    if (value->empty()) s.fail(key, "is empty: APNs needs key_file, key_id, team_id and topic");
  }
  s.finish();
}

void read_push(ConfigSection s, PushConfig& c, std::optional<FcmOptions>& fcm, std::optional<ApnsOptions>& apns) {
  s.read("enabled", c.enabled);
  s.read("collapse_window", c.collapse_window);
  if (c.collapse_window.count() < 0 || c.collapse_window > std::chrono::minutes(10)) {
    s.fail("collapse_window", "must be between 0ms and 10m");
  }
  s.read("close_delay", c.close_delay);
  if (c.close_delay.count() < 0 || c.close_delay > std::chrono::minutes(1)) {
    s.fail("close_delay", "must be between 0ms and 1m");
  }
  read_u32(s, "preview_chars", c.preview_chars, 0, 1000);
  read_u32(s, "max_attempts", c.max_attempts, 1, 100);
  s.read("first_backoff", c.first_backoff);
  s.read("max_backoff", c.max_backoff);
  if (c.first_backoff.count() < 1 || c.max_backoff < c.first_backoff) {
    s.fail("max_backoff", "must be at least first_backoff, and first_backoff at least 1ms");
  }
  s.read("timeout", c.timeout);
  if (c.timeout.count() < 100 || c.timeout > std::chrono::minutes(1)) s.fail("timeout", "must be between 100ms and 1m");
  s.read("webhook_private_addresses", c.webhook_private_addresses);
  s.read("webhook_secret", c.webhook_secret);
  if (c.enabled && c.webhook_secret.size() < kMinWebhookSecretBytes) {
    s.fail("webhook_secret", "must have at least " + std::to_string(kMinWebhookSecretBytes) +
                                 " bytes when push is enabled: webhook requests are signed with it");
  }
  read_u32(s, "max_in_flight", c.max_in_flight, 1, 256);
  s.read("lease_ttl", c.lease_ttl);
  if (c.lease_ttl < std::chrono::seconds(1) || c.lease_ttl > std::chrono::minutes(5)) {
    s.fail("lease_ttl", "must be between 1s and 5m");
  }
  if (s.has("fcm")) {
    read_fcm(s.section("fcm"), fcm.emplace());
    fcm->timeout = c.timeout;
  }
  if (s.has("apns")) {
    read_apns(s.section("apns"), apns.emplace());
    apns->timeout = c.timeout;
  }
  s.read("group", c.group);
  if (c.group.empty()) s.fail("group", "is empty: name the push workers' consumer group");
  s.read("commit_interval", c.commit_interval);
  if (c.commit_interval.count() < 1) s.fail("commit_interval", "must be at least 1ms");
  s.finish();
}

// The `sessions:` section; the connection defaults come from the `redis:` section when present.
// `heartbeat_timeout` is the gateway's: a live session refreshes its entry at least that often
// (pongs come at half of it), so a time-to-live below it would expire idle users who are online.
void read_sessions(ConfigSection s, const std::optional<RedisConfig>& redis, std::chrono::milliseconds heartbeat_timeout,
                   RedisSessionsConfig& c) {
  if (redis) {
    c.host = redis->host;
    c.port = redis->port;
    c.password = redis->password;
    c.db = redis->db;
  }
  s.read("host", c.host);
  if (c.host.empty()) s.fail("host", "is empty: name the Redis server, or remove the `sessions` section");
  read_port(s, c.port);
  s.read("password", c.password);
  s.read("db", c.db);
  if (c.db < 0 || c.db > 15) s.fail("db", "must be between 0 and 15");
  s.read("key_prefix", c.key_prefix);
  std::chrono::milliseconds ttl = c.ttl;
  s.read("ttl", ttl);
  if (ttl < std::chrono::seconds(2)) s.fail("ttl", "must be at least 2s (and at least gateway.heartbeat_timeout)");
  if (ttl < heartbeat_timeout) {
    s.fail("ttl", "is " + std::to_string(ttl.count()) + "ms, below gateway.heartbeat_timeout (" +
                      std::to_string(heartbeat_timeout.count()) +
                      "ms): idle users would expire while connected; raise sessions.ttl or lower the timeout");
  }
  c.ttl = std::chrono::duration_cast<std::chrono::seconds>(ttl);
  read_u32(s, "lookup_batch", c.lookup_batch, 1, 100000);
  read_u32(s, "pool_size", c.pool_size, 1, 256);
  s.finish();
}

// retention: (imlog/tasks/retention.h); the engine enforces the same default.
void read_retention(ConfigSection s, RetentionConfig& c) {
  read_u32(s, "default_keep_days", c.default_keep_days, 0, kMaxKeepDays);
  s.read("interval", c.interval);
  if (c.interval < std::chrono::milliseconds(100) || c.interval > std::chrono::hours(24)) {
    s.fail("interval", "must be between 100ms and 24h");
  }
  s.finish();
}

}  // namespace

ServerConfig read_server_config(ConfigSection& root, const std::string& data_dir_override) {
  ServerConfig c;
  root.read("data_dir", c.data_dir);
  if (!data_dir_override.empty()) c.data_dir = data_dir_override;
  // Directories not set explicitly live under data_dir.
  c.event_log.local.dir.clear();
  c.engine.state_dir.clear();
  c.model.dir.clear();
  root.read("roles", c.roles);
  if (auto p = roles_problem(c.roles); !p.empty()) root.fail("roles", p);
  {
    auto log = root.section("log");
    log.read("level", c.log.level);
    log.read("format", c.log.format);
    log.finish();
  }
  read_event_log(root.section("event_log"), c.event_log);
  read_engine(root.section("engine"), c.engine);
  read_gateway(root.section("gateway"), c.gateway);
  read_router(root.section("router"), c.router);
  read_tasks(root.section("tasks"), c.tasks);
  read_push(root.section("push"), c.push, c.fcm, c.apns);
  read_retention(root.section("retention"), c.retention);
  c.engine.limits.default_keep_days = c.retention.default_keep_days;
  c.gateway.default_keep_days = c.retention.default_keep_days;
  read_model(root.section("model"), c.model);
  if (root.has("mysql")) read_mysql(root.section("mysql"), c.mysql.emplace());
  if (root.has("redis")) read_redis(root.section("redis"), c.redis.emplace());
  if (root.has("sessions")) read_sessions(root.section("sessions"), c.redis, c.gateway.heartbeat_timeout, c.sessions.emplace());
  {
    auto ops = root.section("ops");
    ops.read("listen", c.ops_listen);
    ops.finish();
  }
  root.finish();
  if (c.event_log.local.dir.empty()) c.event_log.local.dir = c.data_dir + "/log";
  if (c.engine.state_dir.empty()) c.engine.state_dir = c.data_dir + "/engine";
  if (c.model.dir.empty()) c.model.dir = c.data_dir + "/model";
  if (c.gateway.avatar_dir.empty()) c.gateway.avatar_dir = c.data_dir + "/avatars";
  if (c.gateway.avatar_dir == kAvatarsOff) c.gateway.avatar_dir.clear();
  return c;
}

std::string roles_problem(const std::vector<std::string>& roles) {
  const char* known = "use all, gateway, engine, projector, router or tasks";
  if (roles.empty()) return std::string("names no role: ") + known;
  for (const auto& r : roles) {
    if (std::find(kRoles.begin(), kRoles.end(), r) == kRoles.end()) return "`" + r + "` is not a role: " + known;
  }
  return {};
}

bool has_role(const ServerConfig& config, std::string_view role) {
  for (const auto& r : config.roles) {
    if (r == "all" || r == role) return true;
  }
  return false;
}

}  // namespace imlog
