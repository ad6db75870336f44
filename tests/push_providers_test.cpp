// The FCM HTTP v1 and APNs providers (tasks/include/imlog/tasks/push.h) against real local
// servers that check the exact request — method, path, headers, the JWT's header, claims and
// signature (verified here with OpenSSL against the public half of a key made for the test), the
// body — and answer success, a retryable error, an invalid token and a time-out:
//
//   - FCM over HTTP/1.1 (HttpReceiver): the OAuth2 token endpoint (an RS256 JWT assertion of the
//     service account) and messages:send with the access token, which is cached;
//   - APNs over HTTP/2 cleartext with prior knowledge (H2Receiver, nghttp2): /3/device/<token>
//     with an ES256 provider token, apns-topic, apns-push-type, apns-collapse-id.

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <rapidjson/document.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <regex>
#include <string>

#include "imlog/core/clock.h"
#include "imlog/tasks/push.h"
#include "imlog/testing/h2_receiver.h"
#include "imlog/testing/http_receiver.h"
#include "imlog/testing/support.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
namespace t = imlog::testing;

constexpr int64_t kNowMs = 1'764'756'000'000;

// ---- keys and JWTs, by OpenSSL ----------------------------------------------------------------

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string private_pem(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

std::string base64url_decode(std::string s) {
  for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (s.size() % 4) s.push_back('=');
  std::string out(s.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                          static_cast<int>(s.size()));
  if (n < 0) return "";
  size_t pad = s.size() - s.find_last_not_of('=') - 1;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

struct Jwt {
  rapidjson::Document header, claims;
  bool signature_ok = false;
};

// Splits and checks a compact JWT: RS256 signatures as PKCS#1 v1.5, ES256 ones as the raw r||s
// JWA (RFC 7518 §3.4) asks for, re-encoded as DER for OpenSSL.
Jwt verify_jwt(const std::string& token, EVP_PKEY* key, bool es256) {
  Jwt out;
  auto a = token.find('.'), b = token.rfind('.');
  if (a == std::string::npos || a == b) return out;
  out.header.Parse(base64url_decode(token.substr(0, a)).c_str());
  out.claims.Parse(base64url_decode(token.substr(a + 1, b - a - 1)).c_str());
  std::string sig = base64url_decode(token.substr(b + 1)), input = token.substr(0, b);
  if (es256) {
    if (sig.size() != 64) return out;
    ECDSA_SIG* s = ECDSA_SIG_new();
    ECDSA_SIG_set0(s, BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), 32, nullptr),
                   BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + 32, 32, nullptr));
    unsigned char* der = nullptr;
    int n = i2d_ECDSA_SIG(s, &der);
    sig.assign(reinterpret_cast<char*>(der), static_cast<size_t>(n));
    OPENSSL_free(der);
    ECDSA_SIG_free(s);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  out.signature_ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
                     EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                      reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return out;
}

std::string str(const rapidjson::Value& v, const char* name) {
  return v.IsObject() && v.HasMember(name) && v[name].IsString() ? v[name].GetString() : "<absent>";
}
int64_t num(const rapidjson::Value& v, const char* name) {
  return v.IsObject() && v.HasMember(name) && v[name].IsInt64() ? v[name].GetInt64() : -1;
}

std::string form_value(const std::string& body, const std::string& name) {
  auto at = body.find(name + "=");
  if (at == std::string::npos) return "";
  at += name.size() + 1;
  return body.substr(at, body.find('&', at) - at);
}

PushNotification notification(std::string platform, std::string token, std::string key = "2/single_1_2/7/20") {
  PushNotification n;
  n.user_id = 2;
  n.device = DeviceView{20, std::move(platform), std::move(token), "", 0};
  n.key = std::move(key);
  n.conversation_id = "single_1_2";
  n.seq = 9;
  n.sender_id = 1;
  n.sender_nickname = "Ann \"A\"";
  n.preview = "see you at 8…";
  n.badge = 5;
  n.collapsed = 3;
  return n;
}

// ---- FCM --------------------------------------------------------------------------------------

