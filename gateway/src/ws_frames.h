#pragma once
// The WebSocket protocol of docs/api/websocket.md, apart from the socket: one complete message
// (text, or binary on an imlog.v1 connection) in, frames out through FrameConnection (always
// rendered as JSON; the session encodes them for a binary connection). Kept free of Beast so it compiles quickly and
// reads as the protocol.
//
//   send-message → message-ack | error{code, message, client_msg_id}
//   sync         → sync-result | error
//   read         → read-ack    | error
//   set-status   → status-ack  | error   (online, away or busy; as PUT /users/me/status)
//   search       → search-result | error (as GET /api/v1/search/messages)
//   ping         → pong
//   anything else, malformed JSON, a frame without type → error; the connection stays open.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "services.h"

namespace imlog::gw {

class FrameConnection {
 public:
  virtual ~FrameConnection() = default;
  // Queues a frame to the client. Thread-safe.
  virtual void send(std::shared_ptr<const std::string> frame) = 0;
  [[nodiscard]] virtual uint64_t user_id() const = 0;
  // On the session's strand only: this session sent (conversation, client_msg_id).
  virtual void remember_sent(uint64_t key) = 0;
  // On the session's strand only: a command leaves for the engine. Each is matched by one
  // answer(); the session reads no further frames while max_inflight_commands are out.
  virtual void command_sent() = 0;
  // Thread-safe: queues the answer to one of this connection's commands (an ack or an error).
  virtual void answer(std::shared_ptr<const std::string> frame) = 0;
};

// Handles one complete client message — a JSON text frame, or a binary frame (`binary`) — which
// already took its token from the connection's send-rate bucket (WsSession). `waited`: how long it
// had waited before the session read it; past config.max_frame_wait anything but a ping is
// answered `overloaded` and not handled. Runs on the session's strand; answers arrive later
// through conn->send(), or conn->answer() for commands.
void handle_message(Services& svc, const std::shared_ptr<FrameConnection>& conn, std::string_view bytes, bool binary,
                    std::chrono::milliseconds waited);

// {"type":"error","data":{"code","message"[,"client_msg_id"][,"request_type"][,"retry_after_ms"]
// [,"trace_id"]}}: trace_id names the command an error answers (its log lines in every role).
std::shared_ptr<const std::string> error_frame(std::string_view code, std::string_view message,
                                               std::string_view client_msg_id = {},
                                               std::string_view request_type = {},
                                               std::chrono::milliseconds retry_after = {},
                                               std::string_view trace_id = {});

}  // namespace imlog::gw
