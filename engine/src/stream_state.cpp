#include "imlog/engine/stream_state.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "imlog/core/bytes.h"
#include "imlog/core/utf8.h"
#include "imlog/engine/message_ids.h"

namespace imlog {
namespace {

using K = StreamKind;

std::string id_str(uint64_t id) { return std::to_string(id); }

bool valid_username(std::string_view name) {
  if (name.size() < 3 || name.size() > 32) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// Checks a free-text field: at most `max` bytes (too_large) of valid UTF-8 (invalid). nullopt: fine.
std::optional<Decision> check_text(std::string_view field, std::string_view value, uint64_t max) {
  if (value.size() > max) {
    return Decision::refuse_stateless(Refusal::too_large, std::string(field) + " is " + std::to_string(value.size()) +
                                                    " bytes; the limit is " + std::to_string(max));
  }
  if (!valid_utf8(value))
    return Decision::refuse_stateless(Refusal::invalid, std::string(field) + " is not valid UTF-8");
  return std::nullopt;
}

template <class T>
Decision accept(T event, bool timeline = true) {
  Decision d;
  d.kind = Decision::Kind::accept;
  d.event.Set(std::move(event));
  d.timeline = timeline;
  return d;
}

bool is_member(const StreamState& s, uint64_t user) { return s.members.contains(user); }

fb::Role role_of(const StreamState& s, uint64_t user) {
  auto it = s.members.find(user);
  return it == s.members.end() ? fb::Role::Member : it->second;
}

// A member who runs the group: its owner or an admin.
bool is_manager(const StreamState& s, uint64_t user) {
  return is_member(s, user) && role_of(s, user) != fb::Role::Member;
}

bool known(fb::JoinPolicy p) { return p >= fb::JoinPolicy::MIN && p <= fb::JoinPolicy::MAX; }
bool known(fb::HistoryRule r) { return r >= fb::HistoryRule::MIN && r <= fb::HistoryRule::MAX; }

// ---- names_<bucket> ---------------------------------------------------------------------------

// Whether the name `holder` claimed is free again: they erased their account at least the grace
// period ago (docs/data-lifecycle.md, "Erasure").
bool released(uint64_t holder, const DecideContext& ctx) {
  int64_t erased_at = ctx.directory.user(holder).erased_at_ms;
  return erased_at > 0 && ctx.now_ms - erased_at >= ctx.limits.username_grace_ms;
}

Decision decide_names(const StreamRef& ref, const StreamState& s, const fb::CommandEnvelope& c,
                      const DecideContext& ctx) {
  auto* cmd = c.command_as_RegisterUser();
  if (!cmd) return Decision::refuse_stateless(Refusal::wrong_stream, "a names_ stream takes only RegisterUser");
  auto name = sv(cmd->username());
  if (!valid_username(name)) {
    return Decision::refuse_stateless(Refusal::invalid,
                            "username must be 3 to 32 characters of letters, digits, _ . -");
  }
  if (name_bucket(name) != ref.a) {
    return Decision::refuse_stateless(Refusal::wrong_stream,
                            "username `" + std::string(name) + "` belongs to " + names_stream(name));
  }
  if (sv(cmd->password_hash()).empty()) return Decision::refuse_stateless(Refusal::invalid, "password hash is empty");
  if (auto bad = check_text("nickname", sv(cmd->nickname()), ctx.limits.max_name_bytes))
    return std::move(*bad);
  if (auto holder = ctx.names ? ctx.names->holder(name) : std::nullopt; holder && !released(*holder, ctx)) {
    return Decision::refuse(Refusal::already_exists, "username `" + std::string(name) + "` is taken");
  }
  fb::UserRegisteredT ev;
  ev.user_id = user_id_for(static_cast<uint32_t>(ref.a), s.last_seq + 1);
  ev.username = name;
  ev.password_hash = sv(cmd->password_hash());
  ev.nickname = cmd->nickname() && cmd->nickname()->size() ? sv(cmd->nickname()) : name;
  ev.email = sv(cmd->email());
  auto d = accept(std::move(ev));
  d.result_id = d.event.AsUserRegistered()->user_id;
  return d;
}

// ---- user_<id> --------------------------------------------------------------------------------

// An IANA name's shape ("Europe/Paris", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT+5");
// whether the zone exists is the gateway's check (it reads the zone database; decide does no I/O).
bool time_zone_shaped(std::string_view name) {
  if (name.empty() || name.size() > kMaxTimeZoneBytes || name.starts_with('/') || name.find("..") != std::string_view::npos) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '/' ||
           c == '-' || c == '+';
  });
}

bool app_id_shaped(std::string_view id) {
  return id.size() <= kMaxAppIdBytes && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
         });
}

// The device of `state` with this platform and token, or 0.
uint64_t device_with_token(const StreamState& state, fb::PushPlatform platform, std::string_view token) {
  for (const auto& [id, d] : state.devices) {
    if (d.platform == platform && d.token == token) return id;
  }
  return 0;
}

Decision decide_register_device(const StreamRef& ref, const StreamState& state, const fb::RegisterDevice& cmd,
                                const EngineLimits& lim) {
  auto platform = cmd.platform();
  if (platform < fb::PushPlatform::MIN || platform > fb::PushPlatform::MAX) {
    return Decision::refuse_stateless(Refusal::invalid, "platform must be apns, fcm or webhook");
  }
  if (auto why = check_device_token(platform, sv(cmd.token())); !why.empty()) {
    return Decision::refuse_stateless(Refusal::invalid, std::move(why));
  }
  if (!app_id_shaped(sv(cmd.app_id()))) {
    return Decision::refuse_stateless(Refusal::invalid, "app_id is at most 255 characters of [A-Za-z0-9._-]");
  }
  uint64_t id = device_with_token(state, platform, sv(cmd.token()));
  if (id == 0) {
    if (cmd.device_id() == 0) return Decision::refuse(Refusal::invalid, "device_id must be non-zero");
    if (state.devices.contains(cmd.device_id())) return Decision::refuse(Refusal::already_exists, "device id in use");
    if (state.devices.size() >= lim.max_devices) {
      return Decision::refuse(Refusal::too_large, "a user has at most " + std::to_string(lim.max_devices) +
                                                      " devices; remove one first");
    }
    id = cmd.device_id();
  }
  if (sv(cmd.session_id()).size() > kMaxSessionIdBytes) {
    return Decision::refuse(Refusal::invalid, "session_id is at most " + std::to_string(kMaxSessionIdBytes) + " bytes");
  }
  auto d = accept(fb::DeviceRegisteredT{{}, ref.a, id, platform, std::string(sv(cmd.token())),
                                        std::string(sv(cmd.app_id())), std::string(sv(cmd.session_id()))});
  d.result_id = id;
  return d;
}

