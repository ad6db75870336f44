#include "json.h"

#include <algorithm>
#include <charconv>

#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace imlog::gw {

// ---- reading ----------------------------------------------------------------------------------

const rapidjson::Value* JsonFields::find(const char* name) const {
  if (!obj_ || !obj_->IsObject()) return nullptr;
  auto it = obj_->FindMember(name);
  if (it == obj_->MemberEnd() || it->value.IsNull()) return nullptr;
  return &it->value;
}

bool JsonFields::has(const char* name) const { return find(name) != nullptr; }

bool JsonFields::fail(const char* name, const char* what) {
  if (error_->empty()) *error_ = std::string("field `") + name + "` " + what;
  return false;
}

bool JsonFields::str(const char* name, std::string& out, bool required, size_t max_bytes) {
  const auto* v = find(name);
  if (!v) return required ? fail(name, "is required (a string)") : true;
  if (!v->IsString()) return fail(name, "must be a string");
  if (v->GetStringLength() > max_bytes) {
    return fail(name, ("is longer than " + std::to_string(max_bytes) + " bytes").c_str());
  }
  out.assign(v->GetString(), v->GetStringLength());
  return true;
}

bool JsonFields::opt_str(const char* name, std::optional<std::string>& out, size_t max_bytes) {
  if (!has(name)) return true;
  std::string s;
  if (!str(name, s, true, max_bytes)) return false;
  out = std::move(s);
  return true;
}

bool JsonFields::u64(const char* name, uint64_t& out, bool required) {
  const auto* v = find(name);
  if (!v) return required ? fail(name, "is required (a non-negative integer)") : true;
  if (!v->IsUint64()) return fail(name, "must be a non-negative integer");
  out = v->GetUint64();
  return true;
}

bool JsonFields::id(const char* name, uint64_t& out, bool required) {
  const auto* v = find(name);
  if (!v) return required ? fail(name, "is required (an id: a number or a decimal string)") : true;
  if (v->IsUint64()) {
    out = v->GetUint64();
    return true;
  }
  if (v->IsString()) {
    std::string_view s(v->GetString(), v->GetStringLength());
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return true;
  }
  return fail(name, "must be an id (a number or a decimal string)");
}

bool JsonFields::opt_bool(const char* name, std::optional<bool>& out) {
  const auto* v = find(name);
  if (!v) return true;
  if (!v->IsBool()) return fail(name, "must be true or false");
  out = v->GetBool();
  return true;
}

bool JsonFields::opt_i64(const char* name, std::optional<int64_t>& out) {
  const auto* v = find(name);
  if (!v) return true;
  if (!v->IsInt64()) return fail(name, "must be an integer");
  out = v->GetInt64();
  return true;
}

bool JsonFields::u64_list(const char* name, std::vector<uint64_t>& out, size_t max_items) {
  const auto* v = find(name);
  if (!v) return true;
  if (!v->IsArray()) return fail(name, "must be an array of ids");
  if (v->Size() > max_items) return fail(name, ("has more than " + std::to_string(max_items) + " items").c_str());
  for (const auto& e : v->GetArray()) {
    if (!e.IsUint64()) return fail(name, "must be an array of ids (non-negative integers)");
    out.push_back(e.GetUint64());
  }
  return true;
}

bool JsonFields::str_list(const char* name, std::vector<std::string>& out, size_t max_items, size_t max_item_bytes) {
  const auto* v = find(name);
  if (!v) return true;
  if (!v->IsArray()) return fail(name, "must be an array of strings");
  if (v->Size() > max_items) return fail(name, ("has more than " + std::to_string(max_items) + " items").c_str());
  for (const auto& e : v->GetArray()) {
    if (!e.IsString()) return fail(name, "must be an array of strings");
    if (e.GetStringLength() > max_item_bytes) {
      return fail(name, ("has an item longer than " + std::to_string(max_item_bytes) + " bytes").c_str());
    }
    out.emplace_back(e.GetString(), e.GetStringLength());
  }
  return true;
}

bool JsonFields::object(const char* name, JsonFields& out, bool required) {
  const auto* v = find(name);
  if (!v) {
    out = JsonFields(nullptr, error_);
    return required ? fail(name, "is required (an object)") : true;
  }
  if (!v->IsObject()) return fail(name, "must be an object");
  out = JsonFields(v, error_);
  return true;
}

