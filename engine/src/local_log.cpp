#include "imlog/engine/local_log.h"

#include <nmmintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iterator>
#include <limits>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "imlog/core/clock.h"
#include "imlog/core/logging.h"
#include "imlog/core/threads.h"
#include "imlog/engine/partitioner.h"

// On-disk layout (one RocksDB database, default column family, ordered by key bytes):
//
//   'T' <topic name>                              -> <topic id u32 BE> <partitions u32 BE> <durable u8>
//   'R' <topic id u32 BE> <partition u32 BE> <offset u64 BE>              -> record frame
//   'C' <topic id u32 BE> <partition u32 BE> <group bytes>                -> <next offset u64 BE>
//   'B' <topic id u32 BE> <partition u32 BE>                              -> <first kept offset u64 BE>
//
// A 'B' key exists once a partition was trimmed: its records below that offset were range-deleted
// in the same WriteBatch that wrote it, so a crash keeps both or neither. The partition's end is
// then at least that offset, also when every record was trimmed.
//
// Big-endian numbers make one partition a contiguous range ordered by offset, so reading is a
// seek plus Next() calls, and a partition's end is found by one SeekForPrev on open.
//
// Record frame (fixed-width numbers little-endian):
//
//   +-------------+-------------------+---------------+---------+-----------+
//   | crc32c  u32 | timestamp_ms  i64 | key length u32 |   key   |   value   |
//   +-------------+-------------------+---------------+---------+-----------+
//
// The CRC32C covers the record's RocksDB key and every frame byte after the CRC, so a record that
// is damaged, or an intact frame found under another offset's key, fails the check.

namespace imlog {
namespace {

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli). RocksDB has one but does not export it, so here is ours: SSE4.2 when the
// CPU has it (checked once at run time), else slicing-by-8 tables.

constexpr uint32_t kCrcPoly = 0x82F63B78;  // reflected Castagnoli polynomial

constexpr std::array<std::array<uint32_t, 256>, 8> make_crc_tables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kCrcPoly : c >> 1;
    t[0][i] = c;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (uint32_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
  return t;
}

constexpr auto kCrcTables = make_crc_tables();

// `crc` is the running register (already inverted), as in both helpers below.
uint32_t crc32c_tables(uint32_t crc, const char* p, size_t n) {
  const auto& t = kCrcTables;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    v ^= crc;
    crc = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^ t[5][(v >> 16) & 0xff] ^
          t[4][(v >> 24) & 0xff] ^ t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^
          t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = (crc >> 8) ^ t[0][(crc ^ static_cast<uint8_t>(*p++)) & 0xff];
  return crc;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const char* p, size_t n) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<uint32_t>(c);
  while (n-- > 0) c32 = _mm_crc32_u8(c32, static_cast<uint8_t>(*p++));
  return c32;
}

const bool kHaveSse42 = [] {
  __builtin_cpu_init();  // may run before libgcc's own initialiser
  return __builtin_cpu_supports("sse4.2") != 0;
}();

class Crc32c {
 public:
  void update(const char* p, size_t n) {
    reg_ = kHaveSse42 ? crc32c_sse42(reg_, p, n) : crc32c_tables(reg_, p, n);
  }
  void update(std::string_view s) { update(s.data(), s.size()); }
  [[nodiscard]] uint32_t value() const { return ~reg_; }

 private:
  uint32_t reg_ = 0xFFFFFFFFu;
};

// ---------------------------------------------------------------------------------------------
// Keys and frames.

constexpr char kTopicPrefix = 'T';
constexpr char kRecordPrefix = 'R';
constexpr char kCommitPrefix = 'C';
constexpr char kBeginPrefix = 'B';
constexpr size_t kRecordKeySize = 17;
constexpr size_t kPartitionPrefixSize = 9;  // 'R' + topic id + partition
constexpr size_t kFrameHeaderSize = 16;     // crc + timestamp + key length
// Queue accounting per record beyond key and value: frame header, RocksDB key, batch overhead.
constexpr uint64_t kRecordOverhead = kFrameHeaderSize + kRecordKeySize + 8;

void put_be32(char* p, uint32_t v) {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}
void put_be64(char* p, uint64_t v) {
  v = __builtin_bswap64(v);
  std::memcpy(p, &v, 8);
}
uint32_t get_be32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
uint64_t get_be64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}

struct RecordKey {
  char bytes[kRecordKeySize];
  RecordKey(uint32_t topic_id, int32_t partition, int64_t offset) {
    bytes[0] = kRecordPrefix;
    put_be32(bytes + 1, topic_id);
    put_be32(bytes + 5, static_cast<uint32_t>(partition));
    put_be64(bytes + 9, static_cast<uint64_t>(offset));
  }
  [[nodiscard]] rocksdb::Slice slice() const { return {bytes, kRecordKeySize}; }
};

// 'R' topic partition: below every record key of the partition.
std::string partition_prefix(uint32_t topic_id, uint32_t partition) {
  std::string s(kPartitionPrefixSize, '\0');
  s[0] = kRecordPrefix;
  put_be32(s.data() + 1, topic_id);
  put_be32(s.data() + 5, partition);
  return s;
}

// The exclusive upper bound of a partition's key range: the prefix of the next partition.
std::string partition_upper_bound(uint32_t topic_id, int32_t partition) {
  return partition_prefix(topic_id, static_cast<uint32_t>(partition) + 1);
}

std::string commit_key(uint32_t topic_id, int32_t partition, std::string_view group) {
  std::string k(kPartitionPrefixSize, '\0');
  k[0] = kCommitPrefix;
  put_be32(k.data() + 1, topic_id);
  put_be32(k.data() + 5, static_cast<uint32_t>(partition));
  k.append(group);
  return k;
}

std::string begin_key(uint32_t topic_id, int32_t partition) {
  std::string k(kPartitionPrefixSize, '\0');
  k[0] = kBeginPrefix;
  put_be32(k.data() + 1, topic_id);
  put_be32(k.data() + 5, static_cast<uint32_t>(partition));
  return k;
}

std::string topic_key(std::string_view name) {
  std::string k(1, kTopicPrefix);
  k.append(name);
  return k;
}

// steady_clock::now() + timeout, saturating, for waits given "forever" as a huge duration.
std::chrono::steady_clock::time_point deadline_after(std::chrono::milliseconds timeout) {
  const auto now = std::chrono::steady_clock::now();
  if (timeout.count() <= 0) return now;
  if (timeout >= std::chrono::hours(24 * 365)) return std::chrono::steady_clock::time_point::max();
  return now + timeout;
}

