// The gRPC query service carries every ReadModel answer across unchanged, and turns an
// unreachable service into a retryable error. The model behind the server here is a fixed test
// double (FixedModel): what is under test is the transport, which serves any ReadModel alike.

#include "imlog/projections/query_grpc.h"

#include <gtest/gtest.h>

#include "imlog/testing/support.h"

namespace imlog {
namespace {

MessageView msg(uint64_t seq, std::string content) {
  return MessageView{1000 + seq, "group_7", seq, 42, std::move(content), "text", "c-" + std::to_string(seq),
                     1'700'000'000'000 + static_cast<int64_t>(seq), false};
}

class FixedModel final : public ReadModel {
 public:
  // Forward ranges as asked; a backward one answers nothing, so a lost `forward` shows.
  Result<HistoryPage> history(std::string_view conv, const HistoryRange& range) override {
    if (conv == "broken") return fail(Error(std::make_error_code(std::errc::io_error), "disk on fire", true));
    HistoryPage p;
    if (!range.forward) return p;
    const uint64_t after = range.after_seq, limit = range.limit;
    for (uint64_t s = after + 1; s <= after + limit && s <= 5; ++s) p.messages.push_back(msg(s, "héllo " + std::to_string(s)));
    p.has_more = after + limit < 5;
    return p;
  }
  Result<std::optional<MessageView>> message(uint64_t id) override {
    if (id == 1003) return std::optional<MessageView>(msg(3, "three"));
    return std::optional<MessageView>();
  }
  Result<std::vector<ConversationView>> conversations(uint64_t) override {
    ConversationView c;
    c.conversation_id = "single_1_2";
    c.type = "single";
    c.last_seq = 9;
    c.read_seq = 4;
    c.unread = 3;
    c.last_message = msg(9, "last");
    c.updated_at = 77;
    c.title = "bob";
    c.peer_id = 2;
    return std::vector<ConversationView>{c};
  }
  Result<std::optional<UserView>> user(uint64_t id) override {
    if (id != 42) return std::optional<UserView>();
    UserView u;
    u.user_id = 42;
    u.username = "alice";
    u.nickname = "Alice";
    u.allow_search = false;
    u.message_policy = "friends_only";
    u.quiet_start_minute = 1320;
    u.muted = {"group_7"};
    return std::optional<UserView>(u);
  }
  Result<std::optional<Credentials>> credentials(std::string_view name) override {
    if (name != "alice") return std::optional<Credentials>();
    return std::optional<Credentials>(Credentials{42, "$argon2id$v=19$..."});
  }
  Result<std::vector<UserView>> search_users(std::string_view, uint64_t, uint32_t) override {
    return std::vector<UserView>{*user(42).value()};
  }
  Result<std::optional<GroupView>> group(uint64_t id) override {
    return std::optional<GroupView>(GroupView{id, "book club", "monthly", 42, 3, 5, "public", "from_join"});
  }
  Result<std::vector<MemberView>> members(uint64_t, uint64_t, uint32_t) override {
    return std::vector<MemberView>{{42, "owner", 1}, {43, "member", 2}};
  }
  Result<std::vector<BanView>> bans(uint64_t, uint64_t, uint32_t) override {
    return std::vector<BanView>{{46, 42, 1'700'000'000'123}};
  }
  Result<ReadAccess> read_access(std::string_view conv, uint64_t user) override {
    if (conv == "world") return ReadAccess{true, "all", 0};
    return ReadAccess{user == 42, "from_join", user == 42 ? 17u : 0u};
  }
  Result<SearchPage> search_messages(const SearchRequest& r) override {
    // Echoes the request's fields, so the test sees each of them cross the wire.
    return SearchPage{{msg(2, r.text + " in " + r.conversation)}, r.before_id + r.limit};
  }
  Result<std::vector<FriendView>> friends(uint64_t) override {
    return std::vector<FriendView>{{43, "friends", "hi", "work", 9}};
  }
  Result<std::vector<uint64_t>> blocked(uint64_t) override { return std::vector<uint64_t>{44, 45}; }
  Result<std::vector<std::string>> friend_groups(uint64_t) override { return std::vector<std::string>{"work"}; }
  // A one-to-one where only the higher user set a preference, for ever (0): an absent side and a
  // 0 must both survive the wire.
  Result<RetentionOverrides> retention(std::string_view conv) override {
    if (conv == "group_7") return RetentionOverrides{30, std::nullopt};
    return RetentionOverrides{std::nullopt, 0};
  }
};

class QueryGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = QueryServer::start(model_, "127.0.0.1:0");
    ASSERT_TRUE(s) << s.error().to_string();
    server_ = std::move(*s);
    remote_ = connect_query_service("127.0.0.1:" + std::to_string(server_->port()));
  }
  FixedModel model_;
  std::unique_ptr<QueryServer> server_;
  std::unique_ptr<ReadModel> remote_;
};

