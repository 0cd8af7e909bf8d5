-- The overview and monitoring pages: every count scoped to one owner, days and hours in the
-- owner's zone. Each function reads narrow indexes, so its cost follows the owner's day, not
-- the size of the history.

CREATE OR REPLACE FUNCTION owner_day_start(p_user_id bigint)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT date_trunc('day', now() AT TIME ZONE u.timezone) AT TIME ZONE u.timezone FROM users u WHERE u.id = p_user_id
$$;
COMMENT ON FUNCTION owner_day_start(bigint) IS 'The instant of the owner''s most recent local midnight.';

CREATE OR REPLACE FUNCTION dashboard_today(p_user_id bigint)
RETURNS TABLE (day_start timestamptz, sent bigint, failed bigint, pending bigint, in_flight bigint)
LANGUAGE sql STABLE AS $$
  WITH day AS (SELECT owner_day_start(p_user_id) AS t0),
  queue AS (SELECT coalesce(sum(q.due_now + q.scheduled_later), 0)::bigint AS pending,
                   coalesce(sum(q.in_flight), 0)::bigint AS in_flight
              FROM monitor_queue_depth(p_user_id) q)
  SELECT day.t0,
         (SELECT count(*) FROM broadcast_messages m
           WHERE m.user_id = p_user_id AND m.status = 'sent' AND m.sent_at >= day.t0),
         (SELECT count(*) FROM broadcast_messages m
           WHERE m.user_id = p_user_id AND m.status = 'failed' AND m.failed_at >= day.t0),
         queue.pending, queue.in_flight
    FROM day, queue
$$;
COMMENT ON FUNCTION dashboard_today(bigint) IS
  'Overview figures for the owner''s calendar day: messages sent and failed since local midnight, and the '
  'queue now: pending (waiting for a device, held ones excluded) and in flight (claimed by a sender).';

CREATE OR REPLACE FUNCTION dashboard_hourly(p_user_id bigint, p_hours integer DEFAULT 24)
RETURNS TABLE (hour_start timestamptz, sent bigint, failed bigint)
LANGUAGE sql STABLE AS $$
  WITH zone AS (SELECT u.timezone AS tz FROM users u WHERE u.id = p_user_id),
  hours AS (
    SELECT (date_trunc('hour', now() AT TIME ZONE zone.tz) - make_interval(hours => n)) AT TIME ZONE zone.tz AS h
      FROM zone, generate_series(least(greatest(p_hours, 1), 168) - 1, 0, -1) AS n
  ),
  sent AS (
    SELECT date_trunc('hour', m.sent_at AT TIME ZONE zone.tz) AT TIME ZONE zone.tz AS h, count(*) AS n
      FROM broadcast_messages m, zone
     WHERE m.user_id = p_user_id AND m.status = 'sent' AND m.sent_at >= (SELECT min(h) FROM hours)
     GROUP BY 1
  ),
  failed AS (
    SELECT date_trunc('hour', m.failed_at AT TIME ZONE zone.tz) AT TIME ZONE zone.tz AS h, count(*) AS n
      FROM broadcast_messages m, zone
     WHERE m.user_id = p_user_id AND m.status = 'failed' AND m.failed_at >= (SELECT min(h) FROM hours)
     GROUP BY 1
  )
  SELECT hours.h, coalesce(sent.n, 0), coalesce(failed.n, 0)
    FROM hours LEFT JOIN sent USING (h) LEFT JOIN failed USING (h)
   ORDER BY hours.h
$$;
COMMENT ON FUNCTION dashboard_hourly(bigint, integer) IS
  'Messages sent and failed per hour of the owner''s zone over the last p_hours hours (1..168), oldest first, '
  'every hour present (zeros included).';

