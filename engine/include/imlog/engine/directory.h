#pragma once
// What the sequencer may know about users outside the stream it is deciding for
// (docs/architecture.md, "State, decide and apply"): whether a user exists, and their privacy
// settings. Read from a projection, so eventually consistent — acceptable because none of it must
// be ordered with a conversation's messages. (Blocks and friendship, which must be, live in the
// single stream's own state.)
//
// Thread-safe: implementations are read by the sequencer thread while they update.

#include <cstdint>

#include "imlog/schema/codec.h"

namespace imlog {

struct UserFacts {
  bool exists = false;
  fb::MessagePolicy message_policy = fb::MessagePolicy::Everyone;
  bool allow_search = true;
  int64_t erased_at_ms = 0;  // when the user erased their account (UserErased's time); 0: never
};

class Directory {
 public:
  virtual ~Directory() = default;
  [[nodiscard]] virtual UserFacts user(uint64_t user_id) const = 0;
};

}  // namespace imlog
