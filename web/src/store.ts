// The app's state and everything it does with the server, on @imlog/sdk. Views read it and call
// its actions; it tells them to re-render through `subscribe`. One instance per page.
//
// Message identity: within a conversation a seq_id names one message (or one system row), so the
// open conversation's messages are kept by seq; a send not yet acknowledged has no seq and is
// kept by its client_msg_id until the ack gives it one.

import {binaryCodec, createClient, ImlogError, jsonCodec, WebStorageTokenStore, type Ban, type Codec, type Conversation,
        type ConnectionState, type Friend, type Group, type Me, type Member, type Message, type RestClient,
        type RealtimeClient, type User} from "@imlog/sdk";

export type SendState = "pending" | "acked" | "failed";
export interface UiMessage extends Message {
  state: SendState;
  error?: string;
}
export interface Thread {
  items: UiMessage[];    // acked or received, ascending seq
  outgoing: UiMessage[]; // this device's sends without a seq yet (pending or failed), in order
  hasMore: boolean;      // older messages exist
  loading: boolean;
  loaded: boolean;
}
export interface PresenceInfo { status: string; last_seen: number }
export type View = "chats" | "friends" | "new-group" | "settings" | "group-info";
export interface GroupInfo { group: Group; members: Member[]; bans: Ban[] }

const kPage = 50;

/** Where the page keeps the WebSocket form it asks for: `imlog.v1` (binary) or `imlog.v1.json`. */
export const kProtocolKey = "imlog.protocol";
/** The codecs to offer: binary first when chosen (falling back to JSON), else JSON alone. */
export function codecsFor(choice: string | null): Codec[] {
  return choice === binaryCodec.subprotocol ? [binaryCodec, jsonCodec] : [jsonCodec];
}

