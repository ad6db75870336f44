#include "event_follow.h"

#include <chrono>
#include <string>
#include <vector>

#include "imlog/engine/streams.h"

namespace imlog {

Result<int64_t> resume_point(EventLog& log, Consumer& reader, int32_t p) {
  auto stored = reader.committed(TopicPartition{std::string(kEventsTopic), p});
  IMLOG_TRY(stored);
  if (*stored) return **stored;
  return log.end_offset(TopicPartition{std::string(kEventsTopic), p});
}

Status read_partition_until(EventLog& log, int32_t p, int64_t from, int64_t until, uint64_t max_batch,
                            const std::function<bool()>& stopping, const std::function<void(const Record&)>& each,
                            std::string_view who) {
  if (from >= until) return {};
  ConsumerOptions opts;
  opts.max_batch = max_batch;
  auto scan = log.consumer(opts);
  IMLOG_TRY(scan->assign({TopicPartitionOffset{std::string(kEventsTopic), p, from}}));
  std::vector<Record> records;
  for (int64_t next = from; next < until;) {
    if (stopping()) {
      return fail(LogErrc::closed, std::string(who) + " stopped while reading im.events partition " + std::to_string(p));
    }
    auto polled = scan->poll(records, std::chrono::milliseconds(1000));
    if (!polled) {
      return fail(polled.error().with_context(std::string(who) + " reading im.events partition " + std::to_string(p) +
                                              " from offset " + std::to_string(from)));
    }
    for (const auto& r : records) {
      if (r.offset >= until) break;
      each(r);
      next = r.offset + 1;
    }
  }
  return {};
}

}  // namespace imlog
