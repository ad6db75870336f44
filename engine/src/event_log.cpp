#include "imlog/engine/event_log.h"

#include <future>

#include <xxhash.h>

#include "imlog/engine/partitioner.h"

namespace imlog {
namespace {

class LogCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "event log"; }
  std::string message(int c) const override {
    switch (static_cast<LogErrc>(c)) {
      case LogErrc::bad_argument: return "bad argument";
      case LogErrc::unknown_topic: return "unknown topic";
      case LogErrc::topic_mismatch: return "topic exists with other settings";
      case LogErrc::record_too_large: return "record too large";
      case LogErrc::corrupt_record: return "corrupt record";
      case LogErrc::offset_out_of_range: return "offset out of range";
      case LogErrc::queue_full: return "append queue full";
      case LogErrc::timed_out: return "timed out";
      case LogErrc::unavailable: return "unavailable";
      case LogErrc::closed: return "closed";
      case LogErrc::io_error: return "i/o error";
      case LogErrc::rebalance_in_progress: return "group rebalance in progress";
      case LogErrc::overloaded: return "overloaded";
    }
    return "unknown event log error";
  }
};

}  // namespace

const std::error_category& log_category() {
  static const LogCategory category;
  return category;
}

int32_t partition_for(std::string_view key, int32_t partitions) {
  uint64_t h = XXH64(key.data(), key.size(), 0);
  return static_cast<int32_t>(h % static_cast<uint64_t>(partitions));
}

Result<std::vector<RecordPosition>> EventLog::append_wait(std::string_view topic,
                                                          std::vector<OutRecord> records) {
  std::promise<Result<std::vector<RecordPosition>>> done;
  auto fut = done.get_future();
  append(topic, std::move(records),
         [&done](Result<std::vector<RecordPosition>> r) { done.set_value(std::move(r)); });
  return fut.get();
}

}  // namespace imlog