class PushFcm : public ::testing::Test {
 protected:
  void SetUp() override {
    key_.reset(EVP_RSA_gen(2048));
    ASSERT_TRUE(key_);
    std::string token_uri = "http://127.0.0.1:" + std::to_string(server_.port()) + "/token";
    account_ = dir_.str() + "/service-account.json";
    rapidjson::Document d;
    std::ofstream(account_) << "{\"type\":\"service_account\",\"project_id\":\"proj-1\",\"private_key_id\":\"key-1\","
                            << "\"private_key\":" << quote(private_pem(key_.get()))
                            << ",\"client_email\":\"push@proj-1.iam.gserviceaccount.com\",\"token_uri\":\"" << token_uri
                            << "\"}";
  }

  static std::string quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) out += c == '\n' ? std::string("\\n") : std::string(1, c);
    return out + "\"";
  }

  // The token endpoint checks the assertion; messages:send answers by the device's token.
  t::HttpAnswer answer(const std::string& req) {
    std::string body = t::HttpReceiver::body(req);
    if (req.starts_with("POST /token HTTP/1.1\r\n")) {
      tokens_asked_++;
      if (form_value(body, "grant_type") != "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") return {400};
      auto jwt = verify_jwt(form_value(body, "assertion"), key_.get(), false);
      bool ok = jwt.signature_ok && str(jwt.header, "alg") == "RS256" && str(jwt.header, "kid") == "key-1" &&
                str(jwt.claims, "iss") == "push@proj-1.iam.gserviceaccount.com" &&
                str(jwt.claims, "scope") == "https://www.googleapis.com/auth/firebase.messaging" &&
                str(jwt.claims, "aud") == "http://127.0.0.1:" + std::to_string(server_.port()) + "/token" &&
                num(jwt.claims, "iat") == clock_.now_ms() / 1000 && num(jwt.claims, "exp") == num(jwt.claims, "iat") + 3600;
      if (!ok) return {401, R"({"error":"invalid_grant"})"};
      return {200, R"({"access_token":"ya29.local-)" + std::to_string(tokens_asked_) +
                       R"(","expires_in":3599,"token_type":"Bearer"})"};
    }
    if (!req.starts_with("POST /v1/projects/proj-1/messages:send HTTP/1.1\r\n")) return {404};
    if (!t::HttpReceiver::header(req, "Authorization").starts_with("Bearer ya29.local-")) return {401};
    rapidjson::Document m;
    m.Parse(body.c_str());
    if (m.HasParseError() || !m.HasMember("message")) return {400, R"({"error":{"status":"INVALID_ARGUMENT"}})"};
    std::string token = str(m["message"], "token");
    if (token == "tok-ok") return {200, R"({"name":"projects/proj-1/messages/0:1"})"};
    if (token == "tok-gone") {
      return {404, R"({"error":{"code":404,"status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED"}]}})"};
    }
    if (token == "tok-busy") return {503, R"({"error":{"status":"UNAVAILABLE"}})"};
    if (token == "tok-hang") return {200, "", 3s};
    if (token == "tok-401") return {401, R"({"error":{"status":"UNAUTHENTICATED"}})"};
    return {400, R"({"error":{"status":"INVALID_ARGUMENT","message":"The registration token is not a valid FCM registration token"}})"};
  }

  std::unique_ptr<PushProvider> provider() {
    auto p = make_fcm_provider(FcmOptions{account_, "http://127.0.0.1:" + std::to_string(server_.port()), "", 1s}, clock_);
    EXPECT_TRUE(p) << p.error().to_string();
    return p ? std::move(*p) : nullptr;
  }

  ManualClock clock_{kNowMs};
  std::atomic<int> tokens_asked_{0};
  t::TempDir dir_{"imlog-push-fcm"};
  std::string account_;
  Pkey key_;
  t::HttpReceiver server_{[this](const std::string& req) { return answer(req); }};
};

