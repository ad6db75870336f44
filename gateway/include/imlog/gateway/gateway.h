#pragma once
// The gateway (docs/architecture.md, "The gateway"): HTTP/1.1 REST under /api/v1 and WebSocket at
// /ws on one port, over one io_context run by N threads, with a strand per connection (Boost.Beast,
// the shape of Beast's advanced server). Writes become commands on the CommandBus and are answered
// after the engine's answer; reads go to the QueryService; pushes from the bus go to the connected
// sessions of their recipients.
//
//   client ──HTTP──▶ HttpSession ──route──▶ handler ──▶ CommandBus / QueryService
//          ──/ws───▶ WsSession   ──frame──▶ handler ──▶ CommandBus / QueryService
//   CommandBus ──Push──▶ SessionHub ──post to strand──▶ WsSession ──▶ client
//
// Lifecycle: create() → start() (binds, runs the threads, starts the bus) → stop() (stops
// accepting, closes WebSockets with 1001 "going away", drains writes up to drain_timeout, stops the
// bus and the threads). Threading: start/stop from one thread (main); everything else runs on the
// gateway's own threads. This header keeps Beast, RapidJSON and libjwt out of its includers.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"
#include "imlog/tasks/login_throttle.h"

namespace imlog {

class CommandBus;
class QueryService;
class SessionRegistry;
class KeyStore;

struct GatewayConfig {
  // host:port to listen on ("0.0.0.0:8080" for every interface). Default 127.0.0.1:8080.
  std::string listen = "127.0.0.1:8080";
  // io_context threads. 0: one per core. Default 0.
  uint32_t threads = 0;
  // Names this gateway: its deliveries arrive on im.deliver.<gateway_id>. Unique per gateway
  // process. Default "gateway-<hostname>".
  std::string gateway_id;
  // HS256 key of the JWTs, shared by every gateway. Empty: read from (or generated once into)
  // <data_dir>/secret by the server. Default empty.
  std::string jwt_secret;
  // Lifetime of an access token. Default 15 min.
  std::chrono::milliseconds access_token_ttl{15 * 60 * 1000};
  // Lifetime of a refresh token. Default 30 days.
  std::chrono::milliseconds refresh_token_ttl{30LL * 24 * 3600 * 1000};
  // Argon2id cost (libsodium crypto_pwhash). 0: libsodium's OPSLIMIT/MEMLIMIT_INTERACTIVE (2 passes,
  // 64 MiB). Lower only for tests.
  uint64_t password_ops_limit = 0;
  uint64_t password_mem_limit = 0;
  // Threads that hash and verify passwords, off the I/O threads. Default 2.
  uint32_t password_threads = 2;
  // Hashes (register) and verifications (login) each password thread may have queued or running;
  // beyond password_threads × password_queue, register and login answer 503 with Retry-After
  // instead of queueing. Default 32.
  uint32_t password_queue = 32;
  // Back-off on wrong passwords per (account, address), per address and per account, answered
  // 429 with Retry-After (imlog/tasks/login_throttle.h). Defaults there.
  LoginThrottleConfig login_throttle;
  // Reverse proxies (IP addresses or CIDR ranges) whose X-Forwarded-For names the client to the
  // login throttle. Empty: the TCP peer is the client, so a gateway behind a proxy not listed here
  // counts every client as the proxy. Default empty.
  std::vector<std::string> trusted_proxies;
  // Web origins (scheme://host[:port], exactly as a browser sends Origin) whose pages may call the
  // REST API from another origin (CORS). Default empty: same origin only.
  std::vector<std::string> cors_origins;
  // Largest HTTP request body. Default 1 MiB.
  uint64_t max_body_bytes = 1 << 20;
  // Largest HTTP request header block. Default 16 KiB.
  uint32_t max_header_bytes = 16 * 1024;
  // Largest WebSocket message; a larger one closes the connection with 1009. Default 128 KiB.
  uint64_t max_frame_bytes = 128 * 1024;
  // Time to receive a whole HTTP request once its first byte arrived, and to write a reply.
  // Default 30 s.
  std::chrono::milliseconds http_timeout{30'000};
  // Time a keep-alive HTTP connection may sit idle between requests. Default 60 s.
  std::chrono::milliseconds http_idle_timeout{60'000};
  // Time for the WebSocket handshake. Default 10 s.
  std::chrono::milliseconds ws_handshake_timeout{10'000};
  // A WebSocket peer silent this long is closed; the server pings it at half this. Default 60 s.
  std::chrono::milliseconds heartbeat_timeout{60'000};
  // Client frames per second per connection (token bucket), and the burst. Default 50 and 100.
  double ws_rate = 50;
  double ws_burst = 100;
  // Per-connection write queue bounds: a client whose unsent frames exceed either is disconnected.
  // Defaults 1024 frames, 4 MiB.
  uint32_t max_queued_frames = 1024;
  uint64_t max_queued_bytes = 4 << 20;
  // Commands (send-message, read) one WebSocket connection may have waiting for the engine's
  // answer. At the bound the session stops reading its socket until an answer comes, so TCP
  // pushes back on a client that sends faster than the engine answers. Default 64.
  uint32_t max_inflight_commands = 64;
  // How long a WebSocket message may have waited, unread, in the gateway — in the socket's buffers
  // and the session's read buffer, while the I/O threads were behind — before it is handled. A
  // message that waited longer is answered `overloaded` (with retry_after_ms) instead, so that under
  // overload what is accepted stays prompt and the rest is refused at once rather than late. Pings
  // are always answered. 0: no bound. Default 150 ms.
  std::chrono::milliseconds max_frame_wait{150};
  // How long a write waits for the engine's answer before replying 504 / error "timeout".
  // Default 10 s.
  std::chrono::milliseconds command_timeout{10'000};
  // How long a read waits for the eventually-consistent read model to show a user, group or
  // membership that was just written (one's own profile right after register, history of a group
  // just joined). Login never waits: an unknown name must cost what a wrong password costs.
  // Default 2 s.
  std::chrono::milliseconds read_model_wait{2'000};
  // On stop, how long open connections get to finish their writes. Default 5 s.
  std::chrono::milliseconds drain_timeout{5'000};
  // Where avatar uploads are stored, served at /avatars/<name>. Empty: uploads are refused
  // (503). The server sets <data_dir>/avatars when the config leaves it out. Default empty.
  std::string avatar_dir;
  // Largest avatar image; a larger upload gets 413. Default 2 MiB.
  uint64_t avatar_max_bytes = 2 << 20;
  // A user may upload one avatar per this interval (per gateway); sooner gets 429. Default 10 s.
  std::chrono::milliseconds avatar_upload_interval{10'000};
  // Threads that talk to the session registry (Redis) and announce presence (the friend list from
  // the read model), off the I/O threads; one user's work always goes to the same thread, in order.
  // Default 4.
  uint32_t registry_threads = 4;
  // Tasks each registry thread may have queued; beyond it heartbeats and connects are dropped
  // (logged; the session's TTL and next heartbeat heal the registry) and presence reads get 503.
  // Default 10000.
  uint32_t registry_queue = 10'000;
  // Threads that run the REST handlers of signed-in users and the WebSocket reads (sync): every
  // read-model query, so an I/O thread never waits on RocksDB, MySQL or Redis. One user's requests
  // go to the same thread, in order. Default 2.
  uint32_t query_threads = 2;
  // Requests each query thread may have queued; beyond it the request is answered 503
  // `overloaded` with Retry-After. Default 1024.
  uint32_t query_queue = 1024;
  // Directory whose files are served at / (the demo client). Empty: the built-in page. Default empty.
  std::string web_dir;
  // Not a `gateway:` key: retention.default_keep_days, which the server copies here once it read
  // the config (as it does into the engine's limits), so GET .../retention answers the policy the
  // engine enforces. Default 0 (for ever).
  uint32_t default_keep_days = 0;
};

// What the gateway uses. It owns the bus (not started yet: start() starts it with the push
// handler), so the bus's pending callbacks, which hold connections, are destroyed while the
// gateway's I/O context still exists. The rest it does not own; they must outlive it.
struct GatewayDeps {
  std::unique_ptr<CommandBus> bus;
  QueryService& query;
  SessionRegistry& sessions;
  // The data keys that open a pushed message's sealed text (imlog/engine/data_keys.h).
  KeyStore& keys;
  const Clock& clock;
  // /readyz answers 503 with this text while it returns a non-empty one (what is down: the engine,
  // the read model, Kafka, MySQL, Redis), else 200. Called on a gateway thread: must be cheap.
  std::function<std::string()> not_ready;
  // The login throttle shared by every gateway (Redis); null: the gateway keeps its own in
  // process (config.login_throttle).
  LoginThrottle* login_throttle = nullptr;
};

// Counters a caller may read (tests, the node's logs). Thread-safe snapshot.
struct GatewaySnapshot {
  uint64_t ws_connections = 0;   // open WebSocket sessions
  uint64_t http_connections = 0; // open HTTP connections (not upgraded)
  uint64_t frames_in = 0;
  uint64_t frames_out = 0;
};

class Gateway {
 public:
  // Checks the config (an error names the key at fault, e.g. `gateway.listen`).
  static Result<std::unique_ptr<Gateway>> create(GatewayConfig config, GatewayDeps deps);
  ~Gateway();

  // Binds the listener, starts the bus and the threads. Fails naming the address when it cannot bind.
  Status start();
  // Idempotent; see the header comment.
  void stop();

  // The bound port (useful with port 0).
  [[nodiscard]] uint16_t port() const;
  [[nodiscard]] GatewaySnapshot snapshot() const;

  struct Impl;  // private

 private:
  explicit Gateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Why `listen` cannot be a gateway's address ("host:port", the host an IP literal or localhost);
// empty when it can. The config reader and --listen check with it before any role starts.
std::string listen_problem(const std::string& listen);

// Reads the JWT secret kept at `path`, or creates it (32 random bytes, hex, mode 0600) when the
// file does not exist. Used by a single node with no configured secret.
Result<std::string> load_or_create_secret(const std::string& path);

// "gateway-<hostname>".
std::string default_gateway_id();

}  // namespace imlog
