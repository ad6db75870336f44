// The RocksDB model: what each event makes of the model (read back through the ReadModel
// queries), that invalid events leave no trace, that dump() is ordered and canonical, and the
// property that re-applying any prefix of a log — in any batching — changes nothing.

#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <optional>
#include <set>

#include "imlog/engine/streams.h"
#include "imlog/testing/sinks.h"
#include "projection_test_util.h"

namespace imlog {
namespace {

using testing::EventLogBuilder;
using testing::Forgetful;
using testing::LogFixture;
using testing::Rows;
using testing::rows_of;

TEST(RocksDbModel, AConversationsHistoryHasEveryTimelineEventAndNoGaps) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob"), cat = b.register_user("cat");
  b.create_group(7, ann, {bob});
  uint64_t hello = b.message(group_stream(7), ann, "hello group");
  b.join(7, cat, bob);
  b.read(group_stream(7), bob, 2);  // not a row
  b.message(group_stream(7), cat, "hi all");
  b.role(7, bob, fb::Role::Admin, ann);
  b.remove(7, cat, bob);
  b.recall(group_stream(7), ann, hello, 2);
  b.leave(7, bob);
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));

  auto page = model->history(group_stream(7), testing::latest(100));
  IMLOG_ASSERT_OK(page);
  ASSERT_EQ(page->messages.size(), 8u);
  for (size_t i = 0; i < page->messages.size(); ++i) EXPECT_EQ(page->messages[i].seq_id, i + 1);
  const auto& m = page->messages;
  EXPECT_EQ(m[0].message_type, "system");
  EXPECT_EQ(m[0].sender_id, ann);
  EXPECT_NE(m[0].content.find("\"event\":\"group_created\""), std::string::npos) << m[0].content;
  EXPECT_EQ(m[1].message_id, hello);
  EXPECT_TRUE(m[1].recalled);
  EXPECT_EQ(m[1].content, "");
  EXPECT_EQ(m[1].message_type, "text");
  EXPECT_NE(m[2].content.find("\"event\":\"member_joined\",\"user_id\":" + std::to_string(cat)), std::string::npos)
      << m[2].content;
  EXPECT_EQ(m[3].content, "hi all");
  EXPECT_FALSE(m[3].recalled);
  EXPECT_NE(m[4].content.find("role_changed"), std::string::npos);
  EXPECT_NE(m[5].content.find("member_removed"), std::string::npos);
  EXPECT_NE(m[6].content.find("\"event\":\"message_recalled\",\"message_id\":\"" + std::to_string(hello) + "\""),
            std::string::npos)
      << m[6].content;
  EXPECT_NE(m[7].content.find("member_left"), std::string::npos);

  // By id: the recalled message and a system row alike.
  auto byid = model->message(hello);
  IMLOG_ASSERT_OK(byid);
  ASSERT_TRUE(byid->has_value());
  EXPECT_EQ((*byid)->seq_id, 2u);
  EXPECT_TRUE((*byid)->recalled);
  auto none = model->message(12345);
  IMLOG_ASSERT_OK(none);
  EXPECT_FALSE(none->has_value());
}

TEST(RocksDbModel, GroupsMembersAndRoles) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob"), cat = b.register_user("cat"),
           dan = b.register_user("dan");
  b.create_group(3, ann, {bob, cat}, "climbers");
  b.join(3, dan);
  b.leave(3, cat);
  b.role(3, bob, fb::Role::Owner, ann);  // ownership moves; ann stays an admin
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));

  auto g = model->group(3);
  IMLOG_ASSERT_OK(g);
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->name, "climbers");
  EXPECT_EQ((*g)->owner_id, bob);
  EXPECT_EQ((*g)->member_count, 3u);
  auto members = model->members(3, 0, 100);
  IMLOG_ASSERT_OK(members);
  std::map<uint64_t, std::string> roles;
  for (const auto& m : *members) roles[m.user_id] = m.role;
  EXPECT_EQ(roles, (std::map<uint64_t, std::string>{{ann, "admin"}, {bob, "owner"}, {dan, "member"}}));
  // Paging by user id.
  auto first = model->members(3, 0, 1);
  IMLOG_ASSERT_OK(first);
  ASSERT_EQ(first->size(), 1u);
  auto rest = model->members(3, first->front().user_id, 100);
  IMLOG_ASSERT_OK(rest);
  EXPECT_EQ(rest->size(), 2u);
  auto missing = model->group(4);
  IMLOG_ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());
}

