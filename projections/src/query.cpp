// QueryService (query.h): the history rule (first_readable_seq), and history from the hot store
// when it can answer the whole range, else from the read model. A hot store that fails is not an
// error for the caller: the read model answers instead (Redis is a cache of recent history, never
// the only copy).

#include "imlog/projections/query.h"

#include <algorithm>
#include <map>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"

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

Result<std::vector<MessageView>> QueryService::search_messages(uint64_t user_id, std::string_view text,
                                                               uint32_t limit) {
  auto found = primary_.search_messages(user_id, text, limit);
  IMLOG_TRY(found);
  std::map<std::string, uint64_t, std::less<>> first;  // per conversation of the results
  for (const auto& m : *found) {
    if (first.contains(m.conversation_id)) continue;
    auto from = readable_from(m.conversation_id, user_id);
    IMLOG_TRY(from);
    first.emplace(m.conversation_id, *from);
  }
  std::erase_if(*found, [&](const MessageView& m) {
    uint64_t from = first.find(m.conversation_id)->second;
    return from == 0 || m.seq_id < from;
  });
  return found;
}

}  // namespace imlog
