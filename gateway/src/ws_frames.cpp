#include "ws_frames.h"

#include <algorithm>

#include "commands.h"
#include "imlog/engine/streams.h"
#include "json.h"
#include "presence.h"
#include "push.h"

namespace imlog::gw {
namespace {

constexpr size_t kMaxClientMsgId = 128;
constexpr uint32_t kDefaultSyncLimit = 100;

std::shared_ptr<const std::string> shared(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

void send_error(Services& svc, FrameConnection& conn, std::string_view code, std::string_view message,
                std::string_view client_msg_id = {}, std::string_view type = {}) {
  svc.metrics.error(code);
  conn.send(error_frame(code, message, client_msg_id, type));
}

// The engine's refusal, or the bus's failure, of a command this connection sent.
void answer_failure(Services& svc, FrameConnection& conn, const Failure& f, std::string_view client_msg_id,
                    std::string_view type) {
  svc.metrics.error(f.code);
  conn.answer(error_frame(f.code, f.message, client_msg_id, type, f.retry_after));
}

void on_send_message(Services& svc, const std::shared_ptr<FrameConnection>& conn, JsonFields& data,
                     const std::string& error) {
  std::string conversation, client_msg_id, content, type_name;
  bool ok = data.str("client_msg_id", client_msg_id, true, kMaxClientMsgId);
  ok = ok && data.str("conversation_id", conversation, true, 256) &&
       data.str("content", content, true, svc.config.max_frame_bytes) &&
       data.str("message_type", type_name, false, 32);
  if (!ok) return send_error(svc, *conn, "invalid", "send-message: " + error, client_msg_id, "send-message");
  if (client_msg_id.empty()) {
    return send_error(svc, *conn, "invalid", "send-message: client_msg_id is empty", {}, "send-message");
  }
  fb::MessageType type;
  if (!parse_message_type(type_name, type)) {
    return send_error(svc, *conn, "invalid", "send-message: message_type must be text, image or file",
                      client_msg_id, "send-message");
  }
  std::string why;
  if (!check_conversation(conversation, why)) return send_error(svc, *conn, "invalid", why, client_msg_id, "send-message");
  conn->remember_sent(sent_key(conversation, client_msg_id));
  conn->command_sent();
  fb::CommandUnion cmd;
  cmd.Set(fb::SendMessageT{{}, type, std::move(content)});
  submit_command(svc, conversation, conn->user_id(), client_msg_id, std::move(cmd),
                 [&svc, conn, conversation, client_msg_id](Reply r) {
                   if (succeeded(r)) {
                     if (r->status == fb::ReplyStatus::Accepted) svc.metrics.messages_sent++;
                     JsonOut j;
                     j.begin_object().field("type", "message-ack").key("data").begin_object();
                     j.field("client_msg_id", client_msg_id);
                     j.field("conversation_id", conversation);
                     j.key("message_id").id_str(r->event_id);
                     j.field("seq_id", r->seq);
                     j.end_object().end_object();
                     return conn->answer(shared(j.take()));
                   }
                   answer_failure(svc, *conn, failure_of(r), client_msg_id, "send-message");
                 });
}

void on_sync(Services& svc, const std::shared_ptr<FrameConnection>& conn, JsonFields& data,
             const std::string& error) {
  std::string conversation;
  uint64_t after_seq = 0, limit = kDefaultSyncLimit;
  if (!data.str("conversation_id", conversation, true, 256) || !data.u64("after_seq", after_seq, false) ||
      !data.u64("limit", limit, false)) {
    return send_error(svc, *conn, "invalid", "sync: " + error, {}, "sync");
  }
  std::string why;
  if (!check_conversation(conversation, why)) return send_error(svc, *conn, "invalid", why, {}, "sync");
  // after_seq present (0 included): the messages after it, oldest first (has_more: more after the
  // page). Absent: the latest `limit` (has_more: older ones exist; page back over REST).
  HistoryRequest request;
  if (data.has("after_seq")) request.after_seq = after_seq;
  request.limit = static_cast<uint32_t>(std::clamp<uint64_t>(limit, 1, 200));
  // The read model is queried on the user's query thread, never on this I/O thread.
  bool queued = svc.queries.post(conn->user_id(), [&svc, conn, conversation, request] {
    authorize_read(svc, conversation, conn->user_id(),
                   [&svc, conn, conversation, request](Result<uint64_t> from) {
                     if (!from) return send_error(svc, *conn, "unavailable", from.error().message(), {}, "sync");
                     if (*from == 0) {
                       return send_error(svc, *conn, "forbidden",
                                         "you may not read " + conversation + " (not a participant or member)", {}, "sync");
                     }
                     auto page = svc.query.history(conversation, *from, request);
                     if (!page) return send_error(svc, *conn, "unavailable", page.error().message(), {}, "sync");
                     JsonOut j;
                     j.begin_object().field("type", "sync-result").key("data").begin_object();
                     j.field("conversation_id", conversation);
                     if (request.after_seq) j.field("after_seq", *request.after_seq);
                     write_history(j, *page);
                     j.end_object().end_object();
                     conn->send(shared(j.take()));
                   });
  });
  if (!queued) {
    svc.metrics.error("overloaded");
    conn->send(error_frame("overloaded", "the server has too many requests queued; retry shortly", {}, "sync",
                           kOverloadedRetry));
  }
}

void on_read(Services& svc, const std::shared_ptr<FrameConnection>& conn, JsonFields& data,
             const std::string& error) {
  std::string conversation;
  uint64_t seq = 0;
  if (!data.str("conversation_id", conversation, true, 256) || !data.u64("seq_id", seq, true)) {
    return send_error(svc, *conn, "invalid", "read: " + error, {}, "read");
  }
  std::string why;
  if (!check_conversation(conversation, why)) return send_error(svc, *conn, "invalid", why, {}, "read");
  conn->command_sent();
  fb::CommandUnion cmd;
  cmd.Set(fb::MarkReadT{{}, seq});
  submit_command(svc, conversation, conn->user_id(), new_client_msg_id(), std::move(cmd),
                 [&svc, conn, conversation, seq](Reply r) {
                   if (!succeeded(r)) return answer_failure(svc, *conn, failure_of(r), {}, "read");
                   JsonOut j;
                   j.begin_object().field("type", "read-ack").key("data").begin_object();
                   j.field("conversation_id", conversation).field("seq_id", seq);
                   j.end_object().end_object();
                   conn->answer(shared(j.take()));
                 });
}

// set-status {status} → status-ack {user_id, status, last_seen}; the same rules as PUT /users/me/status.
void on_set_status(Services& svc, const std::shared_ptr<FrameConnection>& conn, JsonFields& data,
                   const std::string& error) {
  std::string status;
  if (!data.str("status", status, true, 32)) return send_error(svc, *conn, "invalid", "set-status: " + error, {}, "set-status");
  choose_status(svc, conn->user_id(), status, [&svc, conn](StatusChoice c) {
    if (c.http_status != 200) return send_error(svc, *conn, c.code, c.message, {}, "set-status");
    JsonOut j;
    j.begin_object().field("type", "status-ack").key("data");
    write_presence(j, c.presence);
    j.end_object();
    conn->send(shared(j.take()));
  });
}

}  // namespace

std::shared_ptr<const std::string> error_frame(std::string_view code, std::string_view message,
                                               std::string_view client_msg_id, std::string_view request_type,
                                               std::chrono::milliseconds retry_after) {
  JsonOut j;
  j.begin_object().field("type", "error").key("data").begin_object();
  j.field("code", code).field("message", message);
  if (!client_msg_id.empty()) j.field("client_msg_id", client_msg_id);
  if (!request_type.empty()) j.field("request_type", request_type);
  if (retry_after.count() > 0) j.field("retry_after_ms", static_cast<int64_t>(retry_after.count()));
  j.end_object().end_object();
  return shared(j.take());
}

void handle_text_message(Services& svc, const std::shared_ptr<FrameConnection>& conn, std::string_view text) {
  if (!valid_utf8(text)) {
    return send_error(svc, *conn, "invalid_utf8", "the text frame is not valid UTF-8; frames are UTF-8 JSON");
  }
  JsonBody body;
  if (!body.parse(text)) return send_error(svc, *conn, body.parse_error_code(), body.error());
  JsonFields root = body.fields();
  std::string type;
  if (!root.str("type", type, true, 64)) {
    return send_error(svc, *conn, "invalid_frame", body.error() + ": frames are {\"type\": ..., \"data\": {...}}");
  }
  JsonFields data(nullptr, nullptr);
  if (!root.object("data", data, false)) return send_error(svc, *conn, "invalid_frame", body.error(), {}, type);

  if (type == "ping") {
    JsonOut j;
    j.begin_object().field("type", "pong").key("data").begin_object().field("ts", svc.clock.now_ms()).end_object().end_object();
    return conn->send(shared(j.take()));
  }
  if (type != "send-message" && type != "sync" && type != "read" && type != "set-status") {
    return send_error(svc, *conn, "unknown_type",
                      "unknown frame type `" + type + "`: use send-message, sync, read, set-status or ping", {}, type);
  }
  if (type == "send-message") return on_send_message(svc, conn, data, body.error());
  if (type == "sync") return on_sync(svc, conn, data, body.error());
  if (type == "set-status") return on_set_status(svc, conn, data, body.error());
  on_read(svc, conn, data, body.error());
}

}  // namespace imlog::gw
