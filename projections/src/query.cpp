// QueryService (query.h): history from the hot store when it can answer the whole range, else
// from the read model. A hot store that fails is not an error for the caller: the read model
// answers instead (Redis is a cache of recent history, never the only copy).

#include "imlog/projections/query.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"

namespace imlog {

inline constexpr uint32_t kMinPage = 1;
inline constexpr uint32_t kMaxPage = 200;

HistoryRange history_range(const HistoryRequest& request) {
  HistoryRange range;
  range.limit = std::clamp(request.limit, kMinPage, kMaxPage);
  range.before_seq = request.before_seq;
  range.forward = request.after_seq.has_value();
  range.after_seq = request.after_seq.value_or(0);
  return range;
}

Result<HistoryPage> QueryService::history(std::string_view conversation, const HistoryRequest& request) {
  const HistoryRange range = history_range(request);
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

}  // namespace imlog
