-- A device's sends in its last hour, kept on its pacing row by the claim that counts them. The
-- readers of a device's load (the monitoring page every 2 s of a sending campaign, the sequence
-- tick's and AI campaigns' device choices, the failover) summed minute buckets per device: at 3,000
-- devices that sent every minute for a day, device_load took 196-212 ms and the monitoring page's
-- device table 245-250 ms, ~60 ms of it the trailing hour (up to 31 bucket rows a device, each on a
-- page of its own) and ~150 ms the owner's day (up to 24 hour rows a device). The day now comes from
-- day_count, the claim's count that the daily cap is enforced by; the hour from here:
-- - sends_total: a running count of the device's sends, as the claim counts them;
-- - sends_minute: the minute of its latest claim;
-- - sends_before: sends_total as it stood at the start of each of the 61 minutes up to sends_minute,
--   newest first (fewer when the device claimed nothing before them), so the sends since any minute
--   of the last hour are sends_total less one element (_send_ring_since), without a read.
-- Backfilled from the minute buckets; sends claimed by the code before this one while the apply runs
-- (the seconds between this migration's commit and the functions') are in the buckets only, and so
-- in the monitoring page's hour for at most an hour less than in the cap's.
-- depends: 2137_device_pacing_ready

ALTER TABLE device_pacing ADD COLUMN sends_total bigint NOT NULL DEFAULT 0,
                          ADD COLUMN sends_minute timestamptz,
                          ADD COLUMN sends_before bigint[] NOT NULL DEFAULT '{}'
                            CONSTRAINT device_pacing_sends_before_61 CHECK (cardinality(sends_before) <= 61);
COMMENT ON COLUMN device_pacing.sends_total IS
  'A running count of the device''s sends as the claim counts them (device_send_minutes): the sends since a '
  'minute of the last hour are this less sends_before''s element for that minute (_send_ring_since).';
COMMENT ON COLUMN device_pacing.sends_minute IS 'The minute of the device''s latest counted send (claim).';
COMMENT ON COLUMN device_pacing.sends_before IS
  'sends_total as it stood at the start of each minute from sends_minute back, newest first, at most 61 '
  '(_send_ring_add keeps it).';

UPDATE device_pacing p
   SET sends_total = r.total, sends_minute = r.head,
       sends_before = ARRAY(SELECT r.total - coalesce(sum(s.sends) FILTER (WHERE s.minute >= r.head - make_interval(mins => i - 1)), 0)
                              FROM generate_series(1, 1 + (extract(epoch FROM r.head - r.oldest) / 60)::int) i
                              LEFT JOIN device_send_minutes s ON s.device_id = r.device_id AND s.minute >= r.oldest
                             GROUP BY i ORDER BY i)
  FROM (SELECT s.device_id, sum(s.sends) AS total, max(s.minute) AS head, min(s.minute) AS oldest
          FROM device_send_minutes s
         WHERE s.minute >= date_trunc('minute', now()) - interval '60 minutes'
         GROUP BY s.device_id) r
 WHERE p.device_id = r.device_id;
