#include "hub.h"

#include <algorithm>
#include <functional>

namespace imlog::gw {

uint64_t sent_key(std::string_view conversation, std::string_view client_msg_id) {
  // FNV-1a over both with a separator: cheap, and collisions only cost one suppressed echo.
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  mix(conversation);
  h ^= 0x1f;
  h *= 1099511628211ULL;
  mix(client_msg_id);
  return h | 1;  // never 0 ("no key")
}

void SessionHub::add(uint64_t user_id, uint64_t session_id, std::weak_ptr<PushTarget> target) {
  auto& s = shard(user_id);
  std::lock_guard lock(s.mu);
  s.users[user_id].push_back(Entry{session_id, std::move(target)});
}

void SessionHub::remove(uint64_t user_id, uint64_t session_id) {
  auto& s = shard(user_id);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user_id);
  if (it == s.users.end()) return;
  std::erase_if(it->second, [&](const Entry& e) { return e.session_id == session_id; });
  if (it->second.empty()) s.users.erase(it);
}

size_t SessionHub::push(uint64_t user_id, const std::shared_ptr<const std::string>& frame, const PushInfo& info) {
  // Copy the targets out so no session code runs under the shard lock.
  std::vector<std::shared_ptr<PushTarget>> targets;
  {
    auto& s = shard(user_id);
    std::lock_guard lock(s.mu);
    auto it = s.users.find(user_id);
    if (it == s.users.end()) return 0;
    targets.reserve(it->second.size());
    for (const auto& e : it->second) {
      if (auto t = e.target.lock()) targets.push_back(std::move(t));
    }
  }
  for (auto& t : targets) t->push({PushFrame{frame, info}});
  return targets.size();
}

void SessionHub::push_all(const std::vector<UserPush>& pushes) {
  if (pushes.size() == 1) {
    push(pushes[0].user_id, pushes[0].frame, pushes[0].info);
    return;
  }
  // Each session's frames, in batch order; sessions in the order first seen.
  std::vector<std::pair<std::shared_ptr<PushTarget>, std::vector<PushFrame>>> per_target;
  std::unordered_map<PushTarget*, size_t> index;
  for (const auto& p : pushes) {
    auto& s = shard(p.user_id);
    std::lock_guard lock(s.mu);
    auto it = s.users.find(p.user_id);
    if (it == s.users.end()) continue;
    for (const auto& e : it->second) {
      auto t = e.target.lock();
      if (!t) continue;
      auto [at, fresh] = index.emplace(t.get(), per_target.size());
      if (fresh) per_target.emplace_back(std::move(t), std::vector<PushFrame>{});
      per_target[at->second].second.push_back(PushFrame{p.frame, p.info});
    }
  }
  for (auto& [target, frames] : per_target) target->push(std::move(frames));
}

size_t SessionHub::sessions_of(uint64_t user_id) const {
  const auto& s = shard(user_id);
  std::lock_guard lock(s.mu);
  auto it = s.users.find(user_id);
  return it == s.users.end() ? 0 : it->second.size();
}

void ConnectionSet::add(uint64_t id, std::weak_ptr<Closable> c) {
  std::lock_guard lock(mu_);
  open_.emplace(id, std::move(c));
}

void ConnectionSet::remove(uint64_t id) {
  std::lock_guard lock(mu_);
  open_.erase(id);
  if (open_.empty()) cv_.notify_all();
}

size_t ConnectionSet::size() const {
  std::lock_guard lock(mu_);
  return open_.size();
}

void ConnectionSet::shutdown_all(uint16_t code) {
  std::vector<std::shared_ptr<Closable>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : open_) {
      if (auto c = w.lock()) all.push_back(std::move(c));
    }
  }
  for (auto& c : all) c->shutdown(code);
}

bool ConnectionSet::wait_empty(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return open_.empty(); });
}

}  // namespace imlog::gw
