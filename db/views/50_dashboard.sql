-- Monitoring views for analysts and the monitoring page.

CREATE VIEW sender_heartbeat_monitor (sender_id, hostname, pid, capacity, started_at, heartbeat_at,
                                      heartbeat_age_seconds, alive, stopping, devices_leased) AS
SELECT h.sender_id, h.hostname, h.pid, h.capacity, h.started_at, h.heartbeat_at, h.heartbeat_age_seconds,
       h.alive, h.stopping, h.devices_leased
  FROM _sender_heartbeats() h;
COMMENT ON VIEW sender_heartbeat_monitor IS
  'Sender processes: heartbeat age, alive (heartbeat within the sender_alive_seconds setting and not stopping) '
  'and devices leased now.';
