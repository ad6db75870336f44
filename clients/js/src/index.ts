// @imlog/sdk: a client of imlog's REST API and WebSocket protocol (docs/clients.md, "Build a client
// in 15 minutes with the SDK").

export {ImlogError} from "./errors.js";
export {Session, MemoryTokenStore, WebStorageTokenStore, type Tokens, type TokenStore} from "./auth.js";
export {RestClient, type RestOptions, type Reply, type Body, type Schemas, type Message, type Conversation, type User,
        type Me, type Friend, type Group, type Member, type Presence, type Ban} from "./rest.js";
export {RealtimeClient, type RealtimeOptions, type RealtimeEvents, type ConnectionState, type PendingSend,
        type SocketLike, type SocketFactory, type Timers} from "./realtime.js";
export {jsonCodec, type Codec, type WireData} from "./codec.js";
export {binaryCodec, encodeBinaryFrame, decodeBinaryFrame} from "./binary.js";
export type * as Frames from "./generated/frames.js";

import {RestClient, type RestOptions} from "./rest.js";
import {RealtimeClient, type RealtimeOptions} from "./realtime.js";

export interface ClientOptions extends RestOptions, Partial<Omit<RealtimeOptions, "session" | "url">> {
  /** The WebSocket origin; default: baseUrl (or the page's origin) with http(s) → ws(s). */
  wsUrl?: string;
}

/** A REST client and a real-time client sharing one session. */
export function createClient(opts: ClientOptions = {}): {rest: RestClient; realtime: RealtimeClient} {
  const rest = new RestClient(opts);
  const origin = opts.baseUrl || (typeof location !== "undefined" ? location.origin : "http://127.0.0.1:8080");
  const url = opts.wsUrl ?? origin.replace(/^http/, "ws");
  const realtime = new RealtimeClient({...opts, url, session: rest.session});
  return {rest, realtime};
}