TEST(RocksDbModel, UsersProfilesSettingsAndCredentials) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("Ann_1", "Annie"), bob = b.register_user("bob");
  b.profile(ann, "", "climbing", "https://a/1.png");  // nickname absent: unchanged
  fb::SettingsUpdatedT s;
  s.allow_search = false;
  s.message_policy = fb::MessagePolicy::FriendsOnly;
  s.quiet_start_minute = 60;
  s.muted = {"world", group_stream(9)};
  b.settings(bob, s);
  fb::SettingsUpdatedT s2;
  s2.unmuted = {"world"};
  b.settings(bob, s2);
  b.profile(bob, "Bobby");
  fb::SettingsUpdatedT zone;
  zone.time_zone = "Europe/Paris";
  b.settings(bob, zone);
  b.device(ann, 9, fb::PushPlatform::Webhook, "https://hooks.example/a", "app.a");
  b.device(ann, 3, fb::PushPlatform::Fcm, "fcm:a");
  b.device(bob, 4, fb::PushPlatform::Apns, std::string(64, 'b'));
  b.remove_device(bob, 4);
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));

  auto a = model->user(ann);
  IMLOG_ASSERT_OK(a);
  ASSERT_TRUE(a->has_value());
  EXPECT_EQ((*a)->username, "Ann_1");
  EXPECT_EQ((*a)->nickname, "Annie");
  EXPECT_EQ((*a)->signature, "climbing");
  EXPECT_EQ((*a)->avatar_url, "https://a/1.png");
  EXPECT_EQ((*a)->email, "Ann_1@example.com");
  EXPECT_TRUE((*a)->allow_search);
  EXPECT_GT((*a)->created_at, 0);
  auto bb = model->user(bob);
  IMLOG_ASSERT_OK(bb);
  ASSERT_TRUE(bb->has_value());
  EXPECT_EQ((*bb)->nickname, "Bobby");
  EXPECT_FALSE((*bb)->allow_search);
  EXPECT_EQ((*bb)->message_policy, "friends_only");
  EXPECT_EQ((*bb)->quiet_start_minute, 60);
  EXPECT_EQ((*bb)->quiet_end_minute, -1);
  EXPECT_EQ((*bb)->muted, std::vector<std::string>{group_stream(9)});
  EXPECT_EQ((*bb)->time_zone, "Europe/Paris");
  EXPECT_TRUE((*bb)->devices.empty()) << "removed";
  ASSERT_EQ((*a)->devices.size(), 2u);
  EXPECT_EQ((*a)->devices[0].device_id, 3u) << "by device id";
  EXPECT_EQ((*a)->devices[0].platform, "fcm");
  EXPECT_EQ((*a)->devices[1].token, "https://hooks.example/a");
  EXPECT_EQ((*a)->devices[1].app_id, "app.a");
  EXPECT_GT((*a)->devices[1].created_at, 0);
  EXPECT_EQ((*a)->time_zone, "");

  auto cred = model->credentials("Ann_1");
  IMLOG_ASSERT_OK(cred);
  ASSERT_TRUE(cred->has_value());
  EXPECT_EQ((*cred)->user_id, ann);
  EXPECT_FALSE((*cred)->password_hash.empty());
  auto nobody = model->credentials("ann_1");  // names are exact
  IMLOG_ASSERT_OK(nobody);
  EXPECT_FALSE(nobody->has_value());

  // Search by username or nickname prefix, case-insensitive, allow_search only.
  auto found = model->search_users("ANN", 0, 10);
  IMLOG_ASSERT_OK(found);
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->front().user_id, ann);
  auto by_nick = model->search_users("anni", 0, 10);
  IMLOG_ASSERT_OK(by_nick);
  EXPECT_EQ(by_nick->size(), 1u);
  auto hidden = model->search_users("bob", 0, 10);
  IMLOG_ASSERT_OK(hidden);
  EXPECT_TRUE(hidden->empty());
  auto after = model->search_users("ann", ann, 10);
  IMLOG_ASSERT_OK(after);
  EXPECT_TRUE(after->empty());
}

