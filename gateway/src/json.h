#pragma once
// JSON in and out of the gateway (RapidJSON; private to gateway/src so no includer pays for it).
// The shapes are those of docs/api/openapi.yaml: user and group ids are numbers, a message_id is
// a decimal string, seq ids are numbers, times are Unix ms.
//
// Thread-compatible values.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "imlog/core/utf8.h"  // valid_utf8, to_valid_utf8
#include "imlog/projections/query.h"
#include "imlog/tasks/sessions.h"

namespace imlog::gw {

// Writes one JSON document. Building a frame allocates only the string it returns: RapidJSON
// writes straight into it, and the writer's stack of open objects and arrays lives inside this
// object (a document nested deeper than the API's spills to the heap).
class JsonOut {
 public:
  JsonOut() : w_(out_, &levels_, kLevels) { out_.s.reserve(kReserve); }
  JsonOut(const JsonOut&) = delete;  // the writer points into this object
  JsonOut& operator=(const JsonOut&) = delete;
  JsonOut& begin_object() { w_.StartObject(); return *this; }
  JsonOut& end_object() { w_.EndObject(); return *this; }
  JsonOut& begin_array() { w_.StartArray(); return *this; }
  JsonOut& end_array() { w_.EndArray(); return *this; }
  // Keys and strings go out as valid UTF-8 whatever they hold (to_valid_utf8): error messages
  // echo client input, and stored data may predate a check.
  JsonOut& key(std::string_view k) { return text(k, true); }
  JsonOut& str(std::string_view v) { return text(v, false); }
  JsonOut& u64(uint64_t v) { w_.Uint64(v); return *this; }
  JsonOut& i64(int64_t v) { w_.Int64(v); return *this; }
  JsonOut& boolean(bool v) { w_.Bool(v); return *this; }
  JsonOut& null() { w_.Null(); return *this; }
  // A 64-bit id as a decimal string (message ids).
  JsonOut& id_str(uint64_t v);
  // key + value shortcuts
  JsonOut& field(std::string_view k, std::string_view v) { return key(k).str(v); }
  JsonOut& field(std::string_view k, const char* v) { return key(k).str(v); }
  JsonOut& field(std::string_view k, uint64_t v) { return key(k).u64(v); }
  JsonOut& field(std::string_view k, int64_t v) { return key(k).i64(v); }
  JsonOut& field(std::string_view k, uint32_t v) { return key(k).u64(v); }
  JsonOut& field(std::string_view k, int32_t v) { return key(k).i64(v); }
  JsonOut& field(std::string_view k, bool v) { return key(k).boolean(v); }
  // The document written so far, moved out: call it once, at the end.
  [[nodiscard]] std::string take() { return std::move(out_.s); }

 private:
  // RapidJSON's output stream concept over the string take() returns.
  struct Out {
    using Ch = char;
    std::string s;
    void Put(char c) { s.push_back(c); }
    void Flush() {}
  };
  using Levels = rapidjson::MemoryPoolAllocator<>;
  static constexpr size_t kReserve = 384;    // a chat frame's size, about
  static constexpr size_t kLevels = 8;       // the writer's first stack: 8 levels of 16 bytes
  static constexpr size_t kLevelBytes = 512;  // room for the pool's header and that stack, grown
  JsonOut& text(std::string_view s, bool is_key);
  alignas(std::max_align_t) char level_bytes_[kLevelBytes];
  Levels levels_{level_bytes_, sizeof level_bytes_, 1024};
  Out out_;
  rapidjson::Writer<Out, rapidjson::UTF8<>, rapidjson::UTF8<>, Levels> w_;
};

// Typed reads of one JSON object's members. Each getter returns false and sets the shared error
// ("field `content` must be a string") when the member has the wrong type, or is required and absent.
class JsonFields {
 public:
  JsonFields(const rapidjson::Value* obj, std::string* error) : obj_(obj), error_(error) {}
  [[nodiscard]] bool has(const char* name) const;
  bool str(const char* name, std::string& out, bool required, size_t max_bytes = 1 << 20);
  bool opt_str(const char* name, std::optional<std::string>& out, size_t max_bytes = 1 << 20);
  bool u64(const char* name, uint64_t& out, bool required);
  // A number or a decimal string (message ids).
  bool id(const char* name, uint64_t& out, bool required);
  bool opt_bool(const char* name, std::optional<bool>& out);
  bool opt_i64(const char* name, std::optional<int64_t>& out);
  bool u64_list(const char* name, std::vector<uint64_t>& out, size_t max_items);
  bool str_list(const char* name, std::vector<std::string>& out, size_t max_items, size_t max_item_bytes = 1 << 20);
  // A nested object (nullptr obj when absent and not required).
  bool object(const char* name, JsonFields& out, bool required);