export class ChatStore {
  readonly rest: RestClient;
  readonly realtime: RealtimeClient;
  me: Me | null = null;
  signedIn: boolean;
  conversations: Conversation[] = [];
  threads = new Map<string, Thread>();
  users = new Map<number, User>();
  presence = new Map<number, PresenceInfo>();
  friends: Friend[] = [];
  /** Users this user blocked (GET /blocks, then the user-blocked / user-unblocked pushes). */
  blocked: number[] = [];
  /**
   * One-to-one conversation → the highest seq the other participant has read (their read-marked
   * pushes). The server pushes receipts but keeps none to ask for, so this page keeps what it saw
   * in `storage` (per signed-in user): a reload still shows "Seen". A read marker only moves
   * forward, so a kept value is never wrong, at most behind.
   */
  peerRead = new Map<string, number>();
  private readonly storage: Storage;
  current: string | null = null;
  view: View = "chats";
  connection: ConnectionState = "idle";
  notice = "";
  private listeners = new Set<() => void>();
  private wantedUsers = new Set<number>();
  private readTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(storage: Storage = localStorage) {
    this.storage = storage;
    const {rest, realtime} = createClient({store: new WebStorageTokenStore(storage), codecs: codecsFor(storage.getItem(kProtocolKey))});
    this.rest = rest;
    this.realtime = realtime;
    this.signedIn = rest.session.tokens !== null;
    rest.session.onSignedOut = (why) => this.signedOut(why);
    realtime.on("state", (s) => { this.connection = s; this.changed(); });
    realtime.on("message", (m) => this.onMessage(m));
    realtime.on("send-acked", (a) => this.onAcked(a.conversation_id, a.client_msg_id, a.message_id, a.seq_id));
    realtime.on("send-failed", (f) => this.onFailed(f.conversation_id, f.client_msg_id, f.error));
    realtime.on("message-recalled", (r) => this.onRecalled(r.conversation_id, r.message_id));
    realtime.on("messages-expired", (x) => this.onExpired(x.conversation_id, x.through_seq));
    realtime.on("account-erased", () => rest.session.end("this account was erased"));
    // Our own marker (another device of ours), or in a one-to-one chat the peer's: a read receipt.
    realtime.on("read-marked", (r) => {
      if (r.user_id === this.myId) this.setRead(r.conversation_id, r.seq_id);
      else if (r.seq_id > (this.peerRead.get(r.conversation_id) ?? 0)) {
        this.peerRead.set(r.conversation_id, r.seq_id);
        this.keepReceipts();
        this.changed();
      }
    });
    realtime.on("user-blocked", (e) => { if (!this.blocked.includes(e.user_id)) this.blocked = [...this.blocked, e.user_id]; this.want(e.user_id); this.changed(); });
    realtime.on("user-unblocked", (e) => { this.blocked = this.blocked.filter((id) => id !== e.user_id); this.changed(); });
    realtime.on("friend-group-set", (e) => {
      for (const f of this.friends) if (f.user_id === e.friend_id) f.group_name = e.group_name;
      this.changed();
    });
    realtime.on("settings-updated", () => void this.loadMe());
    realtime.on("presence", (p) => { this.presence.set(p.user_id, {status: p.status, last_seen: p.last_seen}); this.changed(); });
    // Friendship pushes are applied as they come: the friends list (a read model) may not have
    // caught up with the event yet, so reloading it here could show the state before it.
    realtime.on("friend-request", (e) => {
      if (e.to === this.myId) this.setFriend(e.from, "incoming", e.note);
      else this.setFriend(e.to, "outgoing");
    });
    realtime.on("friend-accepted", (e) => this.setFriend(e.by === this.myId ? e.requester : e.by, "friends"));
    realtime.on("friend-rejected", (e) => this.setFriend(e.by === this.myId ? e.requester : e.by, null));
    realtime.on("friend-removed", (e) => this.setFriend(e.by === this.myId ? e.other : e.by, null));
    realtime.on("group-created", (e) => {
      const c = this.conversation(e.conversation_id) ?? this.provisional(e.conversation_id, e.created_at, e.name);
      c.title = e.name;
      c.last_seq = Math.max(c.last_seq, e.seq_id);
      c.read_seq = Math.max(c.read_seq, e.seq_id);
      this.changed();
      void this.loadConversations();
    });
    realtime.on("member-joined", (e) => this.onGroupEvent(e.conversation_id, e.seq_id, e.created_at, {event: "member_joined", user_id: e.user_id, invited_by: e.invited_by}));
    realtime.on("member-left", (e) => this.onGroupEvent(e.conversation_id, e.seq_id, e.created_at, {event: "member_left", user_id: e.user_id}));
    realtime.on("member-removed", (e) => this.onGroupEvent(e.conversation_id, e.seq_id, e.created_at, {event: "member_removed", user_id: e.user_id, by: e.removed_by}));
    realtime.on("role-changed", (e) => this.onGroupEvent(e.conversation_id, e.seq_id, e.created_at, {event: "role_changed", user_id: e.user_id, role: e.role, by: e.changed_by}));
    realtime.on("role-changed", (e) => this.onGroupPush(e.conversation_id, (g) => {
      for (const m of g.members) if (m.user_id === e.user_id) m.role = e.role;
    }));
    realtime.on("member-joined", (e) => this.onGroupPush(e.conversation_id, (g) => {
      if (!g.members.some((m) => m.user_id === e.user_id)) g.members.push({user_id: e.user_id, role: "member", joined_at: e.created_at});
    }));
    for (const t of ["member-left", "member-removed"] as const) {
      realtime.on(t, (e) => this.onGroupPush(e.conversation_id, (g) => { g.members = g.members.filter((m) => m.user_id !== e.user_id); }));
    }
    realtime.on("member-removed", (e) => this.onGroupPush(e.conversation_id, (g) => {
      if (e.banned && !g.bans.some((b) => b.user_id === e.user_id)) g.bans.push({user_id: e.user_id, banned_by: e.removed_by, banned_at: e.created_at});
    }));
    realtime.on("member-unbanned", (e) => this.onGroupPush(e.conversation_id, (g) => { g.bans = g.bans.filter((b) => b.user_id !== e.user_id); }));
    realtime.on("group-settings-changed", (e) => this.onGroupPush(e.conversation_id, (g) => {
      if (e.join_policy) g.group.join_policy = e.join_policy;
      if (e.history) g.group.history = e.history;
    }));
    realtime.on("profile-updated", () => void this.loadMe());
    realtime.on("hello", () => { void this.loadConversations(); void this.loadFriends(); });
    // The browser knows before TCP does: drop on `offline` (pushes would be lost silently), and
    // reconnect at once on `online` rather than after the back-off.
    addEventListener("offline", () => this.realtime.drop());
    addEventListener("online", () => this.realtime.reconnectNow());
    if (this.signedIn) void this.boot();
  }

