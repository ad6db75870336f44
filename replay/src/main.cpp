// replay: rebuild one read model from im.events into a fresh target, and compare it with the live
// one (docs/architecture.md, "Replay").
//
//   replay --projection rocksdb|mysql|redis [--config FILE] [--data-dir DIR] [--target T]
//          [--to-offset N] [--verify] [--from-scratch] [--batch N] [--checkpoint-every N]
//
// Targets: rocksdb → a directory (default <data_dir>/model.replay); mysql → a database (default
// `<database>_replay`); redis → a key prefix (default `replay:`). The live models: rocksdb →
// model.dir (default <data_dir>/model); mysql → the configured database; redis → the configured
// prefix. The target keeps its positions, so running the same command again after an
// interruption resumes where it stopped; --from-scratch empties the target first.
//
// The embedded log is a RocksDB database that one process opens at a time: replay from it runs
// while the server is stopped (against Kafka, any time).
//
// Exit status: 0 done (and, with --verify, equal); 1 an error; 2 bad arguments or config;
// 3 --verify found a difference; 130 interrupted (resume by running it again).

#include <signal.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>

#include "imlog/core/config.h"
#include "imlog/core/logging.h"
#include "imlog/engine/kafka_log.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/mysql_model.h"
#include "imlog/projections/projector.h"
#include "imlog/projections/redis_model.h"
#include "imlog/projections/rocksdb_model.h"
#include "key_store.h"
#include "server_config.h"

namespace imlog {
namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitDifferent = 3;
constexpr int kExitInterrupted = 130;

using SteadyClock = std::chrono::steady_clock;

struct Options {
  std::string projection;
  std::string config_path;
  std::string data_dir;
  std::string target;
  int64_t to_offset = -1;
  bool verify = false;
  bool from_scratch = false;
  // Large batches: the search index is written as one block per token per batch, so fewer,
  // larger batches write fewer rows.
  uint64_t batch = 65536;
  uint64_t checkpoint_every = 1'000'000;
};

// An error for a person: the message alone when the code says nothing more ("generic").
std::string describe(const Error& e) {
  return e.code().category() == std::generic_category() ? e.message() : e.to_string();
}

int fail_with(int code, const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "replay: %s\n", what.c_str());
  return code;
}

// ---- the event log ----------------------------------------------------------------------------

Result<std::unique_ptr<EventLog>> open_log(const EventLogSettings& s) {
  if (s.backend == "kafka") {
    auto log = KafkaLog::open(s.kafka);
    IMLOG_TRY(log);
    return std::unique_ptr<EventLog>(std::move(*log));
  }
  if (!std::filesystem::exists(std::filesystem::path(s.local.dir) / "CURRENT")) {
    return fail(LogErrc::unknown_topic, "there is no embedded event log at " + s.local.dir +
                                            ": check --data-dir / event_log.local.dir");
  }
  auto log = LocalLog::open(s.local);
  if (!log) {
    if (log.error().message().find("lock") != std::string::npos) {
      return fail(log.error().with_context("the event log at " + s.local.dir +
                                           " is in use by another process (a running imlog server?); the embedded "
                                           "log is opened by one process at a time: stop the server, then replay"));
    }
    return tl::unexpected(log.error());
  }
  return std::unique_ptr<EventLog>(std::move(*log));
}

// ---- sinks ------------------------------------------------------------------------------------

// One read model, opened as the rebuilt target or as the live model.
struct Model {
  std::unique_ptr<ProjectionSink> sink;
  RocksDbModel* rocksdb = nullptr;  // set for the rocksdb projection (flush after WAL-less writes)
  std::string where;                // "directory /x", "database imlog_replay", "prefix replay:"
};