std::string where(std::string_view topic, int32_t partition, int64_t offset) {
  return "topic `" + std::string(topic) + "` partition " + std::to_string(partition) +
         " offset " + std::to_string(offset);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Shared state.

namespace {

// A topic as the process knows it. Created once, never destroyed before the LocalLog, so the
// pointer is a stable handle for queues, consumers and groups.
struct TopicInfo {
  std::string name;
  uint32_t id = 0;
  int32_t partitions = 0;
  bool durable = true;
  // Published end offset of each partition: stored by the writer after RocksDB accepted the
  // write (release), read by anyone (acquire). Everything below it is readable.
  std::unique_ptr<std::atomic<int64_t>[]> end;
  // First offset still stored (trimming moves it; trimmer thread writes, anyone reads).
  std::unique_ptr<std::atomic<int64_t>[]> begin;
  // Writer thread only: offsets handed out in the batch being built, and a per-batch mark.
  std::vector<int64_t> next;
  std::vector<uint8_t> touched;
  // Consumers that read this topic alone wait here (with State::data_mu), so a commit wakes only
  // the readers of the topics it wrote, not every consumer of the log.
  std::condition_variable data_cv;

  TopicInfo(std::string n, uint32_t i, int32_t p, bool d)
      : name(std::move(n)), id(i), partitions(p), durable(d),
        end(new std::atomic<int64_t>[static_cast<size_t>(p)]),
        begin(new std::atomic<int64_t>[static_cast<size_t>(p)]), next(static_cast<size_t>(p), 0),
        touched(static_cast<size_t>(p), 0) {
    for (int32_t k = 0; k < p; ++k) {
      end[k].store(0, std::memory_order_relaxed);
      begin[k].store(0, std::memory_order_relaxed);
    }
  }
};

struct PartitionRef {
  TopicInfo* topic = nullptr;
  int32_t partition = 0;
  friend bool operator==(const PartitionRef& a, const PartitionRef& b) {
    return a.topic == b.topic && a.partition == b.partition;
  }
  friend bool operator<(const PartitionRef& a, const PartitionRef& b) {
    if (a.topic->id != b.topic->id) return a.topic->id < b.topic->id;
    return a.partition < b.partition;
  }
};

std::vector<TopicPartition> to_topic_partitions(const std::vector<PartitionRef>& refs) {
  std::vector<TopicPartition> out;
  out.reserve(refs.size());
  for (const auto& r : refs) out.push_back({r.topic->name, r.partition});
  return out;
}

// One queued append. `error` set means it is only queued to deliver that error in order, on the
// writer thread, like every other callback.
struct PendingAppend {
  TopicInfo* topic = nullptr;
  std::vector<OutRecord> records;  // partitions already resolved
  AppendCallback done;
  uint64_t bytes = 0;
  std::optional<Error> error;
};

// One queued offset commit; the committing thread waits on `done`.
struct PendingCommit {
  std::vector<std::pair<std::string, int64_t>> entries;  // commit key, next offset
  std::promise<Status> done;
};

// A group member as the group sees it. Owned by its consumer; guarded by State::groups_mu.
struct GroupMember {
  uint64_t id = 0;
  std::vector<TopicInfo*> topics;
  std::vector<PartitionRef> target;  // what the current assignment gives it (sorted)
  std::vector<PartitionRef> owned;   // what it reads now (sorted); moves toward target in poll()
};

// Members share partitions by target; a partition changes owner only once its previous owner has
// revoked it (owners has no entry), so two members never read one partition at once.
struct Group {
  std::vector<GroupMember*> members;  // join order
  std::map<PartitionRef, GroupMember*> owners;
};

// A read below a partition's first kept record: as Kafka with auto.offset.reset=error answers.
Error trimmed_error(const TopicInfo& t, int32_t partition, int64_t offset) {
  return Error(make_error_code(LogErrc::offset_out_of_range),
               "offset " + std::to_string(offset) + " of topic `" + t.name + "` partition " +
                   std::to_string(partition) + " was trimmed: the partition holds " +
                   std::to_string(t.begin[partition].load(std::memory_order_acquire)) + ".." +
                   std::to_string(t.end[partition].load(std::memory_order_acquire)));
}

Error io_error(const std::string& dir, std::string_view what, const rocksdb::Status& s) {
  return Error(make_error_code(LogErrc::io_error),
               "log in `" + dir + "`: " + std::string(what) + ": " + s.ToString());
}

}  // namespace

// Everything the LocalLog, its writer thread and its consumers share. Lives as long as the
// LocalLog; consumers hold a reference, which is why they must go first.
//
// Locks, each guarding the members below it, are all leaves: nothing else is locked while one is
// held, and no callback or listener runs under any of them.
struct LocalLog::State {
  LocalLogConfig config;
  std::shared_ptr<rocksdb::Statistics> statistics;  // tickers only: WAL syncs for stats()
  std::unique_ptr<rocksdb::DB> db;

  // Topics: read-mostly.
  mutable std::shared_mutex topics_mu;
  std::map<std::string, std::unique_ptr<TopicInfo>, std::less<>> topics;
  uint32_t next_topic_id = 1;

  // The writer's queue. Appenders and committers push; the writer drains.
  std::mutex queue_mu;
  std::condition_variable work_cv;     // writer waits for work
  std::condition_variable space_cv;    // appenders wait for queue space
  std::condition_variable flushed_cv;  // flush() waits for callbacks
  std::deque<PendingAppend> appends;
  std::deque<PendingCommit*> commits;
  uint64_t pending_bytes = 0;
  uint64_t enqueued = 0;   // appends ever queued
  uint64_t completed = 0;  // appends whose callback has returned
  bool stopping = false;
  std::thread writer;
  std::thread::id writer_id;
  // Writer thread only, reused by every group commit so they keep their capacity.
  rocksdb::WriteBatch writer_batch{1 << 20};
  std::vector<PartitionRef> writer_touched;

  // Consumers of several topics wait on data_cv, those of one topic on its TopicInfo::data_cv,
  // for new records, group changes and wakeup(), all under data_mu.
  std::mutex data_mu;
  std::condition_variable data_cv;
  int global_waiters = 0;  // consumers waiting on data_cv (guarded by data_mu)

  // Committed offsets by commit key, mirrored from the database.
  std::mutex committed_mu;
  std::unordered_map<std::string, int64_t> committed;

  std::mutex groups_mu;
  std::map<std::string, Group, std::less<>> groups;
  std::atomic<uint64_t> group_epoch{0};  // bumped on every membership or ownership change
  uint64_t next_member_id = 1;

  std::atomic<int64_t> live_consumers{0};

  // The trimmer: one pass at a time (trim_mu), a thread waking every trim_interval.
  std::mutex trim_mu;
  std::mutex trimmer_mu;
  std::condition_variable trimmer_cv;
  bool trimmer_stopping = false;  // guarded by trimmer_mu
  std::thread trimmer;
  std::atomic<uint64_t> stat_trimmed{0};

  std::atomic<uint64_t> stat_commits{0};
  std::atomic<uint64_t> stat_records{0};
  std::atomic<uint64_t> stat_bytes{0};
  metrics::Histogram stat_synced_write_seconds;  // a synced group commit's Write (the fsync in it)

  // --- topics
  TopicInfo* find_topic(std::string_view name) const {
    std::shared_lock lk(topics_mu);
    auto it = topics.find(name);
    return it == topics.end() ? nullptr : it->second.get();
  }
  Result<TopicInfo*> topic_or_error(std::string_view name) const;
  Result<TopicInfo*> checked_partition(const TopicPartition& tp) const;
  Status load_topics();
  Status load_begin(TopicInfo& t, int32_t partition);
  Status load_commits();

  // --- trimming
  Result<uint64_t> trim();
  Result<uint64_t> trim_partition(TopicInfo& t, int32_t partition);
  std::optional<int64_t> lowest_commit(const TopicInfo& t, int32_t partition);
  void run_trimmer();

  // --- writing
  Status validate(std::string_view topic, std::vector<OutRecord>& records, TopicInfo*& info,
                  uint64_t& bytes) const;
  void enqueue(PendingAppend&& a);
  Status commit(std::vector<std::pair<std::string, int64_t>> entries);
  void run_writer();
  void write_group(std::vector<PendingAppend>& appends, std::vector<PendingCommit*>& commits);
  struct GroupContents {
    uint64_t bytes = 0;    // queue bytes the group releases
    uint64_t records = 0;  // records written
    bool sync = false;     // holds a durable topic's record or an offset commit
  };
  GroupContents build_batch(const std::vector<PendingAppend>& appends,
                            const std::vector<PendingCommit*>& commits,
                            std::vector<std::vector<RecordPosition>>& positions);
  void publish(const std::vector<PendingCommit*>& commits, uint64_t records);
  void roll_back();
  void complete(std::vector<PendingAppend>& appends, const std::vector<PendingCommit*>& commits,
                std::vector<std::vector<RecordPosition>>& positions,
                const std::optional<Error>& failure);

  // --- consumers
  // Wakes every waiting consumer (group changes, wakeup()).
  void notify_consumers() {
    { std::lock_guard lk(data_mu); }
    data_cv.notify_all();
    std::shared_lock lk(topics_mu);
    for (auto& [name, t] : topics) t->data_cv.notify_all();
  }
  // Wakes the consumers of the topics the last group commit wrote (writer thread).
  void notify_readers_of(const std::vector<PartitionRef>& touched);
  std::optional<int64_t> committed_offset(const std::string& key) {
    std::lock_guard lk(committed_mu);
    auto it = committed.find(key);
    if (it == committed.end()) return std::nullopt;
    return it->second;
  }
  void rebalance(Group& g);
};

// ---------------------------------------------------------------------------------------------
// Topics.

Result<TopicInfo*> LocalLog::State::topic_or_error(std::string_view name) const {
  if (name.empty()) return fail(LogErrc::bad_argument, "topic name is empty");
  TopicInfo* t = find_topic(name);
  if (t == nullptr) {
    return fail(LogErrc::unknown_topic, "topic `" + std::string(name) +
                                            "` does not exist in the log in `" + config.dir +
                                            "`: create it first");
  }
  return t;
}

Result<TopicInfo*> LocalLog::State::checked_partition(const TopicPartition& tp) const {
  auto t = topic_or_error(tp.topic);
  if (!t) return t;
  if (tp.partition < 0 || tp.partition >= (*t)->partitions) {
    return fail(LogErrc::bad_argument,
                "partition " + std::to_string(tp.partition) + " of topic `" + tp.topic +
                    "` is out of range: it has " + std::to_string((*t)->partitions) +
                    " partitions (0.." + std::to_string((*t)->partitions - 1) + ")");
  }
  return t;
}

Status LocalLog::State::load_topics() {
  rocksdb::ReadOptions ro;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  for (it->Seek(std::string(1, kTopicPrefix));
       it->Valid() && it->key().size() > 0 && it->key()[0] == kTopicPrefix; it->Next()) {
    std::string name(it->key().data() + 1, it->key().size() - 1);
    rocksdb::Slice v = it->value();
    if (v.size() != 9) {
      return fail(LogErrc::corrupt_record,
                  "log in `" + config.dir + "`: metadata of topic `" + name + "` is damaged");
    }
    auto info = std::make_unique<TopicInfo>(name, get_be32(v.data()),
                                            static_cast<int32_t>(get_be32(v.data() + 4)),
                                            v[8] != 0);
    next_topic_id = std::max(next_topic_id, info->id + 1);
    topics.emplace(name, std::move(info));
  }
  if (!it->status().ok()) return tl::unexpected(io_error(config.dir, "reading topics", it->status()));

  // A partition's end is one past its last key.
  for (auto& [name, t] : topics) {
    for (int32_t p = 0; p < t->partitions; ++p) {
      RecordKey last(t->id, p, std::numeric_limits<int64_t>::max());
      it->SeekForPrev(last.slice());
      int64_t end = 0;
      if (it->Valid() && it->key().size() == kRecordKeySize &&
          std::memcmp(it->key().data(), last.bytes, kPartitionPrefixSize) == 0) {
        end = static_cast<int64_t>(get_be64(it->key().data() + kPartitionPrefixSize)) + 1;
      }
      if (!it->status().ok()) {
        return tl::unexpected(io_error(config.dir, "finding the end of topic `" + name + "`",
                                       it->status()));
      }
      IMLOG_TRY(load_begin(*t, p));
      end = std::max(end, t->begin[p].load(std::memory_order_relaxed));
      t->end[p].store(end, std::memory_order_relaxed);
      t->next[static_cast<size_t>(p)] = end;
    }
  }
  return {};
}

Status LocalLog::State::load_begin(TopicInfo& t, int32_t partition) {
  std::string v;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), begin_key(t.id, partition), &v);
  if (s.IsNotFound()) return {};
  if (!s.ok()) {
    return tl::unexpected(io_error(config.dir, "reading the first offset of topic `" + t.name + "`", s));
  }
  if (v.size() != 8) {
    return fail(LogErrc::corrupt_record, "log in `" + config.dir + "`: the first offset of topic `" + t.name +
                                             "` partition " + std::to_string(partition) + " is damaged");
  }
  t.begin[partition].store(static_cast<int64_t>(get_be64(v.data())), std::memory_order_relaxed);
  return {};
}

