// The app's views. Each reads the ChatStore and calls its actions; `useStore` re-renders on change.
import {useEffect, useLayoutEffect, useReducer, useRef, useState} from "preact/hooks";
import type {Friend} from "@imlog/sdk";
import {kProtocolKey, type ChatStore, type UiMessage} from "./store.js";
import {dayKey, dayLabel, initials, lastSeen, preview, systemText, time} from "./format.js";

type P = {store: ChatStore};
const kRecallWindowMs = 2 * 60_000;

function useStore(store: ChatStore) {
  const [, bump] = useReducer((n: number, _: void) => n + 1, 0);
  useEffect(() => store.subscribe(() => bump()), [store]);
}

export function App({store}: P) {
  useStore(store);
  if (!store.signedIn) return <AuthScreen store={store} />;
  return (
    <div class={"shell" + (store.current && store.view === "chats" ? " has-chat" : "")}>
      <Sidebar store={store} />
      <main class="pane" id="pane">
        {store.view === "chats" && (store.current ? <ChatPane store={store} id={store.current} key={store.current} /> : <Empty />)}
        {store.view === "friends" && <FriendsPanel store={store} />}
        {store.view === "new-group" && <NewGroupPanel store={store} />}
        {store.view === "settings" && <SettingsPanel store={store} />}
        {store.view === "group-info" && store.current && <GroupPanel store={store} id={store.current} />}
      </main>
      <Notice store={store} />
    </div>
  );
}

function Notice({store}: P) {
  return (
    <p class={"notice" + (store.notice ? " shown" : "")} role="alert" id="notice">
      {store.notice}
      {store.notice && <button type="button" class="link" onClick={() => store.say("")}>Dismiss</button>}
    </p>
  );
}

// ---- sign in / sign up -------------------------------------------------------------------------

function AuthScreen({store}: P) {
  const [mode, setMode] = useState<"in" | "up">("in");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(store.notice);
  async function submit(e: Event) {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    setBusy(true);
    setError("");
    try {
      await store.signIn(String(f.get("username")), String(f.get("password")),
                         mode === "up" ? {nickname: String(f.get("nickname") ?? "")} : undefined);
    } catch (x) {
      setError((x as Error).message);
      setBusy(false);
    }
  }
  return (
    <main class="auth">
      <h1>imlog</h1>
      <form id="auth-form" onSubmit={submit} aria-labelledby="auth-heading">
        <h2 id="auth-heading">{mode === "in" ? "Sign in" : "Create an account"}</h2>
        <label for="auth-username">Username</label>
        <input id="auth-username" name="username" autocomplete="username" required minLength={3} maxLength={32} />
        {mode === "up" && <>
          <label for="auth-nickname">Display name</label>
          <input id="auth-nickname" name="nickname" autocomplete="nickname" />
        </>}
        <label for="auth-password">Password</label>
        <input id="auth-password" name="password" type="password" required
               minLength={mode === "up" ? 8 : undefined} autocomplete={mode === "in" ? "current-password" : "new-password"} />
        <button id="auth-submit" type="submit" class="primary" disabled={busy}>{mode === "in" ? "Sign in" : "Create account"}</button>
        <p class="error" role="alert" id="auth-error">{error}</p>
        <button id="auth-switch" type="button" class="link" onClick={() => { setMode(mode === "in" ? "up" : "in"); setError(""); }}>
          {mode === "in" ? "No account? Create one" : "Have an account? Sign in"}
        </button>
      </form>
    </main>
  );
}

// ---- the side bar ------------------------------------------------------------------------------

function Avatar({store, id, name, size = "m"}: {store: ChatStore; id?: number; name: string; size?: "s" | "m"}) {
  const url = id ? store.users.get(id)?.avatar_url : undefined;
  if (url && url.startsWith("/avatars/")) return <img class={`avatar ${size}`} src={url} alt="" />;
  return <span class={`avatar ${size} hue${(id ?? 0) % 6}`} aria-hidden="true">{initials(name)}</span>;
}