TEST(RocksDbModel, FriendsBlocksAndFriendGroups) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob"), cat = b.register_user("cat"),
           dan = b.register_user("dan");
  b.friend_request(ann, bob, "hi, it's ann");
  b.friend_accept(bob, ann);
  b.friend_request(cat, ann, "");
  b.friend_request(ann, dan);
  b.friend_reject(dan, ann);
  b.friend_group(ann, bob, "climbing");
  b.block(ann, dan);
  b.block(ann, cat);
  b.unblock(ann, cat);
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));

  auto fr = model->friends(ann);
  IMLOG_ASSERT_OK(fr);
  std::map<uint64_t, std::string> status;
  for (const auto& x : *fr) status[x.user_id] = x.status;
  EXPECT_EQ(status, (std::map<uint64_t, std::string>{{bob, "friends"}, {cat, "incoming"}}));
  for (const auto& x : *fr) {
    if (x.user_id == bob) {
      EXPECT_EQ(x.note, "hi, it's ann");
      EXPECT_EQ(x.group_name, "climbing");
      EXPECT_GT(x.since, 0);
    }
  }
  auto bobs = model->friends(bob);
  IMLOG_ASSERT_OK(bobs);
  ASSERT_EQ(bobs->size(), 1u);
  EXPECT_EQ(bobs->front().status, "friends");
  auto bl = model->blocked(ann);
  IMLOG_ASSERT_OK(bl);
  EXPECT_EQ(*bl, std::vector<uint64_t>{dan});
  auto groups = model->friend_groups(ann);
  IMLOG_ASSERT_OK(groups);
  EXPECT_EQ(*groups, std::vector<std::string>{"climbing"});
  // The relationship events are system rows of the one-to-one conversation.
  auto h = model->history(single_stream(ann, bob), testing::latest(10));
  IMLOG_ASSERT_OK(h);
  ASSERT_EQ(h->messages.size(), 2u);
  EXPECT_NE(h->messages[0].content.find("friend_requested"), std::string::npos);
  EXPECT_NE(h->messages[1].content.find("friend_accepted"), std::string::npos);
}

TEST(RocksDbModel, EventsOfAZombieWriterLeaveNoTrace) {
  LogFixture with_zombies, without;
  uint64_t ann = 0, bob = 0;
  for (LogFixture* f : {&with_zombies, &without}) {
    auto& b = *f->builder;
    ann = b.register_user("ann");
    bob = b.register_user("bob");
    b.message(single_stream(ann, bob), ann, "one");
    if (f == &with_zombies) {
      b.zombie_message(single_stream(ann, bob), bob, "from a writer that lost the partition");
      b.zombie_message(std::string(kWorldStream), bob, "also ignored");
    }
    b.message(single_stream(ann, bob), bob, "two");
  }
  auto a = with_zombies.model(), b = without.model();
  IMLOG_ASSERT_OK(with_zombies.project(*a));
  IMLOG_ASSERT_OK(without.project(*b));
  Rows ra = rows_of(*a), rb = rows_of(*b);
  // Event ids and times differ between the two logs only where the zombie events took them:
  // compare what the reader sees instead of the raw rows.
  auto ha = a->history(single_stream(ann, bob), testing::latest(10));
  IMLOG_ASSERT_OK(ha);
  std::vector<std::string> contents;
  for (const auto& m : ha->messages) contents.push_back(m.content);
  EXPECT_EQ(contents, (std::vector<std::string>{"one", "two"}));
  auto world = a->history(std::string(kWorldStream), testing::latest(10));
  IMLOG_ASSERT_OK(world);
  EXPECT_TRUE(world->messages.empty());
  EXPECT_EQ(ra.size(), rb.size());
  for (const auto& [k, v] : ra) EXPECT_EQ(v.find("writer that lost"), std::string::npos) << k;
}

