// The read side: history paging edges, the QueryService's hot path and limit clamp, unread counts
// and read pointers, message search, read authorisation — on the RocksDB model built from logs
// written by the EventLogBuilder, and once end to end from commands through the real sequencer.

#include <gtest/gtest.h>

#include <algorithm>

#include "imlog/engine/streams.h"
#include "imlog/projections/query.h"
#include "imlog/testing/engine_harness.h"
#include "projection_test_util.h"

namespace imlog {
namespace {

using namespace std::chrono_literals;
using testing::latest;
using testing::LogFixture;
using testing::page_after;
using testing::page_before;

std::vector<uint64_t> seqs(const HistoryPage& page) {
  std::vector<uint64_t> out;
  for (const auto& m : page.messages) out.push_back(m.seq_id);
  return out;
}

std::vector<uint64_t> range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out;
  for (uint64_t s = from; s <= to; ++s) out.push_back(s);
  return out;
}

// A conversation of 25 messages between ann and bob, projected.
struct PagingFixture {
  PagingFixture() {
    auto& b = *f.builder;
    ann = b.register_user("ann");
    bob = b.register_user("bob");
    conv = single_stream(ann, bob);
    for (int i = 1; i <= 25; ++i) ids.push_back(b.message(conv, i % 2 ? ann : bob, "message " + std::to_string(i)));
    b.recall(conv, bob, ids[1], 2);  // seq 26
    model = f.model();
    auto r = f.project(*model);
    EXPECT_TRUE(r) << r.error().to_string();
  }
  HistoryPage page(const HistoryRange& range) {
    auto p = model->history(conv, range);
    EXPECT_TRUE(p) << p.error().to_string();
    return p ? *p : HistoryPage{};
  }
  LogFixture f;
  uint64_t ann = 0, bob = 0;
  std::string conv;
  std::vector<uint64_t> ids;
  std::unique_ptr<RocksDbModel> model;
};

TEST(History, AnEmptyConversationHasNoPageInEitherDirection) {
  PagingFixture p;
  for (const HistoryRange& range : {latest(10), page_after(5, 10), page_after(0, 10), page_before(5, 10)}) {
    auto page = p.model->history(group_stream(99), range);
    IMLOG_ASSERT_OK(page);
    EXPECT_TRUE(page->messages.empty());
    EXPECT_FALSE(page->has_more);
  }
}

TEST(History, PagesBackwardFromTheLatest) {
  PagingFixture p;
  auto newest = p.page(latest(10));
  EXPECT_EQ(seqs(newest), range(17, 26));
  EXPECT_TRUE(newest.has_more);
  auto older = p.page(page_before(17, 10));
  EXPECT_EQ(seqs(older), range(7, 16));
  EXPECT_TRUE(older.has_more);
  auto oldest = p.page(page_before(7, 10));
  EXPECT_EQ(seqs(oldest), range(1, 6));
  EXPECT_FALSE(oldest.has_more);
  // Exactly at the boundary: the page holds the first ten and nothing is older.
  auto exact = p.page(page_before(11, 10));
  EXPECT_EQ(seqs(exact), range(1, 10));
  EXPECT_FALSE(exact.has_more);
  auto all = p.page(latest(26));
  EXPECT_EQ(seqs(all), range(1, 26));
  EXPECT_FALSE(all.has_more);
  auto all_but_one = p.page(latest(25));
  EXPECT_EQ(seqs(all_but_one), range(2, 26));
  EXPECT_TRUE(all_but_one.has_more);
}

TEST(History, PagesForwardFromAfterSeq) {
  PagingFixture p;
  auto from_start = p.page(page_after(0, 10));
  EXPECT_EQ(seqs(from_start), range(1, 10)) << "forward from 0 starts at seq 1";
  EXPECT_TRUE(from_start.has_more);
  auto first = p.page(page_after(5, 10));
  EXPECT_EQ(seqs(first), range(6, 15));
  EXPECT_TRUE(first.has_more);
  auto exact = p.page(page_after(16, 10));
  EXPECT_EQ(seqs(exact), range(17, 26));
  EXPECT_FALSE(exact.has_more);
  auto past = p.page(page_after(26, 10));
  EXPECT_TRUE(past.messages.empty());
  EXPECT_FALSE(past.has_more);
  EXPECT_TRUE(p.page(page_after(UINT64_MAX, 10)).messages.empty()) << "no wrap-around to the start";
  // Bounded above by before_seq: has_more speaks of the range only.
  auto bounded = p.page(page_after(5, 10, 12));
  EXPECT_EQ(seqs(bounded), range(6, 11));
  EXPECT_FALSE(bounded.has_more);
  auto bounded_more = p.page(page_after(5, 3, 20));
  EXPECT_EQ(seqs(bounded_more), range(6, 8));
  EXPECT_TRUE(bounded_more.has_more);
  EXPECT_TRUE(p.page(page_after(5, 10, 6)).messages.empty()) << "an empty range";
}

// Backwards within a lower bound (the first seq a reader may see): the newest rows above it, and
// has_more only while rows of the range remain.
TEST(History, PagesBackwardAboveALowerBound) {
  PagingFixture p;
  auto above = p.page(HistoryRange{20, 0, false, 3});
  EXPECT_EQ(seqs(above), range(24, 26));
  EXPECT_TRUE(above.has_more);
  auto to_bound = p.page(HistoryRange{20, 0, false, 10});
  EXPECT_EQ(seqs(to_bound), range(21, 26));
  EXPECT_FALSE(to_bound.has_more) << "nothing of the range is older";
  auto window = p.page(HistoryRange{20, 24, false, 10});
  EXPECT_EQ(seqs(window), range(21, 23));
  EXPECT_FALSE(window.has_more);
}

TEST(History, ARecalledMessageIsMarkedAndEmptiedAndTheRecallIsASystemRow) {
  PagingFixture p;
  auto page = p.page(latest(200));
  ASSERT_EQ(page.messages.size(), 26u);
  const MessageView& recalled = page.messages[1];
  EXPECT_EQ(recalled.message_id, p.ids[1]);
  EXPECT_TRUE(recalled.recalled);
  EXPECT_TRUE(recalled.content.empty());
  EXPECT_EQ(recalled.message_type, "text");
  EXPECT_EQ(recalled.sender_id, p.bob);
  const MessageView& other = page.messages[2];
  EXPECT_FALSE(other.recalled);
  EXPECT_EQ(other.content, "message 3");
  EXPECT_EQ(other.conversation_id, p.conv);
  EXPECT_FALSE(other.client_msg_id.empty());
  EXPECT_GT(other.created_at, 0);
  const MessageView& recall = page.messages[25];
  EXPECT_EQ(recall.message_type, "system");
  EXPECT_NE(recall.content.find("message_recalled"), std::string::npos);
}

// A hot store that answers only ranges entirely above `from_seq`, or fails when told to.
class FakeHot final : public HotHistory {
 public:
  Result<std::optional<HistoryPage>> history(std::string_view, const HistoryRange& range) override {
    ++calls;
    last = range;
    if (failing) return fail(LogErrc::unavailable, "redis is away", true);
    if (range.after_seq < from_seq) return std::optional<HistoryPage>();
    HistoryPage p;
    p.messages.push_back(MessageView{1, "hot", range.after_seq + 1, 1, "from the hot store", "text", "c", 0, false});
    return std::optional<HistoryPage>(p);
  }
  uint64_t from_seq = 20;
  bool failing = false;
  int calls = 0;
  HistoryRange last;
};

HistoryRequest forward_from(uint64_t after_seq, uint32_t limit) {
  HistoryRequest r;
  r.after_seq = after_seq;
  r.limit = limit;
  return r;
}

TEST(QueryServiceHistory, UsesTheHotStoreWhenItAnswersTheWholeRangeElseTheModel) {
  PagingFixture p;
  FakeHot hot;
  QueryService q(*p.model, &hot);
  auto from_hot = q.history(p.conv, 1, forward_from(21, 10));
  IMLOG_ASSERT_OK(from_hot);
  ASSERT_EQ(from_hot->messages.size(), 1u);
  EXPECT_EQ(from_hot->messages[0].content, "from the hot store");
  auto from_model = q.history(p.conv, 1, forward_from(3, 2));
  IMLOG_ASSERT_OK(from_model);
  EXPECT_EQ(seqs(*from_model), range(4, 5));
  hot.failing = true;
  auto fallback = q.history(p.conv, 1, forward_from(21, 10));
  IMLOG_ASSERT_OK(fallback);
  EXPECT_EQ(seqs(*fallback), range(22, 26));
  EXPECT_EQ(hot.calls, 3);
}

// The contract of the wire: after_seq present, 0 included, reads forward from it; absent, the
// latest page; before_seq alone, the page before it.
TEST(QueryServiceHistory, AfterSeqZeroReadsFromTheStartAndNoAfterSeqReadsTheLatest) {
  PagingFixture p;
  FakeHot hot;
  hot.from_seq = UINT64_MAX;  // never answers: the model does
  QueryService q(*p.model, &hot);
  auto from_zero = q.history(p.conv, 1, forward_from(0, 5));
  IMLOG_ASSERT_OK(from_zero);
  EXPECT_EQ(seqs(*from_zero), range(1, 5));
  EXPECT_TRUE(from_zero->has_more);
  EXPECT_TRUE(hot.last.forward);
  EXPECT_EQ(hot.last.after_seq, 0u);
  HistoryRequest newest;
  newest.limit = 5;
  auto latest_page = q.history(p.conv, 1, newest);
  IMLOG_ASSERT_OK(latest_page);
  EXPECT_EQ(seqs(*latest_page), range(22, 26));
  EXPECT_FALSE(hot.last.forward);
  HistoryRequest back;
  back.before_seq = 10;
  back.limit = 3;
  auto back_page = q.history(p.conv, 1, back);
  IMLOG_ASSERT_OK(back_page);
  EXPECT_EQ(seqs(*back_page), range(7, 9));
  auto window = q.history(p.conv, 1, HistoryRequest{uint64_t{3}, 6, 10});
  IMLOG_ASSERT_OK(window);
  EXPECT_EQ(seqs(*window), range(4, 5)) << "forward from after_seq, stopping before before_seq";
  EXPECT_FALSE(window->has_more);
}

TEST(QueryServiceHistory, ClampsTheLimitBetweenOneAnd200) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann");
  for (int i = 0; i < 250; ++i) b.message(std::string(kWorldStream), ann, "m");
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));
  FakeHot hot;
  hot.from_seq = UINT64_MAX;
  QueryService q(*model, &hot);
  HistoryRequest zero;
  zero.limit = 0;
  auto zero_page = q.history(std::string(kWorldStream), 1, zero);
  IMLOG_ASSERT_OK(zero_page);
  EXPECT_EQ(seqs(*zero_page), range(250, 250));
  EXPECT_EQ(hot.last.limit, 1u);
  HistoryRequest huge;
  huge.limit = 100000;
  auto huge_page = q.history(std::string(kWorldStream), 1, huge);
  IMLOG_ASSERT_OK(huge_page);
  EXPECT_EQ(huge_page->messages.size(), 200u);
  EXPECT_TRUE(huge_page->has_more);
  EXPECT_EQ(hot.last.limit, 200u);
}

