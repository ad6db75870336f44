#pragma once
// Avatar images (issue 6): `POST /api/v1/users/me/avatar` takes the raw image as the request body,
// recognises PNG, JPEG, GIF and WebP by their first bytes (the Content-Type header is not trusted),
// refuses anything larger than gateway.avatar_max_bytes, and stores the bytes under
// gateway.avatar_dir as `<sha256 hex>.<ext>`: content-addressed, so an upload never overwrites
// another image and a URL never changes meaning. `GET /avatars/<name>` serves them with their
// type and long-lived caching; the name is checked against that exact shape, so no path can
// leave the directory. The profile's avatar_url becomes `/avatars/<name>` through UpdateProfile.
//
// Pure functions here; the routes run file I/O on the blocking pool. Thread-safe.

#include <optional>
#include <string>
#include <string_view>

#include "imlog/core/result.h"

namespace imlog::gw {

// "png", "jpg", "gif" or "webp" when `bytes` start like such an image; nullopt otherwise.
std::optional<std::string_view> image_extension(std::string_view bytes);

// Is `name` one this gateway could have stored: 64 lowercase hex digits, '.', a known extension.
bool valid_avatar_name(std::string_view name);

// The Content-Type of a valid name ("image/png", ...).
std::string_view avatar_content_type(std::string_view name);

// Writes `bytes` into `dir` (created if missing) as `<sha256 hex>.<ext>`, atomically (a temporary
// file renamed into place); an existing file of that name is kept. Returns the name.
Result<std::string> store_avatar(const std::string& dir, std::string_view bytes, std::string_view ext);

// The bytes of a stored avatar; nullopt when there is none of that name, or `dir` is empty.
std::optional<std::string> load_avatar(const std::string& dir, std::string_view name);

}  // namespace imlog::gw
