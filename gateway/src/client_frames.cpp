#include "client_frames.h"

#include <algorithm>

#include "imlog/engine/streams.h"
#include "imlog/gateway/ws_binary.h"
#include "imlog/projections/query.h"
#include "json.h"

namespace imlog::gw {
namespace {

constexpr size_t kMaxClientMsgId = 128;
constexpr uint64_t kDefaultSyncLimit = 100;
constexpr uint64_t kMaxSyncLimit = 200;

FrameError invalid(std::string message, std::string client_msg_id, std::string type) {
  return FrameError{"invalid", std::move(message), std::move(client_msg_id), std::move(type)};
}

ClientFrame decode_send_message(JsonFields& data, const std::string& error, size_t max_content_bytes) {
  SendMessageFrame m;
  std::string type_name;
  uint64_t sent_at = 0;
  bool ok = data.str("client_msg_id", m.client_msg_id, true, kMaxClientMsgId);
  ok = ok && data.str("conversation_id", m.conversation, true, 256) &&
       data.str("content", m.content, true, max_content_bytes) && data.str("message_type", type_name, false, 32) &&
       data.u64("sent_at", sent_at, false);
  if (!ok) return invalid("send-message: " + error, m.client_msg_id, "send-message");
  if (m.client_msg_id.empty()) return invalid("send-message: client_msg_id is empty", {}, "send-message");
  std::string bad_time;
  if (!check_sent_at(data.has("sent_at"), sent_at, bad_time)) {
    return invalid("send-message: " + bad_time, m.client_msg_id, "send-message");
  }
  m.sent_at = static_cast<int64_t>(sent_at);
  if (!parse_message_type(type_name, m.type)) {
    return invalid("send-message: message_type must be text, image or file", m.client_msg_id, "send-message");
  }
  std::string why;
  if (!check_conversation(m.conversation, why)) return invalid(why, m.client_msg_id, "send-message");
  return m;
}

ClientFrame decode_sync(JsonFields& data, const std::string& error) {
  SyncFrame s;
  uint64_t after_seq = 0, limit = kDefaultSyncLimit;
  if (!data.str("conversation_id", s.conversation, true, 256) || !data.u64("after_seq", after_seq, false) ||
      !data.u64("limit", limit, false)) {
    return invalid("sync: " + error, {}, "sync");
  }
  std::string why;
  if (!check_conversation(s.conversation, why)) return invalid(why, {}, "sync");
  if (limit < 1 || limit > kMaxSyncLimit) {
    return invalid("sync: limit must be an integer from 1 to " + std::to_string(kMaxSyncLimit) + ", got " +
                       std::to_string(limit),
                   {}, "sync");
  }
  // after_seq present (0 included): the messages after it, oldest first. Absent: the latest `limit`.
  if (data.has("after_seq")) s.after_seq = after_seq;
  s.limit = static_cast<uint32_t>(limit);
  return s;
}

ClientFrame decode_read(JsonFields& data, const std::string& error) {
  ReadFrame r;
  if (!data.str("conversation_id", r.conversation, true, 256) || !data.u64("seq_id", r.seq, true)) {
    return invalid("read: " + error, {}, "read");
  }
  std::string why;
  if (!check_conversation(r.conversation, why)) return invalid(why, {}, "read");
  return r;
}

ClientFrame decode_set_status(JsonFields& data, const std::string& error) {
  SetStatusFrame s;
  if (!data.str("status", s.status, true, 32)) return invalid("set-status: " + error, {}, "set-status");
  return s;
}

ClientFrame decode_search(JsonFields& data, const std::string& error) {
  SearchFrame s;
  uint64_t limit = s.limit;
  if (!data.str("q", s.text, true, kMaxSearchText) || !data.str("conversation_id", s.conversation, false, 256) ||
      !data.id("before", s.before_id, false) || !data.u64("limit", limit, false)) {
    return invalid("search: " + error, {}, "search");
  }
  std::string why;
  if (!check_search_text(s.text, why)) return invalid("search: " + why, {}, "search");
  if (!s.conversation.empty() && !check_conversation(s.conversation, why)) return invalid(why, {}, "search");
  if (limit < 1 || limit > kMaxSearchPage) {
    return invalid("search: limit must be an integer from 1 to " + std::to_string(kMaxSearchPage) + ", got " +
                       std::to_string(limit),
                   {}, "search");
  }
  s.limit = static_cast<uint32_t>(limit);
  return s;
}

}  // namespace

bool check_sent_at(bool present, uint64_t value, std::string& error) {
  if (!present) return true;
  if (value >= 1 && value <= kMaxSentAt) return true;
  error = "sent_at must be the first send's Unix time in milliseconds, an integer from 1 to " +
          std::to_string(kMaxSentAt) + ", got " + std::to_string(value);
  return false;
}

ClientFrame decode_client_frame(std::string_view text, size_t max_content_bytes) {
  if (!valid_utf8(text)) {
    return FrameError{"invalid_utf8", "the text frame is not valid UTF-8; frames are UTF-8 JSON", {}, {}};
  }
  JsonBody body;
  if (!body.parse(text)) return FrameError{std::string(body.parse_error_code()), body.error(), {}, {}};
  JsonFields root = body.fields();
  std::string type;
  if (!root.str("type", type, true, 64)) {
    return FrameError{"invalid_frame", body.error() + ": frames are {\"type\": ..., \"data\": {...}}", {}, {}};
  }
  JsonFields data(nullptr, nullptr);
  if (!root.object("data", data, false)) return FrameError{"invalid_frame", body.error(), {}, type};
  if (type == "ping") return PingFrame{};
  if (type == "send-message") return decode_send_message(data, body.error(), max_content_bytes);
  if (type == "sync") return decode_sync(data, body.error());
  if (type == "read") return decode_read(data, body.error());
  if (type == "set-status") return decode_set_status(data, body.error());
  if (type == "search") return decode_search(data, body.error());
  return FrameError{"unknown_type",
                    "unknown frame type `" + type + "`: use send-message, sync, read, set-status, search or ping", {},
                    type};
}

ClientFrame decode_binary_client_frame(std::string_view bytes, size_t max_content_bytes) {
  std::string json;
  WsBinaryError error;
  if (!ws_frame_from_binary(bytes, json, error)) return FrameError{error.code, error.message, {}, {}};
  return decode_client_frame(json, max_content_bytes);
}

bool parse_message_type(std::string_view name, fb::MessageType& out) {
  if (name.empty() || name == "text") out = fb::MessageType::Text;
  else if (name == "image") out = fb::MessageType::Image;
  else if (name == "file") out = fb::MessageType::File;
  else return false;
  return true;
}

bool check_search_text(std::string_view text, std::string& error) {
  if (text.empty() || text.size() > kMaxSearchText) {
    error = "q must be 1 to " + std::to_string(kMaxSearchText) + " bytes of text to find";
    return false;
  }
  if (!is_searchable(text)) {
    error = "q has nothing to search for: give a word of two or more letters or digits, or two or more "
            "Chinese, Japanese or Korean characters together";
    return false;
  }
  return true;
}

bool check_conversation(std::string_view conversation, std::string& error) {
  auto ref = parse_stream(conversation);
  if (!ref || !is_conversation(ref->kind)) {
    error = "`" + std::string(conversation) +
            "` is not a conversation id: use single_<lo>_<hi> (user ids ascending), group_<id> or world";
    return false;
  }
  return true;
}

}  // namespace imlog::gw
