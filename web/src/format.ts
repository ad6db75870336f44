// How things read to a person: times, day separators, system rows and previews. Pure functions.
import type {Message} from "@imlog/sdk";

export function time(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, {hour: "2-digit", minute: "2-digit"});
}

export function dayKey(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(ms: number, now = Date.now()): string {
  if (dayKey(ms) === dayKey(now)) return "Today";
  if (dayKey(ms) === dayKey(now - 86_400_000)) return "Yesterday";
  return new Date(ms).toLocaleDateString(undefined, {weekday: "long", year: "numeric", month: "long", day: "numeric"});
}

export function lastSeen(ms: number, now = Date.now()): string {
  if (!ms) return "never seen";
  const min = Math.round((now - ms) / 60_000);
  if (min < 1) return "last seen just now";
  if (min < 60) return `last seen ${min} min ago`;
  if (min < 24 * 60) return `last seen ${Math.round(min / 60)} h ago`;
  return `last seen ${new Date(ms).toLocaleDateString()}`;
}

/**
 * A system row (an event the server wrote into a conversation's history: projections/src/
 * timeline.h gives its JSON) as a sentence; null for rows that need none (a recall: the recalled
 * message itself says so).
 */
export function systemText(content: string, name: (id: number | undefined) => string): string | null {
  let e: {event?: string; user_id?: number; invited_by?: number; by?: number; role?: string; name?: string; from?: number;
          requester?: number; other?: number; blocked?: number; unblocked?: number; owner?: number; keep_days?: number};
  try { e = JSON.parse(content); } catch { return "The conversation changed"; }
  switch (e.event) {
    case "message_recalled": return null;
    case "friend_requested": return `${name(e.from)} sent a friend request`;
    case "friend_accepted": {
      const requester = name(e.requester);
      return `${name(e.by)} accepted ${requester === "You" ? "your" : `${requester}'s`} friend request`;
    }
    case "friend_rejected": return `${name(e.by)} declined the friend request`;
    case "friend_removed": return `${name(e.by)} ended the friendship`;
    case "user_blocked": return `${name(e.by)} blocked ${name(e.blocked)}`;
    case "user_unblocked": return `${name(e.by)} unblocked ${name(e.unblocked)}`;
    case "group_created": return `${name(e.owner)} created the group${e.name ? ` “${e.name}”` : ""}`;
    case "member_joined": return e.invited_by ? `${name(e.invited_by)} added ${name(e.user_id)}` : `${name(e.user_id)} joined`;
    case "member_left": return `${name(e.user_id)} left`;
    case "member_removed": return `${name(e.by)} removed ${name(e.user_id)}`;
    case "member_unbanned": return `${name(e.by)} let ${name(e.user_id)} join again`;
    case "role_changed": return `${name(e.by)} made ${name(e.user_id)} ${e.role === "member" ? "a member" : `the ${e.role ?? "member"}`}`;
    case "group_settings_changed": return `${name(e.by)} changed the group's settings`;
    case "retention_set":
      if (e.keep_days === undefined) return `${name(e.by)} set messages to be kept as the server's default says`;
      if (e.keep_days === 0) return `${name(e.by)} set messages to be kept for ever`;
      return `${name(e.by)} set messages to disappear after ${e.keep_days} day${e.keep_days === 1 ? "" : "s"}`;
    default: return "The conversation changed";
  }
}

export function preview(m: Message | null | undefined, name: (id: number | undefined) => string, me: number): string {
  if (!m) return "No messages yet";
  if (m.recalled) return "Message recalled";
  if (m.erased) return "Message of an erased account";
  if (m.message_type === "system") return systemText(m.content, name) ?? "Message recalled";
  const who = m.sender_id === me ? "You: " : "";
  return who + m.content.replace(/\s+/g, " ").slice(0, 80);
}

export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[1][0] : (parts[0] ?? "?").slice(0, 2);
  return s.toUpperCase();
}
