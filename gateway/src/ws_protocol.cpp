#include "ws_protocol.h"

#include "json.h"

namespace imlog::gw {

Subprotocol negotiate_subprotocol(std::string_view offered) {
  Subprotocol out;
  size_t i = 0;
  while (i < offered.size()) {
    size_t j = offered.find(',', i);
    if (j == std::string_view::npos) j = offered.size();
    auto p = offered.substr(i, j - i);
    while (!p.empty() && (p.front() == ' ' || p.front() == '\t')) p.remove_prefix(1);
    while (!p.empty() && (p.back() == ' ' || p.back() == '\t')) p.remove_suffix(1);
    if (p == kWsProtocolV1Json || p == kWsProtocolLegacyJson || p == kWsProtocolV1Binary) {
      out.selected = std::string(p);
      return out;
    }
    i = j + 1;
  }
  while (!offered.empty() && (offered.front() == ' ' || offered.front() == '\t')) offered.remove_prefix(1);
  out.offered = std::string(offered);
  return out;
}

std::shared_ptr<const std::string> hello_frame(std::string_view selected, uint64_t user_id, int64_t now_ms) {
  JsonOut j;
  j.begin_object().field("type", "hello").key("data").begin_object();
  j.field("protocol", is_binary_protocol(selected) ? kWsProtocolV1Binary : kWsProtocolV1Json).field("version", kWsProtocolVersion);
  j.key("versions").begin_array().u64(kWsProtocolVersion).end_array();
  j.field("user_id", user_id).field("server_time", now_ms);
  j.end_object().end_object();
  return std::make_shared<const std::string>(j.take());
}

}  // namespace imlog::gw