TEST_F(QueryGrpcTest, EveryAnswerCrossesUnchanged) {
  auto page = remote_->history("group_7", HistoryRange{2, 0, true, 2});
  ASSERT_TRUE(page) << page.error().to_string();
  ASSERT_EQ(page->messages.size(), 2u);
  EXPECT_EQ(page->messages[0], msg(3, "héllo 3"));
  EXPECT_TRUE(page->has_more);
  EXPECT_EQ(*remote_->message(1003).value(), msg(3, "three"));
  EXPECT_FALSE(remote_->message(1).value().has_value());
  auto convs = remote_->conversations(1).value();
  ASSERT_EQ(convs.size(), 1u);
  EXPECT_EQ(convs[0].unread, 3u);
  EXPECT_EQ(*convs[0].last_message, msg(9, "last"));
  EXPECT_EQ(convs[0].title, "bob");
  auto u = remote_->user(42).value();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->message_policy, "friends_only");
  EXPECT_FALSE(u->allow_search);
  EXPECT_EQ(u->muted, std::vector<std::string>{"group_7"});
  EXPECT_FALSE(remote_->user(7).value().has_value());
  EXPECT_EQ(remote_->credentials("alice").value()->user_id, 42u);
  EXPECT_FALSE(remote_->credentials("mallory").value().has_value());
  EXPECT_EQ(remote_->group(7).value()->name, "book club");
  EXPECT_EQ(remote_->group(7).value()->join_policy, "public");
  EXPECT_EQ(remote_->group(7).value()->history, "from_join");
  EXPECT_EQ(remote_->bans(7, 0, 10).value(), (std::vector<BanView>{{46, 42, 1'700'000'000'123}}));
  EXPECT_EQ(remote_->members(7, 0, 10).value().size(), 2u);
  EXPECT_EQ(remote_->read_access("world", 1).value(), (ReadAccess{true, "all", 0}));
  EXPECT_EQ(remote_->read_access("group_7", 42).value(), (ReadAccess{true, "from_join", 17}));
  EXPECT_FALSE(remote_->read_access("group_7", 1).value().allowed);
  auto found = remote_->search_messages(SearchRequest{42, "word", "group_7", 1000, 10});
  ASSERT_TRUE(found) << found.error().to_string();
  EXPECT_EQ(found->messages.at(0).content, "word in group_7");
  EXPECT_EQ(found->next_before_id, 1010u);
  EXPECT_EQ(remote_->friends(42).value().at(0).group_name, "work");
  EXPECT_EQ(remote_->blocked(42).value(), (std::vector<uint64_t>{44, 45}));
  EXPECT_EQ(remote_->friend_groups(42).value(), std::vector<std::string>{"work"});
  EXPECT_EQ(remote_->search_users("al", 0, 10).value().at(0).username, "alice");
  EXPECT_EQ(remote_->retention("group_7").value(), (RetentionOverrides{30, std::nullopt}));
  EXPECT_EQ(remote_->retention("single_1_2").value(), (RetentionOverrides{std::nullopt, 0}));
}

TEST_F(QueryGrpcTest, AStoreFailureArrivesAsARetryableError) {
  auto r = remote_->history("broken", HistoryRange{});
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().retryable());
  EXPECT_NE(r.error().message().find("disk on fire"), std::string::npos);
}

TEST(QueryGrpc, AnUnreachableServiceIsRetryableAndNamed) {
  int port = testing::free_port();
  auto remote = connect_query_service("127.0.0.1:" + std::to_string(port), std::chrono::milliseconds(300));
  auto r = remote->user(1);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().retryable());
  EXPECT_NE(r.error().message().find(std::to_string(port)), std::string::npos);
}

}  // namespace
}  // namespace imlog
