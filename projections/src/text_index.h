#pragma once
// The words of a message for message search (the RocksDB model's t| blocks, the MySQL model's
// message_tokens table), and how a query matches a message. One rule, applied identically to
// messages and to queries:
//
//   - Latin words: runs of letters and digits, case-folded and accent-folded to ASCII
//     ("Café" → "cafe", "Straße" → "strasse", "ŁÓDŹ" → "lodz"; the Latin-1 Supplement and
//     Latin Extended-A letters, and combining marks U+0300–U+036F dropped, so decomposed text
//     folds alike). Letters of other alphabets (Greek, Cyrillic, Latin Extended-B, ...) are part
//     of words as written, not folded. A word of one character is not a token ("a", "I", "7").
//   - Chinese, Japanese and Korean (kana, CJK ideographs, Hangul syllables) have no spaces
//     between words: each run of two or more such characters is indexed as its character
//     bigrams ("我们去攀岩" → 我们 们去 去攀 攀岩). A lone character is not a token. A query's
//     run of two or more characters must appear in the message exactly as written (its bigrams
//     find the candidates, the run is then looked for), so "攀岩" matches "去攀岩吧" but not
//     "攀登岩石", and a one-character query finds nothing.
//   - Every other character separates words: ASCII punctuation and spaces, invalid bytes, and
//     Unicode punctuation in the common blocks (U+00A0–U+00BF, U+00D7, U+00F7, U+2000–U+206F,
//     U+3000–U+303F, U+FF00–U+FFEF).
//   - A message indexes at most kMaxTokensPerMessage distinct tokens (the first ones), each at
//     most kMaxTokenBytes long (longer words are not indexed); matching uses the same tokens.
//
// A message matches a query when every token of the query is a token of the message and every
// CJK run of the query appears in the message's text (matches()).
//
// Pure functions; thread-safe.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "imlog/projections/query.h"

