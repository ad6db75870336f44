-- imlog MySQL read model, migration 6: the epoch link in the projection's positions.
-- Conventions: see 001_identity.sql. Every statement can run again (a failed migration is
-- repeated from its first statement).

-- The validity rule links each event to the last valid record of its partition
-- (engine/include/imlog/engine/validity.h), so a resumed projection must know that record's id
-- as well as the epoch token. 0 (rows written before this migration): not known, the next
-- event of the epoch is taken as the link.
ALTER TABLE projection_offsets ADD COLUMN IF NOT EXISTS link BIGINT UNSIGNED NOT NULL DEFAULT 0;