Status LocalLog::State::load_commits() {
  rocksdb::ReadOptions ro;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  for (it->Seek(std::string(1, kCommitPrefix));
       it->Valid() && it->key().size() > 0 && it->key()[0] == kCommitPrefix; it->Next()) {
    if (it->value().size() != 8) {
      return fail(LogErrc::corrupt_record,
                  "log in `" + config.dir + "`: a committed offset is damaged");
    }
    committed[it->key().ToString()] = static_cast<int64_t>(get_be64(it->value().data()));
  }
  if (!it->status().ok()) {
    return tl::unexpected(io_error(config.dir, "reading committed offsets", it->status()));
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Appending: callers validate and queue; the writer thread group-commits.

Status LocalLog::State::validate(std::string_view topic, std::vector<OutRecord>& records,
                                 TopicInfo*& info, uint64_t& bytes) const {
  auto t = topic_or_error(topic);
  if (!t) return tl::unexpected(t.error());
  info = *t;
  bytes = 0;
  for (auto& r : records) {
    uint64_t size = r.key.size() + r.value.size();
    if (size > config.max_record_bytes) {
      return fail(LogErrc::record_too_large,
                  "a record of " + std::to_string(size) + " bytes (key + value) for topic `" +
                      info->name + "` is over the limit of " +
                      std::to_string(config.max_record_bytes) + " bytes (max_record_bytes)");
    }
    if (r.partition == kByKey) {
      r.partition = partition_for(r.key, info->partitions);
    } else if (r.partition < 0 || r.partition >= info->partitions) {
      return fail(LogErrc::bad_argument,
                  "partition " + std::to_string(r.partition) + " of topic `" + info->name +
                      "` is out of range: it has " + std::to_string(info->partitions) +
                      " partitions (0.." + std::to_string(info->partitions - 1) +
                      "), or use kByKey");
    }
    bytes += size + kRecordOverhead;
  }
  return {};
}

void LocalLog::State::enqueue(PendingAppend&& a) {
  std::unique_lock lk(queue_mu);
  if (!a.error && a.bytes > 0) {
    auto has_room = [&] {
      return stopping || pending_bytes == 0 || pending_bytes + a.bytes <= config.max_pending_bytes;
    };
    if (!has_room()) {
      // The writer thread (an append from a callback) cannot wait for itself to make room.
      bool waited = std::this_thread::get_id() != writer_id &&
                    space_cv.wait_until(lk, deadline_after(config.append_block_timeout), has_room);
      if (!waited) {
        a.error = Error(make_error_code(LogErrc::queue_full),
                        "append queue of the log in `" + config.dir + "` holds " +
                            std::to_string(pending_bytes) + " unwritten bytes (max_pending_bytes " +
                            std::to_string(config.max_pending_bytes) + "): retry later",
                        /*retryable=*/true);
        a.bytes = 0;
      }
    }
  }
  if (stopping) {
    lk.unlock();
    a.done(fail(LogErrc::closed, "the log in `" + config.dir + "` is closing"));
    return;
  }
  pending_bytes += a.bytes;
  ++enqueued;
  appends.push_back(std::move(a));
  lk.unlock();
  work_cv.notify_one();
}

Status LocalLog::State::commit(std::vector<std::pair<std::string, int64_t>> entries) {
  PendingCommit c;
  c.entries = std::move(entries);
  if (std::this_thread::get_id() == writer_id) {
    return fail(LogErrc::bad_argument,
                "commit() from an append callback would wait for its own thread: commit from "
                "the consumer's thread");
  }
  auto result = c.done.get_future();
  {
    std::lock_guard lk(queue_mu);
    if (stopping) return fail(LogErrc::closed, "the log in `" + config.dir + "` is closing");
    commits.push_back(&c);
  }
  work_cv.notify_one();
  return result.get();
}

void LocalLog::State::run_writer() {
  std::vector<PendingAppend> batch_appends;
  std::vector<PendingCommit*> batch_commits;
  while (true) {
    {
      std::unique_lock lk(queue_mu);
      work_cv.wait(lk, [&] { return stopping || !appends.empty() || !commits.empty(); });
      if (appends.empty() && commits.empty()) return;  // stopping, and everything drained
      uint64_t records = 0;
      while (!appends.empty() &&
             (batch_appends.empty() || records + appends.front().records.size() <=
                                           config.max_batch_records)) {
        records += appends.front().records.size();
        batch_appends.push_back(std::move(appends.front()));
        appends.pop_front();
      }
      batch_commits.assign(commits.begin(), commits.end());
      commits.clear();
    }
    write_group(batch_appends, batch_commits);
    batch_appends.clear();
    batch_commits.clear();
  }
}

namespace {

// Adds one framed record (layout at the top of this file) to the batch, without copying it
// anywhere first: the frame header, key and value go in as three slices.
void put_record(rocksdb::WriteBatch& batch, const TopicInfo& t, int32_t partition, int64_t offset,
                int64_t timestamp_ms, const OutRecord& r) {
  const RecordKey key(t.id, partition, offset);
  char header[kFrameHeaderSize];
  std::memcpy(header + 4, &timestamp_ms, 8);
  const auto key_len = static_cast<uint32_t>(r.key.size());
  std::memcpy(header + 12, &key_len, 4);
  Crc32c crc;
  crc.update(key.bytes, kRecordKeySize);
  crc.update(header + 4, kFrameHeaderSize - 4);
  crc.update(r.key);
  crc.update(r.value);
  const uint32_t sum = crc.value();
  std::memcpy(header, &sum, 4);

  const rocksdb::Slice key_part = key.slice();
  const rocksdb::Slice value_parts[3] = {{header, kFrameHeaderSize}, r.key, r.value};
  batch.Put(rocksdb::SliceParts(&key_part, 1), rocksdb::SliceParts(value_parts, 3));
}

}  // namespace

// One group commit: one WriteBatch, one Write (synced if anything in it must be durable), then
// publish the new ends, wake consumers, and run callbacks outside every lock.
void LocalLog::State::write_group(std::vector<PendingAppend>& batch_appends,
                                  std::vector<PendingCommit*>& batch_commits) {
  writer_batch.Clear();
  writer_touched.clear();
  std::vector<std::vector<RecordPosition>> positions(batch_appends.size());
  const GroupContents group = build_batch(batch_appends, batch_commits, positions);

  rocksdb::Status s;
  if (writer_batch.Count() > 0) {
    rocksdb::WriteOptions wo;
    wo.sync = group.sync;
    auto started = std::chrono::steady_clock::now();
    s = db->Write(wo, &writer_batch);
    if (group.sync) stat_synced_write_seconds.observe(std::chrono::steady_clock::now() - started);
    stat_commits.fetch_add(1, std::memory_order_relaxed);
    if (s.ok()) stat_bytes.fetch_add(writer_batch.GetDataSize(), std::memory_order_relaxed);
  }
  std::optional<Error> failure;
  if (s.ok()) {
    publish(batch_commits, group.records);
  } else {
    roll_back();
    failure = io_error(config.dir, "writing a batch of " + std::to_string(writer_batch.Count()) +
                                       " records and offsets", s);
  }

  {
    std::lock_guard lk(queue_mu);
    pending_bytes -= group.bytes;
  }
  space_cv.notify_all();
  if (s.ok() && !batch_commits.empty()) notify_consumers();
  if (s.ok() && group.records > 0) notify_readers_of(writer_touched);

  complete(batch_appends, batch_commits, positions, failure);
}

// Gives each record its offset and puts it, and each offset commit, into writer_batch.
LocalLog::State::GroupContents LocalLog::State::build_batch(
    const std::vector<PendingAppend>& batch_appends,
    const std::vector<PendingCommit*>& batch_commits,
    std::vector<std::vector<RecordPosition>>& positions) {
  GroupContents group;
  group.sync = !batch_commits.empty();
  const int64_t now = SystemClock::instance().now_ms();
  for (size_t i = 0; i < batch_appends.size(); ++i) {
    const PendingAppend& a = batch_appends[i];
    group.bytes += a.bytes;
    if (a.error) continue;
    TopicInfo& t = *a.topic;
    group.sync = group.sync || t.durable;
    positions[i].reserve(a.records.size());
    for (const OutRecord& r : a.records) {
      const auto p = static_cast<size_t>(r.partition);
      const int64_t offset = t.next[p]++;
      if (!t.touched[p]) {
        t.touched[p] = 1;
        writer_touched.push_back({&t, r.partition});
      }
      positions[i].push_back({r.partition, offset});
      put_record(writer_batch, t, r.partition, offset, now, r);
      ++group.records;
    }
  }
  for (const PendingCommit* c : batch_commits) {
    for (const auto& [key, offset] : c->entries) {
      char v[8];
      put_be64(v, static_cast<uint64_t>(offset));
      writer_batch.Put(key, rocksdb::Slice(v, 8));
    }
  }
  return group;
}

void LocalLog::State::notify_readers_of(const std::vector<PartitionRef>& touched) {
  TopicInfo* last = nullptr;
  bool any_global = false;
  {
    std::lock_guard lk(data_mu);  // a waiter between its ready() check and its wait sees the notify
    any_global = global_waiters > 0;
  }
  for (const PartitionRef& r : touched) {
    if (r.topic == last) continue;
    last = r.topic;
    r.topic->data_cv.notify_all();
  }
  if (any_global) data_cv.notify_all();
}

// After a successful write: the new ends become visible to readers, commits to committed().
void LocalLog::State::publish(const std::vector<PendingCommit*>& batch_commits,
                              uint64_t records) {
  for (const PartitionRef& r : writer_touched) {
    const auto p = static_cast<size_t>(r.partition);
    r.topic->touched[p] = 0;
    r.topic->end[r.partition].store(r.topic->next[p], std::memory_order_release);
  }
  stat_records.fetch_add(records, std::memory_order_relaxed);
  std::lock_guard lk(committed_mu);
  for (const PendingCommit* c : batch_commits) {
    for (const auto& [key, offset] : c->entries) committed[key] = offset;
  }
}

// After a failed write: offsets handed out in the batch are handed out again next time.
void LocalLog::State::roll_back() {
  for (const PartitionRef& r : writer_touched) {
    const auto p = static_cast<size_t>(r.partition);
    r.topic->touched[p] = 0;
    r.topic->next[p] = r.topic->end[r.partition].load(std::memory_order_relaxed);
  }
}

// Runs every callback of the group, outside all locks, then counts the appends as done.
void LocalLog::State::complete(std::vector<PendingAppend>& batch_appends,
                               const std::vector<PendingCommit*>& batch_commits,
                               std::vector<std::vector<RecordPosition>>& positions,
                               const std::optional<Error>& failure) {
  for (size_t i = 0; i < batch_appends.size(); ++i) {
    PendingAppend& a = batch_appends[i];
    if (a.error) {
      a.done(tl::unexpected(*a.error));
    } else if (failure) {
      a.done(tl::unexpected(*failure));
    } else {
      a.done(std::move(positions[i]));
    }
  }
  for (PendingCommit* c : batch_commits) {
    c->done.set_value(failure ? Status(tl::unexpected(*failure)) : Status{});
  }
  {
    std::lock_guard lk(queue_mu);
    completed += batch_appends.size();
  }
  flushed_cv.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Groups: range assignment per topic, over the members subscribed to it, in join order.

void LocalLog::State::rebalance(Group& g) {
  std::vector<TopicInfo*> all_topics;
  for (GroupMember* m : g.members) {
    m->target.clear();
    for (TopicInfo* t : m->topics) {
      if (std::find(all_topics.begin(), all_topics.end(), t) == all_topics.end()) {
        all_topics.push_back(t);
      }
    }
  }
  for (TopicInfo* t : all_topics) {
    std::vector<GroupMember*> subscribers;
    for (GroupMember* m : g.members) {
      if (std::find(m->topics.begin(), m->topics.end(), t) != m->topics.end()) {
        subscribers.push_back(m);
      }
    }
    const auto n = static_cast<size_t>(t->partitions);
    const size_t share = n / subscribers.size();
    const size_t extra = n % subscribers.size();
    size_t first = 0;
    for (size_t i = 0; i < subscribers.size(); ++i) {
      const size_t count = share + (i < extra ? 1 : 0);
      for (size_t p = first; p < first + count; ++p) {
        subscribers[i]->target.push_back({t, static_cast<int32_t>(p)});
      }
      first += count;
    }
  }
  for (GroupMember* m : g.members) std::sort(m->target.begin(), m->target.end());
  group_epoch.fetch_add(1, std::memory_order_acq_rel);
}

// ---------------------------------------------------------------------------------------------
// Trimming (header comment of local_log.h): per partition, up to the lowest offset any group has
// committed, less trim_keep_records.

// The lowest next offset any group committed on the partition, or nullopt if none did.
std::optional<int64_t> LocalLog::State::lowest_commit(const TopicInfo& t, int32_t partition) {
  const std::string prefix = commit_key(t.id, partition, "");
  std::optional<int64_t> lowest;
  std::lock_guard lk(committed_mu);
  for (const auto& [key, offset] : committed) {
    if (key.size() < prefix.size() || key.compare(0, prefix.size(), prefix) != 0) continue;
    lowest = std::min(lowest.value_or(offset), offset);
  }
  return lowest;
}

Result<uint64_t> LocalLog::State::trim_partition(TopicInfo& t, int32_t partition) {
  const std::optional<int64_t> committed_at = lowest_commit(t, partition);
  if (!committed_at) return 0;  // nobody consumes it yet: nothing is known to be done with
  const int64_t end = t.end[partition].load(std::memory_order_acquire);
  const int64_t consumed = std::min(*committed_at, end);  // a commit may be past the end
  const int64_t keep = static_cast<int64_t>(std::min<uint64_t>(config.trim_keep_records, INT64_MAX));
  const int64_t begin = t.begin[partition].load(std::memory_order_relaxed);
  const int64_t target = consumed > keep ? consumed - keep : 0;
  if (target <= begin) return 0;

  // From the bare partition prefix (below every record of it; see RecordPartitionPrefix).
  const std::string from = partition_prefix(t.id, static_cast<uint32_t>(partition));
  const RecordKey to(t.id, partition, target);
  rocksdb::WriteBatch batch;
  char v[8];
  put_be64(v, static_cast<uint64_t>(target));
  rocksdb::Status s = batch.DeleteRange(from, to.slice());
  if (s.ok()) s = batch.Put(begin_key(t.id, partition), rocksdb::Slice(v, 8));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (s.ok()) s = db->Write(wo, &batch);
  if (!s.ok()) return tl::unexpected(io_error(config.dir, "trimming " + where(t.name, partition, target), s));
  t.begin[partition].store(target, std::memory_order_release);

  // The range tombstone hides the records at once; these give their disk space back. Whole SST
  // files in the range go first (cheap), the compaction rewrites the edges.
  const rocksdb::Slice lo = from, hi = to.slice();
  // include_end=false: the record at `target` is kept, and a file may end with it.
  s = rocksdb::DeleteFilesInRange(db.get(), db->DefaultColumnFamily(), &lo, &hi, /*include_end=*/false);
  rocksdb::CompactRangeOptions co;
  co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  if (s.ok()) s = db->CompactRange(co, &lo, &hi);
  if (!s.ok()) {
    logger("engine")->warn("log in `{}`: trimmed {} below {}, but giving the space back failed: {}",
                           config.dir, where(t.name, partition, begin), target, s.ToString());
  }
  return static_cast<uint64_t>(target - begin);
}

Result<uint64_t> LocalLog::State::trim() {
  std::lock_guard pass(trim_mu);
  uint64_t removed = 0;
  for (const auto& name : config.trimmed_topics) {
    TopicInfo* t = find_topic(name);
    if (t == nullptr) continue;  // not created (yet)
    for (int32_t p = 0; p < t->partitions; ++p) {
      auto n = trim_partition(*t, p);
      if (!n) return n;
      removed += *n;
    }
  }
  stat_trimmed.fetch_add(removed, std::memory_order_relaxed);
  return removed;
}

void LocalLog::State::run_trimmer() {
  std::unique_lock lk(trimmer_mu);
  while (!trimmer_cv.wait_for(lk, config.trim_interval, [&] { return trimmer_stopping; })) {
    lk.unlock();
    if (auto r = trim(); !r) {
      logger("engine")->warn("log in `{}`: trimming failed (retried in {} ms): {}", config.dir,
                             config.trim_interval.count(), r.error().to_string());
    } else if (*r > 0) {
      logger("engine")->debug("log in `{}`: trimmed {} consumed records", config.dir, *r);
    }
    lk.lock();
  }
}

// ---------------------------------------------------------------------------------------------
// Consumer.

namespace {

// A reader of the log. Manual mode reads what assign() names; group mode (topics set) gets its
// partitions from the group, moving them inside poll() with listener notices.
//
// Threading: one thread at a time, except wakeup(). Reads go through one RocksDB iterator per
// assigned partition, bounded to that partition's key range and kept while it has records to
// give, so a reader catching up does one seek and then Next() calls; a caught-up reader drops it.
//
// A group member keeps its partitions until it polls: a member that stops polling (without
// close()) holds partitions the group wants to move, and their new owner waits for it.
class LocalConsumer final : public Consumer {
 public:
  LocalConsumer(LocalLog::State& state, ConsumerOptions options);
  ~LocalConsumer() override;

  Status poll(std::vector<Record>& out, std::chrono::milliseconds timeout) override;
  Status assign(const std::vector<TopicPartitionOffset>& partitions) override;
  Status seek(const TopicPartitionOffset& position) override;
  Status commit(const std::vector<TopicPartitionOffset>& offsets) override;
  Result<std::optional<int64_t>> committed(const TopicPartition& partition) override;
  [[nodiscard]] std::vector<TopicPartition> assignment() const override;
  void wakeup() override;
  void close() override;

 private:
  struct Cursor {
    PartitionRef ref;
    int64_t next = 0;                        // the next offset to return
    std::unique_ptr<rocksdb::Iterator> it;   // null until first read
    std::string upper;                       // iterate_upper_bound storage
    rocksdb::Slice upper_slice;
    int64_t visible_end = 0;                 // the end when `it` was made
    int64_t positioned_at = -1;              // offset `it` points at, -1 if unknown
  };

  Status join(const std::vector<std::string>& topics);
  void sync_group();
  void add_cursor(PartitionRef ref, int64_t next);
  void remove_cursor(PartitionRef ref);
  Cursor* find_cursor(PartitionRef ref);
  bool ready() const;
  // Waits until ready() or `deadline`: on the topic's own condition variable when every cursor
  // reads one topic, else on the log's. False at the deadline.
  bool wait_ready(std::chrono::steady_clock::time_point deadline);
  Status read_available(std::vector<Record>& out, size_t& count);
  Status read_cursor(Cursor& c, int64_t end, std::vector<Record>& out, size_t& count);
  Status decode_current(const Cursor& c, Record& r) const;
  Error corrupt(const Cursor& c, const std::string& why) const;
  Result<TopicInfo*> checked_position(const TopicPartitionOffset& p, bool allow_past_end) const;

  LocalLog::State& state_;
  ConsumerOptions options_;
  std::optional<Error> init_error_;
  std::unique_ptr<GroupMember> member_;
  std::vector<std::unique_ptr<Cursor>> cursors_;
  size_t first_cursor_ = 0;  // rotates so every partition gets its turn under max_batch
  uint64_t seen_epoch_ = 0;
  std::atomic<bool> wakeup_{false};
  bool closed_ = false;
};

LocalConsumer::LocalConsumer(LocalLog::State& state, ConsumerOptions options)
    : state_(state), options_(std::move(options)) {
  state_.live_consumers.fetch_add(1);
  if (options_.max_batch == 0) options_.max_batch = 1;
  if (!options_.topics.empty()) {
    if (auto joined = join(options_.topics); !joined) init_error_ = joined.error();
  }
}

LocalConsumer::~LocalConsumer() {
  close();
  state_.live_consumers.fetch_sub(1);
}

Status LocalConsumer::join(const std::vector<std::string>& topics) {
  if (options_.group.empty()) {
    return fail(LogErrc::bad_argument,
                "a consumer of topics needs a group: set ConsumerOptions::group, or use assign()");
  }
  auto member = std::make_unique<GroupMember>();
  for (const auto& name : topics) {
    auto t = state_.topic_or_error(name);
    if (!t) return tl::unexpected(t.error());
    if (std::find(member->topics.begin(), member->topics.end(), *t) == member->topics.end()) {
      member->topics.push_back(*t);
    }
  }
  {
    std::lock_guard lk(state_.groups_mu);
    member->id = state_.next_member_id++;
    Group& g = state_.groups[options_.group];
    g.members.push_back(member.get());
    state_.rebalance(g);
  }
  member_ = std::move(member);
  state_.notify_consumers();
  return {};
}

// Moves this member's partitions toward its target: first gives up what it must (after
// on_revoked, so the listener can commit), then takes what is free. A partition still held by
// another member is taken on a later poll, once that member has revoked it.
void LocalConsumer::sync_group() {
  std::unique_lock lk(state_.groups_mu);
  seen_epoch_ = state_.group_epoch.load(std::memory_order_acquire);
  Group& g = state_.groups[options_.group];

  std::vector<PartitionRef> revoke;
  std::set_difference(member_->owned.begin(), member_->owned.end(), member_->target.begin(),
                      member_->target.end(), std::back_inserter(revoke));
  if (!revoke.empty()) {
    if (options_.listener != nullptr) {
      lk.unlock();
      options_.listener->on_revoked(to_topic_partitions(revoke));
      lk.lock();
    }
    for (const PartitionRef& r : revoke) {
      g.owners.erase(r);
      member_->owned.erase(std::find(member_->owned.begin(), member_->owned.end(), r));
      remove_cursor(r);
    }
    state_.group_epoch.fetch_add(1, std::memory_order_acq_rel);
  }

  std::vector<PartitionRef> gain;
  for (const PartitionRef& r : member_->target) {
    if (!std::binary_search(member_->owned.begin(), member_->owned.end(), r) &&
        g.owners.find(r) == g.owners.end()) {
      g.owners[r] = member_.get();
      gain.push_back(r);
    }
  }
  member_->owned.insert(member_->owned.end(), gain.begin(), gain.end());
  std::sort(member_->owned.begin(), member_->owned.end());
  lk.unlock();

  if (!revoke.empty()) state_.notify_consumers();  // members waiting for these partitions
  if (gain.empty()) return;
  for (const PartitionRef& r : gain) {
    auto stored = state_.committed_offset(commit_key(r.topic->id, r.partition, options_.group));
    int64_t start = options_.start_at_beginning
                        ? r.topic->begin[r.partition].load(std::memory_order_acquire)
                        : r.topic->end[r.partition].load(std::memory_order_acquire);
    add_cursor(r, stored.value_or(start));
  }
  if (options_.listener != nullptr) options_.listener->on_assigned(to_topic_partitions(gain));
}

void LocalConsumer::add_cursor(PartitionRef ref, int64_t next) {
  auto c = std::make_unique<Cursor>();
  c->ref = ref;
  c->next = next;
  c->upper = partition_upper_bound(ref.topic->id, ref.partition);
  c->upper_slice = rocksdb::Slice(c->upper);
  cursors_.push_back(std::move(c));
}

void LocalConsumer::remove_cursor(PartitionRef ref) {
  std::erase_if(cursors_, [&](const auto& c) { return c->ref == ref; });
  first_cursor_ = 0;
}

LocalConsumer::Cursor* LocalConsumer::find_cursor(PartitionRef ref) {
  for (auto& c : cursors_) {
    if (c->ref == ref) return c.get();
  }
  return nullptr;
}

bool LocalConsumer::ready() const {
  if (wakeup_.load(std::memory_order_acquire)) return true;
  if (member_ && state_.group_epoch.load(std::memory_order_acquire) != seen_epoch_) return true;
  for (const auto& c : cursors_) {
    if (c->next < c->ref.topic->end[c->ref.partition].load(std::memory_order_acquire)) return true;
  }
  return false;
}

Status LocalConsumer::poll(std::vector<Record>& out, std::chrono::milliseconds timeout) {
  if (closed_) return fail(LogErrc::closed, "poll() on a closed consumer");
  if (init_error_) {
    out.clear();
    return tl::unexpected(*init_error_);
  }
  const auto deadline = deadline_after(timeout);
  size_t count = 0;
  Status result;
  while (true) {
    if (member_ && state_.group_epoch.load(std::memory_order_acquire) != seen_epoch_) {
      sync_group();
    }
    result = read_available(out, count);
    if (!result || count > 0) break;
    if (wakeup_.load(std::memory_order_acquire)) break;
    if (!wait_ready(deadline)) break;
  }
  out.resize(count);
  wakeup_.store(false, std::memory_order_release);
  return result;
}

bool LocalConsumer::wait_ready(std::chrono::steady_clock::time_point deadline) {
  TopicInfo* only = cursors_.empty() ? nullptr : cursors_.front()->ref.topic;
  for (const auto& c : cursors_) {
    if (c->ref.topic != only) only = nullptr;
  }
  std::unique_lock lk(state_.data_mu);
  if (only != nullptr) return only->data_cv.wait_until(lk, deadline, [&] { return ready(); });
  ++state_.global_waiters;
  bool ok = state_.data_cv.wait_until(lk, deadline, [&] { return ready(); });
  --state_.global_waiters;
  return ok;
}

// Reads up to max_batch records, visiting partitions round-robin. A damaged record fails the
// poll only when nothing was read before it; otherwise the records read are returned and the
// next poll, starting at the damaged partition's turn, reports it (its cursor does not move).
Status LocalConsumer::read_available(std::vector<Record>& out, size_t& count) {
  const size_t n = cursors_.size();
  for (size_t k = 0; k < n && count < options_.max_batch; ++k) {
    Cursor& c = *cursors_[(first_cursor_ + k) % n];
    const int64_t end = c.ref.topic->end[c.ref.partition].load(std::memory_order_acquire);
    if (c.next >= end) continue;
    Status r = read_cursor(c, end, out, count);
    // The trimmer may have removed the records under this position: that is no damage.
    if (!r && c.next < c.ref.topic->begin[c.ref.partition].load(std::memory_order_acquire)) {
      r = tl::unexpected(trimmed_error(*c.ref.topic, c.ref.partition, c.next));
    }
    if (!r) {
      if (count > 0) return {};
      first_cursor_ = (first_cursor_ + k) % n;
      return r;
    }
  }
  if (n > 0) first_cursor_ = (first_cursor_ + 1) % n;
  return {};
}

Status LocalConsumer::read_cursor(Cursor& c, int64_t end, std::vector<Record>& out,
                                  size_t& count) {
  if (c.it && c.next >= c.visible_end) c.it.reset();  // a seek() moved past what it can see
  if (!c.it) {
    // `end` was loaded (acquire) after the writer's Write returned, so an iterator made now sees
    // every record below it.
    rocksdb::ReadOptions ro;
    ro.verify_checksums = true;
    ro.iterate_upper_bound = &c.upper_slice;
    c.it.reset(state_.db->NewIterator(ro));
    c.visible_end = end;
    c.positioned_at = -1;
  }
  if (c.positioned_at != c.next) {
    c.it->Seek(RecordKey(c.ref.topic->id, c.ref.partition, c.next).slice());
  }
  c.positioned_at = -1;  // unknown until a record is read

  const int64_t limit = std::min(end, c.visible_end);
  while (c.next < limit && count < options_.max_batch) {
    if (count == out.size()) out.emplace_back();
    if (auto r = decode_current(c, out[count]); !r) return r;
    ++count;
    ++c.next;
    c.it->Next();
    c.positioned_at = c.next;
  }
  // Caught up: let the iterator go, so an idle reader does not pin memtables and SST files the
  // log has moved past. The next records get a fresh iterator.
  if (c.next >= c.visible_end) c.it.reset();
  return {};
}

// Checks and decodes the record under c's iterator, which must be the one at offset c.next.
Status LocalConsumer::decode_current(const Cursor& c, Record& r) const {
  const rocksdb::Iterator& it = *c.it;
  if (!it.Valid()) {
    const rocksdb::Status& s = it.status();
    if (s.IsCorruption()) return tl::unexpected(corrupt(c, "RocksDB: " + s.ToString()));
    if (!s.ok()) {
      return tl::unexpected(io_error(
          state_.config.dir, "reading " + where(c.ref.topic->name, c.ref.partition, c.next), s));
    }
    return tl::unexpected(corrupt(c, "the record is missing"));
  }
  const RecordKey expected(c.ref.topic->id, c.ref.partition, c.next);
  if (it.key() != expected.slice()) {
    return tl::unexpected(corrupt(c, "the record is missing (another key is in its place)"));
  }
  const rocksdb::Slice v = it.value();
  if (v.size() < kFrameHeaderSize) return tl::unexpected(corrupt(c, "the frame is truncated"));
  uint32_t stored_crc;
  int64_t ts;
  uint32_t key_len;
  std::memcpy(&stored_crc, v.data(), 4);
  std::memcpy(&ts, v.data() + 4, 8);
  std::memcpy(&key_len, v.data() + 12, 4);
  if (key_len > v.size() - kFrameHeaderSize) {
    return tl::unexpected(corrupt(c, "the key length is past the end of the frame"));
  }
  Crc32c crc;
  crc.update(expected.bytes, kRecordKeySize);
  crc.update(v.data() + 4, v.size() - 4);
  if (crc.value() != stored_crc) {
    char why[96];
    std::snprintf(why, sizeof why, "checksum mismatch (stored %08x, computed %08x)", stored_crc,
                  crc.value());
    return tl::unexpected(corrupt(c, why));
  }
  // assign() reuses the capacity of a Record the caller passed back in.
  r.topic.assign(c.ref.topic->name);
  r.partition = c.ref.partition;
  r.offset = c.next;
  r.timestamp_ms = ts;
  r.key.assign(v.data() + kFrameHeaderSize, key_len);
  r.value.assign(v.data() + kFrameHeaderSize + key_len, v.size() - kFrameHeaderSize - key_len);
  return {};
}

Error LocalConsumer::corrupt(const Cursor& c, const std::string& why) const {
  return Error(make_error_code(LogErrc::corrupt_record),
               "corrupt record in " + where(c.ref.topic->name, c.ref.partition, c.next) +
                   " of the log in `" + state_.config.dir + "`: " + why);
}

Result<TopicInfo*> LocalConsumer::checked_position(const TopicPartitionOffset& p,
                                                   bool allow_past_end) const {
  auto t = state_.checked_partition({p.topic, p.partition});
  if (!t) return t;
  if (p.offset < 0) {
    return fail(LogErrc::bad_argument, "offset " + std::to_string(p.offset) + " of topic `" +
                                           p.topic + "` partition " +
                                           std::to_string(p.partition) + " is negative");
  }
  const int64_t end = (*t)->end[p.partition].load(std::memory_order_acquire);
  if (!allow_past_end && p.offset < (*t)->begin[p.partition].load(std::memory_order_acquire)) {
    return tl::unexpected(trimmed_error(**t, p.partition, p.offset));
  }
  if (!allow_past_end && p.offset > end) {
    return fail(LogErrc::offset_out_of_range,
                "offset " + std::to_string(p.offset) + " is past the end (" +
                    std::to_string(end) + ") of topic `" + p.topic + "` partition " +
                    std::to_string(p.partition));
  }
  return t;
}

Status LocalConsumer::assign(const std::vector<TopicPartitionOffset>& partitions) {
  if (closed_) return fail(LogErrc::closed, "assign() on a closed consumer");
  if (member_ || !options_.topics.empty()) {
    return fail(LogErrc::bad_argument,
                "this consumer is a member of group `" + options_.group +
                    "` and gets its partitions from the group; assign() is for consumers "
                    "without topics");
  }
  std::vector<std::pair<PartitionRef, int64_t>> wanted;
  for (const auto& p : partitions) {
    auto t = checked_position(p, /*allow_past_end=*/false);
    if (!t) return tl::unexpected(t.error());
    wanted.push_back({{*t, p.partition}, p.offset});
  }
  cursors_.clear();
  first_cursor_ = 0;
  for (const auto& [ref, offset] : wanted) {
    if (Cursor* c = find_cursor(ref)) {
      c->next = offset;  // named twice: the later one wins
      c->positioned_at = -1;
    } else {
      add_cursor(ref, offset);
    }
  }
  return {};
}

Status LocalConsumer::seek(const TopicPartitionOffset& position) {
  if (closed_) return fail(LogErrc::closed, "seek() on a closed consumer");
  auto t = checked_position(position, /*allow_past_end=*/false);
  if (!t) return tl::unexpected(t.error());
  Cursor* c = find_cursor({*t, position.partition});
  if (c == nullptr) {
    return fail(LogErrc::bad_argument, "topic `" + position.topic + "` partition " +
                                           std::to_string(position.partition) +
                                           " is not assigned to this consumer");
  }
  c->next = position.offset;
  c->positioned_at = -1;
  return {};
}

Status LocalConsumer::commit(const std::vector<TopicPartitionOffset>& offsets) {
  if (closed_) return fail(LogErrc::closed, "commit() on a closed consumer");
  if (options_.group.empty()) {
    return fail(LogErrc::bad_argument,
                "commit() needs a consumer group: set ConsumerOptions::group");
  }
  std::vector<std::pair<std::string, int64_t>> entries;
  entries.reserve(offsets.size());
  for (const auto& p : offsets) {
    // A committed offset may be past the end (records acknowledged but not yet read elsewhere).
    auto t = checked_position(p, /*allow_past_end=*/true);
    if (!t) return tl::unexpected(t.error());
    entries.emplace_back(commit_key((*t)->id, p.partition, options_.group), p.offset);
  }
  if (entries.empty()) return {};
  return state_.commit(std::move(entries));
}

Result<std::optional<int64_t>> LocalConsumer::committed(const TopicPartition& partition) {
  if (options_.group.empty()) {
    return fail(LogErrc::bad_argument,
                "committed() needs a consumer group: set ConsumerOptions::group");
  }
  auto t = state_.checked_partition(partition);
  if (!t) return tl::unexpected(t.error());
  return state_.committed_offset(commit_key((*t)->id, partition.partition, options_.group));
}

std::vector<TopicPartition> LocalConsumer::assignment() const {
  std::vector<PartitionRef> refs;
  for (const auto& c : cursors_) refs.push_back(c->ref);
  std::sort(refs.begin(), refs.end());
  return to_topic_partitions(refs);
}

void LocalConsumer::wakeup() {
  wakeup_.store(true, std::memory_order_release);
  state_.notify_consumers();
}

void LocalConsumer::close() {
  if (closed_) return;
  if (member_) {
    std::vector<PartitionRef> owned;
    {
      std::lock_guard lk(state_.groups_mu);
      owned = member_->owned;
    }
    if (!owned.empty() && options_.listener != nullptr) {
      options_.listener->on_revoked(to_topic_partitions(owned));
    }
    {
      std::lock_guard lk(state_.groups_mu);
      auto g = state_.groups.find(options_.group);
      for (const PartitionRef& r : member_->owned) g->second.owners.erase(r);
      std::erase(g->second.members, member_.get());
      if (g->second.members.empty()) {
        state_.groups.erase(g);
        state_.group_epoch.fetch_add(1, std::memory_order_acq_rel);
      } else {
        state_.rebalance(g->second);
      }
    }
    state_.notify_consumers();
  }
  closed_ = true;
  cursors_.clear();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LocalLog.

namespace {

// The hint prefix: a record key's partition. Only record keys are in its domain: RocksDB keeps one
// hint per prefix for both of a memtable's skiplists, so a range tombstone sharing a prefix with
// records would hand one skiplist a node of the other. A trim's tombstones start at the 9-byte
// partition prefix, which is outside the domain.
class RecordPartitionPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "imlog.RecordPartitionPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return {key.data(), kPartitionPrefixSize};
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return key.size() == kRecordKeySize && key[0] == kRecordPrefix;
  }
};

rocksdb::Options make_options(std::shared_ptr<rocksdb::Statistics> statistics) {
  rocksdb::Options o;
  o.statistics = std::move(statistics);
  o.create_if_missing = true;
  // Detect damage instead of serving it: check file consistency on open and stop on a
  // background error rather than continue past it.
  o.paranoid_checks = true;
  // A kill (not a power cut) may leave a torn write at the WAL's tail; that batch was never
  // acknowledged, so recovering to the last complete batch is exactly right.
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // No compression: on two cores the CPU is what limits the write and replay rates; records are
  // mostly FlatBuffers that compress modestly; and uncompressed blocks keep each record's bytes
  // in the SST as written, which the corruption test relies on to damage a chosen record.
  o.compression = rocksdb::kNoCompression;
  o.bottommost_compression = rocksdb::kNoCompression;
  // Within a partition, offsets arrive in order: a per-partition insert hint turns each memtable
  // insert from a skiplist search into an append after the previous key (the hint is kept only
  // for a single writer, which the writer thread is).
  o.memtable_insert_with_hint_prefix_extractor = std::make_shared<RecordPartitionPrefix>();
  o.allow_concurrent_memtable_write = false;
  o.max_background_jobs = 2;
  o.write_buffer_size = 64 << 20;
  o.max_write_buffer_number = 4;
  o.level_compaction_dynamic_level_bytes = true;
  o.keep_log_file_num = 4;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = rocksdb::NewLRUCache(64 << 20);
  t.block_size = 16 << 10;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  return o;
}

}  // namespace

Result<std::unique_ptr<LocalLog>> LocalLog::open(const LocalLogConfig& config) {
  if (config.dir.empty()) {
    return fail(LogErrc::bad_argument, "LocalLogConfig::dir is empty: name the log directory");
  }
  if (config.max_batch_records == 0) {
    return fail(LogErrc::bad_argument, "LocalLogConfig::max_batch_records is 0: it must be > 0");
  }
  for (const auto& topic : config.trimmed_topics) {
    if (topic == kEventsTopic) {
      return fail(LogErrc::bad_argument, "LocalLogConfig::trimmed_topics names " + topic +
                                             ": the events are the truth and are never trimmed");
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(config.dir, ec);
  if (ec) {
    return fail(LogErrc::io_error,
                "cannot create the log directory `" + config.dir + "`: " + ec.message());
  }
  auto state = std::make_unique<State>();
  state->config = config;
  state->statistics = rocksdb::CreateDBStatistics();
  state->statistics->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(make_options(state->statistics), config.dir, &raw);
  if (!s.ok()) return tl::unexpected(io_error(config.dir, "cannot open", s));
  state->db.reset(raw);
  IMLOG_TRY(state->load_topics());
  IMLOG_TRY(state->load_commits());

  State* st = state.get();
  state->writer = std::thread([st] {
    name_this_thread("log-writer");
    st->run_writer();
  });
  {
    std::lock_guard lk(state->queue_mu);
    state->writer_id = state->writer.get_id();
  }
  if (!config.trimmed_topics.empty() && config.trim_interval.count() > 0) {
    state->trimmer = std::thread([st] {
      name_this_thread("log-trimmer");
      st->run_trimmer();
    });
  }
  return std::unique_ptr<LocalLog>(new LocalLog(std::move(state)));
}

LocalLog::LocalLog(std::unique_ptr<State> state) : state_(std::move(state)) {}

LocalLog::~LocalLog() {
  State& s = *state_;
  if (const int64_t alive = s.live_consumers.load(); alive != 0) {
    std::fprintf(stderr,
                 "imlog: LocalLog `%s` destroyed with %lld consumers alive: destroy consumers "
                 "before their log\n",
                 s.config.dir.c_str(), static_cast<long long>(alive));
    std::abort();
  }
  {
    std::lock_guard lk(s.trimmer_mu);
    s.trimmer_stopping = true;
  }
  s.trimmer_cv.notify_all();
  if (s.trimmer.joinable()) s.trimmer.join();
  {
    std::lock_guard lk(s.queue_mu);
    s.stopping = true;
  }
  s.work_cv.notify_all();
  s.space_cv.notify_all();
  s.writer.join();
  rocksdb::FlushOptions fo;
  fo.wait = true;
  if (auto st = s.db->Flush(fo); !st.ok()) {
    logger("engine")->warn("log in `{}`: flushing on close failed: {}", s.config.dir,
                           st.ToString());
  }
  if (auto st = s.db->Close(); !st.ok()) {
    logger("engine")->warn("log in `{}`: close failed: {}", s.config.dir, st.ToString());
  }
}

Status LocalLog::create_topic(const TopicSpec& spec) {
  State& s = *state_;
  if (spec.name.empty()) return fail(LogErrc::bad_argument, "topic name is empty");
  if (spec.partitions <= 0) {
    return fail(LogErrc::bad_argument, "topic `" + spec.name + "`: partition count " +
                                           std::to_string(spec.partitions) + " must be > 0");
  }
  std::unique_lock lk(s.topics_mu);
  if (auto it = s.topics.find(spec.name); it != s.topics.end()) {
    if (it->second->partitions != spec.partitions) {
      return fail(LogErrc::topic_mismatch,
                  "topic `" + spec.name + "` exists with " +
                      std::to_string(it->second->partitions) + " partitions, not " +
                      std::to_string(spec.partitions));
    }
    return {};  // durable is fixed at creation, as Kafka ignores it altogether
  }
  const uint32_t id = s.next_topic_id;
  char v[9];
  put_be32(v, id);
  put_be32(v + 4, static_cast<uint32_t>(spec.partitions));
  v[8] = spec.durable ? 1 : 0;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto st = s.db->Put(wo, topic_key(spec.name), rocksdb::Slice(v, 9)); !st.ok()) {
    return tl::unexpected(io_error(s.config.dir, "creating topic `" + spec.name + "`", st));
  }
  ++s.next_topic_id;
  s.topics.emplace(spec.name,
                   std::make_unique<TopicInfo>(spec.name, id, spec.partitions, spec.durable));
  return {};
}

Result<int32_t> LocalLog::partition_count(std::string_view topic) {
  auto t = state_->topic_or_error(topic);
  if (!t) return tl::unexpected(t.error());
  return (*t)->partitions;
}

void LocalLog::append(std::string_view topic, std::vector<OutRecord> records,
                      AppendCallback done) {
  PendingAppend a;
  if (auto ok = state_->validate(topic, records, a.topic, a.bytes); !ok) {
    a.error = ok.error();
    a.bytes = 0;
  }
  a.records = std::move(records);
  a.done = std::move(done);
  state_->enqueue(std::move(a));
}

Result<int64_t> LocalLog::end_offset(const TopicPartition& partition) {
  auto t = state_->checked_partition(partition);
  if (!t) return tl::unexpected(t.error());
  return (*t)->end[partition.partition].load(std::memory_order_acquire);
}

Result<int64_t> LocalLog::begin_offset(const TopicPartition& partition) {
  auto t = state_->checked_partition(partition);
  if (!t) return tl::unexpected(t.error());
  return (*t)->begin[partition.partition].load(std::memory_order_acquire);
}

Result<uint64_t> LocalLog::trim() { return state_->trim(); }

Result<uint64_t> LocalLog::approximate_bytes(std::string_view topic) {
  auto t = state_->topic_or_error(topic);
  if (!t) return tl::unexpected(t.error());
  const RecordKey from((*t)->id, 0, 0);
  const std::string to = partition_upper_bound((*t)->id, (*t)->partitions - 1);
  const rocksdb::Range range(from.slice(), to);
  uint64_t bytes = 0;
  rocksdb::SizeApproximationOptions o;
  o.include_memtables = true;
  o.include_files = true;
  auto s = state_->db->GetApproximateSizes(o, state_->db->DefaultColumnFamily(), &range, 1, &bytes);
  if (!s.ok()) return tl::unexpected(io_error(state_->config.dir, "sizing topic `" + std::string(topic) + "`", s));
  return bytes;
}

std::unique_ptr<Consumer> LocalLog::consumer(const ConsumerOptions& options) {
  return std::make_unique<LocalConsumer>(*state_, options);
}

Status LocalLog::flush(std::chrono::milliseconds timeout) {
  State& s = *state_;
  std::unique_lock lk(s.queue_mu);
  const uint64_t target = s.enqueued;
  if (!s.flushed_cv.wait_until(lk, deadline_after(timeout),
                               [&] { return s.completed >= target; })) {
    return fail(LogErrc::timed_out,
                "flush of the log in `" + s.config.dir + "`: " +
                    std::to_string(target - s.completed) + " appends still unacknowledged after " +
                    std::to_string(timeout.count()) + " ms",
                /*retryable=*/true);
  }
  return {};
}

std::string LocalLog::describe() const { return "local:" + state_->config.dir; }

LocalLogStats LocalLog::stats() const {
  return {state_->stat_commits.load(std::memory_order_relaxed),
          state_->statistics->getTickerCount(rocksdb::WAL_FILE_SYNCED),
          state_->stat_records.load(std::memory_order_relaxed),
          state_->stat_bytes.load(std::memory_order_relaxed),
          state_->stat_trimmed.load(std::memory_order_relaxed)};
}

const metrics::Histogram& LocalLog::synced_write_seconds() const { return state_->stat_synced_write_seconds; }

}  // namespace imlog
