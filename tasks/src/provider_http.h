#pragma once
// One HTTP request of the APNs and FCM providers (apns.cpp, fcm.cpp), by libcurl, and JWT signing
// by libjwt (RS256 for Google's OAuth2 assertion, ES256 for Apple's provider token).

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "imlog/core/result.h"
#include "imlog/tasks/push.h"

namespace imlog::push_http {

enum class Version { http1, http2_tls, http2_prior_knowledge };

struct Response {
  long status = 0;   // 0: no answer (see `error`)
  std::string body;
  int curl_code = 0;  // CURLcode; 0 when answered
  std::string error;  // curl's words when not answered
  bool timed_out = false;
};

// POSTs `body` to `url` with `headers` ("Name: value"); never throws.
Response post(const std::string& url, const std::vector<std::string>& headers, const std::string& body,
              std::chrono::milliseconds timeout, Version version);

// A signed compact JWT: `alg` "RS256" or "ES256", the PEM private key, extra header fields
// (name, value) and string / integer claims.
Result<std::string> sign_jwt(std::string_view alg, const std::string& pem_key,
                             const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::vector<std::pair<std::string, std::string>>& string_claims,
                             const std::vector<std::pair<std::string, long>>& int_claims);

// The outcome of an answer that is no success and no invalid token: 408/429 throttled and 5xx
// retried, no answer retried (timeout or network), any other status rejected.
SendResult classify_failure(const Response& r, std::string_view provider);

// A JSON string literal of `s` (quotes included).
std::string json_quote(std::string_view s);

}  // namespace imlog::push_http
