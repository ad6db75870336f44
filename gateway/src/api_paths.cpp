// The pure half of the REST router (api.h): path splitting and matching, percent-decoding, query
// parameters and the bearer token. No service is touched here, so tests and fuzzers link it alone.
#include <cctype>
#include <charconv>

#include "api.h"

namespace imlog::gw {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Appends `method` to an Allow list unless it is there already: /users/me and /users/{} are two
// routes of one path, and a method both have must be listed once (RFC 9110 §10.2.1).
void add_allowed(std::string& allow, std::string_view method) {
  if ((", " + allow + ", ").find(", " + std::string(method) + ", ") != std::string::npos) return;
  if (!allow.empty()) allow += ", ";
  allow += method;
}

}  // namespace

std::string_view method_name(Method m) {
  switch (m) {
    case Method::get: return "GET";
    case Method::post: return "POST";
    case Method::put: return "PUT";
    case Method::patch: return "PATCH";
    case Method::del: return "DELETE";
    case Method::head: return "HEAD";
    case Method::options: return "OPTIONS";
    case Method::other: return "OTHER";
  }
  return "OTHER";
}

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  size_t i = 0;
  while (i <= query.size()) {
    size_t amp = query.find('&', i);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view pair = query.substr(i, amp - i);
    size_t eq = pair.find('=');
    std::string_view k = pair.substr(0, eq);
    if (k == name) {
      if (eq == std::string_view::npos) return std::string();
      return percent_decode(pair.substr(eq + 1), true);
    }
    i = amp + 1;
  }
  return std::nullopt;
}

bool query_u64(std::string_view query, std::string_view name, uint64_t& out, std::string& error, UintRange range) {
  auto v = query_param(query, name);
  if (!v) return true;
  uint64_t parsed = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), parsed);
  if (v->empty() || ec != std::errc() || p != v->data() + v->size() || parsed < range.min || parsed > range.max) {
    std::string wanted = range.max == UINT64_MAX && range.min == 0
                             ? "a non-negative integer"
                             : "an integer from " + std::to_string(range.min) + " to " + std::to_string(range.max);
    error = "query parameter `" + std::string(name) + "` must be " + wanted + ", got `" + *v + "`";
    return false;
  }
  out = parsed;
  return true;
}

std::string_view bearer_token(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size()) return {};
  for (size_t i = 0; i < kBearer.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
        std::tolower(static_cast<unsigned char>(kBearer[i]))) {
      return {};
    }
  }
  auto t = authorization.substr(kBearer.size());
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

void ApiRouter::add(Method method, std::string_view pattern, Auth auth, Handler handler) {
  Route r{method, {}, auth, std::move(handler)};
  for (auto s : split_path(pattern)) r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

ApiRouter::Match ApiRouter::match(Method method, std::string_view path) const {
  auto segments = split_path(path);
  Match m;
  for (const Route& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool same_path = true;
    for (size_t i = 0; i < segments.size() && same_path; ++i) {
      if (r.segments[i] != "{}") {
        same_path = r.segments[i] == segments[i];
        continue;
      }
      auto decoded = percent_decode(segments[i], false);
      if (!decoded) {
        m.bad_escape = true;
        m.bad_segment = std::string(segments[i]);
        return m;
      }
      params.push_back(std::move(*decoded));
    }
    if (!same_path) continue;
    if (r.method == method || (method == Method::head && r.method == Method::get)) {
      m.route = &r;
      m.params = std::move(params);
      return m;
    }
    add_allowed(m.allow, method_name(r.method));
  }
  return m;
}

}  // namespace imlog::gw
