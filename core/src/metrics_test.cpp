#include "imlog/core/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>

#include "imlog/core/worker.h"

namespace imlog::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Metrics, HistogramBucketsAreCumulativeWithInfLast) {
  Histogram h({0.1, 1});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(0.5);
  h.observe(7.0);
  auto s = h.snapshot();
  ASSERT_EQ(s.bucket.size(), 3u);
  EXPECT_EQ(s.bucket[0].cumulative_count, 1u);
  EXPECT_EQ(s.bucket[1].cumulative_count, 3u);
  EXPECT_EQ(s.bucket[2].cumulative_count, 4u);
  EXPECT_TRUE(std::isinf(s.bucket[2].upper_bound));
  EXPECT_EQ(s.sample_count, 4u);
  EXPECT_DOUBLE_EQ(s.sample_sum, 8.05);
}

TEST(Metrics, CollectorsAreScrapedUntilTheirHandleGoes) {
  std::atomic<uint64_t> n{41};
  {
    auto handle = add_collector([&](auto& out) {
      out.push_back(counter("imlog_test_things_total", "Things.", static_cast<double>(n.load())));
    });
    ++n;
    auto text = render();
    EXPECT_THAT(text, HasSubstr("# TYPE imlog_test_things_total counter\nimlog_test_things_total 42"));
  }
  EXPECT_THAT(render(), Not(HasSubstr("imlog_test_things_total")));
}

TEST(Metrics, RenderHasTheWorkersAndTheProcess) {
  Worker w("metrics-test", [&w] {
    w.wait_for(std::chrono::milliseconds(10));
    return Status{};
  });
  w.start();
  auto text = render();
  w.stop();
  EXPECT_THAT(text, HasSubstr("imlog_worker_up{worker=\"metrics-test\"} 1"));
  EXPECT_THAT(text, HasSubstr("imlog_worker_failures_total "));
  EXPECT_THAT(text, HasSubstr("process_resident_memory_bytes "));
  EXPECT_THAT(text, HasSubstr("process_open_fds "));
  EXPECT_THAT(text, HasSubstr("process_cpu_seconds_total "));
}

TEST(Metrics, LabelledHistogramsRenderEveryBucket) {
  Histogram h;
  h.observe(std::chrono::milliseconds(3));
  auto handle = add_collector([&](auto& out) {
    auto f = family("imlog_test_apply_seconds", "Applies.", prometheus::MetricType::Histogram);
    sample(f, {{"model", "rocksdb"}}, h);
    out.push_back(std::move(f));
  });
  auto text = render();
  EXPECT_THAT(text, HasSubstr("imlog_test_apply_seconds_bucket{model=\"rocksdb\",le=\"0.0025\"} 0"));
  EXPECT_THAT(text, HasSubstr("imlog_test_apply_seconds_bucket{model=\"rocksdb\",le=\"0.005\"} 1"));
  EXPECT_THAT(text, HasSubstr("imlog_test_apply_seconds_bucket{model=\"rocksdb\",le=\"+Inf\"} 1"));
  EXPECT_THAT(text, HasSubstr("imlog_test_apply_seconds_count{model=\"rocksdb\"} 1"));
}

}  // namespace
}  // namespace imlog::metrics
