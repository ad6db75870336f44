#include "auth.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <atomic>
#include <cstring>

namespace imlog::gw {
namespace {

std::string b64url(std::string_view s) {
  std::string out(sodium_base64_ENCODED_LEN(s.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()), s.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return out;
}

TEST(Tokens, AccessTokenRoundTrips) {
  ManualClock clock;
  TokenService t("0123456789abcdef0123456789abcdef", clock, 900, 86400);
  auto issued = t.issue_access(42);
  auto c = t.verify(issued.token, "access");
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(c->user_id, 42u);
  EXPECT_EQ(c->type, "access");
  EXPECT_EQ(c->expires_at_s, clock.now_ms() / 1000 + 900);
}

TEST(Tokens, RefreshTokenHasAUniqueJti) {
  ManualClock clock;
  TokenService t("0123456789abcdef0123456789abcdef", clock, 900, 86400);
  auto a = t.issue_refresh(7), b = t.issue_refresh(7);
  EXPECT_NE(a.jti, b.jti);
  auto c = t.verify(a.token, "refresh");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->jti, a.jti);
}

// Both tokens of a pair carry the login session; a token issued without one reads as none.
TEST(Tokens, TokensCarryTheirLoginSession) {
  ManualClock clock;
  TokenService t("0123456789abcdef0123456789abcdef", clock, 900, 86400);
  std::string sid = TokenService::new_session_id();
  EXPECT_EQ(sid.size(), 32u);
  EXPECT_NE(sid, TokenService::new_session_id());
  auto access = t.verify(t.issue_access(7, sid).token, "access");
  auto refresh = t.verify(t.issue_refresh(7, sid).token, "refresh");
  ASSERT_TRUE(access && refresh);
  EXPECT_EQ(access->sid, sid);
  EXPECT_EQ(refresh->sid, sid);
  auto none = t.verify(t.issue_access(7).token, "access");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->sid, "");
  auto too_long = t.verify(t.issue_access(7, std::string(65, 's')).token, "access");
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code(), make_error_code(AuthErrc::malformed));
}

TEST(Tokens, ExpiredIsRefusedNamingExpiry) {
  ManualClock clock;
  TokenService t("0123456789abcdef0123456789abcdef", clock, 900, 86400);
  auto issued = t.issue_access(42);
  clock.advance_ms(901'000);
  auto c = t.verify(issued.token, "access");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), make_error_code(AuthErrc::expired));
  EXPECT_NE(c.error().message().find("expired"), std::string::npos);
}

TEST(Tokens, ForgedSignatureIsRefused) {
  ManualClock clock;
  TokenService mine("0123456789abcdef0123456789abcdef", clock, 900, 86400);
  TokenService theirs("ffffffffffffffffffffffffffffffff", clock, 900, 86400);
  auto c = mine.verify(theirs.issue_access(1).token, "access");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), make_error_code(AuthErrc::bad_signature));
  // A payload edited after signing fails the same way.
  auto token = mine.issue_access(1).token;
  auto first = token.find('.'), second = token.find('.', first + 1);
  std::string forged = token.substr(0, first + 1) + b64url(R"({"sub":"2","type":"access","iat":1,"exp":9999999999})") +
                       token.substr(second);
  auto f = mine.verify(forged, "access");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), make_error_code(AuthErrc::bad_signature));
}

TEST(Tokens, AlgNoneIsRefused) {
  ManualClock clock;
  TokenService t("0123456789abcdef0123456789abcdef", clock, 900, 86400);
  std::string none = b64url(R"({"alg":"none","typ":"JWT"})") + "." +
                     b64url(R"({"sub":"1","type":"access","iat":1,"exp":9999999999})") + ".";
  auto c = t.verify(none, "access");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), make_error_code(AuthErrc::wrong_alg));
  EXPECT_NE(c.error().message().find("none"), std::string::npos);
}

TEST(Tokens, WrongTypeAndGarbageAreRefused) {
  ManualClock clock;
  TokenService t("0123456789abcdef0123456789abcdef", clock, 900, 86400);
  auto c = t.verify(t.issue_refresh(1).token, "access");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), make_error_code(AuthErrc::wrong_type));
  EXPECT_EQ(t.verify("not a token", "access").error().code(), make_error_code(AuthErrc::malformed));
  EXPECT_EQ(t.verify("", "access").error().code(), make_error_code(AuthErrc::missing));
  EXPECT_EQ(t.verify("a.b.c", "access").error().code(), make_error_code(AuthErrc::malformed));
}

TEST(Passwords, HashVerifies) {
  PasswordHasher h(crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
  auto hash = h.hash("correct horse");
  ASSERT_TRUE(hash);
  EXPECT_EQ(hash->rfind("$argon2id$", 0), 0u) << *hash;
  EXPECT_TRUE(h.verify(*hash, "correct horse"));
  EXPECT_FALSE(h.verify(*hash, "wrong horse"));
  EXPECT_FALSE(h.verify("garbage", "correct horse"));
}

TEST(Passwords, EveryHashAndVerificationIsCountedTheWastedOneToo) {
  std::atomic<uint64_t> count{0};
  PasswordHasher h(crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN, &count);
  EXPECT_EQ(count.load(), 0u) << "the dummy hash made at construction is not a request's";
  auto hash = h.hash("correct horse");
  ASSERT_TRUE(hash);
  EXPECT_EQ(count.load(), 1u);
  EXPECT_FALSE(h.verify(*hash, "wrong horse"));
  EXPECT_EQ(count.load(), 2u);
  h.waste_verification("wrong horse");
  EXPECT_EQ(count.load(), 3u) << "an unknown user costs one verification, like a wrong password";
}

TEST(Passwords, UsernameDigestKeepsNoName) {
  auto d = username_digest("alice");
  EXPECT_EQ(d.size(), 32u);
  EXPECT_EQ(d.find("alice"), std::string::npos);
  EXPECT_EQ(d, username_digest("alice"));
  EXPECT_NE(d, username_digest("Alice"));
  EXPECT_NE(d, username_digest("alice "));
}

TEST(RevokedTokens, RemembersUntilPruned) {
  RevokedTokens r;
  r.add("a", 1000, 0);
  EXPECT_TRUE(r.contains("a"));
  EXPECT_FALSE(r.contains("b"));
}

}  // namespace
}  // namespace imlog::gw