Decision decide_user(const StreamRef& ref, const StreamState& state, const fb::CommandEnvelope& c,
                     const DecideContext& ctx) {
  if (c.actor() != ref.a) {
    return Decision::refuse_stateless(Refusal::forbidden,
                            "only user " + id_str(ref.a) + " writes user_" + id_str(ref.a));
  }
  if (state.erased) return Decision::refuse(Refusal::not_found, "user " + id_str(ref.a) + " was erased");
  const auto& lim = ctx.limits;
  switch (c.command_type()) {
    case fb::Command::EraseUser:
      return accept(fb::UserErasedT{{}, ref.a});
    case fb::Command::UpdateProfile: {
      auto* cmd = c.command_as_UpdateProfile();
      for (auto [field, value, max] :
           {std::tuple{"nickname", sv(cmd->nickname()), uint64_t{lim.max_name_bytes}},
            std::tuple{"avatar_url", sv(cmd->avatar_url()), uint64_t{lim.max_text_bytes}},
            std::tuple{"signature", sv(cmd->signature()), uint64_t{lim.max_text_bytes}},
            std::tuple{"email", sv(cmd->email()), uint64_t{lim.max_name_bytes}}}) {
        if (auto bad = check_text(field, value, max)) return std::move(*bad);
      }
      if (cmd->nickname() && cmd->nickname()->size() == 0) {
        return Decision::refuse_stateless(Refusal::invalid, "nickname cannot be empty");
      }
      fb::ProfileUpdatedT ev;
      ev.user_id = ref.a;
      if (cmd->nickname()) ev.nickname = sv(cmd->nickname());
      if (cmd->avatar_url()) ev.avatar_url = sv(cmd->avatar_url());
      if (cmd->signature()) ev.signature = sv(cmd->signature());
      if (cmd->email()) ev.email = sv(cmd->email());
      return accept(std::move(ev));
    }
    case fb::Command::UpdateSettings: {
      auto* cmd = c.command_as_UpdateSettings();
      fb::SettingsUpdatedT ev;
      ev.user_id = ref.a;
      ev.allow_search = cmd->allow_search();
      ev.message_policy = cmd->message_policy();
      if (auto p = ev.message_policy; p && (*p < fb::MessagePolicy::MIN || *p > fb::MessagePolicy::MAX)) {
        return Decision::refuse_stateless(Refusal::invalid, "message_policy must be everyone or friends_only");
      }
      ev.push_enabled = cmd->push_enabled();
      ev.quiet_start_minute = cmd->quiet_start_minute();
      ev.quiet_end_minute = cmd->quiet_end_minute();
      for (auto m : {ev.quiet_start_minute, ev.quiet_end_minute}) {
        if (m.has_value() && (*m < -1 || *m >= 24 * 60)) {
          return Decision::refuse_stateless(Refusal::invalid, "quiet hours are minutes in [0, 1440), or -1 to clear");
        }
      }
      if (cmd->muted())
        for (auto* m : *cmd->muted()) ev.muted.emplace_back(sv(m));
      if (cmd->unmuted())
        for (auto* m : *cmd->unmuted()) ev.unmuted.emplace_back(sv(m));
      if (cmd->time_zone()) {
        if (!time_zone_shaped(sv(cmd->time_zone()))) {
          return Decision::refuse_stateless(Refusal::invalid, "time_zone must be an IANA time zone name such as Europe/Paris");
        }
        ev.time_zone = sv(cmd->time_zone());
      }
      return accept(std::move(ev));
    }
    case fb::Command::RegisterDevice:
      return decide_register_device(ref, state, *c.command_as_RegisterDevice(), lim);
    case fb::Command::RemoveDevice: {
      uint64_t id = c.command_as_RemoveDevice()->device_id();
      if (!state.devices.contains(id)) return Decision::refuse(Refusal::not_found, "no device " + id_str(id));
      return accept(fb::DeviceRemovedT{{}, ref.a, id});
    }
    case fb::Command::SetFriendGroup: {
      auto* cmd = c.command_as_SetFriendGroup();
      if (cmd->friend_id() == 0 || cmd->friend_id() == ref.a) {
        return Decision::refuse_stateless(Refusal::invalid, "friend_id must be another user");
      }
      if (auto bad = check_text("group_name", sv(cmd->group_name()), lim.max_name_bytes))
        return std::move(*bad);
      return accept(fb::FriendGroupSetT{{}, ref.a, cmd->friend_id(), std::string(sv(cmd->group_name()))});
    }
    case fb::Command::RevokeRefreshToken: {
      auto* cmd = c.command_as_RevokeRefreshToken();
      auto id = sv(cmd->token_id());
      if (id.empty() || id.size() > 128)
        return Decision::refuse_stateless(Refusal::invalid, "token_id must be 1 to 128 bytes");
      if (sv(cmd->ended_session()).size() > kMaxSessionIdBytes) {
        return Decision::refuse_stateless(Refusal::invalid,
                                "ended_session is at most " + std::to_string(kMaxSessionIdBytes) + " bytes");
      }
      fb::RefreshTokenRevokedT revoked{{}, ref.a, std::string(id), cmd->expires_at_ms(),
                                       std::string(sv(cmd->ended_session())), {}};
      if (!revoked.ended_session.empty()) {  // a logout: the session's devices go with it
        for (const auto& [device, d] : state.devices) {
          if (d.session == revoked.ended_session) revoked.removed_devices.push_back(device);
        }
      }
      return accept(std::move(revoked));
    }
    default:
      return Decision::refuse_stateless(Refusal::wrong_stream, std::string(command_type_name(c.command_type())) +
                                                         " does not belong on a user stream");
  }
}

// ---- single_<lo>_<hi>: friendship and blocks ----------------------------------------------------

