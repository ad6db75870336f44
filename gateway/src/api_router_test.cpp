#include <gtest/gtest.h>

#include "api.h"

namespace imlog::gw {
namespace {

TEST(Query, ParamsAreDecoded) {
  EXPECT_EQ(query_param("a=1&token=x%2By+z", "token").value(), "x+y z");
  EXPECT_EQ(query_param("a=1&b=2", "b").value(), "2");
  EXPECT_FALSE(query_param("a=1", "b"));
  EXPECT_EQ(query_param("flag&x=1", "flag").value(), "");
  EXPECT_FALSE(percent_decode("%zz", false));
  EXPECT_FALSE(percent_decode("%4", false));
  EXPECT_EQ(percent_decode("group_%31", false).value(), "group_1");
}

TEST(Query, UnsignedParams) {
  uint64_t v = 7;
  std::string error;
  EXPECT_TRUE(query_u64("limit=20", "limit", v, error));
  EXPECT_EQ(v, 20u);
  EXPECT_TRUE(query_u64("", "limit", v, error));
  EXPECT_EQ(v, 20u);
  EXPECT_FALSE(query_u64("limit=-1", "limit", v, error));
  EXPECT_NE(error.find("limit"), std::string::npos);
}

TEST(Auth, BearerToken) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer  abc "), "abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token(""), "");
}

}  // namespace
}  // namespace imlog::gw
