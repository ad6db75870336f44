#pragma once
// The binary form of the WebSocket protocol, `imlog.v1` (docs/api/websocket.md, "The binary
// form"): one FlatBuffer of docs/api/websocket.fbs per WebSocket binary message, carrying the same
// frames as the JSON form (`imlog.v1.json`), field for field.
//
// The server renders each frame once, as JSON, and a binary connection's frames are encoded from
// that text (ws_frame_to_binary); a client's binary message is verified and turned into the JSON
// frame it stands for (ws_frame_from_binary), which then goes through the one frame decoder with
// the JSON form's rules. One frame model, two encodings.
//
// Thread-safe: each thread keeps its own FlatBuffers parser of the schema (made on first use).

#include <string>
#include <string_view>

namespace imlog::gw {

// "IMW1": the file identifier of every binary frame (bytes 4..7).
inline constexpr std::string_view kWsBinaryIdentifier = "IMW1";

// Why bytes are not a binary frame: an error frame's code and message.
struct WsBinaryError {
  std::string code;     // invalid_binary, invalid_frame, unknown_type, invalid_utf8
  std::string message;  // names what is wrong
};

// A JSON frame as the server writes it ({"type":"<type>","data":{...}}, type first) → its binary
// frame in `out`. False, with `error` saying why, for a frame the schema does not describe (a
// type or field missing from websocket.fbs: a server bug, never a client's).
bool ws_frame_to_binary(std::string_view json, std::string& out, std::string& error);

// A binary frame (bytes from the wire, trusted in nothing) → the JSON frame text it stands for,
// in `json`. False, with `error`, when the bytes are not a verifiable Frame of the schema, carry
// no data, a frame type this schema does not know, or a string that is not UTF-8. The buffer is
// verified (offsets, lengths, depth) before anything reads it.
bool ws_frame_from_binary(std::string_view bytes, std::string& json, WsBinaryError& error);

}  // namespace imlog::gw