TEST_F(PushFcm, SendsWithAnAccessTokenFromTheServiceAccountsJwt) {
  auto fcm = provider();
  ASSERT_TRUE(fcm);
  auto n = notification("fcm", "tok-ok");
  auto r = fcm->send(n);
  ASSERT_EQ(r.outcome, SendOutcome::sent) << r.detail;
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_TRUE(reqs[0].starts_with("POST /token HTTP/1.1\r\n")) << reqs[0];
  EXPECT_EQ(t::HttpReceiver::header(reqs[0], "Content-Type"), "application/x-www-form-urlencoded");
  EXPECT_TRUE(reqs[1].starts_with("POST /v1/projects/proj-1/messages:send HTTP/1.1\r\n")) << reqs[1];
  EXPECT_EQ(t::HttpReceiver::header(reqs[1], "Authorization"), "Bearer ya29.local-1");
  EXPECT_EQ(t::HttpReceiver::header(reqs[1], "Content-Type"), "application/json; charset=utf-8");
  std::string body = t::HttpReceiver::body(reqs[1]);
  EXPECT_EQ(body, fcm_message_json(n));
  rapidjson::Document m;
  m.Parse(body.c_str());
  ASSERT_FALSE(m.HasParseError()) << body;
  const auto& msg = m["message"];
  EXPECT_EQ(str(msg, "token"), "tok-ok");
  EXPECT_EQ(str(msg["notification"], "title"), "Ann \"A\"");
  EXPECT_EQ(str(msg["notification"], "body"), "see you at 8…");
  EXPECT_EQ(str(msg["data"], "key"), n.key) << "the idempotency key travels with the message";
  EXPECT_EQ(str(msg["data"], "conversation_id"), "single_1_2");
  EXPECT_EQ(str(msg["data"], "seq"), "9") << "FCM data values are strings";
  EXPECT_EQ(str(msg["data"], "badge"), "5");
  EXPECT_EQ(str(msg["android"], "collapse_key"), n.key);

  // The access token is kept: the next send asks for none, until it nears its expiry.
  ASSERT_EQ(fcm->send(n).outcome, SendOutcome::sent);
  EXPECT_EQ(tokens_asked_, 1);
  clock_.advance_ms(3'599'000 - 59'000);
  ASSERT_EQ(fcm->send(n).outcome, SendOutcome::sent);
  EXPECT_EQ(tokens_asked_, 2) << "a new token within a minute of the old one's expiry";
  EXPECT_EQ(t::HttpReceiver::header(server_.requests().back(), "Authorization"), "Bearer ya29.local-2");
}

TEST_F(PushFcm, EachAnswerHasItsOutcome) {
  auto fcm = provider();
  ASSERT_TRUE(fcm);
  struct Case {
    std::string token;
    SendOutcome outcome;
    PushFailure reason;
  };
  for (const auto& c : std::vector<Case>{{"tok-gone", SendOutcome::invalid_token, PushFailure::invalid_token},
                                         {"tok-bad", SendOutcome::invalid_token, PushFailure::invalid_token},
                                         {"tok-busy", SendOutcome::retry, PushFailure::server_error},
                                         {"tok-hang", SendOutcome::retry, PushFailure::timeout},
                                         {"tok-401", SendOutcome::retry, PushFailure::auth},
                                         {"tok-ok", SendOutcome::sent, PushFailure::none}}) {
    auto r = fcm->send(notification("fcm", c.token));
    EXPECT_EQ(r.outcome, c.outcome) << c.token << ": " << r.detail;
    EXPECT_EQ(r.reason, c.reason) << c.token << ": " << push_failure_name(r.reason);
  }
  EXPECT_EQ(tokens_asked_, 2) << "a 401 drops the access token: the next send takes a new one";
}

TEST_F(PushFcm, ABadServiceAccountIsNamedAtStart) {
  auto missing = make_fcm_provider(FcmOptions{dir_.str() + "/nope.json", "http://127.0.0.1:1", "", 1s});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("nope.json"), std::string::npos) << missing.error().message();
  std::string no_email = dir_.str() + "/no-email.json";
  std::ofstream(no_email) << R"({"project_id":"p","private_key":"x","token_uri":"http://127.0.0.1:1/t"})";
  auto r = make_fcm_provider(FcmOptions{no_email, "http://127.0.0.1:1", "", 1s});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("`client_email`"), std::string::npos) << r.error().message();
  std::string bad_key = dir_.str() + "/bad-key.json";
  std::ofstream(bad_key) << R"({"project_id":"p","client_email":"e","private_key":"not a key","token_uri":"http://127.0.0.1:1/t"})";
  r = make_fcm_provider(FcmOptions{bad_key, "http://127.0.0.1:1", "", 1s});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("private_key"), std::string::npos) << r.error().message();
}

