-- Device health for the devices page and the dashboard: status, when last seen, whether a sender
-- runs it, and counts of what went wrong (from device_events and the queue's failed sends).

CREATE VIEW device_health (device_id, user_id, device_name, phone, jid, status, status_reason,
                           status_changed_at, banned_until, last_seen, running, silent,
                           disconnects_24h, reconnects_24h, bans_total, send_failures_24h,
                           open_command, created_at) AS
SELECT d.id, d.user_id, d.device_name, d.phone, d.jid, d.status, d.status_reason,
       d.status_changed_at, d.banned_until, d.last_seen, run.running,
       d.status IN ('online', 'connecting') AND NOT run.running,
       ev.disconnects_24h, ev.reconnects_24h, ev.bans_total,
       (SELECT count(*)::int FROM broadcast_messages m
         WHERE m.device_id = d.id AND m.status = 'failed' AND m.failed_at > now() - interval '24 hours'),
       (SELECT c.command FROM device_commands c
         WHERE c.device_id = d.id AND c.status IN ('pending', 'taken') ORDER BY c.id DESC LIMIT 1),
       d.created_at
  FROM user_devices d
  CROSS JOIN LATERAL (SELECT device_is_running(d.id) AS running) run
  -- Bounded reads: the last 24 hours of events (device_events_device), bans through their own
  -- partial index, so a device with years of history costs the same.
  CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE e.event = 'offline')::int AS disconnects_24h,
           -- an "online" after the first of the day is a reconnect
           greatest(count(*) FILTER (WHERE e.event = 'online') - 1, 0)::int AS reconnects_24h,
           (SELECT count(*)::int FROM device_events b WHERE b.device_id = d.id AND b.event = 'banned') AS bans_total
      FROM device_events e WHERE e.device_id = d.id AND e.at > now() - interval '24 hours'
  ) ev;
COMMENT ON VIEW device_health IS
  'Read-only. Per device: status and reason, last_seen, whether a live sender runs it (running) or it claims '
  'to be online/connecting with none (silent), disconnects and reconnects in 24 h, bans ever, failed sends '
  'in 24 h, and the command waiting for its sender. Filter by user_id.';
