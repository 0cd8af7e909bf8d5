-- Campaign reports from a rollup: per campaign and device, what campaign_report and
-- campaign_device_report used to count from every message of the campaign on each read. A report
-- now costs a few rows however large the campaign, and it keeps its figures after retention drops
-- the messages' weeks. Kept by a statement trigger (db/functions/campaign_counts.sql).
-- depends: 1505_campaign_history_order
CREATE TABLE campaign_counts (
  campaign_id bigint NOT NULL REFERENCES campaigns ON DELETE CASCADE,
  device_id   bigint NOT NULL,      -- 0: a deleted device's messages (device_id NULL)
  shard       smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
  assigned    bigint NOT NULL DEFAULT 0,
  current     bigint NOT NULL DEFAULT 0,
  sent        bigint NOT NULL DEFAULT 0,
  failed      bigint NOT NULL DEFAULT 0,
  skipped     bigint NOT NULL DEFAULT 0,
  pending     bigint NOT NULL DEFAULT 0,
  delivered   bigint NOT NULL DEFAULT 0,
  read        bigint NOT NULL DEFAULT 0,
  live_or_sent bigint NOT NULL DEFAULT 0,
  retries     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, device_id, shard)
);
COMMENT ON TABLE campaign_counts IS
  'Read-only rollup: per campaign and device (0: deleted), split over up to 16 shards (sum them): messages assigned '
  '(every attempt), current attempts (not superseded by a retry) and of those sent, failed, skipped, pending (incl. '
  'in flight), delivered and read; attempts pending, in flight or sent (for the AI per-device limit); retries '
  'queued. Kept by the broadcast_messages_5_campaign_counts_* triggers; equals counting broadcast_messages until '
  'retention drops a week of messages, whose counts it keeps.';

INSERT INTO campaign_counts (campaign_id, device_id, shard, assigned, current, sent, failed, skipped, pending,
                             delivered, read, live_or_sent, retries)
SELECT m.campaign_id, coalesce(m.device_id, 0), 0, count(*),
       count(*) FILTER (WHERE x.current),
       count(*) FILTER (WHERE x.current AND m.status = 'sent'),
       count(*) FILTER (WHERE x.current AND m.status = 'failed'),
       count(*) FILTER (WHERE x.current AND m.status = 'skipped'),
       count(*) FILTER (WHERE x.current AND m.status IN ('pending', 'queued')),
       count(*) FILTER (WHERE x.current AND m.delivered_at IS NOT NULL),
       count(*) FILTER (WHERE x.current AND m.read_at IS NOT NULL),
       count(*) FILTER (WHERE m.status IN ('pending', 'queued', 'sent')),
       count(*) FILTER (WHERE m.retry_of IS NOT NULL)
  FROM broadcast_messages m
  CROSS JOIN LATERAL (SELECT NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = m.id) AS current) x
 WHERE m.campaign_id IS NOT NULL AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = m.campaign_id)
 GROUP BY m.campaign_id, coalesce(m.device_id, 0);