Result<Model> open_model(const Options& o, const ServerConfig& c, bool live) {
  Model m;
  if (o.projection == "rocksdb") {
    RocksDbModelConfig rc = c.model;
    if (!live) {
      rc.dir = o.target.empty() ? c.data_dir + "/model.replay" : o.target;
      auto target = std::filesystem::weakly_canonical(rc.dir);
      if (target == std::filesystem::weakly_canonical(c.model.dir)) {
        return fail(std::errc::invalid_argument, "the target " + rc.dir + " is the live model: choose another --target");
      }
      if (target == std::filesystem::weakly_canonical(c.data_dir + "/keys")) {
        return fail(std::errc::invalid_argument, "the target " + rc.dir + " is the key store, without which no " +
                                                     "message can be read: choose another --target");
      }
      rc.disable_wal = true;  // a crash costs at most the work since the last checkpoint
      rc.bulk_load = true;    // nobody reads the target while it is built
      if (o.from_scratch) std::filesystem::remove_all(rc.dir);
    } else if (!std::filesystem::exists(std::filesystem::path(rc.dir) / "CURRENT")) {
      return fail(std::errc::no_such_file_or_directory, "there is no live RocksDB model at " + rc.dir + " to verify against");
    }
    auto r = open_rocksdb_model(rc);
    IMLOG_TRY(r);
    m.rocksdb = r->get();
    m.sink = std::move(*r);
    m.where = "directory " + rc.dir;
    return m;
  }
  if (o.projection == "mysql") {
    if (!c.mysql) return fail(std::errc::invalid_argument, "the config has no `mysql` section: there is no MySQL model");
    MysqlConfig mc = *c.mysql;
    if (!live) {
      mc.database = o.target.empty() ? c.mysql->database + "_replay" : o.target;
      if (mc.database == c.mysql->database) {
        return fail(std::errc::invalid_argument, "the target database `" + mc.database + "` is the live one: choose another --target");
      }
      if (mc.database == c.mysql->keys_database) {
        return fail(std::errc::invalid_argument, "the target database `" + mc.database + "` holds the data keys " +
                                                     "(mysql.keys_database), without which no message can be read: " +
                                                     "choose another --target");
      }
      if (o.from_scratch) {
        auto old = open_mysql_model(mc);
        IMLOG_TRY(old);
        IMLOG_TRY((*old)->drop());
      }
    }
    auto r = open_mysql_model(mc);
    IMLOG_TRY(r);
    m.sink = std::move(*r);
    m.where = "database " + mc.database;
    return m;
  }
  if (!c.redis) return fail(std::errc::invalid_argument, "the config has no `redis` section: there is no Redis model");
  RedisConfig rc = *c.redis;
  if (!live) {
    rc.key_prefix = o.target.empty() ? "replay:" : o.target;
    if (rc.key_prefix == c.redis->key_prefix) {
      return fail(std::errc::invalid_argument, "the target prefix `" + rc.key_prefix + "` is the live one: choose another --target");
    }
    if (o.from_scratch) {
      auto old = open_redis_model(rc);
      IMLOG_TRY(old);
      IMLOG_TRY((*old)->drop());
    }
  }
  auto r = open_redis_model(rc);
  IMLOG_TRY(r);
  m.sink = std::move(*r);
  m.where = "key prefix " + (rc.key_prefix.empty() ? std::string("(none)") : rc.key_prefix);
  return m;
}

// ---- progress ---------------------------------------------------------------------------------

std::string duration_text(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "?";
  auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

// Shows progress: one carriage-return line on a terminal, plain lines (every few seconds)
// otherwise, so a log file or a test reads whole lines.
class ProgressDisplay {
 public:
  ProgressDisplay(std::string name, int64_t before, int64_t total)
      : name_(std::move(name)), before_(before), total_(total), tty_(::isatty(STDOUT_FILENO) == 1),
        start_(SteadyClock::now()), last_(start_) {}

  void update(int64_t consumed, bool final) {
    auto now = SteadyClock::now();
    auto interval = tty_ ? std::chrono::milliseconds(200) : std::chrono::milliseconds(2000);
    if (!final && now - last_ < interval) return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? static_cast<double>(consumed) / secs : 0;
    int64_t done = before_ + consumed;
    double pct = total_ > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total_) : 100.0;
    double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : -1;
    char line[256];
    std::snprintf(line, sizeof line, "replay %s: %lld/%lld events (%.1f%%), %.0f events/s, ETA %s", name_.c_str(),
                  static_cast<long long>(done), static_cast<long long>(total_), pct, rate, duration_text(eta).c_str());
    if (tty_) {
      std::printf("\r%-100s", line);
      if (final) std::printf("\n");
    } else {
      std::printf("%s\n", line);
    }
    std::fflush(stdout);
  }

  // A whole line between progress updates.
  void note(const std::string& text) {
    if (tty_) std::printf("\r%-100s\r", "");
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
  }

 private:
  std::string name_;
  int64_t before_, total_;
  bool tty_;
  SteadyClock::time_point start_, last_;
};

// ---- interruption -----------------------------------------------------------------------------

