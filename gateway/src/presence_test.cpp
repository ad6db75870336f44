// Presence across gateways: one gateway's CommandBus writes a Delivery with a PresenceNote to
// another gateway's im.deliver.<id> topic (the log's delivery transport), and that gateway's bus
// hands it over as a Push with the presence (not an event). Real LocalLog on disk; no servers needed. Plus the avatar checks.

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "avatar.h"
#include "imlog/engine/local_log.h"
#include "imlog/gateway/command_bus.h"
#include "imlog/tasks/sessions.h"
#include "presence.h"

namespace imlog::gw {
namespace {

using namespace std::chrono_literals;

struct Dir {
  Dir() {
    path = std::filesystem::temp_directory_path() / ("imlog-presence-" + std::to_string(::getpid()) + "-" +
                                                     std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~Dir() { std::filesystem::remove_all(path); }
  std::filesystem::path path;
  static inline int counter = 0;
};

TEST(PresenceDelivery, ReachesTheOtherGatewaysBusAsAPresencePush) {
  Dir dir;
  LocalLogConfig lc;
  lc.dir = (dir.path / "log").string();
  auto log = LocalLog::open(lc);
  ASSERT_TRUE(log) << log.error().to_string();
  ManualClock clock;
  auto commands = log_commands(**log);
  auto deliveries = log_deliveries(**log);
  CommandBus here(*commands, *deliveries, "gw-here", clock), there(*commands, *deliveries, "gw-there", clock);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<Push> got;
  ASSERT_TRUE(there.start([&](std::vector<Push>&& pushes) {
    std::lock_guard lock(mu);
    for (auto& p : pushes) got.push_back(std::move(p));
    cv.notify_all();
  }));
  ASSERT_TRUE(here.start([](std::vector<Push>&&) {}));

  fb::DeliveryT d;
  d.recipients = {7, 9};
  d.presence = std::make_unique<fb::PresenceNoteT>();
  d.presence->user_id = 42;
  d.presence->status = static_cast<uint8_t>(PresenceStatus::away);
  d.presence->last_seen_ms = 1'700'000'000'123;
  here.deliver("gw-there", d);

  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return !got.empty(); })) << "no push arrived on gw-there";
  const Push& p = got.front();
  EXPECT_EQ(p.recipients, (std::vector<uint64_t>{7, 9}));
  EXPECT_FALSE(p.event_bytes) << "a presence push carries no event";
  ASSERT_TRUE(p.presence);
  EXPECT_EQ(p.presence->user_id, 42u);
  EXPECT_EQ(p.presence->status, static_cast<uint8_t>(PresenceStatus::away));
  EXPECT_EQ(p.presence->last_seen_ms, 1'700'000'000'123);
  lock.unlock();
  here.stop();
  there.stop();
}

TEST(KeyedWorkers, KeepsOneKeysOrderRefusesBeyondTheQueueAndDrainsOnStop) {
  KeyedWorkers workers("test", 2, 3);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::vector<int> ran;
  auto record = [&](int n) {
    std::lock_guard lock(mu);
    ran.push_back(n);
  };
  // Key 0's worker blocks on its first task; three more queue behind it, the fifth is refused.
  std::atomic<bool> started{false};
  ASSERT_TRUE(workers.post(0, [&] {
    started = true;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    ran.push_back(1);
  }));
  while (!started) std::this_thread::sleep_for(1ms);  // the worker took it: its queue is empty
  EXPECT_TRUE(workers.post(2, [&] { record(2); }));
  EXPECT_TRUE(workers.post(4, [&] { record(3); }));
  EXPECT_TRUE(workers.post(0, [&] { record(4); }));
  EXPECT_FALSE(workers.post(6, [&] { record(99); })) << "a full queue refuses";
  // Another worker's key still runs while key 0's worker is stuck.
  std::atomic<bool> other{false};
  ASSERT_TRUE(workers.post(1, [&] { other = true; }));
  for (int i = 0; i < 500 && !other; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(other.load()) << "a stalled worker holds up only its own keys";
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  workers.stop();  // runs what was queued
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3, 4}));
  bool inline_ran = false;
  EXPECT_TRUE(workers.post(0, [&] { inline_ran = true; }));
  EXPECT_TRUE(inline_ran) << "after stop a task runs on the caller's thread";
}

TEST(PresenceFrame, NamesTheStatus) {
  auto f = presence_frame(Presence{.user_id = 5, .status = PresenceStatus::busy, .last_seen_ms = 77});
  EXPECT_EQ(*f, R"({"type":"presence","data":{"user_id":5,"status":"busy","last_seen":77}})");
}

TEST(Avatar, RecognisesImagesByTheirFirstBytes) {
  using namespace std::string_view_literals;
  EXPECT_EQ(image_extension("\x89PNG\r\n\x1a\nrest"sv), "png");
  EXPECT_EQ(image_extension("\xff\xd8\xff\xe0"sv), "jpg");
  EXPECT_EQ(image_extension("GIF89a...."sv), "gif");
  EXPECT_EQ(image_extension("RIFF\x10\0\0\0WEBPVP8 "sv), "webp");
  EXPECT_FALSE(image_extension("RIFF\x10\0\0\0WAVEfmt "sv));
  EXPECT_FALSE(image_extension("<svg xmlns=...>"sv));
  EXPECT_FALSE(image_extension(""sv));
  EXPECT_FALSE(image_extension("\x89PN"sv));
}

TEST(Avatar, OnlyContentAddressedNamesAreValid) {
  std::string hex(64, 'a');
  EXPECT_TRUE(valid_avatar_name(hex + ".png"));
  EXPECT_TRUE(valid_avatar_name(hex + ".webp"));
  EXPECT_FALSE(valid_avatar_name(hex + ".svg"));
  EXPECT_FALSE(valid_avatar_name(std::string(64, 'A') + ".png"));
  EXPECT_FALSE(valid_avatar_name("../" + hex.substr(3) + ".png"));
  EXPECT_FALSE(valid_avatar_name(hex + ".png/../x"));
  EXPECT_FALSE(valid_avatar_name(hex));
  EXPECT_EQ(avatar_content_type(hex + ".jpg"), "image/jpeg");
}

TEST(Avatar, StoresByHashOnceAndLoadsTheSameBytes) {
  Dir dir;
  std::string bytes("GIF89a\0\x01\x02\xff", 10);
  auto name = store_avatar((dir.path / "avatars").string(), bytes, "gif");
  ASSERT_TRUE(name) << name.error().to_string();
  EXPECT_TRUE(valid_avatar_name(*name)) << *name;
  auto again = store_avatar((dir.path / "avatars").string(), bytes, "gif");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *name);
  EXPECT_EQ(load_avatar((dir.path / "avatars").string(), *name), bytes);
  EXPECT_FALSE(load_avatar((dir.path / "avatars").string(), "../" + *name));
  EXPECT_FALSE(load_avatar("", *name)) << "no directory: avatars are off, nothing is read from /";
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path / "avatars")) files += e.is_regular_file();
  EXPECT_EQ(files, 1u) << "no temporary file left behind";
}

}  // namespace
}  // namespace imlog::gw