const ConversationView* find_conv(const std::vector<ConversationView>& list, const std::string& id) {
  for (const auto& c : list) {
    if (c.conversation_id == id) return &c;
  }
  return nullptr;
}

TEST(Unread, CountsMessagesFromOthersAfterTheReadPointerAndNeverOwnOnes) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann", "Annie"), bob = b.register_user("bob", "Bobby");
  std::string conv = single_stream(ann, bob);
  b.message(conv, ann, "1");
  b.message(conv, ann, "2");
  b.message(conv, bob, "3");
  b.message(conv, bob, "4");
  auto model = f.model();
  auto check = [&](uint64_t user, uint64_t read_seq, uint64_t unread) {
    IMLOG_ASSERT_OK(f.project(*model));
    auto list = model->conversations(user);
    IMLOG_ASSERT_OK(list);
    const ConversationView* c = find_conv(*list, conv);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->read_seq, read_seq) << "user " << user;
    EXPECT_EQ(c->unread, unread) << "user " << user;
    EXPECT_EQ(c->last_seq, b.last_seq(conv));
  };
  ASSERT_NO_FATAL_FAILURE(check(ann, 2, 2));  // own messages read themselves
  ASSERT_NO_FATAL_FAILURE(check(bob, 4, 0));
  b.read(conv, ann, 3);
  ASSERT_NO_FATAL_FAILURE(check(ann, 3, 1));
  b.read(conv, ann, 1);  // a read pointer never moves back
  ASSERT_NO_FATAL_FAILURE(check(ann, 3, 1));
  b.message(conv, bob, "5");
  b.message(conv, bob, "6");
  ASSERT_NO_FATAL_FAILURE(check(ann, 3, 3));
  b.message(conv, ann, "7");  // replying reads everything before
  ASSERT_NO_FATAL_FAILURE(check(ann, 7, 0));
  ASSERT_NO_FATAL_FAILURE(check(bob, 6, 1));

  auto list = model->conversations(ann);
  IMLOG_ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  const ConversationView& c = list->front();
  EXPECT_EQ(c.type, "single");
  EXPECT_EQ(c.peer_id, bob);
  EXPECT_EQ(c.title, "Bobby");
  ASSERT_TRUE(c.last_message.has_value());
  EXPECT_EQ(c.last_message->content, "7");
  EXPECT_GT(c.updated_at, 0);
}

