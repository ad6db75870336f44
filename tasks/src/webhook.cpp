// The webhook push provider (push.h): one libcurl POST per notification.
#include <curl/curl.h>

#include <mutex>

#include "imlog/tasks/push.h"

namespace imlog {
namespace {

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

class WebhookProvider final : public PushProvider {
 public:
  explicit WebhookProvider(std::chrono::milliseconds timeout) : timeout_(timeout) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  SendResult send(const PushNotification& n) override {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return {SendOutcome::retry, "curl_easy_init failed"};
    std::string body = push_payload_json(n);
    std::string key_header = "Idempotency-Key: " + n.key;
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    headers = curl_slist_append(headers, key_header.c_str());
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(headers, curl_slist_free_all);
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, n.device.token.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) return {SendOutcome::retry, curl_easy_strerror(rc)};
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return {SendOutcome::sent, ""};
    std::string detail = "HTTP " + std::to_string(status);
    if (status == 408 || status == 429 || status >= 500) return {SendOutcome::retry, detail};
    return {SendOutcome::failed, detail};
  }

 private:
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<PushProvider> make_webhook_provider(std::chrono::milliseconds timeout) {
  return std::make_unique<WebhookProvider>(timeout);
}

}  // namespace imlog
