// The FCM HTTP v1 provider (push.h): an OAuth2 access token from a service account's RS256 JWT
// assertion (cached until a minute before it expires), then one messages:send per notification.
#include <rapidjson/document.h>

#include <fstream>
#include <mutex>
#include <sstream>

#include "imlog/tasks/push.h"
#include "provider_http.h"

namespace imlog {
namespace {

using push_http::json_quote;

constexpr std::string_view kFcmScope = "https://www.googleapis.com/auth/firebase.messaging";

struct ServiceAccount {
  std::string client_email, private_key, private_key_id, project_id, token_uri;
};

Result<ServiceAccount> read_service_account(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(std::errc::no_such_file_or_directory, "cannot read the FCM service account file " + path);
  std::stringstream text;
  text << in.rdbuf();
  rapidjson::Document d;
  d.Parse(text.str().c_str());
  if (d.HasParseError() || !d.IsObject()) {
    return fail(std::errc::invalid_argument, "the FCM service account file " + path + " is not a JSON object");
  }
  ServiceAccount a;
  auto field = [&](const char* name, std::string& out, bool required) -> Status {
    auto it = d.FindMember(name);
    if (it != d.MemberEnd() && it->value.IsString()) out = it->value.GetString();
    if (required && out.empty()) {
      return fail(std::errc::invalid_argument, "the FCM service account file " + path + " has no `" + name + "`");
    }
    return {};
  };
  IMLOG_TRY(field("client_email", a.client_email, true));
  IMLOG_TRY(field("private_key", a.private_key, true));
  IMLOG_TRY(field("project_id", a.project_id, true));
  IMLOG_TRY(field("private_key_id", a.private_key_id, false));
  IMLOG_TRY(field("token_uri", a.token_uri, false));
  return a;
}

std::string form_escape(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

class FcmProvider final : public PushProvider {
 public:
  FcmProvider(FcmOptions options, ServiceAccount account, const Clock& clock)
      : options_(std::move(options)), account_(std::move(account)), clock_(clock) {
    if (!options_.token_uri.empty()) account_.token_uri = options_.token_uri;
  }

  SendResult send(const PushNotification& n) override {
    std::string token;
    if (auto r = access_token(token); r.outcome != SendOutcome::sent) return r;
    auto answer = push_http::post(options_.endpoint + "/v1/projects/" + account_.project_id + "/messages:send",
                                  {"Authorization: Bearer " + token, "Content-Type: application/json; charset=utf-8"},
                                  fcm_message_json(n), options_.timeout, push_http::Version::http1);
    if (answer.status >= 200 && answer.status < 300) return {SendOutcome::sent, "", PushFailure::none};
    // UNREGISTERED (404), a token FCM does not know as one (400 naming the token), or a token of
    // another sender (403 SENDER_ID_MISMATCH): the device is gone for this project.
    if (answer.status == 404 || (answer.status == 400 && answer.body.find("UNREGISTERED") != std::string::npos) ||
        (answer.status == 400 && answer.body.find("registration token") != std::string::npos) ||
        (answer.status == 403 && answer.body.find("SENDER_ID_MISMATCH") != std::string::npos)) {
      return {SendOutcome::invalid_token, "fcm: HTTP " + std::to_string(answer.status) + " " + answer.body.substr(0, 300),
              PushFailure::invalid_token};
    }
    if (answer.status == 401) {  // the access token was refused: a new one next time
      std::lock_guard lock(mu_);
      token_.clear();
      return {SendOutcome::retry, "fcm: HTTP 401 (access token refused)", PushFailure::auth};
    }
    return push_http::classify_failure(answer, "fcm");
  }

 private:
  // The cached access token, or a new one from the token endpoint.
  SendResult access_token(std::string& out) {
    std::lock_guard lock(mu_);
    int64_t now = clock_.now_ms();
    if (!token_.empty() && now < token_expires_ms_ - 60'000) {
      out = token_;
      return {SendOutcome::sent, "", PushFailure::none};
    }
    long now_s = static_cast<long>(now / 1000);
    std::vector<std::pair<std::string, std::string>> headers;
    if (!account_.private_key_id.empty()) headers.emplace_back("kid", account_.private_key_id);
    auto jwt = push_http::sign_jwt("RS256", account_.private_key, headers,
                                   {{"iss", account_.client_email}, {"scope", std::string(kFcmScope)},
                                    {"aud", account_.token_uri}},
                                   {{"iat", now_s}, {"exp", now_s + 3600}});
    if (!jwt) return {SendOutcome::failed, "fcm: " + jwt.error().message(), PushFailure::auth};
    auto answer = push_http::post(account_.token_uri, {"Content-Type: application/x-www-form-urlencoded"},
                                  "grant_type=" + form_escape("urn:ietf:params:oauth:grant-type:jwt-bearer") +
                                      "&assertion=" + form_escape(*jwt),
                                  options_.timeout, push_http::Version::http1);
    if (answer.status != 200) {
      auto r = push_http::classify_failure(answer, "fcm token endpoint");
      if (r.outcome == SendOutcome::failed) r.reason = PushFailure::auth;  // the key or the account refused
      return r;
    }
    rapidjson::Document d;
    d.Parse(answer.body.c_str());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember("access_token") || !d["access_token"].IsString()) {
      return {SendOutcome::retry, "fcm token endpoint: no access_token in " + answer.body.substr(0, 200),
              PushFailure::server_error};
    }
    token_ = d["access_token"].GetString();
    int64_t ttl_s = d.HasMember("expires_in") && d["expires_in"].IsInt64() ? d["expires_in"].GetInt64() : 3600;
    token_expires_ms_ = now + ttl_s * 1000;
    out = token_;
    return {SendOutcome::sent, "", PushFailure::none};
  }

  FcmOptions options_;
  ServiceAccount account_;
  const Clock& clock_;
  std::mutex mu_;
  std::string token_;
  int64_t token_expires_ms_ = 0;
};

}  // namespace

std::string fcm_message_json(const PushNotification& n) {
  auto str = [](uint64_t v) { return json_quote(std::to_string(v)); };
  std::string out = "{\"message\":{\"token\":" + json_quote(n.device.token);
  out += ",\"notification\":{\"title\":" + json_quote(n.sender_nickname);
  if (!n.preview.empty()) out += ",\"body\":" + json_quote(n.preview);
  out += "},\"data\":{\"key\":" + json_quote(n.key) + ",\"user_id\":" + str(n.user_id) +
         ",\"device_id\":" + str(n.device.device_id) + ",\"conversation_id\":" + json_quote(n.conversation_id) +
         ",\"seq\":" + str(n.seq) + ",\"sender_id\":" + str(n.sender_id) +
         ",\"sender_nickname\":" + json_quote(n.sender_nickname) + ",\"preview\":" + json_quote(n.preview) +
         ",\"badge\":" + str(n.badge) + ",\"collapsed\":" + str(n.collapsed) + "}";
  out += ",\"android\":{\"collapse_key\":" + json_quote(n.key) + ",\"notification\":{\"notification_count\":" +
         std::to_string(n.badge) + "}}";
  out += ",\"apns\":{\"payload\":{\"aps\":{\"badge\":" + std::to_string(n.badge) + "}}}}}";
  return out;
}

Result<std::unique_ptr<PushProvider>> make_fcm_provider(FcmOptions options, const Clock& clock) {
  auto account = read_service_account(options.service_account_file);
  IMLOG_TRY(account);
  if (account->token_uri.empty() && options.token_uri.empty()) {
    return fail(std::errc::invalid_argument,
                "the FCM service account file " + options.service_account_file + " has no `token_uri`");
  }
  // The key must sign: found now rather than at the first push.
  auto probe = push_http::sign_jwt("RS256", account->private_key, {}, {{"iss", "probe"}}, {});
  if (!probe) {
    return fail(std::errc::invalid_argument, "the FCM service account's private_key: " + probe.error().message());
  }
  return std::unique_ptr<PushProvider>(std::make_unique<FcmProvider>(std::move(options), std::move(*account), clock));
}

}  // namespace imlog