TEST(Unread, JoiningAGroupReadsWhatCameBeforeAndLeavingDropsIt) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob"), cat = b.register_user("cat");
  std::string g = group_stream(4);
  b.create_group(4, ann, {bob}, "the group");  // seq 1
  for (int i = 0; i < 5; ++i) b.message(g, ann, "before cat");  // 2..6
  b.join(4, cat, ann);                                           // 7, by ann
  b.message(g, ann, "after cat");                                // 8
  b.message(std::string(kWorldStream), bob, "bob writes to world");
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));
  auto cats = model->conversations(cat);
  IMLOG_ASSERT_OK(cats);
  ASSERT_EQ(cats->size(), 1u);
  EXPECT_EQ(cats->front().conversation_id, g);
  EXPECT_EQ(cats->front().title, "the group");
  EXPECT_EQ(cats->front().read_seq, 6u);
  EXPECT_EQ(cats->front().unread, 1u);  // the message after the join; the join row is a system row
  auto bobs = model->conversations(bob);
  IMLOG_ASSERT_OK(bobs);
  ASSERT_EQ(bobs->size(), 2u);
  EXPECT_EQ(bobs->front().conversation_id, "world");  // newest first
  const ConversationView* bg = find_conv(*bobs, g);
  ASSERT_NE(bg, nullptr);
  EXPECT_EQ(bg->unread, 6u);  // every message, from the group's creation on; not the creation or the join

  b.leave(4, cat);
  IMLOG_ASSERT_OK(f.project(*model));
  cats = model->conversations(cat);
  IMLOG_ASSERT_OK(cats);
  EXPECT_TRUE(cats->empty());
}

