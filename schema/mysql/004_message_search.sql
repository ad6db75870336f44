-- imlog MySQL read model, migration 4: the message search index.
-- Conventions: see 001_identity.sql. Every statement can run again (a failed migration is
-- repeated from its first statement).

-- One row per distinct token of a message (projections/src/text_index.h: folded Latin words,
-- CJK character bigrams), written with the message and never changed. MariaDB's FULLTEXT has
-- no CJK tokenizer and no ngram parser, so the index is this table, read by token from the
-- newest message down. The tokens are bytes (VARBINARY): compared and ordered as written, never
-- by a collation. Messages projected before this migration have no rows here: rebuild the model
-- with `replay --target mysql` to index them (CHANGELOG.md).
CREATE TABLE IF NOT EXISTS message_tokens (
  message_id  BIGINT UNSIGNED NOT NULL,
  token       VARBINARY(64)   NOT NULL,
  PRIMARY KEY (message_id, token),
  KEY idx_message_tokens_token (token, message_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
