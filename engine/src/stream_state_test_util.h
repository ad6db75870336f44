#pragma once
// For the tests of state encoding 5 and older (stream_state_test.cpp, state_store_test.cpp).

#include <string>
#include <vector>

#include "imlog/core/bytes.h"
#include "imlog/engine/stream_state.h"

namespace imlog::testing {

// `s` as version 5 wrote it, holding `recent` as its recent messages: the current encoding with
// the list after the members (version 6 dropped it for the recall index). The tests of older
// versions cut the fields those lacked from its end.
inline std::string v5_encoding(const StreamState& s, const std::vector<RecentMessage>& recent) {
  std::string bytes = encode_state(s);
  std::string list;
  put_u64_le(list, recent.size());
  for (const auto& m : recent) {
    put_u64_le(list, m.message_id);
    put_u64_le(list, m.sender);
    put_u64_le(list, m.seq);
    put_u64_le(list, static_cast<uint64_t>(m.timestamp_ms));
    list.push_back(m.recalled ? 1 : 0);
  }
  bytes.insert(6 * 8 + s.members.size() * 9, list);  // version, 4 fields, member count, members
  bytes[0] = 5;
  return bytes;
}

}  // namespace imlog::testing
