#include "avatar.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "auth.h"

namespace imlog::gw {
namespace {

struct ImageKind {
  std::string_view ext;
  std::string_view content_type;
};
constexpr std::array<ImageKind, 4> kKinds{{
    {"png", "image/png"}, {"jpg", "image/jpeg"}, {"gif", "image/gif"}, {"webp", "image/webp"}}};

Error io_error(std::string message) { return Error(std::make_error_code(std::errc::io_error), std::move(message)); }

}  // namespace

std::optional<std::string_view> image_extension(std::string_view b) {
  using namespace std::string_view_literals;
  if (b.starts_with("\x89PNG\r\n\x1a\n"sv)) return "png";
  if (b.starts_with("\xff\xd8\xff"sv)) return "jpg";
  if (b.starts_with("GIF87a"sv) || b.starts_with("GIF89a"sv)) return "gif";
  if (b.size() >= 12 && b.starts_with("RIFF"sv) && b.substr(8, 4) == "WEBP"sv) return "webp";
  return std::nullopt;
}

bool valid_avatar_name(std::string_view name) {
  if (name.size() < 66 || name[64] != '.') return false;
  for (char c : name.substr(0, 64)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  auto ext = name.substr(65);
  for (const auto& k : kKinds) {
    if (k.ext == ext) return true;
  }
  return false;
}

std::string_view avatar_content_type(std::string_view name) {
  auto dot = name.rfind('.');
  auto ext = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  for (const auto& k : kKinds) {
    if (k.ext == ext) return k.content_type;
  }
  return "application/octet-stream";
}

Result<std::string> store_avatar(const std::string& dir, std::string_view bytes, std::string_view ext) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  char hex[2 * sizeof digest + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  std::string name = std::string(hex) + "." + std::string(ext);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return tl::unexpected(io_error("cannot create the avatar directory " + dir + ": " + ec.message()));
  std::string path = dir + "/" + name;
  if (std::filesystem::exists(path, ec)) return name;  // the same image again
  std::string tmp = dir + "/.upload-" + random_hex(8);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return tl::unexpected(io_error("cannot write " + tmp + ": " + std::strerror(errno)));
  // Each failure keeps its own errno (close and unlink may change it).
  auto fail = [&](std::string what, int err) -> Result<std::string> {
    ::unlink(tmp.c_str());
    return tl::unexpected(io_error("cannot store the avatar in " + dir + ": " + what + ": " + std::strerror(err)));
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      ::close(fd);
      return fail("write", err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return fail("fsync", err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename", errno);
  return name;
}

std::optional<std::string> load_avatar(const std::string& dir, std::string_view name) {
  if (dir.empty() || !valid_avatar_name(name)) return std::nullopt;  // no directory: avatars are off
  std::ifstream in(dir + "/" + std::string(name), std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace imlog::gw