TEST(Unread, IsCappedAt999) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob");
  for (int i = 0; i < 1200; ++i) b.message(single_stream(ann, bob), bob, "spam");
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));
  auto list = model->conversations(ann);
  IMLOG_ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().unread, 999u);
}

struct SearchFixture {
  SearchFixture() {
    auto& b = *f.builder;
    ann = b.register_user("ann");
    bob = b.register_user("bob");
    cat = b.register_user("cat");
    dan = b.register_user("dan");
    b.message(single_stream(ann, bob), ann, "Let's go climbing tomorrow!");
    b.message(single_stream(ann, bob), bob, "coffee first?");
    b.create_group(1, cat, {ann});
    b.message(group_stream(1), cat, "coffee time, then climbing");
    b.message(single_stream(cat, dan), cat, "the secret climbing spot");
    b.message(single_stream(ann, bob), ann, "我们今天去攀岩吧");
    uint64_t gone = b.message(single_stream(ann, bob), ann, "a recalled zebra");
    b.recall(single_stream(ann, bob), ann, gone, b.last_seq(single_stream(ann, bob)));
    model = f.model();
    auto r = f.project(*model);
    EXPECT_TRUE(r) << r.error().to_string();
  }
  std::vector<std::string> search(uint64_t user, std::string_view text, uint32_t limit = 20) {
    auto r = model->search_messages(SearchRequest{user, std::string(text), "", 0, limit});
    EXPECT_TRUE(r) << r.error().to_string();
    std::vector<std::string> out;
    if (r) {
      for (const auto& m : r->messages) out.push_back(m.content);
    }
    return out;
  }
  LogFixture f;
  uint64_t ann = 0, bob = 0, cat = 0, dan = 0;
  std::unique_ptr<RocksDbModel> model;
};

TEST(Search, FindsAWordThatWasSentOnlyInTheUsersConversations) {
  SearchFixture s;
  // Newest first; cat and dan's conversation is not ann's.
  EXPECT_EQ(s.search(s.ann, "climbing"),
            (std::vector<std::string>{"coffee time, then climbing", "Let's go climbing tomorrow!"}));
  EXPECT_EQ(s.search(s.dan, "climbing"), std::vector<std::string>{"the secret climbing spot"});
  EXPECT_EQ(s.search(s.ann, "CLIMBING Tomorrow"), std::vector<std::string>{"Let's go climbing tomorrow!"});
  EXPECT_EQ(s.search(s.ann, "climbing", 1), std::vector<std::string>{"coffee time, then climbing"});
}

TEST(Search, FindsNothingForAWordNeverSentOrRecalled) {
  SearchFixture s;
  EXPECT_TRUE(s.search(s.ann, "volcano").empty());
  EXPECT_TRUE(s.search(s.ann, "climbing volcano").empty());
  EXPECT_TRUE(s.search(s.ann, "zebra").empty());
  EXPECT_TRUE(s.search(s.ann, "").empty());
  EXPECT_TRUE(s.search(s.bob, "secret").empty());
}

TEST(Search, CjkTextIsFoundByItsBigramsAndQueryRunsMustBeContiguous) {
  SearchFixture s;
  EXPECT_EQ(s.search(s.bob, "攀岩"), std::vector<std::string>{"我们今天去攀岩吧"});
  EXPECT_EQ(s.search(s.bob, "今天 攀岩"), std::vector<std::string>{"我们今天去攀岩吧"});
  EXPECT_TRUE(s.search(s.bob, "岩攀").empty());
  EXPECT_TRUE(s.search(s.bob, "咖啡").empty());
  EXPECT_TRUE(s.search(s.cat, "攀岩").empty());
}