TEST(RocksDbModel, DumpIsOrderedByKeyWithoutPositions) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob");
  b.create_group(10, ann, {bob});
  b.create_group(1, bob, {});
  for (int i = 0; i < 20; ++i) b.message(group_stream(i % 2 ? 10 : 1), i % 2 ? ann : bob, "message " + std::to_string(i));
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model, 3));
  Rows rows = rows_of(*model);
  ASSERT_FALSE(rows.empty());
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_LT(rows[i - 1].first, rows[i].first);
  for (const auto& [k, v] : rows) EXPECT_FALSE(k.starts_with("p|")) << k;
  auto positions = model->positions();
  IMLOG_ASSERT_OK(positions);
  EXPECT_EQ(positions->size(), 2u);
  // A dump can stop early.
  size_t seen = 0;
  IMLOG_ASSERT_OK(model->dump([&](std::string_view, std::string_view) { return ++seen < 3; }));
  EXPECT_EQ(seen, 3u);
}

TEST(RocksDbModel, ReopenedModelKeepsRowsAndPositions) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann");
  b.message(std::string(kWorldStream), ann, "persisted");
  Rows before;
  std::vector<PartitionPosition> positions;
  {
    auto model = f.model("m", /*disable_wal=*/true);
    IMLOG_ASSERT_OK(f.project(*model));
    before = rows_of(*model);
    auto p = model->positions();
    IMLOG_ASSERT_OK(p);
    positions = *p;
  }
  auto again = f.model("m");
  EXPECT_EQ(rows_of(*again), before);
  auto p = again->positions();
  IMLOG_ASSERT_OK(p);
  EXPECT_EQ(*p, positions);
  auto ends = f.builder->ends();
  IMLOG_ASSERT_OK(ends);
  for (const auto& pos : *p) {
    EXPECT_EQ(pos.next_offset, (*ends)[static_cast<size_t>(pos.partition)]);
    EXPECT_NE(pos.token, 0u);
  }
}

// RetentionSet (schema 9): the latest override of each side, kept apart from history (expiry
// leaves it), and applied twice it is what it was once.
TEST(RocksDbModel, RetentionOverridesOfAGroupAndAOneToOne) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob");
  const uint64_t lo = std::min(ann, bob), hi = std::max(ann, bob);
  const std::string g = group_stream(7), s = single_stream(ann, bob);
  b.create_group(7, ann, {bob});
  b.message(s, ann, "hello");
  auto model = f.model();
  auto overrides = [&](const std::string& conv) {
    auto o = model->retention(conv);
    EXPECT_TRUE(o) << o.error().to_string();
    return o ? *o : RetentionOverrides{};
  };
  auto step = [&] { IMLOG_ASSERT_OK(f.project(*model)); };
  step();
  EXPECT_EQ(overrides(g), RetentionOverrides{}) << "none set: the default";

  b.retention(g, ann, 30);
  step();
  EXPECT_EQ(overrides(g), (RetentionOverrides{30, std::nullopt}));
  b.retention(g, ann, 0);
  step();
  EXPECT_EQ(overrides(g), (RetentionOverrides{0, std::nullopt})) << "0 is for ever, not none";
  b.retention(g, ann, std::nullopt);
  step();
  EXPECT_EQ(overrides(g), RetentionOverrides{}) << "back to the default";
  b.retention(g, ann, 30);

  // A one-to-one: each user their own side, whoever sets first.
  b.retention(s, hi, 7);
  step();
  EXPECT_EQ(overrides(s), (RetentionOverrides{std::nullopt, 7}));
  b.retention(s, lo, 30);
  step();
  EXPECT_EQ(overrides(s), (RetentionOverrides{30, 7}));
  b.retention(s, hi, std::nullopt);
  step();
  EXPECT_EQ(overrides(s), (RetentionOverrides{30, std::nullopt}));
  EXPECT_EQ(overrides(std::string(kWorldStream)), RetentionOverrides{});
  EXPECT_EQ(overrides("not a conversation"), RetentionOverrides{});

  // Expiry takes the retention_set rows, not the overrides.
  b.expire(s, b.last_seq(s));
  b.expire(g, b.last_seq(g));
  step();
  auto gone = model->history(s, testing::latest(10));
  IMLOG_ASSERT_OK(gone);
  EXPECT_TRUE(gone->messages.empty());
  EXPECT_EQ(overrides(s), (RetentionOverrides{30, std::nullopt}));
  EXPECT_EQ(overrides(g), (RetentionOverrides{30, std::nullopt}));

  // Applied twice, from the start and in other batches: the same rows, the same overrides.
  Rows once = rows_of(*model);
  EXPECT_TRUE(std::any_of(once.begin(), once.end(), [&](const auto& r) { return r.first == "rt|" + g; }));
  Forgetful again(*model);
  IMLOG_ASSERT_OK(f.project(again, 3));
  EXPECT_EQ(rows_of(*model), once);
  EXPECT_EQ(overrides(s), (RetentionOverrides{30, std::nullopt}));
  EXPECT_EQ(overrides(g), (RetentionOverrides{30, std::nullopt}));
}

