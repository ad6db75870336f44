// /api/v1/auth: register, login, refresh, logout (DESIGN.md §8.1).

#include <memory>

#include "handlers.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/query.h"

namespace imlog::gw {
namespace {

constexpr size_t kMinPassword = 8;
constexpr size_t kMaxPassword = 1024;

std::string token_pair_json(Services& svc, uint64_t user_id) {
  auto access = svc.tokens.issue_access(user_id);
  auto refresh = svc.tokens.issue_refresh(user_id);
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

void on_register(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  std::string username, password, nickname, email;
  if (!f.str("username", username, true, 64) || !f.str("password", password, true, kMaxPassword) ||
      !f.str("nickname", nickname, false, 400) || !f.str("email", email, false, 400)) {
    return respond(invalid(svc, body.error()));
  }
  if (!valid_username(username)) {
    return respond(invalid(svc, "username must be 3 to 32 characters of letters, digits, _ . -"));
  }
  if (password.size() < kMinPassword) {
    return respond(invalid(svc, "password must be at least " + std::to_string(kMinPassword) + " bytes"));
  }
  run_password_work(svc, respond, [&svc, respond, username = std::move(username), password = std::move(password),
                                   nickname = std::move(nickname), email = std::move(email)]() mutable {
    auto hash = svc.passwords.hash(password);
    if (!hash) return respond(counted_error(svc, 503, "unavailable", hash.error().message()));
    fb::CommandUnion cmd;
    cmd.Set(fb::RegisterUserT{{}, username, *hash, nickname, email});
    std::string stream = names_stream(username);
    submit_command(svc, std::move(stream), 0, new_client_msg_id(), std::move(cmd),
                   [&svc, respond = std::move(respond), username, hash = *hash](Reply r) {
                     if (succeeded(r)) {
                       svc.recent_registrations.add(username, r->result_id, hash, svc.clock.now_ms());
                       JsonOut j;
                       j.begin_object().field("user_id", r->result_id).field("username", username).end_object();
                       return respond(json_reply(201, j.take()));
                     }
                     auto fl = failure_of(r);
                     if (fl.code == "already_exists") {
                       return respond(counted_error(svc, 409, "already_exists", "username `" + username + "` is taken"));
                     }
                     respond(counted_error(svc, fl.status, fl.code, fl.message));
                   });
  });
}

void on_login(Services& svc, ApiRequest& req, Respond respond) {
  JsonBody body;
  if (!parse_body(svc, req, respond, body)) return;
  auto f = body.fields();
  std::string username, password;
  if (!f.str("username", username, true, 64) || !f.str("password", password, true, kMaxPassword)) {
    return respond(invalid(svc, body.error()));
  }
  // Who is it? The read model, which may lag a registration by a moment (hence the wait), or
  // this gateway's own recent registrations.
  struct Lookup {
    std::optional<Credentials> found;
    std::optional<Error> error;
  };
  auto lookup = std::make_shared<Lookup>();
  auto attempt = [&svc, username, lookup] {
    uint64_t id = 0;
    std::string hash;
    if (svc.recent_registrations.find(username, svc.clock.now_ms(), id, hash)) {
      lookup->found = Credentials{id, std::move(hash)};
      return true;
    }
    if (!valid_username(username)) return true;  // cannot exist: do not wait
    auto c = svc.query.model().credentials(username);
    if (!c) {
      lookup->error = c.error();
      return true;
    }
    lookup->found = std::move(*c);
    return lookup->found.has_value();
  };
  retry_until(svc, svc.config.read_model_wait, std::move(attempt),
              [&svc, lookup, respond = std::move(respond), password = std::move(password)](bool) mutable {
                if (lookup->error) {
                  return respond(counted_error(svc, 503, "unavailable", "the user store is unavailable: " +
                                                                            lookup->error->message()));
                }
                run_password_work(svc, respond, [&svc, lookup, respond, password = std::move(password)] {
                  bool ok = false;
                  if (lookup->found) {
                    ok = svc.passwords.verify(lookup->found->password_hash, password);
                  } else {
                    svc.passwords.waste_verification(password);  // unknown users answer as slowly
                  }
                  if (!ok) {
                    return respond(counted_error(svc, 401, "unauthorized", "wrong username or password"));
                  }
                  respond(json_reply(200, token_pair_json(svc, lookup->found->user_id)));
                });
              });
}

// Revokes the refresh token by its jti through the engine (auth.h says why that is exactly once):
// `done(true)` when this call revoked it, `done(false)` when it was revoked before.
void revoke(Services& svc, const TokenClaims& claims, Respond respond, std::function<void(bool first)> done) {
  fb::CommandUnion cmd;
  cmd.Set(fb::RevokeRefreshTokenT{{}, claims.jti, claims.expires_at_s * 1000});
  submit_command(svc, user_stream(claims.user_id), claims.user_id, "rt:" + claims.jti, std::move(cmd),
                 [&svc, claims, respond = std::move(respond), done = std::move(done)](Reply r) {
                   if (!succeeded(r)) {
                     auto fl = failure_of(r);
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
  revoke(svc, *claims, respond, [&svc, respond, user, refused](bool first) {
    if (!first) return respond(refused());
    respond(json_reply(200, token_pair_json(svc, user)));
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
  revoke(svc, *claims, respond, [respond](bool) { respond(no_content()); });
}

}  // namespace

void add_auth_routes(ApiRouter& r) {
  using A = ApiRouter::Auth;
  r.add(Method::post, "/api/v1/auth/register", A::none, on_register);
  r.add(Method::post, "/api/v1/auth/login", A::none, on_login);
  r.add(Method::post, "/api/v1/auth/refresh", A::none, on_refresh);
  r.add(Method::post, "/api/v1/auth/logout", A::none, on_logout);
}

}  // namespace imlog::gw
