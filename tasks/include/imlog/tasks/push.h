#pragma once
// Offline push (issue 17): the tasks role's PushWorker follows im.events and notifies the devices
// of recipients who are offline (tasks/README.md, "Offline push").
//
// For each MessageAppended of a one-to-one or group conversation (not system rows, not `world`),
// every recipient but the sender who has no online session (SessionRegistry) and whose settings
// allow it (should_push: push on, not in quiet hours in their time zone, conversation not muted,
// sender not blocked, quiet hours at the message's event time) gets one notification per device
// per collapse window. A window is a function of the log: the user's messages with event times in
// [first, first + collapse_window), cut once every partition is read past its end (a partition
// at its end counting as read to now - close_delay); its notification names the latest message
// (sender, preview, conversation, seq), how many it stands for, and the unread badge as of the
// window's end (tasks/README.md, "Offline push").
//
// Providers (PushProvider): the webhook POSTs JSON to the device's URL with libcurl, signed with
// an HMAC-SHA256 header (webhook_signature); FCM HTTP v1 and APNs below. A worker without a
// provider for a platform counts those pushes as `unsupported` and sends nothing.
//
// Failures: a retryable failure is tried again after first_backoff, doubling up to max_backoff,
// max_attempts times in all; then the notification is written to im.dlq (task_records.h) with the
// reason. A provider's answer that the token is invalid (invalid_token) removes the device: the
// worker submits RemoveDevice on the user's stream through the command path (the engine writes
// DeviceRemoved to the log, as for DELETE /api/v1/devices/{id}), and sends nothing more to it. At
// least once: the offset the worker commits (under PushConfig::group) is each partition's first at
// or after the cut (the earliest first message of a window not done with, moved back to the start
// of a done one straddling it), so a killed worker forms the same windows again and notifies again
// from there; each notification carries a stable idempotency key ("<user>/<stream>/<seq of the
// window's first message>/<device>"), always with the same payload, receivers de-duplicate by. A partition never committed is
// followed from its end at start (no pushes of old messages).
//
// Threading: one Worker, "push", reads and decides; sends run on a pool of max_in_flight threads
// (one notification per thread, at most one send per device at a time), so a slow receiver holds
// one of them and not the others' pushes. Providers must be thread-safe.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/clock.h"
#include "imlog/core/metrics.h"
#include "imlog/core/result.h"
#include "imlog/engine/data_keys.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/transport.h"
#include "imlog/projections/query.h"
#include "imlog/tasks/lease.h"
#include "imlog/tasks/sessions.h"

