// The load generator's own pieces that its figures rest on: the latency histogram's percentiles
// and the frame fields it reads without a JSON parser.

#include <gtest/gtest.h>

#include "histogram.h"
#include "net.h"

namespace imlog::bench {
namespace {

TEST(LatencyHistogram, PercentilesWithinItsResolution) {
  LatencyHistogram h;
  for (int64_t us = 1; us <= 100000; ++us) h.record(us);  // 1 µs .. 100 ms, uniform
  EXPECT_EQ(h.count(), 100000u);
  for (double p : {0.5, 0.9, 0.99, 0.999}) {
    double exact_ms = p * 100.0;
    EXPECT_NEAR(h.percentile_ms(p), exact_ms, exact_ms * 0.017) << "p" << p;
  }
  EXPECT_DOUBLE_EQ(h.max_ms(), 100.0);
}

TEST(LatencyHistogram, SmallValuesAreExactAndMergeAddsCounts) {
  LatencyHistogram a, b;
  for (int i = 0; i < 90; ++i) a.record(7);
  for (int i = 0; i < 10; ++i) b.record(120);
  a.merge(b);
  EXPECT_EQ(a.count(), 100u);
  EXPECT_DOUBLE_EQ(a.percentile_ms(0.5), 0.007);
  EXPECT_DOUBLE_EQ(a.percentile_ms(0.95), 0.120);
  EXPECT_DOUBLE_EQ(a.max_ms(), 0.120);
  LatencyHistogram empty;
  EXPECT_EQ(empty.percentile_ms(0.99), 0.0);
}

TEST(LatencyHistogram, HugeAndNegativeValuesDoNotBreakIt) {
  LatencyHistogram h;
  h.record(-5);
  h.record(int64_t{1} << 50);
  EXPECT_EQ(h.count(), 2u);
  EXPECT_DOUBLE_EQ(h.percentile_ms(0.0), 0.0);
  EXPECT_GT(h.percentile_ms(0.99), 1e9);
}

TEST(FrameFields, ReadsTypeAndFieldsOfAPush) {
  std::string f = R"({"type":"new-message","data":{"message_id":"912","conversation_id":"single_1_2",)"
                  R"("seq_id":42,"sender_id":1,"content":"t=123456;n=17","message_type":"text"}})";
  EXPECT_EQ(frame_type(f), "new-message");  // not fooled by "message_type"
  EXPECT_EQ(string_field(f, "content"), "t=123456;n=17");
  EXPECT_EQ(number_field(f, "seq_id"), 42);
  EXPECT_EQ(number_field(f, "missing", -7), -7);
  EXPECT_EQ(string_field(f, "seq_id"), "");  // a number is not a string
  EXPECT_EQ(string_field(R"({"type":"unterminated)", "type"), "");
}

}  // namespace
}  // namespace imlog::bench
