-- Figures senders report for GET /metrics (the views are db/views/70_metrics.sql).

CREATE OR REPLACE FUNCTION record_claim_stats(p_sender_id text, p_claims bigint, p_rows bigint, p_seconds double precision)
RETURNS void LANGUAGE sql AS $$
  UPDATE senders SET claims = p_claims, claim_rows = p_rows, claim_seconds = p_seconds WHERE id = p_sender_id
$$;
COMMENT ON FUNCTION record_claim_stats(text, bigint, bigint, double precision) IS
  'A sender''s running claim totals since it started (batches, rows, seconds in claim_messages), for metrics_senders.';
