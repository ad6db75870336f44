// The SDK against a real `imlog serve` (built by scripts/build): register and log in, REST with
// the generated types, real-time delivery between two users, the same client_msg_id resent after
// a reconnect is one message, a gap left by a dropped connection is synced, token refresh (the
// server's access tokens live 2 s here), and a server killed and restarted mid-conversation.
// Every test runs over both subprotocols: JSON text frames (`imlog.v1.json`) and binary
// FlatBuffers frames (`imlog.v1`, the SDK's binaryCodec), each checked to be what the socket
// really carried.
import {describe, test, before, after} from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import {binaryCodec, createClient, jsonCodec, type Codec, type Message, type SocketFactory} from "../../src/index.js";
import {ImlogServer, waitFor} from "./server.js";

const server = new ImlogServer(`
log: {level: warn}
gateway:
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 5s
`);
before(async () => { await server.start(); });
const clients: Array<{close(): void}> = [];
after(async () => {
  for (const c of clients) c.close();  // a failed test's clients would otherwise reconnect forever
  await server.dispose();
});

const protocols: Array<{name: string; codecs: Codec[]; binary: boolean}> = [
  {name: "imlog.v1.json", codecs: [jsonCodec], binary: false},
  {name: "imlog.v1", codecs: [binaryCodec, jsonCodec], binary: true},
];
let n = 0;
const uniq = (base: string) => `${base}${process.pid % 10000}x${++n}`;

