#include "state_store.h"

#include <algorithm>

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "imlog/core/bytes.h"
#include "imlog/core/logging.h"

namespace imlog {
namespace {

std::string partition_key(int32_t p) {
  std::string k = "c";
  for (int i = 3; i >= 0; --i) k.push_back(static_cast<char>(static_cast<uint32_t>(p) >> (8 * i)));
  return k;
}

constexpr char kHorizonKey[] = "h";
constexpr char kRecallHorizonKey[] = "g";

void put_u64_be(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}

void encode_recall(const RecentMessage& m, std::string& out) {
  out.clear();
  put_u64_le(out, m.sender);
  put_u64_le(out, m.seq);
  put_u64_le(out, static_cast<uint64_t>(m.timestamp_ms));
  out.push_back(m.recalled ? 1 : 0);
}

// 't' client_sent_at (8 BE) dedupe key: ordered by time, so eviction is one range scan.
std::string time_key(int64_t sent_at, std::string_view dedupe_key) {
  std::string k = "t";
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>(static_cast<uint64_t>(sent_at) >> (8 * i)));
  k += dedupe_key;
  return k;
}

Error store_error(const rocksdb::Status& s, std::string_view what) {
  return Error(std::make_error_code(std::errc::io_error),
               "engine state store: " + std::string(what) + ": " + s.ToString(), false);
}

}  // namespace

class RocksStateStore final : public StateStore {
 public:
  explicit RocksStateStore(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
  // A clean stop flushes the memtables, so the next open has no write-ahead log to replay (after
  // a catch-up of a long log that was seconds of the next start).
  ~RocksStateStore() override {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    fo.allow_write_stall = true;  // never wait for a stall to clear: a stop must end
    if (auto s = db_->Flush(fo); !s.ok()) logger("engine")->warn("flushing the engine state store: {}", s.ToString());
    if (auto s = db_->Close(); !s.ok()) logger("engine")->warn("closing the engine state store: {}", s.ToString());
  }

  Result<Checkpoint> checkpoint(int32_t partition) override;
  Result<bool> load(std::string_view stream, StreamState& out) override;
  Result<std::optional<DedupeEntry>> dedupe(std::string_view key) override;
  Result<std::optional<uint64_t>> name_holder(std::string_view username) override;
  Result<int64_t> dedupe_horizon() override;
  Result<std::optional<RecentMessage>> recall(std::string_view stream, uint64_t message_id) override;
  Result<uint64_t> recall_horizon() override { return read_u64(kRecallHorizonKey, "the recall horizon"); }
  Status write(const StoreBatch& batch) override;

 private:
  Result<uint64_t> read_u64(const char* key, std::string_view what);
  Status evict(int64_t from, int64_t cutoff, rocksdb::WriteBatch& wb);
  Status evict_recalls(uint64_t from, uint64_t cutoff, rocksdb::WriteBatch& wb);
  Status migrate_legacy_state(std::string_view stream, const StreamState& state, const std::vector<RecentMessage>& recent);

  std::unique_ptr<rocksdb::DB> db_;
  // Reused by every write(), so a checkpoint's megabytes of states land in memory already
  // touched instead of fresh pages (faulted in one by one) each time.
  rocksdb::WriteBatch batch_;
  std::string scratch_;
};

Result<std::unique_ptr<StateStore>> StateStore::open(const std::string& dir) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  // Dedupe lookups mostly miss (a new client_msg_id): bloom filters make a miss cheap.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // ... and in the memtables too, where most recent keys are: without it every new command's
  // dedupe probe walks the skiplist (a quarter of the sequencer's time in perf, docs/benchmarks.md).
  options.memtable_whole_key_filtering = true;
  options.memtable_prefix_bloom_size_ratio = 0.1;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) return fail(store_error(s, "opening " + dir));
  return std::unique_ptr<StateStore>(new RocksStateStore(std::unique_ptr<rocksdb::DB>(raw)));
}

Result<Checkpoint> RocksStateStore::checkpoint(int32_t partition) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), partition_key(partition), &v);
  if (s.IsNotFound()) return Checkpoint{};
  if (!s.ok()) return fail(store_error(s, "reading checkpoint"));
  // 24 bytes: written before epoch links were stored (the link is then not known). Anything else
  // is unreadable: rebuild from the start of the log.
  if (v.size() != 24 && v.size() != 32) return Checkpoint{};
  uint64_t link = v.size() == 32 ? get_u64_le(v, 24) : 0;
  return Checkpoint{static_cast<int64_t>(get_u64_le(v, 0)), get_u64_le(v, 8), get_u64_le(v, 16), link};
}

