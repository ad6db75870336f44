#pragma once
// EventLog: the one interface over the event log (docs/architecture.md, "Two ways to run"). Two
// implementations, LocalLog (embedded, RocksDB, one process) and KafkaLog (librdkafka, many
// processes), with the same semantics, checked by one contract suite
// (tests/event_log_contract_test.cpp). Nothing above this header knows which backend it has.
//
// Model
//   topic      a name and a fixed number of partitions, created once (create_topic is idempotent).
//   partition  an append-only sequence of records with dense offsets 0, 1, 2, ...
//   record     key + value + timestamp. A keyed append goes to partition_for(key, partitions)
//              (partitioner.h), the same function for both backends, unless a partition is named.
//   consumer   reads partitions from an offset. With a group and topics it is a group member: the
//              group's members share the topic's partitions, and assignment / revocation notices
//              arrive through RebalanceListener inside poll(). Without topics it reads what it is
//              assign()ed. Committed offsets are stored per group and survive restarts.
//
// Acknowledgement: an append's callback reports success only once the records are durable
// (LocalLog: synced to disk for a durable topic; KafkaLog: acks=all). On failure any subset of the
// batch may have been written; a caller that must know reads the log (the engine does:
// docs/architecture.md, "Ack when durable").
//
// Back-pressure: append() blocks while the backend's queue of unacknowledged bytes is full, up to
// the configured limit, then fails with LogErrc::queue_full (retryable).
//
// Threading: EventLog is thread-safe. Append callbacks run on a backend thread and must not block.
// A Consumer belongs to one thread at a time; only wakeup() may be called from another thread.

#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "imlog/core/result.h"

namespace imlog {

enum class LogErrc {
  bad_argument = 1,     // an empty topic name, a negative offset, a partition out of range
  unknown_topic,        // append or read of a topic that was never created
  topic_mismatch,       // create_topic of an existing topic with other settings
  record_too_large,     // a record over the backend's size limit
  corrupt_record,       // a stored record failed its checksum; the message names topic/partition/offset
  offset_out_of_range,  // seek past the end, or before the first retained record
  queue_full,           // back-pressure: too many unacknowledged bytes (retryable)
  timed_out,            // a broker did not answer in time (retryable)
  unavailable,          // a broker or the disk is unreachable (retryable)
  closed,               // the log or consumer was closed
  io_error,             // the disk or the broker refused the operation
  rebalance_in_progress,  // a commit raced a group rebalance (retryable)
  overloaded,           // an in-process queue is full: the engine is behind (retryable)
};
const std::error_category& log_category();
inline std::error_code make_error_code(LogErrc e) { return {static_cast<int>(e), log_category()}; }

// Use as the partition of an OutRecord to route by key.
inline constexpr int32_t kByKey = -1;

struct TopicSpec {
  std::string name;
  int32_t partitions = 4;
  // LocalLog: acknowledge appends only after fsync. A topic whose loss is harmless (deliveries)
  // sets false and is acknowledged once written to the OS. KafkaLog: ignored (acks=all always).
  bool durable = true;
};

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};

struct TopicPartitionOffset {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;  // the next offset to read
  auto operator<=>(const TopicPartitionOffset&) const = default;
};

// A record to append.
struct OutRecord {
  std::string key;
  std::string value;
  int32_t partition = kByKey;
};

// A record read from the log.
struct Record {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  std::string key;
  std::string value;
};

// Where an appended record landed.
struct RecordPosition {
  int32_t partition = 0;
  int64_t offset = 0;
  auto operator<=>(const RecordPosition&) const = default;
};

// Called once per append(), on a backend thread: the positions in the order of the batch, or the
// first error.
using AppendCallback = std::function<void(Result<std::vector<RecordPosition>>)>;

// Notices of a group member's partitions changing. Both run inside Consumer::poll(), on the
// polling thread: on_revoked before any partition is taken away (commit what is done there), and
// on_assigned before the first record of a new partition is returned.
class RebalanceListener {
 public:
  virtual ~RebalanceListener() = default;
  virtual void on_assigned(const std::vector<TopicPartition>& partitions) = 0;
  virtual void on_revoked(const std::vector<TopicPartition>& partitions) = 0;
};

