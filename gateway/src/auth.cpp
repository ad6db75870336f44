#include "auth.h"

#include <jwt.h>
#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <memory>

#include <rapidjson/document.h>

namespace imlog::gw {
namespace {

class AuthCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "auth"; }
  std::string message(int c) const override {
    switch (static_cast<AuthErrc>(c)) {
      case AuthErrc::malformed: return "malformed token";
      case AuthErrc::wrong_alg: return "token algorithm not accepted";
      case AuthErrc::bad_signature: return "token signature does not verify";
      case AuthErrc::expired: return "token expired";
      case AuthErrc::wrong_type: return "wrong token type";
      case AuthErrc::missing: return "no token";
      case AuthErrc::erased: return "account erased";
    }
    return "auth error";
  }
};

void ensure_sodium() {
  static const int ok = sodium_init();
  if (ok < 0) std::abort();  // libsodium cannot run without its CSPRNG
}

struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

// The "alg" of a token's header, read before libjwt sees the token, so the reason for a refusal
// is precise ("alg none") and a token without a verifiable signature never reaches verification.
Result<std::string> header_alg(std::string_view token) {
  auto dot = token.find('.');
  if (dot == std::string_view::npos || token.find('.', dot + 1) == std::string_view::npos) {
    return fail(AuthErrc::malformed, "the token is not three dot-separated parts (header.payload.signature)");
  }
  std::string header(dot + 3, '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(header.data()), header.size(), token.data(), dot, nullptr,
                        &len, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return fail(AuthErrc::malformed, "the token's header is not base64url");
  }
  header.resize(len);
  rapidjson::Document d;
  d.Parse(header.data(), header.size());
  if (d.HasParseError() || !d.IsObject()) return fail(AuthErrc::malformed, "the token's header is not a JSON object");
  auto it = d.FindMember("alg");
  if (it == d.MemberEnd() || !it->value.IsString()) return fail(AuthErrc::malformed, "the token's header has no alg");
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

}  // namespace

const std::error_category& auth_category() {
  static const AuthCategory c;
  return c;
}

std::string random_hex(size_t bytes) {
  ensure_sodium();
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  hex.resize(bytes * 2);
  return hex;
}

uint64_t random_u64() {
  ensure_sodium();
  uint64_t v = 0;
  randombytes_buf(&v, sizeof v);
  return v;
}

// ---- TokenService -------------------------------------------------------------------------------

TokenService::TokenService(std::string secret, const Clock& clock, int64_t access_ttl_s, int64_t refresh_ttl_s)
    : secret_(std::move(secret)), clock_(clock), access_ttl_s_(access_ttl_s), refresh_ttl_s_(refresh_ttl_s) {
  ensure_sodium();
}

TokenService::Issued TokenService::issue_access(uint64_t user_id, std::string_view sid) const {
  return issue(user_id, "access", access_ttl_s_, false, sid);
}

TokenService::Issued TokenService::issue_refresh(uint64_t user_id, std::string_view sid) const {
  return issue(user_id, "refresh", refresh_ttl_s_, true, sid);
}

std::string TokenService::new_session_id() { return random_hex(16); }

TokenService::Issued TokenService::issue(uint64_t user_id, std::string_view type, int64_t ttl_s, bool with_jti,
                                         std::string_view sid) const {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) std::abort();  // only fails when out of memory
  JwtPtr j(raw);
  int64_t now_s = clock_.now_ms() / 1000;
  Issued out;
  out.expires_at_ms = (now_s + ttl_s) * 1000;
  jwt_add_grant(j.get(), "sub", std::to_string(user_id).c_str());
  jwt_add_grant(j.get(), "type", std::string(type).c_str());
  jwt_add_grant_int(j.get(), "iat", static_cast<long>(now_s));
  jwt_add_grant_int(j.get(), "exp", static_cast<long>(now_s + ttl_s));
  if (with_jti) {
    out.jti = random_hex(16);
    jwt_add_grant(j.get(), "jti", out.jti.c_str());
  }
  if (!sid.empty()) jwt_add_grant(j.get(), "sid", std::string(sid).c_str());
  jwt_set_alg(j.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret_.data()),
              static_cast<int>(secret_.size()));
  char* s = jwt_encode_str(j.get());
  if (!s) std::abort();
  out.token = s;
  std::free(s);
  return out;
}