function Dot({store, id}: {store: ChatStore; id?: number}) {
  const p = id ? store.presence.get(id) : undefined;
  if (!p || p.status === "unknown") return null;
  return <span class={`dot ${p.status}`} role="img" aria-label={p.status} title={p.status} />;
}

function Sidebar({store}: P) {
  const me = store.me;
  const myName = me?.nickname || me?.username || "";
  const tabs: Array<[typeof store.view, string]> = [["chats", "Chats"], ["friends", "Friends"], ["new-group", "New group"], ["settings", "Settings"]];
  const incoming = store.friends.filter((f) => f.status === "incoming").length;
  const mine = store.presence.get(store.myId)?.status ?? me?.status ?? "online";
  return (
    <nav class="side" aria-label="Chats and people">
      <header class="me">
        <Avatar store={store} id={store.myId} name={myName || "me"} />
        <div class="who">
          <strong id="me-name">{myName}</strong>
          <ConnectionState store={store} />
        </div>
        <label class="sr-only" for="my-status">Your status</label>
        <select id="my-status" value={mine === "offline" ? "online" : mine}
                onChange={(e) => store.setStatus((e.currentTarget as HTMLSelectElement).value as "online")}>
          <option value="online">Online</option>
          <option value="away">Away</option>
          <option value="busy">Busy</option>
        </select>
        <button type="button" id="sign-out" class="link" onClick={() => store.signOut()}>Sign out</button>
      </header>
      <div class="tabs" role="toolbar" aria-label="Sections">
        {tabs.map(([v, label]) => (
          <button type="button" id={`tab-${v}`} aria-pressed={store.view === v} onClick={() => store.setView(v)}>
            {label}{v === "friends" && incoming > 0 && <span class="badge" aria-label={`${incoming} requests`}>{incoming}</span>}
          </button>
        ))}
      </div>
      <ConversationList store={store} />
    </nav>
  );
}

function ConnectionState({store}: P) {
  const text = {idle: "Offline", connecting: "Connecting…", open: "Connected", waiting: "Reconnecting…", closed: "Offline"}[store.connection];
  return <span id="conn" class={`conn ${store.connection}`} data-state={store.connection} role="status">{text}</span>;
}

function ConversationList({store}: P) {
  if (!store.conversations.length) return <p class="empty-list">No conversations yet. Find friends or create a group.</p>;
  return (
    <ul id="conversations" class="convs" aria-label="Conversations">
      {store.conversations.map((c) => {
        const title = store.title(c.conversation_id);
        const peer = c.peer_id ?? store.peerOf(c.conversation_id);
        const current = store.current === c.conversation_id;
        return (
          <li key={c.conversation_id}>
            <button type="button" class={"conv" + (current ? " on" : "")} data-conv={c.conversation_id}
                    aria-current={current ? "true" : undefined} onClick={() => store.open(c.conversation_id)}>
              <span class="avatar-wrap"><Avatar store={store} id={peer} name={title} /><Dot store={store} id={peer} /></span>
              <span class="conv-main">
                <span class="conv-title">{title}</span>
                {store.isMuted(c.conversation_id) && <span class="muted-mark" title="Muted"> (muted)</span>}
                <span class="conv-preview">{preview(c.last_message, (id) => (id === store.myId ? "You" : store.name(id)), store.myId)}</span>
              </span>
              <span class="conv-side">
                {c.last_message && <time>{time(c.updated_at)}</time>}
                {c.unread > 0 && <span class="badge" aria-label={`${c.unread} unread`}>{c.unread}</span>}
              </span>
            </button>
          </li>
        );
      })}
    </ul>
  );
}

function Empty() {
  return <div class="empty"><p>Pick a conversation, or start one from Friends.</p></div>;
}

// ---- a conversation ----------------------------------------------------------------------------

