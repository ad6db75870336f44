// migrate_mysql(): applies the migrations of schema/mysql/ (embedded at build time, see
// projections/cmake/embed_migrations.cmake) that the database has not recorded yet, in number
// order, each recorded in schema_migrations once all its statements ran. Idempotent; concurrent
// callers (imlog init, replay, a server starting) are serialised by a named server lock.
//
// MariaDB runs DDL outside transactions, so a migration that fails half-way stays half-applied
// and unrecorded: every statement is written to be re-runnable (CREATE TABLE IF NOT EXISTS ...),
// and the next run repeats the migration from its first statement.

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include <chrono>
#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/projections/mysql_model.h"
#include "mysql_connection.h"

namespace imlog::detail {
extern const char* const kMysqlMigrationNames[];
extern const char* const kMysqlMigrationSql[];
extern const std::size_t kMysqlMigrationCount;
}  // namespace imlog::detail

namespace imlog {
namespace {

struct Migration {
  int version = 0;
  std::string name;
  std::string_view sql;
};

std::vector<Migration> embedded_migrations() {
  std::vector<Migration> out;
  for (size_t i = 0; i < detail::kMysqlMigrationCount; ++i) {
    Migration m;
    m.name = detail::kMysqlMigrationNames[i];
    m.version = std::stoi(m.name.substr(0, m.name.find('_')));
    m.sql = detail::kMysqlMigrationSql[i];
    out.push_back(std::move(m));
  }
  return out;
}

// Splits a script into statements at `;` outside quotes and comments; drops comments and empty
// statements.
std::vector<std::string> split_statements(std::string_view sql) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    auto first = cur.find_first_not_of(" \t\r\n");
    if (first != std::string::npos) out.push_back(cur.substr(first));
    cur.clear();
  };
  for (size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    char next = i + 1 < sql.size() ? sql[i + 1] : '\0';
    if ((c == '-' && next == '-') || c == '#') {
      while (i < sql.size() && sql[i] != '\n') ++i;
      cur += '\n';
    } else if (c == '/' && next == '*') {
      i += 2;
      while (i + 1 < sql.size() && !(sql[i] == '*' && sql[i + 1] == '/')) ++i;
      ++i;
      cur += ' ';
    } else if (c == '\'' || c == '"' || c == '`') {
      cur += c;
      for (++i; i < sql.size(); ++i) {
        cur += sql[i];
        if (sql[i] == '\\' && c != '`' && i + 1 < sql.size()) {
          cur += sql[++i];
        } else if (sql[i] == c) {
          break;
        }
      }
    } else if (c == ';') {
      flush();
    } else {
      cur += c;
    }
  }
  flush();
  return out;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Status migrate_mysql(const MysqlConfig& config) {
  IMLOG_TRY(mysql::check_database_name(config));
  auto conn = mysql::connect(config, /*use_database=*/false);
  IMLOG_TRY(conn);
  auto& c = **conn;
  const std::string db = "`" + config.database + "`";
  std::string step = "creating database " + config.database;
  try {
    std::unique_ptr<sql::Statement> st(c.createStatement());
    st->execute("CREATE DATABASE IF NOT EXISTS " + db + " CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");
    c.setSchema(config.database);

    step = "taking the migration lock";
    std::unique_ptr<sql::PreparedStatement> lock(c.prepareStatement("SELECT GET_LOCK(?, 120)"));
    lock->setString(1, "imlog.migrate." + config.database);
    std::unique_ptr<sql::ResultSet> got(lock->executeQuery());
    if (!got->next() || got->getInt(1) != 1) {
      return fail(MysqlErrc::unavailable,
                  "MySQL " + mysql::endpoint(config) + ": another process held the migration lock of database `" +
                      config.database + "` for 120 s; retry once it is done",
                  true);
    }
    struct Unlock {
      sql::Connection& c;
      std::string name;
      ~Unlock() {
        try {
          std::unique_ptr<sql::PreparedStatement> u(c.prepareStatement("SELECT RELEASE_LOCK(?)"));
          u->setString(1, name);
          std::unique_ptr<sql::ResultSet> r(u->executeQuery());
        } catch (const sql::SQLException&) {
          // The lock dies with the connection anyway.
        }
      }
    } unlock{c, "imlog.migrate." + config.database};

    step = "creating schema_migrations";
    st->execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INT NOT NULL PRIMARY KEY,"
        " name VARCHAR(255) NOT NULL,"
        " applied_at BIGINT NOT NULL"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin");

    step = "reading schema_migrations";
    std::set<int> applied;
    {
      std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SELECT version FROM schema_migrations"));
      while (rs->next()) applied.insert(rs->getInt(1));
    }
    auto migrations = embedded_migrations();
    if (!applied.empty() && !migrations.empty() && *applied.rbegin() > migrations.back().version) {
      logger("projections")
          ->warn("MySQL database {} has migration {} applied; this build knows up to {} (an older binary on a newer schema)",
                 config.database, *applied.rbegin(), migrations.back().version);
    }
    for (const auto& m : migrations) {
      if (applied.contains(m.version)) continue;
      step = "applying migration " + m.name;
      for (const auto& stmt : split_statements(m.sql)) st->execute(stmt);
      std::unique_ptr<sql::PreparedStatement> rec(
          c.prepareStatement("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"));
      rec->setInt(1, m.version);
      rec->setString(2, m.name);
      rec->setInt64(3, now_ms());
      rec->executeUpdate();
      logger("projections")->info("MySQL database {}: applied migration {}", config.database, m.name);
    }
  } catch (const sql::SQLException& e) {
    Error err = mysql::to_error(e, config, step);
    if (step.starts_with("applying migration") && !err.retryable()) {
      return fail(MysqlErrc::migration_failed, err.message() + "; fix the migration or the database, then run again");
    }
    return tl::unexpected(err);
  }
  return {};
}

}  // namespace imlog