TEST(ReadAccess, ParticipantsMembersAndEveryRegisteredUserOfWorld) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob"), cat = b.register_user("cat");
  b.create_group(2, ann, {bob});
  b.leave(2, bob);
  b.join(2, cat);
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));
  auto can = [&](const std::string& conv, uint64_t user) {
    auto r = model->read_access(conv, user);
    EXPECT_TRUE(r) << r.error().to_string();
    return r && r->allowed;
  };
  EXPECT_TRUE(can(single_stream(ann, bob), ann));
  EXPECT_TRUE(can(single_stream(ann, bob), bob));
  EXPECT_FALSE(can(single_stream(ann, bob), cat));
  EXPECT_TRUE(can(group_stream(2), ann));
  EXPECT_FALSE(can(group_stream(2), bob));  // left
  EXPECT_TRUE(can(group_stream(2), cat));
  EXPECT_FALSE(can(group_stream(3), ann));  // no such group
  EXPECT_TRUE(can(std::string(kWorldStream), cat));
  EXPECT_FALSE(can(std::string(kWorldStream), 999'999));  // not a registered user
  EXPECT_FALSE(can(user_stream(ann), ann));
  EXPECT_FALSE(can("nonsense", ann));
  EXPECT_FALSE(can(std::string(kWorldStream), 0));
}

// ---- the history rule ---------------------------------------------------------------------------

TEST(HistoryRule, FirstReadableSeqIsTheLatestJoinUnderFromJoinAndOneOtherwise) {
  EXPECT_EQ(first_readable_seq(ReadAccess{}), 0u) << "not allowed: nothing";
  EXPECT_EQ(first_readable_seq(ReadAccess{false, "from_join", 9}), 0u);
  EXPECT_EQ(first_readable_seq(ReadAccess{true, "all", 9}), 1u);
  EXPECT_EQ(first_readable_seq(ReadAccess{true, "from_join", 9}), 9u);
  EXPECT_EQ(first_readable_seq(ReadAccess{true, "from_join", 0}), 1u);
  EXPECT_EQ(first_readable_seq(ReadAccess{true, "something newer", 9}), 1u);
}

// A group of ann's (private, history from the join): messages 2..6, cat added at 7 and one more
// message at 8; dan, added and removed earlier, is banned.
struct RuleFixture {
  explicit RuleFixture(std::optional<fb::HistoryRule> rule = fb::HistoryRule::FromJoin,
                       std::optional<fb::JoinPolicy> policy = fb::JoinPolicy::Private) {
    auto& b = *f.builder;
    ann = b.register_user("ann");
    bob = b.register_user("bob");
    cat = b.register_user("cat");
    dan = b.register_user("dan");
    b.create_group(4, ann, {bob}, "rules", policy, rule);  // seq 1
    for (int i = 0; i < 5; ++i) b.message(g, ann, "before cat " + std::to_string(i));  // 2..6
    b.join(4, cat, ann);                                                                // 7
    b.message(g, ann, "after cat");                                                     // 8
    model = f.model();
    project();
  }
  void project() { EXPECT_TRUE(f.project(*model)); }
  uint64_t from(uint64_t user) {
    QueryService q(*model);
    auto r = q.readable_from(g, user);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : 0;
  }
  std::vector<uint64_t> read(uint64_t user, const HistoryRequest& request) {
    QueryService q(*model);
    auto page = q.history(g, from(user), request);
    EXPECT_TRUE(page) << page.error().to_string();
    return page ? seqs(*page) : std::vector<uint64_t>{};
  }
  LogFixture f;
  std::string g = group_stream(4);
  uint64_t ann = 0, bob = 0, cat = 0, dan = 0;
  std::unique_ptr<RocksDbModel> model;
};

TEST(HistoryRule, AFromJoinMemberReadsFromTheirJoinOnEveryPath) {
  RuleFixture r;
  EXPECT_EQ(r.from(r.ann), 1u);
  EXPECT_EQ(r.from(r.bob), 1u) << "a first member joined at the creation";
  EXPECT_EQ(r.from(r.cat), 7u);
  EXPECT_EQ(r.from(r.dan), 0u) << "not a member";
  EXPECT_EQ(r.read(r.cat, HistoryRequest{}), range(7, 8)) << "the latest page";
  EXPECT_EQ(r.read(r.cat, forward_from(0, 50)), range(7, 8)) << "forward from 0";
  EXPECT_EQ(r.read(r.cat, forward_from(3, 50)), range(7, 8)) << "forward from before the join";
  EXPECT_EQ(r.read(r.cat, forward_from(7, 50)), range(8, 8));
  EXPECT_TRUE(r.read(r.cat, HistoryRequest{std::nullopt, 7, 50}).empty()) << "back from the join";
  EXPECT_EQ(r.read(r.cat, HistoryRequest{std::nullopt, 8, 50}), range(7, 7));
  EXPECT_EQ(r.read(r.bob, forward_from(0, 50)), range(1, 8));
  QueryService q(*r.model);
  auto back = q.history(r.g, r.from(r.cat), HistoryRequest{std::nullopt, 0, 1});
  IMLOG_ASSERT_OK(back);
  EXPECT_TRUE(back->has_more) << "seq 7 is older and readable";
  back = q.history(r.g, r.from(r.cat), HistoryRequest{std::nullopt, 0, 2});
  IMLOG_ASSERT_OK(back);
  EXPECT_FALSE(back->has_more) << "nothing readable is older than the join";
  auto nothing = q.history(r.g, 0, HistoryRequest{});
  IMLOG_ASSERT_OK(nothing);
  EXPECT_TRUE(nothing->messages.empty()) << "first seq 0 reads nothing";

  // The conversation list starts at the join too: last message, read seq and unread.
  auto cats = r.model->conversations(r.cat);
  IMLOG_ASSERT_OK(cats);
  ASSERT_EQ(cats->size(), 1u);
  ASSERT_TRUE(cats->front().last_message.has_value());
  EXPECT_GE(cats->front().last_message->seq_id, 7u);
  EXPECT_EQ(cats->front().read_seq, 6u);
  EXPECT_EQ(cats->front().unread, 1u) << "the message after the join, not the join row";
}

TEST(HistoryRule, AMemberWhoLeftAndCameBackReadsFromTheLatestJoin) {
  RuleFixture r;
  auto& b = *r.f.builder;
  b.leave(4, r.cat);                 // 9
  b.message(r.g, r.ann, "cat away");  // 10
  b.join(4, r.cat, r.ann);           // 11
  r.project();
  EXPECT_EQ(r.from(r.cat), 11u);
  EXPECT_EQ(r.read(r.cat, forward_from(0, 50)), range(11, 11));
}

TEST(HistoryRule, AllLetsNewMembersReadEverythingAndTheRuleInForceIsTheCurrentOne) {
  RuleFixture all(fb::HistoryRule::All, fb::JoinPolicy::Public);
  EXPECT_EQ(all.from(all.cat), 1u);
  EXPECT_EQ(all.read(all.cat, forward_from(0, 50)), range(1, 8));

  RuleFixture r;
  r.f.builder->group_settings(4, r.ann, std::nullopt, fb::HistoryRule::All);  // 9
  r.project();
  EXPECT_EQ(r.from(r.cat), 1u) << "changed to all: everyone reads all";
  r.f.builder->group_settings(4, r.ann, fb::JoinPolicy::Public, std::nullopt);  // 10: the rule stays
  r.project();
  EXPECT_EQ(r.from(r.cat), 1u);
  r.f.builder->group_settings(4, r.ann, std::nullopt, fb::HistoryRule::FromJoin);  // 11
  r.project();
  EXPECT_EQ(r.from(r.cat), 7u);
  auto g = r.model->group(4);
  IMLOG_ASSERT_OK(g);
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->join_policy, "public");
  EXPECT_EQ((*g)->history, "from_join");
}

