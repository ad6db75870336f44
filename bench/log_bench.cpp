// imlog-bench-log: appends/s and consumed/s of the event log backends (issue: "a log benchmark:
// both backends, 100-byte payloads, batches of 1, 64 and 1024").
//
//   imlog-bench-log [--backend local|kafka|both] [--records N] [--batch 1,64,1024]
//                   [--payload 100] [--partitions 4] [--window N] [--dir DIR]
//
// Appends: one thread issues append() calls of `batch` records each, keeping up to `window`
// records unacknowledged (the callbacks count down), so small batches are combined by the
// backend's own batching (group commit for LocalLog, linger for Kafka). The time runs from the
// first append to the last acknowledgement: for LocalLog every acknowledged record is fsynced.
// Consume: one consumer reads every partition from offset 0 to the end.
//
// Kafka runs against the mock broker (tests/kafka_mock) that this program starts, or the one
// named by IMLOG_KAFKA_MOCK_DIR.

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include <CLI/CLI.hpp>

#include "imlog/engine/kafka_log.h"
#include "imlog/engine/local_log.h"
#include "imlog/testing/kafka_mock.h"
#include "imlog/testing/support.h"

namespace {

using Clock = std::chrono::steady_clock;
using namespace imlog;

struct Case {
  std::string backend;
  int batch = 1;
  int64_t records = 0;
  double append_per_s = 0;
  double consume_per_s = 0;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Appends `records` records in batches; returns records/s, or a negative value on failure.
double run_appends(EventLog& log, const std::string& topic, int64_t records, int batch, int payload,
                   int64_t window) {
  std::mutex mu;
  std::condition_variable cv;
  int64_t outstanding = 0;
  bool failed = false;
  std::string value(static_cast<size_t>(payload), 'x');
  auto start = Clock::now();
  for (int64_t sent = 0; sent < records;) {
    int n = static_cast<int>(std::min<int64_t>(batch, records - sent));
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return outstanding + n <= window || failed; });
      if (failed) return -1;
      outstanding += n;
    }
    std::vector<OutRecord> out;
    out.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) out.push_back(OutRecord{"key-" + std::to_string((sent + i) % 1000), value});
    log.append(topic, std::move(out), [&, n](Result<std::vector<RecordPosition>> r) {
      std::lock_guard lock(mu);
      if (!r) {
        std::fprintf(stderr, "append failed: %s\n", r.error().to_string().c_str());
        failed = true;
      }
      outstanding -= n;
      cv.notify_all();
    });
    sent += n;
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return outstanding == 0; });
  if (failed) return -1;
  return static_cast<double>(records) / seconds_since(start);
}

double run_consume(EventLog& log, const std::string& topic, int partitions, int64_t records) {
  ConsumerOptions opts;
  opts.max_batch = 4096;
  auto consumer = log.consumer(opts);
  std::vector<TopicPartitionOffset> from;
  for (int p = 0; p < partitions; ++p) from.push_back(TopicPartitionOffset{topic, p, 0});
  if (!consumer->assign(from)) return -1;
  std::vector<Record> batch;
  int64_t seen = 0;
  auto start = Clock::now();
  while (seen < records) {
    auto r = consumer->poll(batch, std::chrono::seconds(10));
    if (!r) {
      std::fprintf(stderr, "poll failed: %s\n", r.error().to_string().c_str());
      return -1;
    }
    if (batch.empty()) {
      std::fprintf(stderr, "consumer stalled at %lld of %lld\n", static_cast<long long>(seen),
                   static_cast<long long>(records));
      return -1;
    }
    seen += static_cast<int64_t>(batch.size());
  }
  return static_cast<double>(seen) / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imlog event log benchmark"};
  std::string backend = "both";
  int64_t records = 1'000'000;
  std::vector<int> batches = {1, 64, 1024};
  int payload = 100;
  int partitions = 4;
  int64_t window = 200'000;
  int64_t kafka_records = 300'000;
  std::string dir;
  app.add_option("--backend", backend, "local, kafka or both")->check(CLI::IsMember({"local", "kafka", "both"}));
  app.add_option("--records", records, "records per LocalLog case");
  app.add_option("--kafka-records", kafka_records, "records per Kafka case (the mock keeps ~5 MiB a partition)");
  app.add_option("--batch", batches, "records per append() call")->delimiter(',');
  app.add_option("--payload", payload, "bytes per record value");
  app.add_option("--partitions", partitions, "partitions of the topic");
  app.add_option("--window", window, "records in flight at most");
  app.add_option("--dir", dir, "LocalLog directory (default: a fresh temporary one)");
  CLI11_PARSE(app, argc, argv);

  std::vector<Case> results;
  auto record = [&](Case c) {
    std::printf("%-6s batch %5d  %9lld records  append %10.0f/s  consume %10.0f/s\n", c.backend.c_str(),
                c.batch, static_cast<long long>(c.records), c.append_per_s, c.consume_per_s);
    std::printf("RESULT {\"bench\":\"log\",\"backend\":\"%s\",\"batch\":%d,\"records\":%lld,\"payload\":%d,"
                "\"append_per_s\":%.0f,\"consume_per_s\":%.0f}\n",
                c.backend.c_str(), c.batch, static_cast<long long>(c.records), payload, c.append_per_s,
                c.consume_per_s);
    std::fflush(stdout);
    results.push_back(c);
  };

  if (backend == "local" || backend == "both") {
    for (int batch : batches) {
      imlog::testing::TempDir tmp("imlog-bench-log");
      LocalLogConfig cfg;
      cfg.dir = dir.empty() ? tmp.str() : dir + "/batch-" + std::to_string(batch);
      auto log = LocalLog::open(cfg);
      if (!log) return std::fprintf(stderr, "%s\n", log.error().to_string().c_str()), 1;
      if (auto s = (*log)->create_topic(TopicSpec{"bench", partitions, true}); !s) return 1;
      Case c{"local", batch, records};
      c.append_per_s = run_appends(**log, "bench", records, batch, payload, window);
      c.consume_per_s = run_consume(**log, "bench", partitions, records);
      if (c.append_per_s < 0 || c.consume_per_s < 0) return 1;
      record(c);
    }
  }
  if (backend == "kafka" || backend == "both") {
    auto& mock = imlog::testing::KafkaMock::shared();
    for (int batch : batches) {
      std::string topic = imlog::testing::KafkaMock::unique_name("bench");
      mock.create_topic(topic, partitions);
      auto log = KafkaLog::open(mock.log_config());
      if (!log) return std::fprintf(stderr, "%s\n", log.error().to_string().c_str()), 1;
      if (auto s = (*log)->create_topic(TopicSpec{topic, partitions, true}); !s) {
        return std::fprintf(stderr, "%s\n", s.error().to_string().c_str()), 1;
      }
      Case c{"kafka", batch, kafka_records};
      c.append_per_s = run_appends(**log, topic, kafka_records, batch, payload, window);
      c.consume_per_s = run_consume(**log, topic, partitions, kafka_records);
      if (c.append_per_s < 0 || c.consume_per_s < 0) return 1;
      record(c);
    }
  }
  return 0;
}
