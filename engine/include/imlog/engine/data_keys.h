#pragma once
// Per-user data keys and sealed fields (docs/data-lifecycle.md, "Sealed content and data keys").
//
// Personal content is written to im.events sealed with a data key of the user it belongs to (a
// message's sender): XChaCha20-Poly1305 (libsodium's IETF AEAD), the associated data binding the
// ciphertext to its event and field, so a sealed field cannot be moved to another event or
// field. The keys live outside the log, in a KeyStore; destroying a user's key makes every copy of
// their sealed fields in the log unreadable (crypto-shredding) while the log itself stays
// immutable.
//
// A sealed field: one version byte (1), the 24-byte nonce, then the ciphertext with its 16-byte
// tag. Nonces are a random 16-byte prefix per thread and a 64-bit counter: unique without a
// system call per seal.
//
// A KeyStore hands out a user's key (making and storing it durably first when the user has none,
// so no event is ever sealed with a key that a crash could lose) and destroys it for good: a
// destroyed key is remembered as destroyed and never made again. The stores: open_rocksdb_key_store
// (the single node, beside its data), MySQL (projections/mysql_keys.h, the distributed mode).
// CachedKeyStore keeps the keys read in memory for `ttl`.
//
// Threading: every KeyStore here is thread-safe.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "imlog/core/result.h"
#include "imlog/schema/codec.h"

namespace imlog {

inline constexpr size_t kDataKeyBytes = 32;
using DataKey = std::array<unsigned char, kDataKeyBytes>;

enum class KeyErrc {
  erased = 1,   // the user's key was destroyed: nothing is sealed for them again
  corrupt,      // a sealed field or a stored key does not open or decode
  unavailable,  // the store cannot be reached or failed (retryable)
  missing,      // a sealed field's key was never in this store (a store not the log's own)
};
const std::error_category& key_category();
inline std::error_code make_error_code(KeyErrc e) { return {static_cast<int>(e), key_category()}; }

}  // namespace imlog

template <>
struct std::is_error_code_enum<imlog::KeyErrc> : std::true_type {};

namespace imlog {

// What a sealed field is bound to: the event and the field's name within it.
struct SealContext {
  uint64_t event_id = 0;
  std::string_view field;
};

// `plaintext` sealed with `key` (the format above).
std::string seal(const DataKey& key, std::string_view plaintext, SealContext ctx);
// The plaintext of a sealed field; `corrupt` naming the field when it is not one sealed with this
// key for this event and field.
Result<std::string> unseal(const DataKey& key, std::string_view sealed, SealContext ctx);

// A key as a store keeps it: its 32 bytes; `corrupt` naming the user when there are not 32.
Result<DataKey> stored_key(uint64_t user_id, std::string_view bytes);

class KeyStore {
 public:
  virtual ~KeyStore() = default;
  // The user's key; made, stored and synced first when they have none. Fails `erased` once the
  // user's key was destroyed. Two callers asking at once for a new user's key get the same one.
  virtual Result<DataKey> key_for_writing(uint64_t user_id) = 0;
  // The user's key; none when it was never made (nothing was sealed for them with this store);
  // fails `erased` when it was destroyed.
  virtual Result<std::optional<DataKey>> key_for_reading(uint64_t user_id) = 0;
  // Destroys the user's key for good and remembers that it did. Idempotent.
  virtual Status destroy(uint64_t user_id) = 0;
};

// The single node's store: a RocksDB database in `dir` (created if missing). Writes are synced.
// destroy() also compacts the key's range, so the key's bytes leave the database's files.
Result<std::unique_ptr<KeyStore>> open_rocksdb_key_store(const std::string& dir);

// A cache in front of another store: keys found are kept for `ttl` (at most `capacity` users; past
// it the cache starts over). destroy() forgets the key here for good before destroying it in the
// store (a reader that fetched it just before cannot cache it again); another process's cache
// forgets it at the latest `ttl` later.
class CachedKeyStore final : public KeyStore {
 public:
  CachedKeyStore(std::unique_ptr<KeyStore> store, std::chrono::milliseconds ttl, size_t capacity = 1 << 20);
  ~CachedKeyStore() override;
  Result<DataKey> key_for_writing(uint64_t user_id) override;
  Result<std::optional<DataKey>> key_for_reading(uint64_t user_id) override;
  Status destroy(uint64_t user_id) override;

  struct State;  // private

 private:
  std::unique_ptr<KeyStore> store_;
  std::unique_ptr<State> state_;
};

// The text of a message event: its sealed_content opened with the sender's (the actor's) key,
// or, written before schema 10, its content. Fails `corrupt` when the sealed bytes do not open,
// `erased` when the sender's key was destroyed, `missing` when the store never had it (it is not
// the store this log was sealed with: restored without its keys?), none of them retryable; and as
// the store does when it cannot be read.
Result<std::string> message_text(const fb::EventEnvelope& event, const fb::MessageAppended& message,
                                 KeyStore& keys);

// The user whose data key seals an event's personal fields: a message's sender (the actor), a
// registration's new user, a profile update's user; 0 for an event that has none.
uint64_t sealing_owner(const fb::EventUnion& event, uint64_t actor);

// Seals an event's personal fields with its owner's key, in place (the sequencer, before it
// encodes the event; event_id set): a message's content into sealed_content; a registration's
// password_hash, nickname and email, and a profile update's fields, into sealed_profile (a
// SealedProfile). The plain fields are left empty. Other events are unchanged.
void seal_fields(const DataKey& key, fb::EventEnvelopeT& event);

// A UserRegistered or ProfileUpdated whose sealed_profile is opened with its user's key: the event
// re-encoded with the profile's fields in its plain fields and no sealed_profile. None for any
// other event, or one written before 10 (its fields are plain already). Fails as message_text().
Result<std::optional<std::string>> open_profile(const fb::EventEnvelope& event, KeyStore& keys);

}  // namespace imlog
