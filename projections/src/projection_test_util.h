#pragma once
// What the projections' unit tests share: an embedded log in a temporary directory with an
// EventLogBuilder on it, a RocksDB model beside it, projecting to the log's end, and a model's
// rows as a vector. Test-only; not thread-safe.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "imlog/engine/local_log.h"
#include "imlog/projections/projector.h"
#include "imlog/projections/rocksdb_model.h"
#include "imlog/testing/event_log_builder.h"
#include "imlog/testing/support.h"

namespace imlog::testing {

#define IMLOG_ASSERT_OK(expr)                                          \
  do {                                                                 \
    auto&& imlog_ok_ = (expr);                                         \
    ASSERT_TRUE(imlog_ok_) << #expr << ": " << imlog_ok_.error().to_string(); \
  } while (0)

using Rows = std::vector<std::pair<std::string, std::string>>;

// The history ranges the tests read, named by what they mean.
inline HistoryRange latest(uint32_t limit) { return HistoryRange{0, 0, false, limit}; }
inline HistoryRange page_before(uint64_t before_seq, uint32_t limit) {
  return HistoryRange{0, before_seq, false, limit};
}
inline HistoryRange page_after(uint64_t after_seq, uint32_t limit, uint64_t before_seq = 0) {
  return HistoryRange{after_seq, before_seq, true, limit};
}

inline Rows rows_of(ProjectionSink& sink) {
  Rows rows;
  auto s = sink.dump([&](std::string_view k, std::string_view v) {
    rows.emplace_back(std::string(k), std::string(v));
    return true;
  });
  EXPECT_TRUE(s) << s.error().to_string();
  return rows;
}

// An embedded log under a temporary directory, with a builder writing its im.events.
struct LogFixture {
  explicit LogFixture(int32_t partitions = 2) {
    LocalLogConfig c;
    c.dir = (dir.path() / "log").string();
    auto l = LocalLog::open(c);
    EXPECT_TRUE(l) << l.error().to_string();
    log = std::move(*l);
    auto b = EventLogBuilder::open(*log, partitions);
    EXPECT_TRUE(b) << b.error().to_string();
    builder = std::move(*b);
  }

  std::unique_ptr<RocksDbModel> model(const std::string& name = "model", bool disable_wal = false) {
    RocksDbModelConfig c;
    c.dir = (dir.path() / name).string();
    c.disable_wal = disable_wal;
    auto m = open_rocksdb_model(c);
    EXPECT_TRUE(m) << m.error().to_string();
    return m ? std::move(*m) : nullptr;
  }

  // Projects everything written so far into `sink`, `batch` records at a time.
  Status project(ProjectionSink& sink, uint64_t batch = 4096) {
    auto ends = builder->ends();
    IMLOG_TRY(ends);
    Projector p(*log, sink, ProjectorConfig{batch});
    return p.run_until(*ends);
  }

  TempDir dir{"imlog-proj"};
  std::unique_ptr<LocalLog> log;
  std::unique_ptr<EventLogBuilder> builder;
};

}  // namespace imlog::testing