Result<TokenClaims> TokenService::verify(std::string_view token, std::string_view type) const {
  if (token.empty()) return fail(AuthErrc::missing, "no token: send `Authorization: Bearer <access_token>`");
  if (token.size() > 4096) return fail(AuthErrc::malformed, "the token is longer than 4096 bytes");
  auto alg = header_alg(token);
  if (!alg) return tl::unexpected(alg.error());
  if (*alg != "HS256") {
    return fail(AuthErrc::wrong_alg, "token algorithm `" + *alg + "` is not accepted: tokens are HS256");
  }
  std::string copy(token);
  jwt_t* raw = nullptr;
  if (jwt_decode(&raw, copy.c_str(), reinterpret_cast<const unsigned char*>(secret_.data()),
                 static_cast<int>(secret_.size())) != 0 ||
      !raw) {
    return fail(AuthErrc::bad_signature, "token signature does not verify (forged, or issued by another server)");
  }
  JwtPtr j(raw);
  if (jwt_get_alg(j.get()) != JWT_ALG_HS256) {
    return fail(AuthErrc::wrong_alg, "token algorithm is not HS256");
  }
  TokenClaims c;
  const char* sub = jwt_get_grant(j.get(), "sub");
  std::string_view sub_sv = sub ? sub : "";
  auto [p, ec] = std::from_chars(sub_sv.data(), sub_sv.data() + sub_sv.size(), c.user_id);
  if (!sub || ec != std::errc() || p != sub_sv.data() + sub_sv.size() || c.user_id == 0) {
    return fail(AuthErrc::malformed, "the token has no valid `sub` (user id)");
  }
  errno = 0;
  c.expires_at_s = jwt_get_grant_int(j.get(), "exp");
  if (errno != 0) return fail(AuthErrc::malformed, "the token has no `exp`");
  c.issued_at_s = jwt_get_grant_int(j.get(), "iat");
  errno = 0;
  if (const char* t = jwt_get_grant(j.get(), "type")) c.type = t;
  if (const char* jti = jwt_get_grant(j.get(), "jti")) c.jti = jti;
  if (const char* sid = jwt_get_grant(j.get(), "sid")) c.sid = sid;
  if (c.sid.size() > 64) return fail(AuthErrc::malformed, "the token's `sid` is longer than 64 bytes");
  if (clock_.now_ms() / 1000 >= c.expires_at_s) {
    return fail(AuthErrc::expired, "token expired at " + std::to_string(c.expires_at_s) + " (Unix s): " +
                                       (type == "access" ? "refresh it at /api/v1/auth/refresh" : "log in again"));
  }
  if (c.type != type) {
    return fail(AuthErrc::wrong_type, "a `" + (c.type.empty() ? std::string("untyped") : c.type) +
                                          "` token where an `" + std::string(type) + "` token belongs");
  }
  if (type == "refresh" && c.jti.empty()) return fail(AuthErrc::malformed, "the refresh token has no `jti`");
  return c;
}

// ---- PasswordHasher -----------------------------------------------------------------------------

PasswordHasher::PasswordHasher(uint64_t ops_limit, uint64_t mem_limit, std::atomic<uint64_t>* count)
    : ops_(ops_limit ? ops_limit : crypto_pwhash_OPSLIMIT_INTERACTIVE),
      mem_(mem_limit ? mem_limit : crypto_pwhash_MEMLIMIT_INTERACTIVE),
      count_(count) {
  ensure_sodium();
  auto h = hash_uncounted(random_hex(16));
  if (h) dummy_hash_ = std::move(*h);
}

Result<std::string> PasswordHasher::hash(std::string_view password) const {
  if (count_) count_->fetch_add(1, std::memory_order_relaxed);
  return hash_uncounted(password);
}

Result<std::string> PasswordHasher::hash_uncounted(std::string_view password) const {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), ops_, static_cast<size_t>(mem_),
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return fail(std::errc::not_enough_memory, "hashing the password ran out of memory", true);
  }
  return std::string(out);
}

bool PasswordHasher::verify(std::string_view hash, std::string_view password) const {
  if (count_) count_->fetch_add(1, std::memory_order_relaxed);
  std::string h(hash);  // NUL-terminated for libsodium
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

void PasswordHasher::waste_verification(std::string_view password) const {
  if (!dummy_hash_.empty()) {
    (void)verify(dummy_hash_, password);
  } else {
    (void)hash(password);  // the start-up hash failed: a fresh one costs the same
  }
}

std::string username_digest(std::string_view username) {
  ensure_sodium();
  unsigned char d[16];
  crypto_generichash(d, sizeof d, reinterpret_cast<const unsigned char*>(username.data()), username.size(), nullptr, 0);
  std::string hex(sizeof d * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), d, sizeof d);
  hex.resize(sizeof d * 2);
  return hex;
}

// ---- RevokedTokens ------------------------------------------------------------------------------

void RevokedTokens::add(std::string jti, int64_t expires_at_ms, int64_t now_ms) {
  std::lock_guard lock(mu_);
  // Keep the set bounded by its live tokens: drop the expired now and then.
  if (ids_.size() >= prune_at_) {
    std::erase_if(ids_, [&](const auto& kv) { return kv.second < now_ms; });
    prune_at_ = std::max<size_t>(4096, ids_.size() * 2);
  }
  ids_[std::move(jti)] = expires_at_ms;
}

bool RevokedTokens::contains(std::string_view jti) const {
  std::lock_guard lock(mu_);
  return ids_.contains(std::string(jti));
}

// ---- ErasedUsers --------------------------------------------------------------------------------

tl::unexpected<Error> erased_account(uint64_t user_id) {
  return fail(AuthErrc::erased, "user " + std::to_string(user_id) + " erased their account");
}

void ErasedUsers::add(uint64_t user_id) {
  std::lock_guard lock(mu_);
  users_.insert(user_id);
  any_.store(true, std::memory_order_release);
}

bool ErasedUsers::contains(uint64_t user_id) const {
  if (!any_.load(std::memory_order_acquire)) return false;
  std::lock_guard lock(mu_);
  return users_.contains(user_id);
}

// ---- RecentRegistrations ------------------------------------------------------------------------

void RecentRegistrations::add(std::string username, uint64_t user_id, std::string password_hash, int64_t now_ms) {
  std::lock_guard lock(mu_);
  std::erase_if(by_name_, [&](const auto& kv) { return now_ms - kv.second.at_ms > kWindowMs; });
  by_name_[std::move(username)] = Entry{user_id, std::move(password_hash), now_ms};
}

bool RecentRegistrations::find(std::string_view username, int64_t now_ms, uint64_t& user_id, std::string& hash) const {
  std::lock_guard lock(mu_);
  auto it = by_name_.find(std::string(username));
  if (it == by_name_.end() || now_ms - it->second.at_ms > kWindowMs) return false;
  user_id = it->second.user_id;
  hash = it->second.hash;
  return true;
}

}  // namespace imlog::gw
