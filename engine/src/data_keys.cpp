#include "imlog/engine/data_keys.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <sodium.h>

namespace imlog {
namespace {

std::string id_str(uint64_t v) { return std::to_string(v); }

// libsodium's random source, for new keys (sodium_init is idempotent and thread-safe).
void init_sodium() {
  static const int ready = sodium_init();
  if (ready < 0) std::abort();  // no random source: no key can be made safely
}

}  // namespace

// ---- RocksDB ------------------------------------------------------------------------------------

namespace {

// Layout: 'k' user_id (8 BE) → the 32-byte key; an empty value: destroyed.
class RocksKeyStore final : public KeyStore {
 public:
  explicit RocksKeyStore(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
  ~RocksKeyStore() override {
    if (db_) (void)db_->Close();
  }

  Result<DataKey> key_for_writing(uint64_t user_id) override {
    std::lock_guard lock(write_mu_);  // one maker at a time: never two keys for one user
    auto found = read(user_id);
    IMLOG_TRY(found);
    if (found->has_value()) {
      if ((*found)->empty()) return fail(KeyErrc::erased, "user " + id_str(user_id) + " was erased");
      return stored_key(user_id, **found);
    }
    init_sodium();
    DataKey key;
    crypto_aead_xchacha20poly1305_ietf_keygen(key.data());
    rocksdb::WriteOptions w;
    w.sync = true;
    auto s = db_->Put(w, key_of(user_id), rocksdb::Slice(reinterpret_cast<const char*>(key.data()), key.size()));
    if (!s.ok()) return unavailable("storing the data key of user " + id_str(user_id), s);
    return key;
  }

  Result<std::optional<DataKey>> key_for_reading(uint64_t user_id) override {
    auto found = read(user_id);
    IMLOG_TRY(found);
    if (!found->has_value()) return std::optional<DataKey>{};
    if ((*found)->empty()) return fail(KeyErrc::erased, "user " + id_str(user_id) + " was erased");
    auto key = stored_key(user_id, **found);
    IMLOG_TRY(key);
    return std::optional<DataKey>(*key);
  }

  Status destroy(uint64_t user_id) override {
    std::lock_guard lock(write_mu_);
    rocksdb::WriteOptions w;
    w.sync = true;
    std::string k = key_of(user_id);
    auto s = db_->Put(w, k, rocksdb::Slice());
    if (!s.ok()) return unavailable("destroying the data key of user " + id_str(user_id), s);
    // The key's bytes are still in the memtable's write-ahead log and maybe an SST file: flush,
    // then compact the key's range so only the empty value is left on disk.
    s = db_->Flush(rocksdb::FlushOptions());
    if (s.ok()) {
      rocksdb::Slice k_slice(k);
      rocksdb::CompactRangeOptions c;
      c.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
      s = db_->CompactRange(c, &k_slice, &k_slice);
    }
    if (!s.ok()) return unavailable("compacting away the data key of user " + id_str(user_id), s);
    return {};
  }

 private:
  static std::string key_of(uint64_t user_id) {
    std::string k(9, 'k');
    for (size_t i = 0; i < 8; ++i) k[1 + i] = static_cast<char>(user_id >> (8 * (7 - i)));
    return k;
  }

  Result<std::optional<std::string>> read(uint64_t user_id) {
    std::string value;
    auto s = db_->Get(rocksdb::ReadOptions(), key_of(user_id), &value);
    if (s.IsNotFound()) return std::optional<std::string>{};
    if (!s.ok()) return unavailable("reading the data key of user " + id_str(user_id), s);
    return std::optional<std::string>(std::move(value));
  }

  static tl::unexpected<Error> unavailable(const std::string& what, const rocksdb::Status& s) {
    return fail(KeyErrc::unavailable, what + ": " + s.ToString(), true);
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::mutex write_mu_;
};

}  // namespace

Result<std::unique_ptr<KeyStore>> open_rocksdb_key_store(const std::string& dir) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.recycle_log_file_num = 0;  // an old write-ahead log is deleted, never reused with old bytes in it
  o.WAL_ttl_seconds = 0;
  o.WAL_size_limit_MB = 0;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, dir, &raw);
  if (!s.ok()) return fail(KeyErrc::unavailable, "opening the key store in " + dir + ": " + s.ToString());
  return std::unique_ptr<KeyStore>(new RocksKeyStore(std::unique_ptr<rocksdb::DB>(raw)));
}

// ---- the cache ----------------------------------------------------------------------------------

struct CachedKeyStore::State {
  struct Entry {
    DataKey key;
    std::chrono::steady_clock::time_point until;
  };
  std::chrono::milliseconds ttl;
  size_t capacity;
  std::mutex mu;
  std::unordered_map<uint64_t, Entry> keys;
  // Users whose key this process destroyed: never cached again, so a reader that fetched the key
  // from the store just before the destroy cannot put it back (erasures are rare: a few ids).
  std::unordered_set<uint64_t> destroyed;

  bool is_destroyed(uint64_t user_id) {
    std::lock_guard lock(mu);
    return destroyed.contains(user_id);
  }
  std::optional<DataKey> find(uint64_t user_id) {
    std::lock_guard lock(mu);
    auto it = keys.find(user_id);
    if (it == keys.end()) return std::nullopt;
    if (it->second.until < std::chrono::steady_clock::now()) {
      keys.erase(it);
      return std::nullopt;
    }
    return it->second.key;
  }
  void keep(uint64_t user_id, const DataKey& key) {
    std::lock_guard lock(mu);
    if (destroyed.contains(user_id)) return;
    if (keys.size() >= capacity) keys.clear();
    keys[user_id] = Entry{key, std::chrono::steady_clock::now() + ttl};
  }
  void forget_for_good(uint64_t user_id) {
    std::lock_guard lock(mu);
    keys.erase(user_id);
    destroyed.insert(user_id);
  }
};

CachedKeyStore::CachedKeyStore(std::unique_ptr<KeyStore> store, std::chrono::milliseconds ttl, size_t capacity)
    : store_(std::move(store)), state_(std::make_unique<State>()) {
  state_->ttl = ttl;
  state_->capacity = std::max<size_t>(1, capacity);
}

CachedKeyStore::~CachedKeyStore() = default;

Result<DataKey> CachedKeyStore::key_for_writing(uint64_t user_id) {
  if (state_->is_destroyed(user_id)) return fail(KeyErrc::erased, "user " + id_str(user_id) + " was erased");
  if (auto k = state_->find(user_id)) return *k;
  auto key = store_->key_for_writing(user_id);
  IMLOG_TRY(key);
  state_->keep(user_id, *key);
  return *key;
}

Result<std::optional<DataKey>> CachedKeyStore::key_for_reading(uint64_t user_id) {
  if (state_->is_destroyed(user_id)) return fail(KeyErrc::erased, "user " + id_str(user_id) + " was erased");
  if (auto k = state_->find(user_id)) return std::optional<DataKey>(*k);
  auto key = store_->key_for_reading(user_id);
  IMLOG_TRY(key);
  if (key->has_value()) state_->keep(user_id, **key);
  return *key;
}

// Forgotten for good first: from here on this process treats the key as destroyed, even while
// the store's destroy is under way or failed (the caller retries it).
Status CachedKeyStore::destroy(uint64_t user_id) {
  state_->forget_for_good(user_id);
  return store_->destroy(user_id);
}

}  // namespace imlog
