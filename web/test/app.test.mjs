// The chat app in Debian's Chromium (puppeteer-core), against a real `imlog serve` with the app
// compiled in: three people in three browser contexts sign up, become friends, chat one to one
// and in a group; one goes offline and comes back; the server is killed and restarted
// mid-conversation; a reload keeps the session. Assertions are on what each person sees (the
// DOM). Screenshots of the main screens are kept under $IMLOG_TEST_ARTIFACTS, and axe-core checks
// each screen for serious or critical accessibility violations. Every wait has a deadline.
//
// The app speaks the WebSocket subprotocol $IMLOG_WEB_PROTOCOL asks for: `imlog.v1.json` (JSON
// text frames, the default) or `imlog.v1` (binary FlatBuffers frames). ctest runs the whole suite
// once for each (WebBrowser, WebBrowserBinary), and the last test checks, from the DevTools
// protocol's view of the sockets, that every frame each page received was of that form.
import {test, before, after} from "node:test";
import assert from "node:assert/strict";
import {readdirSync, readFileSync} from "node:fs";
import {dirname, join} from "node:path";
import {fileURLToPath} from "node:url";
import {ImlogServer, axeSource, launchChromium, screenshotPath, waitFor} from "./support.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const server = new ImlogServer();
let browser;
const people = {};
const password = "correct horse";
const suffix = String(process.pid % 100000);
const protocol = process.env.IMLOG_WEB_PROTOCOL || "imlog.v1.json";
if (!["imlog.v1.json", "imlog.v1"].includes(protocol)) throw new Error(`IMLOG_WEB_PROTOCOL=${protocol}: imlog.v1.json or imlog.v1`);

// Before the app's script runs: record every Content-Security-Policy violation.
const watchViolations = () => {
  window.__violations = [];
  document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(`${e.effectiveDirective} ${e.blockedURI}`));
};

before(async () => {
  await server.start();
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await server.dispose();
});

async function newPerson(key, nickname) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.evaluateOnNewDocument(watchViolations);
  // The form the app asks for (web/src/store.ts reads it at start; Settings → Connection sets it).
  await page.evaluateOnNewDocument((proto) => localStorage.setItem("imlog.protocol", proto), protocol);
  // Every WebSocket frame the page receives, by opcode (1 text, 2 binary), as DevTools sees it.
  const frames = {text: 0, binary: 0};
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketFrameReceived", ({response}) => { if (response.opcode === 1) ++frames.text; else if (response.opcode === 2) ++frames.binary; });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.url}/`);
  const p = {key, nickname, username: `${key}${suffix}`, context, page, errors, frames};
  people[key] = p;
  return p;
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent).catch(() => "");
/** Waits until `fn` (run in the page with `arg`) is truthy. */
const until = (p, what, fn, arg, ms = 15_000) => waitFor(`${p.key}: ${what}`, () => p.page.evaluate(fn, arg), ms);

async function signUp(p) {
  await p.page.waitForSelector("#auth-switch");
  await p.page.click("#auth-switch");
  await p.page.type("#auth-username", p.username);
  await p.page.type("#auth-nickname", p.nickname);
  await p.page.type("#auth-password", password);
  await p.page.keyboard.press("Enter");  // the form submits from the keyboard
  await p.page.waitForSelector("#conn[data-state=open]", {timeout: 15_000});
  await until(p, "its name in the header", (name) => document.getElementById("me-name")?.textContent === name, p.nickname);
  p.id = await p.page.evaluate(() => JSON.parse(localStorage.getItem("imlog.session")).user_id);
}

async function openTab(p, tab) {
  await p.page.click(`#tab-${tab}`);
  await p.page.waitForSelector(`#tab-${tab}[aria-pressed=true]`);
}

