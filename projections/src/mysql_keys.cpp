// The MySQL key store (mysql_keys.h): table user_keys of the keys database, a small pool of
// connections with three prepared statements each, every statement in autocommit.
//
// Threading: calls take a pooled connection (pool_mu_) and run on it alone.

#include "imlog/projections/mysql_keys.h"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "mysql_connection.h"

namespace imlog {
namespace {

constexpr const char* kCreateTable =
    "CREATE TABLE IF NOT EXISTS user_keys ("
    " user_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
    " data_key VARBINARY(32) NULL,"
    " erased_at BIGINT NULL"
    ") ENGINE=InnoDB";
constexpr const char* kSelect = "SELECT data_key FROM user_keys WHERE user_id = ?";
constexpr const char* kInsert = "INSERT IGNORE INTO user_keys (user_id, data_key) VALUES (?, ?)";
// A second destroy keeps the time of the first.
constexpr const char* kDestroy =
    "INSERT INTO user_keys (user_id, data_key, erased_at) VALUES (?, NULL, ?) "
    "ON DUPLICATE KEY UPDATE data_key = NULL, erased_at = COALESCE(erased_at, VALUES(erased_at))";

std::string id_str(uint64_t v) { return std::to_string(v); }

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The store's errors are KeyErrc::unavailable, keeping the message and whether a retry may help;
// a bad configuration stays bad_config.
Error key_error(const Error& e) {
  if (e.code() == make_error_code(MysqlErrc::bad_config)) return e;
  return Error(make_error_code(KeyErrc::unavailable), e.message(), e.retryable());
}

// A user's row: none, a key's bytes, or destroyed (a NULL key).
struct Stored {
  enum { none, key, destroyed } state = none;
  std::string bytes;
};

struct Conn {
  std::unique_ptr<sql::Connection> c;  // declared first: destroyed after the statements
  std::unique_ptr<sql::PreparedStatement> select, insert, destroy;
  bool fresh = true;  // not used yet: a failure on it is not a stale connection
  bool broken = false;

  Stored read(uint64_t user_id) {
    select->setUInt64(1, user_id);
    std::unique_ptr<sql::ResultSet> rs(select->executeQuery());
    if (!rs->next()) return {};
    if (rs->isNull(1)) return {Stored::destroyed, {}};
    return {Stored::key, rs->getString(1).asStdString()};
  }
};

class MysqlKeyStore final : public KeyStore {
 public:
  // `config.database` is the keys database here.
  explicit MysqlKeyStore(MysqlConfig config) : config_(std::move(config)) {}

  Result<DataKey> key_for_writing(uint64_t user_id) override {
    return run<DataKey>("making the data key of user " + id_str(user_id), [&](Conn& c) -> Result<DataKey> {
      Stored s = c.read(user_id);
      if (s.state == Stored::none) {
        DataKey fresh;
        crypto_aead_xchacha20poly1305_ietf_keygen(fresh.data());
        c.insert->setUInt64(1, user_id);
        c.insert->setString(
            2, sql::SQLString(std::string(reinterpret_cast<const char*>(fresh.data()), fresh.size())));
        c.insert->executeUpdate();
        s = c.read(user_id);  // ours, or the one another caller stored first
      }
      if (s.state == Stored::destroyed) {
        return fail(KeyErrc::erased, "user " + id_str(user_id) + " was erased");
      }
      if (s.state == Stored::none) {
        return fail(KeyErrc::unavailable,
                    "the data key of user " + id_str(user_id) + " was gone right after it was stored; retry",
                    true);
      }
      return stored_key(user_id, s.bytes);
    });
  }

  Result<std::optional<DataKey>> key_for_reading(uint64_t user_id) override {
    using Found = std::optional<DataKey>;
    return run<Found>("reading the data key of user " + id_str(user_id), [&](Conn& c) -> Result<Found> {
      Stored s = c.read(user_id);
      if (s.state == Stored::none) return Found{};
      if (s.state == Stored::destroyed) return fail(KeyErrc::erased, "user " + id_str(user_id) + " was erased");
      auto key = stored_key(user_id, s.bytes);
      IMLOG_TRY(key);
      return Found(*key);
    });
  }

