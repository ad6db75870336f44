#pragma once
// Streams, the unit of ordering (docs/architecture.md, "Streams and partitions"), and the topics of
// the log.
//
//   single_<lo>_<hi>   one-to-one conversation of two users, ids ascending
//   group_<id>         a group conversation
//   world              the conversation open to every registered user
//   user_<id>          one user's own stream: profile, settings, friend groups
//   names_<bucket>     a bucket of the username registry: a name is claimed exactly once
//
// Pure functions; thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imlog {

inline constexpr std::string_view kCommandsTopic = "im.commands";
inline constexpr std::string_view kEventsTopic = "im.events";
inline constexpr std::string_view kTasksTopic = "im.tasks";
inline constexpr std::string_view kDeadLetterTopic = "im.dlq";
// Deliveries for one gateway: "im.deliver.<gateway_id>".
inline constexpr std::string_view kDeliveryTopicPrefix = "im.deliver.";
std::string delivery_topic(std::string_view gateway_id);

// Buckets of the username registry. Fixed forever: it decides which stream claims a name, and
// user ids are derived from it.
inline constexpr uint32_t kNameBuckets = 64;

enum class StreamKind { single, group, world, user, names };

struct StreamRef {
  StreamKind kind = StreamKind::world;
  uint64_t a = 0;  // single: the lower user id; group/user: the id; names: the bucket
  uint64_t b = 0;  // single: the higher user id
};

// Parses a stream id; nullopt when it is not one of the forms above (including a single stream
// whose ids are not ascending and distinct, or an id of 0).
std::optional<StreamRef> parse_stream(std::string_view stream);

// Whose retention override a RetentionSet by `by` on `stream` sets: true for a one-to-one's higher
// user (the second side, StreamState::keep_b); false for its lower user and for a group's own
// (keep_a). The engine and every read model place an override by this one rule.
inline bool retention_sets_second_side(const StreamRef& stream, uint64_t by) {
  return stream.kind == StreamKind::single && by == stream.b;
}

std::string single_stream(uint64_t user_a, uint64_t user_b);  // order of arguments is free
std::string group_stream(uint64_t group_id);
std::string user_stream(uint64_t user_id);
std::string names_stream(std::string_view username);
inline constexpr std::string_view kWorldStream = "world";

// The bucket of a username (xxHash64 of the exact bytes, modulo kNameBuckets).
uint32_t name_bucket(std::string_view username);

// The user id of the n-th (from 1) registration in a names bucket: ids are dense per bucket and
// distinct across buckets, derived only from the log, and below 2^53 (exact in JavaScript).
inline uint64_t user_id_for(uint32_t bucket, uint64_t nth) {
  return (nth - 1) * kNameBuckets + bucket + 1;
}

// Is this a conversation (a stream whose events are a chat timeline)?
inline bool is_conversation(StreamKind k) {
  return k == StreamKind::single || k == StreamKind::group || k == StreamKind::world;
}

}  // namespace imlog
