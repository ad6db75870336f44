#pragma once
// Fixed-width little-endian integers in byte strings: the engine's stored stream states and dedupe
// entries. A value goes in with one append, not a byte at a time: a checkpoint encodes megabytes.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace imlog {

inline void put_u64_le(std::string& out, uint64_t v) {
  char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(v >> (8 * i));
  out.append(bytes, sizeof bytes);
}

// The value at `at`; the caller checked that 8 bytes are there.
inline uint64_t get_u64_le(std::string_view in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

}  // namespace imlog