function ChatPane({store, id}: P & {id: string}) {
  const t = store.thread(id);
  const log = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const prevHeight = useRef(0);
  const prevFirst = useRef<number | undefined>(undefined);
  const title = store.title(id);
  const peer = store.peerOf(id);
  const isGroup = id.startsWith("group_");

  // Keep the view at the bottom as messages arrive; keep it still when older ones are prepended.
  useLayoutEffect(() => {
    const el = log.current;
    if (!el) return;
    const first = t.items[0]?.seq_id;
    if (prevFirst.current !== undefined && first !== undefined && first < prevFirst.current) {
      el.scrollTop += el.scrollHeight - prevHeight.current;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
    prevFirst.current = first;
    prevHeight.current = el.scrollHeight;
  });
  function onScroll() {
    const el = log.current!;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 60) void store.loadOlder(id);
  }

  const rows: preact.JSX.Element[] = [];
  const peerRead = store.peerRead.get(id) ?? 0;
  let day = "";
  for (const m of [...t.items, ...t.outgoing]) {
    const k = dayKey(m.created_at);
    if (k !== day) {
      day = k;
      rows.push(<li class="day" key={`day-${k}`}>{dayLabel(m.created_at)}</li>);
    }
    rows.push(<MessageRow store={store} m={m} group={isGroup} seen={!isGroup && m.seq_id > 0 && m.seq_id <= peerRead}
                          key={m.seq_id ? `s${m.seq_id}` : `c${m.client_msg_id}`} />);
  }
  const p = peer ? store.presence.get(peer) : undefined;
  return (
    <section class="chat" aria-labelledby="chat-title">
      <header class="chat-head">
        <button type="button" class="back" aria-label="Back to conversations" onClick={() => store.close()}>‹</button>
        <span class="avatar-wrap"><Avatar store={store} id={peer} name={title} /><Dot store={store} id={peer} /></span>
        <div>
          <h2 id="chat-title">{title}</h2>
          {p && p.status !== "unknown" && <span class="sub" id="chat-presence">{p.status === "offline" ? lastSeen(p.last_seen) : p.status}</span>}
        </div>
        {isGroup && <GroupTools store={store} id={id} />}
        <button type="button" id="mute" aria-pressed={store.isMuted(id)}
                title="Muted conversations send no push notifications"
                onClick={() => store.setMuted(id, !store.isMuted(id))}>{store.isMuted(id) ? "Unmute" : "Mute"}</button>
        {isGroup && <button type="button" id="group-info" onClick={() => store.showGroup(id)}>Members</button>}
      </header>
      <div id="messages" class="log" ref={log} onScroll={onScroll} role="log" aria-live="polite" aria-label={`Messages with ${title}`} tabIndex={0}>
        <ol class="log-list">
        {t.hasMore && (
          <li class="older">
            <button type="button" class="link" id="load-older" disabled={t.loading} onClick={() => store.loadOlder(id)}>
              {t.loading ? "Loading…" : "Load older messages"}
            </button>
          </li>
        )}
        {rows}
        </ol>
      </div>
      <Composer store={store} id={id} />
    </section>
  );
}