CREATE OR REPLACE FUNCTION dashboard_devices_by_health(p_user_id bigint)
RETURNS TABLE (status text, devices bigint)
LANGUAGE sql STABLE AS $$
  SELECT s.status, count(d.id)
    FROM unnest(ARRAY['online', 'connecting', 'offline', 'banned', 'logged_out']) WITH ORDINALITY AS s(status, pos)
    LEFT JOIN user_devices d ON d.user_id = p_user_id AND d.status = s.status
   GROUP BY s.status, s.pos
   ORDER BY s.pos
$$;
COMMENT ON FUNCTION dashboard_devices_by_health(bigint) IS
  'The owner''s devices counted per status (every status listed, zeros included), healthiest first.';

CREATE OR REPLACE FUNCTION monitor_queue_depth(p_user_id bigint)
RETURNS TABLE (device_id bigint, device_name text, device_status text, due_now bigint,
               scheduled_later bigint, in_flight bigint, oldest_due_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT d.id, d.device_name, d.status, w.due_now, w.scheduled_later, f.in_flight, w.oldest_due_at
    FROM user_devices d
   CROSS JOIN LATERAL (
     SELECT count(*) FILTER (WHERE m.scheduled_at <= now()) AS due_now,
            count(*) FILTER (WHERE m.scheduled_at > now()) AS scheduled_later,
            min(m.scheduled_at) AS oldest_due_at
       FROM broadcast_messages m
      WHERE m.device_id = d.id AND m.status = 'pending' AND NOT m.held) w
   CROSS JOIN LATERAL (
     SELECT count(*) AS in_flight FROM broadcast_messages m WHERE m.device_id = d.id AND m.status = 'queued') f
   WHERE d.user_id = p_user_id
   ORDER BY d.id
$$;
COMMENT ON FUNCTION monitor_queue_depth(bigint) IS
  'Per device of the owner: pending messages due now and scheduled later (held ones excluded), messages in '
  'flight (claimed by a sender), and the oldest pending due time (how far behind the device is).';

CREATE OR REPLACE FUNCTION monitor_senders(p_user_id bigint)
RETURNS TABLE (sender_id text, hostname text, pid integer, capacity integer, started_at timestamptz,
               heartbeat_at timestamptz, heartbeat_age_seconds integer, alive boolean, stopping boolean,
               devices_leased integer, own_devices_leased integer)
LANGUAGE sql STABLE AS $$
  SELECT h.sender_id, h.hostname, h.pid, h.capacity, h.started_at, h.heartbeat_at, h.heartbeat_age_seconds,
         h.alive, h.stopping, h.devices_leased, own.n
    FROM sender_heartbeat_monitor h
   CROSS JOIN LATERAL (
     SELECT count(*)::int AS n FROM device_leases l JOIN user_devices d ON d.id = l.device_id
      WHERE l.sender_id = h.sender_id AND d.user_id = p_user_id AND l.expires_at > now()) own
   WHERE own.n > 0 OR (SELECT u.is_admin FROM users u WHERE u.id = p_user_id)
   ORDER BY h.alive DESC, h.sender_id
$$;
COMMENT ON FUNCTION monitor_senders(bigint) IS
  'Sender processes with their heartbeats: those running the owner''s devices, or every one for an admin.';

CREATE OR REPLACE FUNCTION monitor_device_load(p_user_id bigint)
RETURNS TABLE (device_id bigint, device_name text, device_status text, messages_hour integer,
               hourly_limit integer, messages_today integer, daily_limit integer, processing_now integer,
               last_sent_at timestamptz, sender_id text, lease_expires_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT p.device_id, p.device_name, p.device_status, p.messages_hour, p.hourly_limit, p.messages_today,
         p.daily_limit, p.processing_now, p.last_sent_at, l.sender_id, l.expires_at
    FROM device_performance_monitor p
    LEFT JOIN device_leases l ON l.device_id = p.device_id
   WHERE p.user_id = p_user_id
   ORDER BY p.device_id
$$;
COMMENT ON FUNCTION monitor_device_load(bigint) IS
  'Per device of the owner: sends in the trailing hour and today against its caps, in flight now, last send, '
  'and which sender holds it (lease).';
