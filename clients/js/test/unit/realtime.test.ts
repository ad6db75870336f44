// The RealtimeClient against a scripted server (FakeSocket) and hand-driven timers: acks by
// client_msg_id, resend after reconnect with the same id, gap detection and sync, back-off,
// retryable and final errors, and codec selection by the server's chosen subprotocol.
import {test} from "node:test";
import assert from "node:assert/strict";
import {RealtimeClient, type RealtimeEvents} from "../../src/realtime.js";
import {jsonCodec, type Codec} from "../../src/codec.js";
import type {Message} from "../../src/generated/frames.js";
import {FakeSocket, FakeTimers, flush, signedIn} from "./fakes.js";

function setup(extra: {codecs?: Codec[]; random?: () => number} = {}) {
  const timers = new FakeTimers();
  const sockets: FakeSocket[] = [];
  const session = signedIn(() => timers.now);
  const client = new RealtimeClient({
    url: "ws://server", session, timers, now: () => timers.now, random: extra.random ?? (() => 0.5),
    socket: (url, protocols) => { const s = new FakeSocket(url, protocols); sockets.push(s); return s; },
    backoffMinMs: 100, backoffMaxMs: 3200, pingIntervalMs: 10_000, codecs: extra.codecs,
  });
  const messages: Message[] = [];
  client.on("message", (m) => messages.push(m));
  const last = () => sockets[sockets.length - 1];
  return {timers, sockets, session, client, messages, last};
}

const msg = (conv: string, seq: number, content = `m${seq}`): Message => ({
  message_id: `${conv}-${seq}`, conversation_id: conv, seq_id: seq, sender_id: 9, content, message_type: "text",
  client_msg_id: `c${seq}`, created_at: seq,
});

test("connects with the token and the JSON subprotocol, and is open after hello", async () => {
  const {client, last} = setup();
  const states: string[] = [];
  client.on("state", (s) => states.push(s));
  client.start();
  await flush();
  assert.equal(last().url, "ws://server/ws?token=a0");
  assert.deepEqual(last().protocols, ["imlog.v1.json"]);
  last().open();
  assert.equal(client.state, "connecting");
  last().hello();
  assert.equal(client.state, "open");
  assert.deepEqual(states, ["connecting", "open"]);
});

test("closing while the socket still connects leaves a listener for the error that close raises", async () => {
  const {client, last} = setup();
  client.start();
  await flush();
  const connecting = last();
  assert.equal(connecting.readyState, 0);
  client.close();
  // Node's `ws` fails a socket closed mid-handshake with an error event, and throws it as an
  // uncaught exception when no listener is left: the client must still be listening.
  assert.ok(connecting.onerror, "an error listener stays after close()");
  assert.doesNotThrow(() => connecting.onerror?.(new Error("WebSocket was closed before the connection was established")));
  assert.equal(client.state, "closed");
});

test("a send is acked by client_msg_id, shown once, and resent with the same id after a reconnect", async () => {
  const {client, last, sockets, timers, messages} = setup();
  client.start();
  await flush();
  last().open();
  last().hello();
  const {client_msg_id, acked} = client.send("single_7_9", "hello");
  const first = last().sentOfType("send-message");
  assert.equal(first.length, 1);
  assert.equal(first[0].data.client_msg_id, client_msg_id);
  assert.equal(first[0].data.content, "hello");
  assert.equal(first[0].data.sent_at, timers.now, "sent_at: when it was first sent");
  assert.equal(client.pending.length, 1);

  // The connection drops before the ack: the client reconnects and sends it again, same id.
  last().serverClose();
  assert.equal(client.state, "waiting");
  timers.advance(200);
  await flush();
  assert.equal(sockets.length, 2);
  last().open();
  last().hello();
  const again = last().sentOfType("send-message");
  assert.equal(again.length, 1);
  assert.equal(again[0].data.client_msg_id, client_msg_id);
  assert.equal(again[0].data.sent_at, first[0].data.sent_at, "a resend keeps the first send's sent_at");

  const acks: string[] = [];
  client.on("send-acked", (a) => acks.push(a.message_id));
  last().frame({type: "message-ack", data: {client_msg_id, conversation_id: "single_7_9", message_id: "55", seq_id: 3}});
  const ack = await acked;
  assert.equal(ack.seq_id, 3);
  assert.deepEqual(acks, ["55"]);
  assert.equal(client.pending.length, 0);
  // A duplicate ack (the server answering the first copy too) and an echo change nothing.
  last().frame({type: "message-ack", data: {client_msg_id, conversation_id: "single_7_9", message_id: "55", seq_id: 3}});
  last().frame({type: "new-message", data: {...msg("single_7_9", 3, "hello"), message_id: "55", sender_id: 7}});
  assert.deepEqual(messages.map((m) => [m.message_id, m.content, m.sender_id]), [["55", "hello", 7]]);
});

