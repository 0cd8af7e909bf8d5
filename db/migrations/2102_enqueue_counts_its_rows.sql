-- The rollups of new messages are kept by their one writer (_enqueue_messages) instead of three
-- AFTER INSERT statement triggers with transition tables: every queued row was copied whole into
-- the statement's new_rows tuplestore and read back three times (outcomes, sequence counters,
-- campaign counts) only to count a pending row. The writer aggregates the keys its insert
-- returns. The UPDATE and DELETE triggers stay.
-- depends: 2101_queue_two_fewer_indexes

DROP TRIGGER IF EXISTS broadcast_messages_1_outcomes_ins ON broadcast_messages;
DROP TRIGGER IF EXISTS broadcast_messages_2_sequence_ins ON broadcast_messages;
DROP TRIGGER IF EXISTS broadcast_messages_5_campaign_counts_ins ON broadcast_messages;

CREATE TYPE message_enqueued AS (id bigint, enrollment_id bigint, sequence_stepid bigint, campaign_id bigint,
                                 device_id bigint, sequence_id bigint, retry_of bigint);
COMMENT ON TYPE message_enqueued IS
  'A row _insert_drafts wrote: its id and the keys its rollups count it under (_count_enqueued).';
DROP FUNCTION IF EXISTS _insert_drafts(message_draft[]);
