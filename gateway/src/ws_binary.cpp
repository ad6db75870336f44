#include "imlog/gateway/ws_binary.h"

#include <flatbuffers/idl.h>

#include <memory>
#include <stdexcept>

#include "imlog/gateway/websocket_generated.h"

namespace imlog::gw {

extern const char* const kWsBinarySchema;  // docs/api/websocket.fbs (ws_schema.cpp, generated)

namespace {

// What each binary frame may hold, at most: a sync-result of 200 messages is 202 tables.
constexpr flatbuffers::uoffset_t kMaxDepth = 16;
constexpr flatbuffers::uoffset_t kMaxTables = 4096;

// This thread's parser of the schema. FlatBuffers' JSON printer writes scalars equal to their
// default too (so `has_more: false` and `seq_id: 0` are not lost) and, for an absent optional
// scalar, `null` (dropped by tidy() below).
flatbuffers::Parser& parser() {
  thread_local std::unique_ptr<flatbuffers::Parser> p = [] {
    flatbuffers::IDLOptions o;
    o.strict_json = true;
    o.indent_step = -1;
    o.output_default_scalars_in_json = true;
    o.natural_utf8 = true;
    auto made = std::make_unique<flatbuffers::Parser>(o);
    // The schema is compiled in and checked by the build's flatc: failing here is a broken build.
    if (!made->Parse(kWsBinarySchema)) throw std::logic_error("docs/api/websocket.fbs: " + made->error_);
    return made;
  }();
  return *p;
}

bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

// "new-message" → "NewMessage" (the union member of a JSON frame type); "" if not kebab-case.
std::string member_of(std::string_view type) {
  std::string out;
  bool upper = true;
  for (char c : type) {
    if (c == '-') {
      if (upper) return {};
      upper = true;
    } else if (c >= 'a' && c <= 'z') {
      out += upper ? static_cast<char>(c - 'a' + 'A') : c;
      upper = false;
    } else {
      return {};
    }
  }
  return upper ? std::string() : out;
}

// "NewMessage" → "new-message".
std::string type_of(std::string_view member) {
  std::string out;
  for (char c : member) {
    if (c >= 'A' && c <= 'Z') {
      if (!out.empty()) out += '-';
      out += static_cast<char>(c - 'A' + 'a');
    } else {
      out += c;
    }
  }
  return out;
}

// The printer's JSON as the JSON form writes it: members `"name":value` (the printer writes a
// space after the colon) and no `"name": null` (what it writes for an absent optional scalar).
// Safe on the printer's output: a `"` inside a string is always escaped, so `{"` and `,"` only
// start members.
std::string tidy(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    char c = in[i];
    if ((c == ',' || c == '{') && i + 1 < in.size() && in[i + 1] == '"') {
      size_t end = i + 2;
      while (end < in.size() && is_name_char(in[end])) ++end;
      constexpr std::string_view kNull = "\": null", kColon = "\": ";
      if (in.substr(end, kNull.size()) == kNull) {
        size_t next = end + kNull.size();
        if (c == '{') {
          out += '{';
          if (next < in.size() && in[next] == ',') ++next;  // {"a": null,"b": 1} → {"b":1}
        }
        i = next;
        continue;
      }
      if (in.substr(end, kColon.size()) == kColon) {
        out.append(in.substr(i, end + 2 - i));  // ,"name":
        i = end + kColon.size();
        continue;
      }
    }
    out += c;
    ++i;
  }
  return out;
}

}  // namespace

bool ws_frame_to_binary(std::string_view json, std::string& out, std::string& error) {
  constexpr std::string_view kHead = "{\"type\":\"", kData = "\",\"data\":";
  size_t type_end = json.find('"', kHead.size());
  if (json.substr(0, kHead.size()) != kHead || type_end == std::string_view::npos ||
      json.substr(type_end, kData.size()) != kData) {
    error = "not a {\"type\":...,\"data\":...} frame";
    return false;
  }
  std::string type(json.substr(kHead.size(), type_end - kHead.size()));
  std::string member = member_of(type);
  if (member.empty()) {
    error = "frame type `" + type + "` is not kebab-case";
    return false;
  }
  std::string text = "{\"data_type\":\"" + member + "\",\"data\":";
  text += json.substr(type_end + kData.size());
  auto& p = parser();
  if (!p.ParseJson(text.c_str())) {
    error = "frame `" + type + "` is not in docs/api/websocket.fbs: " + p.error_;
    return false;
  }
  out.assign(reinterpret_cast<const char*>(p.builder_.GetBufferPointer()), p.builder_.GetSize());
  return true;
}

bool ws_frame_from_binary(std::string_view bytes, std::string& json, WsBinaryError& error) {
  auto invalid = [&](std::string why) {
    error = {"invalid_binary", "a binary message of " + std::to_string(bytes.size()) +
                                   " bytes is not an imlog.v1 Frame (docs/api/websocket.fbs): " + std::move(why)};
    return false;
  };
  if (bytes.size() < 8) return invalid("shorter than a FlatBuffer's 8-byte header");
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (!ws::FrameBufferHasIdentifier(data)) {
    return invalid("its file identifier (bytes 4..7) is not `" + std::string(kWsBinaryIdentifier) + "`");
  }
  flatbuffers::Verifier verifier(data, bytes.size(), kMaxDepth, kMaxTables);
  if (!ws::VerifyFrameBuffer(verifier)) {
    return invalid("it fails FlatBuffers verification (an offset or length points outside the message, or it nests "
                   "deeper than " + std::to_string(kMaxDepth) + " tables or holds more than " +
                   std::to_string(kMaxTables) + ")");
  }
  const ws::Frame* frame = ws::GetFrame(data);
  auto kind = frame->data_type();
  if (kind == ws::Data::NONE || frame->data() == nullptr) {
    error = {"invalid_frame", "the binary frame has no data: set Frame.data to one of the frame tables"};
    return false;
  }
  if (kind > ws::Data::MAX) {
    error = {"unknown_type", "unknown frame type #" + std::to_string(static_cast<unsigned>(kind)) +
                                 " (Frame.data_type): this server knows #1.." +
                                 std::to_string(static_cast<unsigned>(ws::Data::MAX))};
    return false;
  }
  std::string text;
  if (!flatbuffers::GenerateText(parser(), data, &text)) {
    error = {"invalid_utf8", "a string in the binary frame is not valid UTF-8; strings are UTF-8"};
    return false;
  }
  // The printer writes {"data_type": "<Member>","data": {...}}: the JSON form's {"type","data"}.
  constexpr std::string_view kHead = "{\"data_type\": \"", kData = "\",\"data\": ";
  size_t member_end = text.find('"', kHead.size());
  if (text.compare(0, kHead.size(), kHead) != 0 || member_end == std::string::npos ||
      text.compare(member_end, kData.size(), kData) != 0) {
    return invalid("the FlatBuffers printer wrote an unexpected shape");  // never: the printer's format is fixed
  }
  json = "{\"type\":\"" + type_of(std::string_view(text).substr(kHead.size(), member_end - kHead.size())) +
         "\",\"data\":" + tidy(std::string_view(text).substr(member_end + kData.size()));
  return true;
}

}  // namespace imlog::gw
