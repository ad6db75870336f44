// The signed-in session: the token pair, kept in a TokenStore (memory, or the browser's
// localStorage so a reload stays signed in), and refreshed before it expires.
//
// Refresh tokens are single-use (docs/clients.md, "Account and tokens"): two refreshes racing
// with the same token would sign the user out, so every caller that needs a fresh access token
// waits on the one refresh in flight. A refresh answered 401 means the session is over: the store
// is cleared and `onSignedOut` is called.

import {ImlogError} from "./errors.js";

export interface Tokens {
  access_token: string;
  refresh_token: string;
  user_id: number;
  /** Unix ms when the access token expires (from `expires_in` and the local clock). */
  expires_at: number;
}

/** Where the token pair lives between page loads (or not at all). */
export interface TokenStore {
  load(): Tokens | null;
  save(tokens: Tokens | null): void;
}

export class MemoryTokenStore implements TokenStore {
  private tokens: Tokens | null = null;
  load() { return this.tokens; }
  save(tokens: Tokens | null) { this.tokens = tokens; }
}

/** The pair under one key of a Web Storage (`localStorage`): survives reloads. */
export class WebStorageTokenStore implements TokenStore {
  constructor(private storage: Pick<Storage, "getItem" | "setItem" | "removeItem">, private key = "imlog.session") {}
  load(): Tokens | null {
    try {
      const raw = this.storage.getItem(this.key);
      const t = raw ? (JSON.parse(raw) as Tokens) : null;
      return t && typeof t.refresh_token === "string" && typeof t.user_id === "number" ? t : null;
    } catch {
      return null;
    }
  }
  save(tokens: Tokens | null) {
    if (tokens) this.storage.setItem(this.key, JSON.stringify(tokens));
    else this.storage.removeItem(this.key);
  }
}

/** The answer of login and refresh (the OpenAPI `Tokens` response). */
export interface TokenReply {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  user_id: number;
}

export interface SessionOptions {
  store?: TokenStore;
  /** Refresh this long before the access token expires. Default 60 s. */
  refreshMarginMs?: number;
  now?: () => number;
}

export class Session {
  readonly store: TokenStore;
  private refreshing: Promise<Tokens> | null = null;
  private readonly margin: number;
  private readonly now: () => number;
  /** Called once when the session ends (a refresh refused, or logout). */
  onSignedOut: ((reason: string) => void) | null = null;
  /** Called after each refresh with the new pair. */
  onRefreshed: ((tokens: Tokens) => void) | null = null;

  constructor(private refresher: (refreshToken: string) => Promise<TokenReply>, opts: SessionOptions = {}) {
    this.store = opts.store ?? new MemoryTokenStore();
    this.margin = opts.refreshMarginMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  get tokens(): Tokens | null { return this.store.load(); }
  get userId(): number | null { return this.tokens?.user_id ?? null; }

  /** Stores a pair the server just issued (login or refresh). */
  accept(reply: TokenReply): Tokens {
    const t: Tokens = {
      access_token: reply.access_token,
      refresh_token: reply.refresh_token,
      user_id: reply.user_id,
      expires_at: this.now() + reply.expires_in * 1000,
    };
    this.store.save(t);
    return t;
  }

  /**
   * An access token good for at least the margin: the stored one, or a refreshed one. Throws
   * ImlogError `unauthorized` when signed out (and then the session is over).
   */
  async accessToken(): Promise<string> {
    const t = this.tokens;
    if (!t) throw new ImlogError("unauthorized", "not signed in");
    if (t.expires_at - this.margin > this.now()) return t.access_token;
    return (await this.refresh(t.access_token)).access_token;
  }

  /**
   * Trades the refresh token for a new pair; callers racing here share one request. `staleAccess`
   * is the access token the caller found wanting: if another refresh replaced it meanwhile, that
   * newer pair is returned without another request.
   */
  refresh(staleAccess?: string): Promise<Tokens> {
    const current = this.tokens;
    if (!current) return Promise.reject(new ImlogError("unauthorized", "not signed in"));
    if (staleAccess !== undefined && current.access_token !== staleAccess) return Promise.resolve(current);
    if (!this.refreshing) {
      this.refreshing = this.refresher(current.refresh_token)
        .then((reply) => {
          const t = this.accept(reply);
          this.onRefreshed?.(t);
          return t;
        })
        .catch((e: unknown) => {
          if (e instanceof ImlogError && e.code === "unauthorized") this.end(e.message);
          throw e;
        })
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  /** Forgets the pair; `onSignedOut` hears why. */
  end(reason: string): void {
    const had = this.tokens !== null;
    this.store.save(null);
    if (had) this.onSignedOut?.(reason);
  }
}
