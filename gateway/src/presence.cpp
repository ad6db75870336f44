#include "presence.h"

#include <map>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/gateway/command_bus.h"
#include "json.h"

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

Presence presence_of(Services& svc, uint64_t user) {
  std::vector<Presence> out;
  uint64_t ids[] = {user};
  svc.sessions.presence(ids, out);
  return out.empty() ? Presence{.user_id = user} : out.front();
}

void announce_presence(Services& svc, uint64_t user) {
  if (svc.bus_stopped.load()) return;  // shutting down: the bus may already be gone
  auto friends = svc.query.model().friends(user);
  if (!friends) {
    logger("gateway")->warn("presence of user {} not pushed: friend list unavailable: {}", user,
                            friends.error().message());
    return;
  }
  std::vector<uint64_t> ids;
  for (const auto& f : *friends) {
    if (f.status == "friends") ids.push_back(f.user_id);
  }
  if (ids.empty()) return;
  std::vector<std::pair<uint64_t, std::string>> where;
  svc.sessions.locate(ids, where);
  if (where.empty()) return;
  Presence p = presence_of(svc, user);
  std::map<std::string, std::vector<uint64_t>, std::less<>> by_gateway;
  for (auto& [friend_id, gateway] : where) by_gateway[gateway].push_back(friend_id);
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