test("a send made while disconnected goes out on the next hello", async () => {
  const {client, last} = setup();
  client.start();
  const {client_msg_id} = client.send("world", "early");
  await flush();
  last().open();
  assert.equal(last().sentOfType("send-message").length, 0, "nothing before hello");
  last().hello();
  assert.deepEqual(last().sentOfType("send-message").map((f) => f.data.client_msg_id), [client_msg_id]);
});

test("a gap in seq_ids syncs from the seq held, and the synced messages are shown once each", async () => {
  const {client, last, messages} = setup();
  client.start();
  await flush();
  last().open();
  last().hello();
  client.track("group_5", 3);
  last().frame({type: "new-message", data: msg("group_5", 4)});
  assert.equal(last().sentOfType("sync").length, 0, "4 follows 3: no gap");
  last().frame({type: "new-message", data: msg("group_5", 7)});
  const syncs = last().sentOfType("sync");
  assert.equal(syncs.length, 1);
  assert.deepEqual(syncs[0].data, {conversation_id: "group_5", after_seq: 4, limit: 200});
  last().frame({type: "sync-result", data: {conversation_id: "group_5", after_seq: 4, messages: [msg("group_5", 5), msg("group_5", 6)], has_more: true}});
  assert.deepEqual(last().sentOfType("sync").at(-1)!.data, {conversation_id: "group_5", after_seq: 6, limit: 200});
  last().frame({type: "sync-result", data: {conversation_id: "group_5", after_seq: 6, messages: [msg("group_5", 7)], has_more: false}});
  assert.deepEqual(messages.map((m) => m.seq_id), [4, 7, 5, 6]);
  assert.equal(client.seqOf("group_5"), 7);
});

test("membership pushes take seq_ids too: they move the seq without a false gap", async () => {
  const {client, last} = setup();
  client.start();
  await flush();
  last().open();
  last().hello();
  client.track("group_5", 3);
  last().frame({type: "member-joined", data: {conversation_id: "group_5", group_id: 5, seq_id: 4, created_at: 1, user_id: 11}});
  last().frame({type: "new-message", data: msg("group_5", 5)});
  assert.equal(last().sentOfType("sync").length, 0);
  assert.equal(client.seqOf("group_5"), 5);
});

test("every reconnect syncs each tracked conversation from the seq held", async () => {
  const {client, last, timers} = setup();
  client.start();
  await flush();
  last().open();
  last().hello();
  client.track("single_7_9", 10);
  client.track("group_5", 2);
  last().serverClose();
  timers.advance(1000);
  await flush();
  last().open();
  last().hello();
  assert.deepEqual(last().sentOfType("sync").map((f) => [f.data.conversation_id, f.data.after_seq]),
                   [["single_7_9", 10], ["group_5", 2]]);
});

test("reconnects back off exponentially up to the cap, and a hello resets the back-off", async () => {
  const {client, last, timers, sockets} = setup({random: () => 0.999});
  client.start();
  await flush();
  const delays: number[] = [];
  for (let i = 0; i < 7; ++i) {
    last().serverClose();  // fails before open
    delays.push(timers.pending()[0]);
    timers.advance(delays.at(-1)!);
    await flush();
  }
  assert.deepEqual(delays, [99, 199, 399, 799, 1598, 3196, 3196]);
  last().open();
  last().hello();
  last().serverClose();
  assert.equal(timers.pending()[0], 99, "back to the minimum after a good connection");
  assert.equal(sockets.length, 8);
});

