// The real-time half (docs/api/websocket.md) with the rules of docs/clients.md built in:
//
//   send() ──► outbox (client_msg_id) ──► socket ──► message-ack ──► resolved, removed
//                 ▲                                      error (retryable) ─► resent after a pause
//                 └── on every (re)connect, everything still in the outbox is sent again with the
//                     same client_msg_id: the server answers a duplicate with the same ack.
//
//   new-message / acks / group pushes carry seq_ids: per tracked conversation the client keeps
//   the highest seq it holds; a jump past it (a gap) and every reconnect send `sync` from there,
//   repeated while `has_more`. Messages are handed to the app once each (deduped by message_id).
//
// Reconnects back off exponentially with full jitter (min, doubled, up to max), reset by a
// `hello`. The access token is taken from the Session before each connect (refreshed when due);
// a connection that fails before its `hello` forces a refresh, since a browser cannot see the
// upgrade's 401. An application `ping` every `pingIntervalMs` finds a dead connection that TCP
// has not noticed: no frame at all for twice that long closes it, and the client reconnects.
//
// Single-threaded (the JavaScript event loop); timers and randomness are injectable for tests.

import type {ClientFrame, Message, ServerFrame} from "./generated/frames.js";
import type * as F from "./generated/frames.js";
import {type Codec, jsonCodec, type WireData} from "./codec.js";
import {Emitter} from "./emitter.js";
import {ImlogError} from "./errors.js";
import type {Session} from "./auth.js";

/** The part of the WebSocket API the client uses (the browser's, or the `ws` package's). */
export interface SocketLike {
  readonly protocol: string;
  readonly readyState: number;
  binaryType: string;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: {code: number; reason: string}) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: {data: unknown}) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}
export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

export interface Timers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}
const realTimers: Timers = {set: (fn, ms) => setTimeout(fn, ms), clear: (h) => clearTimeout(h as ReturnType<typeof setTimeout>)};

export type ConnectionState = "idle" | "connecting" | "open" | "waiting" | "closed";

/** A send the server has not acknowledged yet. */
export interface PendingSend {
  client_msg_id: string;
  conversation_id: string;
  content: string;
  message_type: "text" | "image" | "file";
  /**
   * When it was first sent (Unix ms, this client's clock): `sent_at`, the same on every resend,
   * so the server's dedupe of it stays exact and its storage bounded (docs/api/websocket.md).
   */
  sent_at: number;
  /** How many times it went out on a socket. */
  attempts: number;
}

/** Typed events: one per server frame type, plus the client's own. */
export type RealtimeEvents = {[K in ServerFrame["type"]]: Extract<ServerFrame, {type: K}>["data"]} & {
  /** A message to show, once per message_id: pushed, synced, or the caller's own once acked. */
  message: Message;
  state: ConnectionState;
  /** A send changed state: acked (with the server's ids) or failed for good. */
  "send-acked": PendingSend & {message_id: string; seq_id: number};
  "send-failed": PendingSend & {error: ImlogError};
  /** A frame that could not be decoded, or an error frame that answers nothing of ours. */
  "protocol-error": ImlogError;
};

export interface RealtimeOptions {
  /** `ws://host:port` or `wss://…`; the path `/ws` is added. */
  url: string;
  session: Session;
  /** Codecs to offer, best first. Default: JSON only. */
  codecs?: Codec[];
  socket?: SocketFactory;
  timers?: Timers;
  random?: () => number;
  now?: () => number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  pingIntervalMs?: number;
  /** How many message_ids to remember for dedupe. Default 5000. */
  dedupeWindow?: number;
}

interface OutboxEntry extends PendingSend {
  resolve: (ack: F.MessageAck) => void;
  reject: (e: ImlogError) => void;
  retryTimer: unknown;
  acked: Promise<F.MessageAck>;
}

const publicPart = (e: OutboxEntry): PendingSend => ({client_msg_id: e.client_msg_id, conversation_id: e.conversation_id,
                                                       content: e.content, message_type: e.message_type, sent_at: e.sent_at,
                                                       attempts: e.attempts});

const kRetryable = new Set(["timeout", "unavailable", "overloaded", "rate_limited"]);

export class RealtimeClient extends Emitter<RealtimeEvents> {
  private readonly opts: Required<Omit<RealtimeOptions, "socket" | "codecs" | "session" | "url">> & {socket: SocketFactory};
  private readonly codecs: Codec[];
  private ws: SocketLike | null = null;
  private codec: Codec;
  private _state: ConnectionState = "idle";
  private attempt = 0;
  private reconnectTimer: unknown = null;
  private pingTimer: unknown = null;
  private lastFrameAt = 0;
  private helloSeen = false;
  private readonly outbox = new Map<string, OutboxEntry>();
  private readonly seqs = new Map<string, number>();  // conversation → highest seq held
  private readonly syncing = new Set<string>();
  private readonly gapFrom = new Map<string, number>();  // conversation → seq a gap-filling sync started from
  private readonly seen = new Set<string>();          // message_ids handed out, oldest first
  private idCounter = 0;
  /** The hello of the current connection. */
  hello: F.Hello | null = null;