// An erasure after an expiry: the erased user's rows that had expired are gone, so their search
// postings cannot be found through them; the erasure takes out every posting at or below each of
// the user's conversations' expiry, and no key or value of the model names the user's words.
TEST(RocksDbModel, AnErasureTakesTheWordsOfRowsThatHadExpired) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob");
  const std::string s = single_stream(ann, bob);
  b.message(s, ann, "annword alpha");
  b.message(s, bob, "bobword beta");
  b.message(s, ann, "annword gamma");
  b.message(s, bob, "bobword delta");
  b.expire(s, 2);
  b.erase_user(ann);
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));
  Rows rows = rows_of(*model);
  for (const auto& [k, v] : rows) {
    EXPECT_EQ(k.find("annword"), std::string::npos) << k << " = " << v;
    EXPECT_EQ(v.find("annword"), std::string::npos) << k << " = " << v;
  }
  auto hit = model->search_messages(SearchRequest{bob, "bobword", "", 0, 10});
  IMLOG_ASSERT_OK(hit);
  ASSERT_EQ(hit->messages.size(), 1u) << "bob's row above the expiry is still found";
  EXPECT_EQ(hit->messages[0].content, "bobword delta");

  // Applied again from the start in small batches: the same rows.
  Forgetful again(*model);
  IMLOG_ASSERT_OK(f.project(again, 2));
  EXPECT_EQ(rows_of(*model), rows);
}

// A model an older build projected has no rt| rows: opening it fills them in from the
// retention_set rows its history still holds, as a projection from scratch writes them.
TEST(RocksDbModel, AModelProjectedBeforeTheOverridesWereKeptGetsThemWhenOpened) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob");
  const std::string g = group_stream(7), s = single_stream(ann, bob);
  b.create_group(7, ann, {bob});
  b.retention(g, ann, 30);
  b.retention(g, ann, std::nullopt);
  b.retention(g, ann, 5);
  b.retention(s, ann, 0);
  b.retention(s, bob, 9);
  b.retention(s, bob, std::nullopt);
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));
  const Rows rows = rows_of(*model);
  ASSERT_TRUE(model->flush());  // the raw DB below has no merge operator to recover a WAL with
  model.reset();
  {
    rocksdb::Options o;
    o.disable_auto_compactions = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, (f.dir.path() / "model").string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteOptions w;
    ASSERT_TRUE(db->Delete(w, "v|retention").ok());
    ASSERT_TRUE(db->DeleteRange(w, db->DefaultColumnFamily(), "rt|", "rt}").ok());
    ASSERT_TRUE(db->Close().ok());
  }
  model = f.model();
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(rows_of(*model), rows);
  auto one = model->retention(s);
  IMLOG_ASSERT_OK(one);
  EXPECT_EQ(one->a.has_value() ? one->a : one->b, std::optional<uint32_t>(0)) << "ann's for ever";
  EXPECT_EQ(one->a.has_value() + one->b.has_value(), 1) << "bob's back on the default";
  auto group = model->retention(g);
  IMLOG_ASSERT_OK(group);
  EXPECT_EQ(*group, (RetentionOverrides{5, std::nullopt}));
}

