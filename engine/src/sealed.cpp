// Sealed fields (data_keys.h): seal(), unseal(), seal_fields() for the sequencer, and
// message_text() and open_profile() for the readers of messages and profiles.
// Apart from the stores (data_keys.cpp), so that what reads untrusted sealed bytes can be built
// and fuzzed without RocksDB.

#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

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

namespace {

// `sealed`, a field of `event` owned by `user`, opened with their key.
Result<std::string> open_field(const fb::EventEnvelope& event, uint64_t user, const flatbuffers::Vector<uint8_t>& sealed,
                               std::string_view field, KeyStore& keys) {
  auto key = keys.key_for_reading(user);
  IMLOG_TRY(key);
  if (!key->has_value()) {
    return fail(KeyErrc::missing, "the key store has no data key of user " + id_str(user) + ", whose event " +
                                      id_str(event.event_id()) +
                                      " it sealed: it is not the store this log was sealed with (restored without its keys?)");
  }
  std::string_view bytes(reinterpret_cast<const char*>(sealed.data()), sealed.size());
  return unseal(**key, bytes, {event.event_id(), field});
}

std::string encode_profile(const fb::SealedProfileT& profile) {
  flatbuffers::FlatBufferBuilder fbb(256);
  fbb.Finish(fb::SealedProfile::Pack(fbb, &profile));
  return {reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()};
}

Result<fb::SealedProfileT> decode_profile(std::string_view bytes, uint64_t event_id) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (!v.VerifyBuffer<fb::SealedProfile>(nullptr)) {
    return fail(KeyErrc::corrupt, "the sealed profile of event " + id_str(event_id) + " opens but does not decode");
  }
  fb::SealedProfileT out;
  flatbuffers::GetRoot<fb::SealedProfile>(bytes.data())->UnPackTo(&out);
  return out;
}

template <class T>
std::vector<uint8_t> as_bytes(const T& s) {
  return {s.begin(), s.end()};
}

}  // namespace

Result<std::string> message_text(const fb::EventEnvelope& event, const fb::MessageAppended& message,
                                 KeyStore& keys) {
  const auto* sealed = message.sealed_content();
  if (sealed == nullptr) return std::string(sv(message.content()));
  return open_field(event, event.actor(), *sealed, "content", keys);
}

uint64_t sealing_owner(const fb::EventUnion& event, uint64_t actor) {
  if (event.type == fb::Event::MessageAppended) return actor;
  if (const auto* r = event.AsUserRegistered()) return r->user_id;
  if (const auto* p = event.AsProfileUpdated()) return p->user_id;
  return 0;
}

void seal_fields(const DataKey& key, fb::EventEnvelopeT& e) {
  if (auto* m = e.event.AsMessageAppended()) {
    m->sealed_content = as_bytes(seal(key, m->content, {e.event_id, "content"}));
    m->content.clear();
  } else if (auto* r = e.event.AsUserRegistered()) {
    fb::SealedProfileT p;
    p.nickname = std::exchange(r->nickname, {});
    p.email = std::exchange(r->email, {});
    p.password_hash = std::exchange(r->password_hash, {});
    r->sealed_profile = as_bytes(seal(key, encode_profile(p), {e.event_id, "profile"}));
  } else if (auto* u = e.event.AsProfileUpdated()) {
    fb::SealedProfileT p;
    p.nickname = std::exchange(u->nickname, {});
    p.avatar_url = std::exchange(u->avatar_url, {});
    p.signature = std::exchange(u->signature, {});
    p.email = std::exchange(u->email, {});
    u->sealed_profile = as_bytes(seal(key, encode_profile(p), {e.event_id, "profile"}));
  }
}

Result<std::optional<std::string>> open_profile(const fb::EventEnvelope& event, KeyStore& keys) {
  const auto* r = event.event_as_UserRegistered();
  const auto* u = event.event_as_ProfileUpdated();
  const auto* sealed = r ? r->sealed_profile() : u ? u->sealed_profile() : nullptr;
  if (sealed == nullptr) return std::optional<std::string>{};
  auto bytes = open_field(event, r ? r->user_id() : u->user_id(), *sealed, "profile", keys);
  IMLOG_TRY(bytes);
  auto profile = decode_profile(*bytes, event.event_id());
  IMLOG_TRY(profile);
  fb::EventEnvelopeT e;
  event.UnPackTo(&e);
  if (auto* reg = e.event.AsUserRegistered()) {
    reg->nickname = std::move(profile->nickname);
    reg->email = std::move(profile->email);
    reg->password_hash = std::move(profile->password_hash);
    reg->sealed_profile.clear();
  } else if (auto* upd = e.event.AsProfileUpdated()) {
    upd->nickname = std::move(profile->nickname);
    upd->avatar_url = std::move(profile->avatar_url);
    upd->signature = std::move(profile->signature);
    upd->email = std::move(profile->email);
    upd->sealed_profile.clear();
  }
  return std::optional<std::string>(encode_event(e));
}

}  // namespace imlog