// ---- APNs -------------------------------------------------------------------------------------

const std::string kOk = std::string(64, 'a'), kGone = std::string(64, 'b'), kBad = std::string(64, 'c'),
                  kBusy = std::string(64, 'd'), kHang = std::string(64, 'e'), kExpired = std::string(64, 'f');

class PushApns : public ::testing::Test {
 protected:
  void SetUp() override {
    key_.reset(EVP_EC_gen("P-256"));
    ASSERT_TRUE(key_);
    key_file_ = dir_.str() + "/AuthKey_KEY1234567.p8";
    std::ofstream(key_file_) << private_pem(key_.get());
  }

  t::H2Answer answer(const t::H2Request& req) {
    if (req.method != "POST" || !req.path.starts_with("/3/device/")) return {404};
    auto auth = req.headers.count("authorization") ? req.headers.at("authorization") : "";
    if (!auth.starts_with("bearer ")) return {403, R"({"reason":"MissingProviderToken"})"};
    std::string token = req.path.substr(10);
    if (token == kOk) return {200};
    if (token == kGone) return {410, R"({"reason":"Unregistered","timestamp":1764756000000})"};
    if (token == kBad) return {400, R"({"reason":"BadDeviceToken"})"};
    if (token == kBusy) return {503, R"({"reason":"ServiceUnavailable"})"};
    if (token == kHang) return {200, "", 3s};
    if (token == kExpired) return {403, R"({"reason":"ExpiredProviderToken"})"};
    return {400, R"({"reason":"BadPath"})"};
  }

  std::unique_ptr<PushProvider> provider() {
    auto p = make_apns_provider(ApnsOptions{key_file_, "KEY1234567", "TEAM123456", "com.example.chat",
                                            "http://127.0.0.1:" + std::to_string(server_.port()), true, 1s},
                                clock_);
    EXPECT_TRUE(p) << p.error().to_string();
    return p ? std::move(*p) : nullptr;
  }

  ManualClock clock_{kNowMs};
  t::TempDir dir_{"imlog-push-apns"};
  std::string key_file_;
  Pkey key_;
  t::H2Receiver server_{[this](const t::H2Request& r) { return answer(r); }};
};

