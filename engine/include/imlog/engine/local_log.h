#pragma once
// LocalLog: the embedded EventLog on RocksDB, for the single node (docs/architecture.md, "Two ways
// to run").
//
// Durability: appends are group-committed by one writer thread: every append queued while the
// previous write was syncing goes into one RocksDB WriteBatch and one WAL fsync, so "acknowledged"
// means on disk at the cost of one sync per batch, not per record. A topic created with
// durable=false is acknowledged once written to the OS (it survives a process kill, not a power
// cut). Every record carries a CRC32C of its contents; a record that fails it is reported as
// LogErrc::corrupt_record naming topic, partition and offset, never returned as data.
//
// Consumers are woken by the writer after each commit (a condition variable), never by a polling
// sleep. Consumer groups are coordinated in process: the members of a group on one LocalLog share
// its partitions (range assignment), and a member that leaves hands its partitions to the others.
//
// Threading: thread-safe. One writer thread owned by the LocalLog; append callbacks run on it (and
// so must not block: a blocked callback stalls every append). Consumers must be destroyed before
// the LocalLog that made them; destroying it with consumers alive aborts, naming the directory.
// Lifecycle: open() → use → destroy (drains queued appends, fails anything appended after with
// `closed`, flushes the memtable to an SST so the next open replays no WAL).
//
// Trimming (docs/architecture.md, "Topics and keys"): the transport topics named in
// LocalLogConfig::trimmed_topics lose the records every consumer group has consumed. A partition
// is trimmed up to the lowest offset committed on it by any group, less trim_keep_records; one
// with no commit is never trimmed, and im.events never is (open() refuses to name it). A trim is
// one synced WriteBatch — a range delete of the records and the partition's new first offset —
// followed by DeleteFilesInRange and a compaction of that range. begin_offset() reports the first
// record kept; reading below it fails with offset_out_of_range (Kafka's auto.offset.reset=error),
// and a group member with no commit that starts at the beginning starts there.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/metrics.h"
#include "imlog/engine/event_log.h"
#include "imlog/engine/streams.h"

namespace imlog {

struct LocalLogConfig {
  // Directory of the RocksDB database holding every topic. Created if missing. Default ./data/log.
  std::string dir = "./data/log";
  // Back-pressure: append() blocks while this many bytes are queued and not yet written.
  // Default 64 MiB.
  uint64_t max_pending_bytes = 64ull << 20;
  // How long append() may block on a full queue before failing with queue_full. Default 5 s.
  std::chrono::milliseconds append_block_timeout{5000};
  // Largest record (key + value) accepted. Default 1 MiB.
  uint64_t max_record_bytes = 1ull << 20;
  // Most records written by one group commit. Default 16384.
  uint64_t max_batch_records = 16384;
  // Topics trimmed once consumed (see the header comment). Never im.events. Default im.tasks and
  // im.commands (which the single node creates but carries nothing on).
  std::vector<std::string> trimmed_topics = {std::string(kTasksTopic), std::string(kCommandsTopic)};
  // Records kept per partition below the lowest committed offset, for an operator to look at
  // what was just consumed. Default 10000.
  uint64_t trim_keep_records = 10000;
  // How often a background thread trims. 0: only trim() calls do. Default 60 s.
  std::chrono::milliseconds trim_interval{60000};
};

// Counters of the writer, for metrics and benchmarks ("records per group commit"). Monotonic since
// open(); read with relaxed ordering, so a snapshot may be a few commits behind.
struct LocalLogStats {
  uint64_t commits = 0;         // RocksDB writes made by the writer (one per group commit)
  // WAL fsyncs, as counted by RocksDB itself: one per group commit holding a durable topic's
  // record or an offset commit, one per topic creation.
  uint64_t wal_syncs = 0;
  uint64_t records = 0;         // records written
  uint64_t bytes = 0;           // bytes of the RocksDB writes (records with their framing, offsets)
  uint64_t trimmed_records = 0; // records removed by trimming
};

class LocalLog final : public EventLog {
 public:
  // Opens or creates the log in config.dir. Fails with io_error naming the directory.
  static Result<std::unique_ptr<LocalLog>> open(const LocalLogConfig& config);
  ~LocalLog() override;

  Status create_topic(const TopicSpec& spec) override;
  Result<int32_t> partition_count(std::string_view topic) override;
  void append(std::string_view topic, std::vector<OutRecord> records,
              AppendCallback done) override;
  Result<int64_t> end_offset(const TopicPartition& partition) override;
  Result<int64_t> begin_offset(const TopicPartition& partition) override;
  std::unique_ptr<Consumer> consumer(const ConsumerOptions& options) override;
  Status flush(std::chrono::milliseconds timeout) override;
  [[nodiscard]] std::string describe() const override;

  // One trimming pass over trimmed_topics (the background thread calls it every trim_interval).
  // Returns how many records it removed. Thread-safe; passes do not overlap.
  Result<uint64_t> trim();

  // RocksDB's estimate of the bytes on disk (SST files) and in memtables of a topic's records.
  Result<uint64_t> approximate_bytes(std::string_view topic);

  [[nodiscard]] LocalLogStats stats() const;
  // How long each synced group commit's write took: the WAL append and its fsync.
  [[nodiscard]] const metrics::Histogram& synced_write_seconds() const;

  struct State;  // private; public only so the consumer class in local_log.cpp can name it

 private:
  explicit LocalLog(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace imlog