// ---- the property: re-applying changes nothing ------------------------------------------------

// One step of a generated log. Interpreted against a small world: five users, two groups, the
// one-to-one streams between them and world. The builder writes what it is told; whether the
// engine would have accepted it does not matter to a projection's idempotence.
struct Step {
  int kind = 0;
  int a = 0, b = 0, c = 0;
};

const std::vector<std::string> kWords = {"hello", "world", "climb", "rock", "coffee", "Tea", "你好", "世界", "42",
                                         "ok"};

void play(const std::vector<Step>& steps, EventLogBuilder& b) {
  std::vector<uint64_t> users;
  for (const char* n : {"ann", "bob", "cat", "dan", "eve"}) users.push_back(b.register_user(n));
  auto user = [&](int i) { return users[static_cast<size_t>(i) % users.size()]; };
  auto stream = [&](int s, int x, int y) -> std::string {
    switch (s % 4) {
      case 0: return std::string(kWorldStream);
      case 1: return group_stream(1);
      case 2: return group_stream(2);
      default: {
        uint64_t p = user(x), q = user(y);
        if (p == q) q = user(y + 1);
        return single_stream(p, q);
      }
    }
  };
  std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> sent;  // stream → (id, seq)
  for (const Step& s : steps) {
    std::string st = stream(s.a, s.b, s.c);
    switch (s.kind) {
      case 0: case 1: case 2: case 3: {
        std::string text = kWords[static_cast<size_t>(s.c) % kWords.size()] + " " +
                           kWords[static_cast<size_t>(s.b + s.c) % kWords.size()];
        uint64_t id = b.message(st, user(s.b), text);
        sent[st].emplace_back(id, b.last_seq(st));
        break;
      }
      case 4: {
        auto& v = sent[st];
        if (!v.empty()) {
          auto [id, seq] = v[static_cast<size_t>(s.c) % v.size()];
          b.recall(st, user(s.b), id, seq);
        }
        break;
      }
      case 5:
        if (b.last_seq(st) > 0) b.read(st, user(s.b), 1 + static_cast<uint64_t>(s.c) % b.last_seq(st));
        break;
      case 6: {
        // With or without settings (a group created before schema 3).
        auto policy = s.c % 3 == 0 ? std::nullopt : std::optional(static_cast<fb::JoinPolicy>(s.c % 2));
        auto rule = s.c % 3 == 0 ? std::nullopt : std::optional(static_cast<fb::HistoryRule>(s.a % 2));
        b.create_group(1 + s.a % 2, user(s.b), {user(s.c)}, "", policy, rule);
        break;
      }
      case 7: b.join(1 + s.a % 2, user(s.b), s.c % 2 ? user(s.c) : 0); break;
      case 8: b.leave(1 + s.a % 2, user(s.b)); break;
      case 9: b.remove(1 + s.a % 2, user(s.b), user(s.c), s.c % 2 == 0); break;
      case 17: b.unban(1 + s.a % 2, user(s.b), user(s.c)); break;
      case 18: {
        auto policy = s.c % 3 == 0 ? std::nullopt : std::optional(static_cast<fb::JoinPolicy>(s.c % 2));
        auto rule = s.b % 3 == 0 ? std::nullopt : std::optional(static_cast<fb::HistoryRule>(s.b % 2));
        b.group_settings(1 + s.a % 2, user(s.c), policy, rule);
        break;
      }
      case 10: b.role(1 + s.a % 2, user(s.b), static_cast<fb::Role>(s.c % 3), user(s.a)); break;
      case 11: {
        uint64_t p = user(s.b), q = user(s.c);
        if (p == q) q = user(s.c + 1);
        switch (s.a % 6) {
          case 0: b.friend_request(p, q, "note " + std::to_string(s.a)); break;
          case 1: b.friend_accept(p, q); break;
          case 2: b.friend_reject(p, q); break;
          case 3: b.friend_remove(p, q); break;
          case 4: b.block(p, q); break;
          default: b.unblock(p, q); break;
        }
        break;
      }
      case 12: b.profile(user(s.b), s.c % 2 ? "nick" + std::to_string(s.c) : "", "sig" + std::to_string(s.a)); break;
      case 13: {
        fb::SettingsUpdatedT set;
        if (s.c % 2) set.allow_search = s.a % 2 == 0;
        if (s.c % 3 == 0) set.muted = {st};
        if (s.c % 3 == 1) set.unmuted = {st};
        b.settings(user(s.b), set);
        break;
      }
      case 14: b.friend_group(user(s.b), user(s.c), "g" + std::to_string(s.a % 3)); break;
      case 15: b.zombie_message(st, user(s.b), "zombie"); break;
      case 16: b.new_epoch(s.a % b.partitions()); break;
      case 19: {
        // A policy of either side of `st` (world too: the engine would refuse it, the model must
        // not care), for ever, some days or back to the default.
        auto keep = s.c % 3 == 0 ? std::nullopt : std::optional<uint32_t>(static_cast<uint32_t>(s.c % 3 == 1 ? 0 : s.c));
        b.retention(st, user(s.b), keep);
        break;
      }
    }
  }
}