struct ConsumerOptions {
  // Consumer group id. Required to subscribe and to commit; optional for a plain reader.
  std::string group;
  // Non-empty: join `group` and share these topics' partitions with its other members.
  // Empty: read only what assign() names.
  std::vector<std::string> topics;
  // Where a partition with no committed offset starts: true at its first record, false at its end.
  bool start_at_beginning = true;
  // Upper bound on records returned by one poll().
  size_t max_batch = 1024;
  // Not owned; must outlive the consumer.
  RebalanceListener* listener = nullptr;
};

class Consumer {
 public:
  virtual ~Consumer() = default;

  // Replaces `out` with the next records of the assigned partitions, in offset order within each
  // partition. Waits up to `timeout` for the first; returns with an empty `out` on time-out or
  // wakeup(). Fails with corrupt_record (not retryable) naming the record, without skipping it.
  virtual Status poll(std::vector<Record>& out, std::chrono::milliseconds timeout) = 0;

  // Reads these partitions from these offsets, replacing any earlier assignment. Not for group
  // members (a group member's partitions come from the group).
  virtual Status assign(const std::vector<TopicPartitionOffset>& partitions) = 0;

  // Moves the read position of an assigned partition.
  virtual Status seek(const TopicPartitionOffset& position) = 0;

  // Stores, for this consumer's group, the next offset to read of each partition. Synchronous:
  // returns once stored durably.
  virtual Status commit(const std::vector<TopicPartitionOffset>& offsets) = 0;

  // The group's committed next offset for a partition, or nullopt if none.
  virtual Result<std::optional<int64_t>> committed(const TopicPartition& partition) = 0;

  // The partitions this consumer reads now.
  [[nodiscard]] virtual std::vector<TopicPartition> assignment() const = 0;

  // Makes a blocked poll() return early. Thread-safe.
  virtual void wakeup() = 0;

  // A hint for the next poll()s, from their thread: true while the reader will be woken soon
  // anyway (its own wakeup() is due: the sequencer waits for a batch to become durable), so a new
  // record need not wake it at once and the records that come meanwhile are read together. The
  // in-process command queue honours it (a futex wake and a context switch fewer per command
  // under load); the others ignore it. Default false.
  virtual void expect_wakeup(bool expected) { (void)expected; }

  // Leaves the group (its partitions go to the other members). Idempotent; the destructor calls it.
  virtual void close() = 0;
};

class EventLog {
 public:
  virtual ~EventLog() = default;

  // Creates the topic, or checks that an existing one has the same partition count.
  virtual Status create_topic(const TopicSpec& spec) = 0;

  // Partition count of an existing topic.
  virtual Result<int32_t> partition_count(std::string_view topic) = 0;

  // Appends a batch to one topic; `done` runs once with the outcome (see the header comment).
  virtual void append(std::string_view topic, std::vector<OutRecord> records,
                      AppendCallback done) = 0;

  // The offset the next record appended to the partition will get (its end).
  virtual Result<int64_t> end_offset(const TopicPartition& partition) = 0;

  // The first offset still readable (0 unless retention dropped records: Kafka's retention, the
  // LocalLog's trimming of transport topics). Reading below it fails with offset_out_of_range; a
  // group member with no commit and start_at_beginning starts at it.
  virtual Result<int64_t> begin_offset(const TopicPartition& partition) = 0;

  virtual std::unique_ptr<Consumer> consumer(const ConsumerOptions& options) = 0;

  // Waits until every append made so far has its callback called, or `timeout` passes.
  virtual Status flush(std::chrono::milliseconds timeout) = 0;

  // A name for logs and test output: "local:/path" or "kafka:host:port".
  [[nodiscard]] virtual std::string describe() const = 0;

  // Appends and waits for the outcome. Must not be called from an append callback.
  Result<std::vector<RecordPosition>> append_wait(std::string_view topic,
                                                  std::vector<OutRecord> records);
};

}  // namespace imlog

template <>
struct std::is_error_code_enum<imlog::LogErrc> : std::true_type {};
