-- The settings the engine and the Python processes share, each defined once, here: the SQL functions
-- read them with setting(name), Python with app_settings() (common/config.py). Change one with
--   UPDATE settings SET value = 600 WHERE name = 'stuck_timeout_seconds';
-- (senders read theirs when they start). Column defaults of the caps and delays read them too.
-- depends: 1200_named_checks

CREATE TABLE settings (
  name    text PRIMARY KEY CONSTRAINT settings_name_is_snake_case CHECK (name ~ '^[a-z][a-z0-9_]*$'),
  value   numeric NOT NULL CONSTRAINT settings_value_not_negative CHECK (value >= 0),
  meaning text NOT NULL
);
COMMENT ON TABLE settings IS
  'Engine settings, each defined once: the SQL functions read them with setting(name), the Python processes '
  'with app_settings(). Units are in the names.';

INSERT INTO settings (name, value, meaning) VALUES
  ('stuck_timeout_seconds', 300,
   'a claimed message never completed is failed after this long (recover_stuck); senders stop sending it 30 s before'),
  ('lease_seconds', 30,
   'a sender''s device leases last this long past its last heartbeat; a dead sender''s devices move after it'),
  ('sender_alive_seconds', 30,
   'a sender whose heartbeat is older than this counts as gone (health, monitoring)'),
  ('preferred_device_hourly_sends', 50,
   'a sequence step goes from the lead''s own device while it sent fewer than this in the trailing hour'),
  ('load_weight_sends_hour', 0.7,
   'load score = this x messages sent in the trailing hour + load_weight_in_flight x messages being sent'),
  ('load_weight_in_flight', 0.3,
   'load score = load_weight_sends_hour x messages sent in the trailing hour + this x messages being sent'),
  ('default_min_delay_seconds', 30, 'a new device''s, campaign''s or sequence''s shortest pause between two sends'),
  ('default_max_delay_seconds', 60, 'a new device''s, campaign''s or sequence''s longest pause between two sends'),
  ('default_hourly_limit', 80, 'a new device''s cap on sends per trailing hour'),
  ('default_daily_limit', 800, 'a new device''s cap on sends per day (the owner''s calendar day)');

-- The reader lives with its table: column defaults below need it before db/functions is applied.
CREATE FUNCTION setting(p_name text) RETURNS numeric LANGUAGE plpgsql STABLE AS $$
DECLARE v_value numeric;
BEGIN
  SELECT s.value INTO v_value FROM settings s WHERE s.name = p_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no setting "%" (see the settings table)', p_name USING ERRCODE = '22023';
  END IF;
  RETURN v_value;
END $$;
COMMENT ON FUNCTION setting(text) IS 'The value of one row of settings; raises 22023 for an unknown name.';

ALTER TABLE user_devices
  ALTER COLUMN min_delay_seconds SET DEFAULT setting('default_min_delay_seconds')::integer,
  ALTER COLUMN max_delay_seconds SET DEFAULT setting('default_max_delay_seconds')::integer,
  ALTER COLUMN hourly_limit SET DEFAULT setting('default_hourly_limit')::integer,
  ALTER COLUMN daily_limit SET DEFAULT setting('default_daily_limit')::integer;
ALTER TABLE campaigns
  ALTER COLUMN min_delay_seconds SET DEFAULT setting('default_min_delay_seconds')::integer,
  ALTER COLUMN max_delay_seconds SET DEFAULT setting('default_max_delay_seconds')::integer;
ALTER TABLE sequences
  ALTER COLUMN min_delay_seconds SET DEFAULT setting('default_min_delay_seconds')::integer,
  ALTER COLUMN max_delay_seconds SET DEFAULT setting('default_max_delay_seconds')::integer;
