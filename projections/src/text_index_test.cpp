// Message search: the tokenizer and matching rule (text_index.h), snippets, paging, and a
// rapidcheck property comparing QueryService::search_messages with a naive scan of a generated
// English and Chinese corpus.

#include "text_index.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rocksdb/db.h>

#include <map>
#include <set>
#include <sstream>

#include "imlog/engine/streams.h"
#include "imlog/projections/query.h"
#include "projection_test_util.h"

namespace imlog {
namespace {

using testing::LogFixture;

std::vector<std::string> tokens_of(std::string_view text, size_t max = kMaxTokensPerMessage) {
  TokenList list;
  tokenize(text, list, max);
  return {list.tokens.begin(), list.tokens.end()};
}

using V = std::vector<std::string>;

TEST(Tokenize, LatinWordsAreCaseAndAccentFolded) {
  EXPECT_EQ(tokens_of("Café au LAIT, s'il vous plaît"), (V{"cafe", "au", "lait", "il", "vous", "plait"}));
  EXPECT_EQ(tokens_of("Straße ÆON Œuvre Łódź ĲSSEL þorn"), (V{"strasse", "aeon", "oeuvre", "lodz", "ijssel", "thorn"}));
  // A decomposed é (e + U+0301) folds as the composed one does.
  EXPECT_EQ(tokens_of("Cafe\xcc\x81"), V{"cafe"});
  EXPECT_EQ(tokens_of("a I 7 é ok"), V{"ok"}) << "one-character words are not tokens";
  EXPECT_EQ(tokens_of("Москва"), V{"Москва"}) << "other alphabets are kept as written";
  EXPECT_EQ(tokens_of("2×3 ÷ x—y"), (V{})) << "× ÷ and dashes separate";
  EXPECT_EQ(tokens_of("hello hello HELLO"), V{"hello"});
}

TEST(Tokenize, CjkRunsAreIndexedAsBigrams) {
  EXPECT_EQ(tokens_of("我们去攀岩"), (V{"我们", "们去", "去攀", "攀岩"}));
  EXPECT_EQ(tokens_of("好"), V{}) << "a lone character is not a token";
  EXPECT_EQ(tokens_of("go攀岩ok。好的"), (V{"go", "攀岩", "ok", "好的"}));
  EXPECT_EQ(tokens_of("こんにちは"), (V{"こん", "んに", "にち", "ちは"}));
  EXPECT_EQ(tokens_of("안녕하세요"), (V{"안녕", "녕하", "하세", "세요"}));
}

TEST(Tokenize, StopsAtTheTokenLimitAndSkipsOverlongWords) {
  EXPECT_EQ(tokens_of("one two three four", 2), (V{"one", "two"}));
  EXPECT_EQ(tokens_of(std::string(kMaxTokenBytes + 1, 'x') + " short"), V{"short"});
  EXPECT_EQ(tokens_of("\xff\xfe ok \xc3"), V{"ok"}) << "invalid bytes separate";
}

TEST(SearchQueryRule, EveryTokenAndEveryCjkRunMustMatch) {
  auto match = [](std::string_view query, std::string_view content) {
    TokenList t;
    tokenize(content, t);
    return matches(parse_search_query(query), t, content);
  };
  EXPECT_TRUE(match("CAFE", "Meet at the café"));
  EXPECT_TRUE(match("攀岩", "明天去攀岩吧"));
  EXPECT_FALSE(match("攀岩", "攀登岩石")) << "both characters, not together";
  EXPECT_FALSE(match("攀岩明天", "明天去攀岩吧")) << "its bigrams 攀岩 and 明天 are there, 岩明 is not";
  EXPECT_TRUE(match("攀岩 明天", "明天去攀岩吧"));
  EXPECT_FALSE(match("coffee tea", "coffee only"));
  EXPECT_FALSE(parse_search_query("a 好 !").searchable());
  EXPECT_TRUE(parse_search_query("好的").searchable());
}

TEST(SearchQueryRule, HitsAreTheMatchedWordsAndRunsAsWritten) {
  std::string content = "Café? 我们去攀岩, cafe";
  auto hits = find_hits(parse_search_query("CAFE 攀岩"), content);
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(content.substr(hits[0].first, hits[0].second - hits[0].first), "Café");
  EXPECT_EQ(content.substr(hits[1].first, hits[1].second - hits[1].first), "攀岩");
  EXPECT_EQ(content.substr(hits[2].first, hits[2].second - hits[2].first), "cafe");
}

// ---- through the model and the query service ------------------------------------------------

struct Corpus {
  Corpus() {
    auto& b = *f.builder;
    ann = b.register_user("ann");
    bob = b.register_user("bob");
    cat = b.register_user("cat");
  }
  SearchResults search(uint64_t user, const std::string& text, uint64_t before = 0, uint32_t limit = 20,
                       const std::string& conv = "") {
    QueryService q(*model);
    auto r = q.search_messages(SearchRequest{user, text, conv, before, limit});
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? std::move(*r) : SearchResults{};
  }
  void project() {
    model = f.model();
    auto r = f.project(*model);
    EXPECT_TRUE(r) << r.error().to_string();
  }
  LogFixture f;
  uint64_t ann = 0, bob = 0, cat = 0;
  std::unique_ptr<RocksDbModel> model;
};

std::string rendered(const std::vector<SnippetPart>& parts) {
  std::string out;
  for (const auto& p : parts) out += p.hit ? "[" + p.text + "]" : p.text;
  return out;
}

TEST(MessageSearch, ResultsCarryASnippetWithTheMatchesMarked) {
  Corpus c;
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += "word ";
  c.f.builder->message(single_stream(c.ann, c.bob), c.ann, long_text + "Café 我们去攀岩 " + long_text);
  c.f.builder->message(single_stream(c.ann, c.bob), c.ann, "cafe");
  c.project();
  auto r = c.search(c.bob, "CAFE 攀岩");
  ASSERT_EQ(r.results.size(), 1u);
  std::string s = rendered(r.results[0].snippet);
  EXPECT_TRUE(s.starts_with("…")) << s;
  EXPECT_TRUE(s.ends_with("…")) << s;
  EXPECT_NE(s.find("[Café] 我们去[攀岩] word"), std::string::npos) << s;
  auto plain = c.search(c.bob, "cafe");
  ASSERT_EQ(plain.results.size(), 2u);
  EXPECT_EQ(rendered(plain.results[0].snippet), "[cafe]");
}

TEST(MessageSearch, PagesNewestFirstWithinOneConversationAndNeverShowsRecalls) {
  Corpus c;
  auto& b = *c.f.builder;
  std::string ab = single_stream(c.ann, c.bob), ac = single_stream(c.ann, c.cat);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(b.message(ab, c.ann, "tea number " + std::to_string(i)));
  b.message(ac, c.ann, "tea with cat");
  b.recall(ab, c.ann, ids[3], 4);
  c.project();
  std::vector<std::string> seen;
  uint64_t before = 0;
  for (int page = 0; page < 10; ++page) {
    auto r = c.search(c.ann, "TEA", before, 2, ab);
    for (const auto& x : r.results) seen.push_back(x.message.content);
    if (r.next_before_id == 0) break;
    before = r.next_before_id;
  }
  EXPECT_EQ(seen, (V{"tea number 6", "tea number 5", "tea number 4", "tea number 2", "tea number 1", "tea number 0"}));
  EXPECT_EQ(c.search(c.ann, "tea").results.size(), 7u);
  EXPECT_TRUE(c.search(c.bob, "tea", 0, 20, ac).results.empty()) << "not bob's conversation";
}

TEST(MessageSearch, AModelIndexedByAnOlderBuildIsReindexedWhenOpened) {
  Corpus c;
  c.f.builder->message(single_stream(c.ann, c.bob), c.ann, "Café 我们去攀岩");
  c.project();
  const auto rows = testing::rows_of(*c.model);
  ASSERT_TRUE(c.model->flush());  // the raw DB below has no merge operator to recover a WAL with
  c.model.reset();
  {
    // What an older build left: no version row, blocks keyed by one id, words as written.
    rocksdb::Options o;
    o.disable_auto_compactions = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, (c.f.dir.path() / "model").string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    rocksdb::WriteOptions w;
    ASSERT_TRUE(db->Delete(w, "v|search").ok());
    ASSERT_TRUE(db->DeleteRange(w, db->DefaultColumnFamily(), "t|", "t}").ok());
    ASSERT_TRUE(db->Put(w, "t|Café|0000000000000001", std::string("\x0bsingle_1_2\x01\x01")).ok());
    ASSERT_TRUE(db->Close().ok());
  }
  c.model = c.f.model();
  ASSERT_NE(c.model, nullptr);
  EXPECT_EQ(testing::rows_of(*c.model), rows);
  EXPECT_EQ(c.search(c.bob, "cafe").results.size(), 1u);
  EXPECT_EQ(c.search(c.bob, "攀岩").results.size(), 1u);
}

// ---- the property: every result is right, and nothing is missed ------------------------------

// The corpus's pieces: English words in mixed case and accents, Chinese words, and lone
// characters, joined with or without separators (so CJK runs also form across pieces).
const std::vector<std::string> kPieces = {"coffee", "Coffee", "CLIMBING", "climbing", "tea", "café", "Cafe",
                                          "naïve", "hello", "x", "我们", "今天", "攀岩", "咖啡", "你好", "明天",
                                          "好", "去", "喝茶"};
const std::vector<std::string> kSeparators = {" ", ", ", "!", "。", ""};

// The naive rule, written apart from text_index.h for the characters the corpus uses: Latin
// words split on anything else and folded by hand; runs of Chinese characters (3-byte UTF-8
// from E4 to E9) of two or more must appear in the text.
struct NaiveText {
  std::set<std::string> words;
  std::vector<std::string> runs;
};

NaiveText naive(const std::string& s) {
  NaiveText out;
  std::string word, run;
  size_t run_chars = 0;
  auto end_word = [&] {
    if (word.size() >= 2) out.words.insert(word);
    word.clear();
  };
  auto end_run = [&] {
    if (run_chars >= 2) out.runs.push_back(run);
    run.clear();
    run_chars = 0;
  };
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (std::isalnum(c)) {
      end_run();
      word += static_cast<char>(std::tolower(c));
      i += 1;
    } else if (s.compare(i, 2, "é") == 0 || s.compare(i, 2, "ï") == 0) {
      end_run();
      word += s.compare(i, 2, "é") == 0 ? 'e' : 'i';
      i += 2;
    } else if (c >= 0xe4 && c <= 0xe9) {
      end_word();
      run += s.substr(i, 3);
      ++run_chars;
      i += 3;
    } else {
      end_word();
      end_run();
      i += c >= 0xe0 ? 3 : 1;
    }
  }
  end_word();
  end_run();
  return out;
}

bool naive_match(const std::string& query, const std::string& content) {
  NaiveText q = naive(query), m = naive(content);
  if (q.words.empty() && q.runs.empty()) return false;
  for (const auto& w : q.words) {
    if (!m.words.contains(w)) return false;
  }
  for (const auto& r : q.runs) {
    if (content.find(r) == std::string::npos) return false;
  }
  return true;
}

std::string gen_text(int max_pieces) {
  auto n = *rc::gen::inRange(1, max_pieces + 1);
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i > 0) s += *rc::gen::elementOf(kSeparators);
    s += *rc::gen::elementOf(kPieces);
  }
  return s;
}