  constructor(private readonly options: RealtimeOptions) {
    super();
    this.codecs = options.codecs?.length ? options.codecs : [jsonCodec];
    this.codec = this.codecs[0];
    const socket: SocketFactory = options.socket ?? ((url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike);
    this.opts = {
      socket,
      timers: options.timers ?? realTimers,
      random: options.random ?? Math.random,
      now: options.now ?? Date.now,
      backoffMinMs: options.backoffMinMs ?? 500,
      backoffMaxMs: options.backoffMaxMs ?? 30_000,
      pingIntervalMs: options.pingIntervalMs ?? 25_000,
      dedupeWindow: options.dedupeWindow ?? 5000,
    };
  }

  get state(): ConnectionState { return this._state; }
  /** The subprotocol of the open connection (its codec's). */
  get protocol(): string { return this.codec.subprotocol; }
  /** Sends not acknowledged yet, in the order they were made. */
  get pending(): PendingSend[] { return [...this.outbox.values()].map(publicPart); }

  /** Starts connecting (and reconnecting) until close(). */
  start(): void {
    if (this._state !== "idle" && this._state !== "closed") return;
    this.attempt = 0;
    void this.connect();
  }

  /** Closes for good: no reconnect; sends still pending stay pending (see `pending`). */
  close(): void {
    this.setState("closed");
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onopen = null;
      // Closing a socket still connecting fails it with an error event (Node's `ws` emits one,
      // and throws it as uncaught when nobody listens): keep a listener that ignores it.
      ws.onerror = () => { /* closed on purpose */ };
      try { ws.close(1000, "client closed"); } catch { /* already closed */ }
    }
  }

  /**
   * Connects at once if waiting to reconnect (the network is back: the browser's `online` event),
   * instead of sitting out the back-off.
   */
  reconnectNow(): void {
    if (this._state !== "waiting") return;
    if (this.reconnectTimer !== null) this.opts.timers.clear(this.reconnectTimer);
    this.reconnectTimer = null;
    this.attempt = 0;
    void this.connect();
  }

  /** Drops the connection as a network failure would (reconnects with back-off). For tests and "go offline". */
  drop(): void {
    try { this.ws?.close(4000, "dropped by the client"); } catch { /* already closed */ }
  }

  /**
   * Declares that the app holds `conversation_id` up to `seq`: later pushes are checked against it
   * for gaps, and every reconnect syncs it from there. Never moves backwards.
   */
  track(conversation_id: string, seq: number): void {
    const have = this.seqs.get(conversation_id);
    if (have === undefined || seq > have) this.seqs.set(conversation_id, seq);
  }
  /** The highest seq held of a tracked conversation. */
  seqOf(conversation_id: string): number | undefined { return this.seqs.get(conversation_id); }

  /** A fresh client_msg_id (random, and unique within this client). */
  newClientMsgId(): string {
    const c = globalThis.crypto as Crypto | undefined;
    const rand = c?.randomUUID ? c.randomUUID() : `${this.opts.now().toString(36)}-${this.opts.random().toString(36).slice(2)}`;
    return `${rand}-${++this.idCounter}`;
  }

  /**
   * Sends a message; resolves with its ack once durable, whatever reconnects happen meanwhile
   * (the same client_msg_id is resent after each). Rejects only on a refusal (`not_member`,
   * `blocked`, `too_large`, ...): those are not retried. A caller may pass its own
   * `client_msg_id` (say, one kept from before a reload) to resend a message safely, with the
   * `sent_at` it had (the pending send's): a resend past the server's dedupe window (7 days by
   * default) is then refused `retry_window_expired` rather than written twice.
   */
  send(conversation_id: string, content: string, opt: {message_type?: "text" | "image" | "file"; client_msg_id?: string; sent_at?: number} = {}): {client_msg_id: string; acked: Promise<F.MessageAck>} {
    const client_msg_id = opt.client_msg_id ?? this.newClientMsgId();
    const sent_at = opt.sent_at ?? this.opts.now();
    const existing = this.outbox.get(client_msg_id);
    if (existing) return {client_msg_id, acked: existing.acked};
    let entry!: OutboxEntry;
    const acked = new Promise<F.MessageAck>((resolve, reject) => {
      entry = {client_msg_id, conversation_id, content, message_type: opt.message_type ?? "text", sent_at, attempts: 0, resolve, reject,
               retryTimer: null, acked: undefined as unknown as Promise<F.MessageAck>};
    });
    entry.acked = acked;
    this.outbox.set(client_msg_id, entry);
    this.transmit(entry);
    return {client_msg_id, acked};
  }

