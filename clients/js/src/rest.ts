// The REST half (docs/api/openapi.yaml), typed by the types openapi-typescript generates from that
// file at build time (src/generated/openapi.ts, not committed). Every call that needs a token
// takes it from the Session, which refreshes it before it expires; a 401 on such a call refreshes
// once more and retries once (the server may have restarted with a new clock, or the token was
// revoked), after which the 401 is the caller's.

import type {components, operations} from "./generated/openapi.js";
import {Session, type TokenReply, type TokenStore} from "./auth.js";
import {ImlogError} from "./errors.js";

export type Schemas = components["schemas"];
export type Message = Schemas["Message"];
export type Conversation = Schemas["Conversation"];
export type User = Schemas["User"];
export type Me = Schemas["Me"];
export type Friend = Schemas["Friend"];
export type Group = Schemas["Group"];
export type Member = Schemas["Member"];
export type Presence = Schemas["Presence"];
export type Ban = Schemas["Ban"];

type Op = keyof operations;
/** The JSON body of operation `O`'s answer with status `S`. */
export type Reply<O extends Op, S extends keyof operations[O]["responses"]> =
  operations[O]["responses"][S] extends {content: {"application/json": infer T}} ? T : never;
/** The JSON request body of operation `O`. */
export type Body<O extends Op> =
  operations[O] extends {requestBody: {content: {"application/json": infer T}}} ? T
  : operations[O] extends {requestBody?: {content: {"application/json": infer T}}} ? T : never;

export interface RestOptions {
  /** The server's origin, e.g. `http://127.0.0.1:8080`; "" for the page's own origin. */
  baseUrl?: string;
  store?: TokenStore;
  fetch?: typeof globalThis.fetch;
  /** Refresh the access token this long before it expires. Default 60 s. */
  refreshMarginMs?: number;
  now?: () => number;
}

const conv = (id: string) => `/api/v1/conversations/${encodeURIComponent(id)}`;
const group = (id: number) => `/api/v1/groups/${id}`;

export class RestClient {
  readonly session: Session;
  readonly baseUrl: string;
  private readonly fetchFn: typeof globalThis.fetch;

  constructor(opts: RestOptions = {}) {
    this.baseUrl = (opts.baseUrl ?? "").replace(/\/$/, "");
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.session = new Session((rt) => this.request<TokenReply>("POST", "/api/v1/auth/refresh", {refresh_token: rt}, false),
                               {store: opts.store, refreshMarginMs: opts.refreshMarginMs, now: opts.now});
  }

