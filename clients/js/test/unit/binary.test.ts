// The binary codec (`imlog.v1`) against the reference implementation of its schema: flatc itself
// (Debian's flatbuffers-compiler, which the build already needs). What the SDK encodes, flatc
// must read back as the same frame; what flatc encodes from a frame written in FlatBuffers' JSON,
// the SDK must decode into the frame the JSON subprotocol would have carried.
import {test} from "node:test";
import assert from "node:assert/strict";
import {execFileSync} from "node:child_process";
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from "node:fs";
import {tmpdir} from "node:os";
import {join, resolve} from "node:path";
import {binaryCodec, decodeBinaryFrame, encodeBinaryFrame} from "../../src/binary.js";
import type {ClientFrame} from "../../src/generated/frames.js";

const schema = resolve(process.cwd(), "../../docs/api/websocket.fbs");
const flatc = process.env.FLATC || "flatc";
const dir = mkdtempSync(join(tmpdir(), "imlog-sdk-fbs-"));
process.on("exit", () => rmSync(dir, {recursive: true, force: true}));

/** flatc's reading of binary bytes, as FlatBuffers' JSON. */
function flatcJson(bytes: Uint8Array): unknown {
  writeFileSync(join(dir, "frame.bin"), bytes);
  execFileSync(flatc, ["--json", "--strict-json", "--raw-binary", "-o", dir, schema, "--", join(dir, "frame.bin")]);
  return JSON.parse(readFileSync(join(dir, "frame.json"), "utf8"));
}
/** flatc's bytes for a frame written in FlatBuffers' JSON. */
function flatcBinary(json: unknown): Uint8Array {
  writeFileSync(join(dir, "in.json"), JSON.stringify(json));
  execFileSync(flatc, ["--binary", "-o", dir, schema, join(dir, "in.json")]);
  return new Uint8Array(readFileSync(join(dir, "in.bin")));
}

test("every client frame encodes to what flatc reads back as the same frame", () => {
  const cases: Array<[ClientFrame, unknown]> = [
    [{type: "send-message", data: {conversation_id: "single_3_9", client_msg_id: "c-1", content: "héllo <b>", message_type: "text"}},
     {data_type: "SendMessage", data: {conversation_id: "single_3_9", client_msg_id: "c-1", content: "héllo <b>", message_type: "text"}}],
    [{type: "send-message", data: {conversation_id: "world", client_msg_id: "c-2", content: "x", sent_at: 1763781813000}},
     {data_type: "SendMessage", data: {conversation_id: "world", client_msg_id: "c-2", content: "x", sent_at: 1763781813000}}],
    // after_seq 0 ("from the start") must stay present: absent means "the latest".
    [{type: "sync", data: {conversation_id: "world", after_seq: 0, limit: 200}},
     {data_type: "Sync", data: {conversation_id: "world", after_seq: 0, limit: 200}}],
    [{type: "sync", data: {conversation_id: "group_4"}}, {data_type: "Sync", data: {conversation_id: "group_4"}}],
    [{type: "read", data: {conversation_id: "single_3_9", seq_id: 42}}, {data_type: "Read", data: {conversation_id: "single_3_9", seq_id: 42}}],
    [{type: "set-status", data: {status: "away"}}, {data_type: "SetStatus", data: {status: "away"}}],
    [{type: "search", data: {q: "climbing 攀岩", before: "912181524521025536", limit: 5}},
     {data_type: "Search", data: {q: "climbing 攀岩", before: "912181524521025536", limit: 5}}],
    [{type: "ping", data: {}}, {data_type: "Ping", data: {}}],
  ];
  for (const [frame, expected] of cases) {
    const bytes = encodeBinaryFrame(frame);
    assert.equal(new TextDecoder().decode(bytes.subarray(4, 8)), "IMW1", `${frame.type}: the file identifier`);
    assert.deepEqual(flatcJson(bytes), expected, frame.type);
  }
});