namespace imlog {

struct PushConfig {
  bool enabled = false;                             // push.enabled: start the worker at all
  std::chrono::milliseconds collapse_window{2000};  // push.collapse_window
  std::chrono::milliseconds close_delay{1000};      // push.close_delay: wait for messages on their way
  uint32_t preview_chars = 100;                     // push.preview_chars: 0 sends no preview
  uint32_t max_attempts = 5;                        // push.max_attempts: sends before im.dlq
  std::chrono::milliseconds first_backoff{500};     // push.first_backoff, doubling
  std::chrono::milliseconds max_backoff{30000};     // push.max_backoff
  std::chrono::milliseconds timeout{5000};          // push.timeout: one webhook request
  bool webhook_private_addresses = false;           // push.webhook_private_addresses: allow them
  std::string webhook_secret;                       // push.webhook_secret: the HMAC key (16+ bytes)
  std::string group = "imlog-push";                 // the consumer group of its committed offsets
  std::chrono::milliseconds commit_interval{1000};
  uint64_t max_batch = 1024;
  uint32_t max_in_flight = 16;                      // push.max_in_flight: sends at once (threads)
  std::chrono::milliseconds lease_ttl{10000};       // push.lease_ttl: the single-worker lease
  // Not a config key: the data keys that open a message's sealed text for its preview
  // (imlog/engine/data_keys.h); not owned. A message it cannot open (the sender erased) is not
  // pushed; without a store a sealed message is not pushed either (logged).
  KeyStore* keys = nullptr;
};

// Why a recipient gets no push (none: they do).
enum class PushSkip { none, online, disabled, quiet_hours, muted, blocked, no_devices };
std::string_view push_skip_name(PushSkip s);

// Is `minute` (of the local day) inside quiet hours [start, end)? A window with start > end runs
// across midnight (22:00–07:00); start == end, or either -1, means no quiet hours.
bool in_quiet_hours(int start_minute, int end_minute, int minute);

// The decision for one recipient of a message from `sender` in `conversation` at `now_ms`:
// `blocked` is who the recipient blocked.
PushSkip should_push(const UserView& recipient, std::string_view conversation, uint64_t sender, bool online,
                     const std::vector<uint64_t>& blocked, int64_t now_ms);

// The first `chars` characters (UTF-8 code points) of `content`, with "…" when cut; "" for 0.
std::string preview_of(std::string_view content, uint32_t chars);

// One notification to one device.
struct PushNotification {
  uint64_t user_id = 0;
  DeviceView device;
  std::string key;            // the idempotency key (above)
  std::string conversation_id;
  uint64_t seq = 0;           // of the latest message collapsed into it
  uint64_t sender_id = 0;
  std::string sender_nickname;
  std::string preview;        // "" when preview_chars is 0
  uint64_t badge = 0;         // unread messages of the user over all conversations
  uint32_t collapsed = 1;     // messages this notification stands for
};

// The JSON a webhook receives (docs/api/push.md).
std::string push_payload_json(const PushNotification& n);

// failed: not worth retrying (a 4xx); invalid_token: the provider says the device's token is no
// longer valid (the device is removed).
enum class SendOutcome { sent, retry, failed, invalid_token };

// Why a send failed, for imlog_push_failures_total{reason}.
enum class PushFailure : uint8_t {
  none,
  timeout,          // no answer within push.timeout
  network,          // no connection (refused, DNS, TLS)
  throttled,        // 408 or 429
  server_error,     // 5xx
  rejected,         // another 4xx (or 3xx): the request is wrong, not worth retrying
  invalid_token,    // the token is not (or no longer) valid: the device is removed
  address_refused,  // the webhook's address is private or loopback
  auth,             // the provider refused our credentials (FCM's OAuth2, APNs' provider token)
  count_            // the number of reasons
};
std::string_view push_failure_name(PushFailure f);

struct SendResult {
  SendOutcome outcome = SendOutcome::sent;
  std::string detail;  // why, for logs and the dead letter
  PushFailure reason = PushFailure::none;
};

class PushProvider {
 public:
  virtual ~PushProvider() = default;
  virtual SendResult send(const PushNotification& n) = 0;
};

// The webhook's signature header value: "v1=" and the lowercase hex HMAC-SHA256, keyed by
// `secret`, of the decimal `timestamp_s`, a ".", and the body (docs/api/push.md).
std::string webhook_signature(std::string_view secret, int64_t timestamp_s, std::string_view body);

inline constexpr size_t kMinWebhookSecretBytes = 16;

struct WebhookOptions {
  std::chrono::milliseconds timeout{5000};
  bool allow_private = false;  // reach loopback and private addresses (tests, a relay inside)
  std::string secret;          // the HMAC key; at least kMinWebhookSecretBytes
};

// POSTs push_payload_json() to the device's token (its URL) with headers Content-Type
// application/json, Idempotency-Key: the key, X-Imlog-Timestamp: the Unix time in seconds of this
// attempt, and X-Imlog-Signature: webhook_signature(secret, that time, body). 2xx sent; 410 Gone
// invalid_token (the receiver says the device is gone); 408, 429, 5xx, a time-out or a connection
// failure retry; any other status failed. Unless `allow_private`, an address that is loopback,
// private, link-local or otherwise internal (checked after DNS) is refused: failed. Fails (an
// invalid_argument error) when the secret is shorter than kMinWebhookSecretBytes. Thread-safe.
Result<std::unique_ptr<PushProvider>> make_webhook_provider(WebhookOptions options,
                                                            const Clock& clock = SystemClock::instance());

// FCM HTTP v1 (https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send):
// an OAuth2 access token for the scope firebase.messaging, taken from the service account's token
// endpoint with an RS256 JWT assertion signed by its private key (libjwt) and kept until a minute
// before it expires; then POST <endpoint>/v1/projects/<project_id>/messages:send with
// fcm_message_json(). 2xx sent; 404, 400 naming the registration token (UNREGISTERED, not a
// valid token) or 403 SENDER_ID_MISMATCH invalid_token; 401 retry (a new access token next time);
// 408, 429, 5xx, a time-out retry; any other status failed. Thread-safe.
struct FcmOptions {
  std::string service_account_file;                 // Google's JSON key of the service account
  std::string endpoint = "https://fcm.googleapis.com";
  std::string token_uri;                            // "" : the key file's token_uri
  std::chrono::milliseconds timeout{5000};
};
// Fails naming the file and the field when the key file cannot be read, lacks client_email,
// private_key, project_id or token_uri, or its private_key cannot sign RS256.
Result<std::unique_ptr<PushProvider>> make_fcm_provider(FcmOptions options, const Clock& clock = SystemClock::instance());
// {"message":{token, notification{title: the sender's nickname, body: the preview}, data (every
// field of push_payload_json as a string, `key` included), android{collapse_key: the key,
// notification{notification_count: the badge}}, apns{payload{aps{badge}}}}}.
std::string fcm_message_json(const PushNotification& n);

// APNs (https://developer.apple.com/documentation/usernotifications): HTTP/2 POST
// <endpoint>/3/device/<token> (libcurl through nghttp2) with `authorization: bearer` an ES256 JWT
// {header kid: key_id; iss: team_id, iat} signed by the .p8 key (libjwt) and reused for 40
// minutes, apns-topic (the device's app_id, else `topic`), apns-push-type alert, apns-priority 10,
// apns-collapse-id (apns_collapse_id of the key), apns-id (apns_id of the key) and
// apns_payload_json(). 200 sent; 410, 400 BadDeviceToken or DeviceTokenNotForTopic invalid_token;
// 403 Expired/InvalidProviderToken retry with a new token; 429, 5xx, a time-out retry; any other
// status failed. Thread-safe.
struct ApnsOptions {
  std::string key_file;  // the .p8 key (PKCS#8 PEM, P-256)
  std::string key_id;    // its 10-character key id
  std::string team_id;   // the developer team id
  std::string topic;     // the app's bundle id, for devices registered without app_id
  std::string endpoint = "https://api.push.apple.com";  // sandbox: https://api.sandbox.push.apple.com
  bool prior_knowledge = false;  // cleartext HTTP/2 (h2c) without TLS: local test endpoints only
  std::chrono::milliseconds timeout{5000};
};
Result<std::unique_ptr<PushProvider>> make_apns_provider(ApnsOptions options, const Clock& clock = SystemClock::instance());
// {"aps":{"alert":{"title","body"},"badge","sound":"default","thread-id": the conversation},
//  "imlog": push_payload_json()}.
std::string apns_payload_json(const PushNotification& n);
// The key when it fits APNs' 64 bytes, else "h:" and 62 hex digits of its SHA-256: stable either way.
std::string apns_collapse_id(std::string_view key);
// A UUID made of the key's SHA-256: the same notification keeps its apns-id across retries.
std::string apns_id(std::string_view key);

// A stand-in for APNs or FCM in tests: records every notification and answers from a script
// (each call takes the next outcome; sent once the script is used up).
class FakePushProvider final : public PushProvider {
 public:
  SendResult send(const PushNotification& n) override;
  void script(std::vector<SendOutcome> outcomes);
  [[nodiscard]] std::vector<PushNotification> calls() const;

