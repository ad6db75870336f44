#include "imlog/core/utf8.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace imlog {
namespace {

TEST(Utf8, RefusesOverlongsSurrogatesAndTruncations) {
  EXPECT_TRUE(valid_utf8("hello"));
  EXPECT_TRUE(valid_utf8("\xe4\xbd\xa0\xe5\xa5\xbd"));  // 你好
  EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));          // emoji
  EXPECT_TRUE(valid_utf8("\xf4\x8f\xbf\xbf"));          // U+10FFFF, the last code point
  EXPECT_FALSE(valid_utf8("\xff"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));                  // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));              // surrogate
  EXPECT_FALSE(valid_utf8("\xe4\xbd"));                  // truncated
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));          // past U+10FFFF
}

TEST(Utf8, InvalidBytesAreReplacedOnTheWayOut) {
  EXPECT_EQ(to_valid_utf8("plain \xe4\xbd\xa0"), "plain \xe4\xbd\xa0");
  EXPECT_EQ(to_valid_utf8("\xff"), "\xef\xbf\xbd");
  EXPECT_EQ(to_valid_utf8("a\xc0\xaf" "b"), "a\xef\xbf\xbd\xef\xbf\xbd" "b");
  EXPECT_EQ(to_valid_utf8("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(to_valid_utf8("x\xe4\xbd"), "x\xef\xbf\xbd\xef\xbf\xbd") << "a truncated sequence";
}

// Whatever the bytes, the replacement is valid, and valid text passes through unchanged.
RC_GTEST_PROP(Utf8, ReplacementIsAlwaysValidAndKeepsValidText, (const std::string& bytes)) {
  std::string out = to_valid_utf8(bytes);
  RC_ASSERT(valid_utf8(out));
  if (valid_utf8(bytes)) RC_ASSERT(out == bytes);
}

}  // namespace
}  // namespace imlog
