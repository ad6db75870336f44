// The demo page's script (web/index.html), served at /app.js so the page's Content-Security-Policy
// allows script from 'self' only, never inline.
//
// Everything users write — names, nicknames, group names, messages, error texts — reaches the page
// as text only (textContent; nothing here parses HTML, and tests/web_page_test.cpp checks that):
// a name like <img src=x onerror=...> shows as those characters and runs nothing. Keep it so:
// build elements with el() below.
"use strict";
const $ = (id) => document.getElementById(id);
let token = null, me = 0, ws = null, current = null;
const lastSeq = new Map();  // conversation id → the newest seq shown (Maps: ids are data, not keys of an object)
const pending = new Map();  // client_msg_id → content, until its ack

// An element with a class and text content; children appended after the text.
function el(tag, className, text, ...children) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  e.append(...children);
  return e;
}
const convPath = (conv) => `/api/v1/conversations/${encodeURIComponent(conv)}`;

async function api(method, path, body) {
  const r = await fetch(path, {
    method, headers: Object.assign({"Content-Type": "application/json"}, token ? {Authorization: "Bearer " + token} : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) throw new Error((data && data.message) || `${r.status} ${r.statusText}`);
  return data;
}
function note(text) { $("log").append(el("div", "sys", text)); }
function show(m) {
  if (m.conversation_id !== current) { refreshConversations(); return; }
  const last = lastSeq.get(current) || 0;
  if (last && m.seq_id <= last) return;
  lastSeq.set(current, m.seq_id);
  $("log").append(el("div", "msg" + (m.sender_id === me ? " me" : ""), `#${m.seq_id} ${m.sender_id}: ${m.content}`));
  $("log").scrollTop = 1e9;
}
function single(a, b) { return `single_${Math.min(a, b)}_${Math.max(a, b)}`; }

async function login(register) {
  const username = $("user").value, password = $("pass").value;
  try {
    if (register) await api("POST", "/api/v1/auth/register", {username, password});
    const t = await api("POST", "/api/v1/auth/login", {username, password});
    token = t.access_token; me = t.user_id;
    $("who").textContent = `signed in as ${username} (user ${me})`;
    connect(); refreshConversations();
  } catch (e) { $("who").textContent = e.message; }
}
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws?token=${encodeURIComponent(token)}`, "imlog.v1.json");
  ws.onopen = () => { note("connected"); if (current) sync(); };
  ws.onclose = (e) => { note(`disconnected (${e.code}); reconnecting`); setTimeout(connect, 2000); };
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.type === "new-message") show(f.data);
    else if (f.type === "message-ack") acked(f.data);
    else if (f.type === "sync-result") f.data.messages.forEach(show);
    else if (f.type === "error") note(`error ${f.data.code}: ${f.data.message}`);
    else if (f.type !== "pong" && f.type !== "hello") note(`${f.type} ${JSON.stringify(f.data)}`);
  };
}
function acked(ack) {
  const content = pending.get(ack.client_msg_id) || "";
  pending.delete(ack.client_msg_id);
  show(Object.assign({sender_id: me, content}, ack));
}
function sync() { ws.send(JSON.stringify({type: "sync", data: {conversation_id: current, after_seq: lastSeq.get(current) || 0}})); }
async function refreshConversations() {
  let list;
  try { list = await api("GET", "/api/v1/conversations"); } catch (e) { note(e.message); return; }
  $("convs").replaceChildren(...list.conversations.map((c) => {
    const badge = c.unread ? [el("span", "unread", String(c.unread))] : [];
    const d = el("div", "conv" + (c.conversation_id === current ? " on" : ""), c.title || c.conversation_id, ...badge);
    d.onclick = () => open(c.conversation_id);
    return d;
  }));
}
async function open(conv) {
  current = conv; $("title").textContent = conv; $("log").replaceChildren();
  $("text").disabled = $("send").disabled = false;
  lastSeq.set(conv, 0);
  try {
    const page = await api("GET", `${convPath(conv)}/messages?limit=50`);
    page.messages.forEach(show);
    const last = lastSeq.get(conv);
    if (last) await api("POST", `${convPath(conv)}/read`, {seq_id: last});
  } catch (e) { note(e.message); }
  refreshConversations();
}
function send() {
  const content = $("text").value; if (!content || !ws) return;
  const id = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
  pending.set(id, content);
  ws.send(JSON.stringify({type: "send-message", data: {conversation_id: current, client_msg_id: id, content}}));
  $("text").value = "";
}
$("register").onclick = () => login(true);
$("login").onclick = () => login(false);
$("open").onclick = () => { const t = $("target").value.trim(); open(/^\d+$/.test(t) ? single(me, Number(t)) : t); };
$("newgroup").onclick = async () => {
  const name = prompt("group name"); if (!name) return;
  try {
    const g = await api("POST", "/api/v1/groups", {name}); open(g.conversation_id);
  } catch (e) { note(e.message); }
};
$("send").onclick = send;
$("text").onkeydown = (e) => { if (e.key === "Enter") send(); };
