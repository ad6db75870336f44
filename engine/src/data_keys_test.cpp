// Sealed fields and the RocksDB key store (data_keys.h): a sealed field opens only with its key,
// event and field; a user's key is made once, survives a reopen, and once destroyed is never made
// again and leaves no copy of its bytes in the store's files.

#include "imlog/engine/data_keys.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "imlog/testing/support.h"

namespace imlog {
namespace {

DataKey key_of(unsigned char fill) {
  DataKey k;
  k.fill(fill);
  return k;
}

TEST(Sealing, OpensWithItsKeyEventAndFieldOnly) {
  DataKey key = key_of(1);
  std::string sealed = seal(key, "hello there", {42, "content"});
  EXPECT_EQ(sealed.find("hello"), std::string::npos);
  auto opened = unseal(key, sealed, {42, "content"});
  ASSERT_TRUE(opened) << opened.error().to_string();
  EXPECT_EQ(*opened, "hello there");

  for (auto [k, ctx] : {std::pair{key_of(2), SealContext{42, "content"}}, std::pair{key, SealContext{43, "content"}},
                        std::pair{key, SealContext{42, "nickname"}}}) {
    auto wrong = unseal(k, sealed, ctx);
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().code(), make_error_code(KeyErrc::corrupt));
    EXPECT_NE(wrong.error().message().find(std::string(ctx.field)), std::string::npos) << wrong.error().message();
  }
}

TEST(Sealing, TwoSealsOfTheSameTextDiffer) {
  DataKey key = key_of(3);
  EXPECT_NE(seal(key, "same", {1, "content"}), seal(key, "same", {1, "content"}));
}

TEST(Sealing, ShortOrForeignBytesAreCorruptNotACrash) {
  DataKey key = key_of(4);
  for (std::string bad : {std::string(), std::string(10, 'x'), std::string(41, '\1'), std::string(200, '\2')}) {
    auto r = unseal(key, bad, {1, "content"});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), make_error_code(KeyErrc::corrupt));
  }
  std::string sealed = seal(key, "x", {1, "content"});
  sealed[0] = 9;
  auto r = unseal(key, sealed, {1, "content"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("version 9"), std::string::npos) << r.error().message();
}

RC_GTEST_PROP(Sealing, RoundTripsAndAnyFlippedByteFails, (const std::string& text, uint64_t event_id)) {
  DataKey key = key_of(5);
  std::string sealed = seal(key, text, {event_id, "content"});
  auto opened = unseal(key, sealed, {event_id, "content"});
  RC_ASSERT(opened.has_value());
  RC_ASSERT(*opened == text);
  size_t at = *rc::gen::inRange<size_t>(0, sealed.size());
  sealed[at] = static_cast<char>(sealed[at] ^ (1 + *rc::gen::inRange(0, 255)));
  RC_ASSERT_FALSE(unseal(key, sealed, {event_id, "content"}).has_value());
}