// A group created before schema 3 carries no settings: private, and all history, as its members
// always read.
TEST(HistoryRule, AGroupWithoutSettingsIsPrivateAndShowsAllHistory) {
  RuleFixture r(std::nullopt, std::nullopt);
  EXPECT_EQ(r.from(r.cat), 1u);
  auto g = r.model->group(4);
  IMLOG_ASSERT_OK(g);
  ASSERT_TRUE(g->has_value());
  EXPECT_EQ((*g)->join_policy, "private");
  EXPECT_EQ((*g)->history, "all");
  auto row = r.model->history(r.g, latest(200));
  IMLOG_ASSERT_OK(row);
  EXPECT_EQ(row->messages.front().content.find("join_policy"), std::string::npos)
      << "an old GroupCreated's row reads as it always did: " << row->messages.front().content;
}

TEST(HistoryRule, SearchFindsOnlyWhatTheReaderMayRead) {
  RuleFixture r;
  r.f.builder->message(r.g, r.ann, "granite after cat");
  r.f.builder->message(r.g, r.ann, "granite");
  r.project();
  QueryService q(*r.model);
  auto before = r.model->search_messages(SearchRequest{r.cat, "before", "", 0, 20});
  IMLOG_ASSERT_OK(before);
  EXPECT_EQ(before->messages.size(), 5u) << "the model's search alone finds the rows before cat's join";
  auto hidden = q.search_messages(SearchRequest{r.cat, "before", "", 0, 20});
  IMLOG_ASSERT_OK(hidden);
  EXPECT_TRUE(hidden->results.empty());
  EXPECT_EQ(hidden->next_before_id, 0u);
  auto seen = q.search_messages(SearchRequest{r.cat, "granite", "", 0, 20});
  IMLOG_ASSERT_OK(seen);
  EXPECT_EQ(seen->results.size(), 2u);
  auto anns = q.search_messages(SearchRequest{r.ann, "before", "", 0, 20});
  IMLOG_ASSERT_OK(anns);
  EXPECT_EQ(anns->results.size(), 5u);
  // One at a time: a page of cat's holds only what cat may read, the rows before the join
  // are passed over (the query service reads on below them), and the pages end.
  auto first = q.search_messages(SearchRequest{r.cat, "granite", "", 0, 1});
  IMLOG_ASSERT_OK(first);
  ASSERT_EQ(first->results.size(), 1u);
  EXPECT_EQ(first->results[0].message.content, "granite");
  ASSERT_NE(first->next_before_id, 0u);
  auto second = q.search_messages(SearchRequest{r.cat, "granite", "", first->next_before_id, 1});
  IMLOG_ASSERT_OK(second);
  ASSERT_EQ(second->results.size(), 1u);
  EXPECT_EQ(second->results[0].message.content, "granite after cat");
}

