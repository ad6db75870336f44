-- imlog MySQL read model, migration 2: groups, conversations, messages, read pointers, and the
-- projection's own positions. Conventions: see 001_identity.sql.

-- GroupCreated; owner_id follows RoleChanged(owner). member_count is counted from group_members.
-- `groups` is a reserved word in MariaDB 10.3+: always quote it.
CREATE TABLE IF NOT EXISTS `groups` (
  group_id     BIGINT UNSIGNED NOT NULL,
  name         VARCHAR(1024)   NOT NULL,
  description  TEXT            NOT NULL DEFAULT '',
  owner_id     BIGINT UNSIGNED NOT NULL,
  created_at   BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (group_id),
  KEY idx_groups_owner (owner_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- Membership history of a group: a member who leaves keeps the row with status left/removed.
CREATE TABLE IF NOT EXISTS group_members (
  group_id    BIGINT UNSIGNED NOT NULL,
  user_id     BIGINT UNSIGNED NOT NULL,
  role        VARCHAR(8)      NOT NULL DEFAULT 'member',  -- owner | admin | member
  status      VARCHAR(8)      NOT NULL DEFAULT 'active',  -- active | left | removed
  invited_by  BIGINT UNSIGNED NOT NULL DEFAULT 0,         -- 0: joined by themselves / the owner
  joined_at   BIGINT          NOT NULL DEFAULT 0,
  updated_at  BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (group_id, user_id),
  KEY idx_group_members_user (user_id, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- One row per conversation stream (single_<lo>_<hi>, group_<id>, world) that has a timeline
-- event. The last message is the messages row at (conversation_id, last_seq).
CREATE TABLE IF NOT EXISTS conversations (
  conversation_id  VARCHAR(128)    NOT NULL,
  type             VARCHAR(8)      NOT NULL,             -- single | group | world
  user_lo          BIGINT UNSIGNED NOT NULL DEFAULT 0,   -- single: the two users
  user_hi          BIGINT UNSIGNED NOT NULL DEFAULT 0,
  group_id         BIGINT UNSIGNED NOT NULL DEFAULT 0,   -- group
  last_seq         BIGINT UNSIGNED NOT NULL DEFAULT 0,
  updated_at       BIGINT          NOT NULL DEFAULT 0,   -- time of the event at last_seq
  created_at       BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (conversation_id),
  KEY idx_conversations_lo (user_lo),
  KEY idx_conversations_hi (user_hi),
  KEY idx_conversations_group (group_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- The timeline of every conversation, one row per seq, so history has no gaps: MessageAppended
-- rows carry the message; every other timeline event (membership, friendship, blocks, recalls) is
-- a row of message_type 'system' whose content is a JSON object {"event": "<snake_case type>",
-- <the payload's fields>}. A recalled message keeps its row with empty content and recalled = 1.
-- message_id is the event id (64-bit, time-ordered).
CREATE TABLE IF NOT EXISTS messages (
  message_id       BIGINT UNSIGNED NOT NULL,
  conversation_id  VARCHAR(128)    NOT NULL,
  seq_id           BIGINT UNSIGNED NOT NULL,
  sender_id        BIGINT UNSIGNED NOT NULL,
  content          MEDIUMTEXT      COLLATE utf8mb4_unicode_ci NOT NULL,  -- case-insensitive search
  message_type     VARCHAR(16)     NOT NULL,             -- text | image | file | system
  client_msg_id    VARCHAR(255)    NOT NULL DEFAULT '',
  created_at       BIGINT          NOT NULL,
  recalled         TINYINT(1)      NOT NULL DEFAULT 0,
  PRIMARY KEY (message_id),
  UNIQUE KEY uk_messages_conversation_seq (conversation_id, seq_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- How far each user has read each conversation. Moved (never back) by ReadMarked, by the user's
-- own timeline events, and on joining (to just before the join), so that
--   unread = messages (message_type <> 'system') with seq > read_seq = messages from others.
CREATE TABLE IF NOT EXISTS read_pointers (
  user_id          BIGINT UNSIGNED NOT NULL,
  conversation_id  VARCHAR(128)    NOT NULL,
  read_seq         BIGINT UNSIGNED NOT NULL DEFAULT 0,
  updated_at       BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, conversation_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- The projection's progress through im.events, written in the same transaction as the rows:
-- per partition, the next offset to apply and the epoch token current there (EpochFilter state).
CREATE TABLE IF NOT EXISTS projection_offsets (
  partition_id  INT             NOT NULL,
  next_offset   BIGINT          NOT NULL,
  token         BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (partition_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