namespace imlog {

inline constexpr size_t kMaxTokensPerMessage = 256;
inline constexpr size_t kMaxTokenBytes = 64;

// Distinct tokens in order of first appearance; the views point into `buf`. Reused across calls
// to avoid allocating per message.
struct TokenList {
  std::string buf;
  std::vector<std::string_view> tokens;
  std::vector<std::pair<uint32_t, uint32_t>> spans;  // scratch: (offset, length) in buf
};

namespace text_index_detail {

// Decodes one UTF-8 code point at text[i]; returns its length (0 when the byte is not the start
// of a valid sequence).
inline size_t decode_utf8(std::string_view text, size_t i, uint32_t& cp) {
  auto c = static_cast<unsigned char>(text[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > text.size()) return 0;
  cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    auto cc = static_cast<unsigned char>(text[i + k]);
    if ((cc >> 6) != 0x2) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  return n;
}

inline bool is_cjk(uint32_t cp) {
  return (cp >= 0x3040 && cp <= 0x30ff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x4e00 && cp <= 0x9fff) ||
         (cp >= 0xac00 && cp <= 0xd7af) || (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x20000 && cp <= 0x2fa1f);
}

inline bool is_separator(uint32_t cp) {
  if (cp < 0x80) {
    return !((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9'));
  }
  return (cp >= 0xa0 && cp <= 0xbf) || cp == 0xd7 || cp == 0xf7 || (cp >= 0x2000 && cp <= 0x206f) ||
         (cp >= 0x3000 && cp <= 0x303f) || (cp >= 0xff00 && cp <= 0xffef);
}

inline bool is_combining_mark(uint32_t cp) { return cp >= 0x300 && cp <= 0x36f; }

// The ASCII base letters of U+00C0–U+017F, one per code point; '*' marks the letters that fold to
// two (folded_latin below), '?' the two separators (× ÷, never looked up).
inline constexpr std::string_view kLatinFold =
    "aaaaaa*ceeeeiiii" "dnooooo?ouuuuy**" "aaaaaa*ceeeeiiii" "dnooooo?ouuuuy*y"   // U+00C0–U+00FF
    "aaaaaaccccccccdd" "ddeeeeeeeeeegggg" "gggghhhhiiiiiiii" "ii**jjkkklllllll"   // U+0100–U+013F
    "lllnnnnnnnnnoooo" "oo**rrrrrrssssss" "ssttttttuuuuuuuu" "uuuuwwyyyzzzzzzs";  // U+0140–U+017F
static_assert(kLatinFold.size() == 0x180 - 0xc0);

// The ASCII a folded Latin letter becomes, or empty when `cp` is not one of them.
inline std::string_view folded_latin(uint32_t cp) {
  if (cp < 0xc0 || cp > 0x17f) return {};
  char base = kLatinFold[cp - 0xc0];
  if (base != '*') return kLatinFold.substr(cp - 0xc0, 1);
  switch (cp) {
    case 0xc6: case 0xe6: return "ae";
    case 0xde: case 0xfe: return "th";
    case 0xdf: return "ss";
    case 0x132: case 0x133: return "ij";
    default: return "oe";  // U+0152, U+0153
  }
}

// ASCII letters and digits → their lowercase; every other ASCII byte → 0 (a separator).
struct AsciiWordTable {
  char map[128] = {};
  constexpr AsciiWordTable() {
    for (int c = '0'; c <= '9'; ++c) map[c] = static_cast<char>(c);
    for (int c = 'a'; c <= 'z'; ++c) map[c] = static_cast<char>(c);
    for (int c = 'A'; c <= 'Z'; ++c) map[c] = static_cast<char>(c - 'A' + 'a');
  }
};
inline constexpr AsciiWordTable kAsciiWord{};

// What one character is to the tokenizer.
enum class CharClass { word, cjk, separator, ignored };

struct Char {
  CharClass kind = CharClass::separator;
  size_t bytes = 1;          // its length in the text
  std::string_view folded;   // word characters: what they add to the word
};

// Classifies the character at text[i]. `scratch` (one byte) holds a folded ASCII letter.
inline Char classify(std::string_view text, size_t i, char& scratch) {
  auto byte = static_cast<unsigned char>(text[i]);
  if (byte < 0x80) {
    scratch = kAsciiWord.map[byte];
    if (scratch == 0) return {};
    return {CharClass::word, 1, std::string_view(&scratch, 1)};
  }
  uint32_t cp = 0;
  size_t n = decode_utf8(text, i, cp);
  if (n == 0) return {};
  if (is_cjk(cp)) return {CharClass::cjk, n, text.substr(i, n)};
  if (is_separator(cp)) return {CharClass::separator, n, {}};
  if (is_combining_mark(cp)) return {CharClass::ignored, n, {}};
  std::string_view f = folded_latin(cp);
  return {CharClass::word, n, f.empty() ? text.substr(i, n) : f};
}

// Walks `text` once, calling word(folded, begin, end) for each word of two or more characters and
// cjk_run(begin, end, chars) for each run of CJK characters (byte offsets into `text`). Stops
// when a callback returns false.
template <class OnWord, class OnCjkRun>
void scan_text(std::string_view text, OnWord&& word, OnCjkRun&& cjk_run) {
  std::string folded;
  size_t word_begin = 0, word_chars = 0, run_begin = 0, run_chars = 0;
  auto end_word = [&](size_t at) {
    bool go = true;
    if (word_chars >= 2) go = word(std::string_view(folded), word_begin, at);
    folded.clear();
    word_chars = 0;
    return go;
  };
  auto end_run = [&](size_t at) {
    bool go = true;
    if (run_chars > 0) go = cjk_run(run_begin, at, run_chars);
    run_chars = 0;
    return go;
  };
  char scratch = 0;
  size_t i = 0;
  while (i < text.size()) {
    Char c = classify(text, i, scratch);
    bool go = true;
    switch (c.kind) {
      case CharClass::word:
        go = end_run(i);
        if (word_chars == 0) word_begin = i;
        folded.append(c.folded);
        ++word_chars;
        break;
      case CharClass::cjk:
        go = end_word(i);
        if (run_chars == 0) run_begin = i;
        ++run_chars;
        break;
      case CharClass::separator: go = end_word(i) && end_run(i); break;
      case CharClass::ignored: break;  // a combining mark: part of the word, adds nothing
    }
    if (!go) return;
    i += c.bytes;
  }
  if (end_word(text.size())) end_run(text.size());
}

// The byte length of the UTF-8 character starting at text[i] (1 for an invalid byte).
inline size_t char_bytes(std::string_view text, size_t i) {
  uint32_t cp = 0;
  size_t n = decode_utf8(text, i, cp);
  return n == 0 ? 1 : n;
}

}  // namespace text_index_detail

// Fills `out` with the distinct tokens of `text` (see the header comment).
inline void tokenize(std::string_view text, TokenList& out, size_t max_tokens = kMaxTokensPerMessage) {
  using namespace text_index_detail;
  out.buf.clear();
  out.tokens.clear();
  out.spans.clear();
  auto add = [&](std::string_view t) {
    if (t.size() > kMaxTokenBytes) return true;
    for (auto [off, len] : out.spans) {
      if (std::string_view(out.buf.data() + off, len) == t) return true;
    }
    out.spans.emplace_back(static_cast<uint32_t>(out.buf.size()), static_cast<uint32_t>(t.size()));
    out.buf.append(t);
    return out.spans.size() < max_tokens;
  };
  scan_text(
      text, [&](std::string_view folded, size_t, size_t) { return add(folded); },
      [&](size_t begin, size_t end, size_t chars) {
        if (chars < 2) return true;
        size_t first = begin;
        while (first < end) {
          size_t second = first + char_bytes(text, first);
          if (second >= end) break;
          size_t after = second + char_bytes(text, second);
          if (!add(text.substr(first, after - first))) return false;
          first = second;
        }
        return true;
      });
  for (auto [off, len] : out.spans) out.tokens.emplace_back(out.buf.data() + off, len);
}

// A query as search uses it: its tokens (the index lookups) and its CJK runs of two or more
// characters, as written (looked for in each candidate's text).
struct SearchQuery {
  std::vector<std::string> tokens;
  std::vector<std::string> words;     // the Latin (and other alphabets') tokens, folded
  std::vector<std::string> cjk_runs;
  // A query with no token finds nothing: every word is one character, or there is no word.
  [[nodiscard]] bool searchable() const { return !tokens.empty(); }
};

// At most kMaxQueryTokens tokens of a query are used (the first ones).
inline constexpr size_t kMaxQueryTokens = 16;

inline SearchQuery parse_search_query(std::string_view text) {
  using namespace text_index_detail;
  SearchQuery q;
  TokenList list;
  tokenize(text, list, kMaxQueryTokens);
  for (auto t : list.tokens) q.tokens.emplace_back(t);
  scan_text(
      text,
      [&](std::string_view folded, size_t, size_t) {
        if (folded.size() <= kMaxTokenBytes &&
            std::find(q.words.begin(), q.words.end(), folded) == q.words.end()) {
          q.words.emplace_back(folded);
        }
        return true;
      },
      [&](size_t begin, size_t end, size_t chars) {
        if (chars >= 2) q.cjk_runs.emplace_back(text.substr(begin, end - begin));
        return true;
      });
  return q;
}

// Does a message with these tokens and this text match `q`? `content_tokens` is tokenize(content).
inline bool matches(const SearchQuery& q, const TokenList& content_tokens, std::string_view content) {
  auto has = [&](const std::string& t) {
    return std::find(content_tokens.tokens.begin(), content_tokens.tokens.end(), t) != content_tokens.tokens.end();
  };
  return std::all_of(q.tokens.begin(), q.tokens.end(), has) &&
         std::all_of(q.cjk_runs.begin(), q.cjk_runs.end(),
                     [&](const std::string& r) { return content.find(r) != std::string_view::npos; });
}

// The byte ranges [begin, end) of `content` that a query's words and CJK runs match, sorted and
// merged: what a result's snippet highlights.
inline std::vector<std::pair<size_t, size_t>> find_hits(const SearchQuery& q, std::string_view content) {
  using namespace text_index_detail;
  std::vector<std::pair<size_t, size_t>> hits;
  scan_text(
      content,
      [&](std::string_view folded, size_t begin, size_t end) {
        if (std::find(q.words.begin(), q.words.end(), folded) != q.words.end()) hits.emplace_back(begin, end);
        return true;
      },
      [](size_t, size_t, size_t) { return true; });
  for (const auto& r : q.cjk_runs) {
    for (size_t at = content.find(r); at != std::string_view::npos; at = content.find(r, at + 1)) {
      hits.emplace_back(at, at + r.size());
    }
  }
  std::sort(hits.begin(), hits.end());
  std::vector<std::pair<size_t, size_t>> merged;
  for (const auto& h : hits) {
    if (!merged.empty() && h.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, h.second);
    } else {
      merged.push_back(h);
    }
  }
  return merged;
}

// The page a model's search answers with, from the matches it found (highest id first):
//   unread_max > 0 — it stopped at a bound with ids up to unread_max not all read: only the
//                    matches above it are certain, the next page starts just above it;
//   exhausted      — it read everything: no next page unless more than `limit` were found.
inline SearchPage search_page(std::vector<MessageView> newest_first, uint32_t limit, uint64_t unread_max,
                              bool exhausted) {
  SearchPage page;
  if (unread_max > 0) {
    std::erase_if(newest_first, [&](const MessageView& m) { return m.message_id <= unread_max; });
  }
  if (newest_first.size() > limit || (newest_first.size() == limit && !exhausted)) {
    newest_first.resize(limit);
    page.next_before_id = newest_first.back().message_id;
  } else if (unread_max > 0) {
    page.next_before_id = unread_max + 1;
  }
  page.messages = std::move(newest_first);
  return page;
}

}  // namespace imlog
