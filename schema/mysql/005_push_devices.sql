-- imlog MySQL read model, migration 5: offline push (schema version 4).
-- Conventions: see 001_identity.sql. Every statement can run again (a failed migration is
-- repeated from its first statement).

-- The IANA time zone quiet hours are read in (SettingsUpdated.time_zone); '' : UTC.
ALTER TABLE users_profile
  ADD COLUMN IF NOT EXISTS time_zone VARCHAR(64) NOT NULL DEFAULT '';

-- Push devices (DeviceRegistered, DeviceRemoved on user_<id>). A removed device keeps its row with
-- removed = 1, so a rebuild writes the same rows however its batches fall.
CREATE TABLE IF NOT EXISTS user_devices (
  user_id     BIGINT UNSIGNED NOT NULL,
  device_id   BIGINT UNSIGNED NOT NULL,
  platform    VARCHAR(8)      NOT NULL DEFAULT '',   -- apns | fcm | webhook
  token       VARCHAR(4096)   NOT NULL DEFAULT '',   -- the webhook's URL for webhook
  app_id      VARCHAR(255)    NOT NULL DEFAULT '',
  created_at  BIGINT          NOT NULL DEFAULT 0,    -- Unix ms of the latest registration
  removed     TINYINT(1)      NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, device_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin;
