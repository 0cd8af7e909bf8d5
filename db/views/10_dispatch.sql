-- Dispatch monitors. Counts come from device_send_minutes (every claimed send, per device and
-- minute): the trailing hour counts whole minute buckets from the minute an hour ago, exactly
-- what the hourly cap checks; the day starts at the owner's local midnight.

CREATE VIEW device_load_balance (device_id, messages_hour, messages_today, is_available, updated_at) AS
SELECT d.id,
       counts.messages_hour,
       counts.messages_today,
       d.status = 'online' AND d.paused_at IS NULL
         AND counts.messages_hour < d.hourly_limit AND counts.messages_today < d.daily_limit,
       greatest(d.status_changed_at, counts.last_minute)
  FROM user_devices d
  JOIN users u ON u.id = d.user_id
  CROSS JOIN LATERAL (
    SELECT date_trunc('minute', now() - interval '1 hour') AS hour_from,
           date_trunc('day', now() AT TIME ZONE u.timezone) AT TIME ZONE u.timezone AS day_from
  ) w
  CROSS JOIN LATERAL (
    SELECT coalesce(sum(s.sends) FILTER (WHERE s.minute >= w.hour_from), 0)::int AS messages_hour,
           coalesce(sum(s.sends) FILTER (WHERE s.minute >= w.day_from), 0)::int AS messages_today,
           max(s.minute) AS last_minute
      FROM device_send_minutes s
     WHERE s.device_id = d.id AND s.minute >= least(w.hour_from, w.day_from)
  ) counts;
COMMENT ON VIEW device_load_balance IS
  'Read-only. Per device: sends in the trailing hour (minute buckets, as the hourly cap counts them) and in '
  'the owner''s calendar day, whether it can take more now (online, not paused and under both caps), and when either '
  'last changed. Computed from the send record (every claimed send), so it is always true; it is written '
  'only by claim_messages.';

CREATE VIEW device_performance_monitor (device_id, user_id, device_name, device_status, messages_hour,
                                        messages_today, hourly_limit, daily_limit, processing_now,
                                        last_sent_at) AS
SELECT d.id, d.user_id, d.device_name, d.status, lb.messages_hour, lb.messages_today,
       d.hourly_limit, d.daily_limit,
       (SELECT count(*)::int FROM broadcast_messages m WHERE m.device_id = d.id AND m.status = 'queued'),
       p.last_sent_at
  FROM user_devices d
  JOIN device_load_balance lb ON lb.device_id = d.id
  LEFT JOIN device_pacing p ON p.device_id = d.id;
COMMENT ON VIEW device_performance_monitor IS
  'Per device: status, sends in the trailing hour and today against its caps, messages being sent right '
  'now (claimed, not yet completed) and the time of its last completed send. Filter by user_id.';
