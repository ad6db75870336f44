#pragma once
// The words of a message for the search index of the RocksDB model (t|<token>|<conv>|<seq> rows).
//
// A simple, language-agnostic rule, applied identically to messages and to queries:
//   - ASCII letters and digits form words, lowercased; any other ASCII byte separates words; a
//     one-character ASCII word is not indexed ("a", "I", "7").
//   - Each CJK character (kana, CJK ideographs, Hangul syllables) is a token of its own, because
//     those scripts do not separate words with spaces. A query "你好" therefore matches messages
//     containing both characters; search additionally requires the query's runs of CJK
//     characters to appear contiguously in the message (cjk_runs()), so "你好" matches "你好吗"
//     but not "好你".
//   - Other non-ASCII characters (accented Latin, Cyrillic, ...) are part of words, as bytes, not
//     case-folded; Unicode punctuation in the common blocks (U+00A0–U+00BF, U+2000–U+206F,
//     U+3000–U+303F, U+FF00–U+FFEF) separates words.
//   - A message indexes at most kMaxTokensPerMessage distinct tokens (the first ones), each at
//     most kMaxTokenBytes long (longer words are not indexed).
//
// Pure functions; thread-safe.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imlog {

inline constexpr size_t kMaxTokensPerMessage = 64;
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
  return (cp >= 0xa0 && cp <= 0xbf) || (cp >= 0x2000 && cp <= 0x206f) || (cp >= 0x3000 && cp <= 0x303f) ||
         (cp >= 0xff00 && cp <= 0xffef);
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

}  // namespace text_index_detail

// Fills `out` with the distinct tokens of `text` (see the header comment).
inline void tokenize(std::string_view text, TokenList& out, size_t max_tokens = kMaxTokensPerMessage) {
  using namespace text_index_detail;
  out.buf.clear();
  out.buf.reserve(text.size());  // tokens are at most as long as the text: views stay valid
  out.tokens.clear();
  out.spans.clear();
  size_t word_start = 0;
  bool in_word = false;
  bool word_ascii_only = true;
  auto finish = [&](size_t start, bool single_ascii_allowed) {
    size_t len = out.buf.size() - start;
    bool keep = len > 0 && len <= kMaxTokenBytes && (len > 1 || single_ascii_allowed);
    if (keep) {
      std::string_view t(out.buf.data() + start, len);
      for (auto [off, l] : out.spans) {
        if (std::string_view(out.buf.data() + off, l) == t) {
          keep = false;
          break;
        }
      }
    }
    if (keep) {
      out.spans.emplace_back(static_cast<uint32_t>(start), static_cast<uint32_t>(len));
    } else {
      out.buf.resize(start);
    }
  };
  size_t i = 0;
  while (i < text.size() && out.spans.size() < max_tokens) {
    auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {  // the common case, without decoding
      char lower = kAsciiWord.map[byte];
      if (lower != 0) {
        if (!in_word) {
          in_word = true;
          word_start = out.buf.size();
          word_ascii_only = true;
        }
        out.buf.push_back(lower);
      } else if (in_word) {
        finish(word_start, !word_ascii_only);
        in_word = false;
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    size_t n = decode_utf8(text, i, cp);
    if (n == 0) {  // invalid byte: a separator
      if (in_word) finish(word_start, !word_ascii_only);
      in_word = false;
      ++i;
      continue;
    }
    if (is_cjk(cp)) {
      if (in_word) finish(word_start, !word_ascii_only);
      in_word = false;
      size_t start = out.buf.size();
      out.buf.append(text.substr(i, n));
      finish(start, true);
    } else if (is_separator(cp)) {
      if (in_word) finish(word_start, !word_ascii_only);
      in_word = false;
    } else {
      if (!in_word) {
        in_word = true;
        word_start = out.buf.size();
        word_ascii_only = true;
      }
      if (cp < 0x80) {
        char c = static_cast<char>(cp);
        out.buf.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
      } else {
        word_ascii_only = false;
        out.buf.append(text.substr(i, n));
      }
    }
    i += n;
  }
  if (in_word && out.spans.size() < max_tokens) finish(word_start, !word_ascii_only);
  for (auto [off, len] : out.spans) out.tokens.emplace_back(out.buf.data() + off, len);
}

// Runs of two or more consecutive CJK characters in `text`, as written.
inline std::vector<std::string> cjk_runs(std::string_view text) {
  using namespace text_index_detail;
  std::vector<std::string> runs;
  size_t i = 0, run_start = 0, run_chars = 0;
  auto close = [&](size_t end) {
    if (run_chars >= 2) runs.emplace_back(text.substr(run_start, end - run_start));
    run_chars = 0;
  };
  while (i < text.size()) {
    uint32_t cp = 0;
    size_t n = decode_utf8(text, i, cp);
    if (n != 0 && is_cjk(cp)) {
      if (run_chars == 0) run_start = i;
      ++run_chars;
      i += n;
    } else {
      close(i);
      i += n == 0 ? 1 : n;
    }
  }
  close(text.size());
  return runs;
}

}  // namespace imlog