struct Sent {
  std::string conv;
  uint64_t seq = 0;
  uint64_t id = 0;
  std::string content;
  bool recalled = false;
};

// ann, bob and cat; their three one-to-one conversations; group 1 (all three, history `all`)
// and group 2 (ann and bob, history `from_join`), which cat joins part-way.
void search_equals_a_naive_scan() {
  Corpus c;
  auto& b = *c.f.builder;
  const std::vector<uint64_t> users = {c.ann, c.bob, c.cat};
  b.create_group(1, c.ann, {c.bob, c.cat});
  b.create_group(2, c.ann, {c.bob}, "", std::nullopt, fb::HistoryRule::FromJoin);
  const std::string g2 = group_stream(2);
  std::vector<std::string> convs = {single_stream(c.ann, c.bob), single_stream(c.ann, c.cat),
                                    single_stream(c.bob, c.cat), group_stream(1), g2};
  auto members = [&](const std::string& conv, bool cat_in_g2) {
    if (conv == group_stream(1)) return users;
    if (conv == g2) return cat_in_g2 ? users : std::vector<uint64_t>{c.ann, c.bob};
    auto ref = parse_stream(conv);
    return std::vector<uint64_t>{ref->a, ref->b};
  };
  const auto n = *rc::gen::inRange(1, 60);
  const auto cat_joins_at = *rc::gen::inRange(0, n + 1);  // n: never
  uint64_t cat_joined_seq = 0;
  std::vector<Sent> sent;
  for (int i = 0; i < n; ++i) {
    if (i == cat_joins_at) {
      b.join(2, c.cat, c.ann);
      cat_joined_seq = b.last_seq(g2);
    }
    const std::string& conv = *rc::gen::elementOf(convs);
    auto who = members(conv, cat_joined_seq > 0);
    uint64_t sender = *rc::gen::elementOf(who);
    std::string text = gen_text(6);
    uint64_t id = b.message(conv, sender, text);
    sent.push_back(Sent{conv, b.last_seq(conv), id, text});
    if (*rc::gen::inRange(0, 8) == 0) {  // now and then, recall a random earlier message of the sender's
      Sent& r = sent[static_cast<size_t>(*rc::gen::inRange<size_t>(0, sent.size()))];
      if (!r.recalled) {
        b.recall(r.conv, sender, r.id, r.seq);
        r.recalled = true;
      }
    }
  }
  b.set_batch(static_cast<size_t>(*rc::gen::inRange(1, 20)));
  c.model = c.f.model();
  RC_ASSERT(c.model != nullptr);
  RC_ASSERT(c.f.project(*c.model, *rc::gen::inRange<uint64_t>(1, 30)).has_value());

  auto readable = [&](uint64_t user, const Sent& s) {
    if (s.conv == g2 && user == c.cat) return cat_joined_seq > 0 && s.seq >= cat_joined_seq;
    auto who = members(s.conv, cat_joined_seq > 0);
    return std::find(who.begin(), who.end(), user) != who.end();
  };
  QueryService q(*c.model);
  for (int round = 0; round < 6; ++round) {
    std::string query = gen_text(2);
    uint64_t user = *rc::gen::elementOf(users);
    std::string conv = *rc::gen::inRange(0, 4) == 0 ? *rc::gen::elementOf(convs) : std::string();
    auto limit = *rc::gen::inRange<uint32_t>(1, 6);
    std::set<uint64_t> expected;
    for (const auto& s : sent) {
      if (!s.recalled && readable(user, s) && (conv.empty() || s.conv == conv) && naive_match(query, s.content)) {
        expected.insert(s.id);
      }
    }
    std::set<uint64_t> found;
    uint64_t before = 0, last = UINT64_MAX;
    for (int page = 0; page < 200; ++page) {
      auto r = q.search_messages(SearchRequest{user, query, conv, before, limit});
      RC_ASSERT(r.has_value());
      RC_ASSERT(r->results.size() <= limit);
      for (const auto& x : r->results) {
        RC_ASSERT(x.message.message_id < last);  // newest first, across pages
        last = x.message.message_id;
        RC_ASSERT(found.insert(x.message.message_id).second);
        bool hit = std::any_of(x.snippet.begin(), x.snippet.end(), [](const SnippetPart& p) { return p.hit; });
        RC_ASSERT(hit);
      }
      if (r->next_before_id == 0) break;
      before = r->next_before_id;
    }
    if (found != expected) {
      std::ostringstream why;
      why << "user " << user << " query `" << query << "` conv `" << conv << "` limit " << limit << ": found "
          << found.size() << ", a naive scan " << expected.size();
      RC_FAIL(why.str());
    }
  }
}

TEST(MessageSearchProperty, FindsExactlyWhatANaiveScanFinds) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  if (std::getenv("RC_PARAMS") == nullptr) params.maxSuccess = 40;
  rc::detail::TestMetadata metadata;
  metadata.id = "MessageSearchProperty/FindsExactlyWhatANaiveScanFinds";
  metadata.description = metadata.id;
  auto result = rc::detail::checkTestable([] { search_equals_a_naive_scan(); }, metadata, params);
  if (!result.is<rc::detail::SuccessResult>()) {
    std::ostringstream ss;
    rc::detail::printResultMessage(result, ss);
    FAIL() << ss.str() << "\n(rerun with RC_PARAMS=\"seed=" << params.seed << "\")";
  }
}

}  // namespace
}  // namespace imlog
