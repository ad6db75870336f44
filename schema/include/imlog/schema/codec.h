#pragma once
// Reading and writing the on-log format (schema/events.fbs).
//
// Reading is zero-copy: read_event() verifies the buffer (so a truncated or forged record is an
// error, never a crash) and returns a view into it, valid while the bytes live. Writing goes
// through the FlatBuffers object API (fb::EventEnvelopeT), which is plain structs: simple to fill,
// and fast enough for the sequencer (measured in bench/).
//
// Thread-safe: every function is pure.

#include <string>
#include <string_view>
#include <system_error>

#include "imlog/core/result.h"
#include "imlog/schema/events_generated.h"

namespace imlog {

enum class SchemaErrc {
  malformed = 1,        // the bytes are not a valid envelope (truncated, corrupt, another format)
  unknown_type,         // a union type this build does not know (written by a newer version)
  missing_field,        // a required field is absent
};
const std::error_category& schema_category();
inline std::error_code make_error_code(SchemaErrc e) { return {static_cast<int>(e), schema_category()}; }

// The schema version this build writes.
inline constexpr uint16_t kSchemaVersion = 10;

// Verified zero-copy views. The error names what is wrong with the bytes.
Result<const fb::EventEnvelope*> read_event(std::string_view bytes);
Result<const fb::CommandEnvelope*> read_command(std::string_view bytes);

Result<const fb::Delivery*> read_delivery(std::string_view bytes);
std::string encode_delivery(const fb::DeliveryT& delivery);

// Encodes an envelope (schema_version is set to kSchemaVersion; set it beforehand to spare a copy
// of the envelope).
std::string encode_event(const fb::EventEnvelopeT& event);
std::string encode_command(const fb::CommandEnvelopeT& command);

// Whether a record of im.events is a control record rather than history: an epoch marker
// (EpochStarted) or a refusal the sequencer remembers (CommandRefused, since schema 6). A reader
// feeds every record to its EpochFilter — the epoch link runs through control records too — and
// then skips these: no read model, delivery, push or stream state holds them.
inline bool is_control_record(fb::Event type) {
  return type == fb::Event::EpochStarted || type == fb::Event::CommandRefused;
}

// "MessageAppended", "GroupCreated", ... for logs and errors.
std::string_view event_type_name(fb::Event type);
std::string_view command_type_name(fb::Command type);

// The names of a group's settings wherever they are written as text (REST, system rows, read
// models): "private" | "public", "all" | "from_join"; "" for a value this build does not know.
std::string_view join_policy_name(fb::JoinPolicy policy);
std::string_view history_rule_name(fb::HistoryRule rule);
// The inverse; false for any other name.
bool parse_join_policy(std::string_view name, fb::JoinPolicy& out);
bool parse_history_rule(std::string_view name, fb::HistoryRule& out);
// A push device's platform as text: "apns" | "fcm" | "webhook" ("" for an unknown value), and back.
std::string_view push_platform_name(fb::PushPlatform platform);
bool parse_push_platform(std::string_view name, fb::PushPlatform& out);

// Is a vector of 8-byte ids in `buffer` at an offset aligned for them? The FlatBuffers 2.0.8
// verifier checks a vector's 4-byte length prefix only, so a forged buffer can place [ulong]
// at 4 mod 8, and reading it is undefined behaviour. True when the vector is absent.
bool aligned_ids(const flatbuffers::Vector<uint64_t>* ids, std::string_view buffer);

// A FlatBuffers string as a string_view ("" when absent).
inline std::string_view sv(const flatbuffers::String* s) {
  return s ? std::string_view(s->data(), s->size()) : std::string_view();
}

}  // namespace imlog

template <>
struct std::is_error_code_enum<imlog::SchemaErrc> : std::true_type {};
