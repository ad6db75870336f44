// How frames travel: a Codec names its WebSocket subprotocol and turns the logical frames
// ({type, data}, src/generated/frames.ts) into messages and back. The RealtimeClient offers the
// subprotocols of all its codecs, best first, and uses the one the server selected; so a second
// wire format (the binary `imlog.v1`) is one more Codec, with no change to the client's logic.

import type {ClientFrame, ServerFrame} from "./generated/frames.js";

export type WireData = string | ArrayBuffer | Uint8Array;

export interface Codec {
  /** The Sec-WebSocket-Protocol name, e.g. `imlog.v1.json`. */
  readonly subprotocol: string;
  /** Whether this codec's messages are binary (the socket's binaryType is then `arraybuffer`). */
  readonly binary: boolean;
  encode(frame: ClientFrame): string | Uint8Array;
  /** Throws on a message that is not a frame; the client reports it and carries on. */
  decode(data: WireData): ServerFrame;
}

/** Version 1 as JSON text frames (docs/api/websocket.md). */
export const jsonCodec: Codec = {
  subprotocol: "imlog.v1.json",
  binary: false,
  encode: (frame) => JSON.stringify(frame),
  decode(data) {
    if (typeof data !== "string") throw new Error("imlog.v1.json: a binary message");
    const f = JSON.parse(data) as ServerFrame;
    if (!f || typeof f !== "object" || typeof f.type !== "string") throw new Error("imlog.v1.json: not a frame");
    if (typeof f.data !== "object" || f.data === null) (f as {data: unknown}).data = {};
    return f;
  },
};
