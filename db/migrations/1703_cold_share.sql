-- Cold share (issue 17): sends to contacts that never wrote to the device, counted per owner's day,
-- so no device spends more than the cold_share_max setting of its day's cap on them.
-- depends: 1702_warm_contact_phone
ALTER TABLE device_pacing
  ADD COLUMN cold_day   date,
  ADD COLUMN cold_count integer NOT NULL DEFAULT 0 CONSTRAINT device_pacing_cold_count_not_negative CHECK (cold_count >= 0);
COMMENT ON COLUMN device_pacing.cold_day IS 'The owner''s calendar day cold_count counts.';
COMMENT ON COLUMN device_pacing.cold_count IS
  'Sends completed that day to contacts that never wrote to the device (device_warm_contacts).';

INSERT INTO settings (name, value, meaning) VALUES
  ('cold_share_max', 0.5,
   'a device sends to contacts that never wrote to it at most this share (0..1) of its day''s cap');

-- _device_send_limits takes the day's cold count; _record_send_outcomes message ids.
DROP FUNCTION IF EXISTS _device_send_limits(integer, timestamptz, timestamptz, text);
DROP FUNCTION IF EXISTS _record_send_outcomes(bigint[], boolean);