namespace {

// At most `max` bytes of valid UTF-8 `s`, cut at a character boundary (for quoting client input).
std::string_view clip_utf8(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xc0) == 0x80) --end;
  return s.substr(0, end);
}

// Passes the reader's SAX events on to the document, refusing a nesting over kMaxJsonDepth and a
// key or string that is not valid UTF-8 (the reader stops at the first refusal). On one thread.
class GuardedHandler {
 public:
  using SizeType = rapidjson::SizeType;
  enum class Refusal { none, too_deep, bad_string };

  explicit GuardedHandler(rapidjson::Document& doc) : doc_(doc) {}

  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(int64_t i) { return doc_.Int64(i); }
  bool Uint64(uint64_t u) { return doc_.Uint64(u); }
  bool Double(double d) { return doc_.Double(d); }
  bool RawNumber(const char* s, SizeType n, bool copy) { return doc_.RawNumber(s, n, copy); }
  bool String(const char* s, SizeType n, bool copy) { return utf8(s, n, false) && doc_.String(s, n, copy); }
  bool Key(const char* s, SizeType n, bool copy) {
    if (!utf8(s, n, true)) return false;
    key_.assign(clip_utf8(std::string_view(s, n), 64));
    return doc_.Key(s, n, copy);
  }
  bool StartObject() { return enter() && doc_.StartObject(); }
  bool EndObject(SizeType members) {
    --depth_;
    return doc_.EndObject(members);
  }
  bool StartArray() { return enter() && doc_.StartArray(); }
  bool EndArray(SizeType elements) {
    --depth_;
    return doc_.EndArray(elements);
  }

  [[nodiscard]] Refusal refusal() const { return refusal_; }
  // What held the bad string: "field `email`", "a member name", "a string".
  [[nodiscard]] std::string where() const {
    if (bad_key_) return "a member name";
    return key_.empty() ? "a string" : "field `" + key_ + "`";
  }

 private:
  bool enter() {
    if (++depth_ <= kMaxJsonDepth) return true;
    refusal_ = Refusal::too_deep;
    return false;
  }
  bool utf8(const char* s, SizeType n, bool is_key) {
    if (valid_utf8(std::string_view(s, n))) return true;
    refusal_ = Refusal::bad_string;
    bad_key_ = is_key;
    return false;
  }

  rapidjson::Document& doc_;
  unsigned depth_ = 0;
  Refusal refusal_ = Refusal::none;
  bool bad_key_ = false;
  std::string key_;  // the last member name seen: names the field of a bad string
};

}  // namespace

bool parse_client_json(std::string_view text, rapidjson::Document& doc, JsonError& error) {
  error = {};
  GuardedHandler handler(doc);
  rapidjson::ParseResult result;
  auto generate = [&](rapidjson::Document&) {
    rapidjson::MemoryStream bytes(text.data(), text.size());
    rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(bytes);
    rapidjson::Reader reader;
    result = reader.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(in, handler);
    return !result.IsError();
  };
  doc.Populate(generate);
  if (!result.IsError()) return true;
  doc.SetNull();
  std::string at = "at offset " + std::to_string(result.Offset());
  switch (handler.refusal()) {
    case GuardedHandler::Refusal::too_deep:  // the offset is that of the bracket too many
      error.too_deep = true;
      error.message = "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels of arrays and objects " +
                      at + "; at most " + std::to_string(kMaxJsonDepth) + " are accepted";
      break;
    case GuardedHandler::Refusal::bad_string:
      error.message = "malformed JSON " + at + ": " + handler.where() +
                      " is not valid Unicode (a lone surrogate escape such as \\udc00?)";
      break;
    case GuardedHandler::Refusal::none:
      error.message = "malformed JSON " + at + ": " + rapidjson::GetParseError_En(result.Code());
      break;
  }
  return false;
}

bool JsonBody::parse(std::string_view text) {
  error_.clear();
  too_deep_ = false;
  if (text.empty()) {
    error_ = "the body is empty: send a JSON object";
    return false;
  }
  JsonError e;
  if (!parse_client_json(text, doc_, e)) {
    error_ = std::move(e.message);
    too_deep_ = e.too_deep;
    return false;
  }
  if (!doc_.IsObject()) {
    error_ = "expected a JSON object";
    return false;
  }
  return true;
}

// ---- writing ----------------------------------------------------------------------------------

JsonOut& JsonOut::id_str(uint64_t v) {
  char digits[20];
  auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
  return str(std::string_view(digits, static_cast<size_t>(end - digits)));
}

