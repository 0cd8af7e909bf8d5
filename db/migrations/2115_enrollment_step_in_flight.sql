-- The sequence tick looked for contacts it could move on among every active enrollment due, and
-- skipped those whose step message was still in the queue by probing it for each: a backlog of
-- 1M step messages waiting behind the caps was re-read every minute by activate_due_steps and
-- complete_finished_enrollments (1.08 s a tick at 1M, 0.10 s at 100k). An enrollment now says
-- whether its step is in flight: set by the writers that queue its message, cleared by the tick
-- when the message settles (recorded by the queue's statement trigger in
-- enrollment_steps_settled, appended to, so a completion never waits on an enrollment's lock), and
-- the tick's indexes hold only the enrollments it can move.
-- Existing enrollments start as not in flight (the tick then probes their queue rows as before, and
-- the next activation of each sets it): the flag must never say "in flight" without a message
-- that will clear it, and the functions that clear it are applied after this migration.
-- depends: 2114_no_chat_list
ALTER TABLE sequence_enrollments ADD COLUMN step_in_flight boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN sequence_enrollments.step_in_flight IS
  'True while the message of the step last queued for this enrollment (or its retry) is pending or queued; '
  'cleared by the sequence tick once it settles (enrollment_steps_settled).';

CREATE TABLE enrollment_steps_settled (enrollment_id bigint NOT NULL);
COMMENT ON TABLE enrollment_steps_settled IS
  'Enrollments whose step message stopped being pending or queued (sent, failed, skipped, deleted), appended by '
  'the queue''s statement trigger and taken by the sequence tick, which clears their step_in_flight.';

DROP INDEX sequence_enrollments_due;   -- no reader: the tick reads due enrollments per sequence
DROP INDEX sequence_enrollments_sequence_due;
CREATE INDEX sequence_enrollments_sequence_due ON sequence_enrollments (sequence_id, next_due_at)
  WHERE status = 'active' AND NOT step_in_flight;
DROP INDEX sequence_enrollments_finishing;
CREATE INDEX sequence_enrollments_finishing ON sequence_enrollments (id)
  WHERE status = 'active' AND next_step_id IS NULL AND NOT step_in_flight;
