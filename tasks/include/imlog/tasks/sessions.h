#pragma once
// Who is online where (DESIGN.md §9): each user's device sessions and the gateway holding each.
// The router asks it where to deliver; gateways tell it about connects and disconnects.
// The single node keeps it in process (LocalSessions); a distributed deployment keeps it in Redis
// with a TTL refreshed by heartbeats.
//
// Thread-safe.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imlog {

class SessionRegistry {
 public:
  virtual ~SessionRegistry() = default;
  virtual void connected(uint64_t user_id, std::string_view gateway_id, uint64_t session_id) = 0;
  virtual void disconnected(uint64_t user_id, std::string_view gateway_id, uint64_t session_id) = 0;
  // Appends one (user, gateway) pair per gateway where a user of `users` has a session.
  virtual void locate(std::span<const uint64_t> users,
                      std::vector<std::pair<uint64_t, std::string>>& out) const = 0;
  // Appends one (user, gateway) pair for every online user (for `world`).
  virtual void all_online(std::vector<std::pair<uint64_t, std::string>>& out) const = 0;
  // Devices a user has online, on every gateway.
  [[nodiscard]] virtual uint32_t devices(uint64_t user_id) const = 0;
};

// The in-process registry of a single node.
std::unique_ptr<SessionRegistry> make_local_sessions();

}  // namespace imlog
