#include "imlog/engine/log_directory.h"

#include <shared_mutex>
#include <algorithm>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/core/worker.h"
#include "imlog/engine/snapshot_file.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"

namespace imlog {
namespace {

// The snapshot's fields (snapshot_file.h): partitions u32; per partition the next offset i64, the
// epoch filter's token u64 and link u64; users u64, then per user id u64, exists u8,
// message_policy u8, allow_search u8, erased_at i64 (0: not erased). Version 02 added erased_at
// (schema 10); a version 01 snapshot is not used: the directory reads the log from offset 0.
constexpr std::string_view kMagic = "IMLDIR02";
constexpr size_t kUserBytes = 19;

}  // namespace

struct LogDirectory::State {
  State(EventLog& l, LogDirectoryOptions o) : log(l), options(std::move(o)) {}
  EventLog& log;
  const LogDirectoryOptions options;
  mutable std::shared_mutex mu;
  std::unordered_map<uint64_t, UserFacts> users;
  std::unique_ptr<Consumer> reader;
  EpochFilter filter;
  std::vector<int64_t> next;  // per partition: the offset after the last record read
  std::vector<Record> batch;
  uint64_t unsaved = 0;  // records read since the last snapshot
  uint64_t read_at_start = 0;
  std::chrono::steady_clock::time_point saved_at = std::chrono::steady_clock::now();
  Worker worker{"directory", [this] { return follow(); }};

  void consume(const std::vector<Record>& records) {
    for (const auto& r : records) {
      next[static_cast<size_t>(r.partition)] = r.offset + 1;
      auto ev = read_event(r.value);
      if (ev && filter.accept(r.partition, **ev) && !is_control_record((*ev)->event_type())) apply(**ev);
    }
    unsaved += records.size();
  }

  // One poll past the start-up read. A retryable error (the log away) is retried with back-off and
  // logged once, not once per spin. A corrupt record is not retryable: reading it again cannot
  // help, so the directory fails, named on /readyz, as a projector stops on one.
  Status follow() {
    auto polled = reader->poll(batch, std::chrono::milliseconds(200));
    if (!polled) return fail(polled.error().with_context("directory reading im.events"));
    consume(batch);
    if (std::chrono::steady_clock::now() - saved_at >= options.snapshot_every) save();
    return {};
  }

  void apply(const fb::EventEnvelope& e) {
    if (auto* reg = e.event_as_UserRegistered()) {
      // An erased user exists no more, whichever of their registration and their erasure was read
      // first (the two are on different partitions).
      std::unique_lock lock(mu);
      UserFacts& f = users[reg->user_id()];
      f.exists = f.erased_at_ms == 0;
    } else if (auto* gone = e.event_as_UserErased()) {
      std::unique_lock lock(mu);
      UserFacts& f = users[gone->user_id()];
      f.exists = false;
      f.erased_at_ms = std::max<int64_t>(1, e.timestamp_ms());
    } else if (auto* set = e.event_as_SettingsUpdated()) {
      std::unique_lock lock(mu);
      UserFacts& f = users[set->user_id()];
      if (set->message_policy()) f.message_policy = *set->message_policy();
      if (set->allow_search()) f.allow_search = *set->allow_search();
    }
  }

  // ---- the snapshot: a cache of what was read, so a restart reads only what came after it ------

  [[nodiscard]] SnapshotWriter encode() const {
    SnapshotWriter out(kMagic);
    out.put(static_cast<uint32_t>(next.size()));
    for (size_t p = 0; p < next.size(); ++p) {
      auto s = filter.state(static_cast<int32_t>(p));
      out.put(next[p]);
      out.put(s.token);
      out.put(s.link);
    }
    std::shared_lock lock(mu);
    out.put(static_cast<uint64_t>(users.size()));
    for (const auto& [id, f] : users) {
      out.put(id);
      out.put(static_cast<uint8_t>(f.exists));
      out.put(static_cast<uint8_t>(f.message_policy));
      out.put(static_cast<uint8_t>(f.allow_search));
      out.put(f.erased_at_ms);
    }
    return out;
  }

  // On the thread that reads (start(), then the worker), so what it writes is one moment's state.
  void save() {
    saved_at = std::chrono::steady_clock::now();
    if (options.snapshot_path.empty() || unsaved == 0) return;
    if (auto s = encode().write(options.snapshot_path); !s) {
      logger("engine")->warn("directory snapshot not written (the next start reads more of the log): {}",
                             s.error().to_string());
      return;
    }
    unsaved = 0;
  }

