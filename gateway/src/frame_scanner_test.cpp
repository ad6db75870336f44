#include "frame_scanner.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace imlog::gw {
namespace {

// A masked client frame (mask key 0: the payload stays readable).
std::vector<unsigned char> frame(unsigned char opcode, bool fin, size_t len) {
  std::vector<unsigned char> f;
  f.push_back(static_cast<unsigned char>((fin ? 0x80 : 0) | opcode));
  if (len < 126) {
    f.push_back(static_cast<unsigned char>(0x80 | len));
  } else if (len < 65536) {
    f.push_back(0x80 | 126);
    f.push_back(static_cast<unsigned char>(len >> 8));
    f.push_back(static_cast<unsigned char>(len));
  } else {
    f.push_back(0x80 | 127);
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<unsigned char>(len >> (8 * i)));
  }
  for (int i = 0; i < 4; ++i) f.push_back(0);
  f.insert(f.end(), len, 'x');
  return f;
}

TEST(FrameScanner, RewritesTextToBinaryAndRemembersKinds) {
  FrameScanner s;
  auto a = frame(0x1, true, 5), b = frame(0x2, true, 3), c = frame(0x9, true, 0);  // text, binary, ping
  std::vector<unsigned char> all;
  for (auto* f : {&a, &b, &c}) all.insert(all.end(), f->begin(), f->end());
  s.scan(all.data(), all.size());
  EXPECT_EQ(all[0], 0x82);                       // text → binary, FIN kept
  EXPECT_EQ(all[a.size()], 0x82);                // binary untouched
  EXPECT_EQ(all[a.size() + b.size()], 0x89);     // ping untouched
  bool text = false;
  ASSERT_TRUE(s.take_message_kind(text));
  EXPECT_TRUE(text);
  ASSERT_TRUE(s.take_message_kind(text));
  EXPECT_FALSE(text);
  EXPECT_FALSE(s.take_message_kind(text));
}

TEST(FrameScanner, FollowsHeadersSplitAcrossReadsAndLongLengths) {
  for (size_t len : {0u, 125u, 126u, 300u, 70000u}) {
    FrameScanner s;
    auto f1 = frame(0x1, false, len), f2 = frame(0x0, true, 10), f3 = frame(0x1, true, 1);
    std::vector<unsigned char> all;
    for (auto* f : {&f1, &f2, &f3}) all.insert(all.end(), f->begin(), f->end());
    // Feed one byte at a time: every header is split.
    for (size_t i = 0; i < all.size(); ++i) s.scan(&all[i], 1);
    EXPECT_EQ(all[0], 0x02) << len;                          // text (not FIN) → binary
    EXPECT_EQ(all[f1.size()], 0x80) << len;                  // continuation untouched
    EXPECT_EQ(all[f1.size() + f2.size()], 0x82) << len;
    EXPECT_EQ(s.pending_messages(), 2u) << len;              // a continuation starts no message
  }
}

}  // namespace
}  // namespace imlog::gw