TEST(Bans, ARemovalThatBansIsListedUntilLifted) {
  RuleFixture r;
  auto& b = *r.f.builder;
  b.join(4, r.dan, r.ann);        // 9
  b.remove(4, r.dan, r.ann, true);  // 10
  b.remove(4, r.bob, r.ann);      // 11: a removal from before schema 3, no ban
  r.project();
  auto bans = r.model->bans(4, 0, 10);
  IMLOG_ASSERT_OK(bans);
  ASSERT_EQ(bans->size(), 1u);
  EXPECT_EQ(bans->front().user_id, r.dan);
  EXPECT_EQ(bans->front().banned_by, r.ann);
  EXPECT_GT(bans->front().banned_at, 0);
  auto after = r.model->bans(4, r.dan, 10);
  IMLOG_ASSERT_OK(after);
  EXPECT_TRUE(after->empty());
  auto h = r.model->history(r.g, latest(1));
  IMLOG_ASSERT_OK(h);
  EXPECT_EQ(h->messages.front().content, "{\"event\":\"member_removed\",\"user_id\":" + std::to_string(r.bob) +
                                            ",\"by\":" + std::to_string(r.ann) + "}");
  b.unban(4, r.dan, r.ann);  // 12
  r.project();
  bans = r.model->bans(4, 0, 10);
  IMLOG_ASSERT_OK(bans);
  EXPECT_TRUE(bans->empty());
  h = r.model->history(r.g, HistoryRange{9, 13, true, 10});
  IMLOG_ASSERT_OK(h);
  ASSERT_EQ(h->messages.size(), 3u);
  EXPECT_EQ(h->messages[0].content, "{\"event\":\"member_removed\",\"user_id\":" + std::to_string(r.dan) +
                                        ",\"by\":" + std::to_string(r.ann) + ",\"ban\":true}");
  EXPECT_EQ(h->messages[2].content, "{\"event\":\"member_unbanned\",\"user_id\":" + std::to_string(r.dan) +
                                        ",\"by\":" + std::to_string(r.ann) + "}");
}

// From commands through the real sequencer to answers: the events the engine writes are the
// events the model understands.
// The policy in force comes from the engine's effective_keep_days; what the source says is ours.
TEST(Retention, ThePolicyInForceAndWhatSetsIt) {
  using O = RetentionOverrides;
  const std::string g = group_stream(7), s = single_stream(3, 9);
  auto policy = [](const std::string& conv, O o, uint32_t def) { return retention_policy(conv, o, def); };
  EXPECT_EQ(policy(g, {}, 0).keep_days, 0u);
  EXPECT_EQ(policy(g, {}, 0).source, "default");
  EXPECT_EQ(policy(g, {}, 90).keep_days, 90u);
  EXPECT_EQ(policy(g, {30, std::nullopt}, 90).keep_days, 30u);
  EXPECT_EQ(policy(g, {30, std::nullopt}, 90).source, "group");
  EXPECT_EQ(policy(g, {0, std::nullopt}, 90).keep_days, 0u) << "the group keeps for ever";
  EXPECT_EQ(policy(g, {0, std::nullopt}, 90).source, "group");
  EXPECT_EQ(policy("world", {}, 14).keep_days, 14u);
  EXPECT_EQ(policy("world", {}, 14).source, "default");

  // One-to-one: the shorter preference, for ever the longest; a user without one has the default.
  EXPECT_EQ(policy(s, {}, 0).source, "default");
  auto both = policy(s, {30, 7}, 0);
  EXPECT_EQ(both.keep_days, 7u);
  EXPECT_EQ(both.source, "user");
  EXPECT_EQ(both.overrides, (O{30, 7}));
  EXPECT_EQ(both.default_keep_days, 0u);
  EXPECT_EQ(policy(s, {30, std::nullopt}, 0).keep_days, 30u) << "for ever (the default) vs 30";
  EXPECT_EQ(policy(s, {30, std::nullopt}, 0).source, "user");
  EXPECT_EQ(policy(s, {30, std::nullopt}, 10).keep_days, 10u) << "the other user's default is shorter";
  EXPECT_EQ(policy(s, {30, std::nullopt}, 10).source, "default");
  EXPECT_EQ(policy(s, {0, 0}, 10).keep_days, 0u);
  EXPECT_EQ(policy(s, {0, 0}, 10).source, "user");
  EXPECT_EQ(policy(s, {std::nullopt, 0}, 10).keep_days, 10u);
}

TEST(Retention, TheQueryServiceReadsTheModelsOverrides) {
  LogFixture f;
  auto& b = *f.builder;
  uint64_t ann = b.register_user("ann"), bob = b.register_user("bob");
  b.create_group(7, ann, {bob});
  b.retention(group_stream(7), ann, 30);
  auto model = f.model();
  IMLOG_ASSERT_OK(f.project(*model));
  QueryService q(*model);
  auto p = q.retention(group_stream(7), 90);
  IMLOG_ASSERT_OK(p);
  EXPECT_EQ(p->keep_days, 30u);
  EXPECT_EQ(p->source, "group");
  EXPECT_EQ(p->default_keep_days, 90u);
}

