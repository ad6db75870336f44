// Sealed fields (data_keys.h): seal(), unseal(), and message_text() for the readers of messages.
// Apart from the stores (data_keys.cpp), so that what reads untrusted sealed bytes can be built
// and fuzzed without RocksDB.

#include <cstdlib>
#include <cstring>

#include <sodium.h>

#include "imlog/engine/data_keys.h"

namespace imlog {
namespace {

constexpr unsigned char kSealVersion = 1;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kHeaderBytes = 1 + kNonceBytes;
static_assert(kDataKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);

class KeyCategory final : public std::error_category {
 public:
  [[nodiscard]] const char* name() const noexcept override { return "keys"; }
  [[nodiscard]] std::string message(int c) const override {
    switch (static_cast<KeyErrc>(c)) {
      case KeyErrc::erased: return "erased";
      case KeyErrc::corrupt: return "corrupt";
      case KeyErrc::unavailable: return "unavailable";
      case KeyErrc::missing: return "missing";
    }
    return "unknown";
  }
};

void init_sodium() {
  static const int ready = sodium_init();
  if (ready < 0) std::abort();  // no random source: nothing can be sealed safely
}

// A per-thread nonce: a random 16-byte prefix drawn once, then a counter (XChaCha20's 24-byte
// nonce leaves room for both; a repeat needs two threads drawing the same 128-bit prefix).
struct NonceSource {
  std::array<unsigned char, 16> prefix{};
  uint64_t counter = 0;
  NonceSource() {
    init_sodium();
    randombytes_buf(prefix.data(), prefix.size());
  }
  void next(unsigned char* out) {
    std::memcpy(out, prefix.data(), prefix.size());
    uint64_t c = counter++;
    for (size_t i = 0; i < 8; ++i) out[16 + i] = static_cast<unsigned char>(c >> (8 * i));
  }
};

// The associated data: the event id (8 bytes, little-endian) and the field's name.
std::string associated_data(SealContext ctx) {
  std::string ad(8, '\0');
  for (size_t i = 0; i < 8; ++i) ad[i] = static_cast<char>(ctx.event_id >> (8 * i));
  ad.append(ctx.field);
  return ad;
}

std::string id_str(uint64_t v) { return std::to_string(v); }

}  // namespace

const std::error_category& key_category() {
  static const KeyCategory c;
  return c;
}

std::string seal(const DataKey& key, std::string_view plaintext, SealContext ctx) {
  thread_local NonceSource nonces;
  std::string out(kHeaderBytes + plaintext.size() + kTagBytes, '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = kSealVersion;
  nonces.next(p + 1);
  std::string ad = associated_data(ctx);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(p + kHeaderBytes, &written,
                                             reinterpret_cast<const unsigned char*>(plaintext.data()),
                                             plaintext.size(), reinterpret_cast<const unsigned char*>(ad.data()),
                                             ad.size(), nullptr, p + 1, key.data());
  out.resize(kHeaderBytes + written);
  return out;
}

Result<std::string> unseal(const DataKey& key, std::string_view sealed, SealContext ctx) {
  auto corrupt = [&](std::string_view why) {
    return fail(KeyErrc::corrupt, "sealed field `" + std::string(ctx.field) + "` of event " + id_str(ctx.event_id) +
                                      " " + std::string(why));
  };
  if (sealed.size() < kHeaderBytes + kTagBytes) return corrupt("is too short (" + id_str(sealed.size()) + " bytes)");
  const auto* p = reinterpret_cast<const unsigned char*>(sealed.data());
  if (p[0] != kSealVersion) return corrupt("has unknown format version " + id_str(p[0]));
  std::string ad = associated_data(ctx);
  std::string out(sealed.size() - kHeaderBytes - kTagBytes, '\0');
  unsigned long long n = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(reinterpret_cast<unsigned char*>(out.data()), &n, nullptr,
                                                 p + kHeaderBytes, sealed.size() - kHeaderBytes,
                                                 reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), p + 1,
                                                 key.data()) != 0) {
    return corrupt("does not open with its user's key (damaged, or sealed for another event)");
  }
  out.resize(n);
  return out;
}

Result<DataKey> stored_key(uint64_t user_id, std::string_view bytes) {
  if (bytes.size() != kDataKeyBytes) {
    return fail(KeyErrc::corrupt, "the stored data key of user " + id_str(user_id) + " has " +
                                      id_str(bytes.size()) + " bytes, not " + id_str(kDataKeyBytes));
  }
  DataKey key;
  std::memcpy(key.data(), bytes.data(), key.size());
  return key;
}

Result<std::string> message_text(const fb::EventEnvelope& event, const fb::MessageAppended& message,
                                 KeyStore& keys) {
  const auto* sealed = message.sealed_content();
  if (sealed == nullptr) return std::string(sv(message.content()));
  auto key = keys.key_for_reading(event.actor());
  IMLOG_TRY(key);
  if (!key->has_value()) {
    return fail(KeyErrc::missing, "the key store has no data key of user " + id_str(event.actor()) +
                                      ", who sent message " + id_str(event.event_id()) +
                                      ": it is not the store this log was sealed with (restored without its keys?)");
  }
  std::string_view bytes(reinterpret_cast<const char*>(sealed->data()), sealed->size());
  return unseal(**key, bytes, {event.event_id(), "content"});
}

}  // namespace imlog
