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

Status commit_unseen_ends(EventLog& log, const std::string& group) {
  ConsumerOptions opts;
  opts.group = group;
  auto reader = log.consumer(opts);
  auto count = log.partition_count(kEventsTopic);
  IMLOG_TRY(count);
  std::vector<TopicPartitionOffset> ends;
  for (int32_t p = 0; p < *count; ++p) {
    auto stored = reader->committed(TopicPartition{std::string(kEventsTopic), p});
    IMLOG_TRY(stored);
    if (*stored) continue;
    auto end = log.end_offset(TopicPartition{std::string(kEventsTopic), p});
    IMLOG_TRY(end);
    ends.push_back(TopicPartitionOffset{std::string(kEventsTopic), p, *end});
  }
  return reader->commit(ends);
}

Result<std::unique_ptr<Consumer>> follow_events(EventLog& log, const std::string& group, uint64_t max_batch,
                                                const std::function<Status(int32_t p, int64_t at)>& resumed) {
  ConsumerOptions opts;
  opts.group = group;  // for its committed offsets; the follower reads every partition
  opts.max_batch = max_batch;
  auto reader = log.consumer(opts);
  auto count = log.partition_count(kEventsTopic);
  IMLOG_TRY(count);
  std::vector<TopicPartitionOffset> from;
  for (int32_t p = 0; p < *count; ++p) {
    auto at = resume_point(log, *reader, p);
    IMLOG_TRY(at);
    IMLOG_TRY(resumed(p, *at));
    from.push_back(TopicPartitionOffset{std::string(kEventsTopic), p, *at});
  }
  IMLOG_TRY(reader->assign(from));
  return reader;
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
