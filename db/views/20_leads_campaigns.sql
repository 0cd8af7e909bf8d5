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

CREATE VIEW campaign_report (campaign_id, user_id, kind, title, status, status_reason, scheduled_at, paused_at,
                             should_send, sent, failed, skipped, pending, delivered, read, retried,
                             progress_pct) AS
SELECT c.id, c.user_id, c.kind, c.title, c.status, c.status_reason, c.scheduled_at, c.paused_at,
       coalesce(n.should_send, 0), coalesce(n.sent, 0), coalesce(n.failed, 0), coalesce(n.skipped, 0),
       coalesce(n.pending, 0), coalesce(n.delivered, 0), coalesce(n.read, 0),
       coalesce((SELECT count(*) FROM broadcast_messages r WHERE r.campaign_id = c.id AND r.retry_of IS NOT NULL), 0),
       CASE WHEN c.status IN ('finished', 'failed', 'cancelled') THEN 100
            ELSE coalesce(round(100.0 * (n.should_send - n.pending) / nullif(n.should_send, 0), 1), 0) END
  FROM campaigns c
  LEFT JOIN LATERAL (
    SELECT count(*) AS should_send,
           count(*) FILTER (WHERE m.status = 'sent') AS sent,
           count(*) FILTER (WHERE m.status = 'failed') AS failed,
           count(*) FILTER (WHERE m.status = 'skipped') AS skipped,
           count(*) FILTER (WHERE m.status IN ('pending', 'queued')) AS pending,
           count(*) FILTER (WHERE m.delivered_at IS NOT NULL) AS delivered,
           count(*) FILTER (WHERE m.read_at IS NOT NULL) AS read
      FROM campaign_messages_current m WHERE m.campaign_id = c.id
  ) n ON true;
COMMENT ON VIEW campaign_report IS
  'Per campaign: should send (each lead''s current attempt), sent, failed, skipped, pending (incl. in flight), '
  'delivered, read, how many retries were queued, and progress. Filter by user_id / campaign_id.';

CREATE VIEW campaign_device_report (campaign_id, user_id, device_id, device_name, device_status, assigned,
                                    should_send, sent, failed, skipped, pending, delivered, read, moved_away,
                                    ai_limit, limit_reached) AS
SELECT c.id, c.user_id, m.device_id, d.device_name, coalesce(d.status, 'deleted'),
       count(*),
       count(*) FILTER (WHERE m.current),
       count(*) FILTER (WHERE m.current AND m.status = 'sent'),
       count(*) FILTER (WHERE m.current AND m.status = 'failed'),
       count(*) FILTER (WHERE m.current AND m.status = 'skipped'),
       count(*) FILTER (WHERE m.current AND m.status IN ('pending', 'queued')),
       count(*) FILTER (WHERE m.current AND m.delivered_at IS NOT NULL),
       count(*) FILTER (WHERE m.current AND m.read_at IS NOT NULL),
       count(*) FILTER (WHERE NOT m.current),
       c.ai_limit_per_device,
       c.ai_limit_per_device IS NOT NULL
         AND count(*) FILTER (WHERE m.status IN ('pending', 'queued', 'sent')) >= c.ai_limit_per_device
  FROM campaigns c
  JOIN LATERAL (
    SELECT b.device_id, b.status, b.delivered_at, b.read_at,
           NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = b.id) AS current
      FROM broadcast_messages b WHERE b.campaign_id = c.id
  ) m ON true
  LEFT JOIN user_devices d ON d.id = m.device_id
 GROUP BY c.id, c.user_id, m.device_id, d.device_name, d.status, c.ai_limit_per_device;
COMMENT ON VIEW campaign_device_report IS
  'Per campaign and device: messages assigned (every attempt placed there), the current attempts by outcome, '
  'attempts moved away or retried, and for AI campaigns the per-device limit and whether it is reached.';
