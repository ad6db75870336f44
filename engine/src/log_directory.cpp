#include "imlog/engine/log_directory.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <shared_mutex>
#include <unordered_map>

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include "imlog/core/logging.h"
#include "imlog/core/worker.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/validity.h"

namespace imlog {
namespace {

// The snapshot file (little-endian numbers):
//
//   "IMLDIR01"  partitions u32
//   per partition: next offset i64, epoch token u64, link u64          (the EpochFilter's state)
//   users u64, then per user: id u64, exists u8, message_policy u8, allow_search u8
//   XXH64 of every byte before it, u64
constexpr char kMagic[8] = {'I', 'M', 'L', 'D', 'I', 'R', '0', '1'};

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  template <class T>
  bool get(T& v) {
    if (bytes_.size() - pos_ < sizeof v) return false;
    std::memcpy(&v, bytes_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return true;
  }
  [[nodiscard]] size_t left() const { return bytes_.size() - pos_; }

 private:
  std::string_view bytes_;
  size_t pos_ = 0;
};

// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a torn one.
Status write_atomically(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(std::errc::io_error, "cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  bool ok = done == bytes.size() && ::fdatasync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(std::errc::io_error, "cannot write " + path + ": " + std::strerror(errno));
  }
  return {};
}

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
      if (ev && filter.accept(r.partition, **ev)) apply(**ev);
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
      std::unique_lock lock(mu);
      users[reg->user_id()].exists = true;
    } else if (auto* set = e.event_as_SettingsUpdated()) {
      std::unique_lock lock(mu);
      UserFacts& f = users[set->user_id()];
      if (set->message_policy()) f.message_policy = *set->message_policy();
      if (set->allow_search()) f.allow_search = *set->allow_search();
    }
  }

  // ---- the snapshot: a cache of what was read, so a restart reads only what came after it ------

  [[nodiscard]] std::string encode() const {
    std::string out(kMagic, sizeof kMagic);
    put(out, static_cast<uint32_t>(next.size()));
    for (size_t p = 0; p < next.size(); ++p) {
      auto s = filter.state(static_cast<int32_t>(p));
      put(out, next[p]);
      put(out, s.token);
      put(out, s.link);
    }
    std::shared_lock lock(mu);
    put(out, static_cast<uint64_t>(users.size()));
    for (const auto& [id, f] : users) {
      put(out, id);
      put(out, static_cast<uint8_t>(f.exists));
      put(out, static_cast<uint8_t>(f.message_policy));
      put(out, static_cast<uint8_t>(f.allow_search));
    }
    put(out, static_cast<uint64_t>(XXH64(out.data(), out.size(), 0)));
    return out;
  }

  // On the thread that reads (start(), then the worker), so what it writes is one moment's state.
  void save() {
    saved_at = std::chrono::steady_clock::now();
    if (options.snapshot_path.empty() || unsaved == 0) return;
    if (auto s = write_atomically(options.snapshot_path, encode()); !s) {
      logger("engine")->warn("directory snapshot not written (the next start reads more of the log): {}",
                             s.error().to_string());
      return;
    }
    unsaved = 0;
  }

  // Restores a snapshot taken of this log, or leaves everything empty (read from offset 0): a
  // missing, damaged or foreign snapshot only costs a longer start.
  void load(const std::vector<int64_t>& ends) {
    if (options.snapshot_path.empty() || !std::filesystem::exists(options.snapshot_path)) return;
    std::ifstream in(options.snapshot_path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (auto why = decode(bytes, ends); !why.empty()) {
      logger("engine")->warn("directory snapshot {} not used ({}): reading im.events from offset 0",
                             options.snapshot_path, why);
      users.clear();
      filter = EpochFilter();
      next.assign(ends.size(), 0);
    }
  }

  // Empty when `bytes` was restored; else why not.
  std::string decode(const std::string& bytes, const std::vector<int64_t>& ends) {
    if (bytes.size() < sizeof kMagic + 8 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
      return "not a directory snapshot";
    }
    uint64_t sum = 0;
    std::memcpy(&sum, bytes.data() + bytes.size() - 8, 8);
    if (sum != XXH64(bytes.data(), bytes.size() - 8, 0)) return "checksum mismatch";
    Reader r(std::string_view(bytes).substr(sizeof kMagic, bytes.size() - sizeof kMagic - 8));
    uint32_t partitions = 0;
    if (!r.get(partitions) || partitions != ends.size()) return "taken of a log with another partition count";
    for (uint32_t p = 0; p < partitions; ++p) {
      EpochFilter::State s;
      if (!r.get(next[p]) || !r.get(s.token) || !r.get(s.link)) return "truncated";
      if (next[p] < 0 || next[p] > ends[p]) return "ahead of the log's end: taken of another log";
      filter.restore(static_cast<int32_t>(p), s);
    }
    uint64_t count = 0;
    if (!r.get(count) || r.left() != count * 11) return "truncated";
    users.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t id = 0;
      uint8_t exists = 0, policy = 0, search = 0;
      r.get(id), r.get(exists), r.get(policy), r.get(search);
      if (policy > static_cast<uint8_t>(fb::MessagePolicy::MAX)) return "an unknown message policy";
      users[id] = UserFacts{exists != 0, static_cast<fb::MessagePolicy>(policy), search != 0};
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
