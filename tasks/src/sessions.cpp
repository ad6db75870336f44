#include "imlog/tasks/sessions.h"

#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

namespace imlog {

std::string_view presence_name(PresenceStatus s) {
  switch (s) {
    case PresenceStatus::offline: return "offline";
    case PresenceStatus::online: return "online";
    case PresenceStatus::away: return "away";
    case PresenceStatus::busy: return "busy";
  }
  return "offline";
}

std::optional<PresenceStatus> parse_presence(std::string_view name) {
  for (auto s : {PresenceStatus::offline, PresenceStatus::online, PresenceStatus::away, PresenceStatus::busy}) {
    if (presence_name(s) == name) return s;
  }
  return std::nullopt;
}

namespace {

// The single node's registry: user → gateway → that gateway's session ids of the user, plus
// each user's chosen status and last-seen time (kept after the last session goes).
class LocalSessions final : public SessionRegistry {
 public:
  explicit LocalSessions(const Clock& clock) : clock_(clock) {}

  void connected(uint64_t user, std::string_view gateway, uint64_t session) override {
    std::unique_lock lock(mu_);
    users_[user][std::string(gateway)].insert(session);
    seen_[user].last_seen_ms = clock_.now_ms();
  }

  void disconnected(uint64_t user, std::string_view gateway, uint64_t session) override {
    std::unique_lock lock(mu_);
    auto u = users_.find(user);
    if (u == users_.end()) return;
    auto g = u->second.find(gateway);
    if (g == u->second.end()) return;
    g->second.erase(session);
    seen_[user].last_seen_ms = clock_.now_ms();
    if (g->second.empty()) u->second.erase(g);
    if (u->second.empty()) users_.erase(u);
  }

  // As connected: the session is alive, whether or not it was known (sessions.h).
  void heartbeat(uint64_t user, std::string_view gateway, uint64_t session) override {
    connected(user, gateway, session);
  }

  void locate(std::span<const uint64_t> users, std::vector<std::pair<uint64_t, std::string>>& out) const override {
    std::shared_lock lock(mu_);
    for (uint64_t user : users) {
      auto u = users_.find(user);
      if (u == users_.end()) continue;
      for (const auto& [gateway, sessions] : u->second) out.emplace_back(user, gateway);
    }
  }

  void all_online(std::vector<std::pair<uint64_t, std::string>>& out) const override {
    std::shared_lock lock(mu_);
    for (const auto& [user, gateways] : users_) {
      for (const auto& [gateway, sessions] : gateways) out.emplace_back(user, gateway);
    }
  }

  uint32_t devices(uint64_t user) const override {
    std::shared_lock lock(mu_);
    auto u = users_.find(user);
    if (u == users_.end()) return 0;
    uint32_t n = 0;
    for (const auto& [gateway, sessions] : u->second) n += static_cast<uint32_t>(sessions.size());
    return n;
  }

  SetStatusResult set_status(uint64_t user, PresenceStatus status) override {
    if (status == PresenceStatus::offline) return SetStatusResult::invalid;
    std::unique_lock lock(mu_);
    seen_[user].chosen = status;
    return SetStatusResult::saved;
  }

  void presence(std::span<const uint64_t> users, std::vector<Presence>& out) const override {
    std::shared_lock lock(mu_);
    for (uint64_t user : users) {
      Presence p{.user_id = user};
      if (auto s = seen_.find(user); s != seen_.end()) {
        p.last_seen_ms = s->second.last_seen_ms;
        if (users_.contains(user)) p.status = s->second.chosen;
      }
      out.push_back(p);
    }
  }

 private:
  struct Seen {
    PresenceStatus chosen = PresenceStatus::online;
    int64_t last_seen_ms = 0;
  };

  const Clock& clock_;
  mutable std::shared_mutex mu_;
  std::unordered_map<uint64_t, std::map<std::string, std::set<uint64_t>, std::less<>>> users_;
  std::unordered_map<uint64_t, Seen> seen_;
};

}  // namespace

std::unique_ptr<SessionRegistry> make_local_sessions(const Clock& clock) {
  return std::make_unique<LocalSessions>(clock);
}

}  // namespace imlog