  // ---- plumbing ------------------------------------------------------------------------------
  subscribe(fn: () => void): () => void { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  private changed() { for (const fn of this.listeners) fn(); }
  say(text: string) { this.notice = text; this.changed(); }
  private fail(e: unknown) { this.say(e instanceof Error ? e.message : String(e)); }
  get myId(): number { return this.rest.session.userId ?? 0; }

  // ---- account -------------------------------------------------------------------------------
  async signIn(username: string, password: string, register?: {nickname: string}) {
    if (register) await this.rest.register({username, password, nickname: register.nickname || undefined});
    await this.rest.login(username, password);
    this.signedIn = true;
    this.notice = "";
    await this.boot();
  }
  async signOut() {
    this.realtime.close();
    try { await this.rest.logout(); } catch { /* the pair is forgotten anyway */ }
  }
  /** The user whose receipts are kept (set at boot: at sign-out the session no longer names them). */
  private receiptsUser = 0;
  private get receiptsKey() { return `imlog.receipts.${this.receiptsUser}`; }
  private keepReceipts() {
    try { this.storage.setItem(this.receiptsKey, JSON.stringify([...this.peerRead])); } catch { /* full or unavailable: receipts stay in memory */ }
  }
  private loadReceipts() {
    this.receiptsUser = this.myId;
    try {
      const kept = JSON.parse(this.storage.getItem(this.receiptsKey) ?? "[]") as Array<[string, number]>;
      for (const [conv, seq] of kept) {
        if (typeof conv === "string" && typeof seq === "number" && seq > (this.peerRead.get(conv) ?? 0)) this.peerRead.set(conv, seq);
      }
    } catch { /* nothing usable kept */ }
  }
  private signedOut(why: string) {
    this.realtime.close();
    // The receipts kept are this user's: another user signing in on this browser must not see them.
    try { this.storage.removeItem(this.receiptsKey); } catch { /* unavailable */ }
    this.peerRead.clear();
    this.signedIn = false;
    this.me = null;
    this.conversations = [];
    this.threads.clear();
    this.current = null;
    this.notice = why === "logged out" ? "" : `Signed out: ${why}`;
    this.changed();
  }
  private async boot() {
    this.loadReceipts();
    this.realtime.start();
    this.changed();
    await Promise.all([this.loadMe(), this.loadConversations(), this.loadFriends(), this.loadBlocks()]);
  }
  /** What the profile must show once the read model has this device's latest acked write of it. */
  private meMustShow: ((me: Me) => boolean) | null = null;
  async loadMe() {
    try {
      // The profile is a read model that trails the log by moments: a read that does not show
      // this device's latest acked write yet (one a settings-updated push raced) is read again
      // shortly instead of shown, for up to about 5 s.
      for (let attempt = 0; ; attempt++) {
        const me = await this.rest.me();
        const want = this.meMustShow;
        if (want && !want(me) && attempt < 12) {
          await new Promise((r) => setTimeout(r, 100 * Math.min(attempt + 1, 5)));
          continue;
        }
        if (want && want === this.meMustShow) this.meMustShow = null;
        this.me = me;
        this.remember(me);
        this.changed();
        return;
      }
    } catch (e) { this.fail(e); }
  }
  /** After an acked write of the profile: reads it back once the read model shows `check`. */
  private async loadMeShowing(check: (me: Me) => boolean) {
    this.meMustShow = check;
    await this.loadMe();
  }

  // ---- people --------------------------------------------------------------------------------
  remember(u: User) { if (u.user_id) this.users.set(u.user_id, u); }
  name(id: number | undefined): string {
    if (!id) return "someone";
    const u = this.users.get(id);
    if (u) return u.nickname || u.username || `user ${id}`;
    this.want(id);
    return `user ${id}`;
  }
  private want(id: number) {
    if (this.wantedUsers.has(id)) return;
    this.wantedUsers.add(id);
    this.rest.user(id).then((u) => { this.remember(u); this.changed(); }, () => undefined);
  }
  async loadFriends() {
    try {
      this.friends = (await this.rest.friends()).friends ?? [];
      const ids = this.friends.map((f) => f.user_id!).filter(Boolean);
      for (const id of ids) this.want(id);
      if (ids.length) {
        for (const p of (await this.rest.presence(ids)).presence ?? []) this.presence.set(p.user_id, {status: p.status, last_seen: p.last_seen});
      }
      this.changed();
    } catch (e) { this.fail(e); }
  }
  /** Applies a friendship change the server confirmed (null: no relation any more). */
  private setFriend(id: number, status: "friends" | "incoming" | "outgoing" | null, note?: string) {
    this.friends = this.friends.filter((f) => f.user_id !== id);
    if (status) this.friends.push({user_id: id, status, note, since: Date.now()});
    this.want(id);
    if (status === "friends") this.fetchPresence(id, 0);
    this.changed();
  }
  /**
   * A new friend's presence. Just after the acceptance the server may not count them as a friend
   * yet (its friends list is a read model) and answers `unknown`: ask again a few times.
   */
  private fetchPresence(id: number, attempt: number) {
    this.rest.presence([id]).then((r) => {
      const p = r.presence?.[0];
      if (!p) return;
      if (p.status === "unknown" && attempt < 6) {
        setTimeout(() => this.fetchPresence(id, attempt + 1), 250 * 2 ** attempt);
        return;
      }
      this.presence.set(p.user_id, {status: p.status, last_seen: p.last_seen});
      this.changed();
    }, () => undefined);
  }
  async friendAction(action: "request" | "accept" | "reject" | "remove" | "block", id: number) {
    try {
      if (action === "request") { await this.rest.requestFriend(id); this.setFriend(id, "outgoing"); }
      else if (action === "accept") { await this.rest.acceptFriend(id); this.setFriend(id, "friends"); }
      else if (action === "reject") { await this.rest.rejectFriend(id); this.setFriend(id, null); }
      else if (action === "remove") { await this.rest.removeFriend(id); this.setFriend(id, null); }
      else {
        await this.rest.block(id);
        if (!this.blocked.includes(id)) this.blocked = [...this.blocked, id];
        this.say(`${this.name(id)} is blocked`);
      }
    } catch (e) { this.fail(e); }
  }
  async loadBlocks() {
    try {
      this.blocked = (await this.rest.blocks()).blocked ?? [];
      for (const id of this.blocked) this.want(id);
      this.changed();
    } catch (e) { this.fail(e); }
  }
  async unblock(id: number) {
    try {
      await this.rest.unblock(id);
      this.blocked = this.blocked.filter((x) => x !== id);
      this.say(`${this.name(id)} is unblocked`);
    } catch (e) { this.fail(e); }
  }
  /** Files a friend under a friend group ("" takes them out of any). */
  async setFriendGroup(id: number, name: string) {
    try {
      await this.rest.setFriendGroup(id, name);
      for (const f of this.friends) if (f.user_id === id) f.group_name = name;
      this.changed();
    } catch (e) { this.fail(e); }
  }

  // ---- mute ----------------------------------------------------------------------------------
  isMuted(conv: string): boolean { return this.me?.settings?.muted?.includes(conv) ?? false; }
  /** Mutes or unmutes a conversation's offline pushes (the user's settings). */
  async setMuted(conv: string, muted: boolean) {
    try {
      await this.rest.updateSettings(muted ? {muted: [conv]} : {unmuted: [conv]});
      if (this.me) {
        const st = (this.me.settings ??= {});
        st.muted = muted ? [...new Set([...(st.muted ?? []), conv])] : (st.muted ?? []).filter((c) => c !== conv);
      }
      // A settings-updated push may reload the profile before the read model has this write.
      this.meMustShow = (me) => (me.settings?.muted?.includes(conv) ?? false) === muted;
      this.changed();
    } catch (e) { this.fail(e); }
  }

  // ---- conversations -------------------------------------------------------------------------
  async loadConversations() {
    try {
      const fresh = (await this.rest.conversations()).conversations;
      // The list is a read model that may lag a push by a moment: keep rows a push just made, and
      // a row a push took further than the list has it (its last message, its unread count).
      const recent = Date.now() - 60_000;
      const local = new Map(this.conversations.map((c) => [c.conversation_id, c]));
      const merged = fresh.map((f) => {
        const mine = local.get(f.conversation_id);
        return mine && mine.last_seq > f.last_seq ? mine : f;
      });
      const kept = this.conversations.filter((c) => c.updated_at > recent && !fresh.some((f) => f.conversation_id === c.conversation_id));
      this.conversations = [...kept, ...merged].sort((a, b) => b.updated_at - a.updated_at);
      for (const c of this.conversations) if (c.peer_id) this.want(c.peer_id);
      this.changed();
    } catch (e) { this.fail(e); }
  }
  /** A row for a conversation a push told of before the list has it. */
  private provisional(id: string, at: number, title?: string): Conversation {
    const c: Conversation = {conversation_id: id, type: id.startsWith("group_") ? "group" : id === "world" ? "world" : "single",
                             last_seq: 0, read_seq: 0, unread: 0, last_message: null, updated_at: at, title, peer_id: this.peerOf(id)};
    this.conversations.unshift(c);
    return c;
  }
  conversation(id: string): Conversation | undefined { return this.conversations.find((c) => c.conversation_id === id); }
  title(id: string): string {
    const c = this.conversation(id);
    if (c?.title) return c.title;
    if (c?.peer_id) return this.name(c.peer_id);
    if (id === "world") return "World";
    const m = /^single_(\d+)_(\d+)$/.exec(id);
    if (m) return this.name(Number(m[1]) === this.myId ? Number(m[2]) : Number(m[1]));
    return id.startsWith("group_") ? "Group" : id;
  }
  peerOf(id: string): number | undefined {
    const m = /^single_(\d+)_(\d+)$/.exec(id);
    if (!m) return undefined;
    return Number(m[1]) === this.myId ? Number(m[2]) : Number(m[1]);
  }
  singleWith(peer: number): string {
    const me = this.myId;
    return `single_${Math.min(me, peer)}_${Math.max(me, peer)}`;
  }
  setView(v: View) {
    this.view = v;
    if (v === "chats" && this.current) this.markRead();  // back on screen: what arrived meanwhile is read now
    this.changed();
  }

  async open(id: string) {
    this.current = id;
    this.view = "chats";
    this.changed();
    const t = this.thread(id);
    if (!t.loaded) await this.loadLatest(id);
    this.markRead();
  }
  close() { this.current = null; this.changed(); }
  thread(id: string): Thread {
    let t = this.threads.get(id);
    if (!t) this.threads.set(id, (t = {items: [], outgoing: [], hasMore: false, loading: false, loaded: false}));
    return t;
  }
  private async loadLatest(id: string) {
    const t = this.thread(id);
    t.loading = true;
    this.changed();
    try {
      const page = await this.rest.history(id, {limit: kPage});
      for (const m of page.messages) this.put(id, {...m, state: "acked"});
      t.hasMore = page.has_more;
      t.loaded = true;
      this.realtime.track(id, t.items.at(-1)?.seq_id ?? 0);
    } catch (e) { this.fail(e); }
    t.loading = false;
    this.changed();
  }
  /** Scroll-back: the page before the oldest message held. */
  async loadOlder(id: string) {
    const t = this.thread(id);
    if (t.loading || !t.hasMore || !t.items.length) return;
    t.loading = true;
    this.changed();
    try {
      const page = await this.rest.history(id, {before_seq: t.items[0].seq_id, limit: kPage});
      for (const m of page.messages) this.put(id, {...m, state: "acked"});
      t.hasMore = page.has_more;
    } catch (e) { this.fail(e); }
    t.loading = false;
    this.changed();
  }
  /** Inserts or replaces by seq, keeping ascending order. */
  private put(id: string, m: UiMessage) {
    const items = this.thread(id).items;
    let i = items.length;
    while (i > 0 && items[i - 1].seq_id > m.seq_id) --i;
    if (i > 0 && items[i - 1].seq_id === m.seq_id) {
      const old = items[i - 1];
      if (old.message_type === "system" && m.message_type === "system" && old.message_id === "") items[i - 1] = m;
      return;
    }
    items.splice(i, 0, m);
  }

  private onMessage(m: Message) {
    const t = this.threads.get(m.conversation_id);
    if (t?.loaded) {
      t.outgoing = t.outgoing.filter((o) => o.client_msg_id !== m.client_msg_id || m.sender_id !== this.myId);
      this.put(m.conversation_id, {...m, state: "acked"});
    }
    let c = this.conversation(m.conversation_id);
    if (!c) {
      c = this.provisional(m.conversation_id, m.created_at);
      void this.loadConversations();
    }
    if (!c.last_message || c.last_message.seq_id <= m.seq_id) {
      c.last_message = m;
      c.updated_at = m.created_at;
      c.last_seq = Math.max(c.last_seq, m.seq_id);
    }
    if (m.sender_id !== this.myId && m.message_type !== "system" && m.seq_id > c.read_seq) {
      // Read only while the conversation is on screen: not behind the friends or settings panel.
      if (this.current === m.conversation_id && this.view === "chats" && document.visibilityState === "visible") this.markRead();
      else c.unread = Math.min(999, c.unread + 1);
    }
    this.conversations.sort((a, b) => b.updated_at - a.updated_at);
    this.changed();
  }
  private onGroupEvent(conv: string, seq: number, at: number, content: Record<string, unknown>) {
    const t = this.threads.get(conv);
    if (t?.loaded) {
      this.put(conv, {message_id: "", conversation_id: conv, seq_id: seq, sender_id: 0, content: JSON.stringify(content),
                      message_type: "system", client_msg_id: "", created_at: at, state: "acked"});
    }
    void this.loadConversations();
  }
  private onAcked(conv: string, client_msg_id: string, message_id: string, seq_id: number) {
    const t = this.threads.get(conv);
    if (t) t.outgoing = t.outgoing.filter((o) => o.client_msg_id !== client_msg_id);
    void message_id; void seq_id;  // the ack's message comes through onMessage, with its seq
    this.changed();
  }
  private onFailed(conv: string, client_msg_id: string, error: ImlogError) {
    const o = this.threads.get(conv)?.outgoing.find((x) => x.client_msg_id === client_msg_id);
    if (o) { o.state = "failed"; o.error = error.message; }
    this.changed();
  }
  /** Retention removed the conversation's rows up to `through` (later seqs are unchanged). */
  private onExpired(conv: string, through: number) {
    const t = this.threads.get(conv);
    if (t) t.items = t.items.filter((m) => m.seq_id > through);
    const c = this.conversation(conv);
    if (c?.last_message && c.last_message.seq_id <= through) c.last_message = null;
    this.changed();
  }
  private onRecalled(conv: string, message_id: string) {
    const m = this.threads.get(conv)?.items.find((x) => x.message_id === message_id);
    if (m) { m.content = ""; m.recalled = true; }
    const c = this.conversation(conv);
    if (c?.last_message?.message_id === message_id) { c.last_message.content = ""; c.last_message.recalled = true; }
    this.changed();
  }

  send(conv: string, content: string, retryOf?: UiMessage) {
    const t = this.thread(conv);
    if (retryOf) t.outgoing = t.outgoing.filter((o) => o !== retryOf);
    const {client_msg_id} = this.realtime.send(conv, content);
    t.outgoing.push({message_id: "", conversation_id: conv, seq_id: 0, sender_id: this.myId, content, message_type: "text",
                     client_msg_id, created_at: Date.now(), state: "pending"});
    this.changed();
  }
  async recall(m: UiMessage) {
    try { await this.rest.recall(m.conversation_id, m.message_id); } catch (e) { this.fail(e); }
  }
  /** Marks the open conversation read up to its newest message (debounced). */
  markRead() {
    if (this.readTimer) return;
    this.readTimer = setTimeout(() => {
      this.readTimer = null;
      const id = this.current;
      if (!id) return;
      const last = this.thread(id).items.at(-1);
      const c = this.conversation(id);
      if (!last || (c && c.read_seq >= last.seq_id && c.unread === 0)) return;
      if (!this.realtime.read(id, last.seq_id)) this.rest.markRead(id, last.seq_id).catch(() => undefined);
      this.setRead(id, last.seq_id);
    }, 150);
  }
  private setRead(conv: string, seq: number) {
    const c = this.conversation(conv);
    if (!c || seq < c.read_seq) return;
    c.read_seq = seq;
    if (seq >= c.last_seq) c.unread = 0;
    this.changed();
  }

  // ---- groups --------------------------------------------------------------------------------
  async createGroup(name: string, members: number[]) {
    try {
      const g = await this.rest.createGroup({name, members});
      if (!this.conversation(g.conversation_id)) this.provisional(g.conversation_id, Date.now(), name);
      await this.loadConversations();
      await this.open(g.conversation_id);
    } catch (e) { this.fail(e); }
  }
  async addMember(conv: string, user: number) {
    try { await this.rest.addMember(Number(conv.slice("group_".length)), user); } catch (e) { this.fail(e); }
    // The member-joined push adds them to the panel.
  }

  /** The open group's profile and members (members only), for the group panel. */
  groupInfo: GroupInfo | null = null;
  async loadGroup(conv: string) {
    const id = Number(conv.slice("group_".length));
    try {
      const [group, m, b] = await Promise.all([this.rest.group(id), this.rest.members(id), this.rest.bans(id, {limit: 1000})]);
      for (const x of [...(m.members ?? []), ...(b.bans ?? [])]) this.want(x.user_id!);
      this.groupInfo = {group, members: m.members ?? [], bans: b.bans ?? []};
      this.changed();
    } catch (e) { this.fail(e); }
  }
  async showGroup(conv: string) {
    this.groupInfo = null;
    this.view = "group-info";
    this.changed();
    await this.loadGroup(conv);
  }
  async leaveGroup(conv: string) {
    try {
      await this.rest.leaveGroup(Number(conv.slice("group_".length)));
      this.current = null;
      this.view = "chats";
      await this.loadConversations();
    } catch (e) { this.fail(e); }
  }
  /**
   * Runs a group change; on success applies it to the panel at once (`local`). The member list is
   * a read model that may not have the event yet, so it is not reloaded here; the pushes that
   * follow (role-changed, member-removed, ...) keep the panel right.
   */
  async groupAction(action: () => Promise<unknown>, local: (info: GroupInfo) => void) {
    try {
      await action();
      if (this.groupInfo) { local(this.groupInfo); this.changed(); }
    } catch (e) { this.fail(e); }
  }
  private onGroupPush(conv: string, apply: (info: GroupInfo) => void) {
    if (this.groupInfo && this.groupInfo.group.conversation_id === conv) { apply(this.groupInfo); this.changed(); }
  }

  // ---- presence and settings -----------------------------------------------------------------
  async setStatus(status: "online" | "away" | "busy") {
    try {
      const p = await this.rest.setStatus(status);
      this.presence.set(this.myId, {status: p.status, last_seen: p.last_seen});
      this.changed();
    } catch (e) { this.fail(e); }
  }
  async saveSettings(body: Parameters<RestClient["updateSettings"]>[0]) {
    try {
      await this.rest.updateSettings(body);
      // The fields the profile shows as they were sent (a time zone or a cleared quiet hour may
      // read back normalised).
      const exact = ["allow_search", "message_policy", "push_enabled"] as const;
      const shown = (me: Me) => exact.every((k) => body[k] === undefined || me.settings?.[k] === body[k]);
      await this.loadMeShowing(shown);
      this.say("Settings saved");
    } catch (e) { this.fail(e); }
  }
  async uploadAvatar(file: File) {
    try { await this.rest.uploadAvatar(file, file.type || "application/octet-stream"); await this.loadMe(); this.say("Picture updated"); } catch (e) { this.fail(e); }
  }
  async saveProfile(nickname: string, signature: string) {
    try {
      await this.rest.updateProfile({nickname, signature});
      await this.loadMeShowing((me) => (!nickname || me.nickname === nickname) && (me.signature ?? "") === signature);
      this.say("Profile saved");
    } catch (e) { this.fail(e); }
  }
}
