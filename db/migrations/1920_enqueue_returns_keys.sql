-- _enqueue_messages returns the keys its callers read (id, enrollment_id, sequence_stepid) instead
-- of whole rows: a fan-out chunk no longer copies 50,000 rendered messages into its result only to
-- count them. A changed result type needs the old function dropped; the functions step recreates
-- it (db/functions/queue_enqueue.sql).
-- depends: 1801_lead_tokens_fast

DROP FUNCTION IF EXISTS _enqueue_messages(message_draft[]);
