// QueryService (query.h): the history rule (first_readable_seq), and history from the hot store
// when it can answer the whole range, else from the read model. A hot store that fails is not an
// error for the caller: the read model answers instead (Redis is a cache of recent history, never
// the only copy).

#include "imlog/projections/query.h"

#include <algorithm>
#include <map>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/streams.h"
#include "text_index.h"

namespace imlog {

inline constexpr uint32_t kMinPage = 1;
inline constexpr uint32_t kMaxPage = 200;

uint64_t first_readable_seq(const ReadAccess& access) {
  if (!access.allowed) return 0;
  if (access.history == "from_join") return std::max<uint64_t>(access.joined_seq, 1);
  return 1;
}

HistoryRange history_range(const HistoryRequest& request, uint64_t first_seq) {
  HistoryRange range;
  range.limit = std::clamp(request.limit, kMinPage, kMaxPage);
  range.before_seq = request.before_seq;
  range.forward = request.after_seq.has_value();
  // Rows below first_seq are not there for this reader: the range starts above them.
  const uint64_t floor = first_seq > 0 ? first_seq - 1 : 0;
  range.after_seq = std::max(request.after_seq.value_or(0), floor);
  return range;
}

Result<uint64_t> QueryService::readable_from(std::string_view conversation, uint64_t user_id) {
  auto access = primary_.read_access(conversation, user_id);
  IMLOG_TRY(access);
  return first_readable_seq(*access);
}

RetentionPolicy retention_policy(std::string_view conversation, const RetentionOverrides& overrides,
                                 uint32_t default_keep_days) {
  RetentionPolicy p;
  p.default_keep_days = default_keep_days;
  p.overrides = overrides;
  auto ref = parse_stream(conversation);
  if (!ref) {
    p.keep_days = default_keep_days;
    return p;
  }
  // The engine decides on its stream state: give it the overrides in that state's own fields.
  StreamState state;
  auto keep = [](const std::optional<uint32_t>& o) { return o ? static_cast<int64_t>(*o) : kNoOverride; };
  state.keep_a = keep(overrides.a);
  state.keep_b = ref->kind == StreamKind::single ? keep(overrides.b) : kNoOverride;
  p.keep_days = effective_keep_days(*ref, state, default_keep_days);
  auto sets = [&](const std::optional<uint32_t>& o) { return o && *o == p.keep_days; };
  if (ref->kind == StreamKind::group && overrides.a) p.source = "group";
  if (ref->kind == StreamKind::single && (sets(overrides.a) || sets(overrides.b))) p.source = "user";
  return p;
}

Result<RetentionPolicy> QueryService::retention(std::string_view conversation, uint32_t default_keep_days) {
  auto overrides = primary_.retention(conversation);
  IMLOG_TRY(overrides);
  return retention_policy(conversation, *overrides, default_keep_days);
}

Result<HistoryPage> QueryService::history(std::string_view conversation, uint64_t first_seq,
                                          const HistoryRequest& request) {
  if (first_seq == 0) return HistoryPage{};
  const HistoryRange range = history_range(request, first_seq);
  if (hot_ != nullptr) {
    auto page = hot_->history(conversation, range);
    if (page && page->has_value()) return std::move(**page);
    if (!page) {
      logger("projections")->debug("hot history of {} failed, reading the model: {}", conversation,
                                   page.error().to_string());
    }
  }
  return primary_.history(conversation, range);
}

namespace {

constexpr size_t kSnippetLead = 24;   // characters shown before the first match
constexpr size_t kSnippetChars = 120;  // characters shown in all (more when the first match is longer)

bool continuation_byte(char c) { return (static_cast<unsigned char>(c) & 0xc0) == 0x80; }

size_t back_chars(std::string_view s, size_t at, size_t n) {
  while (n-- > 0 && at > 0) {
    --at;
    while (at > 0 && continuation_byte(s[at])) --at;
  }
  return at;
}

size_t forward_chars(std::string_view s, size_t at, size_t n) {
  while (n-- > 0 && at < s.size()) {
    ++at;
    while (at < s.size() && continuation_byte(s[at])) ++at;
  }
  return at;
}

// The content around its first hit, the hits marked, "…" where it was cut.
std::vector<SnippetPart> snippet_of(std::string_view content, const std::vector<std::pair<size_t, size_t>>& hits) {
  size_t begin = hits.empty() ? 0 : back_chars(content, hits.front().first, kSnippetLead);
  size_t end = forward_chars(content, begin, kSnippetChars);
  if (!hits.empty()) end = std::max(end, hits.front().second);
  std::vector<SnippetPart> parts;
  auto plain = [&](std::string_view text) {
    if (text.empty()) return;
    if (!parts.empty() && !parts.back().hit) parts.back().text.append(text);
    else parts.push_back(SnippetPart{std::string(text), false});
  };
  if (begin > 0) plain("…");
  size_t at = begin;
  for (auto [from, to] : hits) {
    if (from >= end) break;
    plain(content.substr(at, from - at));
    to = std::min(to, end);
    parts.push_back(SnippetPart{std::string(content.substr(from, to - from)), true});
    at = to;
  }
  plain(content.substr(at, end - at));
  if (end < content.size()) plain("…");
  return parts;
}

}  // namespace

Result<SearchResults> QueryService::search_messages(const SearchRequest& request) {
  SearchResults out;
  SearchQuery query = parse_search_query(request.text);
  if (!query.searchable()) return out;
  const uint32_t limit = std::clamp<uint32_t>(request.limit, 1, kMaxSearchPage);
  std::map<std::string, uint64_t, std::less<>> first;  // the first readable seq per conversation seen
  SearchRequest ask = request;
  ask.limit = limit;
  for (int round = 0; round < kSearchRounds; ++round) {
    auto page = primary_.search_messages(ask);
    IMLOG_TRY(page);
    for (auto& m : page->messages) {
      auto known = first.find(m.conversation_id);
      if (known == first.end()) {
        auto from = readable_from(m.conversation_id, request.user_id);
        IMLOG_TRY(from);
        known = first.emplace(m.conversation_id, *from).first;
      }
      if (known->second == 0 || m.seq_id < known->second) continue;
      if (out.results.size() == limit) {
        // A readable result past the page: the page ends at its last result.
        out.next_before_id = out.results.back().message.message_id;
        return out;
      }
      auto snippet = snippet_of(m.content, find_hits(query, m.content));
      out.results.push_back(SearchResult{std::move(m), std::move(snippet)});
    }
    out.next_before_id = page->next_before_id;
    if (page->next_before_id == 0) return out;
    if (out.results.size() == limit) return out;
    ask.before_id = page->next_before_id;
  }
  return out;
}

}  // namespace imlog