 private:
  mutable std::mutex mu_;
  std::vector<SendOutcome> script_;
  std::vector<PushNotification> calls_;
};

// The providers by platform; a null one leaves that platform's devices unsupported.
struct PushProviders {
  PushProvider* apns = nullptr;
  PushProvider* fcm = nullptr;
  PushProvider* webhook = nullptr;
};

struct PushStats {
  std::atomic<uint64_t> events{0};        // messages read
  std::atomic<uint64_t> sent{0};          // notifications a provider accepted
  std::atomic<uint64_t> collapsed{0};     // messages folded into an earlier notification
  std::atomic<uint64_t> retried{0};       // sends tried again
  std::atomic<uint64_t> failed{0};        // sends that failed (each attempt)
  std::atomic<uint64_t> dead_lettered{0};
  std::atomic<uint64_t> unsupported{0};   // devices of a platform without a provider
  std::atomic<uint64_t> skipped{0};       // recipients not pushed (online, settings, no device)
  std::atomic<int64_t> lag_ms{0};         // age of the latest message read when it was read
  std::atomic<uint64_t> devices_removed{0};  // RemoveDevice commands submitted for invalid tokens
  std::atomic<uint64_t> in_flight{0};     // sends a provider is working on now
  // Failed attempts by reason (PushFailure, indexed by its value; none unused).
  std::array<std::atomic<uint64_t>, static_cast<size_t>(PushFailure::count_)> failures{};
  // From the window's first message (its event time in im.events) to the provider's answer that
  // it was sent: the collapse window, the worker's lag and the provider's time together.
  metrics::Histogram latency{metrics::Histogram::latency_bounds()};
};

class PushWorker {
 public:
  // Everything passed must outlive the worker. `model` is the read model the gateway reads
  // (settings, devices, nicknames, members, unread counts). `commands`, when set, takes the
  // RemoveDevice commands of invalid tokens (without it such a device is only skipped by this
  // worker until it restarts, and a warning logged). `leases`, when set, enforces one worker per
  // deployment: start() takes the lease "push" (waiting up to lease_ttl for one a stopped or
  // killed worker left) and fails naming push.enabled and the holder when another process has
  // it; the worker renews it every lease_ttl / 3 and fails, sending nothing more, if it was lost.
  PushWorker(EventLog& log, SessionRegistry& sessions, ReadModel& model, PushProviders providers, PushConfig config,
             CommandTransport* commands = nullptr, LeaseStore* leases = nullptr,
             const Clock& clock = SystemClock::instance());
  ~PushWorker();
  Status start();
  void stop();
  [[nodiscard]] const PushStats& stats() const;
  struct Loop;  // private

 private:
  std::unique_ptr<Loop> loop_;
};

}  // namespace imlog
