#pragma once
// Authentication pieces of the gateway (gateway/README.md, "Auth"): JWTs (HS256 via libjwt) and
// password hashes (Argon2id via libsodium).
//
//   access token   {sub: "<user id>", type: "access",  iat, exp, sid}       — every API call, /ws
//   refresh token  {sub: "<user id>", type: "refresh", iat, exp, jti, sid}  — /auth/refresh, /logout
//
// `sid` names the login session: a login (or registration) starts one, a refresh keeps it, a
// logout ends it — and with it the push devices registered with its access tokens (schema 7,
// RefreshTokenRevoked.ended_session). Tokens issued before sessions have none.
//
// Refresh tokens rotate: a refresh revokes the presented token by submitting RevokeRefreshToken on
// user_<id> with client_msg_id "rt:<jti>". The engine's dedupe index makes that exactly-once and
// durable: the first revocation is Accepted, any later one (a reuse, a refresh after logout) is a
// Duplicate, so a revoked token is refused on every gateway and across restarts. RevokedTokens is
// only a fast path in front of that.
//
// Threading: TokenService and PasswordHasher are immutable after construction and thread-safe;
// RevokedTokens is thread-safe.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"

namespace imlog::gw {

enum class AuthErrc {
  malformed = 1,   // not three base64url parts of JSON
  wrong_alg,       // alg other than HS256 (including "none")
  bad_signature,   // forged, or signed with another secret
  expired,
  wrong_type,      // a refresh token where an access token belongs, or the reverse
  missing,         // no token presented
  erased,          // the token's user erased their account
};
const std::error_category& auth_category();
inline std::error_code make_error_code(AuthErrc e) { return {static_cast<int>(e), auth_category()}; }

struct TokenClaims {
  uint64_t user_id = 0;
  std::string type;   // access | refresh
  std::string jti;    // refresh tokens only
  std::string sid;    // the login session ("" for a token issued before sessions)
  int64_t issued_at_s = 0;
  int64_t expires_at_s = 0;
};

class TokenService {
 public:
  TokenService(std::string secret, const Clock& clock, int64_t access_ttl_s, int64_t refresh_ttl_s);

  struct Issued {
    std::string token;
    std::string jti;         // refresh tokens
    int64_t expires_at_ms = 0;
  };
  [[nodiscard]] Issued issue_access(uint64_t user_id, std::string_view sid = {}) const;
  [[nodiscard]] Issued issue_refresh(uint64_t user_id, std::string_view sid = {}) const;
  // A new login session's id: 32 random hex digits.
  [[nodiscard]] static std::string new_session_id();
  [[nodiscard]] int64_t access_ttl_s() const { return access_ttl_s_; }

  // Verifies signature, algorithm, expiry and type ("access" or "refresh"). The error's message
  // says why, for the client.
  [[nodiscard]] Result<TokenClaims> verify(std::string_view token, std::string_view type) const;

 private:
  [[nodiscard]] Issued issue(uint64_t user_id, std::string_view type, int64_t ttl_s, bool with_jti,
                             std::string_view sid) const;
  std::string secret_;
  const Clock& clock_;
  int64_t access_ttl_s_;
  int64_t refresh_ttl_s_;
};

class PasswordHasher {
 public:
  // 0: libsodium's interactive limits. `count`, when given, is incremented by every hash and
  // verification (wasted ones included) and must outlive the hasher.
  PasswordHasher(uint64_t ops_limit, uint64_t mem_limit, std::atomic<uint64_t>* count = nullptr);
  // Argon2id in libsodium's string form. Slow (by design): call off the I/O threads.
  [[nodiscard]] Result<std::string> hash(std::string_view password) const;
  [[nodiscard]] bool verify(std::string_view hash, std::string_view password) const;
  // Spends the time of a verification without a real hash, so an unknown username answers as
  // slowly as a wrong password.
  void waste_verification(std::string_view password) const;

 private:
  [[nodiscard]] Result<std::string> hash_uncounted(std::string_view password) const;
  uint64_t ops_;
  uint64_t mem_;
  std::atomic<uint64_t>* count_;
  std::string dummy_hash_;  // of a random password, with ops_ and mem_: a verification as costly as a real one
};

// The login throttle's key of a username: a hex BLAKE2b digest, so the throttle (in memory or in
// Redis) keeps no typed name — nor a password typed into the name field.
std::string username_digest(std::string_view username);

// Refresh token ids known to be revoked, until they expire anyway. A cache in front of the engine's
// dedupe check (see above); fed by this gateway's own revocations and the RefreshTokenRevoked
// pushes it sees.
class RevokedTokens {
 public:
  void add(std::string jti, int64_t expires_at_ms, int64_t now_ms);
  [[nodiscard]] bool contains(std::string_view jti) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, int64_t> ids_;  // jti → expires_at_ms
  size_t prune_at_ = 4096;
};

// Users this gateway saw erased (their UserErased pushed here, or erased through it): their access
// tokens are refused here from then on, though still unexpired. Another gateway that never saw it
// refuses them once they expire (auth.access_ttl); every write of an erased user is refused by
// the engine (their user stream takes no command, their data key is gone). Not persisted.
// The error for a token of an erased user.
tl::unexpected<Error> erased_account(uint64_t user_id);

class ErasedUsers {
 public:
  void add(uint64_t user_id);
  [[nodiscard]] bool contains(uint64_t user_id) const;

 private:
  mutable std::mutex mu_;
  std::unordered_set<uint64_t> users_;
  std::atomic<bool> any_{false};  // asked on every request and frame: no lock while none is known
};

// Registrations this gateway saw accepted in the last few minutes, so a login right after a
// register succeeds before the read model has projected the new user.
class RecentRegistrations {
 public:
  void add(std::string username, uint64_t user_id, std::string password_hash, int64_t now_ms);
  // (user id, hash) when registered here within the window.
  [[nodiscard]] bool find(std::string_view username, int64_t now_ms, uint64_t& user_id, std::string& hash) const;

 private:
  static constexpr int64_t kWindowMs = 5 * 60 * 1000;
  struct Entry {
    uint64_t user_id;
    std::string hash;
    int64_t at_ms;
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> by_name_;
};

// Random identifiers from libsodium's CSPRNG.
std::string random_hex(size_t bytes);
uint64_t random_u64();

}  // namespace imlog::gw

template <>
struct std::is_error_code_enum<imlog::gw::AuthErrc> : std::true_type {};
