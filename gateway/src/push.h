#pragma once
// Events pushed to clients as WebSocket frames (docs/api/websocket.md): MessageAppended becomes
// `new-message` with the wire contract's message object; the other user-visible events get their
// own typed frame. A frame is rendered once per push and shared by every recipient session.
//
// Pure; thread-safe.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "hub.h"
#include "imlog/engine/data_keys.h"
#include "imlog/schema/codec.h"

namespace imlog::gw {

struct RenderedPush {
  std::shared_ptr<const std::string> frame;
  PushInfo info;
  uint64_t only_user = 0;  // non-zero: deliver to this recipient only (a block is news to the blocker alone)
};

// nullopt for events clients never see: registrations (they carry a password hash), token
// revocations, epoch markers; and for a message whose sealed text cannot be opened with `keys`
// (its sender erased, the key store away: logged), which the recipients read at their next sync.
std::optional<RenderedPush> render_push(const fb::EventEnvelope& e, KeyStore& keys);

std::string_view message_type_name(fb::MessageType t);
std::string_view role_name(fb::Role r);

}  // namespace imlog::gw
