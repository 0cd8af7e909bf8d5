-- broadcast_messages becomes a partitioned table: a small hot queue and a time-partitioned history.
--
--   broadcast_messages            the name every query and writer keeps using (LIST by status)
--   ├─ message_queue              pending and queued rows only, with the indexes the claim, the
--   │                             fan-out's duplicate guard and the pause/resume updates need
--   └─ message_history            sent / failed / skipped rows, RANGE by settle time
--      ├─ message_history_YYYYMMDD   one partition per week, created ahead by maintain_message_history
--      └─ message_history_default    anything outside them (empty in normal operation)
--
-- Settling a message (UPDATE status to sent/failed/skipped) moves its row from the queue to the
-- history partition of its settle week: PostgreSQL's row movement, no code of ours. The queue's
-- indexes stay the size of the live work however long the history grows, and retention drops
-- whole weeks (maintain_message_history) instead of deleting rows.
--
-- What the partitioning costs, guarded elsewhere:
--  - ids are unique by the identity sequence (each partition has its own primary key or id index);
--    nothing may reference a message by foreign key, so retry_of and chat_inbound's
--    broadcast_message_id are plain columns (the functions set them; retention may outlive them).
--  - no foreign keys from messages either: checked row by row they were most of an enqueue's cost
--    (measured: 13.5 s of 50k rows with them, 5.8 s without). The functions insert only ids they
--    just read; what the keys' ON DELETE did, statement triggers on the parent tables now do
--    (db/functions/triggers_broadcast_messages.sql).
--  - a unique index on a partitioned table must contain its partition key, so the rules that
--    outlive a message's settling ("one message per campaign and phone", "one first attempt per
--    step and enrollment", "one retry per failed step") are unique on the queue, and the enqueue
--    functions check the history themselves (db/functions/queue_enqueue.sql).
-- depends: 1401_sender_claim_stats

-- The views and the one function typed by the table's row are recreated by the apply step.
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT format('%I.%I', n.nspname, c.relname) AS name
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'v' AND n.nspname = 'public'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
  LOOP
    EXECUTE 'DROP VIEW IF EXISTS ' || r.name || ' CASCADE';
  END LOOP;
END $$;
DROP FUNCTION IF EXISTS record_message_count_deltas(broadcast_messages[], broadcast_messages[]);
ALTER TABLE chat_inbound DROP CONSTRAINT IF EXISTS whatsapp_messages_broadcast_message_id_fkey;
ALTER TABLE chat_inbound DROP CONSTRAINT IF EXISTS chat_inbound_broadcast_message_id_fkey;

ALTER TABLE broadcast_messages RENAME TO broadcast_messages_unpartitioned;

CREATE TABLE broadcast_messages (
  LIKE broadcast_messages_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY INCLUDING COMMENTS
) PARTITION BY LIST (status);
COMMENT ON TABLE broadcast_messages IS
  'One row per message, the only place its state lives; rendered content is exactly what is sent. Partitioned: '
  'message_queue holds pending/queued rows, message_history the settled ones by settle week (dropped after '
  'message_retention_days). Query it by this name.';
COMMENT ON COLUMN broadcast_messages.retry_of IS
  'The failed message this one retries (no foreign key: the history is partitioned and retention may drop it).';

CREATE TABLE message_queue PARTITION OF broadcast_messages (PRIMARY KEY (id)) FOR VALUES IN ('pending', 'queued');
COMMENT ON TABLE message_queue IS
  'The live partition of broadcast_messages: pending and queued rows only. Its indexes serve the claim, the '
  'one-live-message guards and the pause/resume updates; settled rows move to message_history.';
CREATE TABLE message_history PARTITION OF broadcast_messages FOR VALUES IN ('sent', 'failed', 'skipped')
  PARTITION BY RANGE ((coalesce(sent_at, failed_at)));
COMMENT ON TABLE message_history IS
  'The settled partition of broadcast_messages (sent, failed, skipped), one partition per week of settle time '
  '(sent_at or failed_at), created ahead and dropped after message_retention_days by maintain_message_history.';
CREATE TABLE message_history_default PARTITION OF message_history DEFAULT;
COMMENT ON TABLE message_history_default IS
  'Settled rows outside every weekly partition (empty in normal operation: partitions are created weeks ahead).';