async function befriend(a, b) {
  await openTab(a, "friends");
  await a.page.type("#friend-q", b.username);
  await a.page.click("#friend-search button[type=submit]");
  await a.page.waitForSelector(`#search-results li[data-user="${b.id}"] button`);
  await a.page.click(`#search-results li[data-user="${b.id}"] button`);
  await a.page.waitForSelector(`#outgoing li[data-user="${b.id}"]`);
  // b sees the request live (friend-request push) and accepts it.
  await openTab(b, "friends");
  await b.page.waitForSelector(`#incoming li[data-user="${a.id}"]`);
  assert.match(await text(b.page, `#incoming li[data-user="${a.id}"]`), new RegExp(a.nickname));
  await b.page.click(`#incoming li[data-user="${a.id}"] button.primary`);
  await b.page.waitForSelector(`#friends li[data-user="${a.id}"]`);
  await a.page.waitForSelector(`#friends li[data-user="${b.id}"]`);
}

async function send(p, content) {
  await p.page.click("#composer-input");
  await p.page.type("#composer-input", content);
  await p.page.keyboard.press("Enter");
}

/** The texts of the open conversation's messages, in order. */
const messages = (p) => p.page.$$eval("#messages .msg .text", (els) => els.map((e) => e.textContent));

async function openConversation(p, titlePart) {
  const ok = await waitFor(`${p.key}: a conversation titled ${titlePart}`, () => p.page.evaluate((t) => {
    const b = [...document.querySelectorAll("#conversations .conv")].find((x) => x.querySelector(".conv-title").textContent.includes(t));
    if (b) b.click();
    return Boolean(b);
  }, titlePart));
  assert.ok(ok);
  await p.page.waitForSelector("#messages");
}

async function axeCheck(p, screen) {
  await p.page.evaluate(axeSource);  // evaluated over the DevTools protocol: the page's CSP allows no inline script
  const result = await p.page.evaluate(() => window.axe.run(document, {resultTypes: ["violations"]}));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`), [],
                   `axe-core on ${screen}`);
}

const shot = (p, name) => p.page.screenshot({path: screenshotPath(name)});

test("the app's own sources put user data into the page as text only", () => {
  const src = join(here, "../src");
  for (const f of readdirSync(src)) {
    const code = readFileSync(join(src, f), "utf8");
    for (const sink of ["dangerouslySetInnerHTML", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("]) {
      assert.ok(!code.includes(sink), `web/src/${f} uses ${sink}`);
    }
  }
});

test("sign up, and the sign-in screen is accessible", async () => {
  const alice = await newPerson("alice", "Alice Liddell");
  await alice.page.waitForSelector("#auth-form");
  await axeCheck(alice, "the sign-in screen");
  await shot(alice, "01-sign-in");
  await signUp(alice);
  const bob = await newPerson("bob", "Bob <b>Builder</b>");  // markup in a name is just characters
  await signUp(bob);
  const carol = await newPerson("carol", "Carol");
  await signUp(carol);
  assert.ok(alice.id && bob.id && carol.id);
});

test("friends: search, request, accept; presence shows", async () => {
  const {alice, bob, carol} = people;
  await befriend(alice, bob);
  await befriend(carol, alice);
  // Bob is online: Alice's list shows his dot.
  await alice.page.waitForSelector(`#friends li[data-user="${bob.id}"] .dot.online`);
  await shot(alice, "02-friends");
  await axeCheck(alice, "the friends panel");
});

test("friend groups: Alice files Bob under one, the list shows it, the server has it", async () => {
  const {alice, bob, carol} = people;
  await openTab(alice, "friends");
  await alice.page.click(`#friends li[data-user="${bob.id}"] button.set-group`);
  await alice.page.type(`#friend-group-${bob.id}`, "Work <i>mates</i>");
  await alice.page.keyboard.press("Enter");
  await alice.page.waitForSelector(`#friends section[data-group="Work <i>mates</i>"] li[data-user="${bob.id}"]`);
  assert.equal(await text(alice.page, `#friends section[data-group="Work <i>mates</i>"] h4`), "Work <i>mates</i>", "a group name is text");
  // Carol is in no group.
  assert.ok(await alice.page.$(`#friends section[data-group=""] li[data-user="${carol.id}"]`), "the others under Not in a group");
  const fromServer = await alice.page.evaluate(async () => {
    const t = JSON.parse(localStorage.getItem("imlog.session"));
    const h = {headers: {Authorization: `Bearer ${t.access_token}`}};
    return {friends: (await (await fetch("/api/v1/friends?status=friends", h)).json()).friends,
            groups: (await (await fetch("/api/v1/friends/groups", h)).json()).groups};
  });
  assert.equal(fromServer.friends.find((f) => f.user_id === bob.id)?.group_name, "Work <i>mates</i>");
  assert.deepEqual(fromServer.groups, ["Work <i>mates</i>"]);
  assert.equal(await alice.page.$$eval("#friends i", (e) => e.length), 0, "no markup from a group name");
  await shot(alice, "12-friend-groups");
  await axeCheck(alice, "the friends panel with friend groups");
});

