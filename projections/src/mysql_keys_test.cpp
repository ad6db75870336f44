// The MySQL key store (mysql_keys.h) against the real MariaDB of scripts/test (IMLOG_MYSQL_*; see
// tests/support servers.h), each test in a keys database of its own: a key is made once, stored
// byte for byte and the same after a reopen; two stores racing for a new user end with one key;
// a destroyed key is gone for good; a stored key of the wrong length is corrupt; a dropped
// connection is replaced; bad configurations and an unreachable server are refused clearly.
// Every test name starts with MysqlKeys:
//   scripts/test -R MysqlKeys

#include "imlog/projections/mysql_keys.h"

#include <cppconn/connection.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <gtest/gtest.h>

#include <barrier>
#include <map>
#include <thread>
#include <vector>

#include "imlog/testing/servers.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

namespace t = imlog::testing;

#define ASSERT_OK(expr)                                                                         \
  do {                                                                                          \
    auto&& assert_ok_r_ = (expr);                                                               \
    ASSERT_TRUE(assert_ok_r_.has_value()) << #expr << ": " << assert_ok_r_.error().to_string(); \
  } while (0)

std::string bytes_of(const DataKey& key) {
  return std::string(reinterpret_cast<const char*>(key.data()), key.size());
}

class MysqlKeys : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(t::TestServers::get().mysql_problem.empty()) << t::TestServers::get().mysql_problem;
    config_ = t::fresh_mysql("keys");
    config_.keys_database = config_.database + "_k";
    config_.pool_size = 4;
  }
  void TearDown() override {
    if (config_.keys_database.empty()) return;
    try {
      auto c = raw("information_schema");
      std::unique_ptr<sql::Statement> st(c->createStatement());
      st->execute("DROP DATABASE IF EXISTS `" + config_.keys_database + "`");
    } catch (const sql::SQLException& e) {
      ADD_FAILURE() << "dropping " << config_.keys_database << ": " << e.what();
    }
  }

  std::unique_ptr<KeyStore> open() {
    auto s = open_mysql_key_store(config_);
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? std::move(*s) : nullptr;
  }
  // A plain connection to the keys database (or another).
  std::unique_ptr<sql::Connection> raw(const std::string& database = "") {
    MysqlConfig c = config_;
    c.database = database.empty() ? config_.keys_database : database;
    return t::raw_mysql(c);
  }
  // The row of a user as stored: the key's bytes ("NULL" for none) and erased_at (0 for NULL);
  // nullopt without a row.
  std::optional<std::pair<std::string, int64_t>> row(uint64_t user_id) {
    auto c = raw();
    std::unique_ptr<sql::PreparedStatement> st(
        c->prepareStatement("SELECT data_key, erased_at FROM user_keys WHERE user_id = ?"));
    st->setUInt64(1, user_id);
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery());
    if (!rs->next()) return std::nullopt;
    std::string key = rs->isNull(1) ? "NULL" : rs->getString(1).asStdString();
    return std::pair{key, rs->isNull(2) ? int64_t{0} : rs->getInt64(2)};
  }
  void store_raw(uint64_t user_id, const std::string& bytes) {
    auto c = raw();
    std::unique_ptr<sql::PreparedStatement> st(
        c->prepareStatement("REPLACE INTO user_keys (user_id, data_key) VALUES (?, ?)"));
    st->setUInt64(1, user_id);
    st->setString(2, bytes);
    st->executeUpdate();
  }

  MysqlConfig config_;
};