// Waits for SIGINT/SIGTERM (blocked in every thread by main) and stops the projector.
class SignalWatch {
 public:
  explicit SignalWatch(sigset_t set) : set_(set) {
    thread_ = std::thread([this] {
      timespec tick{0, 100'000'000};
      while (!done_.load()) {
        int sig = sigtimedwait(&set_, nullptr, &tick);
        if (sig == SIGINT || sig == SIGTERM) {
          interrupted_ = true;
          std::lock_guard lk(mu_);
          if (projector_ != nullptr) projector_->stop();
        }
      }
    });
  }
  ~SignalWatch() {
    done_ = true;
    thread_.join();
  }
  void watch(Projector* p) {
    std::lock_guard lk(mu_);
    projector_ = p;
    if (p != nullptr && interrupted_) p->stop();
  }
  [[nodiscard]] bool interrupted() const { return interrupted_.load(); }

 private:
  sigset_t set_;
  std::atomic<bool> done_{false}, interrupted_{false};
  std::mutex mu_;
  Projector* projector_ = nullptr;
  std::thread thread_;
};

// ---- verify -----------------------------------------------------------------------------------

using Row = std::pair<std::string, std::string>;

// The live model's rows, produced by a thread into a bounded queue of chunks, so two dumps are
// walked side by side without holding either in memory.
class RowStream {
 public:
  explicit RowStream(ProjectionSink& sink) {
    thread_ = std::thread([this, &sink] {
      std::vector<Row> chunk;
      auto s = sink.dump([&](std::string_view k, std::string_view v) {
        chunk.emplace_back(std::string(k), std::string(v));
        if (chunk.size() >= 1024) {
          push(std::move(chunk));
          chunk.clear();
        }
        return !cancelled_.load();
      });
      if (!chunk.empty()) push(std::move(chunk));
      std::lock_guard lk(mu_);
      if (!s) error_ = s.error();
      done_ = true;
      cv_.notify_all();
    });
  }
  ~RowStream() {
    cancel();
    thread_.join();
  }
  // The next row, or nullopt at the end.
  std::optional<Row> next() {
    while (at_ >= current_.size()) {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return !chunks_.empty() || done_; });
      if (chunks_.empty()) return std::nullopt;
      current_ = std::move(chunks_.front());
      chunks_.pop_front();
      at_ = 0;
      cv_.notify_all();
    }
    return std::move(current_[at_++]);
  }
  void cancel() {
    cancelled_ = true;
    std::lock_guard lk(mu_);
    cv_.notify_all();
  }
  std::optional<Error> error() {
    std::lock_guard lk(mu_);
    return error_;
  }

 private:
  void push(std::vector<Row> chunk) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return chunks_.size() < 8 || cancelled_.load(); });
    chunks_.push_back(std::move(chunk));
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::vector<Row>> chunks_;
  bool done_ = false;
  std::atomic<bool> cancelled_{false};
  std::optional<Error> error_;
  std::vector<Row> current_;
  size_t at_ = 0;
  std::thread thread_;
};

class Digest {
 public:
  Digest() : state_(XXH64_createState()) { XXH64_reset(state_, 0); }
  ~Digest() { XXH64_freeState(state_); }
  void add(std::string_view key, std::string_view value) {
    for (std::string_view part : {key, value}) {
      uint64_t n = part.size();
      XXH64_update(state_, &n, sizeof n);
      XXH64_update(state_, part.data(), part.size());
    }
  }
  [[nodiscard]] std::string hex() const {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH64_digest(state_)));
    return buf;
  }

 private:
  XXH64_state_t* state_;
};

std::string abbreviated(std::string_view s) {
  constexpr size_t kMax = 160;
  std::string out;
  for (char c : s.substr(0, kMax)) out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  if (s.size() > kMax) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string positions_text(const std::vector<PartitionPosition>& ps) {
  std::vector<PartitionPosition> sorted = ps;
  std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.partition < b.partition; });
  std::string out = "[";
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(sorted[i].partition) + ":" + std::to_string(sorted[i].next_offset);
  }
  return out + "]";
}