function MessageRow({store, m, group, seen}: {store: ChatStore; m: UiMessage; group: boolean; seen: boolean}) {
  if (m.message_type === "system") {
    const line = systemText(m.content, (id) => (id === store.myId ? "You" : store.name(id)));
    return line === null ? null : <li class="system" data-seq={m.seq_id}>{line}</li>;
  }
  const mine = m.sender_id === store.myId;
  const state = mine ? m.state : "acked";
  const canRecall = mine && state === "acked" && !m.recalled && Date.now() - m.created_at < kRecallWindowMs;
  return (
    <li class={"msg" + (mine ? " mine" : "") + (m.recalled ? " recalled" : "") + (m.erased ? " erased" : "")} data-seq={m.seq_id || undefined} data-state={state}
        data-seen={mine && seen ? "true" : undefined}>
      {group && !mine && <span class="sender">{store.name(m.sender_id)}</span>}
      <p class="text">{m.recalled ? (mine ? "You recalled a message" : "Message recalled")
        : m.erased ? "Its sender erased their account" : m.content}</p>
      <span class="meta">
        <time>{time(m.created_at)}</time>
        {mine && state === "pending" && <span class="state">Sending…</span>}
        {mine && state === "acked" && !m.recalled && (seen
          ? <span class="state seen" title="Seen">✓✓ Seen</span>
          : <span class="state" title="Sent"><span aria-hidden="true">✓</span><span class="sr-only">Sent</span></span>)}
        {mine && state === "failed" && <>
          <span class="state failed">Not sent: {m.error}</span>
          <button type="button" class="link retry" onClick={() => store.send(m.conversation_id, m.content, m)}>Retry</button>
        </>}
        {canRecall && <button type="button" class="link recall" onClick={() => store.recall(m)}>Recall</button>}
      </span>
    </li>
  );
}

function Composer({store, id}: P & {id: string}) {
  const [text, setText] = useState("");
  const input = useRef<HTMLTextAreaElement>(null);
  useEffect(() => { input.current?.focus(); }, [id]);
  function send(e?: Event) {
    e?.preventDefault();
    const content = text.trim();
    if (!content) return;
    store.send(id, content);
    setText("");
  }
  return (
    <form id="composer" class="composer" onSubmit={send}>
      <label for="composer-input" class="sr-only">Message</label>
      <textarea id="composer-input" ref={input} rows={1} value={text} placeholder="Write a message"
                onInput={(e) => setText((e.currentTarget as HTMLTextAreaElement).value)}
                onKeyDown={(e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e); }} />
      <button id="composer-send" type="submit" class="primary" disabled={!text.trim()}>Send</button>
    </form>
  );
}

function GroupTools({store, id}: P & {id: string}) {
  const friends = store.friends.filter((f) => f.status === "friends");
  const [pick, setPick] = useState("");
  if (!friends.length) return null;
  return (
    <form class="group-tools" onSubmit={(e) => { e.preventDefault(); if (pick) void store.addMember(id, Number(pick)); setPick(""); }}>
      <label for="add-member">Add member</label>
      <select id="add-member" value={pick} onChange={(e) => setPick((e.currentTarget as HTMLSelectElement).value)}>
        <option value="">Choose a friend</option>
        {friends.map((f) => <option value={String(f.user_id)}>{store.name(f.user_id)}</option>)}
      </select>
      <button type="submit" disabled={!pick}>Add</button>
    </form>
  );
}

// ---- friends -----------------------------------------------------------------------------------