test("two people chat: pending then sent, unread badge, names, no markup", async () => {
  const {alice, bob} = people;
  await alice.page.click(`#friends li[data-user="${bob.id}"] button.primary`);  // Message
  await alice.page.waitForSelector("#composer-input");
  assert.equal(await text(alice.page, "#chat-title"), "Bob <b>Builder</b>");
  await send(alice, "hello bob");
  await alice.page.waitForSelector("#messages .msg.mine[data-state=acked]");
  assert.deepEqual(await messages(alice), ["hello bob"]);
  assert.equal(await text(alice.page, "#messages .day"), "Today");
  const rows = await alice.page.$$eval("#messages .system", (e) => e.map((x) => x.textContent));
  assert.ok(rows.includes("Bob <b>Builder</b> accepted your friend request"),
            `the friendship shows as a sentence: ${JSON.stringify(rows)}`);

  // Bob is elsewhere (Chats list, no conversation open): an unread badge and a preview.
  await openTab(bob, "chats");
  await until(bob, "unread badge 1", (id) => document.querySelector(`.conv[data-conv=${id}] .badge`)?.textContent === "1",
              `single_${Math.min(alice.id, bob.id)}_${Math.max(alice.id, bob.id)}`);
  const row = await text(bob.page, "#conversations .conv");
  assert.match(row, /Alice Liddell/);
  assert.match(row, /hello bob/);
  await shot(bob, "03-conversation-list-unread");
  await openConversation(bob, "Alice");
  await until(bob, "the message", () => [...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "hello bob"));
  await until(bob, "the badge gone", () => !document.querySelector("#conversations .badge"));
  // Bob read it: Alice's message shows as seen (his read marker, pushed to her as a receipt).
  await until(alice, "her message seen", () => {
    const m = [...document.querySelectorAll("#messages .msg.mine")].find((x) => x.querySelector(".text")?.textContent === "hello bob");
    return m?.dataset.seen === "true" && m.querySelector(".state.seen")?.textContent.includes("Seen");
  });
  await send(bob, "hi <img src=x> alice");
  await until(alice, "bob's answer", () => [...document.querySelectorAll("#messages .msg:not(.mine) .text")].some((e) => e.textContent === "hi <img src=x> alice"));
  // A message Bob has not read yet is sent, not seen: Alice's next one, while Bob looks elsewhere.
  await openTab(bob, "friends");
  await send(alice, "are you there?");
  await until(alice, "the new one acked", () => [...document.querySelectorAll("#messages .msg.mine[data-state=acked] .text")].some((e) => e.textContent === "are you there?"));
  // Bob's list counts it unread (the chat is behind his friends panel, so not read), and a
  // moment later (longer than the app's 150 ms read debounce) Alice still sees it unread.
  await until(bob, "unread while the chat is hidden", () => document.querySelector("#conversations .badge")?.textContent === "1");
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(await alice.page.evaluate(() => [...document.querySelectorAll("#messages .msg.mine")].find((x) => x.querySelector(".text")?.textContent === "are you there?").dataset.seen),
               undefined, "not seen while Bob has not opened it");
  await openTab(bob, "chats");
  await openConversation(bob, "Alice");
  await until(alice, "seen once Bob opened the chat", () =>
    [...document.querySelectorAll("#messages .msg.mine")].find((x) => x.querySelector(".text")?.textContent === "are you there?")?.dataset.seen === "true");
  assert.equal(await alice.page.$$eval("#messages img, #conversations img", (e) => e.length), 0, "markup in a message stays text");
  await shot(alice, "04-chat");
  await axeCheck(alice, "a conversation");
});

