-- imlog MySQL read model, migration 3: group settings, join seqs and bans (schema version 3).
-- Conventions: see 001_identity.sql. Every statement can run again (a failed migration is
-- repeated from its first statement).

-- A group's join policy and history rule, from GroupCreated and GroupSettingsChanged. A group
-- created before schema 3 carries no settings: private, and `all` — its members had always read
-- the whole history. The defaults are those values, for the rows already here and for such
-- groups projected afresh.
ALTER TABLE `groups`
  ADD COLUMN IF NOT EXISTS join_policy VARCHAR(8) NOT NULL DEFAULT 'private',  -- private | public
  ADD COLUMN IF NOT EXISTS history     VARCHAR(9) NOT NULL DEFAULT 'all';      -- all | from_join

-- joined_seq: the seq of the member's latest join (GroupCreated's seq, 1, for its first members),
-- where a `from_join` member's history starts. banned*: removed (MemberRemoved with ban) and not
-- yet unbanned (MemberUnbanned); a removal before schema 3 banned no one.
ALTER TABLE group_members
  ADD COLUMN IF NOT EXISTS joined_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS banned     TINYINT(1)      NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS banned_by  BIGINT UNSIGNED NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS banned_at  BIGINT          NOT NULL DEFAULT 0,
  ADD KEY IF NOT EXISTS idx_group_members_banned (group_id, banned);

-- The join seqs of the rows already here, as a projection from scratch would write them: the
-- latest member_joined system row of the member in the group's history, else GroupCreated's.
UPDATE group_members gm
  JOIN (SELECT CAST(SUBSTRING(m.conversation_id, 7) AS UNSIGNED) AS group_id,
               CAST(JSON_VALUE(m.content, '$.user_id') AS UNSIGNED) AS user_id,
               MAX(m.seq_id) AS seq
          FROM messages m
         WHERE m.conversation_id LIKE 'group!_%' ESCAPE '!' AND m.message_type = 'system'
           AND JSON_VALUE(m.content, '$.event') = 'member_joined'
         GROUP BY 1, 2) j ON j.group_id = gm.group_id AND j.user_id = gm.user_id
   SET gm.joined_seq = j.seq
 WHERE gm.joined_seq = 0;
UPDATE group_members SET joined_seq = 1 WHERE joined_seq = 0;
