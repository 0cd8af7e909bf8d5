-- Totals that were sums over rollups growing with every device and quarter hour:
--  - the campaigns page (campaign_report, the 200 newest campaigns) summed each campaign's
--    campaign_counts rows, one per device and writer shard: up to 48k rows for a campaign spread
--    over 3,000 devices (200 campaigns on 1,000 devices: 811 ms a page);
--  - /metrics summed every row of message_outcome_counts for the all-time sent and failed counts,
--    owners x 96 quarter hours x shards a day (1M rows: 71 ms a scrape, and growing for good).
-- Both are now kept by the one writer of the per-row rollup beside it, in the same statement and
-- shards: a campaign's totals (16 rows at most) and the fleet's (16 rows).
-- depends: 2110_webhook_reads_bounded
CREATE TABLE campaign_totals (
  campaign_id bigint NOT NULL REFERENCES campaigns ON DELETE CASCADE,
  shard       smallint NOT NULL CHECK (shard BETWEEN 0 AND 15),
  current     bigint NOT NULL DEFAULT 0,
  sent        bigint NOT NULL DEFAULT 0,
  failed      bigint NOT NULL DEFAULT 0,
  skipped     bigint NOT NULL DEFAULT 0,
  pending     bigint NOT NULL DEFAULT 0,
  delivered   bigint NOT NULL DEFAULT 0,
  read        bigint NOT NULL DEFAULT 0,
  retries     bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (campaign_id, shard)
);
COMMENT ON TABLE campaign_totals IS
  'Read-only rollup: campaign_counts summed over devices, per campaign, split over up to 16 shards (sum them). '
  'Kept by _add_campaign_counts with campaign_counts; campaign_report reads it.';
INSERT INTO campaign_totals (campaign_id, shard, current, sent, failed, skipped, pending, delivered, read, retries)
SELECT campaign_id, shard, sum(current), sum(sent), sum(failed), sum(skipped), sum(pending), sum(delivered),
       sum(read), sum(retries)
  FROM campaign_counts GROUP BY campaign_id, shard;

CREATE TABLE message_outcome_totals (
  shard  smallint PRIMARY KEY CHECK (shard BETWEEN 0 AND 15),
  sent   bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE message_outcome_totals IS
  'Read-only rollup: messages sent and failed ever, fleet-wide, split over up to 16 shards (sum them). Kept by '
  '_add_message_outcomes with message_outcome_counts; a deleted owner''s messages stay counted (a counter never falls).';
INSERT INTO message_outcome_totals (shard, sent, failed)
SELECT shard, sum(sent), sum(failed) FROM message_outcome_counts GROUP BY shard;
