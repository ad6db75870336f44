#include "push.h"

#include <spdlog/spdlog.h>

#include "imlog/core/logging.h"
#include "imlog/engine/streams.h"
#include "json.h"

namespace imlog::gw {

std::string_view message_type_name(fb::MessageType t) {
  switch (t) {
    case fb::MessageType::Text: return "text";
    case fb::MessageType::Image: return "image";
    case fb::MessageType::File: return "file";
    case fb::MessageType::System: return "system";
  }
  return "text";
}

std::string_view role_name(fb::Role r) {
  switch (r) {
    case fb::Role::Member: return "member";
    case fb::Role::Admin: return "admin";
    case fb::Role::Owner: return "owner";
  }
  return "member";
}

namespace {

uint64_t group_of(std::string_view stream) {
  auto ref = parse_stream(stream);
  return ref && ref->kind == StreamKind::group ? ref->a : 0;
}

// {"type": t, "data": {"conversation_id"?, ...fill...}}
template <class Fill>
std::shared_ptr<const std::string> frame(std::string_view type, Fill&& fill) {
  JsonOut j;
  j.begin_object().field("type", type).key("data").begin_object();
  fill(j);
  j.end_object().end_object();
  return std::make_shared<const std::string>(j.take());
}

// The conversation fields shared by membership frames.
void conversation_fields(JsonOut& j, const fb::EventEnvelope& e) {
  std::string_view stream = sv(e.stream());
  j.field("conversation_id", stream);
  if (uint64_t g = group_of(stream)) j.field("group_id", g);
  j.field("seq_id", e.seq());
  j.field("created_at", e.timestamp_ms());
}

}  // namespace

std::optional<RenderedPush> render_push(const fb::EventEnvelope& e, KeyStore& keys) {
  RenderedPush out;
  out.info.actor = e.actor();
  switch (e.event_type()) {
    case fb::Event::MessageAppended: {
      auto* m = e.event_as_MessageAppended();
      auto text = message_text(e, *m, keys);
      if (!text) {
        logger("gateway")->warn("not pushing message {}: {}", e.event_id(), text.error().to_string());
        return std::nullopt;
      }
      MessageView v;
      v.message_id = e.event_id();
      v.conversation_id = sv(e.stream());
      v.seq_id = e.seq();
      v.sender_id = e.actor();
      v.content = std::move(*text);
      v.message_type = message_type_name(m->message_type());
      v.client_msg_id = sv(e.client_msg_id());
      v.created_at = e.timestamp_ms();
      JsonOut j;
      j.begin_object().field("type", "new-message").key("data");
      write_message(j, v);
      j.end_object();
      out.frame = std::make_shared<const std::string>(j.take());
      out.info.sent_key = sent_key(v.conversation_id, v.client_msg_id);
      return out;
    }
    case fb::Event::MessageRecalled: {
      auto* r = e.event_as_MessageRecalled();
      out.frame = frame("message-recalled", [&](JsonOut& j) {
        j.field("conversation_id", sv(e.stream()));
        j.key("message_id").id_str(r->message_id());
        j.field("seq_id", r->recalled_seq());
        j.field("recalled_by", e.actor());
        j.field("recall_seq_id", e.seq());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::ReadMarked: {
      auto* r = e.event_as_ReadMarked();
      out.frame = frame("read-marked", [&](JsonOut& j) {
        j.field("conversation_id", sv(e.stream()));
        j.field("user_id", r->user_id());
        j.field("seq_id", r->seq());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::GroupCreated: {
      auto* g = e.event_as_GroupCreated();
      out.frame = frame("group-created", [&](JsonOut& j) {
        conversation_fields(j, e);
        j.field("name", sv(g->name()));
        j.field("description", sv(g->description()));
        j.field("owner_id", g->owner());
        j.key("members").begin_array();
        j.u64(g->owner());
        if (g->members()) {
          for (uint64_t m : *g->members()) j.u64(m);
        }
        j.end_array();
        // Absent from a group created before schema 3: private, all history.
        j.field("join_policy", join_policy_name(g->join_policy().value_or(fb::JoinPolicy::Private)));
        j.field("history", history_rule_name(g->history().value_or(fb::HistoryRule::All)));
      });
      return out;
    }
    case fb::Event::MemberJoined: {
      auto* m = e.event_as_MemberJoined();
      out.frame = frame("member-joined", [&](JsonOut& j) {
        conversation_fields(j, e);
        j.field("user_id", m->user_id());
        if (m->invited_by()) j.field("invited_by", m->invited_by());
      });
      return out;
    }
    case fb::Event::MemberLeft: {
      auto* m = e.event_as_MemberLeft();
      out.frame = frame("member-left", [&](JsonOut& j) {
        conversation_fields(j, e);
        j.field("user_id", m->user_id());
      });
      return out;
    }
    case fb::Event::MemberRemoved: {
      auto* m = e.event_as_MemberRemoved();
      out.frame = frame("member-removed", [&](JsonOut& j) {
        conversation_fields(j, e);
        j.field("user_id", m->user_id());
        j.field("removed_by", m->by());
        j.field("banned", m->ban());
      });
      return out;
    }
    case fb::Event::MemberUnbanned: {
      auto* m = e.event_as_MemberUnbanned();
      out.frame = frame("member-unbanned", [&](JsonOut& j) {
        conversation_fields(j, e);
        j.field("user_id", m->user_id());
        j.field("unbanned_by", m->by());
      });
      return out;
    }
    case fb::Event::GroupSettingsChanged: {
      auto* g = e.event_as_GroupSettingsChanged();
      out.frame = frame("group-settings-changed", [&](JsonOut& j) {
        conversation_fields(j, e);
        if (auto p = g->join_policy()) j.field("join_policy", join_policy_name(*p));
        if (auto h = g->history()) j.field("history", history_rule_name(*h));
        j.field("changed_by", g->by());
      });
      return out;
    }
    case fb::Event::RoleChanged: {
      auto* m = e.event_as_RoleChanged();
      out.frame = frame("role-changed", [&](JsonOut& j) {
        conversation_fields(j, e);
        j.field("user_id", m->user_id());
        j.field("role", role_name(m->role()));
        j.field("changed_by", m->by());
      });
      return out;
    }
    case fb::Event::FriendRequested: {
      auto* f = e.event_as_FriendRequested();
      out.frame = frame("friend-request", [&](JsonOut& j) {
        j.field("from", f->from());
        j.field("to", f->to());
        j.field("note", sv(f->note()));
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::FriendAccepted: {
      auto* f = e.event_as_FriendAccepted();
      out.frame = frame("friend-accepted", [&](JsonOut& j) {
        j.field("by", f->by());
        j.field("requester", f->requester());
        j.field("conversation_id", sv(e.stream()));
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::FriendRejected: {
      auto* f = e.event_as_FriendRejected();
      out.frame = frame("friend-rejected", [&](JsonOut& j) {
        j.field("by", f->by());
        j.field("requester", f->requester());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::FriendRemoved: {
      auto* f = e.event_as_FriendRemoved();
      out.frame = frame("friend-removed", [&](JsonOut& j) {
        j.field("by", f->by());
        j.field("other", f->other());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::UserBlocked: {
      auto* b = e.event_as_UserBlocked();
      out.only_user = b->by();
      out.frame = frame("user-blocked", [&](JsonOut& j) {
        j.field("user_id", b->blocked());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::UserUnblocked: {
      auto* b = e.event_as_UserUnblocked();
      out.only_user = b->by();
      out.frame = frame("user-unblocked", [&](JsonOut& j) {
        j.field("user_id", b->unblocked());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::ProfileUpdated: {
      auto opened = open_profile(e, keys);  // sealed since 10
      if (!opened) {
        logger("gateway")->warn("not pushing profile update {}: {}", e.event_id(), opened.error().to_string());
        return std::nullopt;
      }
      const auto* p = (*opened ? flatbuffers::GetRoot<fb::EventEnvelope>((*opened)->data()) : &e)->event_as_ProfileUpdated();
      out.frame = frame("profile-updated", [&](JsonOut& j) {
        j.field("user_id", p->user_id());
        if (p->nickname()) j.field("nickname", sv(p->nickname()));
        if (p->avatar_url()) j.field("avatar_url", sv(p->avatar_url()));
        if (p->signature()) j.field("signature", sv(p->signature()));
        j.field("created_at", e.timestamp_ms());
      });
      out.only_user = p->user_id();  // the user's own devices; email stays private
      return out;
    }
    case fb::Event::SettingsUpdated: {
      auto* s = e.event_as_SettingsUpdated();
      out.only_user = s->user_id();
      out.frame = frame("settings-updated", [&](JsonOut& j) {
        j.field("user_id", s->user_id());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::FriendGroupSet: {
      auto* f = e.event_as_FriendGroupSet();
      out.only_user = f->user_id();
      out.frame = frame("friend-group-set", [&](JsonOut& j) {
        j.field("friend_id", f->friend_id());
        j.field("group_name", sv(f->group_name()));
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::MessagesExpired: {  // retention: the rows up to through_seq are gone
      auto* x = e.event_as_MessagesExpired();
      out.frame = frame("messages-expired", [&](JsonOut& j) {
        j.field("conversation_id", sv(e.stream()));
        j.field("through_seq", x->through_seq());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    case fb::Event::UserErased: {  // the user's own devices: sign out, drop what they keep
      auto* gone = e.event_as_UserErased();
      out.only_user = gone->user_id();
      out.frame = frame("account-erased", [&](JsonOut& j) {
        j.field("user_id", gone->user_id());
        j.field("created_at", e.timestamp_ms());
      });
      return out;
    }
    default:
      return std::nullopt;  // UserRegistered, RefreshTokenRevoked, control records, unknown
  }
}

}  // namespace imlog::gw