test("server frames made by flatc decode into their JSON form", () => {
  const cases: Array<[unknown, unknown]> = [
    [{data_type: "Hello", data: {protocol: "imlog.v1", version: 1, versions: [1], user_id: 60, server_time: 1763781813000}},
     {type: "hello", data: {protocol: "imlog.v1", version: 1, versions: [1], user_id: 60, server_time: 1763781813000}}],
    // A message id stays a decimal string; a message not recalled has no `recalled`.
    [{data_type: "NewMessage", data: {message_id: "912181524521025536", conversation_id: "single_10_60", seq_id: 42, sender_id: 10,
                                      content: "<img src=x>", message_type: "text", client_msg_id: "c-17", created_at: 1763781813000}},
     {type: "new-message", data: {message_id: "912181524521025536", conversation_id: "single_10_60", seq_id: 42, sender_id: 10,
                                  content: "<img src=x>", message_type: "text", client_msg_id: "c-17", created_at: 1763781813000}}],
    [{data_type: "SyncResult", data: {conversation_id: "world", after_seq: 0, has_more: false,
                                      messages: [{message_id: "5", conversation_id: "world", seq_id: 1, sender_id: 2, content: "",
                                                  message_type: "text", client_msg_id: "x", created_at: 3, recalled: true}]}},
     {type: "sync-result", data: {conversation_id: "world", after_seq: 0, has_more: false,
                                  messages: [{message_id: "5", conversation_id: "world", seq_id: 1, sender_id: 2, content: "",
                                              message_type: "text", client_msg_id: "x", created_at: 3, recalled: true}]}}],
    // StatusAck and UserUnblocked share another frame's table: the union member names the type.
    [{data_type: "StatusAck", data: {user_id: 60, status: "busy", last_seen: 9}},
     {type: "status-ack", data: {user_id: 60, status: "busy", last_seen: 9}}],
    [{data_type: "UserUnblocked", data: {user_id: 7, created_at: 8}}, {type: "user-unblocked", data: {user_id: 7, created_at: 8}}],
    [{data_type: "Error", data: {code: "overloaded", message: "busy", client_msg_id: "c-2", request_type: "send-message", retry_after_ms: 250}},
     {type: "error", data: {code: "overloaded", message: "busy", client_msg_id: "c-2", request_type: "send-message", retry_after_ms: 250}}],
    [{data_type: "MemberRemoved", data: {conversation_id: "group_4", group_id: 4, seq_id: 9, created_at: 1, user_id: 5, removed_by: 6, banned: true}},
     {type: "member-removed", data: {conversation_id: "group_4", group_id: 4, seq_id: 9, created_at: 1, user_id: 5, removed_by: 6, banned: true}}],
    // next_before is null, not left out, when there is no more (websocket.schema.json).
    [{data_type: "SearchResult", data: {q: "hi", results: [{message: {message_id: "7", conversation_id: "world", seq_id: 1, sender_id: 2,
                                                                       content: "hi there", message_type: "text", client_msg_id: "c", created_at: 4},
                                                            snippet: [{text: "hi", hit: true}, {text: " there", hit: false}]}]}},
     {type: "search-result", data: {q: "hi", next_before: null, results: [{message: {message_id: "7", conversation_id: "world", seq_id: 1, sender_id: 2,
                                                                                     content: "hi there", message_type: "text", client_msg_id: "c", created_at: 4},
                                                                           snippet: [{text: "hi", hit: true}, {text: " there", hit: false}]}]}}],
  ];
  for (const [json, expected] of cases) {
    const frame = binaryCodec.decode(flatcBinary(json).buffer as ArrayBuffer);
    assert.deepEqual(frame, expected, (json as {data_type: string}).data_type);
  }
});

test("the Ping of docs/api/websocket.md decodes, and a round trip keeps every client frame", () => {
  const documented = Uint8Array.from(
    "10 00 00 00 49 4d 57 31 08 00 0c 00 07 00 08 00 08 00 00 00 00 00 00 05 08 00 00 00 04 00 04 00 04 00 00 00"
      .split(" ").map((h) => parseInt(h, 16)));
  assert.deepEqual(decodeBinaryFrame(documented), {type: "ping", data: {}});
  const frame: ClientFrame = {type: "sync", data: {conversation_id: "single_1_2", after_seq: 0}};
  assert.deepEqual(decodeBinaryFrame(encodeBinaryFrame(frame)), frame);
});

test("bytes that are not a frame are refused, naming why", () => {
  assert.throws(() => binaryCodec.decode("{\"type\":\"hello\"}"), /a text message/);
  assert.throws(() => binaryCodec.decode(new Uint8Array([1, 2, 3])), /shorter than a frame/);
  const other = encodeBinaryFrame({type: "ping", data: {}});
  other.set([0x58, 0x58, 0x58, 0x58], 4);
  assert.throws(() => binaryCodec.decode(other), /not an IMW1 frame/);
  const unknown = flatcBinary({data_type: "Pong", data: {ts: 1}});
  const type = unknown.indexOf(11);  // Pong's union tag, the only byte 11 in this buffer
  assert.ok(type > 8, "found the tag");
  unknown[type] = 200;
  assert.throws(() => binaryCodec.decode(unknown), /unknown type 200/);
});
