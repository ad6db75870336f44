#include "ws_frames.h"

#include <algorithm>

#include "client_frames.h"
#include "commands.h"
#include "imlog/engine/streams.h"
#include "json.h"
#include "presence.h"
#include "push.h"
#include "search.h"

namespace imlog::gw {
namespace {

std::shared_ptr<const std::string> shared(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

void send_error(Services& svc, FrameConnection& conn, std::string_view code, std::string_view message,
                std::string_view client_msg_id = {}, std::string_view type = {}) {
  svc.metrics.error(code);
  conn.send(error_frame(code, message, client_msg_id, type));
}

// The engine's refusal, or the bus's failure, of a command this connection sent.
void answer_failure(Services& svc, FrameConnection& conn, const Failure& f, std::string_view client_msg_id,
                    std::string_view type, std::string_view trace_id) {
  svc.metrics.error(f.code);
  conn.answer(error_frame(f.code, f.message, client_msg_id, type, f.retry_after, trace_id));
}

// A message that waited past max_frame_wait: the gateway is behind, so it is refused unread — its
// sender retries it later (a send with the same client_msg_id) — and what comes after it can be
// read sooner.
void refuse_late(Services& svc, FrameConnection& conn, const ClientFrame& frame, std::chrono::milliseconds waited) {
  std::string_view client_msg_id, type;
  if (const auto* m = std::get_if<SendMessageFrame>(&frame)) {
    client_msg_id = m->client_msg_id;
    type = "send-message";
  } else if (std::holds_alternative<SyncFrame>(frame)) {
    type = "sync";
  } else if (std::holds_alternative<ReadFrame>(frame)) {
    type = "read";
  } else if (std::holds_alternative<SetStatusFrame>(frame)) {
    type = "set-status";
  } else if (std::holds_alternative<SearchFrame>(frame)) {
    type = "search";
  }
  svc.metrics.error("overloaded");
  svc.metrics.late_refusals++;
  conn.send(error_frame("overloaded",
                        "the server is behind: this message waited " + std::to_string(waited.count()) +
                            " ms before it could be read (at most " +
                            std::to_string(svc.config.max_frame_wait.count()) +
                            " ms); it was not handled: retry shortly" +
                            (client_msg_id.empty() ? "" : " with the same client_msg_id"),
                        client_msg_id, type, kOverloadedRetry));
}

void on_send_message(Services& svc, const std::shared_ptr<FrameConnection>& conn, SendMessageFrame m) {
  std::string conversation = std::move(m.conversation), client_msg_id = std::move(m.client_msg_id);
  conn->remember_sent(sent_key(conversation, client_msg_id));
  conn->command_sent();
  fb::CommandUnion cmd;
  cmd.Set(fb::SendMessageT{{}, m.type, std::move(m.content)});
  std::string trace = new_trace_id();
  submit_command(svc, trace, conversation, conn->user_id(), client_msg_id, std::move(cmd),
                 [&svc, conn, conversation, client_msg_id, trace](Reply r) {
                   if (succeeded(r)) {
                     if (r->status == fb::ReplyStatus::Accepted) svc.metrics.messages_sent++;
                     JsonOut j;
                     j.begin_object().field("type", "message-ack").key("data").begin_object();
                     j.field("client_msg_id", client_msg_id);
                     j.field("conversation_id", conversation);
                     j.key("message_id").id_str(r->event_id);
                     j.field("seq_id", r->seq);
                     j.field("trace_id", trace);
                     j.end_object().end_object();
                     return conn->answer(shared(j.take()));
                   }
                   answer_failure(svc, *conn, failure_of(r), client_msg_id, "send-message", trace);
                 },
                 m.sent_at);
}

void on_sync(Services& svc, const std::shared_ptr<FrameConnection>& conn, const SyncFrame& sync) {
  const std::string& conversation = sync.conversation;
  HistoryRequest request;
  request.after_seq = sync.after_seq;
  request.limit = sync.limit;
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

void on_read(Services& svc, const std::shared_ptr<FrameConnection>& conn, const ReadFrame& read) {
  const std::string& conversation = read.conversation;
  uint64_t seq = read.seq;
  conn->command_sent();
  fb::CommandUnion cmd;
  cmd.Set(fb::MarkReadT{{}, seq});
  std::string trace = new_trace_id();
  submit_command(svc, trace, conversation, conn->user_id(), std::move(cmd),
                 [&svc, conn, conversation, seq, trace](Reply r) {
                   if (!succeeded(r)) return answer_failure(svc, *conn, failure_of(r), {}, "read", trace);
                   JsonOut j;
                   j.begin_object().field("type", "read-ack").key("data").begin_object();
                   j.field("conversation_id", conversation).field("seq_id", seq).field("trace_id", trace);
                   j.end_object().end_object();
                   conn->answer(shared(j.take()));
                 });
}

// set-status {status} → status-ack {user_id, status, last_seen}; the same rules as PUT /users/me/status.
void on_set_status(Services& svc, const std::shared_ptr<FrameConnection>& conn, const SetStatusFrame& set) {
  const std::string& status = set.status;
  choose_status(svc, conn->user_id(), status, [&svc, conn](StatusChoice c) {
    if (c.http_status != 200) return send_error(svc, *conn, c.code, c.message, {}, "set-status");
    JsonOut j;
    j.begin_object().field("type", "status-ack").key("data");
    write_presence(j, c.presence);
    j.end_object();
    conn->send(shared(j.take()));
  });
}

// search {q, conversation_id?, before?, limit?} → search-result {q, conversation_id?, results,
// next_before}; the same rules as GET /search/messages, on the user's query thread.
void on_search(Services& svc, const std::shared_ptr<FrameConnection>& conn, SearchFrame s) {
  SearchRequest request{conn->user_id(), std::move(s.text), std::move(s.conversation), s.before_id, s.limit};
  bool queued = svc.queries.post(conn->user_id(), [&svc, conn, request = std::move(request)]() mutable {
    std::string text = request.text, conversation = request.conversation;
    find_messages(svc, std::move(request), [&svc, conn, text, conversation](SearchAnswer a) {
      if (a.status != 200) return send_error(svc, *conn, a.code, a.message, {}, "search");
      JsonOut j;
      j.begin_object().field("type", "search-result").key("data").begin_object();
      j.field("q", text);
      if (!conversation.empty()) j.field("conversation_id", conversation);
      write_search_results(j, a.results);
      j.end_object().end_object();
      conn->send(shared(j.take()));
    });
  });
  if (!queued) {
    svc.metrics.error("overloaded");
    conn->send(error_frame("overloaded", "the server has too many requests queued; retry shortly", {}, "search",
                           kOverloadedRetry));
  }
}

}  // namespace

std::shared_ptr<const std::string> error_frame(std::string_view code, std::string_view message,
                                               std::string_view client_msg_id, std::string_view request_type,
                                               std::chrono::milliseconds retry_after, std::string_view trace_id) {
  JsonOut j;
  j.begin_object().field("type", "error").key("data").begin_object();
  j.field("code", code).field("message", message);
  if (!client_msg_id.empty()) j.field("client_msg_id", client_msg_id);
  if (!request_type.empty()) j.field("request_type", request_type);
  if (retry_after.count() > 0) j.field("retry_after_ms", static_cast<int64_t>(retry_after.count()));
  if (!trace_id.empty()) j.field("trace_id", trace_id);
  j.end_object().end_object();
  return shared(j.take());
}

void handle_message(Services& svc, const std::shared_ptr<FrameConnection>& conn, std::string_view bytes, bool binary,
                    std::chrono::milliseconds waited) {
  ClientFrame frame = binary ? decode_binary_client_frame(bytes, svc.config.max_frame_bytes)
                             : decode_client_frame(bytes, svc.config.max_frame_bytes);
  if (auto* e = std::get_if<FrameError>(&frame)) {
    return send_error(svc, *conn, e->code, e->message, e->client_msg_id, e->request_type);
  }
  // A connection opened before its user erased their account reads and writes nothing more.
  if (svc.erased.contains(conn->user_id())) {
    const auto* send = std::get_if<SendMessageFrame>(&frame);
    return send_error(svc, *conn, "unauthorized", "user " + std::to_string(conn->user_id()) + " erased their account",
                      send ? std::string_view(send->client_msg_id) : std::string_view());
  }
  if (std::holds_alternative<PingFrame>(frame)) {
    JsonOut j;
    j.begin_object().field("type", "pong").key("data").begin_object().field("ts", svc.clock.now_ms()).end_object().end_object();
    return conn->send(shared(j.take()));
  }
  if (svc.config.max_frame_wait.count() > 0 && waited > svc.config.max_frame_wait) {
    return refuse_late(svc, *conn, frame, waited);
  }
  if (auto* m = std::get_if<SendMessageFrame>(&frame)) return on_send_message(svc, conn, std::move(*m));
  if (auto* s = std::get_if<SyncFrame>(&frame)) return on_sync(svc, conn, *s);
  if (auto* s = std::get_if<SetStatusFrame>(&frame)) return on_set_status(svc, conn, *s);
  if (auto* s = std::get_if<SearchFrame>(&frame)) return on_search(svc, conn, std::move(*s));
  on_read(svc, conn, std::get<ReadFrame>(frame));
}

}  // namespace imlog::gw