test("a group of three: create with members, everyone sees it, names on messages, system rows as sentences", async () => {
  const {alice, bob, carol} = people;
  await openTab(alice, "new-group");
  await alice.page.type("#group-name", "Weekend plans");
  await alice.page.click(`#new-group input[value="${bob.id}"]`);
  await alice.page.click(`#new-group input[value="${carol.id}"]`);
  await alice.page.click("#create-group");
  await alice.page.waitForSelector("#chat-title");
  assert.equal(await text(alice.page, "#chat-title"), "Weekend plans");
  for (const p of [bob, carol]) {
    await openTab(p, "chats");
    await openConversation(p, "Weekend plans");
  }
  await send(carol, "Saturday?");
  for (const p of [alice, bob]) {
    await until(p, "carol's group message with her name", () =>
      [...document.querySelectorAll("#messages .msg")].some((m) => m.querySelector(".text")?.textContent === "Saturday?" &&
                                                               m.querySelector(".sender")?.textContent === "Carol"));
  }
  const system = await bob.page.$$eval("#messages .system", (e) => e.map((x) => x.textContent));
  assert.ok(system.every((s) => !s.includes("{")), `system rows are sentences: ${JSON.stringify(system)}`);
  await send(alice, "Yes!");
  await until(carol, "alice's reply", () => [...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "Yes!"));
  await shot(carol, "05-group");

  // The owner's member list: three members with roles; she makes Bob an admin.
  await alice.page.click("#group-info");
  await alice.page.waitForSelector(`#members li[data-user="${bob.id}"]`);
  assert.equal(await alice.page.$$eval("#members li", (e) => e.length), 3);
  assert.equal(await text(alice.page, `#members li[data-user="${alice.id}"] .role`), "owner");
  await alice.page.evaluate((id) => [...document.querySelectorAll(`#members li[data-user="${id}"] button`)].find((b) => b.textContent === "Make admin").click(), bob.id);
  await until(alice, "bob an admin", (id) => document.querySelector(`#members li[data-user="${id}"] .role`)?.textContent === "admin", bob.id);
  await shot(alice, "10-group-members");
  await axeCheck(alice, "the group's members");
});

test("settings: privacy and quiet hours are saved to the server", async () => {
  const {carol} = people;
  await openTab(carol, "settings");
  await carol.page.select("#message-policy", "friends_only");
  await carol.page.click("#allow-search");
  await carol.page.click("#settings-save");
  await until(carol, "saved", () => document.getElementById("notice")?.textContent.includes("Settings saved"));
  const settings = await carol.page.evaluate(async () => {
    const t = JSON.parse(localStorage.getItem("imlog.session"));
    return (await (await fetch("/api/v1/users/me", {headers: {Authorization: `Bearer ${t.access_token}`}})).json()).settings;
  });
  assert.equal(settings.message_policy, "friends_only");
  assert.equal(settings.allow_search, false);
  await shot(carol, "11-settings");
  await axeCheck(carol, "the settings");
  await carol.page.click("#notice button");
  await openTab(carol, "chats");
  await openConversation(carol, "Weekend plans");
});

test("one goes offline and comes back: what was sent meanwhile arrives once, in order", async () => {
  const {alice, bob} = people;
  await openTab(alice, "chats");
  await openConversation(alice, "Bob");
  await openConversation(bob, "Alice");
  await bob.page.setOfflineMode(true);  // the browser fires `offline`
  await waitFor("bob's connection to drop", async () => (await text(bob.page, "#conn")) !== "Connected");
  await send(alice, "while you were away 1");
  await send(alice, "while you were away 2");
  await alice.page.waitForFunction(() => document.querySelectorAll("#messages .msg.mine[data-state=acked]").length >= 3);
  await shot(bob, "06-offline");
  await bob.page.setOfflineMode(false);
  await bob.page.waitForSelector("#conn[data-state=open]", {timeout: 20_000});
  await until(bob, "both messages", () => [...document.querySelectorAll("#messages .msg .text")].filter((e) => e.textContent.startsWith("while you were away")).length === 2, undefined, 20_000);
  const texts = await messages(bob);
  assert.deepEqual(texts.filter((t) => t.startsWith("while you were away")), ["while you were away 1", "while you were away 2"]);
  assert.equal(new Set(texts).size, texts.length, `no message twice: ${JSON.stringify(texts)}`);
});