-- The hot queue: what the claim, the fan-out guard and the live lookups need.
CREATE INDEX message_queue_due ON message_queue (device_id, scheduled_at, id) WHERE status = 'pending' AND NOT held;
CREATE INDEX message_queue_due_at ON message_queue (scheduled_at) WHERE status = 'pending' AND NOT held;
CREATE INDEX message_queue_inflight ON message_queue (device_id, claimed_at) WHERE status = 'queued';
CREATE UNIQUE INDEX message_queue_campaign_phone ON message_queue (campaign_id, recipient_phone) WHERE campaign_id IS NOT NULL;
CREATE UNIQUE INDEX message_queue_one_active_step ON message_queue (enrollment_id) WHERE enrollment_id IS NOT NULL;
CREATE UNIQUE INDEX message_queue_step_enrollment ON message_queue (enrollment_id, sequence_stepid)
  WHERE sequence_stepid IS NOT NULL AND retry_of IS NULL;
CREATE UNIQUE INDEX message_queue_one_retry ON message_queue (retry_of) WHERE retry_of IS NOT NULL AND sequence_stepid IS NOT NULL;
CREATE INDEX message_queue_sequence ON message_queue (sequence_id) WHERE sequence_id IS NOT NULL;
CREATE INDEX message_queue_retry_of ON message_queue (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX message_queue_device_phone ON message_queue (device_id, recipient_phone, id);

-- The history: what reports, receipts and chats read (partitioned indexes, one per weekly partition).
CREATE INDEX message_history_id ON message_history (id);
CREATE INDEX message_history_campaign ON message_history (campaign_id, status) WHERE campaign_id IS NOT NULL;
CREATE INDEX message_history_campaign_phone ON message_history (campaign_id, recipient_phone) WHERE campaign_id IS NOT NULL AND status = 'sent';
CREATE INDEX message_history_enrollment ON message_history (enrollment_id, sequence_stepid) WHERE enrollment_id IS NOT NULL;
CREATE INDEX message_history_sequence ON message_history (sequence_id, status) WHERE sequence_id IS NOT NULL;
CREATE INDEX message_history_step_done ON message_history (sequence_stepid, status, coalesce(sent_at, failed_at)) WHERE sequence_stepid IS NOT NULL;
CREATE INDEX message_history_retry_of ON message_history (retry_of) WHERE retry_of IS NOT NULL;
CREATE INDEX message_history_device_phone ON message_history (device_id, recipient_phone, id);
CREATE INDEX message_history_device_failed ON message_history (device_id, failed_at) WHERE status = 'failed';
CREATE INDEX message_history_user_created ON message_history (user_id, created_at);
CREATE INDEX message_history_user_sent ON message_history (user_id, sent_at) WHERE status = 'sent';
CREATE INDEX message_history_user_failed ON message_history (user_id, failed_at) WHERE status = 'failed';
CREATE INDEX message_history_wa_id ON message_history (wa_message_id) WHERE wa_message_id IS NOT NULL;
CREATE INDEX message_history_lead ON message_history (lead_id) WHERE lead_id IS NOT NULL;

INSERT INTO settings (name, value, meaning) VALUES
  ('message_retention_days', 180,
   'settled messages are kept this many days (whole weeks of message_history dropped after it); rollups keep their counts');

-- Weekly partitions covering the existing history and the weeks ahead, then the rows. The
-- function stays: maintain_message_history (db/functions/retention.sql) makes the later weeks with it.
CREATE FUNCTION create_history_week(p_week timestamptz) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE v_name text := 'message_history_' || to_char(p_week AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
  EXECUTE format('CREATE TABLE %I PARTITION OF message_history FOR VALUES FROM (%L) TO (%L)',
                 v_name, p_week, p_week + interval '1 week');
  EXECUTE format('COMMENT ON TABLE %I IS %L', v_name,
                 'Settled messages of the week from ' || to_char(p_week AT TIME ZONE 'UTC', 'YYYY-MM-DD') || ' (UTC): a partition of message_history.');
  RETURN v_name;
END $f$;
DO $$
DECLARE w timestamptz;
BEGIN
  FOR w IN SELECT generate_series(
             date_trunc('week', least(now(), (SELECT min(coalesce(sent_at, failed_at)) FROM broadcast_messages_unpartitioned)), 'UTC'),
             date_trunc('week', now(), 'UTC') + interval '4 weeks', interval '1 week')
  LOOP
    PERFORM create_history_week(w);
  END LOOP;
END $$;

INSERT INTO broadcast_messages OVERRIDING SYSTEM VALUE SELECT * FROM broadcast_messages_unpartitioned;
SELECT setval(pg_get_serial_sequence('broadcast_messages', 'id'),
              greatest((SELECT max(id) FROM broadcast_messages_unpartitioned), 1),
              (SELECT max(id) FROM broadcast_messages_unpartitioned) IS NOT NULL);
DROP TABLE broadcast_messages_unpartitioned;