TEST_F(MysqlKeys, AKeyIsMadeOnceAndTheSameAfterReopening) {
  auto store = open();
  ASSERT_TRUE(store);
  auto none = store->key_for_reading(7);
  ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
  EXPECT_FALSE(row(7)) << "reading makes no key";
  auto made = store->key_for_writing(7);
  ASSERT_OK(made);
  auto again = store->key_for_writing(7);
  ASSERT_OK(again);
  EXPECT_EQ(*made, *again);
  auto other = store->key_for_writing(8);
  ASSERT_OK(other);
  EXPECT_NE(*made, *other);
  store.reset();
  store = open();  // the table exists now: opening again keeps it
  ASSERT_TRUE(store);
  auto read = store->key_for_reading(7);
  ASSERT_OK(read);
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ(**read, *made);
  auto write = store->key_for_writing(7);
  ASSERT_OK(write);
  EXPECT_EQ(*write, *made);
}

// Random keys hold zero bytes and bytes that are no UTF-8: all must be stored and read back as is.
TEST_F(MysqlKeys, KeysAreStoredByteForByte) {
  auto store = open();
  ASSERT_TRUE(store);
  for (uint64_t user = 1; user <= 64; ++user) {
    auto key = store->key_for_writing(user);
    ASSERT_OK(key);
    auto stored = row(user);
    ASSERT_TRUE(stored);
    EXPECT_EQ(stored->first, bytes_of(*key)) << "user " << user;
    EXPECT_EQ(stored->second, 0) << "user " << user;
  }
  std::string with_zeros(kDataKeyBytes, '\0');
  with_zeros[5] = '\xff';
  store_raw(100, with_zeros);
  auto read = store->key_for_reading(100);
  ASSERT_OK(read);
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ(bytes_of(**read), with_zeros);
}

