// The Session and the RestClient's token handling: one refresh for many callers (refresh tokens
// are single-use), a 401 refreshes and retries once, a refused refresh signs out.
import {test} from "node:test";
import assert from "node:assert/strict";
import {Session, WebStorageTokenStore} from "../../src/auth.js";
import {RestClient} from "../../src/rest.js";
import {ImlogError} from "../../src/errors.js";

test("callers racing for an expired token share one refresh", async () => {
  let now = 0, refreshes = 0;
  const s = new Session(async (rt) => {
    ++refreshes;
    await new Promise((r) => setTimeout(r, 5));
    return {access_token: `new-from-${rt}`, refresh_token: "rt2", expires_in: 900, user_id: 1};
  }, {now: () => now});
  s.accept({access_token: "old", refresh_token: "rt1", expires_in: 100, user_id: 1});
  assert.equal(await s.accessToken(), "old");
  now = 50_000;  // within the 60 s margin
  const tokens = await Promise.all([s.accessToken(), s.accessToken(), s.accessToken()]);
  assert.deepEqual(tokens, ["new-from-rt1", "new-from-rt1", "new-from-rt1"]);
  assert.equal(refreshes, 1);
  assert.equal(s.tokens!.refresh_token, "rt2");
});

test("a refused refresh ends the session once", async () => {
  const s = new Session(async () => { throw new ImlogError("unauthorized", "refresh token already used", 401); }, {now: () => 0});
  s.accept({access_token: "a", refresh_token: "r", expires_in: 1, user_id: 1});
  const reasons: string[] = [];
  s.onSignedOut = (why) => reasons.push(why);
  await assert.rejects(s.accessToken(), /already used/);
  assert.equal(s.tokens, null);
  assert.deepEqual(reasons, ["refresh token already used"]);
});

test("the web storage store keeps the pair across instances (a page reload)", () => {
  const m = new Map<string, string>();
  const storage = {getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v), removeItem: (k: string) => void m.delete(k)};
  new WebStorageTokenStore(storage).save({access_token: "a", refresh_token: "r", user_id: 3, expires_at: 9});
  assert.equal(new WebStorageTokenStore(storage).load()!.user_id, 3);
  m.set("imlog.session", "{not json");
  assert.equal(new WebStorageTokenStore(storage).load(), null);
});

test("a 401 refreshes the token and retries the request once", async () => {
  const calls: string[] = [];
  const fetch = (async (url: string, init: RequestInit) => {
    const auth = (init.headers as Record<string, string>).Authorization ?? "";
    calls.push(`${init.method} ${url} ${auth}`);
    if (url.endsWith("/auth/refresh")) {
      return new Response(JSON.stringify({access_token: "fresh", refresh_token: "rt2", expires_in: 900, user_id: 1}), {status: 200});
    }
    if (auth === "Bearer stale") return new Response(JSON.stringify({code: "unauthorized", message: "token expired"}), {status: 401});
    return new Response(JSON.stringify({conversations: []}), {status: 200});
  }) as unknown as typeof globalThis.fetch;
  const rest = new RestClient({baseUrl: "http://h", fetch});
  rest.session.accept({access_token: "stale", refresh_token: "rt1", expires_in: 900, user_id: 1});
  assert.deepEqual(await rest.conversations(), {conversations: []});
  assert.deepEqual(calls, ["GET http://h/api/v1/conversations Bearer stale", "POST http://h/api/v1/auth/refresh ",
                           "GET http://h/api/v1/conversations Bearer fresh"]);
});

test("errors carry the server's code, status and Retry-After", async () => {
  const fetch = (async () => new Response(JSON.stringify({code: "overloaded", message: "queue full"}),
                                          {status: 503, headers: {"Retry-After": "2"}})) as unknown as typeof globalThis.fetch;
  const rest = new RestClient({fetch});
  const e = await rest.register({username: "abc", password: "12345678"}).catch((x) => x as ImlogError);
  assert.ok(e instanceof ImlogError);
  assert.equal(e.code, "overloaded");
  assert.equal(e.status, 503);
  assert.equal(e.retryAfterMs, 2000);
  assert.equal(e.retryable, true);
});