function FriendsPanel({store}: P) {
  const [q, setQ] = useState("");
  const [results, setResults] = useState<Array<{user_id?: number; username?: string; nickname?: string}> | null>(null);
  async function search(e: Event) {
    e.preventDefault();
    if (!q.trim()) return;
    try {
      const r = await store.rest.searchUsers(q.trim());
      for (const u of r.users) store.remember(u);
      setResults(r.users.filter((u) => u.user_id !== store.myId));
    } catch (x) { store.say((x as Error).message); }
  }
  const by = (s: string) => store.friends.filter((f) => f.status === s);
  const relation = (id?: number) => store.friends.find((f) => f.user_id === id)?.status;
  return (
    <section class="panel" aria-labelledby="friends-title">
      <button type="button" class="back" aria-label="Back to conversations" onClick={() => store.setView("chats")}>‹</button>
      <h2 id="friends-title">Friends</h2>
      <form class="row" id="friend-search" onSubmit={search} role="search">
        <label for="friend-q">Find people</label>
        <input id="friend-q" type="search" value={q} placeholder="username or name" onInput={(e) => setQ((e.currentTarget as HTMLInputElement).value)} />
        <button type="submit">Search</button>
      </form>
      {results && (
        <ul class="people" id="search-results" aria-label="Search results">
          {results.length === 0 && <li>Nobody found.</li>}
          {results.map((u) => (
            <li data-user={u.user_id}>
              <Avatar store={store} id={u.user_id} name={u.nickname || u.username || "?"} size="s" />
              <span class="name">{u.nickname || u.username}</span> <span class="sub">@{u.username}</span>
              {relation(u.user_id) === undefined
                ? <button type="button" onClick={() => store.friendAction("request", u.user_id!)}>Add friend</button>
                : <span class="sub">{relation(u.user_id) === "outgoing" ? "Requested" : relation(u.user_id) === "incoming" ? "Wants to be friends" : "Friend"}</span>}
            </li>
          ))}
        </ul>
      )}
      {by("incoming").length > 0 && <>
        <h3>Requests</h3>
        <ul class="people" id="incoming">
          {by("incoming").map((f) => (
            <li data-user={f.user_id}>
              <Avatar store={store} id={f.user_id} name={store.name(f.user_id)} size="s" />
              <span class="name">{store.name(f.user_id)}</span>
              {f.note && <span class="sub">“{f.note}”</span>}
              <button type="button" class="primary" onClick={() => store.friendAction("accept", f.user_id!)}>Accept</button>
              <button type="button" onClick={() => store.friendAction("reject", f.user_id!)}>Reject</button>
            </li>
          ))}
        </ul>
      </>}
      {by("outgoing").length > 0 && <>
        <h3>Sent requests</h3>
        <ul class="people" id="outgoing">
          {by("outgoing").map((f) => <li data-user={f.user_id}><span class="name">{store.name(f.user_id)}</span> <span class="sub">waiting</span></li>)}
        </ul>
      </>}
      <h3>Your friends</h3>
      {by("friends").length === 0 && <p>No friends yet.</p>}
      <div id="friends">
        {friendGroups(by("friends")).map(([group, list]) => (
          <section class="friend-group" data-group={group} aria-label={group ? `Friend group ${group}` : "Not in a group"}>
            <h4>{group || "Not in a group"}</h4>
            <ul class="people">
              {list.map((f) => <FriendRow store={store} f={f} groups={[...new Set(by("friends").map((x) => x.group_name).filter(Boolean))] as string[]} />)}
            </ul>
          </section>
        ))}
      </div>
      <h3>Blocked</h3>
      <ul class="people" id="blocked" aria-label="Blocked people">
        {store.blocked.length === 0 && <li>Nobody is blocked.</li>}
        {store.blocked.map((id) => (
          <li data-user={id}>
            <Avatar store={store} id={id} name={store.name(id)} size="s" />
            <span class="name">{store.name(id)}</span>
            <button type="button" class="unblock" onClick={() => store.unblock(id)}>Unblock</button>
          </li>
        ))}
      </ul>
    </section>
  );
}

/** Friends by friend group, named groups first (by name), then those in none. */
function friendGroups(friends: Friend[]): Array<[string, Friend[]]> {
  const by = new Map<string, Friend[]>();
  for (const f of friends) {
    const g = f.group_name ?? "";
    if (!by.has(g)) by.set(g, []);
    by.get(g)!.push(f);
  }
  return [...by.entries()].sort(([a], [b]) => (a === "" ? 1 : b === "" ? -1 : a.localeCompare(b)));
}