Decision decide_relationship(const StreamRef& ref, const StreamState& s, const fb::CommandEnvelope& c,
                             uint64_t actor, uint64_t other, const DecideContext& ctx) {
  bool actor_is_lo = actor == ref.a;
  bool actor_blocked_other = actor_is_lo ? s.lo_blocks_hi : s.hi_blocks_lo;
  bool other_blocked_actor = actor_is_lo ? s.hi_blocks_lo : s.lo_blocks_hi;
  Link pending_from_actor = actor_is_lo ? Link::pending_from_lo : Link::pending_from_hi;
  Link pending_from_other = actor_is_lo ? Link::pending_from_hi : Link::pending_from_lo;
  auto target_is_other = [&](uint64_t target) { return target == other; };
  switch (c.command_type()) {
    case fb::Command::RequestFriend: {
      auto* cmd = c.command_as_RequestFriend();
      if (!target_is_other(cmd->to()))
        return Decision::refuse_stateless(Refusal::invalid, "`to` must be the other user of the stream");
      if (!ctx.directory.user(other).exists)
        return Decision::refuse(Refusal::not_found, "user " + id_str(other) + " does not exist");
      if (other_blocked_actor)
        return Decision::refuse(Refusal::blocked, "user " + id_str(other) + " has blocked you");
      if (actor_blocked_other)
        return Decision::refuse(Refusal::you_blocked,
                                "you blocked user " + id_str(other) + "; unblock first");
      if (s.link == Link::friends) return Decision::refuse(Refusal::already_friends, "already friends");
      if (s.link == pending_from_actor)
        return Decision::refuse(Refusal::already_requested, "a request is already pending");
      if (auto bad = check_text("note", sv(cmd->note()), ctx.limits.max_text_bytes)) return std::move(*bad);
      // Both asked: the second request accepts the first.
      if (s.link == pending_from_other) return accept(fb::FriendAcceptedT{{}, actor, other});
      return accept(fb::FriendRequestedT{{}, actor, other, std::string(sv(cmd->note()))});
    }
    case fb::Command::AcceptFriend:
    case fb::Command::RejectFriend: {
      bool accepting = c.command_type() == fb::Command::AcceptFriend;
      uint64_t requester =
          accepting ? c.command_as_AcceptFriend()->requester() : c.command_as_RejectFriend()->requester();
      if (!target_is_other(requester))
        return Decision::refuse_stateless(Refusal::invalid, "`requester` must be the other user of the stream");
      if (s.link != pending_from_other) {
        return Decision::refuse(Refusal::no_pending_request, "no pending request from user " + id_str(other));
      }
      if (accepting) return accept(fb::FriendAcceptedT{{}, actor, other});
      return accept(fb::FriendRejectedT{{}, actor, other});
    }
    case fb::Command::RemoveFriend: {
      if (!target_is_other(c.command_as_RemoveFriend()->other()))
        return Decision::refuse_stateless(Refusal::invalid, "`other` must be the other user of the stream");
      if (s.link != Link::friends)
        return Decision::refuse(Refusal::not_friends, "not friends with user " + id_str(other));
      return accept(fb::FriendRemovedT{{}, actor, other});
    }
    case fb::Command::BlockUser: {
      if (!target_is_other(c.command_as_BlockUser()->target()))
        return Decision::refuse_stateless(Refusal::invalid, "`target` must be the other user of the stream");
      if (actor_blocked_other)
        return Decision::refuse(Refusal::you_blocked, "user " + id_str(other) + " is already blocked");
      return accept(fb::UserBlockedT{{}, actor, other});
    }
    case fb::Command::UnblockUser: {
      if (!target_is_other(c.command_as_UnblockUser()->target()))
        return Decision::refuse_stateless(Refusal::invalid, "`target` must be the other user of the stream");
      if (!actor_blocked_other)
        return Decision::refuse(Refusal::not_found, "user " + id_str(other) + " is not blocked");
      return accept(fb::UserUnblockedT{{}, actor, other});
    }
    default:
      return Decision::refuse_stateless(Refusal::wrong_stream, std::string(command_type_name(c.command_type())) +
                                                         " does not belong on a one-to-one stream");
  }
}

// ---- conversations: messages, recalls, read markers --------------------------------------------

// Whether a recall of message `id` comes too late, judged before the index is asked: a message id
// carries its time (message_ids.h), at or after its event's, and the index forgets what is past
// the window, so it cannot tell an old message from no message at all. An id older than the window
// (or below the index's horizon) may have been a message here: 409, the window has passed; an id
// within it that the index does not hold never was one (404). Judged this way first, the answer
// does not depend on when the index forgets.
bool recall_too_late(uint64_t id, const DecideContext& ctx) {
  return ctx.now_ms - MessageIdGenerator::time_of(id) > ctx.limits.recall_window_ms ||
         (ctx.recalls && id < ctx.recalls->horizon());
}

Decision decide_message(const StreamState& s, const fb::CommandEnvelope& c, const DecideContext& ctx) {
  switch (c.command_type()) {
    case fb::Command::SendMessage: {
      auto* cmd = c.command_as_SendMessage();
      auto content = sv(cmd->content());
      if (content.empty()) return Decision::refuse_stateless(Refusal::invalid, "content is empty");
      if (auto bad = check_text("content", content, ctx.limits.max_content_bytes)) return std::move(*bad);
      if (cmd->message_type() < fb::MessageType::MIN || cmd->message_type() > fb::MessageType::MAX)
        return Decision::refuse_stateless(Refusal::invalid, "unknown message_type");
      return accept(fb::MessageAppendedT{{}, cmd->message_type(), std::string(content)});
    }
    case fb::Command::RecallMessage: {
      uint64_t id = c.command_as_RecallMessage()->message_id();
      if (recall_too_late(id, ctx)) {
        return Decision::refuse(Refusal::recall_window_passed,
                                "message " + id_str(id) + " is older than the recall window");
      }
      if (!ctx.recalls) return Decision::refuse(Refusal::invalid, "no recall index to decide with");
      auto found = ctx.recalls->find(sv(c.stream()), id);
      // A message at or below expired_through is gone from history: as if it were not held.
      if (!found || found->seq <= s.expired_through) {
        return Decision::refuse(Refusal::not_found, "no message " + id_str(id) + " in this conversation");
      }
      const RecentMessage* it = &*found;
      if (it->sender != c.actor())
        return Decision::refuse(Refusal::not_sender, "only the sender recalls a message");
      if (it->recalled)
        return Decision::refuse(Refusal::not_found, "message " + id_str(id) + " is already recalled");
      if (ctx.now_ms - it->timestamp_ms > ctx.limits.recall_window_ms) {
        return Decision::refuse(
            Refusal::recall_window_passed,
            "the recall window of " + std::to_string(ctx.limits.recall_window_ms / 1000) + " s has passed");
      }
      return accept(fb::MessageRecalledT{{}, id, it->seq});
    }
    case fb::Command::MarkRead: {
      uint64_t seq = c.command_as_MarkRead()->seq();
      if (seq == 0 || seq > s.last_seq) {
        return Decision::refuse(
            Refusal::invalid, "seq " + std::to_string(seq) + " is outside 1.." + std::to_string(s.last_seq));
      }
      return accept(fb::ReadMarkedT{{}, c.actor(), seq}, /*timeline=*/false);
    }
    default:
      return Decision::refuse_stateless(Refusal::wrong_stream, std::string(command_type_name(c.command_type())) +
                                                         " does not belong on a conversation");
  }
}