Result<bool> RocksStateStore::load(std::string_view stream, StreamState& out) {
  std::string key = "s";
  key += stream;
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), key, &v);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return fail(store_error(s, "reading stream " + std::string(stream)));
  std::vector<RecentMessage> legacy;
  if (!decode_state(v, out, &legacy)) {
    return fail(Error(std::make_error_code(std::errc::io_error),
                      "engine state store: stream " + std::string(stream) +
                          " has an undecodable state; delete the state directory to rebuild it"));
  }
  if (get_u64_le(v, 0) < 6) IMLOG_TRY(migrate_legacy_state(stream, out, legacy));
  return true;
}

// A state of version 5 or older: its recent messages into the recall index and the state again as
// the current version, in one write, so the next load reads it as it is. A stored state is the
// one its partition's checkpoint holds, so the messages are what the stream's events up to there
// put in the index: on the live path no later event of the stream exists (it would have kept the
// state in the cache, dirty), and in a catch-up the replay from the checkpoint puts the later
// ones again.
Status RocksStateStore::migrate_legacy_state(std::string_view stream, const StreamState& state,
                                             const std::vector<RecentMessage>& recent) {
  auto horizon = read_u64(kRecallHorizonKey, "the recall horizon");
  IMLOG_TRY(horizon);
  rocksdb::WriteBatch wb;
  std::string value;
  for (const auto& m : recent) {
    if (m.message_id < *horizon) continue;
    encode_recall(m, value);
    wb.Put(recall_key(stream, m.message_id), value);
  }
  encode_state(state, value);
  wb.Put("s" + std::string(stream), value);
  auto s = db_->Write(rocksdb::WriteOptions(), &wb);
  if (!s.ok()) return fail(store_error(s, "moving the recent messages of " + std::string(stream) + " to the recall index"));
  return {};
}

std::string StateStore::recall_key(std::string_view stream, uint64_t message_id) {
  std::string k;
  k.reserve(9 + stream.size());
  k.push_back('r');
  put_u64_be(k, message_id);
  k += stream;
  return k;
}

Result<std::optional<RecentMessage>> RocksStateStore::recall(std::string_view stream, uint64_t message_id) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), recall_key(stream, message_id), &v);
  if (s.IsNotFound()) return std::optional<RecentMessage>();
  if (!s.ok()) return fail(store_error(s, "reading the recall index"));
  if (v.size() != 25) return fail(store_error(rocksdb::Status::Corruption("malformed recall entry"), "reading the recall index"));
  return std::optional<RecentMessage>(RecentMessage{message_id, get_u64_le(v, 0), get_u64_le(v, 8),
                                                    static_cast<int64_t>(get_u64_le(v, 16)), v[24] != 0});
}

std::string StateStore::dedupe_key(std::string_view stream, uint64_t actor, std::string_view client_msg_id) {
  std::string k;
  k.reserve(2 + stream.size() + 8 + client_msg_id.size());
  k.push_back('d');
  k += stream;
  k.push_back('\0');
  for (int i = 7; i >= 0; --i) k.push_back(static_cast<char>(actor >> (8 * i)));
  k += client_msg_id;
  return k;
}

Result<std::optional<DedupeEntry>> RocksStateStore::dedupe(std::string_view key) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &v);
  if (s.IsNotFound()) return std::optional<DedupeEntry>();
  if (!s.ok()) return fail(store_error(s, "reading the dedupe index"));
  if (v.size() < 24) return fail(store_error(rocksdb::Status::Corruption("short dedupe entry"), "reading the dedupe index"));
  DedupeEntry e{get_u64_le(v, 0), get_u64_le(v, 8), get_u64_le(v, 16), {}, {}};
  if (v.size() > 24) {  // a remembered refusal: code length, code, message
    size_t code_size = static_cast<unsigned char>(v[24]);
    if (code_size == 0 || v.size() < 25 + code_size) {
      return fail(store_error(rocksdb::Status::Corruption("malformed refusal entry"), "reading the dedupe index"));
    }
    e.code = v.substr(25, code_size);
    e.message = v.substr(25 + code_size);
  }
  return std::optional<DedupeEntry>(std::move(e));
}

Result<std::optional<uint64_t>> RocksStateStore::name_holder(std::string_view username) {
  std::string key = "n";
  key += username;
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), key, &v);
  if (s.IsNotFound()) return std::optional<uint64_t>{};
  if (!s.ok()) return fail(store_error(s, "reading the name index"));
  if (v.size() != 8) return fail(store_error(rocksdb::Status::Corruption("malformed name entry"), "reading the name index"));
  return std::optional<uint64_t>(get_u64_le(v, 0));
}

// An 8-byte little-endian value; 0 when the key is absent.
Result<uint64_t> RocksStateStore::read_u64(const char* key, std::string_view what) {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), key, &v);
  if (s.IsNotFound()) return uint64_t{0};
  if (!s.ok()) return fail(store_error(s, "reading " + std::string(what)));
  if (v.size() != 8) return fail(store_error(rocksdb::Status::Corruption("malformed value"), "reading " + std::string(what)));
  return get_u64_le(v, 0);
}

