#include "timeline.h"

#include <cctype>
#include <cstring>

namespace imlog::timeline {
namespace {

// Builds one flat JSON object, keys in call order.
class JsonObject {
 public:
  explicit JsonObject(std::string_view event) {
    out_ = "{\"event\":";
    append_json_string(out_, event);
  }
  JsonObject& num(std::string_view key, uint64_t v) {
    this->key(key);
    out_ += std::to_string(v);
    return *this;
  }
  JsonObject& id_string(std::string_view key, uint64_t v) {
    this->key(key);
    out_ += '"';
    out_ += std::to_string(v);
    out_ += '"';
    return *this;
  }
  JsonObject& str(std::string_view key, std::string_view v) {
    this->key(key);
    append_json_string(out_, v);
    return *this;
  }
  JsonObject& boolean(std::string_view key, bool v) {
    this->key(key);
    out_ += v ? "true" : "false";
    return *this;
  }
  // A group setting, only when the event carries it (so rows of older events keep their content).
  template <class Enum, class Name>
  JsonObject& setting(std::string_view key, flatbuffers::Optional<Enum> v, Name name) {
    return v ? str(key, name(*v)) : *this;
  }
  template <class Vec>
  JsonObject& nums(std::string_view key, const Vec* v) {
    this->key(key);
    out_ += '[';
    if (v) {
      for (size_t i = 0; i < v->size(); ++i) {
        if (i) out_ += ',';
        out_ += std::to_string(v->Get(static_cast<flatbuffers::uoffset_t>(i)));
      }
    }
    out_ += ']';
    return *this;
  }
  std::string done() {
    out_ += '}';
    return std::move(out_);
  }