bool is_message_command(fb::Command t) {
  return t == fb::Command::SendMessage || t == fb::Command::RecallMessage || t == fb::Command::MarkRead;
}

Decision decide_single(const StreamRef& ref, const StreamState& s, const fb::CommandEnvelope& c,
                       const DecideContext& ctx) {
  uint64_t actor = c.actor();
  if (actor != ref.a && actor != ref.b) {
    return Decision::refuse_stateless(Refusal::not_participant,
                            "user " + id_str(actor) + " is not part of this conversation");
  }
  uint64_t other = actor == ref.a ? ref.b : ref.a;
  if (!is_message_command(c.command_type())) return decide_relationship(ref, s, c, actor, other, ctx);
  if (c.command_type() == fb::Command::SendMessage) {
    bool actor_is_lo = actor == ref.a;
    if (actor_is_lo ? s.hi_blocks_lo : s.lo_blocks_hi) {
      return Decision::refuse(Refusal::blocked, "user " + id_str(other) + " has blocked you");
    }
    if (actor_is_lo ? s.lo_blocks_hi : s.hi_blocks_lo) {
      return Decision::refuse(Refusal::you_blocked, "you blocked user " + id_str(other) + "; unblock first");
    }
    UserFacts facts = ctx.directory.user(other);
    if (!facts.exists)
      return Decision::refuse(Refusal::not_found, "user " + id_str(other) + " does not exist");
    if (facts.message_policy == fb::MessagePolicy::FriendsOnly && s.link != Link::friends) {
      return Decision::refuse(Refusal::not_friends,
                              "user " + id_str(other) + " accepts messages from friends only");
    }
  }
  return decide_message(s, c, ctx);
}

// Why `actor` may not make `who` a member (who == actor: joining by themselves), or nullopt.
// A private group takes only members its owner or an admin adds; a public one, anyone, and any
// member may add others. A banned user is refused either way until the ban is lifted.
std::optional<Decision> refuse_join(const StreamRef& ref, const StreamState& s, uint64_t actor, uint64_t who,
                                    const DecideContext& ctx) {
  const bool self = who == actor;
  if (!self && !is_member(s, actor)) return Decision::refuse(Refusal::not_member, "only members add members");
  if (is_member(s, who))
    return Decision::refuse(Refusal::already_member, "user " + id_str(who) + " is already a member");
  if (!self && !ctx.directory.user(who).exists)
    return Decision::refuse(Refusal::not_found, "user " + id_str(who) + " does not exist");
  if (s.banned.contains(who)) {
    return Decision::refuse(Refusal::banned,
                            (self ? "you were" : "user " + id_str(who) + " was") + std::string(" removed from group ") +
                                id_str(ref.a) + "; the owner or an admin must lift the ban first");
  }
  if (!s.public_group && !is_manager(s, actor)) {
    return Decision::refuse(Refusal::forbidden,
                            "group " + id_str(ref.a) + " is private: only its owner or an admin adds members");
  }
  if (s.members.size() >= ctx.limits.max_group_members)
    return Decision::refuse(Refusal::group_full, "the group is full");
  return std::nullopt;
}