class RocksKeys : public ::testing::Test {
 protected:
  std::unique_ptr<KeyStore> open() {
    auto s = open_rocksdb_key_store(dir_.str());
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? std::move(*s) : nullptr;
  }
  // Whether any file under the store's directory holds these bytes.
  bool on_disk(const DataKey& key) {
    std::string needle(reinterpret_cast<const char*>(key.data()), key.size());
    for (const auto& f : std::filesystem::recursive_directory_iterator(dir_.path())) {
      if (!f.is_regular_file()) continue;
      std::ifstream in(f.path(), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (bytes.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  testing::TempDir dir_;
};

TEST_F(RocksKeys, AKeyIsMadeOnceAndSurvivesAReopen) {
  auto store = open();
  auto none = store->key_for_reading(7);
  ASSERT_TRUE(none) << none.error().to_string();
  EXPECT_FALSE(none->has_value());
  auto made = store->key_for_writing(7);
  ASSERT_TRUE(made) << made.error().to_string();
  auto again = store->key_for_writing(7);
  ASSERT_TRUE(again);
  EXPECT_EQ(*made, *again);
  EXPECT_NE(*made, *store->key_for_writing(8));
  store.reset();
  store = open();
  auto read = store->key_for_reading(7);
  ASSERT_TRUE(read && read->has_value());
  EXPECT_EQ(**read, *made);
}

TEST_F(RocksKeys, ADestroyedKeyIsGoneForGoodAndLeavesNoBytesOnDisk) {
  auto store = open();
  auto key = store->key_for_writing(7);
  ASSERT_TRUE(key);
  store.reset();  // closed: the key is in the write-ahead log or a table file
  ASSERT_TRUE(on_disk(*key));
  store = open();
  auto destroyed = store->destroy(7);
  ASSERT_TRUE(destroyed) << destroyed.error().to_string();
  ASSERT_TRUE(store->destroy(7));  // idempotent
  auto read = store->key_for_reading(7);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code(), make_error_code(KeyErrc::erased));
  auto write = store->key_for_writing(7);
  ASSERT_FALSE(write);
  EXPECT_EQ(write.error().code(), make_error_code(KeyErrc::erased));
  store.reset();
  EXPECT_FALSE(on_disk(*key));
  store = open();
  EXPECT_FALSE(store->key_for_writing(7));  // still erased after a reopen
}

// A sealed message read with a store that never had its sender's key (a data directory restored
// without its keys) fails `missing`, not `erased`: nobody erased anyone.
TEST_F(RocksKeys, AMessageWhoseKeyTheStoreNeverHadIsMissingNotErased) {
  auto store = open();
  fb::EventEnvelopeT e;
  e.stream = "single_1_2";
  e.seq = 1;
  e.event_id = 77;
  e.actor = 1;
  fb::MessageAppendedT m;
  std::string sealed = seal(key_of(9), "hello", {77, "content"});
  m.sealed_content.assign(sealed.begin(), sealed.end());
  e.event.Set(std::move(m));
  std::string bytes = encode_event(e);
  auto read = read_event(bytes);
  ASSERT_TRUE(read);
  auto text = message_text(**read, *(*read)->event_as_MessageAppended(), *store);
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error().code(), make_error_code(KeyErrc::missing)) << text.error().to_string();
  ASSERT_TRUE(store->destroy(1));
  text = message_text(**read, *(*read)->event_as_MessageAppended(), *store);
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error().code(), make_error_code(KeyErrc::erased)) << text.error().to_string();
}

// A registration's and a profile update's personal fields are sealed together (SealedProfile):
// the encoded event holds none of them, open_profile() gives the event back with them (absent
// fields still absent), and once the user's key is destroyed it fails `erased`.
TEST_F(RocksKeys, ProfileFieldsAreSealedAndOpenUntilTheKeyIsDestroyed) {
  auto store = open();
  auto key = store->key_for_writing(9);
  ASSERT_TRUE(key) << key.error().to_string();
  fb::EventEnvelopeT reg;
  reg.event_id = 100;
  reg.stream = "names_3";
  reg.event.Set(fb::UserRegisteredT{{}, 9, "nine", "$argon2id$hash", "Nina Nickname", "nina@example.org", {}});
  fb::ProfileUpdatedT update;
  update.user_id = 9;
  update.signature = "a signature";
  fb::EventEnvelopeT upd;
  upd.event_id = 101;
  upd.stream = "user_9";
  upd.event.Set(update);
  EXPECT_EQ(sealing_owner(reg.event, 0), 9u) << "the new user, not the (absent) actor";
  EXPECT_EQ(sealing_owner(upd.event, 9), 9u);
  seal_fields(*key, reg);
  seal_fields(*key, upd);
  std::string reg_bytes = encode_event(reg), upd_bytes = encode_event(upd);
  for (const char* secret : {"Nina", "nina@", "argon2id", "a signature"}) {
    EXPECT_EQ(reg_bytes.find(secret), std::string::npos) << secret;
    EXPECT_EQ(upd_bytes.find(secret), std::string::npos) << secret;
  }
  EXPECT_NE(reg_bytes.find("nine"), std::string::npos) << "the username stays plain (the engine's name index)";

  auto opened = open_profile(**read_event(reg_bytes), *store);
  ASSERT_TRUE(opened) << opened.error().to_string();
  ASSERT_TRUE(opened->has_value());
  auto* r = (**read_event(**opened)).event_as_UserRegistered();
  EXPECT_EQ(sv(r->nickname()), "Nina Nickname");
  EXPECT_EQ(sv(r->email()), "nina@example.org");
  EXPECT_EQ(sv(r->password_hash()), "$argon2id$hash");
  EXPECT_EQ(r->sealed_profile(), nullptr);
  auto opened_update = open_profile(**read_event(upd_bytes), *store);
  ASSERT_TRUE(opened_update && opened_update->has_value());
  auto* u = (**read_event(**opened_update)).event_as_ProfileUpdated();
  EXPECT_EQ(sv(u->signature()), "a signature");
  EXPECT_EQ(u->nickname(), nullptr) << "an absent field stays absent: unchanged";

  ASSERT_TRUE(store->destroy(9));
  auto gone = open_profile(**read_event(reg_bytes), *store);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), make_error_code(KeyErrc::erased));
  fb::EventEnvelopeT plain;
  plain.event.Set(fb::UserRegisteredT{{}, 10, "ten", "h", "n", "e", {}});
  auto unsealed = open_profile(**read_event(encode_event(plain)), *store);
  ASSERT_TRUE(unsealed);
  EXPECT_FALSE(unsealed->has_value()) << "an event written before 10 is plain already";
}

