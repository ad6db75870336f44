#pragma once
// The deployment's data keys (imlog/engine/data_keys.h; docs/data-lifecycle.md, "Sealed content
// and data keys"), opened the same way by `imlog serve` and `replay`: on the embedded log a
// RocksDB store beside the data (<data_dir>/keys), on Kafka the MySQL store every process of the
// deployment shares (projections/mysql_keys.h; the `mysql:` section, database
// `mysql.keys_database`).

#include <chrono>
#include <memory>

#include "imlog/core/result.h"
#include "imlog/engine/data_keys.h"
#include "server_config.h"

namespace imlog {

// How long a process keeps a key it read (CachedKeyStore): after an erasure, another process may
// open that user's content for at most this long.
inline constexpr std::chrono::seconds kKeyCacheTtl{60};

// The store, uncached. Fails naming the section when the Kafka log has no `mysql:` section.
Result<std::unique_ptr<KeyStore>> open_key_store(const ServerConfig& config);

}  // namespace imlog
