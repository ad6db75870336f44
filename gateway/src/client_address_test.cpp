// Which address the login throttle counts: the TCP peer, unless it is a trusted proxy; then the
// X-Forwarded-For hops from the right, past trusted proxies only; IPv6 by its /64.

#include "client_address.h"

#include <gtest/gtest.h>

namespace imlog::gw {
namespace {

TrustedProxies proxies(std::vector<std::string> entries) {
  auto p = TrustedProxies::parse(entries);
  EXPECT_TRUE(p) << (p ? "" : p.error().to_string());
  return p ? *p : TrustedProxies();
}

TEST(ClientAddress, IsThePeerWhenNoProxyIsTrusted) {
  TrustedProxies none;
  EXPECT_EQ(client_address("203.0.113.7", "", none), "203.0.113.7");
  EXPECT_EQ(client_address("203.0.113.7", "198.51.100.1", none), "203.0.113.7") << "a client's own header is ignored";
  EXPECT_EQ(client_address("::ffff:203.0.113.7", "", none), "203.0.113.7") << "IPv4-mapped counts as IPv4";
  EXPECT_EQ(client_address("", "", none), "unknown");
}

TEST(ClientAddress, IPv6CountsAsItsSlash64) {
  TrustedProxies none;
  EXPECT_EQ(client_address("2001:db8:1:2:aaaa::1", "", none), "2001:db8:1:2::/64");
  EXPECT_EQ(client_address("2001:db8:1:2:bbbb::9", "", none), "2001:db8:1:2::/64") << "the same subscriber";
  EXPECT_EQ(client_address("2001:db8:1:3::1", "", none), "2001:db8:1:3::/64");
}

TEST(ClientAddress, BehindTrustedProxiesIsTheFirstUntrustedHopFromTheRight) {
  auto p = proxies({"10.0.0.0/8", "192.0.2.5"});
  EXPECT_EQ(client_address("10.1.2.3", "203.0.113.7", p), "203.0.113.7");
  EXPECT_EQ(client_address("10.1.2.3", "203.0.113.7, 192.0.2.5", p), "203.0.113.7") << "two proxies";
  EXPECT_EQ(client_address("10.1.2.3", "6.6.6.6, 203.0.113.7", p), "203.0.113.7")
      << "what the client wrote left of the real hop is not believed";
  EXPECT_EQ(client_address("10.1.2.3", "6.6.6.6,203.0.113.7", p), "203.0.113.7");
  EXPECT_EQ(client_address("192.0.2.5", "203.0.113.7", p), "203.0.113.7") << "a single trusted address";
  EXPECT_EQ(client_address("10.1.2.3", "", p), "10.1.2.3") << "no header: the proxy itself";
  EXPECT_EQ(client_address("10.1.2.3", "garbage, 203.0.113.7", p), "203.0.113.7");
  EXPECT_EQ(client_address("10.1.2.3", "203.0.113.7, garbage", p), "10.1.2.3")
      << "a hop that is not an address: the last one we can name";
  EXPECT_EQ(client_address("10.1.2.3", "10.9.9.9", p), "10.9.9.9") << "only proxies: the leftmost";
}

TEST(ClientAddress, AnUntrustedPeerIsTheClientWhateverItForwards) {
  auto p = proxies({"10.0.0.0/8"});
  EXPECT_EQ(client_address("203.0.113.7", "10.0.0.1", p), "203.0.113.7");
  EXPECT_EQ(client_address("11.0.0.1", "198.51.100.1", p), "11.0.0.1") << "just outside the range";
}

TEST(ClientAddress, IPv6ProxyRanges) {
  auto p = proxies({"fd00::/8"});
  EXPECT_EQ(client_address("fd12::1", "2001:db8::5", p), "2001:db8::/64");
  EXPECT_EQ(client_address("fe80::1", "2001:db8::5", p), "fe80::/64");
  auto v4 = proxies({"10.0.0.0/8"});
  EXPECT_EQ(client_address("::ffff:10.0.0.1", "203.0.113.7", v4), "203.0.113.7") << "a mapped peer matches IPv4 ranges";
}

TEST(TrustedProxies, AnEntryThatIsNoAddressIsNamed) {
  for (std::string bad : {"10.0.0.0/33", "proxy.local", "10.0.0.0/", "10.0.0.0/x", "::/129", ""}) {
    auto p = TrustedProxies::parse({bad});
    ASSERT_FALSE(p) << bad;
    EXPECT_NE(p.error().message().find("`" + bad + "`"), std::string::npos) << p.error().message();
  }
  EXPECT_TRUE(TrustedProxies::parse({"0.0.0.0/0", "::/0", "127.0.0.1", "::1"}));
}

}  // namespace
}  // namespace imlog::gw
