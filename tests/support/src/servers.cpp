#include "imlog/testing/servers.h"

#include <cppconn/driver.h>
#include <cppconn/exception.h>
#include <cppconn/connection.h>
#include <hiredis/hiredis.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

using namespace std::chrono_literals;

bool mysql_answers(const MysqlConfig& c) {
  try {
    std::unique_ptr<sql::Connection> conn(
        get_driver_instance()->connect("tcp://" + c.host + ":" + std::to_string(c.port), c.user, c.password));
    return conn != nullptr;
  } catch (const sql::SQLException&) {
    return false;
  }
}

bool redis_answers(const RedisConfig& c) {
  RawRedis r(c);
  return r.run({"PING"}) == "PONG";
}

const char* env(const char* name) { return std::getenv(name); }

// Starts what the environment does not provide. Owns the started servers for the process's life.
class Starter {
 public:
  void mysql(TestServers& s) {
    if (const char* host = env("IMLOG_MYSQL_HOST"), *port = env("IMLOG_MYSQL_PORT"); host && port) {
      s.mysql.host = host;
      s.mysql.port = std::atoi(port);
      s.mysql.user = env("IMLOG_MYSQL_USER") ? env("IMLOG_MYSQL_USER") : "root";
      s.mysql.password = env("IMLOG_MYSQL_PASSWORD") ? env("IMLOG_MYSQL_PASSWORD") : "";
      if (!mysql_answers(s.mysql)) {
        s.mysql_problem = "IMLOG_MYSQL_HOST/PORT name " + s.mysql.host + ":" + port + ", which does not answer";
      }
      return;
    }
    if (in_ci()) {
      s.mysql_problem =
          "IMLOG_MYSQL_HOST/IMLOG_MYSQL_PORT are not set and CI=true: run through scripts/test, which starts "
          "MariaDB (in CI a missing server is a failure, never a skip)";
      return;
    }
    std::string install = find_program("mariadb-install-db"), server = find_program("mariadbd");
    if (install.empty() || server.empty()) {
      s.mysql_problem = "no IMLOG_MYSQL_* variables and no mariadb-install-db/mariadbd to start one: run scripts/setup";
      return;
    }
    std::string data = dir().str() + "/mysql";
    std::filesystem::create_directories(data);
    auto init = Subprocess::start({install, "--no-defaults", "--datadir=" + data,
                                   "--auth-root-authentication-method=normal", "--skip-test-db"});
    while (init.read_line(120s)) {
    }
    auto status = init.wait(120s);
    if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      s.mysql_problem = "mariadb-install-db failed in " + data;
      return;
    }
    s.mysql.host = "127.0.0.1";
    s.mysql.port = free_port();
    s.mysql.user = "root";
    s.mysql.password = "";
    mysqld_ = std::make_unique<Subprocess>(Subprocess::start(
        {server, "--no-defaults", "--datadir=" + data, "--socket=" + data + "/sock",
         "--port=" + std::to_string(s.mysql.port), "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
         "--innodb-buffer-pool-size=256M", "--max-connections=500", "--log-error=" + dir().str() + "/mariadb.log"}));
    if (!wait_until([&] { return mysql_answers(s.mysql); }, 60s)) {
      s.mysql_problem = "mariadbd started on port " + std::to_string(s.mysql.port) +
                        " did not answer within 60 s; see " + dir().str() + "/mariadb.log";
    }
  }

  void redis(TestServers& s) {
    if (const char* host = env("IMLOG_REDIS_HOST"), *port = env("IMLOG_REDIS_PORT"); host && port) {
      s.redis.host = host;
      s.redis.port = std::atoi(port);
      if (!redis_answers(s.redis)) {
        s.redis_problem = "IMLOG_REDIS_HOST/PORT name " + s.redis.host + ":" + port + ", which does not answer";
      }
      return;
    }
    if (in_ci()) {
      s.redis_problem =
          "IMLOG_REDIS_HOST/IMLOG_REDIS_PORT are not set and CI=true: run through scripts/test, which starts "
          "Redis (in CI a missing server is a failure, never a skip)";
      return;
    }
    std::string server = find_program("redis-server");
    if (server.empty()) {
      s.redis_problem = "no IMLOG_REDIS_* variables and no redis-server to start one: run scripts/setup";
      return;
    }
    s.redis.host = "127.0.0.1";
    s.redis.port = free_port();
    redisd_ = std::make_unique<Subprocess>(Subprocess::start(
        {server, "--port", std::to_string(s.redis.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", dir().str(), "--logfile", dir().str() + "/redis.log"}));
    if (!wait_until([&] { return redis_answers(s.redis); }, 20s)) {
      s.redis_problem = "redis-server started on port " + std::to_string(s.redis.port) + " did not answer within 20 s";
    }
  }

 private:
  TempDir& dir() {
    if (!dir_) dir_ = std::make_unique<TempDir>("imlog-test-servers");
    return *dir_;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Subprocess> mysqld_;
  std::unique_ptr<Subprocess> redisd_;
};

std::string unique_suffix(const std::string& tag) {
  static std::atomic<int> n{0};
  return std::to_string(::getpid()) + "_" + tag + "_" + std::to_string(++n);
}

}  // namespace

TestServers& TestServers::get() {
  static Starter starter;
  static TestServers servers = [] {
    TestServers s;
    starter.mysql(s);
    starter.redis(s);
    return s;
  }();
  return servers;
}

MysqlConfig fresh_mysql(const std::string& tag) {
  MysqlConfig c = TestServers::get().mysql;
  c.database = "imlog_t_" + unique_suffix(tag);
  c.pool_size = 2;
  return c;
}

RedisConfig fresh_redis(const std::string& tag) {
  RedisConfig c = TestServers::get().redis;
  c.key_prefix = "imlog-test:" + unique_suffix(tag) + ":";
  return c;
}

std::string find_program(const std::string& name) {
  std::string path = env("PATH") ? env("PATH") : "";
  path += ":/usr/sbin:/usr/bin:/sbin:/bin";
  std::stringstream ss(path);
  for (std::string dir; std::getline(ss, dir, ':');) {
    if (dir.empty()) continue;
    auto p = std::filesystem::path(dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

std::unique_ptr<sql::Connection> raw_mysql(const MysqlConfig& c) {
  std::unique_ptr<sql::Connection> conn(
      get_driver_instance()->connect("tcp://" + c.host + ":" + std::to_string(c.port), c.user, c.password));
  conn->setSchema(c.database);
  return conn;
}

RawRedis::RawRedis(const RedisConfig& c) {
  timeval tv{5, 0};
  ctx_ = redisConnectWithTimeout(c.host.c_str(), c.port, tv);
}

RawRedis::~RawRedis() {
  if (ctx_) redisFree(ctx_);
}

std::string RawRedis::run(const std::vector<std::string>& args) {
  if (!ctx_ || ctx_->err) return "<no reply>";
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()));
  if (!r) return "<no reply>";
  std::string out;
  if (r->type == REDIS_REPLY_INTEGER) {
    out = std::to_string(r->integer);
  } else if (r->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < r->elements; ++i) out += std::string(r->element[i]->str, r->element[i]->len) + "\n";
  } else if (r->str) {
    out.assign(r->str, r->len);
  }
  freeReplyObject(r);
  return out;
}

}  // namespace imlog::testing
