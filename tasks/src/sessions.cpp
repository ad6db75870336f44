#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

#include "imlog/tasks/sessions.h"

namespace imlog {
namespace {

// The single node's registry: user → gateway → that gateway's session ids of the user.
class LocalSessions final : public SessionRegistry {
 public:
  void connected(uint64_t user, std::string_view gateway, uint64_t session) override {
    std::unique_lock lock(mu_);
    users_[user][std::string(gateway)].insert(session);
  }

  void disconnected(uint64_t user, std::string_view gateway, uint64_t session) override {
    std::unique_lock lock(mu_);
    auto u = users_.find(user);
    if (u == users_.end()) return;
    auto g = u->second.find(gateway);
    if (g == u->second.end()) return;
    g->second.erase(session);
    if (g->second.empty()) u->second.erase(g);
    if (u->second.empty()) users_.erase(u);
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

 private:
  mutable std::shared_mutex mu_;
  std::unordered_map<uint64_t, std::map<std::string, std::set<uint64_t>, std::less<>>> users_;
};

}  // namespace

std::unique_ptr<SessionRegistry> make_local_sessions() { return std::make_unique<LocalSessions>(); }

}  // namespace imlog
