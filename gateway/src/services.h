#pragma once
// What every connection and handler of one gateway shares: its config, the engine and read side it
// talks to, the auth pieces, metrics, and the session indexes. Built by Gateway::Impl, which
// outlives every session.
//
// Thread-safe: every member is either immutable after construction or thread-safe itself.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "api.h"
#include "auth.h"
#include "client_address.h"
#include "hub.h"
#include "imlog/gateway/gateway.h"
#include "metrics.h"
#include "presence.h"

namespace imlog::gw {

struct Services {
  Services(GatewayConfig cfg, GatewayDeps& deps, CommandBus& bus_ref, std::string id)
      : config(std::move(cfg)),
        gateway_id(std::move(id)),
        bus(bus_ref),
        query(deps.query),
        sessions(deps.sessions),
        keys(deps.keys),
        clock(deps.clock),
        not_ready(std::move(deps.not_ready)),
        tokens(config.jwt_secret, clock, config.access_token_ttl.count() / 1000,
               config.refresh_token_ttl.count() / 1000),
        passwords(config.password_ops_limit, config.password_mem_limit, &metrics.password_hashes),
        max_password_work(static_cast<int>(std::max<uint32_t>(1, config.password_threads) * config.password_queue)),
        own_throttle(deps.login_throttle ? nullptr : make_local_login_throttle(config.login_throttle, clock)),
        throttle(deps.login_throttle ? *deps.login_throttle : *own_throttle),
        queries("gw-query", config.query_threads, config.query_queue),
        registry("gw-registry", config.registry_threads, config.registry_queue) {}

  const GatewayConfig config;
  const std::string gateway_id;  // the bus's; kept here for code that runs while the bus goes away
  CommandBus& bus;
  QueryService& query;
  SessionRegistry& sessions;
  KeyStore& keys;
  const Clock& clock;
  std::function<std::string()> not_ready;

  Metrics metrics;
  TokenService tokens;
  PasswordHasher passwords;
  RevokedTokens revoked;
  ErasedUsers erased;
  RecentRegistrations recent_registrations;
  SessionHub hub;
  ConnectionSet connections;
  ApiRouter api;
  std::atomic<uint64_t> next_connection_id{1};
  std::atomic<bool> stopping{false};
  // Set by Gateway::stop() once the bus has stopped: the bus is destroyed before the io_context,
  // whose handlers may still release sessions that announce their presence, so after this nothing
  // may touch `bus`.
  std::atomic<bool> bus_stopped{false};
  // Password hashes and verifications queued or running; beyond max_password_work
  // (password_threads × password_queue) new ones are refused with 503.
  std::atomic<int> password_work{0};
  const int max_password_work;
  // Avatar reads and writes queued or running on the same threads; beyond kMaxAvatarWork new ones
  // are refused with 503, so a flood of GET /avatars cannot keep logins waiting.
  std::atomic<int> avatar_work{0};
  static constexpr int kMaxAvatarWork = 8;
  // When each user last uploaded an avatar here (ms): one upload per avatar_upload_interval, which
  // bounds how fast a user can fill the avatar directory.
  std::mutex avatar_mu;
  std::unordered_map<uint64_t, int64_t> avatar_uploads;

  // Runs `fn` on the password threads (Argon2id is slow on purpose).
  std::function<void(std::function<void()>)> run_blocking;
  // Runs `fn` on an I/O thread after `delay` (retries against the eventually-consistent read model).
  std::function<void(std::chrono::milliseconds, std::function<void()>)> run_after;

  // Login back-off (login_throttle.h): the deps' shared one, or this gateway's own. Called on the
  // registry workers (a Redis one blocks).
  std::unique_ptr<LoginThrottle> own_throttle;
  LoginThrottle& throttle;
  // gateway.trusted_proxies; set by Gateway::create, which checked them.
  TrustedProxies trusted_proxies;

  // Read-model queries: the handlers of signed-in users' REST requests and WebSocket syncs, off the
  // I/O threads (keyed_workers.h), keyed by user.
  KeyedWorkers queries;
  // SessionRegistry calls, presence announcements and login throttle calls, off the I/O threads
  // (keyed_workers.h). Last, so its threads are joined before anything they use goes.
  KeyedWorkers registry;
};

}  // namespace imlog::gw
