#include "key_store.h"

#include <filesystem>
#include <system_error>

#include "imlog/projections/mysql_keys.h"

namespace imlog {

Result<std::unique_ptr<KeyStore>> open_key_store(const ServerConfig& config) {
  if (config.event_log.backend == "kafka") {
    if (!config.mysql) {
      return fail(std::errc::invalid_argument,
                  "the Kafka log needs the `mysql:` section: the data keys messages are sealed with are kept "
                  "there, shared by every process (mysql.keys_database)");
    }
    return open_mysql_key_store(*config.mysql);
  }
  std::string dir = config.data_dir + "/keys";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(std::errc::io_error, "cannot create the key store directory " + dir + ": " + ec.message());
  return open_rocksdb_key_store(dir);
}

}  // namespace imlog
