#pragma once
// Snapshot files: a reader of im.events (LogDirectory, the router) keeps what it derived, with the
// offsets it derived it up to, in one file, so a restart reads only what came after instead of the
// whole log. A snapshot is a cache: a missing, damaged or foreign one costs a longer start, never
// a wrong state — so it carries a kind (8 bytes of magic) and a checksum (XXH64 of every byte
// before it), and is replaced atomically (written beside, fdatasync'd, renamed).
//
// write_file_atomically() is the replacement alone, for bytes made elsewhere.
//
// Layout: magic (8 bytes), the caller's fields (fixed-width little-endian numbers, and byte strings
// as a u32 length and the bytes), XXH64 (u64). The same bytes can be kept elsewhere than in a file
// (finish() and parse(): the push worker keeps its progress in Redis in the distributed mode).
// Threading: none; one writer or reader per object.

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "imlog/core/result.h"

namespace imlog {

// Replaces `path` with `bytes`: written beside it, fdatasync'd, renamed. Fails naming the path.
Status write_file_atomically(const std::string& path, std::string_view bytes);

class SnapshotWriter {
 public:
  explicit SnapshotWriter(std::string_view magic) : bytes_(magic) {}
  template <class T>
  void put(T v) {
    static_assert(std::is_arithmetic_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void put_bytes(std::string_view b) {
    put(static_cast<uint32_t>(b.size()));
    bytes_.append(b);
  }
  // Appends the checksum and returns the snapshot's bytes; the writer is spent.
  std::string finish();
  // finish(), then replaces `path` with the snapshot. Fails naming the path.
  Status write(const std::string& path);

 private:
  std::string bytes_;
};

class SnapshotReader {
 public:
  // Reads `path`. std::nullopt when there is none; else a reader, whose problem() says why it
  // cannot be used (empty when the magic and checksum hold).
  static std::optional<SnapshotReader> open(const std::string& path, std::string_view magic);
  // A reader of bytes finish() made (kept elsewhere than in a file).
  static SnapshotReader parse(std::string bytes, std::string_view magic);

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
  // False when the length or the bytes run past the end.
  bool get_bytes(std::string& b) {
    uint32_t n = 0;
    if (!get(n) || end_ - pos_ < n) return false;
    b.assign(bytes_, pos_, n);
    pos_ += n;
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
