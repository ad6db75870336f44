#pragma once
// Who is online where (docs/architecture.md, "Router and tasks"), and their presence: each user's
// device sessions, the gateway holding each, the user's chosen status and when they were last seen.
// The router asks it where to deliver; gateways tell it about connects, heartbeats and disconnects.
// The single node keeps it in process (make_local_sessions); a distributed deployment keeps it in
// Redis with a TTL refreshed by heartbeats.
//
// Presence is ephemeral, not an event: it is not in the log and replay does not rebuild it.
//
// Thread-safe.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imlog/core/clock.h"
#include "imlog/core/result.h"

namespace imlog {

// offline: no session; online: a session and no chosen status; away, busy: chosen while online.
enum class PresenceStatus : uint8_t { offline = 0, online = 1, away = 2, busy = 3 };

std::string_view presence_name(PresenceStatus s);
std::optional<PresenceStatus> parse_presence(std::string_view name);

// What set_status did: saved; invalid (offline is not a status one chooses); or not saved because
// the registry's store is unavailable (Redis down or refusing writes) — the caller may retry.
enum class SetStatusResult : uint8_t { saved = 0, invalid = 1, unavailable = 2 };

struct Presence {
  uint64_t user_id = 0;
  PresenceStatus status = PresenceStatus::offline;
  int64_t last_seen_ms = 0;  // last connect, heartbeat or disconnect; 0 if never seen
  bool operator==(const Presence&) const = default;
};

class SessionRegistry {
 public:
  virtual ~SessionRegistry() = default;
  virtual void connected(uint64_t user_id, std::string_view gateway_id, uint64_t session_id) = 0;
  virtual void disconnected(uint64_t user_id, std::string_view gateway_id, uint64_t session_id) = 0;
  // The session is alive: refreshes its time-to-live and the user's last-seen time, registering
  // it again if the registry lost it (Redis restarted, or the session outlived its ttl silent).
  // A session's calls must come in order: no heartbeat after its disconnected().
  virtual void heartbeat(uint64_t user_id, std::string_view gateway_id, uint64_t session_id) = 0;
  // Appends one (user, gateway) pair per gateway where a user of `users` has a session.
  virtual void locate(std::span<const uint64_t> users,
                      std::vector<std::pair<uint64_t, std::string>>& out) const = 0;
  // As locate, but a lookup that failed (the registry's store unavailable) is an error, with
  // nothing appended, instead of looking like nobody online: for callers that retry (the fan-out
  // worker). The in-process registry never fails.
  [[nodiscard]] virtual Status try_locate(std::span<const uint64_t> users,
                                          std::vector<std::pair<uint64_t, std::string>>& out) const {
    locate(users, out);
    return {};
  }
  // Appends one (user, gateway) pair for every online user (for `world`).
  virtual void all_online(std::vector<std::pair<uint64_t, std::string>>& out) const = 0;
  // Devices a user has online, on every gateway.
  [[nodiscard]] virtual uint32_t devices(uint64_t user_id) const = 0;
  // The user's chosen status: away or busy win while online; online clears the choice; offline
  // is not a choice (it is having no session) and is refused as invalid.
  [[nodiscard]] virtual SetStatusResult set_status(uint64_t user_id, PresenceStatus status) = 0;
  // Appends the presence of each of `users`, in order.
  virtual void presence(std::span<const uint64_t> users, std::vector<Presence>& out) const = 0;
};

// The in-process registry of a single node; `clock` stamps last-seen times and must outlive it.
std::unique_ptr<SessionRegistry> make_local_sessions(const Clock& clock = SystemClock::instance());

}  // namespace imlog
