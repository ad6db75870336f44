// The APNs provider (push.h): HTTP/2 (libcurl through nghttp2) to Apple's provider API with
// token-based authentication: an ES256 JWT {iss: team, iat} with the key id in its header,
// signed by libjwt, reused for 40 minutes (Apple refuses one older than an hour and more than one
// new one per 20 minutes).
#include <openssl/sha.h>

#include <fstream>
#include <mutex>
#include <sstream>

#include "imlog/tasks/push.h"
#include "provider_http.h"

namespace imlog {
namespace {

using push_http::json_quote;

constexpr int64_t kProviderTokenMs = 40 * 60 * 1000;

std::string sha256_hex(std::string_view s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

class ApnsProvider final : public PushProvider {
 public:
  ApnsProvider(ApnsOptions options, std::string key, const Clock& clock)
      : options_(std::move(options)), key_(std::move(key)), clock_(clock) {}

  SendResult send(const PushNotification& n) override {
    std::string jwt;
    if (auto r = provider_token(jwt); r.outcome != SendOutcome::sent) return r;
    std::string topic = n.device.app_id.empty() ? options_.topic : n.device.app_id;
    auto version = options_.prior_knowledge ? push_http::Version::http2_prior_knowledge : push_http::Version::http2_tls;
    auto answer = push_http::post(options_.endpoint + "/3/device/" + n.device.token,
                                  {"authorization: bearer " + jwt, "apns-topic: " + topic, "apns-push-type: alert",
                                   "apns-priority: 10", "apns-collapse-id: " + apns_collapse_id(n.key),
                                   "apns-id: " + apns_id(n.key), "content-type: application/json"},
                                  apns_payload_json(n), options_.timeout, version);
    if (answer.status == 200) return {SendOutcome::sent, "", PushFailure::none};
    // 410 Unregistered; 400 BadDeviceToken or DeviceTokenNotForTopic: no use sending it again.
    if (answer.status == 410 || (answer.status == 400 && (answer.body.find("BadDeviceToken") != std::string::npos ||
                                                          answer.body.find("DeviceTokenNotForTopic") != std::string::npos))) {
      return {SendOutcome::invalid_token, "apns: HTTP " + std::to_string(answer.status) + " " + answer.body.substr(0, 200),
              PushFailure::invalid_token};
    }
    if (answer.status == 403 && (answer.body.find("ExpiredProviderToken") != std::string::npos ||
                                 answer.body.find("InvalidProviderToken") != std::string::npos)) {
      std::lock_guard lock(mu_);
      jwt_.clear();  // a new one next time
      return {SendOutcome::retry, "apns: HTTP 403 " + answer.body.substr(0, 200), PushFailure::auth};
    }
    return push_http::classify_failure(answer, "apns");
  }

 private:
  SendResult provider_token(std::string& out) {
    std::lock_guard lock(mu_);
    int64_t now = clock_.now_ms();
    if (jwt_.empty() || now - jwt_issued_ms_ >= kProviderTokenMs) {
      auto jwt = push_http::sign_jwt("ES256", key_, {{"kid", options_.key_id}}, {{"iss", options_.team_id}},
                                     {{"iat", static_cast<long>(now / 1000)}});
      if (!jwt) return {SendOutcome::failed, "apns: " + jwt.error().message(), PushFailure::auth};
      jwt_ = std::move(*jwt);
      jwt_issued_ms_ = now;
    }
    out = jwt_;
    return {SendOutcome::sent, "", PushFailure::none};
  }

  ApnsOptions options_;
  std::string key_;
  const Clock& clock_;
  std::mutex mu_;
  std::string jwt_;
  int64_t jwt_issued_ms_ = 0;
};

}  // namespace

std::string apns_collapse_id(std::string_view key) {
  if (key.size() <= 64) return std::string(key);
  return "h:" + sha256_hex(key).substr(0, 62);  // apns-collapse-id holds at most 64 bytes
}

std::string apns_id(std::string_view key) {
  std::string h = sha256_hex(key);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20, 12);
}

std::string apns_payload_json(const PushNotification& n) {
  std::string out = "{\"aps\":{\"alert\":{\"title\":" + json_quote(n.sender_nickname);
  if (!n.preview.empty()) out += ",\"body\":" + json_quote(n.preview);
  out += "},\"badge\":" + std::to_string(n.badge) + ",\"sound\":\"default\",\"thread-id\":" +
         json_quote(n.conversation_id) + "},\"imlog\":" + push_payload_json(n) + "}";
  return out;
}

Result<std::unique_ptr<PushProvider>> make_apns_provider(ApnsOptions options, const Clock& clock) {
  std::ifstream in(options.key_file);
  if (!in) return fail(std::errc::no_such_file_or_directory, "cannot read the APNs key file " + options.key_file);
  std::stringstream key;
  key << in.rdbuf();
  if (options.key_id.empty() || options.team_id.empty() || options.topic.empty()) {
    return fail(std::errc::invalid_argument, "APNs needs key_id, team_id and topic");
  }
  auto probe = push_http::sign_jwt("ES256", key.str(), {{"kid", options.key_id}}, {{"iss", options.team_id}}, {});
  if (!probe) return fail(std::errc::invalid_argument, "the APNs key " + options.key_file + ": " + probe.error().message());
  return std::unique_ptr<PushProvider>(std::make_unique<ApnsProvider>(std::move(options), key.str(), clock));
}

}  // namespace imlog