  /**
   * One request. `auth`: send the session's access token (refreshing it first when due). Throws
   * ImlogError: the server's `{code, message}` with the status, or `network` when no answer came.
   */
  async request<T>(method: string, path: string, body?: unknown, auth = true, raw?: {body: Blob | ArrayBuffer | Uint8Array; type: string}): Promise<T> {
    for (let attempt = 0; ; ++attempt) {
      const headers: Record<string, string> = {};
      let token: string | undefined;
      if (auth) {
        token = await this.session.accessToken();
        headers.Authorization = `Bearer ${token}`;
      }
      let payload: BodyInit | undefined;
      if (raw) {
        headers["Content-Type"] = raw.type;
        payload = raw.body as BodyInit;
      } else if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        payload = JSON.stringify(body);
      }
      let r: Response;
      try {
        r = await this.fetchFn(this.baseUrl + path, {method, headers, body: payload});
      } catch (e) {
        throw new ImlogError("network", `${method} ${path}: ${(e as Error).message}`);
      }
      if (r.status === 401 && auth && attempt === 0) {
        await this.session.refresh(token);
        continue;
      }
      const text = await r.text();
      let data: unknown = null;
      try { data = text ? JSON.parse(text) : null; } catch { data = null; }
      if (!r.ok) {
        const err = (data ?? {}) as {code?: string; message?: string};
        const retryAfter = Number(r.headers.get("Retry-After"));
        throw new ImlogError(err.code ?? `http_${r.status}`, err.message ?? `${method} ${path}: HTTP ${r.status}`, r.status,
                             retryAfter > 0 ? retryAfter * 1000 : undefined);
      }
      return data as T;
    }
  }

  // ---- account -----------------------------------------------------------------------------
  register(body: Body<"register">) { return this.request<Reply<"register", 201>>("POST", "/api/v1/auth/register", body, false); }
  /** Logs in and keeps the pair in the session's store. */
  async login(username: string, password: string) {
    const t = await this.request<Reply<"login", 200>>("POST", "/api/v1/auth/login", {username, password}, false);
    return this.session.accept(t);
  }
  /** Revokes the refresh token (best effort) and forgets the pair. */
  async logout() {
    const t = this.session.tokens;
    try {
      if (t) await this.request<void>("POST", "/api/v1/auth/logout", {refresh_token: t.refresh_token}, false);
    } finally {
      this.session.end("logged out");
    }
  }

  // ---- conversations -------------------------------------------------------------------------
  conversations() { return this.request<Reply<"listConversations", 200>>("GET", "/api/v1/conversations"); }
  /** History: `{after_seq}` forward, `{before_seq}` back, neither: the latest page. */
  history(id: string, q: {after_seq?: number; before_seq?: number; limit?: number} = {}) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
    const qs = p.toString();
    return this.request<Reply<"getHistory", 200>>("GET", `${conv(id)}/messages${qs ? "?" + qs : ""}`);
  }
  sendMessage(id: string, body: Body<"sendMessage">) { return this.request<Reply<"sendMessage", 201>>("POST", `${conv(id)}/messages`, body); }
  markRead(id: string, seq_id: number) { return this.request<void>("POST", `${conv(id)}/read`, {seq_id}); }
  recall(id: string, messageId: string) { return this.request<void>("POST", `${conv(id)}/messages/${encodeURIComponent(messageId)}/recall`); }

  // ---- groups --------------------------------------------------------------------------------
  createGroup(body: Body<"createGroup">) { return this.request<Reply<"createGroup", 201>>("POST", "/api/v1/groups", body); }
  group(id: number) { return this.request<Reply<"getGroup", 200>>("GET", group(id)); }
  changeGroupSettings(id: number, body: Body<"changeGroupSettings">) { return this.request<Reply<"changeGroupSettings", 200>>("PATCH", group(id), body); }
  joinGroup(id: number) { return this.request<unknown>("POST", `${group(id)}/join`); }
  leaveGroup(id: number) { return this.request<unknown>("POST", `${group(id)}/leave`); }
  members(id: number) { return this.request<Reply<"listMembers", 200>>("GET", `${group(id)}/members`); }
  addMember(id: number, user_id: number) { return this.request<unknown>("POST", `${group(id)}/members`, {user_id}); }
  removeMember(id: number, user_id: number) { return this.request<unknown>("DELETE", `${group(id)}/members/${user_id}`); }
  /** The group's bans (members only), a page by user id. */
  bans(id: number, q: {after_user_id?: number; limit?: number} = {}) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
    const qs = p.toString();
    return this.request<Reply<"listBans", 200>>("GET", `${group(id)}/bans${qs ? "?" + qs : ""}`);
  }
  /** Lifts a ban (owner or admin): the user may join or be added again. */
  unban(id: number, user_id: number) { return this.request<void>("DELETE", `${group(id)}/bans/${user_id}`); }
  changeRole(id: number, user_id: number, role: "member" | "admin" | "owner") {
    return this.request<unknown>("PUT", `${group(id)}/members/${user_id}/role`, {role});
  }

  // ---- users and presence --------------------------------------------------------------------
  me() { return this.request<Reply<"getMe", 200>>("GET", "/api/v1/users/me"); }
  user(id: number) { return this.request<Reply<"getUser", 200>>("GET", `/api/v1/users/${id}`); }
  updateProfile(body: Body<"updateProfile">) { return this.request<unknown>("PATCH", "/api/v1/users/me", body); }
  updateSettings(body: Body<"updateSettings">) { return this.request<unknown>("PATCH", "/api/v1/users/me/settings", body); }
  searchUsers(q: string, limit = 20) {
    return this.request<Reply<"searchUsers", 200>>("GET", `/api/v1/users/search?q=${encodeURIComponent(q)}&limit=${limit}`);
  }
  setStatus(status: "online" | "away" | "busy") { return this.request<Reply<"setStatus", 200>>("PUT", "/api/v1/users/me/status", {status}); }
  presence(ids: number[]) { return this.request<Reply<"getPresence", 200>>("GET", `/api/v1/users/presence?ids=${ids.join(",")}`); }
  uploadAvatar(image: Blob | ArrayBuffer | Uint8Array, type: string) {
    return this.request<Reply<"uploadAvatar", 200>>("POST", "/api/v1/users/me/avatar", undefined, true, {body: image, type});
  }

  // ---- friends and blocks --------------------------------------------------------------------
  friends(status?: "friends" | "incoming" | "outgoing") {
    return this.request<Reply<"listFriends", 200>>("GET", `/api/v1/friends${status ? "?status=" + status : ""}`);
  }
  requestFriend(user_id: number, note?: string) { return this.request<void>("POST", "/api/v1/friends/requests", {user_id, note}); }
  acceptFriend(user_id: number) { return this.request<void>("POST", `/api/v1/friends/requests/${user_id}/accept`); }
  rejectFriend(user_id: number) { return this.request<void>("POST", `/api/v1/friends/requests/${user_id}/reject`); }
  removeFriend(user_id: number) { return this.request<void>("DELETE", `/api/v1/friends/${user_id}`); }
  /** Files a friend under a friend group (a name of the caller's choosing; "" for none). */
  setFriendGroup(user_id: number, group_name: string) {
    return this.request<void>("PUT", `/api/v1/friends/${user_id}/group`, {group_name});
  }
  /** The friend group names in use. */
  friendGroups() { return this.request<Reply<"listFriendGroups", 200>>("GET", "/api/v1/friends/groups"); }
  blocks() { return this.request<Reply<"listBlocks", 200>>("GET", "/api/v1/blocks"); }
  block(user_id: number) { return this.request<void>("POST", "/api/v1/blocks", {user_id}); }
  unblock(user_id: number) { return this.request<void>("DELETE", `/api/v1/blocks/${user_id}`); }
}