test("a connection that fails before its hello refreshes the token before the next try", async () => {
  const {client, last, timers} = setup();
  client.start();
  await flush();
  assert.match(last().url, /token=a0$/);
  last().serverClose();
  timers.advance(100);
  await flush();
  assert.match(last().url, /token=a0$/, "one failure may be the network");
  last().serverClose();
  timers.advance(200);
  await flush();
  assert.match(last().url, /token=r1$/, "two in a row: the upgrade may have been refused (401)");
});

test("a retryable error resends the same id after retry_after_ms; a refusal fails the send", async () => {
  const {client, last, timers} = setup();
  client.start();
  await flush();
  last().open();
  last().hello();
  const a = client.send("group_5", "one");
  last().frame({type: "error", data: {code: "overloaded", message: "busy", client_msg_id: a.client_msg_id, request_type: "send-message", retry_after_ms: 300}});
  assert.equal(last().sentOfType("send-message").length, 1);
  timers.advance(299);
  assert.equal(last().sentOfType("send-message").length, 1);
  timers.advance(1);
  assert.deepEqual(last().sentOfType("send-message").map((f) => f.data.client_msg_id), [a.client_msg_id, a.client_msg_id]);

  const b = client.send("group_5", "two");
  const failed: Array<RealtimeEvents["send-failed"]> = [];
  client.on("send-failed", (f) => failed.push(f));
  last().frame({type: "error", data: {code: "not_member", message: "not a member of group 5", client_msg_id: b.client_msg_id, request_type: "send-message"}});
  await assert.rejects(b.acked, (e: {code: string}) => e.code === "not_member");
  assert.equal(failed.length, 1);
  assert.equal(failed[0].content, "two");
  assert.deepEqual(client.pending.map((p) => p.content), ["one"]);
});

test("a silent connection is dropped after two ping intervals and reconnected", async () => {
  const {client, last, timers, sockets} = setup();
  client.start();
  await flush();
  last().open();
  last().hello();
  timers.advance(10_000);
  assert.equal(last().sentOfType("ping").length, 1);
  last().frame({type: "pong", data: {ts: 1}});
  timers.advance(10_000);
  assert.equal(sockets[0].closed, false);
  timers.advance(20_000);
  assert.equal(sockets[0].closed, true, "no frame for 30 s");
});

test("the server's chosen subprotocol picks the codec", async () => {
  const decoded: string[] = [];
  const binary: Codec = {
    subprotocol: "imlog.v1", binary: true,
    encode: (f) => new TextEncoder().encode("B" + JSON.stringify(f)),
    decode: (d) => { decoded.push("binary"); return jsonCodec.decode(new TextDecoder().decode(d as Uint8Array).slice(1)); },
  };
  const {client, last} = setup({codecs: [binary, jsonCodec]});
  client.start();
  await flush();
  assert.deepEqual(last().protocols, ["imlog.v1", "imlog.v1.json"]);
  assert.equal(last().binaryType, "arraybuffer");
  last().open("imlog.v1");
  last().onmessage!({data: new TextEncoder().encode("B" + JSON.stringify({type: "hello", data: {protocol: "imlog.v1", version: 1, versions: [1], user_id: 7, server_time: 0}}))});
  assert.equal(client.state, "open");
  assert.equal(client.protocol, "imlog.v1");
  assert.deepEqual(decoded, ["binary"]);
  client.send("world", "x");
  const raw = last().sent[0] as Uint8Array;
  assert.ok(raw instanceof Uint8Array);
  assert.equal(new TextDecoder().decode(raw)[0], "B");
});

test("reconnectNow skips the back-off when the network is back", async () => {
  const {client, last, timers, sockets} = setup({random: () => 0.999});
  client.start();
  await flush();
  for (let i = 0; i < 4; ++i) { last().serverClose(); timers.advance(timers.pending()[0]); await flush(); }
  last().serverClose();
  assert.ok(timers.pending()[0] > 1000, "a long wait is due");
  const before = sockets.length;
  client.reconnectNow();
  await flush();
  assert.equal(sockets.length, before + 1, "connected at once");
  assert.equal(timers.pending().filter((d) => d > 1000).length, 0, "the back-off timer is gone");
});