 private:
  bool fail(const char* name, const char* what);
  const rapidjson::Value* find(const char* name) const;
  const rapidjson::Value* obj_;
  std::string* error_;
};

// How deep client JSON may nest arrays and objects. The API's documents are two or three levels
// deep; the limit keeps a hostile document from costing stack or memory in proportion to its depth.
inline constexpr unsigned kMaxJsonDepth = 32;

// Why client JSON was refused.
struct JsonError {
  std::string message;    // names the problem and its offset
  bool too_deep = false;  // nested deeper than kMaxJsonDepth (else malformed)
};

// Parses client JSON (any value) into `doc`. The parse is iterative (RapidJSON's recursive parser
// overflowed a thread's stack on 140 KB of '['), nesting is at most kMaxJsonDepth, and every key
// and string is valid UTF-8: RapidJSON validates the bytes of the text but decodes a lone
// surrogate escape ("\udc00") into bytes that are not UTF-8. Bodies and frames are parsed here
// (JsonBody); the JWT header (auth.cpp) is bounded by the 4096-byte token limit instead.
bool parse_client_json(std::string_view text, rapidjson::Document& doc, JsonError& error);

class JsonBody {
 public:
  JsonBody() = default;
  JsonBody(const JsonBody&) = delete;  // the document points into this object's own buffer
  JsonBody& operator=(const JsonBody&) = delete;

  // Parses `text` as one JSON object (parse_client_json). False with error() naming the problem
  // and its offset otherwise.
  bool parse(std::string_view text);
  [[nodiscard]] JsonFields fields() { return JsonFields(&doc_, &error_); }
  [[nodiscard]] const std::string& error() const { return error_; }
  // The error code of a failed parse: "invalid" for a document nested too deep (well-formed, over
  // a limit), "invalid_json" otherwise.
  [[nodiscard]] std::string_view parse_error_code() const { return too_deep_ ? "invalid" : "invalid_json"; }

 private:
  // A chat frame's values fit in kInlineBytes inside the object, so parsing one allocates no
  // memory pool from the heap (RapidJSON's default pool starts with a 64 KiB chunk, one large
  // malloc and free per frame); a bigger body spills into chunks of kChunkBytes.
  static constexpr size_t kInlineBytes = 2048;
  static constexpr size_t kChunkBytes = 8192;
  alignas(std::max_align_t) char inline_[kInlineBytes];
  rapidjson::MemoryPoolAllocator<> pool_{inline_, sizeof inline_, kChunkBytes};
  rapidjson::Document doc_{&pool_, 256};
  std::string error_;
  bool too_deep_ = false;
};

// A {code, message} body.
std::string error_json(std::string_view code, std::string_view message);

// The API's objects (docs/api/openapi.yaml).
void write_message(JsonOut& j, const MessageView& m);
void write_conversation(JsonOut& j, const ConversationView& c);
void write_history(JsonOut& j, const HistoryPage& page);  // messages: [...], has_more
// `self`: include email and settings (the user's own profile). `presence`: add status and last_seen.
void write_user(JsonOut& j, const UserView& u, bool self, const Presence* presence = nullptr);
void write_group(JsonOut& j, const GroupView& g);
void write_device(JsonOut& j, const DeviceView& d);  // the owner's view: token included
void write_member(JsonOut& j, const MemberView& m);
void write_friend(JsonOut& j, const FriendView& f);

}  // namespace imlog::gw