  Status destroy(uint64_t user_id) override {
    auto done = run<bool>("destroying the data key of user " + id_str(user_id), [&](Conn& c) -> Result<bool> {
      c.destroy->setUInt64(1, user_id);
      c.destroy->setInt64(2, now_ms());
      c.destroy->executeUpdate();
      return true;
    });
    if (!done) return tl::unexpected(done.error());
    return {};
  }

 private:
  // Runs f on a pooled connection, retrying once on a new one when a reused one lost the server.
  template <class T, class F>
  Result<T> run(const std::string& what, F&& f) {
    for (int attempt = 0;; ++attempt) {
      auto conn = acquire();
      if (!conn) return tl::unexpected(key_error(conn.error().with_context(what)));
      bool was_fresh = (*conn)->fresh;
      (*conn)->fresh = false;
      try {
        Result<T> out = f(**conn);
        release(std::move(*conn));
        return out;
      } catch (const sql::SQLException& e) {
        bool lost = mysql::connection_lost(e);
        (*conn)->broken = lost;
        release(std::move(*conn));
        if (lost && !was_fresh && attempt == 0) continue;
        return tl::unexpected(key_error(mysql::to_error(e, config_, what)));
      }
    }
  }

  Result<std::unique_ptr<Conn>> new_conn() {
    auto c = mysql::connect(config_, /*use_database=*/true);
    IMLOG_TRY(c);
    auto conn = std::make_unique<Conn>();
    conn->c = std::move(*c);
    try {
      conn->select.reset(conn->c->prepareStatement(kSelect));
      conn->insert.reset(conn->c->prepareStatement(kInsert));
      conn->destroy.reset(conn->c->prepareStatement(kDestroy));
    } catch (const sql::SQLException& e) {
      return tl::unexpected(mysql::to_error(e, config_, "preparing the key store's statements"));
    }
    return conn;
  }

  Result<std::unique_ptr<Conn>> acquire() {
    mysql::register_thread();
    {
      std::unique_lock lock(pool_mu_);
      pool_cv_.wait(lock, [&] { return !idle_.empty() || open_ < std::max(1, config_.pool_size); });
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
      ++open_;
    }
    auto c = new_conn();
    if (!c) release(nullptr);
    return c;
  }

  // Returns a connection to the pool; a broken one (or none) frees its place.
  void release(std::unique_ptr<Conn> c) {
    std::lock_guard lock(pool_mu_);
    if (c && !c->broken) {
      idle_.push_back(std::move(c));
    } else {
      --open_;
    }
    pool_cv_.notify_one();
  }

  MysqlConfig config_;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  int32_t open_ = 0;
};

// Creates the keys database and its table when missing (`keys.database` is the keys database).
Status create_table(const MysqlConfig& keys) {
  auto conn = mysql::connect(keys, /*use_database=*/false);
  IMLOG_TRY(conn);
  std::string step = "creating database " + keys.database;
  try {
    std::unique_ptr<sql::Statement> st((*conn)->createStatement());
    st->execute("CREATE DATABASE IF NOT EXISTS `" + keys.database +
                "` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin");
    (*conn)->setSchema(keys.database);
    step = "creating table user_keys";
    st->execute(kCreateTable);
  } catch (const sql::SQLException& e) {
    return tl::unexpected(mysql::to_error(e, keys, step));
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<KeyStore>> open_mysql_key_store(const MysqlConfig& config) {
  IMLOG_TRY(mysql::check_database_name(config.keys_database, "mysql.keys_database"));
  if (config.keys_database == config.database) {
    return fail(MysqlErrc::bad_config,
                "mysql.keys_database `" + config.keys_database +
                    "` is the read model's database (mysql.database): the keys need their "
                    "own, which replay and drop() leave alone");
  }
  if (sodium_init() < 0) {
    return fail(KeyErrc::unavailable, "libsodium did not start: no data key can be made");
  }
  MysqlConfig keys = config;
  keys.database = config.keys_database;
  if (auto created = create_table(keys); !created) return tl::unexpected(key_error(created.error()));
  return std::unique_ptr<KeyStore>(new MysqlKeyStore(std::move(keys)));
}

}  // namespace imlog
