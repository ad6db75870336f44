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

Result<HistoryPage> QueryService::history(std::string_view conversation, uint64_t after_seq, uint64_t before_seq,
                                          uint32_t limit) {
  limit = std::clamp(limit, kMinPage, kMaxPage);
  if (hot_ != nullptr) {
    auto page = hot_->history(conversation, after_seq, before_seq, limit);
    if (page && page->has_value()) return std::move(**page);
    if (!page) {
      logger("projections")->debug("hot history of {} failed, reading the model: {}", conversation,
                                   page.error().to_string());
    }
  }
  return primary_.history(conversation, after_seq, before_seq, limit);
}

}  // namespace imlog
