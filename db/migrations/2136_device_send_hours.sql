-- A device's sends per hour beside its sends per minute. The readers of a day's or two days' sends
-- summed minute buckets: 3,000 devices that sent every minute for two days hold 8.6M of them, and the
-- overview's health bands (48 h of sends per device, for its reply rate) took 7.5-13 s a refresh, the
-- monitoring page's load (the owner's day) 1.8 s, device_load for the sequence tick, the failover and
-- AI campaigns 2.0 s. Now whole hours come from here (49 rows at most for two days), the minutes only
-- for part of the first hour (30 at most; _device_sends). The claim writes both, in the statement
-- that counts the send.
-- Backfilled from the minutes; sends claimed by the code before this one while the apply runs (the
-- seconds between this migration's commit and the functions') are in the minutes only.
-- The minutes' index by minute (migration 2113, for the hourly purge) goes: with it the plan of a
-- device's last hour or day could read that stretch of every device's minutes for each device (the
-- statistics of a table written every minute never know its last minutes). The purge reads each
-- device's old rows at the front of its key instead (_purge_send_record).
-- depends: 2135_device_queue_counts

DROP INDEX device_send_minutes_minute;

CREATE TABLE device_send_hours (
  device_id bigint NOT NULL REFERENCES user_devices ON DELETE CASCADE,
  hour      timestamptz NOT NULL,   -- the start of a UTC hour
  sends     integer NOT NULL CHECK (sends > 0),
  PRIMARY KEY (device_id, hour)
);
COMMENT ON TABLE device_send_hours IS
  'Send attempts per device and hour (device_send_minutes summed by the hour, written with them by the claim): '
  'the whole hours of a device''s sends over a day or two (_device_sends).';

INSERT INTO device_send_hours (device_id, hour, sends)
SELECT device_id, date_trunc('hour', minute, 'UTC'), sum(sends) FROM device_send_minutes GROUP BY 1, 2;
