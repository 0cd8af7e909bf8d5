-- Each setting's valid range, defined with it: a value the engine cannot run with is refused by the
-- UPDATE that tries it, not found later in its effects (a stuck timeout of 30 s made every sender fail
-- every message it claimed: they stop sending a claimed message 30 s before the timeout).
-- depends: 2126_last_ban_until
ALTER TABLE settings ADD COLUMN IF NOT EXISTS lowest numeric NOT NULL DEFAULT 0,
                     ADD COLUMN IF NOT EXISTS highest numeric;
COMMENT ON COLUMN settings.lowest IS 'The smallest value the engine runs with (settings_value_in_range).';
COMMENT ON COLUMN settings.highest IS 'The largest value the engine runs with, or NULL: no upper bound (settings_value_in_range).';

UPDATE settings s SET lowest = b.lowest, highest = b.highest
  FROM (VALUES
    -- senders stop sending a claimed message 30 s before recover_stuck may fail it
    ('stuck_timeout_seconds', 60, NULL),
    -- two of a sender's heartbeats (SENDER_HEARTBEAT_SECONDS, 5 by default): one late heartbeat
    -- must not hand its devices to another sender while it still runs them
    ('lease_seconds', 10, NULL),
    ('sender_alive_seconds', 10, NULL),
    ('default_hourly_limit', 1, NULL),
    ('default_daily_limit', 1, NULL),
    ('warmup_start_per_day', 1, NULL),
    ('self_pause_window_sends', 1, NULL),
    -- a share of 0 would pause every device after its first sends, failed or not
    ('self_pause_failure_share', 0.01, 1),
    ('cold_share_max', 0, 1),
    ('load_weight_sends_hour', 0, 1),
    ('load_weight_in_flight', 0, 1),
    ('failover_offline_minutes', 1, NULL),
    ('lead_import_lanes', 1, 64),
    ('message_retention_days', 1, NULL),
    ('webhook_retention_days', 1, NULL)
  ) AS b(name, lowest, highest)
 WHERE s.name = b.name;

ALTER TABLE settings DROP CONSTRAINT IF EXISTS settings_value_in_range;
ALTER TABLE settings ADD CONSTRAINT settings_value_in_range
  CHECK (value >= lowest AND (highest IS NULL OR value <= highest));
