-- Device health for analysts: what _device_health (db/functions/device_load.sql) computes.

CREATE VIEW device_health (device_id, user_id, device_name, phone, jid, status, status_reason,
                           status_changed_at, banned_until, last_seen, running, silent,
                           disconnects_24h, reconnects_24h, bans_total, send_failures_24h,
                           open_command, created_at, daily_cap, warmup_day, warmup_days, timelocked_until,
                           pause_reason, health_score) AS
SELECT h.device_id, h.user_id, h.device_name, h.phone, h.jid, h.status, h.status_reason,
       h.status_changed_at, h.banned_until, h.last_seen, h.running, h.silent,
       h.disconnects_24h, h.reconnects_24h, h.bans_total, h.send_failures_24h,
       h.open_command, h.created_at, h.daily_cap, h.warmup_day, h.warmup_days, h.timelocked_until,
       h.pause_reason, h.health_score
  FROM _device_health() h;
COMMENT ON VIEW device_health IS
  'Read-only. Per device: status and reason, last_seen, whether a live sender runs it (running) or it claims '
  'to be online/connecting with none (silent), disconnects and reconnects in 24 h, bans ever, failed sends '
  'in 24 h, the command waiting for its sender, today''s daily cap (warm-up day warmup_day of warmup_days), '
  'the end of a reach-out timelock in force, why it is paused, and its health score (0-100). Filter by user_id.';
