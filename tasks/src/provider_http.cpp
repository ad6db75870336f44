#include "provider_http.h"

#include <curl/curl.h>
#include <jwt.h>

#include <cstdio>
#include <memory>
#include <mutex>

namespace imlog::push_http {
namespace {

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};

}  // namespace

Response post(const std::string& url, const std::vector<std::string>& headers, const std::string& body,
              std::chrono::milliseconds timeout, Version version) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  Response out;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) {
    out.curl_code = CURLE_FAILED_INIT;
    out.error = "curl_easy_init failed";
    return out;
  }
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(list, curl_slist_free_all);
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out.body);
  long v = CURL_HTTP_VERSION_1_1;
  if (version == Version::http2_tls) v = CURL_HTTP_VERSION_2TLS;
  if (version == Version::http2_prior_knowledge) v = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, v);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    out.curl_code = rc;
    out.error = curl_easy_strerror(rc);
    out.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    return out;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
  return out;
}

Result<std::string> sign_jwt(std::string_view alg, const std::string& pem_key,
                             const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::vector<std::pair<std::string, std::string>>& string_claims,
                             const std::vector<std::pair<std::string, long>>& int_claims) {
  jwt_alg_t a = alg == "RS256" ? JWT_ALG_RS256 : alg == "ES256" ? JWT_ALG_ES256 : JWT_ALG_INVAL;
  if (a == JWT_ALG_INVAL) return fail(std::errc::invalid_argument, "unsupported JWT algorithm " + std::string(alg));
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return fail(std::errc::not_enough_memory, "jwt_new failed");
  std::unique_ptr<jwt_t, JwtFree> j(raw);
  for (const auto& [k, v] : headers) jwt_add_header(j.get(), k.c_str(), v.c_str());
  for (const auto& [k, v] : string_claims) jwt_add_grant(j.get(), k.c_str(), v.c_str());
  for (const auto& [k, v] : int_claims) jwt_add_grant_int(j.get(), k.c_str(), v);
  if (jwt_set_alg(j.get(), a, reinterpret_cast<const unsigned char*>(pem_key.data()), static_cast<int>(pem_key.size())) != 0) {
    return fail(std::errc::invalid_argument, "the key does not suit " + std::string(alg));
  }
  char* s = jwt_encode_str(j.get());
  if (!s) return fail(std::errc::invalid_argument, "signing the " + std::string(alg) + " JWT failed (is the key a " +
                                                       (a == JWT_ALG_RS256 ? "RSA" : "P-256 EC") + " private key in PEM?)");
  std::string out(s);
  std::free(s);
  return out;
}

SendResult classify_failure(const Response& r, std::string_view provider) {
  std::string who(provider);
  if (r.status == 0) {
    return {SendOutcome::retry, who + ": " + r.error, r.timed_out ? PushFailure::timeout : PushFailure::network};
  }
  std::string detail = who + ": HTTP " + std::to_string(r.status) + (r.body.empty() ? "" : " " + r.body.substr(0, 300));
  if (r.status == 408 || r.status == 429) return {SendOutcome::retry, detail, PushFailure::throttled};
  if (r.status >= 500) return {SendOutcome::retry, detail, PushFailure::server_error};
  return {SendOutcome::failed, detail, PushFailure::rejected};
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", ch);
          out += buf;
        } else {
          out.push_back(ch);
        }
    }
  }
  out += "\"";
  return out;
}

}  // namespace imlog::push_http
