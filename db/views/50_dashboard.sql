-- Monitoring views for analysts and the monitoring page.

CREATE VIEW sender_heartbeat_monitor (sender_id, hostname, pid, capacity, started_at, heartbeat_at,
                                      heartbeat_age_seconds, alive, stopping, devices_leased) AS
SELECT s.id, s.hostname, s.pid, s.capacity, s.started_at, s.heartbeat_at,
       extract(epoch FROM now() - s.heartbeat_at)::int,
       s.heartbeat_at > now() - interval '30 seconds' AND NOT s.stopping,
       s.stopping,
       (SELECT count(*)::int FROM device_leases l WHERE l.sender_id = s.id AND l.expires_at > now())
  FROM senders s;
COMMENT ON VIEW sender_heartbeat_monitor IS
  'Sender processes: heartbeat age, alive (heartbeat within 30 s and not stopping) and devices leased now.';