// Compares the two models row by row. Returns the exit status.
int verify(ProjectionSink& live, const std::string& live_where, ProjectionSink& rebuilt) {
  auto lp = live.positions();
  auto rp = rebuilt.positions();
  if (!lp) return fail_with(kExitError, "reading the live model's positions: " + lp.error().to_string());
  if (!rp) return fail_with(kExitError, "reading the rebuilt model's positions: " + rp.error().to_string());
  auto sorted = [](std::vector<PartitionPosition> v) {
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.partition < b.partition; });
    return v;
  };
  if (sorted(*lp) != sorted(*rp)) {
    std::printf("verify: note: the live model (%s) is at offsets %s, the rebuilt one at %s; rows may differ for that "
                "reason alone\n",
                live_where.c_str(), positions_text(*lp).c_str(), positions_text(*rp).c_str());
  }
  RowStream live_rows(live);
  Digest live_digest, rebuilt_digest;
  uint64_t row = 0;
  std::string difference;
  auto report = [&](const std::string& what) {
    difference = "verify: DIFFERENT: first differing row #" + std::to_string(row) + ": " + what;
    return false;
  };
  auto s = rebuilt.dump([&](std::string_view key, std::string_view value) {
    ++row;
    auto l = live_rows.next();
    if (!l) return report("key `" + abbreviated(key) + "` is only in the rebuilt model: rebuilt `" + abbreviated(value) + "`");
    if (l->first < key) {
      return report("key `" + abbreviated(l->first) + "` is only in the live model: live `" + abbreviated(l->second) +
                    "`");
    }
    if (l->first > key) {
      return report("key `" + abbreviated(key) + "` is only in the rebuilt model: rebuilt `" + abbreviated(value) + "`");
    }
    if (l->second != value) {
      return report("key `" + abbreviated(key) + "`: live `" + abbreviated(l->second) + "` vs rebuilt `" +
                    abbreviated(value) + "`");
    }
    live_digest.add(l->first, l->second);
    rebuilt_digest.add(key, value);
    return true;
  });
  if (!s) return fail_with(kExitError, "dumping the rebuilt model: " + s.error().to_string());
  if (difference.empty()) {
    if (auto extra = live_rows.next()) {
      ++row;
      report("key `" + abbreviated(extra->first) + "` is only in the live model: live `" + abbreviated(extra->second) +
             "`");
    }
  }
  live_rows.cancel();
  if (auto e = live_rows.error()) return fail_with(kExitError, "dumping the live model: " + e->to_string());
  if (!difference.empty()) {
    std::printf("%s\n", difference.c_str());
    std::fflush(stdout);
    return kExitDifferent;
  }
  std::printf("verify: equal: %llu rows, digest xxh64 live %s = rebuilt %s\n", static_cast<unsigned long long>(row),
              live_digest.hex().c_str(), rebuilt_digest.hex().c_str());
  std::fflush(stdout);
  return 0;
}

// ---- main -------------------------------------------------------------------------------------

