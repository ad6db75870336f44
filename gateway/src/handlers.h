#pragma once
// Small pieces every REST handler uses. Private to gateway/src.

#include <cstdint>
#include <string>
#include <string_view>

#include "api.h"
#include "commands.h"
#include "json.h"
#include "services.h"

namespace imlog::gw {

// Parses the body as a JSON object; otherwise answers 400 `invalid_json` (or `invalid` when it
// is nested too deep) and returns false.
bool parse_body(Services& svc, const ApiRequest& req, const Respond& respond, JsonBody& body);

// 400 {code: "invalid", message}.
ApiReply invalid(Services& svc, std::string_view message);

// An error reply counted in the metrics.
ApiReply counted_error(Services& svc, unsigned status, std::string_view code, std::string_view message);

// `reply` with a Retry-After header of `seconds` (at least 1).
ApiReply with_retry_after(ApiReply reply, int64_t seconds);

// Runs `fn` on the password threads unless max_password_work hashes are queued or running; then
// answers 503 `unavailable` with Retry-After and returns false. Every hash and verification goes
// through it.
bool run_password_work(Services& svc, const Respond& respond, std::function<void()> fn);

// Runs `fn` on the same threads unless kMaxAvatarWork avatar reads and writes are queued; then 503.
void run_avatar_work(Services& svc, const Respond& respond, std::function<void()> fn);

// A user or group id in a path: decimal, 1 ≤ id < 2^53.
bool parse_id(std::string_view s, uint64_t& out);

// Usernames: 3 to 32 of [A-Za-z0-9_.-] (the engine's rule, checked early to spare a hash).
bool valid_username(std::string_view name);

}  // namespace imlog::gw
