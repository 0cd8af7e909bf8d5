-- Leads and campaigns: the AI pool, and campaign reports per campaign and per device.

CREATE VIEW leads_ai (id, user_id, name, phone, niche, target_status, trigger, created_at) AS
SELECT l.id, l.user_id, l.name, l.phone, l.niche, l.target_status, l.trigger, l.created_at
  FROM leads l
 WHERE l.device_id IS NULL;
COMMENT ON VIEW leads_ai IS
  'Read-only. The AI pool: leads without a device, which AI campaigns spread over devices. Write through '
  'create_lead/update_lead (device NULL) or imports with a blank device_id.';

-- The report counts each lead's current attempt (_campaign_messages_current, db/functions/campaigns.sql).
CREATE VIEW campaign_messages_current (id, campaign_id, user_id, device_id, lead_id, recipient_phone,
                                       recipient_name, status, error_message, sent_at, delivered_at, read_at) AS
SELECT m.id, m.campaign_id, m.user_id, m.device_id, m.lead_id, m.recipient_phone, m.recipient_name, m.status,
       m.error_message, m.sent_at, m.delivered_at, m.read_at
  FROM _campaign_messages_current() m;
COMMENT ON VIEW campaign_messages_current IS
  'Campaign messages that are the current attempt for their lead (not superseded by a retry). Filter by campaign_id.';

-- Both reports read the campaign_counts rollup (db/functions/campaign_counts.sql): a few rows per
-- campaign however many messages it has, and the figures outlive retention.
CREATE VIEW campaign_report (campaign_id, user_id, kind, title, status, status_reason, scheduled_at, paused_at,
                             should_send, sent, failed, skipped, pending, delivered, read, retried,
                             progress_pct) AS
SELECT c.id, c.user_id, c.kind, c.title, c.status, c.status_reason, c.scheduled_at, c.paused_at,
       coalesce(n.should_send, 0), coalesce(n.sent, 0), coalesce(n.failed, 0), coalesce(n.skipped, 0),
       coalesce(n.pending, 0), coalesce(n.delivered, 0), coalesce(n.read, 0), coalesce(n.retried, 0),
       CASE WHEN c.status IN ('finished', 'failed', 'cancelled') THEN 100
            ELSE coalesce(round(100.0 * (n.should_send - n.pending) / nullif(n.should_send, 0), 1), 0) END
  FROM campaigns c
  LEFT JOIN LATERAL (
    SELECT sum(k.current)::bigint AS should_send, sum(k.sent)::bigint AS sent, sum(k.failed)::bigint AS failed,
           sum(k.skipped)::bigint AS skipped, sum(k.pending)::bigint AS pending,
           sum(k.delivered)::bigint AS delivered, sum(k.read)::bigint AS read, sum(k.retries)::bigint AS retried
      FROM campaign_totals k WHERE k.campaign_id = c.id
  ) n ON true;
COMMENT ON VIEW campaign_report IS
  'Per campaign: should send (each lead''s current attempt), sent, failed, skipped, pending (incl. in flight), '
  'delivered, read, how many retries were queued, and progress. Filter by user_id / campaign_id.';

CREATE VIEW campaign_device_report (campaign_id, user_id, device_id, device_name, device_status, assigned,
                                    should_send, sent, failed, skipped, pending, delivered, read, moved_away,
                                    ai_limit, limit_reached) AS
SELECT c.id, c.user_id, nullif(k.device_id, 0), d.device_name, coalesce(d.status, 'deleted'),
       sum(k.assigned)::bigint, sum(k.current)::bigint, sum(k.sent)::bigint, sum(k.failed)::bigint,
       sum(k.skipped)::bigint, sum(k.pending)::bigint, sum(k.delivered)::bigint, sum(k.read)::bigint,
       sum(k.assigned - k.current)::bigint,
       c.ai_limit_per_device,
       c.ai_limit_per_device IS NOT NULL AND sum(k.live_or_sent) >= c.ai_limit_per_device
  FROM campaigns c
  JOIN campaign_counts k ON k.campaign_id = c.id
  LEFT JOIN user_devices d ON d.id = k.device_id
 GROUP BY c.id, c.user_id, k.device_id, d.device_name, d.status, c.ai_limit_per_device
HAVING sum(k.assigned) > 0;
COMMENT ON VIEW campaign_device_report IS
  'Per campaign and device: messages assigned (every attempt placed there), the current attempts by outcome, '
  'attempts moved away or retried, and for AI campaigns the per-device limit and whether it is reached.';