int run(const Options& o, const ServerConfig& config, SignalWatch& signals) {
  auto log = open_log(config.event_log);
  if (!log) return fail_with(kExitError, describe(log.error()));
  auto partitions = (*log)->partition_count(kEventsTopic);
  if (!partitions) {
    return fail_with(kExitError, (*log)->describe() + " has no readable " + std::string(kEventsTopic) + ": " +
                                     partitions.error().to_string());
  }
  std::vector<int64_t> ends;
  int64_t total = 0;
  for (int32_t p = 0; p < *partitions; ++p) {
    auto e = (*log)->end_offset({std::string(kEventsTopic), p});
    if (!e) return fail_with(kExitError, e.error().to_string());
    ends.push_back(o.to_offset >= 0 ? std::min(*e, o.to_offset) : *e);
    total += ends.back();
  }

  // The data keys the messages' text is sealed with: a replay opens what the server sealed.
  auto keys = open_key_store(config);
  if (!keys) return fail_with(kExitError, describe(keys.error()));
  auto target = open_model(o, config, /*live=*/false);
  if (!target) return fail_with(kExitError, describe(target.error()));
  auto positions = target->sink->positions();
  if (!positions) return fail_with(kExitError, describe(positions.error()));
  int64_t before = 0;
  for (const auto& p : *positions) {
    if (p.partition >= 0 && p.partition < *partitions) before += std::min(p.next_offset, ends[static_cast<size_t>(p.partition)]);
  }
  ProgressDisplay display(o.projection, before, total);
  display.note("replay " + o.projection + ": " + (*log)->describe() + " → " + target->where + ", " +
               std::to_string(total) + " events in " + std::to_string(*partitions) + " partitions; " +
               (before > 0 ? "resuming at " + std::to_string(before) : std::string("starting at 0")));

  Projector projector(**log, *target->sink, ProjectorConfig{o.batch, keys->get()});
  signals.watch(&projector);
  int64_t since_checkpoint = 0, last_consumed = 0;
  std::optional<Error> checkpoint_error;
  auto start = SteadyClock::now();
  auto ran = projector.run_until(ends, [&](const ProjectorProgress& p) {
    since_checkpoint += p.consumed - last_consumed;
    last_consumed = p.consumed;
    if (target->rocksdb != nullptr && since_checkpoint >= static_cast<int64_t>(o.checkpoint_every)) {
      // The target is written without a WAL: make what is done durable, positions with it.
      if (auto f = target->rocksdb->flush(); !f) {
        checkpoint_error = f.error();
        projector.stop();
      }
      since_checkpoint = 0;
      display.note("checkpoint: " + std::to_string(before + p.consumed) + " events durable");
    }
    display.update(p.consumed, false);
  });
  signals.watch(nullptr);
  if (target->rocksdb != nullptr) {
    if (auto f = target->rocksdb->flush(); !f && !checkpoint_error) checkpoint_error = f.error();
  }
  // Until the target is durable: the final flush is part of the rebuild.
  double secs = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (checkpoint_error) return fail_with(kExitError, "checkpointing the target: " + checkpoint_error->to_string());
  if (!ran) {
    if (signals.interrupted()) {
      display.note("replay: interrupted at " + std::to_string(before + last_consumed) + " of " + std::to_string(total) +
                   " events; run the same command again to resume");
      return kExitInterrupted;
    }
    return fail_with(kExitError, describe(ran.error()));
  }
  display.update(last_consumed, true);
  char summary[256];
  std::snprintf(summary, sizeof summary, "replay %s: done: %lld events read, %llu applied, in %.2f s: %.0f events/s",
                o.projection.c_str(), static_cast<long long>(last_consumed),
                static_cast<unsigned long long>(projector.applied()), secs,
                secs > 0 ? static_cast<double>(last_consumed) / secs : 0.0);
  display.note(summary);

  if (!o.verify) return 0;
  auto live = open_model(o, config, /*live=*/true);
  if (!live) return fail_with(kExitError, describe(live.error()));
  display.note("verify: comparing the live model (" + live->where + ") with the rebuilt one (" + target->where + ")");
  return verify(*live->sink, live->where, *target->sink);
}

}  // namespace
}  // namespace imlog

int main(int argc, char** argv) {
  imlog::Options o;
  CLI::App app{
      "replay: rebuild one read model from the event log (im.events) into a fresh target and, with --verify, "
      "compare it row by row with the live model.\n"
      "The embedded log is a RocksDB database one process opens at a time: replay from it while the server is "
      "stopped (a Kafka log can be replayed any time). The target keeps its positions: run the same command again "
      "to resume after an interruption."};
  app.add_option("--projection", o.projection, "the read model to rebuild")
      ->required()
      ->check(CLI::IsMember({"rocksdb", "mysql", "redis"}));
  app.add_option("--config", o.config_path, "the server's YAML config (default: built-in defaults)");
  app.add_option("--data-dir", o.data_dir, "root of local data (default ./data, or the config's data_dir)");
  app.add_option("--target", o.target,
                 "where to build: rocksdb a directory (default <data_dir>/model.replay), mysql a database (default "
                 "<database>_replay), redis a key prefix (default replay:)");
  app.add_option("--to-offset", o.to_offset, "stop before this offset in every partition (default: the log's end)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--verify", o.verify, "compare the rebuilt model with the live one; exit 3 naming the first difference");
  app.add_flag("--from-scratch", o.from_scratch, "empty the target first instead of resuming");
  app.add_option("--batch", o.batch, "events per batch (default 65536)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--checkpoint-every", o.checkpoint_every,
                 "rocksdb: make the target durable every this many events (default 1000000)")
      ->check(CLI::Range(1, 1 << 30));
  CLI11_PARSE(app, argc, argv);

  // Signals go to the watcher thread only: block them before any thread starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  imlog::ServerConfig config;
  try {
    config = imlog::load_server_config(o.config_path, o.data_dir);
    imlog::setup_logging(config.log);
  } catch (const std::exception& e) {
    return imlog::fail_with(imlog::kExitUsage, e.what());
  }
  imlog::SignalWatch signals(set);
  return imlog::run(o, config, signals);
}
