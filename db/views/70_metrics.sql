-- What GET /metrics exports (web/metrics.py), whole-system figures with no user data. Each view is
-- cheap enough to read on every scrape: live queue rows through their partial indexes, settled
-- messages from the message_outcome_totals rollup.

CREATE VIEW metrics_messages (status, messages) AS
SELECT 'pending', count(*) FROM broadcast_messages WHERE status = 'pending'
UNION ALL
SELECT 'queued', count(*) FROM broadcast_messages WHERE status = 'queued'
UNION ALL
SELECT 'sent', coalesce(sum(sent), 0)::bigint FROM message_outcome_totals
UNION ALL
SELECT 'failed', coalesce(sum(failed), 0)::bigint FROM message_outcome_totals;
COMMENT ON VIEW metrics_messages IS
  'Messages by status: pending and queued (in flight) now; sent and failed ever (from message_outcome_totals).';

CREATE VIEW metrics_queue (due_now, scheduled_later, oldest_due_age_seconds) AS
SELECT count(*) FILTER (WHERE scheduled_at <= now()),
       count(*) FILTER (WHERE scheduled_at > now()),
       coalesce(extract(epoch FROM now() - min(scheduled_at) FILTER (WHERE scheduled_at <= now())), 0)::float8
  FROM broadcast_messages
 WHERE status = 'pending' AND NOT held;
COMMENT ON VIEW metrics_queue IS
  'Queue depth: pending messages due now and scheduled later (held ones excluded), and how long the oldest '
  'due one has waited (seconds; 0 when none is due).';

CREATE VIEW metrics_devices (status, devices) AS
SELECT s.status, count(d.id)
  FROM unnest(ARRAY['online', 'offline', 'connecting', 'logged_out', 'banned']) AS s(status)
  LEFT JOIN user_devices d ON d.status = s.status
 GROUP BY s.status;
COMMENT ON VIEW metrics_devices IS 'Devices by status (every status listed, 0 when none).';

CREATE VIEW metrics_senders (sender_id, heartbeat_age_seconds, alive, devices_leased, claims, claim_rows,
                             claim_seconds) AS
SELECT h.sender_id, h.heartbeat_age_seconds, h.alive, h.devices_leased, s.claims, s.claim_rows, s.claim_seconds
  FROM sender_heartbeat_monitor h JOIN senders s ON s.id = h.sender_id;
COMMENT ON VIEW metrics_senders IS
  'Per sender process: heartbeat age, alive, devices leased, and its claim batches, rows and seconds spent '
  'claiming (running totals: latency per batch = claim_seconds / claims).';

-- Each figure through its status's partial index: one scan for both statuses read every delivered
-- row the outbox keeps (1M rows: 72 ms a scrape).
CREATE VIEW metrics_webhooks (pending, dead, oldest_pending_age_seconds) AS
SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'),
       (SELECT count(*) FROM webhook_deliveries WHERE status = 'dead'),
       coalesce(extract(epoch FROM now() - (SELECT min(created_at) FROM webhook_deliveries WHERE status = 'pending')),
                0)::float8;
COMMENT ON VIEW metrics_webhooks IS
  'The webhook backlog: deliveries waiting (pending), dead-lettered, and the age of the oldest waiting one (seconds).';