  // Restores a snapshot taken of this log, or leaves everything empty (read from offset 0): a
  // missing, damaged or foreign snapshot only costs a longer start.
  void load(const std::vector<int64_t>& ends) {
    if (options.snapshot_path.empty()) return;
    auto snapshot = SnapshotReader::open(options.snapshot_path, kMagic);
    if (!snapshot) return;
    std::string why = snapshot->problem().empty() ? restore(*snapshot, ends) : snapshot->problem();
    if (!why.empty()) {
      logger("engine")->warn("directory snapshot {} not used ({}): reading im.events from offset 0",
                             options.snapshot_path, why);
      users.clear();
      filter = EpochFilter();
      next.assign(ends.size(), 0);
    }
  }

  // Empty when the snapshot was restored; else why not.
  std::string restore(SnapshotReader& r, const std::vector<int64_t>& ends) {
    uint32_t partitions = 0;
    if (!r.get(partitions) || partitions != ends.size()) return "taken of a log with another partition count";
    for (uint32_t p = 0; p < partitions; ++p) {
      EpochFilter::State s;
      if (!r.get(next[p]) || !r.get(s.token) || !r.get(s.link)) return "truncated";
      if (next[p] < 0 || next[p] > ends[p]) return "ahead of the log's end: taken of another log";
      filter.restore(static_cast<int32_t>(p), s);
    }
    uint64_t count = 0;
    if (!r.get(count) || r.left() != count * kUserBytes) return "truncated";
    users.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t id = 0;
      uint8_t exists = 0, policy = 0, search = 0;
      int64_t erased_at = 0;
      r.get(id), r.get(exists), r.get(policy), r.get(search), r.get(erased_at);
      if (policy > static_cast<uint8_t>(fb::MessagePolicy::MAX)) return "an unknown message policy";
      users[id] = UserFacts{exists != 0, static_cast<fb::MessagePolicy>(policy), search != 0, erased_at};
    }
    return {};
  }
};

LogDirectory::LogDirectory(EventLog& log, LogDirectoryOptions options)
    : state_(std::make_unique<State>(log, std::move(options))) {}
LogDirectory::~LogDirectory() { stop(); }

Status LogDirectory::start() {
  auto& st = *state_;
  auto count = st.log.partition_count(kEventsTopic);
  IMLOG_TRY(count);
  std::vector<int64_t> ends;
  for (int32_t p = 0; p < *count; ++p) {
    auto end = st.log.end_offset(TopicPartition{std::string(kEventsTopic), p});
    IMLOG_TRY(end);
    ends.push_back(*end);
  }
  st.next.assign(ends.size(), 0);
  st.load(ends);
  std::vector<TopicPartitionOffset> from;
  for (int32_t p = 0; p < *count; ++p) from.push_back(TopicPartitionOffset{std::string(kEventsTopic), p, st.next[p]});
  ConsumerOptions opts;
  opts.max_batch = 4096;
  st.reader = st.log.consumer(opts);
  IMLOG_TRY(st.reader->assign(from));

  // Read to the ends seen above on this thread, then keep following on the worker's thread.
  auto behind = [&] {
    for (size_t p = 0; p < ends.size(); ++p) {
      if (st.next[p] < ends[p]) return true;
    }
    return false;
  };
  while (behind()) {
    auto polled = st.reader->poll(st.batch, std::chrono::milliseconds(1000));
    if (!polled) return fail(polled.error().with_context("directory catching up on im.events"));
    st.consume(st.batch);
    st.read_at_start += st.batch.size();
  }
  st.save();
  st.worker.on_wake([s = state_.get()] { s->reader->wakeup(); });
  st.worker.start();
  return {};
}

void LogDirectory::stop() {
  state_->worker.stop();
  if (state_->reader) state_->save();  // the worker has joined: this thread may read its state
}

UserFacts LogDirectory::user(uint64_t user_id) const {
  std::shared_lock lock(state_->mu);
  auto it = state_->users.find(user_id);
  return it == state_->users.end() ? UserFacts{} : it->second;
}

uint64_t LogDirectory::read_at_start() const { return state_->read_at_start; }

size_t LogDirectory::size() const {
  std::shared_lock lock(state_->mu);
  return state_->users.size();
}

}  // namespace imlog
