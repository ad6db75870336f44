// Test doubles for the parts of the world a RealtimeClient touches: a socket that records what is
// sent and lets the test play the server, and timers the test advances by hand.
import type {SocketLike, Timers} from "../../src/realtime.js";
import type {ServerFrame} from "../../src/generated/frames.js";
import {Session, type TokenReply} from "../../src/auth.js";

export class FakeSocket implements SocketLike {
  protocol = "";
  readyState = 0;
  binaryType = "blob";
  onopen: ((ev: unknown) => void) | null = null;
  onclose: ((ev: {code: number; reason: string}) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: {data: unknown}) => void) | null = null;
  sent: unknown[] = [];
  closed = false;
  constructor(readonly url: string, readonly protocols: string[]) {}
  send(data: string | Uint8Array) { this.sent.push(typeof data === "string" ? JSON.parse(data) : data); }
  close() { this.serverClose(1000); }
  // The server's side:
  open(protocol = this.protocols[0]) { this.protocol = protocol; this.readyState = 1; this.onopen?.({}); }
  frame(f: ServerFrame) { this.onmessage?.({data: JSON.stringify(f)}); }
  hello(user_id = 7) { this.frame({type: "hello", data: {protocol: "imlog.v1.json", version: 1, versions: [1], user_id, server_time: 0}}); }
  serverClose(code = 1006) {
    if (this.closed) return;
    this.closed = true;
    this.readyState = 3;
    this.onclose?.({code, reason: ""});
  }
  sentOfType(type: string) { return (this.sent as Array<{type: string; data: Record<string, unknown>}>).filter((f) => f.type === type); }
}

export class FakeTimers implements Timers {
  now = 1_000_000;
  private queue: Array<{at: number; fn: () => void; id: number}> = [];
  private next = 0;
  set(fn: () => void, ms: number) { const id = ++this.next; this.queue.push({at: this.now + ms, fn, id}); return id; }
  clear(h: unknown) { this.queue = this.queue.filter((t) => t.id !== h); }
  /** Delays of the timers pending now, soonest first. */
  pending() { return this.queue.map((t) => t.at - this.now).sort((a, b) => a - b); }
  advance(ms: number) {
    const until = this.now + ms;
    for (;;) {
      this.queue.sort((a, b) => a.at - b.at);
      const t = this.queue[0];
      if (!t || t.at > until) break;
      this.queue.shift();
      this.now = t.at;
      t.fn();
    }
    this.now = until;
  }
}

/** A session holding a token good for an hour (refreshes return tokens named r1, r2, ...). */
export function signedIn(now: () => number, refresher?: (rt: string) => Promise<TokenReply>) {
  let n = 0;
  const s = new Session(refresher ?? (async () => ({access_token: `r${++n}`, refresh_token: `rt${n}`, expires_in: 900, user_id: 7})), {now});
  s.accept({access_token: "a0", refresh_token: "rt0", expires_in: 3600, user_id: 7});
  return s;
}

/** Lets pending promise callbacks (the client's token fetch) run. */
export const flush = () => new Promise<void>((r) => setImmediate(r));
