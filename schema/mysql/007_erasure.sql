-- imlog MySQL read model, migration 7: erasure (schema version 10).
-- Conventions: see 001_identity.sql. Every statement can run again (a failed migration is
-- repeated from its first statement).

-- A message whose sender erased their account keeps its row (the seq stays) with empty content
-- and erased = 1: written so by a rebuild, which can no longer open its text, and rewritten so by
-- UserErased in a live model, which finds the sender's rows through idx_messages_sender.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS erased TINYINT(1) NOT NULL DEFAULT 0;
ALTER TABLE messages ADD INDEX IF NOT EXISTS idx_messages_sender (sender_id);
