// /api/v1/conversations and /api/v1/groups (docs/api/openapi.yaml): history, sending, read markers,
// recalls, groups and their members.

#include <algorithm>
#include <charconv>
#include <memory>

#include "handlers.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/query.h"
#include "push.h"
#include "search.h"

namespace imlog::gw {
namespace {

constexpr uint32_t kDefaultPage = 50;
constexpr uint32_t kMaxPage = 200;
constexpr uint32_t kMaxMemberPage = 1000;  // members and bans
constexpr int kGroupIdAttempts = 5;

// Answers 400 for a path id that is not a conversation.
bool conversation_param(Services& svc, const ApiRequest& req, const Respond& respond, std::string& out) {
  out = req.params.at(0);
  std::string why;
  if (check_conversation(out, why)) return true;
  respond(invalid(svc, why));
  return false;
}

bool group_param(Services& svc, const ApiRequest& req, const Respond& respond, uint64_t& out, size_t index = 0) {
  if (parse_id(req.params.at(index), out)) return true;
  respond(counted_error(svc, 404, "not_found", "`" + req.params.at(index) + "` is not a group id"));
  return false;
}

// Runs `then(first_seq)` once `user` may read `conversation` from `first_seq` on; answers 403 /
// 503 otherwise.
void with_read_access(Services& svc, const std::string& conversation, uint64_t user, const Respond& respond,
                      std::function<void(uint64_t first_seq)> then) {
  authorize_read(svc, conversation, user, [&svc, conversation, respond, then = std::move(then)](Result<uint64_t> from) {
    if (!from) return respond(counted_error(svc, 503, "unavailable", from.error().message()));
    if (*from == 0) {
      return respond(counted_error(svc, 403, "forbidden",
                                   "you may not read " + conversation + ": not a participant or member"));
    }
    then(*from);
  });
}

// ---- conversations ----------------------------------------------------------------------------

void on_conversations(Services& svc, ApiRequest& req, Respond respond) {
  auto list = svc.query.model().conversations(req.user_id);
  if (!list) return respond(counted_error(svc, 503, "unavailable", list.error().message()));
  std::stable_sort(list->begin(), list->end(),
                   [](const ConversationView& a, const ConversationView& b) { return a.updated_at > b.updated_at; });
  JsonOut j;
  j.begin_object().key("conversations").begin_array();
  for (const auto& c : *list) write_conversation(j, c);
  j.end_array().end_object();
  respond(json_reply(200, j.take()));
}

void on_history(Services& svc, ApiRequest& req, Respond respond) {
  std::string conversation;
  if (!conversation_param(svc, req, respond, conversation)) return;
  uint64_t after = 0, before = 0, limit = kDefaultPage;
  std::string error;
  if (!query_u64(req.query, "after_seq", after, error) || !query_u64(req.query, "before_seq", before, error) ||
      !query_u64(req.query, "limit", limit, error, {1, kMaxPage})) {
    return respond(invalid(svc, error));
  }
  HistoryRequest request;
  if (query_param(req.query, "after_seq")) request.after_seq = after;  // present, 0 included: read forward
  request.before_seq = before;
  request.limit = static_cast<uint32_t>(limit);
  if (request.after_seq && before > 0 && before <= after + 1) {
    return respond(invalid(svc, "before_seq must be greater than after_seq + 1"));
  }
  with_read_access(svc, conversation, req.user_id, respond, [&svc, conversation, request, respond](uint64_t first_seq) {
    auto page = svc.query.history(conversation, first_seq, request);
    if (!page) return respond(counted_error(svc, 503, "unavailable", page.error().message()));
    JsonOut j;
    j.begin_object();
    write_history(j, *page);
    j.end_object();
    respond(json_reply(200, j.take()));
  });
}

void on_send(Services& svc, ApiRequest& req, Respond respond) {
  std::string conversation;
  if (!conversation_param(svc, req, respond, conversation)) return;
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  std::string client_msg_id, content, type_name;
  uint64_t sent_at = 0;
  if (!f.str("client_msg_id", client_msg_id, false, 128) || !f.str("content", content, true, svc.config.max_body_bytes) ||
      !f.str("message_type", type_name, false, 32) || !f.u64("sent_at", sent_at, false)) {
    return respond(invalid(svc, body.error()));
  }
  std::string bad_time;
  if (!check_sent_at(f.has("sent_at"), sent_at, bad_time)) return respond(invalid(svc, bad_time));
  fb::MessageType type;
  if (!parse_message_type(type_name, type)) return respond(invalid(svc, "message_type must be text, image or file"));
  if (client_msg_id.empty()) {  // an id the gateway makes is never retried: bound its dedupe entry
    client_msg_id = new_client_msg_id();
    if (sent_at == 0) sent_at = static_cast<uint64_t>(svc.clock.now_ms());
  }
  fb::CommandUnion cmd;
  cmd.Set(fb::SendMessageT{{}, type, std::move(content)});
  submit_and_respond(svc, std::move(respond), conversation, req.user_id, client_msg_id, std::move(cmd),
                     [&svc, conversation, client_msg_id](const fb::CommandReplyT& r) {
                       if (r.status == fb::ReplyStatus::Accepted) svc.metrics.messages_sent++;
                       JsonOut j;
                       j.begin_object();
                       j.key("message_id").id_str(r.event_id);
                       j.field("seq_id", r.seq);
                       j.field("conversation_id", conversation);
                       j.field("client_msg_id", client_msg_id);
                       j.end_object();
                       return json_reply(201, j.take());
                     },
                     static_cast<int64_t>(sent_at));
}

void on_mark_read(Services& svc, ApiRequest& req, Respond respond) {
  std::string conversation;
  if (!conversation_param(svc, req, respond, conversation)) return;
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  uint64_t seq = 0;
  if (!body.fields().u64("seq_id", seq, true)) return respond(invalid(svc, body.error()));
  fb::CommandUnion cmd;
  cmd.Set(fb::MarkReadT{{}, seq});
  submit_and_respond(svc, std::move(respond), conversation, req.user_id, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

void on_recall(Services& svc, ApiRequest& req, Respond respond) {
  std::string conversation;
  if (!conversation_param(svc, req, respond, conversation)) return;
  uint64_t message_id = 0;
  auto [p, ec] = std::from_chars(req.params.at(1).data(), req.params.at(1).data() + req.params.at(1).size(), message_id);
  if (ec != std::errc() || p != req.params.at(1).data() + req.params.at(1).size() || message_id == 0) {
    return respond(invalid(svc, "`" + req.params.at(1) + "` is not a message id"));
  }
  fb::CommandUnion cmd;
  cmd.Set(fb::RecallMessageT{{}, message_id});
  submit_and_respond(svc, std::move(respond), conversation, req.user_id, "recall:" + std::to_string(message_id),
                     std::move(cmd), [](const fb::CommandReplyT&) { return no_content(); });
}

// GET /search/messages?q=&conversation_id=&before=&limit=: the messages the caller may read that
// match q, newest first, a page at a time (search.h).
void on_search_messages(Services& svc, ApiRequest& req, Respond respond) {
  SearchRequest request;
  request.user_id = req.user_id;
  request.text = query_param(req.query, "q").value_or("");
  request.conversation = query_param(req.query, "conversation_id").value_or("");
  uint64_t before = 0, limit = 20;
  std::string error;
  if (!check_search_text(request.text, error) ||
      (!request.conversation.empty() && !check_conversation(request.conversation, error)) ||
      !query_u64(req.query, "before", before, error, {1, UINT64_MAX}) ||
      !query_u64(req.query, "limit", limit, error, {1, kMaxSearchPage})) {
    return respond(invalid(svc, error));
  }
  request.before_id = before;
  request.limit = static_cast<uint32_t>(limit);
  find_messages(svc, std::move(request), [&svc, respond](SearchAnswer a) {
    if (a.status != 200) return respond(counted_error(svc, a.status, a.code, a.message));
    JsonOut j;
    j.begin_object();
    write_search_results(j, a.results);
    j.end_object();
    respond(json_reply(200, j.take()));
  });
}

// ---- retention ------------------------------------------------------------------------------------

// A retention body: {"keep": "forever" | "default"} or {"keep_days": N}, N in 1..kMaxKeepDays.
// `out` is the command's keep_days: 0 for ever, N days, nullopt back to the deployment default.
bool read_retention(JsonFields& f, std::string& error, std::optional<uint32_t>& out) {
  std::optional<std::string> keep;
  std::optional<int64_t> days;
  if (!f.opt_str("keep", keep, 16) || !f.opt_i64("keep_days", days)) return false;
  if (keep.has_value() == days.has_value()) {
    error = "give either keep (\"forever\" or \"default\") or keep_days (1 to " + std::to_string(kMaxKeepDays) + ")";
    return false;
  }
  if (days) {
    if (*days < 1 || *days > kMaxKeepDays) {
      error = "keep_days must be 1 to " + std::to_string(kMaxKeepDays) + " (or keep: \"forever\"), not " + std::to_string(*days);
      return false;
    }
    out = static_cast<uint32_t>(*days);
  } else if (*keep == "forever") {
    out = 0;
  } else if (*keep == "default") {
    out = std::nullopt;
  } else {
    error = "keep must be forever or default, not `" + *keep + "`";
    return false;
  }
  return true;
}

// PUT /conversations/{id}/retention: a group's owner or an admin sets the group's policy; in a
// one-to-one either user sets their own preference (the shorter of the two applies).
void on_set_retention(Services& svc, ApiRequest& req, Respond respond) {
  std::string conversation;
  if (!conversation_param(svc, req, respond, conversation)) return;
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  std::optional<uint32_t> keep;
  std::string error;
  if (!read_retention(f, error, keep)) return respond(invalid(svc, error.empty() ? body.error() : error));
  fb::CommandUnion cmd;
  cmd.Set(fb::SetRetentionT{{}, keep});
  submit_and_respond(svc, std::move(respond), conversation, req.user_id, std::move(cmd),
                     [conversation, keep](const fb::CommandReplyT& r) {
                       JsonOut j;
                       j.begin_object().field("conversation_id", conversation).field("seq_id", r.seq);
                       if (!keep) j.field("keep", "default");
                       else if (*keep == 0) j.field("keep", "forever");
                       else j.field("keep_days", static_cast<uint64_t>(*keep));
                       j.end_object();
                       return json_reply(200, j.take());
                     });
}

// An override as GET .../retention shows it: "keep_days": N (0 for ever), nothing when none.
void write_override(JsonOut& j, const std::optional<uint32_t>& keep) {
  if (keep) j.field("keep_days", *keep);
}

void write_retention(JsonOut& j, std::string_view conversation, const RetentionPolicy& p) {
  j.begin_object().field("conversation_id", conversation).field("keep_days", p.keep_days);
  j.field("source", p.source).field("default_keep_days", p.default_keep_days);
  auto ref = parse_stream(conversation);
  if (ref && ref->kind == StreamKind::group) {
    j.key("group").begin_object();
    write_override(j, p.overrides.a);
    j.end_object();
  } else if (ref && ref->kind == StreamKind::single) {
    j.key("users").begin_array();
    j.begin_object().field("user_id", ref->a);
    write_override(j, p.overrides.a);
    j.end_object().begin_object().field("user_id", ref->b);
    write_override(j, p.overrides.b);
    j.end_object().end_array();
  }
  j.end_object();
}

// GET /conversations/{id}/retention: the policy in force and the overrides behind it, for those who
// may read the conversation's history (the same answer as a history read for anyone else).
void on_get_retention(Services& svc, ApiRequest& req, Respond respond) {
  std::string conversation;
  if (!conversation_param(svc, req, respond, conversation)) return;
  with_read_access(svc, conversation, req.user_id, respond, [&svc, conversation, respond](uint64_t) {
    auto policy = svc.query.retention(conversation, svc.config.default_keep_days);
    if (!policy) return respond(counted_error(svc, 503, "unavailable", policy.error().message()));
    JsonOut j;
    write_retention(j, conversation, *policy);
    respond(json_reply(200, j.take()));
  });
}

// ---- groups -----------------------------------------------------------------------------------

// A group's settings as a request body names them: `join_policy` (private | public) and
// `history` (all | from_join), each optional.
struct GroupSettings {
  std::optional<fb::JoinPolicy> join_policy;
  std::optional<fb::HistoryRule> history;
};

// False, with `error` naming the field, for a value that is not a setting's name.
bool read_group_settings(JsonFields& f, std::string& error, GroupSettings& out) {
  std::optional<std::string> policy, history;
  if (!f.opt_str("join_policy", policy, 16) || !f.opt_str("history", history, 16)) return false;
  if (policy) {
    fb::JoinPolicy p{};
    if (!parse_join_policy(*policy, p)) {
      error = "join_policy must be private or public, not `" + *policy + "`";
      return false;
    }
    out.join_policy = p;
  }
  if (history) {
    fb::HistoryRule h{};
    if (!parse_history_rule(*history, h)) {
      error = "history must be all or from_join, not `" + *history + "`";
      return false;
    }
    out.history = h;
  }
  return true;
}

struct CreateGroupRequest {
  uint64_t owner = 0;
  std::string name, description;
  std::vector<uint64_t> members;
  GroupSettings settings;  // absent: private, and history from the join (the engine's defaults)
};

// Picks a random id; on the (unlikely) clash with an existing group, tries another.
void create_group_attempt(Services& svc, std::shared_ptr<CreateGroupRequest> g, Respond respond, int attempt) {
  uint64_t id = new_group_id();
  fb::CreateGroupT create{{}, id, g->name, g->description, g->members};
  if (g->settings.join_policy) create.join_policy = *g->settings.join_policy;
  if (g->settings.history) create.history = *g->settings.history;
  fb::CommandUnion cmd;
  cmd.Set(std::move(create));
  std::string trace = respond.trace_id();
  submit_command(svc, std::move(trace), group_stream(id), g->owner, std::move(cmd),
                 [&svc, g, id, attempt, respond = std::move(respond)](Reply r) mutable {
                   if (succeeded(r)) {
                     JsonOut j;
                     j.begin_object().field("group_id", id).field("conversation_id", group_stream(id));
                     j.field("seq_id", r->seq).end_object();
                     return respond(json_reply(201, j.take()));
                   }
                   auto fl = failure_of(r);
                   if (fl.code == "already_exists" && attempt + 1 < kGroupIdAttempts) {
                     return create_group_attempt(svc, g, std::move(respond), attempt + 1);
                   }
                   respond(counted_error(svc, fl.status, fl.code, fl.message));
                 });
}

void on_create_group(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  auto g = std::make_shared<CreateGroupRequest>();
  g->owner = req.user_id;
  if (!f.str("name", g->name, true, 400) || !f.str("description", g->description, false, 4000) ||
      !f.u64_list("members", g->members, 10000)) {
    return respond(invalid(svc, body.error()));
  }
  std::string error;
  if (!read_group_settings(f, error, g->settings)) return respond(invalid(svc, error.empty() ? body.error() : error));
  if (g->name.empty()) return respond(invalid(svc, "name is empty"));
  create_group_attempt(svc, std::move(g), std::move(respond), 0);
}

// PATCH /groups/{id} {join_policy?, history?}: the owner or an admin changes the settings.
void on_change_settings(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!group_param(svc, req, respond, id)) return;
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  GroupSettings settings;
  std::string error;
  if (!read_group_settings(f, error, settings)) return respond(invalid(svc, error.empty() ? body.error() : error));
  if (!settings.join_policy && !settings.history) {
    return respond(
        invalid(svc, "nothing to change: give join_policy (private, public), history (all, from_join) or both"));
  }
  fb::ChangeGroupSettingsT change;
  if (settings.join_policy) change.join_policy = *settings.join_policy;
  if (settings.history) change.history = *settings.history;
  fb::CommandUnion cmd;
  cmd.Set(std::move(change));
  submit_and_respond(svc, std::move(respond), group_stream(id), req.user_id, std::move(cmd),
                     [id](const fb::CommandReplyT& r) {
                       JsonOut j;
                       j.begin_object().field("group_id", id).field("conversation_id", group_stream(id));
                       j.field("seq_id", r.seq).end_object();
                       return json_reply(200, j.take());
                     });
}

void on_get_group(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!group_param(svc, req, respond, id)) return;
  auto found = std::make_shared<Result<std::optional<GroupView>>>(std::nullopt);
  retry_until(
      svc, svc.config.read_model_wait,
      [&svc, id, found] {
        *found = svc.query.model().group(id);
        return !*found || found->value().has_value();
      },
      [&svc, id, found, respond](bool) {
        if (!*found) return respond(counted_error(svc, 503, "unavailable", found->error().message()));
        if (!found->value()) return respond(counted_error(svc, 404, "not_found", "group " + std::to_string(id) + " does not exist"));
        JsonOut j;
        write_group(j, *found->value());
        respond(json_reply(200, j.take()));
      });
}

// JoinGroup: the caller joins (user 0) or adds `user`.
void join(Services& svc, uint64_t group, uint64_t actor, uint64_t user, Respond respond) {
  fb::CommandUnion cmd;
  cmd.Set(fb::JoinGroupT{{}, user});
  submit_and_respond(svc, std::move(respond), group_stream(group), actor, std::move(cmd),
                     [group, actor, user](const fb::CommandReplyT& r) {
                       JsonOut j;
                       j.begin_object().field("group_id", group).field("conversation_id", group_stream(group));
                       j.field("user_id", user ? user : actor).field("seq_id", r.seq).end_object();
                       return json_reply(200, j.take());
                     });
}

void on_join(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!group_param(svc, req, respond, id)) return;
  join(svc, id, req.user_id, 0, std::move(respond));
}

void on_add_member(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!group_param(svc, req, respond, id)) return;
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  uint64_t user = 0;
  if (!body.fields().u64("user_id", user, true)) return respond(invalid(svc, body.error()));
  if (user == 0) return respond(invalid(svc, "user_id must be a user id"));
  join(svc, id, req.user_id, user, std::move(respond));
}

