// The binary subprotocol `imlog.v1` (docs/api/websocket.md, "The binary form"): each frame is one
// FlatBuffer whose root is `Frame` of docs/api/websocket.fbs (file identifier IMW1), carrying the
// same frames as `imlog.v1.json` field for field. The readers and builders are generated at build
// time by `flatc --ts --gen-object-api` into src/generated/fbs/ (gen-flatbuffers.mjs).
//
// Decoding is generic: the union member's name is the frame type in PascalCase, and its unpacked
// object's camelCase fields are the JSON fields in snake_case, so a frame added to the schema
// decodes without a change here. 64-bit integers (ids, seqs, times) become numbers: the wire
// contract keeps them below 2^53, and message ids are strings in both forms. Encoding is written
// out per client frame: a client sends only six kinds.

import * as flatbuffers from "flatbuffers";
import type {Codec, WireData} from "./codec.js";
import type {ClientFrame, ServerFrame} from "./generated/frames.js";
import {Data, unionToData} from "./generated/fbs/imlog/ws/data.js";
import {Frame} from "./generated/fbs/imlog/ws/frame.js";
import {Ping} from "./generated/fbs/imlog/ws/ping.js";
import {Read} from "./generated/fbs/imlog/ws/read.js";
import {Search} from "./generated/fbs/imlog/ws/search.js";
import {SendMessage} from "./generated/fbs/imlog/ws/send-message.js";
import {SetStatus} from "./generated/fbs/imlog/ws/set-status.js";
import {Sync} from "./generated/fbs/imlog/ws/sync.js";

const IDENTIFIER = "IMW1";

/** `new-message` → `NewMessage`. */
const pascal = (type: string) => type.replace(/(^|-)([a-z0-9])/g, (_m, _d, c: string) => c.toUpperCase());
/** `NewMessage` → `new-message`. */
const kebab = (name: string) => name.replace(/[A-Z]/g, (c, i: number) => (i ? "-" : "") + c.toLowerCase());
/** `clientMsgId` → `client_msg_id`. */
const snake = (name: string) => name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());

/** JSON fields that are `null` rather than left out when absent (websocket.schema.json). */
const NULL_WHEN_ABSENT: Record<string, string[]> = {"search-result": ["next_before"]};

function plain(value: unknown): unknown {
  if (typeof value === "bigint") return Number(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === null || v === undefined) continue;  // an absent string or optional scalar
      out[snake(k)] = plain(v);
    }
    return out;
  }
  return value;
}

function bytesOf(data: WireData): Uint8Array {
  if (typeof data === "string") throw new Error("imlog.v1: a text message");
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

/** Decodes one binary message into the frame the JSON form would have carried. */
export function decodeBinaryFrame(data: WireData): ServerFrame {
  const bytes = bytesOf(data);
  if (bytes.length < 12) throw new Error(`imlog.v1: ${bytes.length} bytes is shorter than a frame`);
  const bb = new flatbuffers.ByteBuffer(bytes);
  if (!Frame.bufferHasIdentifier(bb)) throw new Error(`imlog.v1: not an ${IDENTIFIER} frame`);
  const frame = Frame.getRootAsFrame(bb);
  const kind = frame.dataType();
  const name = Data[kind];
  if (kind === Data.NONE || name === undefined) throw new Error(`imlog.v1: a frame of unknown type ${kind}`);
  let table: {unpack(): unknown} | null;
  try {
    table = unionToData(kind, (obj) => frame.data(obj)) as {unpack(): unknown} | null;
    if (!table) throw new Error("no data");
    const type = kebab(name);
    const body = plain(table.unpack()) as Record<string, unknown>;
    for (const field of NULL_WHEN_ABSENT[type] ?? []) if (!(field in body)) body[field] = null;
    return {type, data: body} as unknown as ServerFrame;
  } catch (e) {
    // The TypeScript runtime has no verifier: an offset outside the message reads past its end.
    throw new Error(`imlog.v1: a malformed ${name} frame (${(e as Error).message})`);
  }
}

const big = (n: number | null | undefined) => (n === null || n === undefined ? null : BigInt(n));

/**
 * Adds an optional scalar (`= null` in the schema) when it has a value, 0 included. flatc 2.0's
 * TypeScript adders leave out a value equal to the type's default (0), which for an optional
 * scalar turns "0" into "absent": `sync` from `after_seq: 0` ("from the start") would read as
 * "the latest". Forcing defaults for this one field writes it; absent strings (offset 0) are
 * still left out, since forcing is off again before the next adder.
 */
function optional(b: flatbuffers.Builder, add: (b: flatbuffers.Builder, v: bigint) => void, v: bigint | null) {
  if (v === null) return;
  b.forceDefaults(true);
  add(b, v);
  b.forceDefaults(false);
}

/** Encodes one client frame as its binary message. */
export function encodeBinaryFrame(frame: ClientFrame): Uint8Array {
  const b = new flatbuffers.Builder(256);
  const str = (s: string | null | undefined) => (s === null || s === undefined ? 0 : b.createString(s));
  let data: flatbuffers.Offset;
  switch (frame.type) {
    case "send-message": {
      const d = frame.data;
      const conversation = str(d.conversation_id), id = str(d.client_msg_id), content = str(d.content);
      const type = str(d.message_type);
      SendMessage.startSendMessage(b);
      SendMessage.addConversationId(b, conversation);
      SendMessage.addClientMsgId(b, id);
      SendMessage.addContent(b, content);
      SendMessage.addMessageType(b, type);
      optional(b, SendMessage.addSentAt, big(d.sent_at));
      data = SendMessage.endSendMessage(b);
      break;
    }
    case "sync": {
      const d = frame.data;
      const conversation = str(d.conversation_id);
      Sync.startSync(b);
      Sync.addConversationId(b, conversation);
      optional(b, Sync.addAfterSeq, big(d.after_seq));
      optional(b, Sync.addLimit, big(d.limit));
      data = Sync.endSync(b);
      break;
    }
    case "read":
      data = Read.createRead(b, str(frame.data.conversation_id), BigInt(frame.data.seq_id));
      break;
    case "set-status":
      data = SetStatus.createSetStatus(b, str(frame.data.status));
      break;
    case "search": {
      const d = frame.data;
      const q = str(d.q), conversation = str(d.conversation_id);
      const before = str(d.before === undefined ? undefined : String(d.before));
      Search.startSearch(b);
      Search.addQ(b, q);
      Search.addConversationId(b, conversation);
      Search.addBefore(b, before);
      optional(b, Search.addLimit, big(d.limit));
      data = Search.endSearch(b);
      break;
    }
    case "ping":
      data = Ping.createPing(b);
      break;
    default:
      throw new Error(`imlog.v1: cannot encode a ${(frame as {type: string}).type} frame`);
  }
  const kind = Data[pascal(frame.type) as keyof typeof Data];
  b.finish(Frame.createFrame(b, kind, data), IDENTIFIER);
  return b.asUint8Array();
}

/** Version 1 as binary FlatBuffers frames (docs/api/websocket.md, "The binary form"). */
export const binaryCodec: Codec = {
  subprotocol: "imlog.v1",
  binary: true,
  encode: encodeBinaryFrame,
  decode: decodeBinaryFrame,
};
