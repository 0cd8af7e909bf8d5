-- The hourly cap from the device's minute ring (2138), and the send record by the minute gone.
-- The claim kept three records of the same sends: the minute buckets (device_send_minutes, an
-- upsert per device per claim, 3 days kept: ~13M rows at 3,000 devices sending every minute), an
-- upper bound of the trailing hour (hour_count, hour_counted_at) recounted from the buckets at the
-- cap, with a mark passing a full device by until its oldest send left the hour (hour_full_until),
-- and the ring. The ring alone gives the trailing hour exactly as the buckets counted it (whole
-- minutes from the minute an hour ago) with no read, so the claim checks every device against it
-- on every claim: a full device is passed by until a send leaves its hour, to the minute.
-- depends: 2139_device_send_hour_ring

ALTER TABLE device_pacing DROP COLUMN hour_count,
                          DROP COLUMN hour_counted_at,
                          DROP COLUMN hour_full_until;
DROP FUNCTION IF EXISTS _purge_send_record(timestamptz);
DROP TABLE device_send_minutes;
COMMENT ON COLUMN device_pacing.sends_total IS
  'A running count of the device''s sends as the claim counts them: the sends since a minute of the last hour '
  '(or an hour of the last two days) are this less sends_before''s (sends_before_hours'') element for it '
  '(_send_ring_since).';
