-- The campaign report rollup (campaign_counts, migration 1506): per campaign and device, the counts
-- campaign_report and campaign_device_report show, kept by a statement trigger on
-- broadcast_messages so a report reads a few rows however large the campaign or old its messages.
--
-- A message counts for its campaign and device (0 once the device is deleted): assigned always;
-- as the current attempt unless a retry supersedes it; then by outcome. What can change a count:
--  - INSERT: new rows count as current; a retry among them stops the message it retries from
--    being current (that one is failed or skipped: it leaves its outcome column). Counted by the
--    rows' one writer (_count_enqueued, queue_enqueue.sql), not here.
--  - UPDATE: the outcome, a receipt or the device changes; the rows are current (a superseded
--    message is settled and never written again), so old minus new of the changed rows.
--  - DELETE: only with the campaign or its owner (whose rollup rows go by foreign key) or by hand.

CREATE OR REPLACE FUNCTION _campaign_count_row(p_status text, p_delivered boolean, p_read boolean, p_current integer)
RETURNS TABLE (current integer, sent integer, failed integer, skipped integer, pending integer, delivered integer,
               read integer, live_or_sent integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_current, p_current * (p_status = 'sent')::int, p_current * (p_status = 'failed')::int,
         p_current * (p_status = 'skipped')::int, p_current * (p_status IN ('pending', 'queued'))::int,
         p_current * p_delivered::int, p_current * p_read::int, (p_status IN ('pending', 'queued', 'sent'))::int
$$;
COMMENT ON FUNCTION _campaign_count_row(text, boolean, boolean, integer) IS
  'What one campaign message adds to campaign_counts (p_current 1 when it is its lead''s current attempt, else 0).';

-- Signed counts (rows of campaign_counts' shape, shard ignored) added to the rollup.
CREATE OR REPLACE FUNCTION _add_campaign_counts(p_deltas campaign_counts[]) RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  -- The shard follows the connection: two senders' statements never wait on each other's row.
  INSERT INTO campaign_counts AS t (campaign_id, device_id, shard, assigned, current, sent, failed, skipped, pending,
                                    delivered, read, live_or_sent, retries)
  SELECT d.campaign_id, d.device_id, pg_backend_pid() % 16, sum(d.assigned), sum(d.current), sum(d.sent),
         sum(d.failed), sum(d.skipped), sum(d.pending), sum(d.delivered), sum(d.read), sum(d.live_or_sent),
         sum(d.retries)
    FROM unnest(p_deltas) d
   -- a campaign being deleted takes its rollup; a probe per row (the plan is kept for the session,
   -- and a semi-join planned while campaigns are few may re-read the batch per campaign, as the
   -- owners' check of _add_message_outcomes did)
   WHERE (SELECT true FROM campaigns c WHERE c.id = d.campaign_id)
   GROUP BY d.campaign_id, d.device_id
  HAVING sum(abs(d.assigned) + abs(d.current) + abs(d.sent) + abs(d.failed) + abs(d.skipped) + abs(d.pending)
             + abs(d.delivered) + abs(d.read) + abs(d.live_or_sent) + abs(d.retries)) <> 0
   ORDER BY d.campaign_id, d.device_id   -- one lock order for every writer
  ON CONFLICT (campaign_id, device_id, shard) DO UPDATE
     SET assigned = t.assigned + excluded.assigned, current = t.current + excluded.current,
         sent = t.sent + excluded.sent, failed = t.failed + excluded.failed, skipped = t.skipped + excluded.skipped,
         pending = t.pending + excluded.pending, delivered = t.delivered + excluded.delivered,
         read = t.read + excluded.read, live_or_sent = t.live_or_sent + excluded.live_or_sent,
         retries = t.retries + excluded.retries;
  -- and per campaign (campaign_totals: the campaigns page reads a few rows, not one per device)
  INSERT INTO campaign_totals AS t (campaign_id, shard, current, sent, failed, skipped, pending, delivered, read, retries)
  SELECT d.campaign_id, pg_backend_pid() % 16, sum(d.current), sum(d.sent), sum(d.failed), sum(d.skipped),
         sum(d.pending), sum(d.delivered), sum(d.read), sum(d.retries)
    FROM unnest(p_deltas) d
   WHERE (SELECT true FROM campaigns c WHERE c.id = d.campaign_id)
   GROUP BY d.campaign_id
  HAVING sum(abs(d.current) + abs(d.sent) + abs(d.failed) + abs(d.skipped) + abs(d.pending) + abs(d.delivered)
             + abs(d.read) + abs(d.retries)) <> 0
   ORDER BY d.campaign_id
  ON CONFLICT (campaign_id, shard) DO UPDATE
     SET current = t.current + excluded.current, sent = t.sent + excluded.sent, failed = t.failed + excluded.failed,
         skipped = t.skipped + excluded.skipped, pending = t.pending + excluded.pending,
         delivered = t.delivered + excluded.delivered, read = t.read + excluded.read,
         retries = t.retries + excluded.retries;
END $$;
COMMENT ON FUNCTION _add_campaign_counts(campaign_counts[]) IS
  'Adds signed counts per campaign and device (rows of campaign_counts'' shape; their shard is ignored) to '
  'campaign_counts, and their sums per campaign to campaign_totals.';

-- Aggregated per campaign and device before they cross into the upsert (a fan-out chunk: a few
-- hundred rows, not one per message).
CREATE OR REPLACE FUNCTION count_campaign_messages() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  v_deltas campaign_counts[];
  v_retried bigint[];
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.campaign_id IS NOT NULL) THEN
      RETURN NULL;   -- sequence and chat traffic stops here
    END IF;
    -- Old rows subtracted, new rows added, per campaign and device: what did not change cancels
    -- out (a claim's pending -> queued counts the same). Summed, never joined: PL/pgSQL plans this
    -- once per session, for the session's first statement's rows, and a join of the two
    -- transition tables planned for one row on each side compared every pair of a later batch.
    v_deltas := array(
      SELECT ROW(r.campaign_id, r.device_id, 0, sum(r.sign), sum(r.sign * k.current), sum(r.sign * k.sent),
                 sum(r.sign * k.failed), sum(r.sign * k.skipped), sum(r.sign * k.pending), sum(r.sign * k.delivered),
                 sum(r.sign * k.read), sum(r.sign * k.live_or_sent), 0)::campaign_counts
        FROM (SELECT n.campaign_id, coalesce(n.device_id, 0) AS device_id, 1 AS sign, n.status,
                     n.delivered_at IS NOT NULL AS delivered, n.read_at IS NOT NULL AS read
                FROM new_rows n WHERE n.campaign_id IS NOT NULL
              UNION ALL
              SELECT o.campaign_id, coalesce(o.device_id, 0), -1, o.status, o.delivered_at IS NOT NULL, o.read_at IS NOT NULL
                FROM old_rows o WHERE o.campaign_id IS NOT NULL) r,
             _campaign_count_row(r.status, r.delivered, r.read, 1) k
       GROUP BY r.campaign_id, r.device_id
      HAVING sum(r.sign) <> 0 OR sum(r.sign * k.sent) <> 0 OR sum(r.sign * k.failed) <> 0
          OR sum(r.sign * k.skipped) <> 0 OR sum(r.sign * k.pending) <> 0 OR sum(r.sign * k.delivered) <> 0
          OR sum(r.sign * k.read) <> 0 OR sum(r.sign * k.live_or_sent) <> 0);
  ELSE
    -- A deleted row was current unless a retry superseded it: one deleted with it or one still
    -- stored. Only failed and skipped rows are retried, so only theirs are looked up, by index and
    -- all at once (a scan of the deleted rows per deleted row made a 150k-message campaign's
    -- delete run for minutes).
    v_retried := array(
      SELECT r.retry_of FROM old_rows r WHERE r.retry_of IS NOT NULL
      UNION
      SELECT r.retry_of FROM broadcast_messages r
       WHERE r.retry_of = ANY (array(SELECT o.id FROM old_rows o
                                      WHERE o.campaign_id IS NOT NULL AND o.status IN ('failed', 'skipped'))));
    -- Planned for this statement (EXECUTE), as deletes are rare: a join with the deleted rows
    -- planned once per session would keep its first statement's sizes (see the UPDATE branch).
    EXECUTE $sql$
      SELECT array(
        SELECT ROW(o.campaign_id, coalesce(o.device_id, 0), 0, -count(*), -sum(k.current), -sum(k.sent), -sum(k.failed),
                   -sum(k.skipped), -sum(k.pending), -sum(k.delivered), -sum(k.read), -sum(k.live_or_sent),
                   -count(o.retry_of))::campaign_counts
          FROM old_rows o
          LEFT JOIN unnest($1) AS superseded(id) ON superseded.id = o.id
         CROSS JOIN LATERAL _campaign_count_row(o.status, o.delivered_at IS NOT NULL, o.read_at IS NOT NULL,
                                                (superseded.id IS NULL)::int) k
         WHERE o.campaign_id IS NOT NULL
         GROUP BY o.campaign_id, coalesce(o.device_id, 0))
    $sql$ INTO v_deltas USING v_retried;
  END IF;
  IF v_deltas <> '{}' THEN
    PERFORM _add_campaign_counts(v_deltas);
  END IF;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION count_campaign_messages() IS
  'Statement trigger on broadcast_messages (UPDATE, DELETE): keeps campaign_counts equal to counting the campaign '
  'messages (new ones are counted by _count_enqueued).';
