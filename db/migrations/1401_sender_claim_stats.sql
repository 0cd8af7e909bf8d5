-- Claim batch latency, for GET /metrics: each sender adds up its claims (batches, rows, seconds
-- spent in claim_messages) and writes the running totals with record_claim_stats every few seconds.
-- depends: 1400_webhooks
ALTER TABLE senders
  ADD COLUMN claims        bigint NOT NULL DEFAULT 0 CHECK (claims >= 0),
  ADD COLUMN claim_rows    bigint NOT NULL DEFAULT 0 CHECK (claim_rows >= 0),
  ADD COLUMN claim_seconds double precision NOT NULL DEFAULT 0 CHECK (claim_seconds >= 0);
COMMENT ON COLUMN senders.claims IS 'Claim batches this sender process made (running total since it registered).';
COMMENT ON COLUMN senders.claim_rows IS 'Messages those claims returned.';
COMMENT ON COLUMN senders.claim_seconds IS 'Seconds spent waiting for claim_messages, summed over its claims.';
