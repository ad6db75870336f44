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

TEST(Query, UnsignedParamsOutsideTheirRangeAreRefused) {
  uint64_t v = 50;
  std::string error;
  EXPECT_TRUE(query_u64("limit=1", "limit", v, error, {1, 200}));
  EXPECT_EQ(v, 1u);
  EXPECT_TRUE(query_u64("limit=200", "limit", v, error, {1, 200}));
  EXPECT_EQ(v, 200u);
  for (const char* q : {"limit=0", "limit=201", "limit=500", "limit=99999999999999999999", "limit=x"}) {
    v = 7;
    EXPECT_FALSE(query_u64(q, "limit", v, error, {1, 200})) << q;
    EXPECT_EQ(v, 7u) << "a refused value is not kept: " << q;
    EXPECT_NE(error.find("query parameter `limit` must be an integer from 1 to 200"), std::string::npos) << error;
  }
}

TEST(Auth, BearerToken) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer  abc "), "abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token(""), "");
}

TEST(RequestId, OnlyShortIdsOfSafeCharactersAreTaken) {
  EXPECT_TRUE(valid_request_id("9b2f6c1e-4d7a-4e0b-8a53-0f1d2c3b4a59"));
  EXPECT_TRUE(valid_request_id("req.7_x"));
  EXPECT_TRUE(valid_request_id(std::string(64, 'a')));
  EXPECT_FALSE(valid_request_id(""));
  EXPECT_FALSE(valid_request_id(std::string(65, 'a')));
  for (const char* bad : {"a b", "a\"b", "a\nb", "a=b", "a/b", "caf\xc3\xa9"}) EXPECT_FALSE(valid_request_id(bad)) << bad;
}

TEST(Router, MatchesPathsAndMethods) {
  ApiRouter r;
  r.add(Method::get, "/api/v1/groups/{}", ApiRouter::Auth::access, nullptr);
  r.add(Method::patch, "/api/v1/groups/{}", ApiRouter::Auth::access, nullptr);
  r.add(Method::del, "/api/v1/groups/{}/members/{}", ApiRouter::Auth::access, nullptr);
  auto m = r.match(Method::del, "/api/v1/groups/7/members/a%2Fb");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params, (std::vector<std::string>{"7", "a/b"}));
  EXPECT_NE(r.match(Method::head, "//api/v1/groups/7/").route, nullptr) << "HEAD is served by GET; empty segments skip";
  auto wrong = r.match(Method::post, "/api/v1/groups/7");
  EXPECT_EQ(wrong.route, nullptr);
  EXPECT_EQ(wrong.allow, "GET, PATCH");
  auto bad = r.match(Method::get, "/api/v1/groups/%zz");
  EXPECT_TRUE(bad.bad_escape);
  EXPECT_EQ(bad.bad_segment, "%zz");
  auto none = r.match(Method::get, "/nowhere");
  EXPECT_EQ(none.route, nullptr);
  EXPECT_TRUE(none.allow.empty());
}

TEST(Router, AllowListsEachMethodOnce) {
  // A literal segment and a {} segment give one path two GET routes.
  ApiRouter r;
  r.add(Method::get, "/api/v1/users/me", ApiRouter::Auth::access, nullptr);
  r.add(Method::patch, "/api/v1/users/me", ApiRouter::Auth::access, nullptr);
  r.add(Method::get, "/api/v1/users/{}", ApiRouter::Auth::access, nullptr);
  EXPECT_EQ(r.match(Method::del, "/api/v1/users/me").allow, "GET, PATCH");
  EXPECT_EQ(r.match(Method::del, "/api/v1/users/7").allow, "GET");
}

}  // namespace
}  // namespace imlog::gw