function FriendRow({store, f, groups}: {store: ChatStore; f: Friend; groups: string[]}) {
  const [editing, setEditing] = useState(false);
  const [group, setGroup] = useState(f.group_name ?? "");
  const p = store.presence.get(f.user_id!);
  const inputId = `friend-group-${f.user_id}`;
  return (
    <li data-user={f.user_id}>
      <span class="avatar-wrap"><Avatar store={store} id={f.user_id} name={store.name(f.user_id)} size="s" /><Dot store={store} id={f.user_id} /></span>
      <span class="name">{store.name(f.user_id)}</span>
      <span class="sub">{p ? (p.status === "offline" ? lastSeen(p.last_seen) : p.status) : ""}</span>
      <button type="button" class="primary" onClick={() => store.open(store.singleWith(f.user_id!))}>Message</button>
      <button type="button" class="set-group" aria-expanded={editing} onClick={() => setEditing(!editing)}>Group</button>
      <button type="button" onClick={() => store.friendAction("remove", f.user_id!)}>Remove</button>
      <button type="button" onClick={() => store.friendAction("block", f.user_id!)}>Block</button>
      {editing && (
        <form class="row friend-group-form" onSubmit={(e) => { e.preventDefault(); setEditing(false); void store.setFriendGroup(f.user_id!, group.trim()); }}>
          <label for={inputId}>Friend group for {store.name(f.user_id)}</label>
          <input id={inputId} list="friend-group-names" value={group} maxLength={64} placeholder="e.g. Family"
                 onInput={(e) => setGroup((e.currentTarget as HTMLInputElement).value)} />
          <datalist id="friend-group-names">{groups.map((g) => <option value={g} />)}</datalist>
          <button type="submit">Save</button>
        </form>
      )}
    </li>
  );
}

// ---- new group ---------------------------------------------------------------------------------

function NewGroupPanel({store}: P) {
  const [name, setName] = useState("");
  const [members, setMembers] = useState<Set<number>>(new Set());
  const friends = store.friends.filter((f) => f.status === "friends");
  function toggle(id: number) {
    const next = new Set(members);
    if (next.has(id)) next.delete(id); else next.add(id);
    setMembers(next);
  }
  return (
    <section class="panel" aria-labelledby="group-title">
      <button type="button" class="back" aria-label="Back to conversations" onClick={() => store.setView("chats")}>‹</button>
      <h2 id="group-title">New group</h2>
      <form id="new-group" onSubmit={(e) => { e.preventDefault(); if (name.trim()) void store.createGroup(name.trim(), [...members]); }}>
        <label for="group-name">Group name</label>
        <input id="group-name" required value={name} onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)} />
        <fieldset>
          <legend>Members</legend>
          {friends.length === 0 && <p>Add friends first to invite them; you can add members later.</p>}
          {friends.map((f) => (
            <label class="check"><input type="checkbox" value={String(f.user_id)} checked={members.has(f.user_id!)} onChange={() => toggle(f.user_id!)} /> {store.name(f.user_id)}</label>
          ))}
        </fieldset>
        <button type="submit" class="primary" id="create-group">Create group</button>
      </form>
    </section>
  );
}

// ---- settings ----------------------------------------------------------------------------------

function SettingsPanel({store}: P) {
  const me = store.me;
  const [nickname, setNickname] = useState(me?.nickname ?? "");
  const [signature, setSignature] = useState(me?.signature ?? "");
  return (
    <section class="panel" aria-labelledby="settings-title">
      <button type="button" class="back" aria-label="Back to conversations" onClick={() => store.setView("chats")}>‹</button>
      <h2 id="settings-title">Profile</h2>
      <form id="profile" onSubmit={(e) => { e.preventDefault(); void store.saveProfile(nickname, signature); }}>
        <label for="profile-nickname">Display name</label>
        <input id="profile-nickname" value={nickname} onInput={(e) => setNickname((e.currentTarget as HTMLInputElement).value)} />
        <label for="profile-signature">About you</label>
        <input id="profile-signature" value={signature} onInput={(e) => setSignature((e.currentTarget as HTMLInputElement).value)} />
        <button type="submit" class="primary">Save</button>
      </form>
      <p class="sub">Signed in as @{me?.username} (user {store.myId}).</p>
      <h3>Picture</h3>
      <form id="avatar-form" onSubmit={(e) => e.preventDefault()}>
        <label for="avatar-file">Upload a PNG, JPEG, GIF or WebP (at most 2 MiB)</label>
        <input id="avatar-file" type="file" accept="image/png,image/jpeg,image/gif,image/webp"
               onChange={(e) => { const f = (e.currentTarget as HTMLInputElement).files?.[0]; if (f) void store.uploadAvatar(f); }} />
      </form>
      <PrivacyForm store={store} />
      <ConnectionForm store={store} />
    </section>
  );
}

