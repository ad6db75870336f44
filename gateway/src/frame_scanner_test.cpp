#include "frame_scanner.h"

#include <gtest/gtest.h>

#include <chrono>
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
  auto first = s.take_message();
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->text);
  auto second = s.take_message();
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->text);
  EXPECT_FALSE(s.take_message()) << "a ping is not a message";
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

// Each message had arrived by the first mark that reaches its last byte: a read's own bytes by the
// time of that read, and the bytes the kernel still held after a read that filled its buffer by
// then too.
TEST(FrameScanner, AMessageHadArrivedByTheFirstMarkThatReachesItsLastByte) {
  using Clock = FrameScanner::Clock;
  const Clock::time_point t0{std::chrono::seconds(100)};
  const auto ms = [&](int n) { return t0 + std::chrono::milliseconds(n); };
  FrameScanner s;
  auto a = frame(0x1, true, 20), b = frame(0x1, true, 20), c = frame(0x1, true, 20), d = frame(0x1, true, 20);
  // Read 1 takes a and half of b, and the kernel holds the rest of b and all of c (FIONREAD).
  size_t half = b.size() / 2;
  s.scan(a.data(), a.size());
  s.scan(b.data(), half);
  s.arrived(b.size() - half + c.size(), ms(0));
  // Read 2, 50 ms later, takes the rest of b and c; read 3 takes d.
  s.scan(b.data() + half, b.size() - half);
  s.scan(c.data(), c.size());
  s.arrived(0, ms(50));
  s.scan(d.data(), d.size());
  s.arrived(0, ms(90));
  std::vector<Clock::time_point> arrived;
  while (auto m = s.take_message()) {
    ASSERT_TRUE(m->arrived);
    arrived.push_back(*m->arrived);
  }
  EXPECT_EQ(arrived, (std::vector<Clock::time_point>{ms(0), ms(0), ms(0), ms(90)}))
      << "c was in the kernel when read 1 filled its buffer; d came after read 2 took everything";
}

TEST(FrameScanner, ALaterMarkThatSaysNoMoreIsDroppedAndAMessageWithoutOneHasNoArrival) {
  using Clock = FrameScanner::Clock;
  const Clock::time_point t0{std::chrono::seconds(5)};
  FrameScanner s;
  auto a = frame(0x2, true, 10), b = frame(0x2, true, 10);
  s.scan(a.data(), a.size());
  s.arrived(b.size(), t0);                                // b is known to be in the kernel
  s.arrived(0, t0 + std::chrono::seconds(1));             // says less: dropped
  s.scan(b.data(), b.size());
  s.arrived(0, t0 + std::chrono::seconds(2));             // covers nothing new: dropped
  auto ma = s.take_message(), mb = s.take_message();
  ASSERT_TRUE(ma && mb);
  EXPECT_EQ(ma->arrived, t0);
  EXPECT_EQ(mb->arrived, t0);
  auto c = frame(0x2, true, 10);
  s.scan(c.data(), c.size());                             // scanned, but no read marked it yet
  auto mc = s.take_message();
  ASSERT_TRUE(mc);
  EXPECT_FALSE(mc->arrived) << "no mark covers it: its wait is unknown, not made up";
}

// A message that takes a while to arrive — a slow uplink, a large message in pieces — had arrived
// when its last byte had: the time its client took to send it is not time it waited.
TEST(FrameScanner, AMessageArrivedWhenItsLastByteDid) {
  using Clock = FrameScanner::Clock;
  const Clock::time_point t0{std::chrono::seconds(7)};
  FrameScanner s;
  auto big = frame(0x1, false, 3000), rest = frame(0x0, true, 3000), ping = frame(0x9, true, 0);
  s.scan(big.data(), 1000);
  s.arrived(0, t0);
  s.scan(big.data() + 1000, big.size() - 1000);
  s.scan(ping.data(), ping.size());  // a control frame between the fragments
  s.arrived(0, t0 + std::chrono::milliseconds(150));
  s.scan(rest.data(), rest.size());
  s.arrived(0, t0 + std::chrono::milliseconds(300));
  auto m = s.take_message();
  ASSERT_TRUE(m && m->arrived);
  EXPECT_EQ(*m->arrived, t0 + std::chrono::milliseconds(300));
}

// An idle connection's reads (pongs, say) leave no marks behind: the next message is marked as
// usual however long the connection sat idle.
TEST(FrameScanner, AnIdleConnectionKeepsNoMarks) {
  using Clock = FrameScanner::Clock;
  const Clock::time_point t0{std::chrono::seconds(9)};
  FrameScanner s;
  for (int i = 0; i < 1000; ++i) {
    auto pong = frame(0xA, true, 0);
    s.scan(pong.data(), pong.size());
    s.arrived(0, t0 + std::chrono::seconds(i));
  }
  auto a = frame(0x2, true, 10);
  s.scan(a.data(), a.size());
  s.arrived(0, t0 + std::chrono::seconds(2000));
  auto m = s.take_message();
  ASSERT_TRUE(m && m->arrived) << "the marks of the idle reads crowded out the message's";
  EXPECT_EQ(*m->arrived, t0 + std::chrono::seconds(2000));
}

// Found by the ws_frame fuzzer: a complete message waiting to be taken while the next one arrives
// a byte per read left more marks than the cap, and the newest were dropped, so the later message
// had no arrival at all. Past the cap the newest mark gives way to the next: every byte stays
// covered, by a later time at worst.
TEST(FrameScanner, PastTheCapOfMarksEveryMessageStillHasAnArrival) {
  using Clock = FrameScanner::Clock;
  const Clock::time_point t0{std::chrono::seconds(11)};
  FrameScanner s;
  auto a = frame(0x2, true, 10), b = frame(0x2, true, 400);
  s.scan(a.data(), a.size());
  s.arrived(0, t0);
  for (size_t i = 0; i < b.size(); ++i) {
    s.scan(&b[i], 1);
    s.arrived(0, t0 + std::chrono::milliseconds(i + 1));
  }
  auto ma = s.take_message(), mb = s.take_message();
  ASSERT_TRUE(ma && mb);
  EXPECT_EQ(ma->arrived, t0);
  ASSERT_TRUE(mb->arrived) << "the message's last byte lost its mark";
  EXPECT_EQ(*mb->arrived, t0 + std::chrono::milliseconds(b.size()));
}

}  // namespace
}  // namespace imlog::gw
