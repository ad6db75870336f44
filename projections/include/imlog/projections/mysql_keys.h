#pragma once
// The distributed mode's KeyStore (imlog/engine/data_keys.h) on MySQL/MariaDB: one row per user in
// table user_keys of database `keys_database` (created with the table if missing at open):
//   user_id BIGINT UNSIGNED PRIMARY KEY, data_key VARBINARY(32) NULL, erased_at BIGINT NULL
// A NULL data_key is a destroyed key; erased_at is when it was first destroyed (ms since the epoch).
// The keys never live in the read model's database: replay rebuilds that one elsewhere and drop()
// deletes it, and both must leave the keys alone.
//
// key_for_writing reads the user's row; when there is none it stores a new key with INSERT IGNORE
// and reads back what is stored, so processes racing for a new user all end with the one key that
// went in first. Every statement commits on its own (autocommit): a key is durable once returned.
// destroy() sets data_key to NULL; the old bytes may stay in InnoDB's redo and undo logs and in
// freed page space until the server overwrites them.
//
// Errors: KeyErrc::corrupt naming the user for a stored key that is not 32 bytes; KeyErrc::unavailable
// for every failure of the server (retryable when it cannot be reached or dropped the connection);
// at open, MysqlErrc::bad_config for an unusable configuration (keys_database not a plain identifier,
// or the read model's database; wrong user or password).
//
// Threading: thread-safe. A pool of at most pool_size connections under a mutex, each with its
// prepared statements; a pooled connection that lost the server is dropped and the call retried
// once on a new one.

#include <memory>

#include "imlog/core/result.h"
#include "imlog/engine/data_keys.h"
#include "imlog/projections/mysql_model.h"

namespace imlog {

// Connects, creates config.keys_database and its table user_keys if missing, and returns the store.
Result<std::unique_ptr<KeyStore>> open_mysql_key_store(const MysqlConfig& config);

}  // namespace imlog
