#pragma once
// Private to the MySQL model: connecting through MySQL Connector/C++ 1.1 (JDBC-style cppconn/),
// and turning its exceptions into imlog Errors at this boundary. Nothing above src/ sees a
// sql:: type.
//
// Thread-safety: connect() may be called from any thread (the driver is initialised once and
// every calling thread is registered with the client library); a connection belongs to one
// thread at a time.

#include <cppconn/connection.h>
#include <cppconn/exception.h>

#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "imlog/core/result.h"
#include "imlog/projections/mysql_model.h"

namespace imlog {

enum class MysqlErrc {
  unavailable = 1,  // the server cannot be reached or dropped the connection (retryable)
  query_failed,     // the server refused a statement
  bad_config,       // a MysqlConfig field is unusable
  migration_failed, // a migration of schema/mysql/ failed
};
const std::error_category& mysql_category();
inline std::error_code make_error_code(MysqlErrc e) { return {static_cast<int>(e), mysql_category()}; }

}  // namespace imlog

template <>
struct std::is_error_code_enum<imlog::MysqlErrc> : std::true_type {};

namespace imlog::mysql {

// "host:port" for messages.
std::string endpoint(const MysqlConfig& config);

// Checks the database name (it is an identifier in DDL, never a bound value): 1 to 64 of
// [A-Za-z0-9_$]. The second form checks any database name; `config_key` names it in the error.
Status check_database_name(const MysqlConfig& config);
Status check_database_name(std::string_view name, std::string_view config_key);

// A new connection, with utf8mb4 and timeouts set; with `use_database`, that database selected.
// Fails with unavailable (retryable) naming host:port when the server cannot be reached.
Result<std::unique_ptr<sql::Connection>> connect(const MysqlConfig& config, bool use_database);

// The Error for an exception thrown while doing `what`: unavailable and retryable for lost or
// refused connections, deadlocks and lock waits; query_failed otherwise.
Error to_error(const sql::SQLException& e, const MysqlConfig& config, std::string_view what);

// Registers the calling thread with the client library (once per thread).
void register_thread();

// Whether the connection is unusable after this exception (drop it, connect again).
bool connection_lost(const sql::SQLException& e);

}  // namespace imlog::mysql