TEST_F(PushApns, SendsOverHttp2WithAnEs256ProviderToken) {
  auto apns = provider();
  ASSERT_TRUE(apns);
  auto n = notification("apns", kOk);
  auto r = apns->send(n);
  ASSERT_EQ(r.outcome, SendOutcome::sent) << r.detail;
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u) << "HTTP/2 with prior knowledge: the h2c server got it";
  const auto& q = reqs[0];
  EXPECT_EQ(q.method, "POST");
  EXPECT_EQ(q.path, "/3/device/" + kOk);
  auto jwt = verify_jwt(q.headers.at("authorization").substr(7), key_.get(), true);
  EXPECT_TRUE(jwt.signature_ok) << "the ES256 signature verifies against the key's public half";
  EXPECT_EQ(str(jwt.header, "alg"), "ES256");
  EXPECT_EQ(str(jwt.header, "kid"), "KEY1234567");
  EXPECT_EQ(str(jwt.claims, "iss"), "TEAM123456");
  EXPECT_EQ(num(jwt.claims, "iat"), kNowMs / 1000);
  EXPECT_EQ(q.headers.at("apns-topic"), "com.example.chat");
  EXPECT_EQ(q.headers.at("apns-push-type"), "alert");
  EXPECT_EQ(q.headers.at("apns-priority"), "10");
  EXPECT_EQ(q.headers.at("apns-collapse-id"), n.key) << "the idempotency key collapses repeats on the device";
  EXPECT_EQ(q.headers.at("apns-id"), apns_id(n.key));
  EXPECT_TRUE(std::regex_match(q.headers.at("apns-id"), std::regex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")));
  EXPECT_EQ(q.body, apns_payload_json(n));
  rapidjson::Document b;
  b.Parse(q.body.c_str());
  ASSERT_FALSE(b.HasParseError()) << q.body;
  EXPECT_EQ(str(b["aps"]["alert"], "title"), "Ann \"A\"");
  EXPECT_EQ(str(b["aps"]["alert"], "body"), "see you at 8…");
  EXPECT_EQ(num(b["aps"], "badge"), 5);
  EXPECT_EQ(str(b["aps"], "thread-id"), "single_1_2");
  EXPECT_EQ(str(b["imlog"], "key"), n.key);

  // The provider token is reused for 40 minutes, then a new one is signed.
  auto other_app = notification("apns", kOk, "2/group_1234567890123/1234567890/98765432109876543210/abc");
  other_app.device.app_id = "com.example.other";
  ASSERT_EQ(apns->send(other_app).outcome, SendOutcome::sent);
  reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].headers.at("authorization"), reqs[0].headers.at("authorization"));
  EXPECT_EQ(reqs[1].headers.at("apns-topic"), "com.example.other") << "the device's app_id names its topic";
  EXPECT_LE(reqs[1].headers.at("apns-collapse-id").size(), 64u) << "APNs takes at most 64 bytes";
  EXPECT_EQ(reqs[1].headers.at("apns-collapse-id"), apns_collapse_id(other_app.key));
  clock_.advance_ms(40 * 60 * 1000);
  ASSERT_EQ(apns->send(n).outcome, SendOutcome::sent);
  auto renewed = verify_jwt(server_.requests().back().headers.at("authorization").substr(7), key_.get(), true);
  EXPECT_TRUE(renewed.signature_ok);
  EXPECT_EQ(num(renewed.claims, "iat"), kNowMs / 1000 + 40 * 60);
}

TEST_F(PushApns, EachAnswerHasItsOutcome) {
  auto apns = provider();
  ASSERT_TRUE(apns);
  struct Case {
    std::string token;
    SendOutcome outcome;
    PushFailure reason;
  };
  for (const auto& c : std::vector<Case>{{kGone, SendOutcome::invalid_token, PushFailure::invalid_token},
                                         {kBad, SendOutcome::invalid_token, PushFailure::invalid_token},
                                         {kBusy, SendOutcome::retry, PushFailure::server_error},
                                         {kHang, SendOutcome::retry, PushFailure::timeout},
                                         {kExpired, SendOutcome::retry, PushFailure::auth},
                                         {kOk, SendOutcome::sent, PushFailure::none}}) {
    auto r = apns->send(notification("apns", c.token));
    EXPECT_EQ(r.outcome, c.outcome) << c.token.substr(0, 1) << ": " << r.detail;
    EXPECT_EQ(r.reason, c.reason) << c.token.substr(0, 1) << ": " << push_failure_name(r.reason);
  }
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 6u);
  EXPECT_NE(reqs[5].headers.at("authorization"), reqs[4].headers.at("authorization"))
      << "ExpiredProviderToken: a new provider token is signed";
}

TEST_F(PushApns, ABadKeyOrMissingSettingIsNamedAtStart) {
  auto missing = make_apns_provider(ApnsOptions{dir_.str() + "/none.p8", "K", "T", "com.x", "http://127.0.0.1:1", true, 1s});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("none.p8"), std::string::npos);
  std::string rsa_file = dir_.str() + "/rsa.p8";
  Pkey rsa(EVP_RSA_gen(2048));
  std::ofstream(rsa_file) << private_pem(rsa.get());
  auto wrong = make_apns_provider(ApnsOptions{rsa_file, "K", "T", "com.x", "http://127.0.0.1:1", true, 1s});
  ASSERT_FALSE(wrong) << "an RSA key cannot sign ES256";
  auto no_team = make_apns_provider(ApnsOptions{key_file_, "K", "", "com.x", "http://127.0.0.1:1", true, 1s});
  ASSERT_FALSE(no_team);
  EXPECT_NE(no_team.error().message().find("team_id"), std::string::npos);
}

}  // namespace
}  // namespace imlog
