-- message_outcome_counts gets a shard per writing connection: concurrent senders completing
-- messages of the same owner in the same quarter hour no longer queue on one counter row.
-- depends: 0551_message_outcome_counts
ALTER TABLE message_outcome_counts ADD COLUMN shard smallint NOT NULL DEFAULT 0 CHECK (shard BETWEEN 0 AND 15);
ALTER TABLE message_outcome_counts DROP CONSTRAINT message_outcome_counts_pkey;
ALTER TABLE message_outcome_counts ADD PRIMARY KEY (user_id, bucket, shard);
COMMENT ON TABLE message_outcome_counts IS
  'Read-only rollup: per owner and quarter hour (bucket, by sent_at / failed_at), how many of their messages are '
  'sent and failed, split over up to 16 shards (one per writing connection; sum them). Maintained by the '
  'broadcast_messages_outcomes_* triggers; the sums equal counting broadcast_messages.';