for (const proto of protocols) describe(`over ${proto.name}`, () => {

/** How many text and binary messages the client's sockets received. */
const received = {text: 0, binary: 0};
const socket: SocketFactory = (url, offered) => {
  const ws = new WebSocket(url, offered);
  ws.addEventListener("message", (ev) => { if (typeof ev.data === "string") ++received.text; else ++received.binary; });
  return ws as never;
};

async function user(nickname: string) {
  const c = createClient({baseUrl: server.url, socket, codecs: proto.codecs, backoffMinMs: 50, backoffMaxMs: 500,
                          refreshMarginMs: 500});
  const username = uniq(nickname.toLowerCase());
  const reg = await c.rest.register({username, password: "correct horse", nickname});
  const tokens = await c.rest.login(username, "correct horse");
  assert.equal(tokens.user_id, reg.user_id);
  clients.push(c.realtime);
  const got: Message[] = [];
  c.realtime.on("message", (m) => got.push(m));
  return {...c, id: reg.user_id, username, got};
}
const single = (a: number, b: number) => `single_${Math.min(a, b)}_${Math.max(a, b)}`;

test("two users chat in real time; a read reaches the peer as a receipt; the list has names and unread counts", async () => {
  const alice = await user("Alice"), bob = await user("Bob");
  const before = {...received};
  alice.realtime.start();
  bob.realtime.start();
  await waitFor("both open", () => alice.realtime.state === "open" && bob.realtime.state === "open");
  assert.equal(alice.realtime.protocol, proto.name);
  assert.equal(alice.realtime.hello?.user_id, alice.id);
  assert.equal(alice.realtime.hello?.protocol, proto.name, "the server's hello names the subprotocol");
  const conv = single(alice.id, bob.id);
  const ack = await alice.realtime.send(conv, "hello bob").acked;
  assert.equal(ack.seq_id, 1);
  await waitFor("bob got it", () => bob.got.some((m) => m.content === "hello bob"));
  assert.equal(bob.got.find((m) => m.content === "hello bob")!.sender_id, alice.id);
  assert.deepEqual(alice.got.map((m) => m.content), ["hello bob"], "the sender sees its own message once, from the ack");
  await waitFor("bob's list", async () => (await bob.rest.conversations()).conversations.some((c) => c.conversation_id === conv && c.unread === 1));
  const row = (await bob.rest.conversations()).conversations.find((c) => c.conversation_id === conv)!;
  assert.equal(row.title, "Alice");
  assert.equal(row.peer_id, alice.id);
  // A read over the socket is answered on it, and Alice gets it as a read receipt.
  const readAck = new Promise<{seq_id: number}>((res) => bob.realtime.on("read-ack", res));
  const receipt = new Promise<{user_id: number; seq_id: number; conversation_id: string}>((res) => alice.realtime.on("read-marked", res));
  assert.ok(bob.realtime.read(conv, 1));
  assert.equal((await readAck).seq_id, 1);
  assert.deepEqual(await receipt.then(({user_id, seq_id, conversation_id}) => ({user_id, seq_id, conversation_id})),
                   {user_id: bob.id, seq_id: 1, conversation_id: conv});
  // Every frame came in the subprotocol's form: hellos, the push, the ack, the read-ack, the receipt.
  const got = {text: received.text - before.text, binary: received.binary - before.binary};
  assert.ok((proto.binary ? got.binary : got.text) >= 6, `frames of the expected form: ${JSON.stringify(got)}`);
  assert.equal(proto.binary ? got.text : got.binary, 0, `no frame of the other form: ${JSON.stringify(got)}`);
  alice.realtime.close();
  bob.realtime.close();
});

test("a send whose connection dropped is resent with the same id and lands once; a gap is synced", async () => {
  const alice = await user("Ann"), bob = await user("Ben");
  const conv = single(alice.id, bob.id);
  alice.realtime.start();
  bob.realtime.start();
  await waitFor("both open", () => alice.realtime.state === "open" && bob.realtime.state === "open");
  bob.realtime.track(conv, 0);

  // Alice sends and her connection drops at once: the ack may be lost, the message may be durable.
  const sent = alice.realtime.send(conv, "only once");
  alice.realtime.drop();
  const ack = await sent.acked;
  assert.equal(ack.seq_id, 1);
  // Bob drops too, and misses two messages sent over REST meanwhile.
  bob.realtime.close();
  await alice.rest.sendMessage(conv, {client_msg_id: "r-2", content: "while away 1"});
  await alice.rest.sendMessage(conv, {client_msg_id: "r-3", content: "while away 2"});
  bob.realtime.start();
  await waitFor("bob synced", () => bob.got.filter((m) => m.content.startsWith("while away")).length === 2);
  // History comes from the read models, which follow the log: a page read the moment a push
  // arrives may not hold it yet.
  await waitFor("bob's history", async () => (await bob.rest.history(conv, {after_seq: 0})).messages.length >= 3);
  const history = await bob.rest.history(conv, {after_seq: 0});
  assert.deepEqual(history.messages.map((m) => m.content), ["only once", "while away 1", "while away 2"]);
  assert.deepEqual(bob.got.map((m) => m.seq_id), [1, 2, 3]);
  alice.realtime.close();
  bob.realtime.close();
});

test("an expired access token is refreshed: on the server's 401, and before a reconnect", async () => {
  const alice = await user("Ada");
  const first = alice.rest.session.tokens!;
  // An access token the server refuses (as it would an expired one) that the client believes good
  // for an hour: the server's 401 is what triggers the refresh.
  alice.rest.session.store.save({...first, access_token: first.access_token.slice(0, -4) + "AAAA", expires_at: Date.now() + 3_600_000});
  const me = await alice.rest.me();
  assert.equal(me.user_id, alice.id);
  const second = alice.rest.session.tokens!;
  assert.ok(!second.access_token.endsWith("AAAA"), "the refused token was replaced");
  assert.notEqual(second.refresh_token, first.refresh_token, "a new pair");
  // Expired again, and known to be: the socket connects with a token refreshed first.
  alice.rest.session.store.save({...second, expires_at: Date.now() - 1});
  alice.realtime.start();
  await waitFor("open with the refreshed token", () => alice.realtime.state === "open");
  assert.notEqual(alice.rest.session.tokens!.refresh_token, second.refresh_token, "refreshed before connecting");
  alice.realtime.close();
  // The old refresh token is spent: using it signs nobody in.
  await assert.rejects(alice.rest.request("POST", "/api/v1/auth/refresh", {refresh_token: first.refresh_token}, false),
                       (e: {code: string}) => e.code === "unauthorized");
});

test("the server killed and restarted mid-conversation: nothing lost, nothing doubled", async () => {
  const alice = await user("Amy"), bob = await user("Bo");
  const conv = single(alice.id, bob.id);
  alice.realtime.start();
  bob.realtime.start();
  await waitFor("both open", () => alice.realtime.state === "open" && bob.realtime.state === "open");
  bob.realtime.track(conv, 0);
  await alice.realtime.send(conv, "before the crash").acked;
  await waitFor("bob got the first", () => bob.got.length === 1);

  await server.kill();
  await waitFor("both notice", () => alice.realtime.state !== "open" && bob.realtime.state !== "open");
  const during = alice.realtime.send(conv, "sent while the server was down");
  assert.equal(alice.realtime.pending.length, 1);
  await server.start();
  const ack = await during.acked;
  assert.equal(ack.seq_id, 2);
  await waitFor("bob got the second", () => bob.got.length === 2, 20_000);
  await waitFor("bob's history", async () => (await bob.rest.history(conv, {after_seq: 0})).messages.length >= 2);
  const history = await bob.rest.history(conv, {after_seq: 0});
  assert.deepEqual(history.messages.map((m) => m.content), ["before the crash", "sent while the server was down"]);
  assert.deepEqual(bob.got.map((m) => m.content), ["before the crash", "sent while the server was down"]);
  alice.realtime.close();
  bob.realtime.close();
});

test("presence: a friend's going offline and coming back is pushed", async () => {
  const alice = await user("Pia"), bob = await user("Pat");
  await alice.rest.requestFriend(bob.id, "hi");
  await bob.rest.acceptFriend(alice.id);
  const seen: string[] = [];
  alice.realtime.on("presence", (p) => { if (p.user_id === bob.id) seen.push(p.status); });
  alice.realtime.start();
  await waitFor("alice open", () => alice.realtime.state === "open");
  bob.realtime.start();
  await waitFor("online pushed", () => seen.includes("online"));
  bob.realtime.close();
  await waitFor("offline pushed", () => seen.includes("offline"));
  const p = await alice.rest.presence([bob.id]);
  assert.equal(p.presence![0].status, "offline");
  alice.realtime.close();
});

});
