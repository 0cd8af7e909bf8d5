-- A device's sends over its last two days, kept on its pacing row beside its minute ring (2138), in
-- place of device_send_hours. Its one reader, the overview's health bands (each device's sends in
-- 48 h, for its reply rate; refetched every minute and on device events), read up to 49 hour rows
-- and 30 minute rows a device: 3,000 devices that sent every minute for two days, 225-244 ms a
-- refresh, ~180 ms of it those rows. And each claim wrote an hour row per device besides its minute
-- row. Now:
-- - sends_hour: the UTC hour of the device's latest claim;
-- - sends_before_hours: sends_total as it stood at the start of each of the 49 hours up to
--   sends_hour, newest first (fewer when the device claimed nothing before them), so the sends
--   since any hour of the last two days are sends_total less one element (_send_ring_since).
-- Both rings are kept by _send_ring_add, now for any step and length (a signature change: the old
-- ring functions and _device_sends are dropped here, the new ones come with the function files).
-- Backfilled from the hour buckets. On an upgraded device the hour snapshots may be below zero
-- (sends_total began with 2138's last hour): only their differences are read.
-- depends: 2138_device_send_ring

ALTER TABLE device_pacing ADD COLUMN sends_hour timestamptz,
                          ADD COLUMN sends_before_hours bigint[] NOT NULL DEFAULT '{}'
                            CONSTRAINT device_pacing_sends_before_hours_49 CHECK (cardinality(sends_before_hours) <= 49);
COMMENT ON COLUMN device_pacing.sends_hour IS 'The UTC hour of the device''s latest counted send (claim).';
COMMENT ON COLUMN device_pacing.sends_before_hours IS
  'sends_total as it stood at the start of each UTC hour from sends_hour back, newest first, at most 49 '
  '(_send_ring_add keeps it): the sends since an hour of the last two days are sends_total less its element.';

DROP FUNCTION IF EXISTS _send_ring_add(bigint[], timestamptz, bigint, timestamptz, integer);
DROP FUNCTION IF EXISTS _send_ring_add_earlier(bigint[], timestamptz, timestamptz, integer);
DROP FUNCTION IF EXISTS _send_ring_since(bigint, bigint[], timestamptz, timestamptz);
DROP FUNCTION IF EXISTS _device_sends(bigint, timestamptz);

UPDATE device_pacing p
   SET sends_hour = r.head,
       sends_before_hours = ARRAY(SELECT p.sends_total - coalesce(sum(h.sends) FILTER (WHERE h.hour >= r.head - make_interval(hours => i - 1)), 0)
                                    FROM generate_series(1, 1 + (extract(epoch FROM r.head - r.oldest) / 3600)::int) i
                                    LEFT JOIN device_send_hours h ON h.device_id = r.device_id AND h.hour >= r.oldest
                                   GROUP BY i ORDER BY i)
  FROM (SELECT h.device_id, max(h.hour) AS head, min(h.hour) AS oldest
          FROM device_send_hours h
         WHERE h.hour >= date_trunc('hour', now(), 'UTC') - interval '48 hours'
         GROUP BY h.device_id) r
 WHERE p.device_id = r.device_id;

DROP TABLE device_send_hours;