Decision decide_group(const StreamRef& ref, const StreamState& s, const fb::CommandEnvelope& c,
                      const DecideContext& ctx) {
  uint64_t actor = c.actor();
  const auto& lim = ctx.limits;
  if (c.command_type() == fb::Command::CreateGroup) {
    auto* cmd = c.command_as_CreateGroup();
    if (s.created || s.last_seq > 0)
      return Decision::refuse(Refusal::already_exists, "group " + id_str(ref.a) + " exists");
    if (cmd->group_id() != ref.a)
      return Decision::refuse_stateless(Refusal::invalid, "group_id does not match the stream");
    if (!cmd->name() || cmd->name()->size() == 0)
      return Decision::refuse_stateless(Refusal::invalid, "a group needs a name");
    if (auto bad = check_text("name", sv(cmd->name()), lim.max_name_bytes)) return std::move(*bad);
    if (auto bad = check_text("description", sv(cmd->description()), lim.max_text_bytes))
      return std::move(*bad);
    fb::GroupCreatedT ev;
    ev.group_id = ref.a;
    ev.owner = actor;
    ev.name = sv(cmd->name());
    ev.description = sv(cmd->description());
    // The event always says both, so no reader needs this build's defaults.
    auto policy = cmd->join_policy().value_or(fb::JoinPolicy::Private);
    if (!known(policy)) return Decision::refuse_stateless(Refusal::invalid, "join_policy must be private or public");
    auto history = cmd->history().value_or(policy == fb::JoinPolicy::Public ? fb::HistoryRule::All
                                                                            : fb::HistoryRule::FromJoin);
    if (!known(history)) return Decision::refuse_stateless(Refusal::invalid, "history must be all or from_join");
    ev.join_policy = policy;
    ev.history = history;
    if (cmd->members()) {
      for (uint64_t m : *cmd->members()) {
        if (m == actor || std::find(ev.members.begin(), ev.members.end(), m) != ev.members.end()) continue;
        if (!ctx.directory.user(m).exists)
          return Decision::refuse(Refusal::not_found, "user " + id_str(m) + " does not exist");
        ev.members.push_back(m);
      }
    }
    if (ev.members.size() + 1 > lim.max_group_members) {
      return Decision::refuse_stateless(Refusal::group_full,
                              "a group holds at most " + std::to_string(lim.max_group_members) + " members");
    }
    return accept(std::move(ev));
  }
  if (!s.created) return Decision::refuse(Refusal::not_found, "group " + id_str(ref.a) + " does not exist");
  switch (c.command_type()) {
    case fb::Command::JoinGroup: {
      uint64_t who = c.command_as_JoinGroup()->user_id();
      if (who == 0) who = actor;
      if (auto refused = refuse_join(ref, s, actor, who, ctx)) return std::move(*refused);
      return accept(fb::MemberJoinedT{{}, who, who == actor ? 0 : actor});
    }
    case fb::Command::LeaveGroup: {
      if (!is_member(s, actor))
        return Decision::refuse(Refusal::not_member, "not a member of group " + id_str(ref.a));
      if (actor == s.owner && s.members.size() > 1) {
        return Decision::refuse(Refusal::owner_must_transfer,
                                "the owner must make another member owner before leaving");
      }
      return accept(fb::MemberLeftT{{}, actor});
    }
    case fb::Command::RemoveMember: {
      uint64_t who = c.command_as_RemoveMember()->user_id();
      fb::Role mine = role_of(s, actor);
      if (!is_member(s, actor) || mine == fb::Role::Member)
        return Decision::refuse(Refusal::forbidden, "only the owner or an admin removes members");
      if (!is_member(s, who))
        return Decision::refuse(Refusal::not_member, "user " + id_str(who) + " is not a member");
      if (who == actor) return Decision::refuse(Refusal::invalid, "use leave to leave a group");
      if (role_of(s, who) != fb::Role::Member && mine != fb::Role::Owner) {
        return Decision::refuse(Refusal::forbidden, "only the owner removes an admin");
      }
      return accept(fb::MemberRemovedT{{}, who, actor, /*ban=*/true});
    }
    case fb::Command::UnbanMember: {
      uint64_t who = c.command_as_UnbanMember()->user_id();
      if (!is_manager(s, actor))
        return Decision::refuse(Refusal::forbidden, "only the owner or an admin lifts bans");
      if (!s.banned.contains(who)) {
        return Decision::refuse(Refusal::not_found,
                                "user " + id_str(who) + " is not banned from group " + id_str(ref.a));
      }
      return accept(fb::MemberUnbannedT{{}, who, actor});
    }
    case fb::Command::ChangeGroupSettings: {
      auto* cmd = c.command_as_ChangeGroupSettings();
      if (!is_manager(s, actor))
        return Decision::refuse(Refusal::forbidden, "only the owner or an admin changes the group's settings");
      if (!cmd->join_policy() && !cmd->history())
        return Decision::refuse(Refusal::invalid, "nothing to change: give join_policy, history or both");
      if (cmd->join_policy() && !known(*cmd->join_policy()))
        return Decision::refuse(Refusal::invalid, "join_policy must be private or public");
      if (cmd->history() && !known(*cmd->history()))
        return Decision::refuse(Refusal::invalid, "history must be all or from_join");
      fb::GroupSettingsChangedT ev;
      ev.join_policy = cmd->join_policy();
      ev.history = cmd->history();
      ev.by = actor;
      return accept(std::move(ev));
    }
    case fb::Command::ChangeRole: {
      auto* cmd = c.command_as_ChangeRole();
      if (actor != s.owner) return Decision::refuse(Refusal::forbidden, "only the owner changes roles");
      if (!is_member(s, cmd->user_id()))
        return Decision::refuse(Refusal::not_member, "user " + id_str(cmd->user_id()) + " is not a member");
      if (cmd->user_id() == actor)
        return Decision::refuse(Refusal::invalid, "the owner keeps their role until they name another owner");
      if (cmd->role() < fb::Role::MIN || cmd->role() > fb::Role::MAX)
        return Decision::refuse(Refusal::invalid, "unknown role");
      return accept(fb::RoleChangedT{{}, cmd->user_id(), cmd->role(), actor});
    }
    default:
      break;
  }
  if (!is_message_command(c.command_type())) {
    return Decision::refuse_stateless(Refusal::wrong_stream,
                            std::string(command_type_name(c.command_type())) + " does not belong on a group");
  }
  if (!is_member(s, actor))
    return Decision::refuse(Refusal::not_member, "not a member of group " + id_str(ref.a));
  return decide_message(s, c, ctx);
}

// ---- retention (schema 9) ------------------------------------------------------------------------

std::string keep_text(uint32_t days) { return days == 0 ? "for ever" : std::to_string(days) + " days"; }

// SetRetention: a group's owner or an admin sets the group's policy; in a one-to-one either user
// sets their own preference. world follows the deployment default.
Decision decide_set_retention(const StreamRef& ref, const StreamState& s, const fb::CommandEnvelope& c) {
  auto keep = c.command_as_SetRetention()->keep_days();
  if (keep && *keep > kMaxKeepDays) {
    return Decision::refuse_stateless(Refusal::invalid, "keep_days must be 1 to " + std::to_string(kMaxKeepDays) +
                                                            ", or forever");
  }
  uint64_t actor = c.actor();
  switch (ref.kind) {
    case K::single:
      if (actor != ref.a && actor != ref.b) {
        return Decision::refuse_stateless(Refusal::not_participant,
                                          "user " + id_str(actor) + " is not part of this conversation");
      }
      break;
    case K::group:
      if (!s.created) return Decision::refuse(Refusal::not_found, "group " + id_str(ref.a) + " does not exist");
      if (!is_manager(s, actor))
        return Decision::refuse(Refusal::forbidden, "only the owner or an admin sets the group's retention");
      break;
    default:
      return Decision::refuse_stateless(Refusal::forbidden, "world keeps messages as the deployment's default says");
  }
  fb::RetentionSetT ev;
  ev.by = actor;
  ev.keep_days = keep;
  return accept(std::move(ev));
}