TEST(EndToEnd, CommandsThroughTheSequencerAreAnsweredByTheModel) {
  constexpr const char* kGateway = "gw-query";
  testing::TempDir dir("imlog-query-e2e");
  LocalLogConfig lc;
  lc.dir = dir.str() + "/log";
  auto log = LocalLog::open(lc);
  IMLOG_ASSERT_OK(log);
  IMLOG_ASSERT_OK(testing::create_engine_topics(**log, 2, kGateway));
  EngineConfig ec;
  ec.state_dir = dir.str() + "/engine";
  ec.instance_id = "query-test";
  ec.checkpoint_interval = 20ms;
  auto node = testing::EngineNode::start(**log, ec);
  IMLOG_ASSERT_OK(node);
  ASSERT_TRUE((*node)->wait_for_partitions(2));
  auto tail = testing::LogTail::open(**log, kGateway);
  IMLOG_ASSERT_OK(tail);
  auto wait_request = [&](uint64_t rid) -> const testing::SeenEvent* {
    auto ok = (*tail)->wait_for([&] { return (*tail)->event_for_request(rid) != nullptr; }, 30s);
    EXPECT_TRUE(ok && *ok) << "request " << rid << " not acked";
    return (*tail)->event_for_request(rid);
  };

  IMLOG_ASSERT_OK(testing::submit(**log, {testing::register_user("ann", "r1", kGateway, 1),
                                          testing::register_user("bob", "r2", kGateway, 2)}));
  const auto* a = wait_request(1);
  const auto* bb = wait_request(2);
  ASSERT_TRUE(a && bb);
  uint64_t ann = a->result_id, bob = bb->result_id;
  ASSERT_TRUE(testing::wait_until([&] {
    return (*node)->directory().user(ann).exists && (*node)->directory().user(bob).exists;
  }, 20s));
  std::string conv = single_stream(ann, bob);
  IMLOG_ASSERT_OK(testing::submit(**log, {testing::send_message(conv, ann, "m1", "hello bob", kGateway, 3),
                                          testing::send_message(conv, bob, "m2", "hello ann", kGateway, 4),
                                          testing::send_message(conv, ann, "m3", "oops", kGateway, 5),
                                          testing::create_group(77, ann, {bob}, "g1", kGateway, 6)}));
  const auto* oops = wait_request(5);
  ASSERT_TRUE(oops && wait_request(6));
  auto recall = testing::command_envelope(conv, ann, "m4", kGateway, 7);
  recall.command.Set(fb::RecallMessageT{{}, oops->event_id});
  auto mark = testing::command_envelope(conv, bob, "m5", kGateway, 8);
  mark.command.Set(fb::MarkReadT{{}, 3});
  IMLOG_ASSERT_OK(testing::submit(**log, {recall, mark}));
  ASSERT_TRUE(wait_request(7) && wait_request(8));
  IMLOG_ASSERT_OK((*tail)->read_to_end());

  auto model = [&] {
    RocksDbModelConfig mc;
    mc.dir = dir.str() + "/model";
    return open_rocksdb_model(mc);
  }();
  IMLOG_ASSERT_OK(model);
  std::vector<int64_t> ends;
  for (int32_t p = 0; p < 2; ++p) {
    auto e = (*log)->end_offset({std::string(kEventsTopic), p});
    IMLOG_ASSERT_OK(e);
    ends.push_back(*e);
  }
  IMLOG_ASSERT_OK(Projector(**log, **model, ProjectorConfig{4096, &testing::test_keys()}).run_until(ends));

  QueryService q(**model);
  auto h = q.history(conv, 1, HistoryRequest{});
  IMLOG_ASSERT_OK(h);
  ASSERT_EQ(h->messages.size(), 4u);
  EXPECT_EQ(h->messages[0].content, "hello bob");
  EXPECT_EQ(h->messages[0].client_msg_id, "m1");
  EXPECT_TRUE(h->messages[2].recalled);
  EXPECT_EQ(h->messages[2].message_id, oops->event_id);
  EXPECT_EQ(h->messages[3].message_type, "system");
  auto bobs = (*model)->conversations(bob);
  IMLOG_ASSERT_OK(bobs);
  const ConversationView* c = find_conv(*bobs, conv);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->read_seq, 3u);
  EXPECT_EQ(c->unread, 0u);  // ann's recall row is a system row
  ASSERT_NE(find_conv(*bobs, group_stream(77)), nullptr);
  auto cred = (*model)->credentials("bob");
  IMLOG_ASSERT_OK(cred);
  ASSERT_TRUE(cred->has_value());
  EXPECT_EQ((*cred)->user_id, bob);
  auto found = (*model)->search_messages(SearchRequest{bob, "hello", "", 0, 10});
  IMLOG_ASSERT_OK(found);
  EXPECT_EQ(found->messages.size(), 2u);
  (*node)->stop();
}

}  // namespace
}  // namespace imlog