test("the server is killed and restarted mid-conversation: the pending send lands once", async () => {
  const {alice, bob} = people;
  await server.kill();
  await waitFor("alice notices", async () => (await text(alice.page, "#conn")) !== "Connected");
  await send(alice, "sent during the restart");
  await alice.page.waitForSelector("#messages .msg.mine[data-state=pending]");
  await shot(alice, "07-pending-while-server-down");
  await server.start();
  await alice.page.waitForSelector("#conn[data-state=open]", {timeout: 30_000});
  await until(alice, "the send acknowledged", () => !document.querySelector("#messages .msg[data-state=pending]") &&
    [...document.querySelectorAll("#messages .msg.mine[data-state=acked] .text")].some((e) => e.textContent === "sent during the restart"), undefined, 30_000);
  await until(bob, "bob got it", () => [...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "sent during the restart"), undefined, 30_000);
  for (const p of [alice, bob]) {
    const texts = await messages(p);
    assert.equal(texts.filter((t) => t === "sent during the restart").length, 1, `${p.key} sees it once: ${JSON.stringify(texts)}`);
  }
  // The server's history agrees: one copy.
  const history = await alice.page.evaluate(async (conv) => {
    const t = JSON.parse(localStorage.getItem("imlog.session"));
    const r = await fetch(`/api/v1/conversations/${conv}/messages?limit=100`, {headers: {Authorization: `Bearer ${t.access_token}`}});
    return (await r.json()).messages.map((m) => m.content);
  }, `single_${Math.min(alice.id, bob.id)}_${Math.max(alice.id, bob.id)}`);
  assert.equal(history.filter((t) => t === "sent during the restart").length, 1);
});

test("recall: the sender recalls, both see it recalled", async () => {
  const {alice, bob} = people;
  await send(alice, "oops, wrong chat");
  await alice.page.waitForFunction(() => [...document.querySelectorAll("#messages .msg.mine[data-state=acked]")].some((m) => m.textContent.includes("oops, wrong chat")));
  await alice.page.evaluate(() => [...document.querySelectorAll("#messages .msg.mine")].find((m) => m.textContent.includes("oops, wrong chat")).querySelector("button.recall").click());
  await until(alice, "recalled for alice", () => !document.querySelector("#messages").textContent.includes("oops, wrong chat"));
  await until(bob, "recalled for bob", () => !document.querySelector("#messages").textContent.includes("oops, wrong chat") &&
                                               document.querySelector("#messages .msg.recalled"));
});

test("a reload keeps the session and the conversation; older messages load on scroll-back", async () => {
  const {alice, bob} = people;
  // Enough history for two pages (the app loads 50 at a time).
  const conv = `single_${Math.min(alice.id, bob.id)}_${Math.max(alice.id, bob.id)}`;
  await bob.page.evaluate(async (conv) => {
    const t = JSON.parse(localStorage.getItem("imlog.session"));
    for (let i = 1; i <= 60; ++i) {
      await fetch(`/api/v1/conversations/${conv}/messages`, {method: "POST", headers: {Authorization: `Bearer ${t.access_token}`, "Content-Type": "application/json"},
                                                             body: JSON.stringify({client_msg_id: `bulk-${i}`, content: `bulk ${i}`})});
    }
  }, conv);
  await alice.page.reload();
  await alice.page.waitForSelector("#conn[data-state=open]", {timeout: 15_000});
  // The socket and the profile load side by side after a reload: either may land first.
  await until(alice, "still signed in as Alice", () => document.getElementById("me-name")?.textContent === "Alice Liddell");
  assert.equal(await alice.page.$("#auth-username"), null, "no sign-in form after the reload");
  await openConversation(alice, "Bob");
  await until(alice, "the latest page", () => [...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "bulk 60"));
  assert.ok(!(await messages(alice)).includes("hello bob"), "the first message is on an older page");
  await alice.page.$eval("#messages", (el) => { el.scrollTop = 0; el.dispatchEvent(new Event("scroll")); });
  await until(alice, "the older page after scrolling back", () => [...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "hello bob"));
  const texts = await messages(alice);
  assert.equal(texts[0], "hello bob");
  assert.equal(new Set(texts).size, texts.length);
  // Bob's receipts survive the reload (the page keeps them; the server pushes them only).
  assert.equal(await alice.page.evaluate(() => [...document.querySelectorAll("#messages .msg.mine")]
    .find((m) => m.querySelector(".text")?.textContent === "hello bob")?.dataset.seen), "true", "still seen after the reload");
});