// ExpireMessages: the retention task's (actor 0; gateways never build it). Expires through at most
// the command's through_seq, as far as the policy allows on the engine's clock judged by the
// events' own days, never backwards and never past the head.
Decision decide_expire(const StreamRef& ref, const StreamState& s, const fb::CommandEnvelope& c,
                       const DecideContext& ctx) {
  if (c.actor() != 0) return Decision::refuse_stateless(Refusal::forbidden, "only the retention task expires messages");
  uint64_t asked = c.command_as_ExpireMessages()->through_seq();
  if (asked == 0) return Decision::refuse_stateless(Refusal::invalid, "through_seq must be at least 1");
  uint32_t keep = effective_keep_days(ref, s, ctx.limits.default_keep_days);
  uint64_t through = std::min({asked, s.last_seq, expirable_through(s, keep, ctx.now_ms)});
  if (through <= s.expired_through) {
    return Decision::refuse(Refusal::not_found, "nothing to expire: expired through " +
                                                    std::to_string(s.expired_through) + ", policy " +
                                                    keep_text(keep));
  }
  return accept(fb::MessagesExpiredT{{}, through}, /*timeline=*/false);
}

}  // namespace

uint32_t effective_keep_days(const StreamRef& ref, const StreamState& s, uint32_t default_keep_days) {
  auto days = [&](int64_t keep) { return keep == kNoOverride ? default_keep_days : static_cast<uint32_t>(keep); };
  uint32_t a = days(s.keep_a);
  if (ref.kind != K::single) return a;
  uint32_t b = days(s.keep_b);
  if (a == 0) return b;  // 0 is for ever: the other, finite one is shorter
  if (b == 0) return a;
  return std::min(a, b);
}

uint64_t expirable_through(const StreamState& s, uint32_t keep_days, int64_t now_ms) {
  uint64_t through = s.expired_through;
  if (keep_days == 0) return through;
  int64_t cutoff = now_ms - static_cast<int64_t>(keep_days) * kDayMs;
  for (const auto& m : s.day_marks) {
    if ((m.day + 1) * kDayMs > cutoff) break;
    through = std::max(through, m.last_seq);
  }
  return through;
}

void apply_retention(const StreamRef& ref, StreamState& s, const fb::EventEnvelope& e) {
  if (auto* r = e.event_as_RetentionSet()) {
    int64_t keep = r->keep_days() ? static_cast<int64_t>(*r->keep_days()) : kNoOverride;
    (retention_sets_second_side(ref, r->by()) ? s.keep_b : s.keep_a) = keep;
  } else if (auto* x = e.event_as_MessagesExpired()) {
    s.expired_through = std::max(s.expired_through, x->through_seq());
    while (!s.day_marks.empty() && s.day_marks.front().last_seq <= s.expired_through) s.day_marks.pop_front();
  }
  if (e.seq() == 0) return;
  // A timeline event: its day's mark. A clock that went back stays in the later day's mark.
  int64_t day = e.timestamp_ms() / kDayMs;
  if (!s.day_marks.empty() && s.day_marks.back().day >= day) {
    s.day_marks.back().last_seq = e.seq();
  } else {
    s.day_marks.push_back(DayMark{day, e.seq()});
  }
  if (s.day_marks.size() > kMaxDayMarks) s.day_marks.pop_front();  // its seqs join the next day's
}


std::string_view refusal_code(Refusal r) {
  switch (r) {
    case Refusal::invalid:
      return "invalid";
    case Refusal::wrong_stream:
      return "wrong_stream";
    case Refusal::not_participant:
      return "not_participant";
    case Refusal::not_member:
      return "not_member";
    case Refusal::not_found:
      return "not_found";
    case Refusal::already_exists:
      return "already_exists";
    case Refusal::already_member:
      return "already_member";
    case Refusal::forbidden:
      return "forbidden";
    case Refusal::blocked:
      return "blocked";
    case Refusal::you_blocked:
      return "you_blocked";
    case Refusal::not_friends:
      return "not_friends";
    case Refusal::already_friends:
      return "already_friends";
    case Refusal::already_requested:
      return "already_requested";
    case Refusal::no_pending_request:
      return "no_pending_request";
    case Refusal::too_large:
      return "too_large";
    case Refusal::recall_window_passed:
      return "recall_window_passed";
    case Refusal::not_sender:
      return "not_sender";
    case Refusal::group_full:
      return "group_full";
    case Refusal::owner_must_transfer:
      return "owner_must_transfer";
    case Refusal::rate_limited:
      return "rate_limited";
    case Refusal::banned:
      return "banned";
    case Refusal::retry_window_expired:
      return "retry_window_expired";
  }
  return "invalid";
}

Decision Decision::refuse(Refusal r, std::string message) {
  Decision d;
  d.kind = Kind::refuse;
  d.refusal = r;
  d.message = std::move(message);
  return d;
}

Decision Decision::refuse_stateless(Refusal r, std::string message) {
  Decision d = refuse(r, std::move(message));
  d.stateless = true;
  return d;
}

Decision decide(const StreamRef& ref, const StreamState& s, const fb::CommandEnvelope& c,
                const DecideContext& ctx) {
  bool retention = c.command_type() == fb::Command::SetRetention || c.command_type() == fb::Command::ExpireMessages;
  if (retention && !is_conversation(ref.kind)) {
    return Decision::refuse_stateless(Refusal::wrong_stream, std::string(command_type_name(c.command_type())) +
                                                                 " belongs on a conversation");
  }
  if (c.command_type() == fb::Command::ExpireMessages) return decide_expire(ref, s, c, ctx);
  if (ref.kind != K::names && c.actor() == 0)
    return Decision::refuse_stateless(Refusal::invalid, "the command has no actor");
  if (c.actor() != 0 && ctx.directory.user(c.actor()).erased_at_ms > 0) {
    return Decision::refuse(Refusal::not_found, "user " + id_str(c.actor()) + " was erased");
  }
  if (c.command_type() == fb::Command::SetRetention) return decide_set_retention(ref, s, c);
  switch (ref.kind) {
    case K::names:
      return decide_names(ref, s, c, ctx);
    case K::user:
      return decide_user(ref, s, c, ctx);
    case K::single:
      return decide_single(ref, s, c, ctx);
    case K::group:
      return decide_group(ref, s, c, ctx);
    case K::world:
      if (!is_message_command(c.command_type())) {
        return Decision::refuse_stateless(Refusal::wrong_stream, "world takes only messages and read markers");
      }
      return decide_message(s, c, ctx);
  }
  return Decision::refuse_stateless(Refusal::invalid, "unknown stream kind");
}