void on_leave(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!group_param(svc, req, respond, id)) return;
  fb::CommandUnion cmd;
  cmd.Set(fb::LeaveGroupT{});
  submit_and_respond(svc, std::move(respond), group_stream(id), req.user_id, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

void on_members(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!group_param(svc, req, respond, id)) return;
  uint64_t after = 0, limit = 100;
  std::string error;
  if (!query_u64(req.query, "after_user_id", after, error) ||
      !query_u64(req.query, "limit", limit, error, {1, kMaxMemberPage})) {
    return respond(invalid(svc, error));
  }
  with_read_access(svc, group_stream(id), req.user_id, respond, [&svc, id, after, limit, respond](uint64_t) {
    auto members = svc.query.model().members(id, after, static_cast<uint32_t>(limit) + 1);
    if (!members) return respond(counted_error(svc, 503, "unavailable", members.error().message()));
    bool more = members->size() > limit;
    if (more) members->resize(limit);
    JsonOut j;
    j.begin_object().key("members").begin_array();
    for (const auto& m : *members) write_member(j, m);
    j.end_array().field("has_more", more).end_object();
    respond(json_reply(200, j.take()));
  });
}

void on_remove_member(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0, user = 0;
  if (!group_param(svc, req, respond, id)) return;
  if (!parse_id(req.params.at(1), user)) return respond(invalid(svc, "`" + req.params.at(1) + "` is not a user id"));
  fb::CommandUnion cmd;
  cmd.Set(fb::RemoveMemberT{{}, user});
  submit_and_respond(svc, std::move(respond), group_stream(id), req.user_id, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

// GET /groups/{id}/bans: the users removed and not unbanned, for the group's members (who see
// every removal in the history anyway).
void on_bans(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!group_param(svc, req, respond, id)) return;
  uint64_t after = 0, limit = 100;
  std::string error;
  if (!query_u64(req.query, "after_user_id", after, error) ||
      !query_u64(req.query, "limit", limit, error, {1, kMaxMemberPage})) {
    return respond(invalid(svc, error));
  }
  with_read_access(svc, group_stream(id), req.user_id, respond, [&svc, id, after, limit, respond](uint64_t) {
    auto bans = svc.query.model().bans(id, after, static_cast<uint32_t>(limit) + 1);
    if (!bans) return respond(counted_error(svc, 503, "unavailable", bans.error().message()));
    bool more = bans->size() > limit;
    if (more) bans->resize(limit);
    JsonOut j;
    j.begin_object().key("bans").begin_array();
    for (const auto& b : *bans) {
      j.begin_object().field("user_id", b.user_id).field("banned_by", b.banned_by).field("banned_at", b.banned_at);
      j.end_object();
    }
    j.end_array().field("has_more", more).end_object();
    respond(json_reply(200, j.take()));
  });
}

// DELETE /groups/{id}/bans/{user_id}: the owner or an admin lifts a ban.
void on_unban(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0, user = 0;
  if (!group_param(svc, req, respond, id)) return;
  if (!parse_id(req.params.at(1), user)) return respond(invalid(svc, "`" + req.params.at(1) + "` is not a user id"));
  fb::CommandUnion cmd;
  cmd.Set(fb::UnbanMemberT{{}, user});
  submit_and_respond(svc, std::move(respond), group_stream(id), req.user_id, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

void on_change_role(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0, user = 0;
  if (!group_param(svc, req, respond, id)) return;
  if (!parse_id(req.params.at(1), user)) return respond(invalid(svc, "`" + req.params.at(1) + "` is not a user id"));
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  std::string role_name;
  if (!body.fields().str("role", role_name, true, 16)) return respond(invalid(svc, body.error()));
  fb::Role role;
  if (role_name == "member") role = fb::Role::Member;
  else if (role_name == "admin") role = fb::Role::Admin;
  else if (role_name == "owner") role = fb::Role::Owner;
  else return respond(invalid(svc, "role must be member, admin or owner"));
  fb::CommandUnion cmd;
  cmd.Set(fb::ChangeRoleT{{}, user, role});
  submit_and_respond(svc, std::move(respond), group_stream(id), req.user_id, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

}  // namespace

void add_chat_routes(ApiRouter& r) {
  using A = ApiRouter::Auth;
  r.add(Method::get, "/api/v1/conversations", A::access, on_conversations);
  r.add(Method::get, "/api/v1/conversations/{}/messages", A::access, on_history);
  r.add(Method::post, "/api/v1/conversations/{}/messages", A::access, on_send);
  r.add(Method::post, "/api/v1/conversations/{}/read", A::access, on_mark_read);
  r.add(Method::post, "/api/v1/conversations/{}/messages/{}/recall", A::access, on_recall);
  r.add(Method::put, "/api/v1/conversations/{}/retention", A::access, on_set_retention);
  r.add(Method::get, "/api/v1/conversations/{}/retention", A::access, on_get_retention);
  r.add(Method::get, "/api/v1/search/messages", A::access, on_search_messages);
  r.add(Method::post, "/api/v1/groups", A::access, on_create_group);
  r.add(Method::get, "/api/v1/groups/{}", A::access, on_get_group);
  r.add(Method::patch, "/api/v1/groups/{}", A::access, on_change_settings);
  r.add(Method::post, "/api/v1/groups/{}/join", A::access, on_join);
  r.add(Method::post, "/api/v1/groups/{}/leave", A::access, on_leave);
  r.add(Method::get, "/api/v1/groups/{}/members", A::access, on_members);
  r.add(Method::post, "/api/v1/groups/{}/members", A::access, on_add_member);
  r.add(Method::del, "/api/v1/groups/{}/members/{}", A::access, on_remove_member);
  r.add(Method::put, "/api/v1/groups/{}/members/{}/role", A::access, on_change_role);
  r.add(Method::get, "/api/v1/groups/{}/bans", A::access, on_bans);
  r.add(Method::del, "/api/v1/groups/{}/bans/{}", A::access, on_unban);
}

}  // namespace imlog::gw
