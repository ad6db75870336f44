#pragma once
// The MariaDB and Redis of a test process (integration tests use real servers, not mocks): the ones
// scripts/test starts, named by IMLOG_MYSQL_HOST/PORT/USER/PASSWORD and IMLOG_REDIS_HOST/PORT;
// without those variables, ones this process starts itself in a temporary directory on free
// loopback ports (mariadbd, redis-server from scripts/setup) — except under CI (CI=true), where a
// missing server is a failure, never a skip.
//
// Tests isolate themselves with a fresh database (fresh_mysql) and key prefix (fresh_redis).
// Thread-safe after the first TestServers::get().

#include <memory>
#include <string>
#include <vector>

#include "imlog/projections/mysql_model.h"
#include "imlog/projections/redis_model.h"

namespace sql {
class Connection;
}
struct redisContext;

namespace imlog::testing {

struct TestServers {
  static TestServers& get();
  // Empty when the server is available; otherwise why not (for the failure message).
  std::string mysql_problem;
  std::string redis_problem;
  MysqlConfig mysql;  // host, port, user, password (database left at its default)
  RedisConfig redis;  // host, port
};

// A configuration naming a database / key prefix no other test (or process) uses.
MysqlConfig fresh_mysql(const std::string& tag);
RedisConfig fresh_redis(const std::string& tag);

// The path of an executable found on PATH or in the sbin/bin directories; empty if none.
std::string find_program(const std::string& name);

// A plain connection to the config's database, for checks and damage the model's API doesn't offer.
std::unique_ptr<sql::Connection> raw_mysql(const MysqlConfig& c);

// One Redis connection for raw commands.
class RawRedis {
 public:
  explicit RawRedis(const RedisConfig& c);
  ~RawRedis();
  RawRedis(const RawRedis&) = delete;
  RawRedis& operator=(const RawRedis&) = delete;
  // The reply as text: integers in decimal, arrays as their elements joined by '\n', errors as
  // their message, "<no reply>" when the connection failed.
  std::string run(const std::vector<std::string>& args);

 private:
  redisContext* ctx_ = nullptr;
};

}  // namespace imlog::testing
