-- The live queue's statistics come from a sample of 3,000 rows instead of 30,000. Its writer
-- re-analyzes it whenever a batch grows it by half (refresh_queue_stats), inside the batch's
-- transaction, and so does autovacuum as senders drain it: a fan-out of 150k leads analyzed it four
-- times, 0.28-0.44 s of the two lanes' work (~0.05 s now; a lone ANALYZE of 150k rows 120-180 ms ->
-- 20-35 ms). What the queue's plans take from its statistics is its size and the share of due,
-- pending, held and campaign rows: the statements that read it most go by its indexes whatever the
-- estimates (claim_messages, next_dispatch_at and _settle_claimed are held to index paths), and
-- ten buckets and ten common values say that as well as a hundred. The history, which analysts
-- query, keeps the default.
-- depends: 2132_fanout_by_phone

ALTER TABLE message_queue
  ALTER COLUMN id SET STATISTICS 10,
  ALTER COLUMN user_id SET STATISTICS 10,
  ALTER COLUMN device_id SET STATISTICS 10,
  ALTER COLUMN campaign_id SET STATISTICS 10,
  ALTER COLUMN sequence_id SET STATISTICS 10,
  ALTER COLUMN sequence_stepid SET STATISTICS 10,
  ALTER COLUMN enrollment_id SET STATISTICS 10,
  ALTER COLUMN lead_id SET STATISTICS 10,
  ALTER COLUMN retry_of SET STATISTICS 10,
  ALTER COLUMN recipient_phone SET STATISTICS 10,
  ALTER COLUMN scheduled_at SET STATISTICS 10,
  ALTER COLUMN status SET STATISTICS 10,
  ALTER COLUMN held SET STATISTICS 10,
  ALTER COLUMN claimed_at SET STATISTICS 10,
  ALTER COLUMN skip_reason SET STATISTICS 10;