JsonOut& JsonOut::text(std::string_view s, bool is_key) {
  std::string valid;
  if (!valid_utf8(s)) {
    valid = to_valid_utf8(s);
    s = valid;
  }
  auto n = static_cast<rapidjson::SizeType>(s.size());
  if (is_key) {
    w_.Key(s.data(), n);
  } else {
    w_.String(s.data(), n);
  }
  return *this;
}

std::string error_json(std::string_view code, std::string_view message) {
  JsonOut j;
  j.begin_object().field("code", code).field("message", message).end_object();
  return j.take();
}

void write_message(JsonOut& j, const MessageView& m) {
  j.begin_object();
  j.key("message_id").id_str(m.message_id);
  j.field("conversation_id", m.conversation_id);
  j.field("seq_id", m.seq_id);
  j.field("sender_id", m.sender_id);
  j.field("content", m.content);
  j.field("message_type", m.message_type.empty() ? std::string_view("text") : std::string_view(m.message_type));
  j.field("client_msg_id", m.client_msg_id);
  j.field("created_at", m.created_at);
  if (m.recalled) j.field("recalled", true);
  if (m.erased) j.field("erased", true);
  j.end_object();
}

void write_conversation(JsonOut& j, const ConversationView& c) {
  j.begin_object();
  j.field("conversation_id", c.conversation_id);
  j.field("type", c.type);
  j.field("last_seq", c.last_seq);
  j.field("read_seq", c.read_seq);
  j.field("unread", c.unread);
  j.key("last_message");
  if (c.last_message) {
    write_message(j, *c.last_message);
  } else {
    j.null();
  }
  j.field("updated_at", c.updated_at);
  if (!c.title.empty()) j.field("title", c.title);
  if (c.peer_id) j.field("peer_id", c.peer_id);
  j.end_object();
}

void write_history(JsonOut& j, const HistoryPage& page) {
  j.key("messages").begin_array();
  for (const auto& m : page.messages) write_message(j, m);
  j.end_array();
  j.field("has_more", page.has_more);
}

void write_user(JsonOut& j, const UserView& u, bool self, const Presence* presence) {
  j.begin_object();
  j.field("user_id", u.user_id);
  j.field("username", u.username);
  j.field("nickname", u.nickname);
  j.field("avatar_url", u.avatar_url);
  j.field("signature", u.signature);
  j.field("created_at", u.created_at);
  if (presence) {
    j.field("status", presence_name(presence->status));
    j.field("last_seen", presence->last_seen_ms);
  }
  if (self) {
    j.field("email", u.email);
    j.key("settings").begin_object();
    j.field("allow_search", u.allow_search);
    j.field("message_policy", u.message_policy);
    j.field("push_enabled", u.push_enabled);
    j.field("quiet_start_minute", u.quiet_start_minute);
    j.field("quiet_end_minute", u.quiet_end_minute);
    j.key("muted").begin_array();
    for (const auto& m : u.muted) j.str(m);
    j.end_array();
    j.field("time_zone", u.time_zone);
    j.end_object();
  }
  j.end_object();
}

void write_device(JsonOut& j, const DeviceView& d) {
  j.begin_object();
  j.field("device_id", d.device_id);
  j.field("platform", d.platform);
  j.field("token", d.token);
  j.field("app_id", d.app_id);
  j.field("created_at", d.created_at);
  j.end_object();
}

void write_group(JsonOut& j, const GroupView& g) {
  j.begin_object();
  j.field("group_id", g.group_id);
  j.field("conversation_id", "group_" + std::to_string(g.group_id));
  j.field("name", g.name);
  j.field("description", g.description);
  j.field("owner_id", g.owner_id);
  j.field("member_count", g.member_count);
  j.field("created_at", g.created_at);
  j.field("join_policy", g.join_policy);
  j.field("history", g.history);
  j.end_object();
}

void write_member(JsonOut& j, const MemberView& m) {
  j.begin_object().field("user_id", m.user_id).field("role", m.role).field("joined_at", m.joined_at).end_object();
}

void write_friend(JsonOut& j, const FriendView& f) {
  j.begin_object();
  j.field("user_id", f.user_id);
  j.field("status", f.status);
  j.field("note", f.note);
  j.field("group_name", f.group_name);
  j.field("since", f.since);
  j.end_object();
}

}  // namespace imlog::gw
