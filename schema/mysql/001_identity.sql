-- imlog MySQL read model, migration 1: identity and the social graph (docs/architecture.md,
-- "Projections").
--
-- Every table is a projection of im.events, rebuilt by `replay --projection mysql`; nothing else
-- writes here. Conventions for every migration:
--   * times are Unix milliseconds in BIGINT columns (exact, time-zone free, so a rebuilt model
--     equals the live one byte for byte);
--   * text is utf8mb4; identifiers compare by bytes, trailing spaces included (utf8mb4_nopad_bin);
--   * a column written by events of different streams takes their max or min, never "the last",
--     so the rows do not depend on how the partitions of im.events were interleaved;
--   * applied by migrate_mysql() in file-number order, each recorded in schema_migrations; a
--     migration is never edited once released: add the next number instead.

-- One row per UserRegistered (names_<bucket> streams): the credentials and the registration's
-- profile values. users_profile holds what later events changed.
CREATE TABLE IF NOT EXISTS users (
  user_id        BIGINT UNSIGNED NOT NULL,
  username       VARCHAR(64)   NOT NULL,
  password_hash  VARCHAR(255)  NOT NULL,               -- Argon2id string; never the password
  nickname       VARCHAR(1024) NOT NULL DEFAULT '',    -- as registered
  email          VARCHAR(1024) NOT NULL DEFAULT '',    -- as registered
  created_at     BIGINT        NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id),
  UNIQUE KEY uk_users_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- Profile and settings from the user's own stream (ProfileUpdated, SettingsUpdated). NULL in
-- nickname/email means "as registered" (users.*). status/last_seen are presence, kept for the
-- gateway's use; no event writes them.
CREATE TABLE IF NOT EXISTS users_profile (
  user_id             BIGINT UNSIGNED NOT NULL,
  nickname            VARCHAR(1024) NULL DEFAULT NULL,
  email               VARCHAR(1024) NULL DEFAULT NULL,
  avatar_url          TEXT          NOT NULL DEFAULT '',
  signature           TEXT          NOT NULL DEFAULT '',
  allow_search        TINYINT(1)    NOT NULL DEFAULT 1,
  message_policy      VARCHAR(16)   NOT NULL DEFAULT 'everyone',  -- everyone | friends_only
  push_enabled        TINYINT(1)    NOT NULL DEFAULT 1,
  quiet_start_minute  SMALLINT      NOT NULL DEFAULT -1,          -- -1: no quiet hours
  quiet_end_minute    SMALLINT      NOT NULL DEFAULT -1,
  status              VARCHAR(16)   NOT NULL DEFAULT 'offline',   -- online, offline, away, busy
  last_seen           BIGINT        NULL DEFAULT NULL,
  updated_at          BIGINT        NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- Per-user settings of one conversation (SettingsUpdated muted / unmuted).
CREATE TABLE IF NOT EXISTS user_conversation_settings (
  user_id          BIGINT UNSIGNED NOT NULL,
  conversation_id  VARCHAR(128)    NOT NULL,
  muted            TINYINT(1)      NOT NULL DEFAULT 0,
  updated_at       BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, conversation_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- The social graph, one row per direction: (user_id, friend_id) is what user_id sees of friend_id.
--   status      none | pending_out (user_id asked) | pending_in (friend_id asked) | accepted
--   note        the pending or accepted request's note
--   status_at   when status last changed
--   group_name  the friend group user_id filed friend_id under (FriendGroupSet, user stream)
--   blocked     user_id blocks friend_id (UserBlocked / UserUnblocked)
-- Friend events live on single_<lo>_<hi>, FriendGroupSet on user_<id>: separate columns.
CREATE TABLE IF NOT EXISTS friendships (
  user_id     BIGINT UNSIGNED NOT NULL,
  friend_id   BIGINT UNSIGNED NOT NULL,
  status      VARCHAR(16)     NOT NULL DEFAULT 'none',
  note        TEXT            NOT NULL DEFAULT '',
  status_at   BIGINT          NOT NULL DEFAULT 0,
  group_name  VARCHAR(1024)   NOT NULL DEFAULT '',
  blocked     TINYINT(1)      NOT NULL DEFAULT 0,
  created_at  BIGINT          NOT NULL DEFAULT 0,
  updated_at  BIGINT          NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, friend_id)   -- the pair is unique: one row per direction
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
