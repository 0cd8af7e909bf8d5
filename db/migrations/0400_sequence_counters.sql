-- Sequence rollups (per-step and per-sequence counters kept incrementally) and the indexes the
-- sequence engine reads: activation per sequence by due time, stopping by phone, finishing.
-- depends: 0001_schema

-- One row per (sequence, step, day): step_id NULL holds the sequence's enrollment counts;
-- day NULL holds all-time and live figures, a dated row the sends completed that day in the
-- owner's zone (for date-range reports). Folded from sequence_counter_deltas every minute.
CREATE TABLE sequence_counters (
  sequence_id bigint NOT NULL REFERENCES sequences ON DELETE CASCADE,
  step_id     bigint REFERENCES sequence_steps ON DELETE CASCADE,
  day         date,
  contacts    bigint NOT NULL DEFAULT 0,  -- enrollments (step_id NULL rows)
  active      bigint NOT NULL DEFAULT 0,
  completed   bigint NOT NULL DEFAULT 0,
  stopped     bigint NOT NULL DEFAULT 0,
  waiting     bigint NOT NULL DEFAULT 0,  -- active enrollments whose next step is this one
  in_flight   bigint NOT NULL DEFAULT 0,  -- this step's pending or queued messages
  sent        bigint NOT NULL DEFAULT 0,
  failed      bigint NOT NULL DEFAULT 0   -- failed or skipped
);
CREATE UNIQUE INDEX sequence_counters_key ON sequence_counters (sequence_id, step_id, day) NULLS NOT DISTINCT;
COMMENT ON TABLE sequence_counters IS
  'Sequence rollups: enrollment counts (step_id NULL) and per-step waiting/in-flight/sent/failed, all-time (day NULL) and per completion day. Read with the unfolded deltas.';

-- Append-only: statement triggers insert here (never update a shared row, so concurrent senders
-- never wait on or deadlock over a counter); sequence_tick folds them into sequence_counters.
CREATE TABLE sequence_counter_deltas (
  sequence_id bigint NOT NULL,
  step_id     bigint,
  day         date,
  contacts    bigint NOT NULL DEFAULT 0,
  active      bigint NOT NULL DEFAULT 0,
  completed   bigint NOT NULL DEFAULT 0,
  stopped     bigint NOT NULL DEFAULT 0,
  waiting     bigint NOT NULL DEFAULT 0,
  in_flight   bigint NOT NULL DEFAULT 0,
  sent        bigint NOT NULL DEFAULT 0,
  failed      bigint NOT NULL DEFAULT 0
);
CREATE INDEX sequence_counter_deltas_sequence ON sequence_counter_deltas (sequence_id);
COMMENT ON TABLE sequence_counter_deltas IS
  'Counter changes not yet folded into sequence_counters (same columns); written by triggers, folded each minute.';

CREATE INDEX sequence_enrollments_sequence_due ON sequence_enrollments (sequence_id, next_due_at)
  WHERE status = 'active';
CREATE INDEX sequence_enrollments_phone ON sequence_enrollments (user_id, contact_phone);
CREATE INDEX sequence_enrollments_finishing ON sequence_enrollments (id)
  WHERE status = 'active' AND next_step_id IS NULL;
-- The contacts behind a report cell: one step's messages by status and completion time.
CREATE INDEX broadcast_messages_step_done ON broadcast_messages
  (sequence_stepid, status, (coalesce(sent_at, failed_at))) WHERE sequence_stepid IS NOT NULL;
