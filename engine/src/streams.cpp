#include "imlog/engine/streams.h"

#include <charconv>

#include <xxhash.h>

namespace imlog {
namespace {

std::optional<uint64_t> parse_id(std::string_view s) {
  uint64_t v = 0;
  if (s.empty() || s[0] == '0') return std::nullopt;  // no leading zeros: one spelling per stream
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::string delivery_topic(std::string_view gateway_id) {
  return std::string(kDeliveryTopicPrefix) + std::string(gateway_id);
}

std::optional<StreamRef> parse_stream(std::string_view s) {
  if (s == kWorldStream) return StreamRef{StreamKind::world, 0, 0};
  auto after = [&](std::string_view prefix) -> std::optional<std::string_view> {
    if (!s.starts_with(prefix)) return std::nullopt;
    return s.substr(prefix.size());
  };
  if (auto rest = after("single_")) {
    auto us = rest->find('_');
    if (us == std::string_view::npos) return std::nullopt;
    auto lo = parse_id(rest->substr(0, us));
    auto hi = parse_id(rest->substr(us + 1));
    if (!lo || !hi || *lo >= *hi) return std::nullopt;
    return StreamRef{StreamKind::single, *lo, *hi};
  }
  if (auto rest = after("group_")) {
    if (auto id = parse_id(*rest)) return StreamRef{StreamKind::group, *id, 0};
    return std::nullopt;
  }
  if (auto rest = after("user_")) {
    if (auto id = parse_id(*rest)) return StreamRef{StreamKind::user, *id, 0};
    return std::nullopt;
  }
  if (auto rest = after("names_")) {
    if (*rest == "0") return StreamRef{StreamKind::names, 0, 0};
    if (auto b = parse_id(*rest); b && *b < kNameBuckets) return StreamRef{StreamKind::names, *b, 0};
    return std::nullopt;
  }
  return std::nullopt;
}

std::string single_stream(uint64_t a, uint64_t b) {
  if (a > b) std::swap(a, b);
  return "single_" + std::to_string(a) + "_" + std::to_string(b);
}

std::string group_stream(uint64_t id) { return "group_" + std::to_string(id); }
std::string user_stream(uint64_t id) { return "user_" + std::to_string(id); }

uint32_t name_bucket(std::string_view username) {
  return static_cast<uint32_t>(XXH64(username.data(), username.size(), 0) % kNameBuckets);
}

std::string names_stream(std::string_view username) {
  return "names_" + std::to_string(name_bucket(username));
}

}  // namespace imlog