const hhmm = (minute: number | undefined) =>
  minute === undefined || minute < 0 ? "" : `${String(Math.floor(minute / 60)).padStart(2, "0")}:${String(minute % 60).padStart(2, "0")}`;
const minuteOf = (v: string) => { const m = /^(\d\d):(\d\d)$/.exec(v); return m ? Number(m[1]) * 60 + Number(m[2]) : -1; };

function PrivacyForm({store}: P) {
  const st = store.me?.settings ?? {};
  const [allowSearch, setAllowSearch] = useState(st.allow_search ?? true);
  const [policy, setPolicy] = useState(st.message_policy ?? "everyone");
  const [push, setPush] = useState(st.push_enabled ?? true);
  const [quietStart, setQuietStart] = useState(hhmm(st.quiet_start_minute));
  const [quietEnd, setQuietEnd] = useState(hhmm(st.quiet_end_minute));
  function save(e: Event) {
    e.preventDefault();
    const quiet = quietStart && quietEnd ? {quiet_start_minute: minuteOf(quietStart), quiet_end_minute: minuteOf(quietEnd)}
                                         : {quiet_start_minute: -1};
    void store.saveSettings({allow_search: allowSearch, message_policy: policy as "everyone", push_enabled: push, ...quiet});
  }
  return (
    <>
      <h3>Privacy and notifications</h3>
      <form id="settings-form" onSubmit={save}>
        <label class="check"><input type="checkbox" id="allow-search" checked={allowSearch} onChange={(e) => setAllowSearch((e.currentTarget as HTMLInputElement).checked)} /> Others can find me by name</label>
        <label for="message-policy">Who may message me</label>
        <select id="message-policy" value={policy} onChange={(e) => setPolicy((e.currentTarget as HTMLSelectElement).value as "everyone")}>
          <option value="everyone">Everyone</option>
          <option value="friends_only">Friends only</option>
        </select>
        <label class="check"><input type="checkbox" id="push-enabled" checked={push} onChange={(e) => setPush((e.currentTarget as HTMLInputElement).checked)} /> Push notifications</label>
        <fieldset>
          <legend>Quiet hours (no pushes)</legend>
          <label for="quiet-start">From</label>
          <input id="quiet-start" type="time" value={quietStart} onInput={(e) => setQuietStart((e.currentTarget as HTMLInputElement).value)} />
          <label for="quiet-end">To</label>
          <input id="quiet-end" type="time" value={quietEnd} onInput={(e) => setQuietEnd((e.currentTarget as HTMLInputElement).value)} />
        </fieldset>
        <button type="submit" class="primary" id="settings-save">Save settings</button>
      </form>
    </>
  );
}

// ---- a group's members and settings -----------------------------------------------------------