namespace {

void apply_group(StreamState& s, const fb::EventEnvelope& e) {
  switch (e.event_type()) {
    case fb::Event::GroupCreated: {
      auto* ev = e.event_as_GroupCreated();
      s.created = true;
      s.owner = ev->owner();
      // Absent in groups created before schema 3: private.
      s.public_group = ev->join_policy() == fb::JoinPolicy::Public;
      s.members[ev->owner()] = fb::Role::Owner;
      if (ev->members())
        for (uint64_t m : *ev->members()) s.members.emplace(m, fb::Role::Member);
      break;
    }
    case fb::Event::MemberJoined: {
      // The first to join a group its last member left becomes its owner.
      uint64_t who = e.event_as_MemberJoined()->user_id();
      bool empty = s.members.empty();
      s.members.emplace(who, empty ? fb::Role::Owner : fb::Role::Member);
      if (empty) s.owner = who;
      break;
    }
    case fb::Event::MemberLeft:
    case fb::Event::MemberRemoved: {
      uint64_t who = e.event_type() == fb::Event::MemberLeft ? e.event_as_MemberLeft()->user_id()
                                                             : e.event_as_MemberRemoved()->user_id();
      s.members.erase(who);
      if (who == s.owner) s.owner = 0;
      // Removals before schema 3 carry no ban: nothing stops those users being added again.
      if (auto* r = e.event_as_MemberRemoved(); r && r->ban()) s.banned.insert(who);
      break;
    }
    case fb::Event::MemberUnbanned:
      s.banned.erase(e.event_as_MemberUnbanned()->user_id());
      break;
    case fb::Event::GroupSettingsChanged:
      if (auto p = e.event_as_GroupSettingsChanged()->join_policy()) s.public_group = *p == fb::JoinPolicy::Public;
      break;
    case fb::Event::RoleChanged: {
      auto* ev = e.event_as_RoleChanged();
      if (ev->role() == fb::Role::Owner) {
        s.members[s.owner] = fb::Role::Admin;  // ownership moves; the old owner stays an admin
        s.owner = ev->user_id();
      }
      s.members[ev->user_id()] = ev->role();
      break;
    }
    default:
      break;
  }
}

void apply_single(const StreamRef& ref, StreamState& s, const fb::EventEnvelope& e) {
  auto from_lo = [&](uint64_t who) { return who == ref.a; };
  switch (e.event_type()) {
    case fb::Event::FriendRequested:
      s.link = from_lo(e.event_as_FriendRequested()->from()) ? Link::pending_from_lo : Link::pending_from_hi;
      break;
    case fb::Event::FriendAccepted:
      s.link = Link::friends;
      break;
    case fb::Event::FriendRejected:
      s.link = Link::none;
      break;
    case fb::Event::FriendRemoved:
      s.link = Link::none;
      break;
    case fb::Event::UserBlocked:
      (from_lo(e.event_as_UserBlocked()->by()) ? s.lo_blocks_hi : s.hi_blocks_lo) = true;
      break;
    case fb::Event::UserUnblocked:
      (from_lo(e.event_as_UserUnblocked()->by()) ? s.lo_blocks_hi : s.hi_blocks_lo) = false;
      break;
    default:
      break;
  }
}

void apply_user(StreamState& s, const fb::EventEnvelope& e) {
  if (auto* d = e.event_as_DeviceRegistered()) {
    s.devices[d->device_id()] = DeviceEntry{d->platform(), std::string(sv(d->token())), std::string(sv(d->session_id()))};
  } else if (auto* r = e.event_as_DeviceRemoved()) {
    s.devices.erase(r->device_id());
  } else if (auto* t = e.event_as_RefreshTokenRevoked(); t && t->removed_devices()) {
    for (uint64_t id : *t->removed_devices()) s.devices.erase(id);
  } else if (e.event_type() == fb::Event::UserErased) {
    s.erased = true;
    s.devices.clear();
  }
}

}  // namespace

std::optional<RecentMessage> recall_entry_of(const fb::EventEnvelope& e) {
  if (e.event_type() == fb::Event::MessageAppended) {
    return RecentMessage{e.event_id(), e.actor(), e.seq(), e.timestamp_ms(), false};
  }
  if (const auto* r = e.event_as_MessageRecalled()) {
    return RecentMessage{r->message_id(), e.actor(), r->recalled_seq(), MessageIdGenerator::time_of(r->message_id()),
                         true};
  }
  return std::nullopt;
}