TEST_F(RocksKeys, ConcurrentWritersOfANewUserGetOneKey) {
  auto store = open();
  std::vector<DataKey> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] {
      auto k = store->key_for_writing(99);
      if (k) got[i] = *k;
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& k : got) EXPECT_EQ(k, got[0]);
}

TEST_F(RocksKeys, TheCacheForgetsADestroyedKey) {
  auto inner = open();
  CachedKeyStore cached(std::move(inner), std::chrono::minutes(10));
  auto key = cached.key_for_writing(3);
  ASSERT_TRUE(key);
  auto read = cached.key_for_reading(3);
  ASSERT_TRUE(read && read->has_value());
  ASSERT_TRUE(cached.destroy(3));
  read = cached.key_for_reading(3);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code(), make_error_code(KeyErrc::erased));
  EXPECT_FALSE(cached.key_for_writing(3));
}


// A store whose reads can be held after they found the key, as a reader on another thread is
// when a destroy comes in between its store read and its cache write.
class HeldReads final : public KeyStore {
 public:
  explicit HeldReads(std::unique_ptr<KeyStore> inner) : inner_(std::move(inner)) {}
  Result<DataKey> key_for_writing(uint64_t user_id) override { return inner_->key_for_writing(user_id); }
  Result<std::optional<DataKey>> key_for_reading(uint64_t user_id) override {
    auto key = inner_->key_for_reading(user_id);
    std::unique_lock lock(mu_);
    read_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !hold_; });
    return key;
  }
  Status destroy(uint64_t user_id) override { return inner_->destroy(user_id); }
  void hold() { hold_ = true; }
  void wait_read() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return read_; });
  }
  void release() {
    std::lock_guard lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }

 private:
  std::unique_ptr<KeyStore> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false, read_ = false;
};

TEST_F(RocksKeys, AReaderRacingADestroyCannotCacheTheKeyAgain) {
  auto held = std::make_unique<HeldReads>(open());
  HeldReads& store = *held;
  ASSERT_TRUE(store.key_for_writing(4));  // in the store, not in the cache
  CachedKeyStore cached(std::move(held), std::chrono::minutes(10));
  store.hold();
  std::thread reader([&] { (void)cached.key_for_reading(4); });
  store.wait_read();  // the reader has the key from the store, not yet in the cache
  ASSERT_TRUE(cached.destroy(4));
  store.release();
  reader.join();
  auto after = cached.key_for_reading(4);
  ASSERT_FALSE(after) << "the racing reader put the destroyed key back in the cache";
  EXPECT_EQ(after.error().code(), make_error_code(KeyErrc::erased));
}

}  // namespace
}  // namespace imlog