function GroupPanel({store, id}: P & {id: string}) {
  const info = store.groupInfo;
  const gid = Number(id.slice("group_".length));
  const myRole = info?.members.find((m) => m.user_id === store.myId)?.role;
  const manager = myRole === "owner" || myRole === "admin";
  return (
    <section class="panel" aria-labelledby="gp-title">
      <button type="button" class="back" aria-label="Back to the conversation" onClick={() => store.setView("chats")}>‹</button>
      <h2 id="gp-title">{info ? info.group.name : store.title(id)}</h2>
      <button type="button" class="link" onClick={() => store.setView("chats")}>Back to the conversation</button>
      {!info && <p>Loading…</p>}
      {info && <>
        {info.group.description && <p>{info.group.description}</p>}
        <p class="sub">{info.members.length} members · {info.group.join_policy === "public" ? "anyone may join" : "members are added by the owner or an admin"}</p>
        {manager && (
          <label class="check">
            <input type="checkbox" id="group-public" checked={info.group.join_policy === "public"}
                   onChange={(e) => {
                     const join_policy = (e.currentTarget as HTMLInputElement).checked ? "public" : "private";
                     void store.groupAction(() => store.rest.changeGroupSettings(gid, {join_policy}), (g) => { g.group.join_policy = join_policy; });
                   }} />
            {" "}Public: anyone may join
          </label>
        )}
        <h3>Members</h3>
        <ul class="people" id="members">
          {info.members.map((m) => (
            <li data-user={m.user_id}>
              <span class="avatar-wrap"><Avatar store={store} id={m.user_id} name={store.name(m.user_id)} size="s" /><Dot store={store} id={m.user_id} /></span>
              <span class="name">{m.user_id === store.myId ? "You" : store.name(m.user_id)}</span>
              <span class="sub role">{m.role}</span>
              {myRole === "owner" && m.user_id !== store.myId && (
                <button type="button" onClick={() => {
                  const role = m.role === "admin" ? "member" : "admin";
                  void store.groupAction(() => store.rest.changeRole(gid, m.user_id!, role), () => { m.role = role; });
                }}>
                  {m.role === "admin" ? "Make member" : "Make admin"}
                </button>
              )}
              {manager && m.user_id !== store.myId && m.role !== "owner" && (myRole === "owner" || m.role !== "admin") && (
                <button type="button" class="remove" onClick={() => store.groupAction(() => store.rest.removeMember(gid, m.user_id!),
                                                               (g) => {
                                                                 g.members = g.members.filter((x) => x.user_id !== m.user_id);
                                                                 if (!g.bans.some((b) => b.user_id === m.user_id)) {
                                                                   g.bans.push({user_id: m.user_id, banned_by: store.myId, banned_at: Date.now()});
                                                                 }
                                                               })}>Remove and ban</button>
              )}
            </li>
          ))}
        </ul>
        {manager && <>
          <h3>Banned</h3>
          <p class="sub">Removing a member bans them: they cannot join or be added again until unbanned.</p>
          <ul class="people" id="bans" aria-label="Banned people">
            {info.bans.length === 0 && <li>Nobody is banned.</li>}
            {info.bans.map((b) => (
              <li data-user={b.user_id}>
                <span class="name">{store.name(b.user_id)}</span>
                <span class="sub">removed by {b.banned_by === store.myId ? "you" : store.name(b.banned_by)}</span>
                <button type="button" class="unban" onClick={() => store.groupAction(() => store.rest.unban(gid, b.user_id!),
                                                                       (g) => { g.bans = g.bans.filter((x) => x.user_id !== b.user_id); })}>Unban</button>
              </li>
            ))}
          </ul>
        </>}
        {myRole !== "owner" && (
          <button type="button" id="leave-group" onClick={() => store.leaveGroup(id)}>Leave group</button>
        )}
      </>}
    </section>
  );
}

// ---- the WebSocket form ------------------------------------------------------------------------

function ConnectionForm({store}: P) {
  const [choice, setChoice] = useState(localStorage.getItem(kProtocolKey) ?? "imlog.v1.json");
  return (
    <>
      <h3>Connection</h3>
      <form id="protocol-form" onSubmit={(e) => { e.preventDefault(); localStorage.setItem(kProtocolKey, choice); location.reload(); }}>
        <label for="protocol">Message format on the live connection</label>
        <select id="protocol" value={choice} onChange={(e) => setChoice((e.currentTarget as HTMLSelectElement).value)}>
          <option value="imlog.v1.json">Text (JSON, imlog.v1.json)</option>
          <option value="imlog.v1">Binary (FlatBuffers, imlog.v1)</option>
        </select>
        <p class="sub" id="protocol-now">In use: {store.realtime.protocol}</p>
        <button type="submit">Apply and reload</button>
      </form>
    </>
  );
}