// Two stores are two processes; each has several threads asking for the same new users at once.
TEST_F(MysqlKeys, TwoStoresRacingForANewUserGetOneKey) {
  auto a = open(), b = open();
  ASSERT_TRUE(a && b);
  constexpr int kThreadsPerStore = 4;
  constexpr uint64_t kUsers = 20;
  std::barrier start(2 * kThreadsPerStore);
  std::vector<std::vector<std::optional<DataKey>>> got(2 * kThreadsPerStore,
                                                       std::vector<std::optional<DataKey>>(kUsers));
  std::vector<std::string> errors(2 * kThreadsPerStore);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2 * kThreadsPerStore; ++i) {
    threads.emplace_back([&, i] {
      KeyStore& store = i % 2 ? *a : *b;
      for (uint64_t u = 0; u < kUsers; ++u) {
        start.arrive_and_wait();  // every thread asks for user u at the same time
        auto k = store.key_for_writing(1000 + u);
        if (k) {
          got[i][u] = *k;
        } else {
          errors[i] = k.error().to_string();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 2 * kThreadsPerStore; ++i) EXPECT_EQ(errors[i], "") << "thread " << i;
  for (uint64_t u = 0; u < kUsers; ++u) {
    auto stored = row(1000 + u);
    ASSERT_TRUE(stored) << "user " << 1000 + u;
    for (int i = 0; i < 2 * kThreadsPerStore; ++i) {
      ASSERT_TRUE(got[i][u]) << "thread " << i << ", user " << 1000 + u;
      EXPECT_EQ(bytes_of(*got[i][u]), stored->first) << "thread " << i << ", user " << 1000 + u;
    }
  }
}

TEST_F(MysqlKeys, ADestroyedKeyIsGoneForGood) {
  auto store = open();
  ASSERT_TRUE(store);
  auto key = store->key_for_writing(7);
  ASSERT_OK(key);
  ASSERT_OK(store->destroy(7));
  auto first = row(7);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->first, "NULL") << "the key's bytes are gone from the table";
  EXPECT_GT(first->second, 0) << "erased_at is set";
  ASSERT_OK(store->destroy(7));  // idempotent, and the first erasure time stays
  EXPECT_EQ(row(7), first);
  ASSERT_OK(store->destroy(9));  // a user who never had a key is remembered as erased too

  auto check_erased = [&](KeyStore& s) {
    for (uint64_t user : {uint64_t{7}, uint64_t{9}}) {
      auto read = s.key_for_reading(user);
      ASSERT_FALSE(read) << "user " << user << " read a key";
      EXPECT_EQ(read.error().code(), make_error_code(KeyErrc::erased)) << read.error().to_string();
      auto write = s.key_for_writing(user);
      ASSERT_FALSE(write) << "user " << user << " got a key again";
      EXPECT_EQ(write.error().code(), make_error_code(KeyErrc::erased)) << write.error().to_string();
      EXPECT_NE(write.error().message().find("user " + std::to_string(user)), std::string::npos)
          << write.error().to_string();
    }
  };
  check_erased(*store);
  store.reset();
  store = open();
  ASSERT_TRUE(store);
  check_erased(*store);
  EXPECT_EQ(row(7), first);
}

TEST_F(MysqlKeys, AStoredKeyOfTheWrongLengthIsCorrupt) {
  auto store = open();
  ASSERT_TRUE(store);
  store_raw(42, "short");
  auto read = store->key_for_reading(42);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code(), make_error_code(KeyErrc::corrupt));
  EXPECT_NE(read.error().message().find("user 42"), std::string::npos) << read.error().to_string();
  auto write = store->key_for_writing(42);
  ASSERT_FALSE(write);
  EXPECT_EQ(write.error().code(), make_error_code(KeyErrc::corrupt));
  EXPECT_EQ(row(42)->first, "short") << "a corrupt key is never replaced";
}

// The server closed the pooled connections (as it does after wait_timeout): the next call works.
TEST_F(MysqlKeys, AConnectionTheServerDroppedIsReplaced) {
  auto store = open();
  ASSERT_TRUE(store);
  auto key = store->key_for_writing(5);
  ASSERT_OK(key);
  auto c = raw();
  std::unique_ptr<sql::Statement> st(c->createStatement());
  std::unique_ptr<sql::ResultSet> rs(
      st->executeQuery("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '" + config_.keys_database +
                       "' AND ID <> CONNECTION_ID()"));
  std::vector<uint64_t> ids;
  while (rs->next()) ids.push_back(rs->getUInt64(1));
  ASSERT_FALSE(ids.empty()) << "the store keeps no connection";
  for (uint64_t id : ids) st->execute("KILL CONNECTION " + std::to_string(id));
  auto read = store->key_for_reading(5);
  ASSERT_OK(read);
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ(**read, *key);
}

TEST_F(MysqlKeys, ABadKeysDatabaseIsRefused) {
  for (const std::string& bad : {std::string("x`; DROP DATABASE mysql; --"), std::string(),
                                 std::string("im-keys"), std::string(65, 'k')}) {
    MysqlConfig c = config_;
    c.keys_database = bad;
    auto s = open_mysql_key_store(c);
    ASSERT_FALSE(s) << "`" << bad << "` was taken";
    EXPECT_EQ(s.error().code().category().name(), std::string("mysql")) << s.error().to_string();
    EXPECT_NE(s.error().message().find("mysql.keys_database `" + bad + "`"), std::string::npos)
        << s.error().to_string();
    EXPECT_NE(s.error().message().find("plain identifier"), std::string::npos) << s.error().to_string();
  }
  MysqlConfig same = config_;
  same.keys_database = same.database;
  auto s = open_mysql_key_store(same);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("read model's database"), std::string::npos) << s.error().to_string();
}

TEST_F(MysqlKeys, AnUnreachableServerIsUnavailableAndRetryable) {
  MysqlConfig c = config_;
  c.host = "127.0.0.1";
  c.port = t::free_port();  // nothing listens there
  auto s = open_mysql_key_store(c);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(KeyErrc::unavailable)) << s.error().to_string();
  EXPECT_TRUE(s.error().retryable()) << s.error().to_string();
  EXPECT_NE(s.error().message().find("127.0.0.1:" + std::to_string(c.port)), std::string::npos)
      << s.error().to_string();
}

}  // namespace
}  // namespace imlog
