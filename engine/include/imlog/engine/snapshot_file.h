#pragma once
// Snapshot files: a reader of im.events (LogDirectory, the router) keeps what it derived, with the
// offsets it derived it up to, in one file, so a restart reads only what came after instead of the
// whole log. A snapshot is a cache: a missing, damaged or foreign one costs a longer start, never
// a wrong state — so it carries a kind (8 bytes of magic) and a checksum (XXH64 of every byte
// before it), and is replaced atomically (written beside, fdatasync'd, renamed).
//
// Layout: magic (8 bytes), the caller's fields (fixed-width little-endian numbers), XXH64 (u64).
// Threading: none; one writer or reader per object.

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "imlog/core/result.h"

namespace imlog {

class SnapshotWriter {
 public:
  explicit SnapshotWriter(std::string_view magic) : bytes_(magic) {}
  template <class T>
  void put(T v) {
    static_assert(std::is_arithmetic_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  // Appends the checksum and replaces `path` with the snapshot. Fails naming the path.
  Status write(const std::string& path);

 private:
  std::string bytes_;
};

class SnapshotReader {
 public:
  // Reads `path`. std::nullopt when there is none; else a reader, whose problem() says why it
  // cannot be used (empty when the magic and checksum hold).
  static std::optional<SnapshotReader> open(const std::string& path, std::string_view magic);

  [[nodiscard]] const std::string& problem() const { return problem_; }
  // False once the fields run out (the snapshot is truncated).
  template <class T>
  bool get(T& v) {
    static_assert(std::is_arithmetic_v<T>);
    if (end_ - pos_ < sizeof v) return false;
    std::memcpy(&v, bytes_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return true;
  }
  [[nodiscard]] size_t left() const { return end_ - pos_; }

 private:
  std::string bytes_;
  size_t pos_ = 0;
  size_t end_ = 0;
  std::string problem_;
};

}  // namespace imlog