std::string check_device_token(fb::PushPlatform platform, std::string_view token) {
  auto all = [&](auto ok) { return std::all_of(token.begin(), token.end(), ok); };
  switch (platform) {
    case fb::PushPlatform::Apns:
      if (token.size() < 64 || token.size() > 200 || !all([](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
        return "an apns token is 64 to 200 hex digits";
      return {};
    case fb::PushPlatform::Fcm:
      if (token.empty() || token.size() > kMaxDeviceTokenBytes ||
          !all([](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':' || c == '-' || c == '.'; }))
        return "an fcm token is 1 to 4096 characters of [A-Za-z0-9_:.-]";
      return {};
    case fb::PushPlatform::Webhook:
      if (token.size() > kMaxWebhookUrlBytes || !(token.starts_with("http://") || token.starts_with("https://")) ||
          token.size() <= 8 || !all([](char c) { return c > ' ' && c < 127; }))
        return "a webhook token is an http:// or https:// URL of at most 2048 printable characters";
      return {};
  }
  return "platform must be apns, fcm or webhook";
}

void apply(const StreamRef& ref, StreamState& s, const fb::EventEnvelope& e) {
  if (is_control_record(e.event_type())) return;  // not history: no state, no time, no seq
  if (e.seq() != 0) s.last_seq = e.seq();
  s.last_event_ms = e.timestamp_ms();
  switch (ref.kind) {
    case K::group:
      apply_group(s, e);
      break;
    case K::single:
      apply_single(ref, s, e);
      break;
    case K::user:
      apply_user(s, e);
      break;
    default:
      break;
  }
  if (is_conversation(ref.kind)) apply_retention(ref, s, e);
}

// ---- state encoding: little-endian fixed fields, versioned -------------------------------------

namespace {

struct Reader {
  std::string_view in;
  bool ok = true;
  uint64_t u64() {
    if (in.size() < 8) {
      ok = false;
      return 0;
    }
    uint64_t v = get_u64_le(in, 0);
    in.remove_prefix(8);
    return v;
  }
};

// 1: the first. 2: the public_group flag, and the banned users after the recent messages.
// 3: the push devices after the banned users. 4: each device's login session after the devices.
// 5: retention after the sessions: keep_a, keep_b, expired_through and the day marks.
// 6: no recent messages (they moved to the recall index, RecallIndex).
constexpr uint64_t kStateVersion = 6;
// The flags word grew kFlagErased (schema 10) without a version: older states never set it.
constexpr uint64_t kFlagCreated = 1, kFlagLoBlocksHi = 2, kFlagHiBlocksLo = 4, kFlagPublic = 8, kFlagErased = 16;

}  // namespace

std::string encode_state(const StreamState& s) {
  std::string out;
  encode_state(s, out);
  return out;
}

void encode_state(const StreamState& s, std::string& out) {
  out.clear();
  out.reserve(96 + s.members.size() * 9 + s.banned.size() * 8 + s.day_marks.size() * 16);
  put_u64_le(out, kStateVersion);
  put_u64_le(out, s.last_seq);
  put_u64_le(out, static_cast<uint64_t>(s.last_event_ms));
  put_u64_le(out, (s.created ? kFlagCreated : 0) | (s.lo_blocks_hi ? kFlagLoBlocksHi : 0) |
                   (s.hi_blocks_lo ? kFlagHiBlocksLo : 0) | (s.public_group ? kFlagPublic : 0) |
                   (s.erased ? kFlagErased : 0) |
                   (static_cast<uint64_t>(s.link) << 8));
  put_u64_le(out, s.owner);
  put_u64_le(out, s.members.size());
  for (auto [id, role] : s.members) {
    put_u64_le(out, id);
    out.push_back(static_cast<char>(role));
  }
  put_u64_le(out, s.banned.size());
  for (uint64_t id : s.banned) put_u64_le(out, id);
  put_u64_le(out, s.devices.size());
  for (const auto& [id, d] : s.devices) {
    put_u64_le(out, id);
    put_u64_le(out, static_cast<uint64_t>(d.platform));
    put_u64_le(out, d.token.size());
    out.append(d.token);
  }
  for (const auto& [id, d] : s.devices) {  // 4: in the same order
    put_u64_le(out, d.session.size());
    out.append(d.session);
  }
  put_u64_le(out, static_cast<uint64_t>(s.keep_a));  // 5
  put_u64_le(out, static_cast<uint64_t>(s.keep_b));
  put_u64_le(out, s.expired_through);
  put_u64_le(out, s.day_marks.size());
  for (const auto& m : s.day_marks) {
    put_u64_le(out, static_cast<uint64_t>(m.day));
    put_u64_le(out, m.last_seq);
  }
}

bool decode_state(std::string_view bytes, StreamState& s, std::vector<RecentMessage>* legacy_recent) {
  Reader r{bytes};
  s = StreamState{};
  const uint64_t version = r.u64();
  if (version < 1 || version > kStateVersion) return false;
  s.last_seq = r.u64();
  s.last_event_ms = static_cast<int64_t>(r.u64());
  uint64_t flags = r.u64();
  s.created = flags & kFlagCreated;
  s.lo_blocks_hi = flags & kFlagLoBlocksHi;
  s.hi_blocks_lo = flags & kFlagHiBlocksLo;
  s.public_group = flags & kFlagPublic;
  s.erased = flags & kFlagErased;
  s.link = static_cast<Link>((flags >> 8) & 0xff);
  s.owner = r.u64();
  uint64_t n = r.u64();
  for (uint64_t i = 0; r.ok && i < n; ++i) {
    uint64_t id = r.u64();
    if (r.in.empty()) return false;
    s.members.emplace(id, static_cast<fb::Role>(r.in[0]));
    r.in.remove_prefix(1);
  }
  if (legacy_recent) legacy_recent->clear();
  n = version < 6 ? r.u64() : 0;
  for (uint64_t i = 0; r.ok && i < n; ++i) {
    RecentMessage m;
    m.message_id = r.u64();
    m.sender = r.u64();
    m.seq = r.u64();
    m.timestamp_ms = static_cast<int64_t>(r.u64());
    if (r.in.empty()) return false;
    m.recalled = r.in[0] != 0;
    r.in.remove_prefix(1);
    if (legacy_recent) legacy_recent->push_back(m);
  }
  if (version >= 2) {
    n = r.u64();
    for (uint64_t i = 0; r.ok && i < n; ++i) s.banned.insert(r.u64());
  }
  if (version >= 3) {
    n = r.u64();
    for (uint64_t i = 0; r.ok && i < n; ++i) {
      uint64_t id = r.u64();
      auto platform = static_cast<fb::PushPlatform>(r.u64());
      uint64_t size = r.u64();
      if (!r.ok || r.in.size() < size) return false;
      s.devices[id] = DeviceEntry{platform, std::string(r.in.substr(0, size)), ""};
      r.in.remove_prefix(size);
    }
  }
  if (version >= 4) {
    for (auto& [id, d] : s.devices) {
      uint64_t size = r.u64();
      if (!r.ok || r.in.size() < size) return false;
      d.session = std::string(r.in.substr(0, size));
      r.in.remove_prefix(size);
    }
  }
  // Before 5 no retention event existed: no override, nothing expired. A state stored before 5
  // has no day marks for its older rows: they expire with the first day marked after it (later,
  // never earlier), or with their own days once the stream is rebuilt from the log.
  if (version >= 5) {
    s.keep_a = static_cast<int64_t>(r.u64());
    s.keep_b = static_cast<int64_t>(r.u64());
    s.expired_through = r.u64();
    n = r.u64();
    for (uint64_t i = 0; r.ok && i < n; ++i) {
      DayMark m;
      m.day = static_cast<int64_t>(r.u64());
      m.last_seq = r.u64();
      s.day_marks.push_back(m);
    }
  }
  return r.ok && r.in.empty();
}

}  // namespace imlog
