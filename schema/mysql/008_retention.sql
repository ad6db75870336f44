-- imlog MySQL read model, migration 8: the retention overrides (schema version 9).
-- Conventions: see 001_identity.sql. Every statement can run again (a failed migration is
-- repeated from its first statement).

-- The latest RetentionSet of each side of a conversation (GET /conversations/{id}/retention):
-- a group's own override under user_id 0, a one-to-one's each user's preference under their id.
-- keep_days NULL: no override (the deployment default applies); 0: for ever. keep_days follows
-- set_seq, the seq of the event that wrote it, so re-applying older events changes nothing.
-- Not history: expiry leaves these rows.
CREATE TABLE IF NOT EXISTS conversation_retention (
  conversation_id  VARCHAR(128)    NOT NULL,
  user_id          BIGINT UNSIGNED NOT NULL,
  keep_days        INT UNSIGNED    NULL DEFAULT NULL,
  set_seq          BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (conversation_id, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;

-- A model projected before this migration: the overrides its retention_set rows still show (a
-- row already expired is gone with its override: replay the model to recover those), each side's
-- latest, as a projection from scratch writes them.
INSERT INTO conversation_retention (conversation_id, user_id, keep_days, set_seq)
  SELECT m.conversation_id,
         IF(m.conversation_id LIKE 'single!_%' ESCAPE '!', CAST(JSON_VALUE(m.content, '$.by') AS UNSIGNED), 0),
         CAST(JSON_VALUE(m.content, '$.keep_days') AS UNSIGNED),
         m.seq_id
  FROM messages m
  WHERE m.message_type = 'system' AND JSON_VALUE(m.content, '$.event') = 'retention_set'
  ORDER BY m.seq_id
ON DUPLICATE KEY UPDATE
  keep_days = IF(VALUES(set_seq) > set_seq, VALUES(keep_days), keep_days),
  set_seq = GREATEST(set_seq, VALUES(set_seq));