 private:
  void key(std::string_view k) {
    out_ += ',';
    append_json_string(out_, k);
    out_ += ':';
  }
  std::string out_;
};

std::string role_name(fb::Role r) {
  switch (r) {
    case fb::Role::Member: return "member";
    case fb::Role::Admin: return "admin";
    case fb::Role::Owner: return "owner";
  }
  return "role_" + std::to_string(static_cast<int>(r));
}

}  // namespace

namespace {

// Whether any of the 8 bytes of `w` is a control byte (< 0x20), '"' or '\\' — the bytes a JSON
// string must escape. Bit tricks on a word at a time ("has a byte less than n" / "has a zero
// byte"): exact as a yes/no, which is all the caller needs.
bool word_needs_escape(uint64_t w) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
  auto has_zero = [](uint64_t x) { return (x - kOnes) & ~x & kHigh; };
  uint64_t control = (w - kOnes * 0x20) & ~w & kHigh;
  return (control | has_zero(w ^ (kOnes * '"')) | has_zero(w ^ (kOnes * '\\'))) != 0;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  size_t run = 0;  // start of the current run of bytes copied as they are
  for (size_t i = 0; i < s.size(); ++i) {
    // Skip clean words 8 bytes at a time (message text is mostly clean).
    while (i + 8 <= s.size()) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if (word_needs_escape(w)) break;
      i += 8;
    }
    if (i >= s.size()) break;
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

std::string snake_case(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 4);
  for (size_t i = 0; i < name.size(); ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    if (std::isupper(c)) {
      if (i) out += '_';
      out += static_cast<char>(std::tolower(c));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string message_type_name(fb::MessageType type) {
  switch (type) {
    case fb::MessageType::Text: return "text";
    case fb::MessageType::Image: return "image";
    case fb::MessageType::File: return "file";
    case fb::MessageType::System: return "system";
  }
  return "type_" + std::to_string(static_cast<int>(type));
}

std::string system_content(const fb::EventEnvelope& e) {
  std::string type_name(event_type_name(e.event_type()));
  if (type_name.empty()) type_name = "Event" + std::to_string(static_cast<int>(e.event_type()));
  JsonObject j(snake_case(type_name));
  switch (e.event_type()) {
    case fb::Event::FriendRequested: {
      auto* p = e.event_as_FriendRequested();
      return j.num("from", p->from()).num("to", p->to()).str("note", sv(p->note())).done();
    }
    case fb::Event::FriendAccepted: {
      auto* p = e.event_as_FriendAccepted();
      return j.num("by", p->by()).num("requester", p->requester()).done();
    }
    case fb::Event::FriendRejected: {
      auto* p = e.event_as_FriendRejected();
      return j.num("by", p->by()).num("requester", p->requester()).done();
    }
    case fb::Event::FriendRemoved: {
      auto* p = e.event_as_FriendRemoved();
      return j.num("by", p->by()).num("other", p->other()).done();
    }
    case fb::Event::UserBlocked: {
      auto* p = e.event_as_UserBlocked();
      return j.num("by", p->by()).num("blocked", p->blocked()).done();
    }
    case fb::Event::UserUnblocked: {
      auto* p = e.event_as_UserUnblocked();
      return j.num("by", p->by()).num("unblocked", p->unblocked()).done();
    }
    case fb::Event::GroupCreated: {
      auto* p = e.event_as_GroupCreated();
      return j.num("group_id", p->group_id())
          .num("owner", p->owner())
          .str("name", sv(p->name()))
          .str("description", sv(p->description()))
          .nums("members", p->members())
          .setting("join_policy", p->join_policy(), join_policy_name)
          .setting("history", p->history(), history_rule_name)
          .done();
    }
    case fb::Event::MemberJoined: {
      auto* p = e.event_as_MemberJoined();
      return j.num("user_id", p->user_id()).num("invited_by", p->invited_by()).done();
    }
    case fb::Event::MemberLeft: return j.num("user_id", e.event_as_MemberLeft()->user_id()).done();
    case fb::Event::MemberRemoved: {
      auto* p = e.event_as_MemberRemoved();
      j.num("user_id", p->user_id()).num("by", p->by());
      if (p->ban()) j.boolean("ban", true);  // false is how every removal before schema 3 reads
      return j.done();
    }
    case fb::Event::GroupSettingsChanged: {
      auto* p = e.event_as_GroupSettingsChanged();
      return j.setting("join_policy", p->join_policy(), join_policy_name)
          .setting("history", p->history(), history_rule_name)
          .num("by", p->by())
          .done();
    }
    case fb::Event::MemberUnbanned: {
      auto* p = e.event_as_MemberUnbanned();
      return j.num("user_id", p->user_id()).num("by", p->by()).done();
    }
    case fb::Event::RoleChanged: {
      auto* p = e.event_as_RoleChanged();
      j.num("user_id", p->user_id());
      j.str("role", role_name(p->role()));
      return j.num("by", p->by()).done();
    }
    case fb::Event::MessageRecalled: {
      auto* p = e.event_as_MessageRecalled();
      return j.id_string("message_id", p->message_id()).num("recalled_seq", p->recalled_seq()).done();
    }
    case fb::Event::RetentionSet: {
      auto* p = e.event_as_RetentionSet();
      j.num("by", p->by());
      if (auto keep = p->keep_days()) j.num("keep_days", *keep);  // absent: back to the default
      return j.done();
    }
    default:
      // A timeline event this build does not describe (a newer schema): its type only.
      return j.done();
  }
}

uint64_t expired_through(const fb::EventEnvelope& e) {
  auto* x = e.event_as_MessagesExpired();
  return x ? x->through_seq() : 0;
}

bool row_of(const fb::EventEnvelope& e, std::string_view text, bool erased, Row& out) {
  if (e.seq() == 0) return false;
  out.message_id = e.event_id();
  out.conversation = sv(e.stream());
  out.seq = e.seq();
  out.sender = e.actor();
  out.client_msg_id = sv(e.client_msg_id());
  out.created_at = e.timestamp_ms();
  if (auto* m = e.event_as_MessageAppended()) {
    out.type = message_type_name(m->message_type());
    out.erased = erased;
    out.content.assign(erased ? std::string_view() : text);
  } else {
    out.type = "system";
    out.content = system_content(e);
  }
  return true;
}

void pointer_moves(const fb::EventEnvelope& e, const StreamRef& ref, std::vector<PointerMove>& out) {
  using K = PointerMove::Kind;
  if (auto* r = e.event_as_ReadMarked()) {
    out.push_back({r->user_id(), r->seq(), K::raise});
    return;
  }
  uint64_t seq = e.seq();
  if (seq == 0) return;
  if (ref.kind == StreamKind::single) {
    out.push_back({ref.a, 0, K::raise});
    out.push_back({ref.b, 0, K::raise});
  }
  if (e.actor() != 0) out.push_back({e.actor(), seq, K::raise});
  switch (e.event_type()) {
    case fb::Event::GroupCreated: {
      auto* g = e.event_as_GroupCreated();
      if (g->members()) {
        for (uint64_t m : *g->members()) {
          if (m != e.actor()) out.push_back({m, seq - 1, K::raise});
        }
      }
      break;
    }
    case fb::Event::MemberJoined: {
      uint64_t u = e.event_as_MemberJoined()->user_id();
      if (u != e.actor()) out.push_back({u, seq - 1, K::raise});
      break;
    }
    case fb::Event::MemberLeft: out.push_back({e.event_as_MemberLeft()->user_id(), 0, K::leave}); break;
    case fb::Event::MemberRemoved: out.push_back({e.event_as_MemberRemoved()->user_id(), 0, K::leave}); break;
    default: break;
  }
}

void append_message_json(std::string& out, uint64_t message_id, std::string_view conversation, uint64_t seq,
                         uint64_t sender, std::string_view type, std::string_view client_msg_id, int64_t created_at,
                         std::string_view content, MessageFlags flags) {
  out.reserve(out.size() + 160 + conversation.size() + client_msg_id.size() + content.size());
  out += "{\"message_id\":\"";
  out += std::to_string(message_id);
  out += "\",\"conversation_id\":";
  append_json_string(out, conversation);
  out += ",\"seq_id\":";
  out += std::to_string(seq);
  out += ",\"sender_id\":";
  out += std::to_string(sender);
  out += ",\"message_type\":";
  append_json_string(out, type);
  out += ",\"client_msg_id\":";
  append_json_string(out, client_msg_id);
  out += ",\"created_at\":";
  out += std::to_string(created_at);
  if (flags.recalled || flags.erased) {
    out += ",\"content\":\"\"";
    if (flags.recalled) out += ",\"recalled\":true";
    if (flags.erased) out += ",\"erased\":true";
    out += '}';
  } else {
    out += ",\"content\":";
    append_json_string(out, content);
    out += '}';
  }
}

std::string message_json(uint64_t message_id, std::string_view conversation, uint64_t seq, uint64_t sender,
                         std::string_view type, std::string_view client_msg_id, int64_t created_at,
                         std::string_view content, MessageFlags flags) {
  std::string out;
  append_message_json(out, message_id, conversation, seq, sender, type, client_msg_id, created_at, content, flags);
  return out;
}

}  // namespace imlog::timeline
