#include "imlog/core/ids.h"
#include "imlog/core/result.h"

#include <gtest/gtest.h>

namespace imlog {
namespace {

Result<int> half(int v) {
  if (v % 2) return fail(std::errc::invalid_argument, "odd value " + std::to_string(v));
  return v / 2;
}

Result<int> quarter(int v) {
  auto h = half(v);
  IMLOG_TRY(h);
  return half(*h);
}

TEST(Result, CarriesValueOrError) {
  EXPECT_EQ(*quarter(8), 2);
  auto r = quarter(6);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "odd value 3");
  EXPECT_FALSE(r.error().retryable());
}

TEST(Result, ContextKeepsCodeAndRetryability) {
  Error e(std::make_error_code(std::errc::timed_out), "broker down", true);
  Error c = e.with_context("appending to im.events");
  EXPECT_EQ(c.code(), e.code());
  EXPECT_TRUE(c.retryable());
  EXPECT_EQ(c.message(), "appending to im.events: broker down");
  EXPECT_NE(c.to_string().find("(retryable)"), std::string::npos);
}

TEST(StrongIds, CompareAndHashLikeTheirValue) {
  EXPECT_LT(Seq(1), Seq(2));
  EXPECT_EQ(UserId(7), UserId(7));
  EXPECT_EQ(std::hash<StreamId>{}(StreamId("world")), std::hash<std::string>{}("world"));
  static_assert(!std::is_convertible_v<Seq, UserId>);
}

}  // namespace
}  // namespace imlog
