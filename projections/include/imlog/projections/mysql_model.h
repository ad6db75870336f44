#pragma once
// The MySQL read model (docs/architecture.md, "Projections"): tables of schema/mysql/ (numbered
// migrations), filled by batched multi-row upserts through MySQL Connector/C++ prepared statements,
// one transaction per batch including the projection positions. Also answers every ReadModel query
// with SQL.
//
// Threading: thread-safe; apply() from the projector thread, queries from gateway threads (a small
// connection pool).

#include <cstdint>
#include <memory>
#include <string>

#include "imlog/core/result.h"
#include "imlog/projections/projection.h"
#include "imlog/projections/query.h"

namespace imlog {

struct MysqlConfig {
  std::string host = "127.0.0.1";
  int32_t port = 3306;
  std::string user = "imlog";
  std::string password;
  // Database (schema) of the read model; created if missing. Replay builds into another one.
  std::string database = "imlog";
  // Connections for queries. Default 4. The key store (mysql_keys.h) keeps as many.
  int32_t pool_size = 4;
  // Database of the per-user data keys (mysql_keys.h, table user_keys); created if missing. Never
  // the read model's: replay rebuilds that one elsewhere, and must still find the keys here.
  std::string keys_database = "imlog_keys";
};

// Runs the migrations of schema/mysql/ not yet applied (recorded in table schema_migrations);
// idempotent. Creates the database if missing.
Status migrate_mysql(const MysqlConfig& config);

class MysqlModel;
// Connects, migrates, and returns the model. Fails with a retryable error when the server is
// unreachable.
Result<std::unique_ptr<MysqlModel>> open_mysql_model(const MysqlConfig& config);

class MysqlModel : public ProjectionSink, public ReadModel {
 public:
  ~MysqlModel() override = default;
  // Drops the database (for replay into a fresh target and tests).
  virtual Status drop() = 0;
};

}  // namespace imlog
