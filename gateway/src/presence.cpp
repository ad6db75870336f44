#include "presence.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/gateway/command_bus.h"
#include "json.h"
#include "services.h"

namespace imlog::gw {

void write_presence(JsonOut& j, const Presence& p) {
  j.begin_object();
  j.field("user_id", p.user_id);
  j.field("status", presence_name(p.status));
  j.field("last_seen", p.last_seen_ms);
  j.end_object();
}

std::shared_ptr<const std::string> presence_frame(const Presence& p) {
  JsonOut j;
  j.begin_object().field("type", "presence").key("data");
  write_presence(j, p);
  j.end_object();
  return std::make_shared<const std::string>(j.take());
}

void write_hidden_presence(JsonOut& j, uint64_t user) {
  j.begin_object();
  j.field("user_id", user);
  j.field("status", "unknown");
  j.field("last_seen", int64_t{0});
  j.end_object();
}

namespace {

// Whether `who` has blocked `whom`; an unreadable block list counts as blocked (presence is not
// worth a leak).
bool has_blocked(Services& svc, uint64_t who, uint64_t whom) {
  auto blocked = svc.query.model().blocked(who);
  if (!blocked) {
    logger("gateway")->warn("block list of user {} unavailable: {}", who, blocked.error().message());
    return true;
  }
  return std::find(blocked->begin(), blocked->end(), whom) != blocked->end();
}

}  // namespace

Result<std::unordered_set<uint64_t>> presence_visible(Services& svc, uint64_t viewer, std::span<const uint64_t> users) {
  std::unordered_set<uint64_t> out;
  std::unordered_set<uint64_t> wanted;
  for (uint64_t u : users) {
    if (u == viewer) out.insert(u);
    else wanted.insert(u);
  }
  if (wanted.empty()) return out;
  auto friends = svc.query.model().friends(viewer);
  IMLOG_TRY(friends);
  auto blocked = svc.query.model().blocked(viewer);
  IMLOG_TRY(blocked);
  std::unordered_set<uint64_t> blocked_set(blocked->begin(), blocked->end());
  for (const auto& f : *friends) {
    if (f.status != "friends" || !wanted.contains(f.user_id) || blocked_set.contains(f.user_id)) continue;
    auto theirs = svc.query.model().blocked(f.user_id);
    IMLOG_TRY(theirs);
    if (std::find(theirs->begin(), theirs->end(), viewer) == theirs->end()) out.insert(f.user_id);
  }
  return out;
}

Presence presence_of(Services& svc, uint64_t user) {
  std::vector<Presence> out;
  uint64_t ids[] = {user};
  svc.sessions.presence(ids, out);
  return out.empty() ? Presence{.user_id = user} : out.front();
}

void choose_status(Services& svc, uint64_t user, std::string_view status_name, std::function<void(StatusChoice)> done) {
  auto status = parse_presence(status_name);
  if (!status || *status == PresenceStatus::offline) {
    return done({400, "invalid", "status must be online, away or busy (offline is having no connection)", {}});
  }
  // The registry round trips run on the user's registry worker, off the I/O threads.
  auto work = [&svc, user, status = *status, done] {
    auto set = svc.sessions.set_status(user, status);
    if (set == SetStatusResult::unavailable) {
      return done({503, "unavailable", "presence store unavailable: status not saved", {}});
    }
    if (set != SetStatusResult::saved) {
      return done({400, "invalid", "status must be online, away or busy (offline is having no connection)", {}});
    }
    // Offline, the choice waits for the next connection; friends hear nothing new now.
    if (svc.sessions.devices(user) > 0) announce_presence(svc, user);
    done({200, {}, {}, presence_of(svc, user)});
  };
  if (!svc.registry.post(user, work)) done({503, "unavailable", "the presence store is busy; retry shortly", {}});
}

void announce_presence(Services& svc, uint64_t user) {
  if (svc.bus_stopped.load()) return;  // shutting down: the bus may already be gone
  auto friends = svc.query.model().friends(user);
  if (!friends) {
    logger("gateway")->warn("presence of user {} not pushed: friend list unavailable: {}", user,
                            friends.error().message());
    return;
  }
  auto blocked = svc.query.model().blocked(user);
  if (!blocked) {
    logger("gateway")->warn("presence of user {} not pushed: block list unavailable: {}", user,
                            blocked.error().message());
    return;
  }
  std::vector<uint64_t> ids;
  for (const auto& f : *friends) {
    if (f.status == "friends" && std::find(blocked->begin(), blocked->end(), f.user_id) == blocked->end()) {
      ids.push_back(f.user_id);
    }
  }
  if (ids.empty()) return;
  std::vector<std::pair<uint64_t, std::string>> where;
  svc.sessions.locate(ids, where);
  if (where.empty()) return;
  Presence p = presence_of(svc, user);
  std::map<std::string, std::vector<uint64_t>, std::less<>> by_gateway;
  std::map<uint64_t, bool> blocked_us;  // online friends who blocked `user` (asked once each)
  for (auto& [friend_id, gateway] : where) {
    auto [it, fresh] = blocked_us.try_emplace(friend_id, false);
    if (fresh) it->second = has_blocked(svc, friend_id, user);
    if (!it->second) by_gateway[gateway].push_back(friend_id);
  }
  for (auto& [gateway, recipients] : by_gateway) {
    if (gateway == svc.gateway_id) {
      if (svc.stopping.load()) continue;  // this gateway's sessions are closing anyway
      auto frame = presence_frame(p);
      for (uint64_t r : recipients) svc.hub.push(r, frame, PushInfo{.actor = user});
      continue;
    }
    fb::DeliveryT d;
    d.recipients = std::move(recipients);
    d.presence = std::make_unique<fb::PresenceNoteT>();
    d.presence->user_id = p.user_id;
    d.presence->status = static_cast<uint8_t>(p.status);
    d.presence->last_seen_ms = p.last_seen_ms;
    svc.bus.deliver(gateway, d);
  }
}

}  // namespace imlog::gw
