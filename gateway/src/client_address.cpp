#include "client_address.h"

#include <optional>

#include <boost/asio/ip/address.hpp>

namespace imlog::gw {
namespace {

namespace ip = boost::asio::ip;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<ip::address> parse_address(std::string_view text) {
  boost::system::error_code ec;
  auto a = ip::make_address(std::string(trim(text)), ec);
  if (ec) return std::nullopt;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::address(ip::make_address_v4(ip::v4_mapped, a.to_v6()));
  return a;
}

std::array<uint8_t, 16> bytes_of(const ip::address& a) {
  if (a.is_v6()) return a.to_v6().to_bytes();
  return ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes();
}

bool in_range(const TrustedProxies::Range& r, const std::array<uint8_t, 16>& b) {
  int bits = r.prefix_bits;
  for (size_t i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((b[i] & mask) != (r.bytes[i] & mask)) return false;
  }
  return true;
}

std::string key_of(const ip::address& a) {
  if (a.is_v4()) return a.to_string();
  auto b = a.to_v6().to_bytes();
  for (size_t i = 8; i < 16; ++i) b[i] = 0;
  return ip::address_v6(b).to_string() + "/64";
}

}  // namespace

Result<TrustedProxies> TrustedProxies::parse(const std::vector<std::string>& entries) {
  TrustedProxies out;
  for (const auto& e : entries) {
    auto bad = [&] {
      return fail(std::errc::invalid_argument,
                  "`" + e + "` is not an IP address or CIDR range (like 10.0.0.7, 10.0.0.0/8, fd00::/8)");
    };
    std::string_view text = e;
    int bits = -1;
    if (auto slash = text.find('/'); slash != std::string_view::npos) {
      std::string_view len = text.substr(slash + 1);
      if (len.empty() || len.size() > 3 || len.find_first_not_of("0123456789") != std::string_view::npos) return bad();
      bits = std::stoi(std::string(len));
      text = text.substr(0, slash);
    }
    auto a = parse_address(text);
    if (!a) return bad();
    int max_bits = a->is_v4() ? 32 : 128;
    if (bits > max_bits) return bad();
    Range r;
    r.bytes = bytes_of(*a);
    // An IPv4 prefix covers the mapped form's last 32 bits.
    r.prefix_bits = bits < 0 ? 128 : (a->is_v4() ? 96 + bits : bits);
    out.ranges_.push_back(r);
  }
  return out;
}

bool TrustedProxies::contains(std::string_view address) const {
  auto a = parse_address(address);
  if (!a) return false;
  auto b = bytes_of(*a);
  for (const auto& r : ranges_) {
    if (in_range(r, b)) return true;
  }
  return false;
}

std::string client_address(std::string_view peer, std::string_view forwarded_for, const TrustedProxies& trusted) {
  auto client = parse_address(peer);
  if (!client) return "unknown";
  if (trusted.empty() || !trusted.contains(client->to_string())) return key_of(*client);
  // The peer is a trusted proxy: walk X-Forwarded-For from the right while the hops are trusted.
  std::string_view rest = forwarded_for;
  while (!rest.empty()) {
    auto comma = rest.rfind(',');
    std::string_view entry = comma == std::string_view::npos ? rest : rest.substr(comma + 1);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
    auto hop = parse_address(entry);
    if (!hop) break;  // not an address: the hop that wrote it is the client we can name
    client = hop;
    if (!trusted.contains(hop->to_string())) break;
  }
  return key_of(*client);
}

}  // namespace imlog::gw