rc::Gen<Step> gen_step() {
  return rc::gen::apply(
      [](int kind, int a, int b, int c) { return Step{kind, a, b, c}; }, rc::gen::inRange(0, 20),
      rc::gen::inRange(0, 100), rc::gen::inRange(0, 100), rc::gen::inRange(0, 100));
}

std::vector<int64_t> prefix_of(const std::vector<int64_t>& ends) {
  std::vector<int64_t> out;
  for (int64_t e : ends) out.push_back(*rc::gen::inRange<int64_t>(0, e + 1));
  return out;
}

// Each case builds a log and three models on disk (fsyncs included), so cases are few and small:
// 30 cases of at most 40 steps unless RC_PARAMS says otherwise.
void reapplying_any_prefix_changes_nothing() {
  auto steps = *rc::gen::resize(40, rc::gen::container<std::vector<Step>>(gen_step()));
  LogFixture f(2);
  play(steps, *f.builder);
  auto ends = f.builder->ends();
  RC_ASSERT(ends.has_value());
  // Any prefix P of the log, and any prefix Q of P to apply a second time.
  auto p = prefix_of(*ends);
  std::vector<int64_t> q;
  for (int64_t e : p) q.push_back(*rc::gen::inRange<int64_t>(0, e + 1));
  auto batch1 = *rc::gen::inRange<uint64_t>(1, 40);
  auto batch2 = *rc::gen::inRange<uint64_t>(1, 40);
  auto batch3 = *rc::gen::inRange<uint64_t>(1, 40);

  auto once = f.model("once");
  auto twice = f.model("twice");
  RC_ASSERT(once && twice);
  RC_ASSERT(Projector(*f.log, *once, ProjectorConfig{batch1}).run_until(p).has_value());
  RC_ASSERT(Projector(*f.log, *twice, ProjectorConfig{batch2}).run_until(p).has_value());
  Rows after_first = rows_of(*twice);
  Forgetful again(*twice);
  RC_ASSERT(Projector(*f.log, again, ProjectorConfig{batch3}).run_until(q).has_value());
  // Different batch sizes interleave the partitions differently: the rows do not care.
  RC_ASSERT(rows_of(*once) == after_first);
  RC_ASSERT(rows_of(*twice) == after_first);
}

TEST(RocksDbModelProperty, ReapplyingAnyPrefixOfALogChangesNothing) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  if (std::getenv("RC_PARAMS") == nullptr) params.maxSuccess = 30;
  rc::detail::TestMetadata metadata;
  metadata.id = "RocksDbModelProperty/ReapplyingAnyPrefixOfALogChangesNothing";
  metadata.description = metadata.id;
  auto result = rc::detail::checkTestable([] { reapplying_any_prefix_changes_nothing(); }, metadata, params);
  if (!result.is<rc::detail::SuccessResult>()) {
    std::ostringstream ss;
    rc::detail::printResultMessage(result, ss);
    FAIL() << ss.str() << "\n(rerun with RC_PARAMS=\"seed=" << params.seed << "\")";
  }
}

}  // namespace
}  // namespace imlog
