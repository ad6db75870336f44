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

RegistryWorkers::RegistryWorkers(uint32_t threads, size_t max_queued) : max_queued_(std::max<size_t>(1, max_queued)) {
  for (uint32_t i = 0; i < std::max<uint32_t>(1, threads); ++i) workers_.push_back(std::make_unique<Worker>());
  for (auto& w : workers_) w->thread = std::thread([this, &w = *w] { run(w); });
}

RegistryWorkers::~RegistryWorkers() { stop(); }

bool RegistryWorkers::post(uint64_t key, std::function<void()> fn) {
  Worker& w = *workers_[key % workers_.size()];
  {
    std::lock_guard lock(w.mu);
    if (!w.exited) {
      if (!w.stopping && w.queue.size() >= max_queued_) return false;
      w.queue.push_back(std::move(fn));  // while stopping, still behind the user's earlier work
      w.cv.notify_one();
      return true;
    }
  }
  fn();  // the worker is gone
  return true;
}

void RegistryWorkers::stop() {
  if (stopped_.exchange(true)) return;
  for (auto& w : workers_) {
    std::lock_guard lock(w->mu);
    w->stopping = true;
    w->cv.notify_one();
  }
  for (auto& w : workers_) w->thread.join();
}

void RegistryWorkers::run(Worker& w) {
  std::unique_lock lock(w.mu);
  for (;;) {
    w.cv.wait(lock, [&] { return w.stopping || !w.queue.empty(); });
    if (w.queue.empty()) {  // stopping, and everything queued has run
      w.exited = true;
      return;
    }
    auto fn = std::move(w.queue.front());
    w.queue.pop_front();
    lock.unlock();
    fn();
    fn = nullptr;
    lock.lock();
  }
}

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
