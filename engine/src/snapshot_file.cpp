#include "imlog/engine/snapshot_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iterator>

#include <xxhash.h>

namespace imlog {

Status write_file_atomically(const std::string& path, std::string_view bytes) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(std::errc::io_error, "cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  bool ok = done == bytes.size() && ::fdatasync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok) return fail(std::errc::io_error, "cannot write " + tmp + ": " + std::strerror(saved));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(std::errc::io_error, "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  return {};
}

std::string SnapshotWriter::finish() {
  put(static_cast<uint64_t>(XXH64(bytes_.data(), bytes_.size(), 0)));
  return std::move(bytes_);
}

Status SnapshotWriter::write(const std::string& path) { return write_file_atomically(path, finish()); }

std::optional<SnapshotReader> SnapshotReader::open(const std::string& path, std::string_view magic) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return parse(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()), magic);
}

SnapshotReader SnapshotReader::parse(std::string bytes, std::string_view magic) {
  SnapshotReader r;
  r.bytes_ = std::move(bytes);
  const std::string& b = r.bytes_;
  if (b.size() < magic.size() + 8 || std::string_view(b).substr(0, magic.size()) != magic) {
    r.problem_ = "not a snapshot of this kind";
    return r;
  }
  uint64_t sum = 0;
  std::memcpy(&sum, b.data() + b.size() - 8, 8);
  if (sum != XXH64(b.data(), b.size() - 8, 0)) {
    r.problem_ = "checksum mismatch";
    return r;
  }
  r.pos_ = magic.size();
  r.end_ = b.size() - 8;
  return r;
}

}  // namespace imlog
