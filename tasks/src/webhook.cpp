// The webhook push provider (push.h): one libcurl POST per notification.
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>

#include <cstring>
#include <mutex>

#include "imlog/tasks/push.h"

namespace imlog {
namespace {

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

// Loopback, private, link-local, shared (CGNAT), unspecified and multicast IPv4 addresses.
bool private_v4(uint32_t a) {
  auto in = [a](uint32_t net, int bits) { return (a >> (32 - bits)) == (net >> (32 - bits)); };
  return in(0x00000000, 8) || in(0x0A000000, 8) || in(0x7F000000, 8) || in(0x64400000, 10) ||
         in(0xA9FE0000, 16) || in(0xAC100000, 12) || in(0xC0A80000, 16) || in(0xE0000000, 4) ||
         a == 0xFFFFFFFF;
}

bool private_address(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    return private_v4(ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr));
  }
  if (addr->sa_family != AF_INET6) return true;  // neither: not a web server
  const auto* b = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr;
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(b, mapped, 12) == 0) {
    return private_v4((uint32_t{b[12]} << 24) | (uint32_t{b[13]} << 16) | (uint32_t{b[14]} << 8) | b[15]);
  }
  static const unsigned char zero[15] = {};
  bool unspecified_or_loopback = std::memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1);
  return unspecified_or_loopback || (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || b[0] == 0xff;
}

// Whether this send may reach private addresses, and whether it tried to.
struct AddressPolicy {
  bool allow_private = false;
  bool refused = false;
};

// Checks the address curl is about to connect to (after DNS, so a name that resolves to an
// internal address is caught too): a user-supplied URL must not reach the servers' own network.
curl_socket_t open_checked(void* policy, curlsocktype, curl_sockaddr* address) {
  auto* p = static_cast<AddressPolicy*>(policy);
  if (!p->allow_private && private_address(&address->addr)) {
    p->refused = true;
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype, address->protocol);
}

class WebhookProvider final : public PushProvider {
 public:
  WebhookProvider(WebhookOptions options, const Clock& clock) : options_(std::move(options)), clock_(clock) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  SendResult send(const PushNotification& n) override {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return {SendOutcome::retry, "curl_easy_init failed"};
    std::string body = push_payload_json(n);
    std::string key_header = "Idempotency-Key: " + n.key;
    int64_t now_s = clock_.now_ms() / 1000;
    std::string time_header = "X-Imlog-Timestamp: " + std::to_string(now_s);
    std::string signature_header = "X-Imlog-Signature: " + webhook_signature(options_.secret, now_s, body);
    curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
    headers = curl_slist_append(headers, key_header.c_str());
    headers = curl_slist_append(headers, time_header.c_str());
    headers = curl_slist_append(headers, signature_header.c_str());
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> header_list(headers, curl_slist_free_all);
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, n.device.token.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    AddressPolicy policy{options_.allow_private};
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &policy);
    CURLcode rc = curl_easy_perform(c);
    if (policy.refused) {
      return {SendOutcome::failed, "the URL's address is private or loopback (push.webhook_private_addresses)",
              PushFailure::address_refused};
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) return {SendOutcome::retry, curl_easy_strerror(rc), PushFailure::timeout};
    if (rc != CURLE_OK) return {SendOutcome::retry, curl_easy_strerror(rc), PushFailure::network};
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) return {SendOutcome::sent, "", PushFailure::none};
    std::string detail = "HTTP " + std::to_string(status);
    if (status == 410) return {SendOutcome::invalid_token, detail + " (the receiver says the device is gone)",
                               PushFailure::invalid_token};
    if (status == 408 || status == 429) return {SendOutcome::retry, detail, PushFailure::throttled};
    if (status >= 500) return {SendOutcome::retry, detail, PushFailure::server_error};
    return {SendOutcome::failed, detail, PushFailure::rejected};
  }

 private:
  WebhookOptions options_;
  const Clock& clock_;
};

}  // namespace

std::string webhook_signature(std::string_view secret, int64_t timestamp_s, std::string_view body) {
  std::string signed_text = std::to_string(timestamp_s);
  signed_text.push_back('.');
  signed_text.append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), mac, &len);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "v1=";
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(hex[mac[i] >> 4]);
    out.push_back(hex[mac[i] & 0xf]);
  }
  return out;
}

Result<std::unique_ptr<PushProvider>> make_webhook_provider(WebhookOptions options, const Clock& clock) {
  if (options.secret.size() < kMinWebhookSecretBytes) {
    return fail(std::errc::invalid_argument, "the webhook secret (push.webhook_secret) must have at least " +
                                                 std::to_string(kMinWebhookSecretBytes) + " bytes");
  }
  return std::unique_ptr<PushProvider>(std::make_unique<WebhookProvider>(std::move(options), clock));
}

}  // namespace imlog