test("a phone's width: one pane at a time, and still accessible", async () => {
  const {carol} = people;
  await carol.page.setViewport({width: 375, height: 740});
  await until(carol, "the group still open", () => document.getElementById("chat-title")?.textContent === "Weekend plans");
  assert.equal(await carol.page.$eval("nav.side", (e) => getComputedStyle(e).display), "none", "the list hides behind the chat");
  await shot(carol, "08-phone-chat");
  await axeCheck(carol, "a conversation on a phone");
  await carol.page.click(".chat-head .back");
  await carol.page.waitForSelector("nav.side #conversations", {visible: true});
  assert.equal(await carol.page.$("#messages"), null, "the list replaces the chat");
  await shot(carol, "09-phone-list");
  await axeCheck(carol, "the conversation list on a phone");
});

/** fetch() in p's page with its access token; answers {status, body}. */
const api = (p, method, path, body) => p.page.evaluate(async (method, path, body) => {
  const t = JSON.parse(localStorage.getItem("imlog.session"));
  const r = await fetch(path, {method, headers: {Authorization: `Bearer ${t.access_token}`, "Content-Type": "application/json"},
                               body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await r.text();
  return {status: r.status, body: text ? JSON.parse(text) : null};
}, method, path, body);

test("group moderation: the owner removes (bans) a member, lists the ban, unbans, adds her back", async () => {
  const {alice, carol} = people;
  await carol.page.setViewport({width: 1100, height: 720});
  await openTab(alice, "chats");
  await openConversation(alice, "Weekend plans");
  const conv = await alice.page.$eval("#conversations .conv[aria-current=true]", (e) => e.dataset.conv);
  const gid = Number(conv.slice("group_".length));
  await alice.page.click("#group-info");
  await alice.page.waitForSelector(`#members li[data-user="${carol.id}"] button.remove`);
  await alice.page.click(`#members li[data-user="${carol.id}"] button.remove`);
  await until(alice, "carol gone from the members", (id) => !document.querySelector(`#members li[data-user="${id}"]`), carol.id);
  await alice.page.waitForSelector(`#bans li[data-user="${carol.id}"] button.unban`);
  assert.match(await text(alice.page, `#bans li[data-user="${carol.id}"]`), /Carol.*removed by you/);
  // The server agrees: banned, and adding her back is refused while the ban stands.
  await waitFor("the ban in the server's list", async () =>
    JSON.stringify((await api(alice, "GET", `/api/v1/groups/${gid}/bans`)).body.bans.map((b) => b.user_id)) === JSON.stringify([carol.id]));
  const refusedAdd = await api(alice, "POST", `/api/v1/groups/${gid}/members`, {user_id: carol.id});
  assert.equal(refusedAdd.status, 403, `a banned user cannot be added: ${JSON.stringify(refusedAdd)}`);
  assert.equal(refusedAdd.body.code, "banned");
  // Carol's side: her send to the group is refused.
  assert.equal((await api(carol, "POST", `/api/v1/conversations/${conv}/messages`, {content: "still here?"})).status, 403);
  await shot(alice, "13-group-bans");
  await axeCheck(alice, "the group's members and bans");

  await alice.page.click(`#bans li[data-user="${carol.id}"] button.unban`);
  await until(alice, "the ban lifted", (id) => !document.querySelector(`#bans li[data-user="${id}"]`), carol.id);
  await waitFor("no ban in the server's list", async () => (await api(alice, "GET", `/api/v1/groups/${gid}/bans`)).body.bans.length === 0);
  let last;
  await waitFor("carol added back", async () => (last = await api(alice, "POST", `/api/v1/groups/${gid}/members`, {user_id: carol.id})).status === 200)
    .catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(last)}`); });
  await until(alice, "carol a member again (pushed)", (id) => Boolean(document.querySelector(`#members li[data-user="${id}"]`)), carol.id);
});

test("block and unblock: the blocked list, and sends refused only while blocked", async () => {
  const {alice, carol} = people;
  const conv = `single_${Math.min(alice.id, carol.id)}_${Math.max(alice.id, carol.id)}`;
  await openTab(alice, "friends");
  assert.equal(await text(alice.page, "#blocked li"), "Nobody is blocked.");
  await alice.page.evaluate((id) => [...document.querySelectorAll(`#friends li[data-user="${id}"] button`)].find((b) => b.textContent === "Block").click(), carol.id);
  await alice.page.waitForSelector(`#blocked li[data-user="${carol.id}"] button.unblock`);
  assert.match(await text(alice.page, `#blocked li[data-user="${carol.id}"]`), /Carol/);
  await waitFor("the block in the server's list", async () =>
    JSON.stringify((await api(alice, "GET", "/api/v1/blocks")).body.blocked) === JSON.stringify([carol.id]));
  const refused = await api(carol, "POST", `/api/v1/conversations/${conv}/messages`, {content: "let me in"});
  assert.equal(refused.status, 403);
  assert.equal(refused.body.code, "blocked");
  await shot(alice, "14-blocked");
  await axeCheck(alice, "the friends panel with a blocked person");
  await alice.page.click(`#blocked li[data-user="${carol.id}"] button.unblock`);
  await until(alice, "the blocked list empty", (id) => !document.querySelector(`#blocked li[data-user="${id}"]`), carol.id);
  await waitFor("the server's block list empty", async () => ((await api(alice, "GET", "/api/v1/blocks")).body.blocked ?? []).length === 0);
  // The engine applies the unblock as an event: the next send goes through.
  await waitFor("carol's send accepted", async () => (await api(carol, "POST", `/api/v1/conversations/${conv}/messages`, {content: "thanks"})).status === 201);
});

test("mute: a conversation muted and unmuted, shown in the list, stored in the settings", async () => {
  const {bob} = people;
  await openTab(bob, "chats");
  await openConversation(bob, "Alice");
  const conv = await bob.page.$eval("#conversations .conv[aria-current=true]", (e) => e.dataset.conv);
  assert.equal(await bob.page.$eval("#mute", (e) => e.getAttribute("aria-pressed")), "false");
  await bob.page.click("#mute");
  await bob.page.waitForSelector("#mute[aria-pressed=true]");
  assert.equal(await text(bob.page, "#mute"), "Unmute");
  assert.match(await text(bob.page, `.conv[data-conv="${conv}"]`), /\(muted\)/);
  await waitFor("muted in the settings", async () =>
    JSON.stringify((await api(bob, "GET", "/api/v1/users/me")).body.settings.muted) === JSON.stringify([conv]));
  await axeCheck(bob, "a muted conversation");
  await bob.page.click("#mute");
  await bob.page.waitForSelector("#mute[aria-pressed=false]");
  assert.doesNotMatch(await text(bob.page, `.conv[data-conv="${conv}"]`), /\(muted\)/);
  await waitFor("unmuted in the settings", async () => ((await api(bob, "GET", "/api/v1/users/me")).body.settings.muted ?? []).length === 0);
});

test(`every page spoke ${protocol}: each frame received was of its form`, async () => {
  const want = protocol === "imlog.v1" ? "binary" : "text", other = want === "binary" ? "text" : "binary";
  for (const p of Object.values(people)) {
    assert.ok(p.frames[want] > 10, `${p.key}: ${JSON.stringify(p.frames)}`);
    assert.equal(p.frames[other], 0, `${p.key}: ${JSON.stringify(p.frames)}`);
  }
  const {carol} = people;
  await openTab(carol, "settings");
  assert.equal(await text(carol.page, "#protocol-now"), `In use: ${protocol}`);
  assert.equal(await carol.page.$eval("#protocol", (e) => e.value), protocol);
});

test("nothing broke the page's policy and no script error was thrown", async () => {
  for (const p of Object.values(people)) {
    assert.deepEqual(await p.page.evaluate(() => window.__violations), [], `${p.key}: CSP violations`);
    assert.deepEqual(p.errors, [], `${p.key}: uncaught errors`);
  }
});
