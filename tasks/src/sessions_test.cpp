#include "imlog/tasks/sessions.h"

#include <gtest/gtest.h>

namespace imlog {
namespace {

std::vector<Presence> presence_of(const SessionRegistry& s, std::vector<uint64_t> users) {
  std::vector<Presence> out;
  s.presence(users, out);
  return out;
}

TEST(LocalSessions, LocatesEachGatewayOfAUserOnce) {
  auto s = make_local_sessions();
  s->connected(7, "gw-a", 1);
  s->connected(7, "gw-a", 2);
  s->connected(7, "gw-b", 3);
  std::vector<uint64_t> users{7, 8};
  std::vector<std::pair<uint64_t, std::string>> out;
  s->locate(users, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (std::pair<uint64_t, std::string>{7, "gw-a"}));
  EXPECT_EQ(out[1], (std::pair<uint64_t, std::string>{7, "gw-b"}));
  EXPECT_EQ(s->devices(7), 3u);
  s->disconnected(7, "gw-a", 1);
  s->disconnected(7, "gw-a", 2);
  EXPECT_EQ(s->devices(7), 1u);
}

TEST(LocalSessions, PresenceGoesOnlineAwayAndOfflineWithLastSeen) {
  ManualClock clock(1000);
  auto s = make_local_sessions(clock);
  EXPECT_EQ(presence_of(*s, {5}), (std::vector<Presence>{{5, PresenceStatus::offline, 0}}));

  s->connected(5, "gw", 1);
  EXPECT_EQ(presence_of(*s, {5}), (std::vector<Presence>{{5, PresenceStatus::online, 1000}}));

  clock.advance_ms(500);
  s->heartbeat(5, "gw", 1);
  EXPECT_EQ(s->set_status(5, PresenceStatus::away), SetStatusResult::saved);
  EXPECT_EQ(presence_of(*s, {5}), (std::vector<Presence>{{5, PresenceStatus::away, 1500}}));
  EXPECT_EQ(s->set_status(5, PresenceStatus::offline), SetStatusResult::invalid)
      << "offline is not a status one chooses";

  clock.advance_ms(500);
  s->disconnected(5, "gw", 1);
  EXPECT_EQ(presence_of(*s, {5}), (std::vector<Presence>{{5, PresenceStatus::offline, 2000}}));

  // The chosen status outlives the session; online clears it.
  s->connected(5, "gw", 2);
  EXPECT_EQ(presence_of(*s, {5})[0].status, PresenceStatus::away);
  EXPECT_EQ(s->set_status(5, PresenceStatus::online), SetStatusResult::saved);
  EXPECT_EQ(presence_of(*s, {5})[0].status, PresenceStatus::online);
}

TEST(LocalSessions, AHeartbeatRegistersASessionTheRegistryDidNotKnow) {
  ManualClock clock(700);
  auto s = make_local_sessions(clock);
  s->heartbeat(9, "gw", 1);
  EXPECT_EQ(presence_of(*s, {9})[0], (Presence{9, PresenceStatus::online, 700}));
  EXPECT_EQ(s->devices(9), 1u);
}

TEST(PresenceNames, RoundTrip) {
  for (auto st : {PresenceStatus::offline, PresenceStatus::online, PresenceStatus::away, PresenceStatus::busy}) {
    EXPECT_EQ(parse_presence(presence_name(st)), st);
  }
  EXPECT_FALSE(parse_presence("asleep").has_value());
}

}  // namespace
}  // namespace imlog
