// The child of the LocalLog crash test (local_log_test.cpp, LocalLogCrash): appends to a LocalLog
// as fast as it can until it is killed with SIGKILL, and reports every acknowledged record on
// stdout as "A <topic index> <partition> <offset> <fnv1a64 of the value, hex>".
//
// Usage: local_log_crash_child DIR [trim]
//
// With `trim`, the durable topic is trimmed every few milliseconds (keeping 16 records below the
// commit), and a third thread commits, for group "g", each partition of it up to what was
// acknowledged, printing "C <partition> <offset>" once each commit returned.
//
// Two producer threads, one per topic (index 0 is durable, 1 is not), pipeline batches of 1–32
// records to explicit partitions. Each thread is the only writer of its topic and the log assigns
// offsets in queue order, so the thread knows each record's offset before it is written, and the
// value is a pure function of (topic, partition, offset): crash_payload() below, mirrored in the
// test. A callback that reports other offsets, or any error, prints "E <why>" and exits 3.

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "imlog/engine/local_log.h"

namespace {

// Keep in sync with local_log_test.cpp.
constexpr const char* kTopics[2] = {"crash.durable", "crash.fast"};
constexpr int32_t kPartitions = 2;

uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string crash_payload(int topic, int32_t partition, int64_t offset) {
  uint64_t h = mix((static_cast<uint64_t>(topic) << 56) ^ (static_cast<uint64_t>(partition) << 48) ^
                   static_cast<uint64_t>(offset));
  std::string v = "t" + std::to_string(topic) + "p" + std::to_string(partition) + "o" +
                  std::to_string(offset) + "|";
  const size_t len = 8 + h % 240;
  for (size_t i = 0; i < len; ++i) {
    h = mix(h);
    v.push_back(static_cast<char>('a' + h % 26));
  }
  return v;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

[[noreturn]] void die(const std::string& why) {
  std::string line = "E " + why + "\n";
  (void)!::write(STDOUT_FILENO, line.data(), line.size());
  std::_Exit(3);
}

// Per partition of the durable topic: one past its highest acknowledged offset.
std::array<std::atomic<int64_t>, kPartitions> durable_acked{};

void produce(imlog::LocalLog& log, int topic) {
  std::vector<int64_t> next(kPartitions);
  for (int32_t p = 0; p < kPartitions; ++p) {
    auto end = log.end_offset({kTopics[topic], p});
    if (!end) die(end.error().to_string());
    next[static_cast<size_t>(p)] = *end;
  }
  std::mt19937_64 rng(std::random_device{}());
  while (true) {
    const auto p = static_cast<int32_t>(rng() % kPartitions);
    const auto n = static_cast<int64_t>(1 + rng() % 32);
    const int64_t first = next[static_cast<size_t>(p)];
    next[static_cast<size_t>(p)] += n;
    std::vector<imlog::OutRecord> records;
    records.reserve(static_cast<size_t>(n));
    for (int64_t o = first; o < first + n; ++o) {
      records.push_back({"k" + std::to_string(o), crash_payload(topic, p, o), p});
    }
    // Lines are written with one write() of at most 32 * ~45 bytes (< PIPE_BUF), so a kill
    // never leaves half a line that claims an acknowledgement.
    log.append(kTopics[topic], std::move(records),
               [topic, p, first, n](imlog::Result<std::vector<imlog::RecordPosition>> r) {
                 if (!r) die(r.error().to_string());
                 if (r->size() != static_cast<size_t>(n)) die("wrong number of positions");
                 if (topic == 0) durable_acked[static_cast<size_t>(p)].store(first + n);
                 std::string lines;
                 for (int64_t i = 0; i < n; ++i) {
                   const auto& pos = (*r)[static_cast<size_t>(i)];
                   if (pos.partition != p || pos.offset != first + i) {
                     die("record expected at " + std::to_string(p) + "/" +
                         std::to_string(first + i) + " landed at " +
                         std::to_string(pos.partition) + "/" + std::to_string(pos.offset));
                   }
                   char line[96];
                   std::snprintf(line, sizeof line, "A %d %d %" PRId64 " %016" PRIx64 "\n", topic,
                                 p, first + i, fnv1a(crash_payload(topic, p, first + i)));
                   lines += line;
                 }
                 if (::write(STDOUT_FILENO, lines.data(), lines.size()) !=
                     static_cast<ssize_t>(lines.size())) {
                   std::_Exit(4);  // the test closed the pipe
                 }
               });
  }
}

void commit_acknowledged(imlog::LocalLog& log) {
  imlog::ConsumerOptions o;
  o.group = "g";
  auto consumer = log.consumer(o);
  // Commits only move forward: what this run acknowledged starts below the last run's commits.
  std::array<int64_t, kPartitions> last{};
  for (int32_t p = 0; p < kPartitions; ++p) {
    auto c = consumer->committed({kTopics[0], p});
    if (!c) die(c.error().to_string());
    last[static_cast<size_t>(p)] = c->value_or(0);
  }
  while (true) {
    for (int32_t p = 0; p < kPartitions; ++p) {
      const int64_t at = durable_acked[static_cast<size_t>(p)].load();
      if (at <= last[static_cast<size_t>(p)]) continue;
      last[static_cast<size_t>(p)] = at;
      auto r = consumer->commit({{kTopics[0], p, at}});
      if (!r) die(r.error().to_string());
      char line[64];
      const int n = std::snprintf(line, sizeof line, "C %d %" PRId64 "\n", p, at);
      if (::write(STDOUT_FILENO, line, static_cast<size_t>(n)) != n) std::_Exit(4);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool trim = argc == 3 && std::string(argv[2]) == "trim";
  if (argc != 2 && !trim) {
    std::fprintf(stderr, "usage: %s DIR [trim]\n", argv[0]);
    return 2;
  }
  imlog::LocalLogConfig config;
  config.dir = argv[1];
  config.trimmed_topics = {};
  if (trim) {
    config.trimmed_topics = {kTopics[0]};
    config.trim_keep_records = 16;
    config.trim_interval = std::chrono::milliseconds(2);
  }
  config.max_pending_bytes = 256 << 10;  // keep appends blocking, so kills land mid-write
  auto log = imlog::LocalLog::open(config);
  if (!log) die(log.error().to_string());
  for (int t = 0; t < 2; ++t) {
    auto created = (*log)->create_topic({kTopics[t], kPartitions, /*durable=*/t == 0});
    if (!created) die(created.error().to_string());
  }
  std::thread durable([&] { produce(**log, 0); });
  if (trim) std::thread([&] { commit_acknowledged(**log); }).detach();
  produce(**log, 1);  // never returns: the test kills the process
}
