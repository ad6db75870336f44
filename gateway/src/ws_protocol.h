#pragma once
// Versions of the WebSocket protocol (docs/api/websocket.md, "Protocol versions"): which
// `Sec-WebSocket-Protocol` a client may ask for, and the `hello` frame that tells it, first thing
// on every connection, which version it got and which this server speaks.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace imlog::gw {

// Version 1, JSON text frames.
inline constexpr std::string_view kWsProtocolV1Json = "imlog.v1.json";
// Version 1, binary frames: FlatBuffers of docs/api/websocket.fbs (imlog/gateway/ws_binary.h).
inline constexpr std::string_view kWsProtocolV1Binary = "imlog.v1";
// The name version 1 had before versions were named; still accepted, and selected, as it was.
inline constexpr std::string_view kWsProtocolLegacyJson = "imlog.json";
inline constexpr uint32_t kWsProtocolVersion = 1;

struct Subprotocol {
  std::string selected;  // what the upgrade's answer names ("" when the client asked for none)
  std::string offered;   // when refused: what the client asked for, for the error
  [[nodiscard]] bool refused() const { return selected.empty() && !offered.empty(); }
};

// The client's `Sec-WebSocket-Protocol` (comma-separated, in its order of preference) → the first
// this server speaks. None asked for: version 1 JSON, unnamed. Only unknown ones: refused.
Subprotocol negotiate_subprotocol(std::string_view offered);

// Does the negotiated subprotocol speak binary frames?
[[nodiscard]] inline bool is_binary_protocol(std::string_view selected) { return selected == kWsProtocolV1Binary; }

// {"type":"hello","data":{"protocol","version","versions":[..],"user_id","server_time"}};
// `protocol` is the form the connection speaks: imlog.v1.json (also for none and imlog.json) or
// imlog.v1.
std::shared_ptr<const std::string> hello_frame(std::string_view selected, uint64_t user_id, int64_t now_ms);

}  // namespace imlog::gw