Result<int64_t> RocksStateStore::dedupe_horizon() {
  auto h = read_u64(kHorizonKey, "the dedupe horizon");
  IMLOG_TRY(h);
  return static_cast<int64_t>(*h);
}

// Puts into wb the removal of every dedupe entry sent in [from, cutoff) and of its time index
// entry: one scan of the time index over that range. Point deletes, not a range delete: a
// checkpoint evicts every second or so, and as many range tombstones would slow every read.
Status RocksStateStore::evict(int64_t from, int64_t cutoff, rocksdb::WriteBatch& wb) {
  std::string begin = time_key(std::max<int64_t>(from, 0), {});
  std::string end = time_key(cutoff, {});
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(begin); it->Valid(); it->Next()) {
    auto k = it->key();
    wb.Delete(rocksdb::Slice(k.data() + 9, k.size() - 9));  // the entry the time index names
    wb.Delete(k);
  }
  if (!it->status().ok()) return fail(store_error(it->status(), "scanning the dedupe time index"));
  return {};
}

// Puts into wb the removal of every recall entry of a message id in [from, cutoff): one scan of
// the index over that range, point deletes for the same reason as evict()'s.
Status RocksStateStore::evict_recalls(uint64_t from, uint64_t cutoff, rocksdb::WriteBatch& wb) {
  std::string begin = "r", end = "r";
  put_u64_be(begin, from);
  put_u64_be(end, cutoff);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(begin); it->Valid(); it->Next()) wb.Delete(it->key());
  if (!it->status().ok()) return fail(store_error(it->status(), "scanning the recall index"));
  return {};
}

Status RocksStateStore::write(const StoreBatch& batch) {
  rocksdb::WriteBatch& wb = batch_;
  wb.Clear();
  std::string key, value;
  auto stored = dedupe_horizon();
  IMLOG_TRY(stored);
  int64_t horizon = *stored;
  if (batch.dedupe_cutoff > horizon) {
    IMLOG_TRY(evict(horizon, batch.dedupe_cutoff, wb));
    horizon = batch.dedupe_cutoff;
    value.clear();
    put_u64_le(value, static_cast<uint64_t>(horizon));
    wb.Put(kHorizonKey, value);
  }
  for (const auto& [stream, state] : batch.states) {
    key = "s" + stream;
    encode_state(*state, scratch_);
    wb.Put(key, scratch_);
  }
  for (const auto& [k, e] : batch.dedupe) {
    // Sent before the horizon: evicted already (or now), and a retry of it is refused.
    if (e.client_sent_at > 0 && e.client_sent_at < horizon) continue;
    value.clear();
    put_u64_le(value, e.seq);
    put_u64_le(value, e.event_id);
    put_u64_le(value, e.result_id);
    if (e.refused()) {
      // Codes are short names (refusal_code()); one byte holds their length.
      value.push_back(static_cast<char>(std::min<size_t>(e.code.size(), 255)));
      value.append(e.code, 0, 255);
      value += e.message;
    }
    wb.Put(k, value);
    if (e.client_sent_at > 0) wb.Put(time_key(e.client_sent_at, k), rocksdb::Slice());
  }
  uint64_t recall_horizon = 0;
  if (!batch.recalls.empty() || batch.recall_cutoff > 0) {
    auto h = read_u64(kRecallHorizonKey, "the recall horizon");
    IMLOG_TRY(h);
    recall_horizon = *h;
  }
  if (batch.recall_cutoff > recall_horizon) {
    IMLOG_TRY(evict_recalls(recall_horizon, batch.recall_cutoff, wb));
    recall_horizon = batch.recall_cutoff;
    value.clear();
    put_u64_le(value, recall_horizon);
    wb.Put(kRecallHorizonKey, value);
  }
  for (const auto& [k, m] : batch.recalls) {
    if (m.message_id < recall_horizon) continue;  // past the window: removed already (or now)
    encode_recall(m, value);
    wb.Put(k, value);
  }
  for (const auto& [name, id] : batch.names) {
    value.clear();
    put_u64_le(value, id);
    wb.Put("n" + name, value);
  }
  for (const auto& [p, c] : batch.checkpoints) {
    value.clear();
    put_u64_le(value, static_cast<uint64_t>(c.next_event_offset));
    put_u64_le(value, c.token);
    put_u64_le(value, c.last_event_id);
    put_u64_le(value, c.link);
    wb.Put(partition_key(p), value);
  }
  rocksdb::WriteOptions wo;
  wo.sync = false;
  auto s = db_->Write(wo, &wb);
  if (!s.ok()) return fail(store_error(s, "writing a checkpoint"));
  return {};
}

}  // namespace imlog
