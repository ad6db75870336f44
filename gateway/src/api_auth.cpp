// /api/v1/auth: register, login, refresh, logout, and DELETE /api/v1/users/me, the erasure of an
// account behind its password (the gateway README, "Auth"; docs/api/openapi.yaml).

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>

#include "handlers.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/query.h"

namespace imlog::gw {
namespace {

constexpr size_t kMinPassword = 8;
constexpr size_t kMaxPassword = 1024;

// `sid`: the login session the tokens belong to (a login starts one, a refresh keeps it).
std::string token_pair_json(Services& svc, uint64_t user_id, const std::string& sid) {
  auto access = svc.tokens.issue_access(user_id, sid);
  auto refresh = svc.tokens.issue_refresh(user_id, sid);
  int64_t now = svc.clock.now_ms();
  JsonOut j;
  j.begin_object();
  j.field("access_token", access.token);
  j.field("refresh_token", refresh.token);
  j.field("token_type", "Bearer");
  j.field("expires_in", (access.expires_at_ms - now) / 1000);
  j.field("refresh_expires_in", (refresh.expires_at_ms - now) / 1000);
  j.field("user_id", user_id);
  j.end_object();
  return j.take();
}

// ---- throttling ---------------------------------------------------------------------------------

// One login or registration as the throttle sees it (login_throttle.h): the digest of the
// username (empty for a registration: only the address is throttled) and the client's address.
struct Attempt {
  std::string account;
  std::string address;
  bool counted = false;  // admitted and counted (false when the throttle's store failed: fail open)
};

ApiReply rate_limited(Services& svc, const Admission& a) {
  int64_t seconds = std::max<int64_t>(1, (a.retry_after.count() + 999) / 1000);
  std::string why = a.refused_by == ThrottleKey::account_address ? "too many failed logins for this username from your address"
                    : a.refused_by == ThrottleKey::account       ? "too many failed logins for this username"
                                                                 : "too many failed logins or registrations from your address";
  return with_retry_after(counted_error(svc, 429, "rate_limited", why + "; retry in " + std::to_string(seconds) + " s"),
                          seconds);
}

uint64_t worker_key(const Attempt& at) { return std::hash<std::string>{}(at.address); }

// Asks the throttle whether the attempt may go on, on a registry worker (a Redis throttle blocks):
// 429 when it may not; else runs `next` there. A throttle that cannot answer (Redis down) admits:
// it must not stop every login, and the bound on concurrent hashes still holds.
void admit_then(Services& svc, std::shared_ptr<Attempt> at, const Respond& respond, std::function<void()> next) {
  bool queued = svc.registry.post(worker_key(*at), [&svc, at, respond, next = std::move(next)] {
    auto a = svc.throttle.admit(at->account, at->address);
    if (a && !a->admitted()) return respond(rate_limited(svc, *a));
    at->counted = a.has_value();
    next();
  });
  if (!queued) {
    respond(with_retry_after(counted_error(svc, 503, "unavailable", "the server is busy; retry in a second"), 1));
  }
}

// The attempt's end: a success takes its count back (and clears the pair), an attempt without a
// verdict takes it back everywhere, a failure keeps it. On a registry worker, like admit.
enum class Outcome { failed, succeeded, abandoned };
void settle(Services& svc, const std::shared_ptr<Attempt>& at, Outcome outcome) {
  if (!at->counted || outcome == Outcome::failed) return;
  (void)svc.registry.post(worker_key(*at), [&svc, at, outcome] {
    if (outcome == Outcome::succeeded) {
      svc.throttle.succeeded(at->account, at->address);
    } else {
      svc.throttle.abandoned(at->account, at->address);
    }
  });
}

std::shared_ptr<Attempt> attempt_of(Services& svc, const ApiRequest& req, std::string_view username) {
  auto at = std::make_shared<Attempt>();
  if (!username.empty()) at->account = username_digest(username);
  at->address = client_address(req.remote_address, req.forwarded_for, svc.trusted_proxies);
  return at;
}

// ---- register and login -------------------------------------------------------------------------

struct Registration {
  std::string username, password, nickname, email;
};

// On a password thread: hashes, then submits RegisterUser. A name that is taken counts as a failed
// attempt of the address (so names cannot be probed through registration faster than through login).
void register_user(Services& svc, std::shared_ptr<Attempt> at, Registration r, Respond respond) {
  auto hash = svc.passwords.hash(r.password);
  if (!hash) {
    settle(svc, at, Outcome::abandoned);
    return respond(counted_error(svc, 503, "unavailable", hash.error().message()));
  }
  fb::CommandUnion cmd;
  cmd.Set(fb::RegisterUserT{{}, r.username, *hash, r.nickname, r.email});
  std::string stream = names_stream(r.username);
  std::string trace = respond.trace_id();
  submit_command(svc, std::move(trace), std::move(stream), 0, std::move(cmd),
                 [&svc, at, respond = std::move(respond), username = r.username, hash = *hash](Reply reply) {
                   if (succeeded(reply)) {
                     settle(svc, at, Outcome::succeeded);
                     svc.recent_registrations.add(username, reply->result_id, hash, svc.clock.now_ms());
                     JsonOut j;
                     j.begin_object().field("user_id", reply->result_id).field("username", username).end_object();
                     return respond(json_reply(201, j.take()));
                   }
                   auto fl = failure_of(reply);
                   if (fl.code == "already_exists") {
                     settle(svc, at, Outcome::failed);
                     return respond(counted_error(svc, 409, "already_exists", "username `" + username + "` is taken"));
                   }
                   settle(svc, at, Outcome::abandoned);
                   respond(counted_error(svc, fl.status, fl.code, fl.message));
                 });
}

void on_register(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  Registration r;
  if (!f.str("username", r.username, true, 64) || !f.str("password", r.password, true, kMaxPassword) ||
      !f.str("nickname", r.nickname, false, 400) || !f.str("email", r.email, false, 400)) {
    return respond(invalid(svc, body.error()));
  }
  if (!valid_username(r.username)) {
    return respond(invalid(svc, "username must be 3 to 32 characters of letters, digits, _ . -"));
  }
  if (r.password.size() < kMinPassword) {
    return respond(invalid(svc, "password must be at least " + std::to_string(kMinPassword) + " bytes"));
  }
  auto at = attempt_of(svc, req, {});
  admit_then(svc, at, respond, [&svc, at, respond, r = std::move(r)]() mutable {
    bool queued = run_password_work(svc, respond, [&svc, at, respond, r = std::move(r)]() mutable {
      register_user(svc, at, std::move(r), std::move(respond));
    });
    if (!queued) settle(svc, at, Outcome::abandoned);
  });
}

// Who `username` is: this gateway's own recent registrations (so a login right after a register
// here works before the read model has the user), else the read model. nullopt: no such user.
Result<std::optional<Credentials>> find_credentials(Services& svc, const std::string& username) {
  uint64_t id = 0;
  std::string hash;
  if (svc.recent_registrations.find(username, svc.clock.now_ms(), id, hash) && !svc.erased.contains(id)) {
    return Credentials{id, std::move(hash)};
  }
  if (!valid_username(username)) return std::nullopt;  // cannot exist
  return svc.query.model().credentials(username);
}

// On a password thread: exactly one verification whether the user exists or not, so an unknown
// name answers in the time of a wrong password. Only when the name was unknown is the read model
// asked once more afterwards: a user who registered through another gateway a moment ago may have
// reached it meanwhile (only then is there a second verification).
void verify_login(Services& svc, std::shared_ptr<Attempt> at, const std::string& username, const std::string& password,
                  std::optional<Credentials> found, const Respond& respond) {
  bool ok = false;
  if (found) {
    ok = svc.passwords.verify(found->password_hash, password);
  } else {
    svc.passwords.waste_verification(password);
    Result<std::optional<Credentials>> late = std::optional<Credentials>();
    if (valid_username(username)) late = svc.query.model().credentials(username);
    if (late && *late) {
      found = std::move(**late);
      ok = svc.passwords.verify(found->password_hash, password);
    }
  }
  if (ok && svc.erased.contains(found->user_id)) {  // the read model may lag the erasure
    settle(svc, at, Outcome::abandoned);
    return respond(counted_error(svc, 401, "unauthorized", "wrong username or password"));
  }
  if (!ok) {
    settle(svc, at, Outcome::failed);
    return respond(counted_error(svc, 401, "unauthorized", "wrong username or password"));
  }
  settle(svc, at, Outcome::succeeded);
  respond(json_reply(200, token_pair_json(svc, found->user_id, TokenService::new_session_id())));
}

void on_login(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  std::string username, password;
  if (!f.str("username", username, true, 64) || !f.str("password", password, true, kMaxPassword)) {
    return respond(invalid(svc, body.error()));
  }
  auto at = attempt_of(svc, req, username);
  // On a registry worker: the lookup may be MySQL's.
  admit_then(svc, at, respond, [&svc, at, respond, username = std::move(username), password = std::move(password)] {
    auto found = find_credentials(svc, username);
    if (!found) {
      settle(svc, at, Outcome::abandoned);
      return respond(counted_error(svc, 503, "unavailable", "the user store is unavailable: " + found.error().message()));
    }
    bool queued = run_password_work(svc, respond, [&svc, at, respond, username, password, cred = std::move(*found)] {
      verify_login(svc, at, username, password, cred, respond);
    });
    if (!queued) settle(svc, at, Outcome::abandoned);
  });
}

// Revokes the refresh token by its jti through the engine (auth.h says why that is exactly once):
// `done(true)` when this call revoked it, `done(false)` when it was revoked before. A logout also
// ends the token's login session: the engine removes the devices registered in it.
void revoke(Services& svc, const TokenClaims& claims, bool logout, Respond respond, std::function<void(bool first)> done) {
  fb::CommandUnion cmd;
  cmd.Set(fb::RevokeRefreshTokenT{{}, claims.jti, claims.expires_at_s * 1000, logout ? claims.sid : std::string()});
  std::string trace = respond.trace_id();
  submit_command(svc, std::move(trace), user_stream(claims.user_id), claims.user_id, "rt:" + claims.jti, std::move(cmd),
                 [&svc, claims, respond = std::move(respond), done = std::move(done)](Reply r) {
                   if (!succeeded(r)) {
                     auto fl = failure_of(r);
                     // The user stream refuses everything once its user is erased.
                     if (fl.code == "not_found") return respond(counted_error(svc, 401, "unauthorized", fl.message));
                     return respond(counted_error(svc, fl.status, fl.code, fl.message));
                   }
                   svc.revoked.add(claims.jti, claims.expires_at_s * 1000, svc.clock.now_ms());
                   done(r->status == fb::ReplyStatus::Accepted);
                 });
}

void on_refresh(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  std::string token;
  if (!body.fields().str("refresh_token", token, true, 4096)) return respond(invalid(svc, body.error()));
  auto claims = svc.tokens.verify(token, "refresh");
  if (!claims) return respond(counted_error(svc, 401, "unauthorized", claims.error().message()));
  auto refused = [&svc] {
    return counted_error(svc, 401, "unauthorized",
                         "refresh token already used or revoked (refresh tokens are single-use; log in again)");
  };
  if (svc.revoked.contains(claims->jti)) return respond(refused());
  uint64_t user = claims->user_id;
  // The same login session goes on (a token from before sessions starts one).
  std::string sid = claims->sid.empty() ? TokenService::new_session_id() : claims->sid;
  revoke(svc, *claims, false, respond, [&svc, respond, user, refused, sid](bool first) {
    if (!first) return respond(refused());
    respond(json_reply(200, token_pair_json(svc, user, sid)));
  });
}

void on_logout(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  std::string token;
  if (!body.fields().str("refresh_token", token, true, 4096)) return respond(invalid(svc, body.error()));
  auto claims = svc.tokens.verify(token, "refresh");
  if (!claims) {
    if (claims.error().code() == make_error_code(AuthErrc::expired)) return respond(no_content());  // nothing to revoke
    return respond(counted_error(svc, 401, "unauthorized", claims.error().message()));
  }
  if (svc.revoked.contains(claims->jti)) return respond(no_content());
  revoke(svc, *claims, true, respond, [respond](bool) { respond(no_content()); });
}

// ---- erasure -------------------------------------------------------------------------------------

// On a password thread: verifies the caller's password, then submits EraseUser on their stream
// (docs/data-lifecycle.md, "Erasure"). A wrong password counts as a failed login of the username.
void erase_user(Services& svc, std::shared_ptr<Attempt> at, uint64_t user, const std::string& password,
                const Credentials& cred, const std::string& trace, const Respond& respond) {
  if (!svc.passwords.verify(cred.password_hash, password)) {
    settle(svc, at, Outcome::failed);
    return respond(counted_error(svc, 401, "unauthorized", "wrong password"));
  }
  settle(svc, at, Outcome::succeeded);
  fb::CommandUnion cmd;
  cmd.Set(fb::EraseUserT{});
  submit_command(svc, trace, user_stream(user), user, "erase:" + std::to_string(user), std::move(cmd),
                 [&svc, user, respond](Reply r) {
                   if (!succeeded(r)) {
                     auto fl = failure_of(r);
                     return respond(counted_error(svc, fl.status, fl.code, fl.message));
                   }
                   svc.erased.add(user);
                   respond(no_content());
                 });
}

}  // namespace

// DELETE /users/me {password} → 204 once the erasure is durable and the user's data key destroyed;
// 401 on a wrong password; 404 when the account was erased before.
void on_erase_me(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  std::string password;
  if (!body.fields().str("password", password, true, kMaxPassword)) return respond(invalid(svc, body.error()));
  uint64_t user = req.user_id;
  auto profile = svc.query.model().user(user);
  if (!profile) return respond(counted_error(svc, 503, "unavailable", profile.error().message()));
  if (!*profile) return respond(counted_error(svc, 404, "not_found", "user " + std::to_string(user) + " does not exist"));
  std::string username = (*profile)->username;
  auto at = attempt_of(svc, req, username);
  std::string trace = respond.trace_id();
  admit_then(svc, at, respond, [&svc, at, respond, user, username, trace, password = std::move(password)] {
    auto found = svc.query.model().credentials(username);
    if (!found || !*found || (*found)->user_id != user) {
      settle(svc, at, Outcome::abandoned);
      if (!found) return respond(counted_error(svc, 503, "unavailable", found.error().message()));
      return respond(counted_error(svc, 404, "not_found", "user " + std::to_string(user) + " does not exist"));
    }
    bool queued = run_password_work(svc, respond, [&svc, at, respond, user, password, trace, cred = std::move(**found)] {
      erase_user(svc, at, user, password, cred, trace, respond);
    });
    if (!queued) settle(svc, at, Outcome::abandoned);
  });
}

void add_auth_routes(ApiRouter& r) {
  using A = ApiRouter::Auth;
  r.add(Method::post, "/api/v1/auth/register", A::none, on_register);
  r.add(Method::post, "/api/v1/auth/login", A::none, on_login);
  r.add(Method::post, "/api/v1/auth/refresh", A::none, on_refresh);
  r.add(Method::post, "/api/v1/auth/logout", A::none, on_logout);
}

}  // namespace imlog::gw
