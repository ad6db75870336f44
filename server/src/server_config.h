#pragma once
// The one config of an imlog deployment (docs/architecture.md, "Operations"): every key has a
// default, so `imlog serve` with no file is a working single node under ./data. Parsed and
// validated once in main; a bad key fails start-up with its name. Reference: docs/configuration.md.

#include <optional>
#include <string>
#include <vector>

#include "imlog/core/config.h"
#include "imlog/core/logging.h"
#include "imlog/engine/kafka_log.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/sequencer.h"
#include "imlog/gateway/gateway.h"
#include "imlog/projections/mysql_model.h"
#include "imlog/projections/redis_model.h"
#include "imlog/projections/rocksdb_model.h"
#include "imlog/tasks/fanout.h"
#include "imlog/tasks/push.h"
#include "imlog/tasks/redis_sessions.h"
#include "imlog/tasks/retention.h"
#include "imlog/tasks/router.h"

namespace imlog {

struct EventLogSettings {
  // "local" (embedded, one process) or "kafka". Default local.
  std::string backend = "local";
  // Partitions of im.commands and im.events, created by `imlog init` / a local first start.
  // Default 4.
  int32_t partitions = 4;
  LocalLogConfig local;
  KafkaLogConfig kafka;
  // `kafka.mock_control`: "host:port" of the control socket of imlog-kafka-mock (tests only). The
  // mock has no Admin API, so `imlog init` and a gateway create their topics through it. Default
  // empty (a real cluster: the Admin API).
  std::string mock_control;
};

struct ServerConfig {
  // Root of every local directory whose own key is not set. Default ./data.
  std::string data_dir = "./data";
  // Roles this process runs: all, or any of gateway, engine, projector, router, tasks.
  std::vector<std::string> roles = {"all"};
  LogConfig log;
  EventLogSettings event_log;
  EngineConfig engine;
  // The `gateway:` section. gateway.jwt_secret empty: the server keeps one in <data_dir>/secret.
  GatewayConfig gateway;
  // The `router:` section (large groups go to the tasks workers) and the `tasks:` section (the
  // fan-out workers).
  RouterConfig router;
  FanoutConfig tasks;
  // The `push:` section: the tasks role's offline push worker (off unless push.enabled).
  PushConfig push;
  // The `retention:` section: the deployment's default policy (also the engine's:
  // engine.limits.default_keep_days follows it) and the tasks role's retention worker.
  RetentionConfig retention;
  // push.fcm and push.apns: the providers of those platforms, when configured (else their devices
  // are counted unsupported).
  std::optional<FcmOptions> fcm;
  std::optional<ApnsOptions> apns;
  // The `model:` section: the RocksDB read model, always on. model.dir defaults to <data_dir>/model.
  RocksDbModelConfig model;
  // The `mysql:` and `redis:` sections: those read models are on when their section is present.
  std::optional<MysqlConfig> mysql;
  std::optional<RedisConfig> redis;
  // The `sessions:` section: present, the session registry is in Redis (every process of a
  // distributed deployment sees the same sessions); absent, it is in process (the single node).
  // Its host, port, password and db default to the `redis:` section's.
  std::optional<RedisSessionsConfig> sessions;
  // `ops.listen`: host:port of this process's ops listener (/metrics, /healthz, /readyz;
  // docs/operations.md). Empty (the default): a gateway process serves them on the gateway's port,
  // any other its role's default port (default_ops_listen, server/src/ops_server.h). Set, the
  // process serves them there too (a gateway process: besides its own port).
  std::string ops_listen;
};

// Reads `path` (empty: no file, all defaults) and applies data_dir to the directories left at
// their defaults. Throws ConfigError naming the key at fault.
ServerConfig load_server_config(const std::string& path, const std::string& data_dir_override);
// The same from a parsed document, without the defaults that ask the machine (gateway.gateway_id
// stays empty when not set): what tests and the config fuzzer drive.
ServerConfig read_server_config(ConfigSection& root, const std::string& data_dir_override);

// The per-process flags of `imlog serve` (docs/deploy.md); an empty field was not given.
struct CommandLine {
  std::vector<std::string> roles;
  std::string listen;
  std::string gateway_id;
  std::string ops_listen;
};

// Applies the flags to `config`, each checked as strictly as its key in the file, then checks the
// gateway's address (the file's or --listen's) when this process runs the gateway: a bad value
// stops start-up here, before any role starts. Throws ConfigError naming the flag or key.
void apply_command_line(ServerConfig& config, const CommandLine& flags);

// Why `roles` is not a list of roles (empty when it is): one check for `roles:` and --roles.
std::string roles_problem(const std::vector<std::string>& roles);

// Whether this process runs `role` (true for every role when roles contain "all").
bool has_role(const ServerConfig& config, std::string_view role);

}  // namespace imlog
