// /api/v1/users, /friends, /blocks, /avatars: profiles, settings, search, friendship, blocking,
// presence and avatar images (docs/api/openapi.yaml, issue 6). Each write is one command on the
// user's own stream or on the one-to-one stream of the two users; presence is not a command (it
// lives in the SessionRegistry, presence.h); avatar bytes go to disk on the blocking pool
// (avatar.h).

#include <algorithm>
#include <memory>
#include <vector>

#include "avatar.h"
#include "handlers.h"
#include "presence.h"
#include "imlog/core/time_zone.h"
#include "imlog/engine/stream_state.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/query.h"

namespace imlog::gw {
namespace {

// Runs `fn` on the caller's registry worker (presence reads are registry round trips, kept off the
// I/O threads); answers 503 when that worker's queue is full.
void on_registry_worker(Services& svc, uint64_t caller, const Respond& respond, std::function<void()> fn) {
  if (svc.registry.post(caller, std::move(fn))) return;
  respond(counted_error(svc, 503, "unavailable", "the presence store is busy; retry shortly"));
}

// Answers with the user's profile, waiting briefly for a registration still being projected. Its
// presence shows to the user and their friends only (presence_visible).
void respond_user(Services& svc, uint64_t viewer, uint64_t user, Respond respond) {
  bool self = viewer == user;
  auto found = std::make_shared<Result<std::optional<UserView>>>(std::nullopt);
  retry_until(
      svc, self ? svc.config.read_model_wait : std::chrono::milliseconds(0),
      [&svc, user, found] {
        *found = svc.query.model().user(user);
        return !*found || found->value().has_value();
      },
      [&svc, viewer, user, self, found, respond = std::move(respond)](bool) {
        if (!*found) return respond(counted_error(svc, 503, "unavailable", found->error().message()));
        if (!found->value()) {
          return respond(counted_error(svc, 404, "not_found", "user " + std::to_string(user) + " does not exist"));
        }
        on_registry_worker(svc, viewer, respond, [&svc, viewer, user, self, found, respond] {
          uint64_t ids[] = {user};
          auto visible = presence_visible(svc, viewer, ids);
          bool show = visible && visible->contains(user);
          Presence presence = show ? presence_of(svc, user) : Presence{};
          JsonOut j;
          write_user(j, *found->value(), self, show ? &presence : nullptr);
          respond(json_reply(200, j.take()));
        });
      });
}

bool user_param(Services& svc, const ApiRequest& req, const Respond& respond, uint64_t& out) {
  if (parse_id(req.params.at(0), out)) return true;
  respond(counted_error(svc, 404, "not_found", "`" + req.params.at(0) + "` is not a user id"));
  return false;
}

// A command on the one-to-one stream of the caller and `other`; 204 on success.
template <class Cmd>
void on_pair(Services& svc, uint64_t me, uint64_t other, Cmd command, Respond respond) {
  if (other == me) return respond(invalid(svc, "that is you: name another user"));
  fb::CommandUnion cmd;
  cmd.Set(std::move(command));
  submit_and_respond(svc, std::move(respond), single_stream(me, other), me, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

void on_me(Services& svc, ApiRequest& req, Respond respond) { respond_user(svc, req.user_id, req.user_id, std::move(respond)); }

void on_user(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!user_param(svc, req, respond, id)) return;
  respond_user(svc, req.user_id, id, std::move(respond));
}

void on_update_me(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  fb::UpdateProfileT p;
  if (!f.str("nickname", p.nickname, false, 400) || !f.str("avatar_url", p.avatar_url, false, 4000) ||
      !f.str("signature", p.signature, false, 4000) || !f.str("email", p.email, false, 400)) {
    return respond(invalid(svc, body.error()));
  }
  if (f.has("nickname") && p.nickname.empty()) return respond(invalid(svc, "nickname cannot be empty"));
  uint64_t me = req.user_id;
  fb::CommandUnion cmd;
  cmd.Set(std::move(p));
  std::string trace = respond.trace_id();
  submit_command(svc, std::move(trace), user_stream(me), me, std::move(cmd),
                 [&svc, me, respond = std::move(respond)](Reply r) mutable {
                   if (!succeeded(r)) {
                     auto fl = failure_of(r);
                     return respond(counted_error(svc, fl.status, fl.code, fl.message));
                   }
                   respond(no_content());
                 });
}

// The longest conversation id: "single_" and two 20-digit ids joined by '_'.
constexpr size_t kMaxConversationIdBytes = 7 + 20 + 1 + 20;
constexpr size_t kMaxMutedPerRequest = 1000;

// `muted` / `unmuted`: at most kMaxMutedPerRequest conversation ids, each checked, so the
// settings hold nothing a conversation id cannot be. False with `error` naming the item.
bool conversation_list(JsonFields& f, const char* name, std::vector<std::string>& out, std::string& error) {
  if (!f.str_list(name, out, kMaxMutedPerRequest, kMaxConversationIdBytes)) return false;
  for (size_t i = 0; i < out.size(); ++i) {
    std::string why;
    if (!check_conversation(out[i], why)) {
      error = std::string(name) + "[" + std::to_string(i) + "]: " + why;
      return false;
    }
  }
  return true;
}

void on_update_settings(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  std::optional<bool> allow_search, push_enabled;
  std::optional<std::string> policy, time_zone;
  std::optional<int64_t> quiet_start, quiet_end;
  fb::UpdateSettingsT s;
  if (!f.opt_bool("allow_search", allow_search) || !f.opt_bool("push_enabled", push_enabled) ||
      !f.opt_str("message_policy", policy, 32) || !f.opt_i64("quiet_start_minute", quiet_start) ||
      !f.opt_i64("quiet_end_minute", quiet_end) || !f.opt_str("time_zone", time_zone, kMaxTimeZoneBytes)) {
    return respond(invalid(svc, body.error()));
  }
  // A zone of the system's zone database; a user who never set one is in UTC (set "UTC" to go back).
  if (time_zone && !known_time_zone(*time_zone)) {
    return respond(invalid(svc, "time_zone `" + *time_zone + "` is not an IANA time zone name (e.g. Europe/Paris or UTC)"));
  }
  if (time_zone) s.time_zone = *time_zone;
  std::string list_error;
  if (!conversation_list(f, "muted", s.muted, list_error) || !conversation_list(f, "unmuted", s.unmuted, list_error)) {
    return respond(invalid(svc, list_error.empty() ? body.error() : list_error));
  }
  if (allow_search) s.allow_search = *allow_search;
  if (push_enabled) s.push_enabled = *push_enabled;
  if (policy) {
    if (*policy == "everyone") s.message_policy = fb::MessagePolicy::Everyone;
    else if (*policy == "friends_only") s.message_policy = fb::MessagePolicy::FriendsOnly;
    else return respond(invalid(svc, "message_policy must be everyone or friends_only"));
  }
  for (auto [name, v, out] : {std::tuple{"quiet_start_minute", quiet_start, &s.quiet_start_minute},
                              std::tuple{"quiet_end_minute", quiet_end, &s.quiet_end_minute}}) {
    if (!v) continue;
    if (*v < -1 || *v >= 24 * 60) {
      return respond(invalid(svc, std::string(name) + " must be minutes in [0, 1440), or -1 to clear"));
    }
    *out = static_cast<int16_t>(*v);
  }
  uint64_t me = req.user_id;
  fb::CommandUnion cmd;
  cmd.Set(std::move(s));
  submit_and_respond(svc, std::move(respond), user_stream(me), me, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

// ---- push devices: commands on the user's own stream, read back from the read model ------------

void on_register_device(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  std::string platform;
  fb::RegisterDeviceT d;
  if (!f.str("platform", platform, true, 16) || !f.str("token", d.token, true, kMaxDeviceTokenBytes) ||
      !f.str("app_id", d.app_id, false, kMaxAppIdBytes)) {
    return respond(invalid(svc, body.error()));
  }
  if (!parse_push_platform(platform, d.platform)) return respond(invalid(svc, "platform must be apns, fcm or webhook"));
  if (auto why = check_device_token(d.platform, d.token); !why.empty()) return respond(invalid(svc, why));
  d.device_id = new_group_id();  // a random 53-bit id, as a group's; the engine keeps an existing token's id
  d.session_id = req.session_id;  // its logout removes the device
  uint64_t me = req.user_id;
  fb::CommandUnion cmd;
  cmd.Set(std::move(d));
  submit_and_respond(svc, std::move(respond), user_stream(me), me, std::move(cmd),
                     [](const fb::CommandReplyT& r) {
                       JsonOut j;
                       j.begin_object().field("device_id", r.result_id).end_object();
                       return json_reply(201, j.take());
                     });
}

// The caller's devices as the read model has them (eventually consistent: a device registered a
// moment ago may not be listed yet).
void on_devices(Services& svc, ApiRequest& req, Respond respond) {
  auto user = svc.query.model().user(req.user_id);
  if (!user) return respond(counted_error(svc, 503, "unavailable", user.error().message()));
  JsonOut j;
  j.begin_object().key("devices").begin_array();
  if (*user) {
    for (const auto& d : (*user)->devices) write_device(j, d);
  }
  j.end_array().end_object();
  respond(json_reply(200, j.take()));
}

// Only the caller's own devices are on their stream: another user's device id is not found (404).
void on_remove_device(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t id = 0;
  if (!parse_id(req.params.at(0), id)) {
    return respond(counted_error(svc, 404, "not_found", "`" + req.params.at(0) + "` is not a device id"));
  }
  uint64_t me = req.user_id;
  fb::CommandUnion cmd;
  cmd.Set(fb::RemoveDeviceT{{}, id});
  submit_and_respond(svc, std::move(respond), user_stream(me), me, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

void on_search(Services& svc, ApiRequest& req, Respond respond) {
  auto q = query_param(req.query, "q").value_or("");
  if (q.empty()) return respond(invalid(svc, "query parameter `q` (a username or nickname prefix) is required"));
  uint64_t after = 0, limit = 20;
  std::string error;
  if (!query_u64(req.query, "after_user_id", after, error) || !query_u64(req.query, "limit", limit, error, {1, 100})) {
    return respond(invalid(svc, error));
  }
  // One more than asked tells whether there is a next page.
  auto users = svc.query.model().search_users(q, after, static_cast<uint32_t>(limit + 1));
  if (!users) return respond(counted_error(svc, 503, "unavailable", users.error().message()));
  bool more = users->size() > limit;
  if (more) users->resize(limit);
  JsonOut j;
  j.begin_object().key("users").begin_array();
  for (const auto& u : *users) write_user(j, u, false);
  j.end_array();
  j.key("next_after_user_id");
  if (more) j.u64(users->back().user_id);
  else j.null();
  j.end_object();
  respond(json_reply(200, j.take()));
}

// ?status=friends|incoming|outgoing keeps only those; absent: all three.
void on_friends(Services& svc, ApiRequest& req, Respond respond) {
  auto status = query_param(req.query, "status");
  if (status && *status != "friends" && *status != "incoming" && *status != "outgoing") {
    return respond(invalid(svc, "query parameter `status` must be friends, incoming or outgoing"));
  }
  auto friends = svc.query.model().friends(req.user_id);
  if (!friends) return respond(counted_error(svc, 503, "unavailable", friends.error().message()));
  JsonOut j;
  j.begin_object().key("friends").begin_array();
  for (const auto& f : *friends) {
    if (!status || f.status == *status) write_friend(j, f);
  }
  j.end_array().end_object();
  respond(json_reply(200, j.take()));
}

void on_friend_groups(Services& svc, ApiRequest& req, Respond respond) {
  auto groups = svc.query.model().friend_groups(req.user_id);
  if (!groups) return respond(counted_error(svc, 503, "unavailable", groups.error().message()));
  JsonOut j;
  j.begin_object().key("groups").begin_array();
  for (const auto& g : *groups) j.str(g);
  j.end_array().end_object();
  respond(json_reply(200, j.take()));
}

void on_request_friend(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  uint64_t to = 0;
  std::string note;
  auto f = body.fields();
  if (!f.u64("user_id", to, true) || !f.str("note", note, false, 4000)) return respond(invalid(svc, body.error()));
  if (to == 0) return respond(invalid(svc, "user_id must be a user id"));
  on_pair(svc, req.user_id, to, fb::RequestFriendT{{}, to, std::move(note)}, std::move(respond));
}

void on_accept_friend(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t other = 0;
  if (!user_param(svc, req, respond, other)) return;
  on_pair(svc, req.user_id, other, fb::AcceptFriendT{{}, other}, std::move(respond));
}

void on_reject_friend(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t other = 0;
  if (!user_param(svc, req, respond, other)) return;
  on_pair(svc, req.user_id, other, fb::RejectFriendT{{}, other}, std::move(respond));
}

void on_remove_friend(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t other = 0;
  if (!user_param(svc, req, respond, other)) return;
  on_pair(svc, req.user_id, other, fb::RemoveFriendT{{}, other}, std::move(respond));
}

void on_set_friend_group(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t other = 0;
  if (!user_param(svc, req, respond, other)) return;
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  std::string group;
  if (!body.fields().str("group_name", group, true, 400)) return respond(invalid(svc, body.error()));
  uint64_t me = req.user_id;
  fb::CommandUnion cmd;
  cmd.Set(fb::SetFriendGroupT{{}, other, std::move(group)});
  submit_and_respond(svc, std::move(respond), user_stream(me), me, std::move(cmd),
                     [](const fb::CommandReplyT&) { return no_content(); });
}

void on_blocks(Services& svc, ApiRequest& req, Respond respond) {
  auto blocked = svc.query.model().blocked(req.user_id);
  if (!blocked) return respond(counted_error(svc, 503, "unavailable", blocked.error().message()));
  JsonOut j;
  j.begin_object().key("blocked").begin_array();
  for (uint64_t u : *blocked) j.u64(u);
  j.end_array().end_object();
  respond(json_reply(200, j.take()));
}

void on_block(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  uint64_t target = 0;
  if (!body.fields().u64("user_id", target, true)) return respond(invalid(svc, body.error()));
  if (target == 0) return respond(invalid(svc, "user_id must be a user id"));
  on_pair(svc, req.user_id, target, fb::BlockUserT{{}, target}, std::move(respond));
}

void on_unblock(Services& svc, ApiRequest& req, Respond respond) {
  uint64_t other = 0;
  if (!user_param(svc, req, respond, other)) return;
  on_pair(svc, req.user_id, other, fb::UnblockUserT{{}, other}, std::move(respond));
}

// PUT /users/me/status {status: online|away|busy} → the caller's presence now; friends online are told.
void on_set_status(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  std::string name;
  if (!body.fields().str("status", name, true, 32)) return respond(invalid(svc, body.error()));
  choose_status(svc, req.user_id, name, [&svc, respond](StatusChoice c) {
    if (c.http_status != 200) return respond(counted_error(svc, c.http_status, c.code, c.message));
    JsonOut j;
    write_presence(j, c.presence);
    respond(json_reply(200, j.take()));
  });
}

// GET /users/presence?ids=1,2,3 (at most kMaxPresenceIds) → {presence: [{user_id, status, last_seen}]};
// status "unknown" for users other than the caller and their friends (presence_visible).
void on_presence(Services& svc, ApiRequest& req, Respond respond) {
  constexpr size_t kMaxPresenceIds = 200;
  auto list = query_param(req.query, "ids").value_or("");
  std::vector<uint64_t> ids;
  for (size_t i = 0; i <= list.size();) {
    size_t j = std::min(list.find(',', i), list.size());
    uint64_t id = 0;
    if (!parse_id(std::string_view(list).substr(i, j - i), id)) {
      return respond(invalid(svc, "query parameter `ids` must be user ids separated by commas, e.g. ids=1,2,3"));
    }
    ids.push_back(id);
    if (ids.size() > kMaxPresenceIds) {
      return respond(invalid(svc, "at most " + std::to_string(kMaxPresenceIds) + " ids at once"));
    }
    i = j + 1;
  }
  on_registry_worker(svc, req.user_id, respond, [&svc, viewer = req.user_id, ids = std::move(ids), respond] {
    auto visible = presence_visible(svc, viewer, ids);
    if (!visible) return respond(counted_error(svc, 503, "unavailable", visible.error().message()));
    std::vector<Presence> out;
    svc.sessions.presence(ids, out);
    JsonOut j;
    j.begin_object().key("presence").begin_array();
    for (const auto& p : out) {
      if (visible->contains(p.user_id)) write_presence(j, p);
      else write_hidden_presence(j, p.user_id);
    }
    j.end_array().end_object();
    respond(json_reply(200, j.take()));
  });
}

// Whether `user` may upload an avatar now (one per avatar_upload_interval); if so, counts this one.
bool take_avatar_upload(Services& svc, uint64_t user) {
  int64_t now = svc.clock.now_ms(), interval = svc.config.avatar_upload_interval.count();
  std::lock_guard lock(svc.avatar_mu);
  if (svc.avatar_uploads.size() > 100'000) {  // forget uploads past the interval
    std::erase_if(svc.avatar_uploads, [&](const auto& kv) { return now - kv.second >= interval; });
  }
  auto [it, fresh] = svc.avatar_uploads.try_emplace(user, now);
  if (fresh) return true;
  if (now - it->second < interval) return false;
  it->second = now;
  return true;
}

// POST /users/me/avatar, the raw image as the body (avatar.h) → 200 {avatar_url}; 429 sooner than
// avatar_upload_interval after the user's last one.
void on_upload_avatar(Services& svc, ApiRequest& req, Respond respond) {
  const auto& dir = svc.config.avatar_dir;
  if (dir.empty()) return respond(counted_error(svc, 503, "unavailable", "avatar uploads are off: set gateway.avatar_dir"));
  if (req.body.size() > svc.config.avatar_max_bytes) {
    return respond(counted_error(svc, 413, "too_large",
                                 "an avatar is at most " + std::to_string(svc.config.avatar_max_bytes) + " bytes"));
  }
  auto ext = image_extension(req.body);
  if (!ext) {
    return respond(counted_error(svc, 415, "unsupported_media_type",
                                 "the body is not a PNG, JPEG, GIF or WebP image (judged by its first bytes); send "
                                 "the image file itself as the body"));
  }
  uint64_t me = req.user_id;
  if (!take_avatar_upload(svc, me)) {
    return respond(counted_error(svc, 429, "rate_limited",
                                 "one avatar upload per " +
                                     std::to_string(svc.config.avatar_upload_interval.count() / 1000) +
                                     " s; retry later"));
  }
  run_avatar_work(svc, respond, [&svc, me, dir, body = std::move(req.body), ext = std::string(*ext), respond] {
    auto name = store_avatar(dir, body, ext);
    if (!name) return respond(counted_error(svc, 500, "internal", name.error().message()));
    std::string url = "/avatars/" + *name;
    fb::UpdateProfileT p;
    p.avatar_url = url;
    fb::CommandUnion cmd;
    cmd.Set(std::move(p));
    submit_and_respond(svc, std::move(respond), user_stream(me), me, std::move(cmd),
                       [url](const fb::CommandReplyT&) {
                         JsonOut j;
                         j.begin_object().field("avatar_url", url).end_object();
                         return json_reply(200, j.take());
                       });
  });
}

// GET /avatars/{name}: the stored bytes, cacheable for good (the name is the content's hash).
void on_get_avatar(Services& svc, ApiRequest& req, Respond respond) {
  std::string name = req.params.at(0);
  if (!valid_avatar_name(name) || svc.config.avatar_dir.empty()) {
    return respond(counted_error(svc, 404, "not_found", "no avatar named `" + name + "`"));
  }
  run_avatar_work(svc, respond, [&svc, name, respond] {
    auto bytes = load_avatar(svc.config.avatar_dir, name);
    if (!bytes) return respond(counted_error(svc, 404, "not_found", "no avatar named `" + name + "`"));
    ApiReply r;
    r.body = std::move(*bytes);
    r.content_type = std::string(avatar_content_type(name));
    r.headers.emplace_back("Cache-Control", "public, max-age=31536000, immutable");
    r.headers.emplace_back("ETag", "\"" + name.substr(0, 64) + "\"");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    respond(std::move(r));
  });
}

}  // namespace

void add_user_routes(ApiRouter& r) {
  using A = ApiRouter::Auth;
  r.add(Method::get, "/api/v1/users/me", A::access, on_me);
  r.add(Method::patch, "/api/v1/users/me", A::access, on_update_me);
  r.add(Method::del, "/api/v1/users/me", A::access, on_erase_me);
  r.add(Method::patch, "/api/v1/users/me/settings", A::access, on_update_settings);
  r.add(Method::get, "/api/v1/users/search", A::access, on_search);
  r.add(Method::get, "/api/v1/users/presence", A::access, on_presence);
  r.add(Method::put, "/api/v1/users/me/status", A::access, on_set_status);
  r.add(Method::post, "/api/v1/users/me/avatar", A::access, on_upload_avatar);
  r.add(Method::get, "/avatars/{}", A::none, on_get_avatar);
  r.add(Method::get, "/api/v1/users/{}", A::access, on_user);
  r.add(Method::get, "/api/v1/friends", A::access, on_friends);
  r.add(Method::get, "/api/v1/friends/groups", A::access, on_friend_groups);
  r.add(Method::post, "/api/v1/friends/requests", A::access, on_request_friend);
  r.add(Method::post, "/api/v1/friends/requests/{}/accept", A::access, on_accept_friend);
  r.add(Method::post, "/api/v1/friends/requests/{}/reject", A::access, on_reject_friend);
  r.add(Method::del, "/api/v1/friends/{}", A::access, on_remove_friend);
  r.add(Method::put, "/api/v1/friends/{}/group", A::access, on_set_friend_group);
  r.add(Method::post, "/api/v1/devices", A::access, on_register_device);
  r.add(Method::get, "/api/v1/devices", A::access, on_devices);
  r.add(Method::del, "/api/v1/devices/{}", A::access, on_remove_device);
  r.add(Method::get, "/api/v1/blocks", A::access, on_blocks);
  r.add(Method::post, "/api/v1/blocks", A::access, on_block);
  r.add(Method::del, "/api/v1/blocks/{}", A::access, on_unblock);
}

}  // namespace imlog::gw
