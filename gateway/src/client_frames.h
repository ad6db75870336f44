#pragma once
// What a client's WebSocket text message asks for, decoded without a socket or a service: the
// pure half of handle_message (ws_frames.h), so tests and fuzzers can drive it alone.
//
//   decode_client_frame(text)          → a request frame, or the error frame's fields
//   decode_binary_client_frame(bytes)  → the same, from the binary form
//
// Also the checks every client-named conversation and message type goes through (WebSocket and
// REST alike). Pure functions.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "imlog/schema/codec.h"

namespace imlog::gw {

struct SendMessageFrame {
  std::string client_msg_id;
  std::string conversation;
  std::string content;
  fb::MessageType type = fb::MessageType::Text;
  int64_t sent_at = 0;  // the client's first send, Unix ms; 0: not given (the dedupe window)
};

struct SyncFrame {
  std::string conversation;
  std::optional<uint64_t> after_seq;  // absent: the latest `limit`
  uint32_t limit = 100;               // 1..200
};

struct ReadFrame {
  std::string conversation;
  uint64_t seq = 0;
};

struct SetStatusFrame {
  std::string status;  // not checked here: choose_status() decides
};

struct PingFrame {};

// search {q, conversation_id?, before?, limit?}: as GET /api/v1/search/messages.
struct SearchFrame {
  std::string text;
  std::string conversation;  // "" : every conversation of the user
  uint64_t before_id = 0;    // 0: from the newest
  uint32_t limit = 20;       // 1..50
};

// The fields of the error frame a bad message is answered with.
struct FrameError {
  std::string code;
  std::string message;
  std::string client_msg_id;
  std::string request_type;
};

using ClientFrame =
    std::variant<FrameError, PingFrame, SendMessageFrame, SyncFrame, ReadFrame, SetStatusFrame, SearchFrame>;

// Decodes one complete text message. `max_content_bytes` bounds send-message content.
ClientFrame decode_client_frame(std::string_view text, size_t max_content_bytes);

// Decodes one complete binary message (imlog.v1, docs/api/websocket.fbs): verified, turned into
// the JSON frame it stands for (imlog/gateway/ws_binary.h), and decoded as that, so both forms
// keep the same rules and errors. Bytes that are not a Frame get `invalid_binary`.
ClientFrame decode_binary_client_frame(std::string_view bytes, size_t max_content_bytes);

// A send's optional `sent_at` (WebSocket and REST alike): when present, a Unix time in ms from 1 to
// kMaxSentAt; absent: 0. `error` names the field when it is neither.
inline constexpr uint64_t kMaxSentAt = 253'402'300'799'999;  // 9999-12-31T23:59:59.999Z
bool check_sent_at(bool present, uint64_t value, std::string& error);

// A client's message_type ("text" when empty, "image", "file"); false for anything else.
bool parse_message_type(std::string_view name, fb::MessageType& out);

// Is `text` a message search's query: 1 to kMaxSearchText bytes with something to search for
// (is_searchable)? If not, `error` says why.
inline constexpr size_t kMaxSearchText = 512;
bool check_search_text(std::string_view text, std::string& error);

// Is `conversation` a conversation id (single_<lo>_<hi>, group_<id>, world)? If not, `error` says why.
bool check_conversation(std::string_view conversation, std::string& error);

}  // namespace imlog::gw