  /** Moves the read marker (best effort over the socket; the app may use REST when closed). */
  read(conversation_id: string, seq_id: number): boolean { return this.write({type: "read", data: {conversation_id, seq_id}}); }
  setStatus(status: "online" | "away" | "busy"): boolean { return this.write({type: "set-status", data: {status}}); }
  /** Asks for what follows the seq held (or seq 0) now. */
  sync(conversation_id: string): void { this.requestSync(conversation_id, this.seqs.get(conversation_id) ?? 0); }

  // ---- connection --------------------------------------------------------------------------

  private setState(s: ConnectionState) {
    if (this._state === s) return;
    this._state = s;
    this.emit("state", s);
  }

  private clearTimers() {
    if (this.reconnectTimer !== null) this.opts.timers.clear(this.reconnectTimer);
    if (this.pingTimer !== null) this.opts.timers.clear(this.pingTimer);
    this.reconnectTimer = this.pingTimer = null;
  }

  private async connect(): Promise<void> {
    if (this._state === "closed" && this.attempt > 0) return;
    this.setState("connecting");
    let token: string;
    try {
      token = this.attempt > 1 && !this.helloSeen ? (await this.options.session.refresh()).access_token
                                                   : await this.options.session.accessToken();
    } catch (e) {
      const err = e as ImlogError;
      if (err.code === "unauthorized") { this.close(); return; }  // signed out: nothing to reconnect to
      this.scheduleReconnect();
      return;
    }
    if (this._state === "closed") return;
    this.helloSeen = false;
    const url = `${this.options.url.replace(/\/$/, "")}/ws?token=${encodeURIComponent(token)}`;
    let ws: SocketLike;
    try {
      ws = this.opts.socket(url, this.codecs.map((c) => c.subprotocol));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    if (this.codecs.some((c) => c.binary)) ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.codec = this.codecs.find((c) => c.subprotocol === ws.protocol) ?? jsonCodec;
      this.lastFrameAt = this.opts.now();
      this.schedulePing();
    };
    ws.onmessage = (ev) => this.onWire(ev.data as WireData);
    ws.onerror = () => { /* onclose follows */ };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimers();
      if (this._state !== "closed") this.scheduleReconnect();
    };
  }

  private scheduleReconnect() {
    this.setState("waiting");
    const cap = Math.min(this.opts.backoffMaxMs, this.opts.backoffMinMs * 2 ** Math.min(this.attempt, 20));
    const delay = Math.max(this.opts.backoffMinMs / 2, Math.floor(this.opts.random() * cap));
    ++this.attempt;
    this.reconnectTimer = this.opts.timers.set(() => { this.reconnectTimer = null; void this.connect(); }, delay);
  }

  private schedulePing() {
    const every = this.opts.pingIntervalMs;
    this.pingTimer = this.opts.timers.set(() => {
      this.pingTimer = null;
      if (!this.ws) return;
      if (this.opts.now() - this.lastFrameAt > 2 * every) { this.drop(); return; }
      this.write({type: "ping", data: {}});
      this.schedulePing();
    }, every);
  }

  private write(frame: ClientFrame): boolean {
    if (!this.ws || this._state !== "open") return false;
    try {
      this.ws.send(this.codec.encode(frame));
      return true;
    } catch {
      return false;
    }
  }

  private transmit(e: OutboxEntry) {
    if (this.write({type: "send-message", data: {conversation_id: e.conversation_id, client_msg_id: e.client_msg_id, content: e.content,
                                                  message_type: e.message_type, sent_at: e.sent_at > 0 ? e.sent_at : undefined}})) {
      ++e.attempts;
    }
  }

  private requestSync(conversation_id: string, after_seq: number) {
    if (this.write({type: "sync", data: {conversation_id, after_seq, limit: 200}})) this.syncing.add(conversation_id);
  }

  // ---- frames in ---------------------------------------------------------------------------

  private onWire(data: WireData) {
    this.lastFrameAt = this.opts.now();
    let f: ServerFrame;
    try {
      f = this.codec.decode(data);
    } catch (e) {
      this.emit("protocol-error", new ImlogError("invalid_frame", (e as Error).message));
      return;
    }
    this.onFrame(f);
  }

  /** One decoded frame (public for codecs' and unit tests' sake). */
  onFrame(f: ServerFrame) {
    switch (f.type) {
      case "hello":
        this.hello = f.data;
        this.helloSeen = true;
        this.attempt = 0;
        this.setState("open");
        this.syncing.clear();
        for (const [id, seq] of this.seqs) this.requestSync(id, this.gapFrom.get(id) ?? seq);
        for (const e of this.outbox.values()) this.transmit(e);
        break;
      case "message-ack": this.onAck(f.data); break;
      case "error": this.onError(f.data); break;
      case "new-message": this.deliver(f.data, true); break;
      case "sync-result": this.onSyncResult(f.data); break;
      case "message-recalled":
        this.advance(f.data.conversation_id, f.data.recall_seq_id, true);
        break;
      case "group-created": case "member-joined": case "member-left": case "member-removed":
      case "member-unbanned": case "group-settings-changed": case "role-changed":
        this.advance(f.data.conversation_id, f.data.seq_id, true);
        break;
    }
    (this.emit as (k: string, v: unknown) => void)(f.type, f.data);
  }

  private onAck(a: F.MessageAck) {
    const e = this.outbox.get(a.client_msg_id);
    if (!e) return;
    this.outbox.delete(a.client_msg_id);
    if (e.retryTimer !== null) this.opts.timers.clear(e.retryTimer);
    const p = publicPart(e);
    this.emit("send-acked", {...p, message_id: a.message_id, seq_id: a.seq_id});
    // Our own message, to show once (and to recognise if a sync brings it back).
    const hello = this.hello;
    const mine: Message = {message_id: a.message_id, conversation_id: a.conversation_id, seq_id: a.seq_id,
                           sender_id: hello?.user_id ?? 0, content: e.content, message_type: e.message_type,
                           client_msg_id: a.client_msg_id, created_at: this.opts.now()};
    this.deliver(mine, true);
    e.resolve(a);
  }

  private onError(err: F.Error) {
    const error = new ImlogError(err.code, err.message, undefined, err.retry_after_ms);
    if (err.client_msg_id !== undefined) {
      const e = this.outbox.get(err.client_msg_id);
      if (!e) return;
      if (kRetryable.has(err.code)) {
        this.retryLater(e, err.retry_after_ms);
        return;
      }
      this.outbox.delete(e.client_msg_id);
      this.emit("send-failed", {...publicPart(e), error});
      e.reject(error);
      return;
    }
    if (err.code === "rate_limited") {
      // The refused frame was not read: resend what got no answer, slower.
      for (const e of this.outbox.values()) this.retryLater(e, 1000);
      return;
    }
    if (err.request_type === "sync") for (const id of [...this.syncing]) this.syncing.delete(id);
    this.emit("protocol-error", error);
  }

  private retryLater(e: OutboxEntry, afterMs?: number) {
    if (e.retryTimer !== null) return;
    const ms = afterMs ?? Math.min(this.opts.backoffMaxMs, this.opts.backoffMinMs * 2 ** Math.min(e.attempts, 10));
    e.retryTimer = this.opts.timers.set(() => {
      e.retryTimer = null;
      if (this.outbox.has(e.client_msg_id)) this.transmit(e);
    }, ms);
  }

  private onSyncResult(r: F.SyncResult) {
    this.syncing.delete(r.conversation_id);
    let top = r.after_seq ?? 0;
    for (const m of r.messages) {
      this.deliver(m, false);
      top = Math.max(top, m.seq_id);
    }
    const have = this.seqs.get(r.conversation_id);
    if (have !== undefined && top > have) this.seqs.set(r.conversation_id, top);
    if (r.has_more && r.messages.length > 0) this.requestSync(r.conversation_id, top);
    else this.gapFrom.delete(r.conversation_id);
  }

  /**
   * Moves a tracked conversation's seq to `seq`; a jump past the next one is a gap: sync from
   * what is held (unless a sync is already under way). Untracked conversations start here.
   */
  private advance(conversation_id: string, seq: number, checkGap: boolean) {
    const have = this.seqs.get(conversation_id);
    if (have === undefined) { this.seqs.set(conversation_id, seq); return; }
    if (seq <= have) return;
    if (checkGap && seq > have + 1) {
      if (!this.gapFrom.has(conversation_id)) this.gapFrom.set(conversation_id, have);
      if (!this.syncing.has(conversation_id)) this.requestSync(conversation_id, have);
    }
    this.seqs.set(conversation_id, seq);
  }

  private deliver(m: Message, pushed: boolean) {
    if (pushed) this.advance(m.conversation_id, m.seq_id, true);
    if (this.seen.has(m.message_id)) return;
    this.seen.add(m.message_id);
    if (this.seen.size > this.opts.dedupeWindow) this.seen.delete(this.seen.values().next().value as string);
    this.emit("message", m);
  }
}
