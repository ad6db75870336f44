#pragma once
// Which address a request comes from, as the login throttle counts it.
//
// By default the TCP peer's. Behind reverse proxies listed in `gateway.trusted_proxies`, the
// X-Forwarded-For list is walked from its right end (the entry the nearest proxy appended) past
// every trusted proxy; the first address that is not one is the client. Entries to its left were
// written by the client itself and are never believed. A peer that is not a trusted proxy is the
// client, whatever X-Forwarded-For it sends.
//
// IPv4-mapped IPv6 addresses count as IPv4; an IPv6 address counts as its /64, the block one
// subscriber usually holds (so rotating through it gives no fresh addresses).
//
// Thread-safe: immutable after parse().

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/core/result.h"

namespace imlog::gw {

class TrustedProxies {
 public:
  // Each entry an IP address ("10.0.0.7", "fd00::1") or a CIDR range ("10.0.0.0/8",
  // "fd00::/8"). The error names the entry that is neither.
  static Result<TrustedProxies> parse(const std::vector<std::string>& entries);
  [[nodiscard]] bool empty() const { return ranges_.empty(); }
  // Whether the text address `address` is in one of the ranges (false when it is no address).
  [[nodiscard]] bool contains(std::string_view address) const;

  struct Range {
    std::array<uint8_t, 16> bytes{};  // IPv6, IPv4 as IPv4-mapped (::ffff:a.b.c.d)
    int prefix_bits = 128;
  };

 private:
  std::vector<Range> ranges_;
};

// The throttle's key of the client of a connection from `peer` (text address) carrying
// `forwarded_for` (every X-Forwarded-For header, joined by ','): "a.b.c.d" or "<ipv6 /64>/64";
// "unknown" when the peer's address is unknown.
std::string client_address(std::string_view peer, std::string_view forwarded_for, const TrustedProxies& trusted);

}  // namespace imlog::gw
