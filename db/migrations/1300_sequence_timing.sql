-- Sequences as the replaced system defined them:
--   * trigger_delay_hours is the wait AFTER a step before the next one (it was the wait before the
--     step). Existing steps are converted so their timing does not change: each step takes the
--     delay its successor had; the last step's becomes 0. The entry step is sent as soon as the lead
--     enters (inside the window): a delay an entry step had before it is dropped (new entrants only;
--     contacts already enrolled keep the due times they have).
--   * the send window's tolerance defaults to 10 minutes (existing sequences keep theirs);
--   * a failed step can be retried as a new message linked by retry_of;
--   * a sequence may let a lead that finished it enter again when its trigger is set again: each
--     pass is its own enrollment, at most one active per sequence and phone.
-- depends: 1000_fleet_devices

UPDATE sequence_steps st
   SET trigger_delay_hours = coalesce(nx.delay, 0)
  FROM (SELECT id, lead(trigger_delay_hours) OVER (PARTITION BY sequence_id ORDER BY day_number) AS delay
          FROM sequence_steps) nx
 WHERE nx.id = st.id AND st.trigger_delay_hours IS DISTINCT FROM coalesce(nx.delay, 0);
COMMENT ON COLUMN sequence_steps.trigger_delay_hours IS
  'Hours to wait after this step before the next one is due (the last step''s is unused).';

ALTER TABLE sequences ALTER COLUMN schedule_tolerance_minutes SET DEFAULT 10;

ALTER TABLE sequences ADD COLUMN allow_reentry boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN sequences.allow_reentry IS
  'A lead that completed the sequence enters it again (a new enrollment) when its trigger is set again.';

ALTER TABLE sequence_enrollments DROP CONSTRAINT sequence_enrollments_once;
CREATE UNIQUE INDEX sequence_enrollments_once ON sequence_enrollments (sequence_id, contact_phone)
  WHERE status = 'active';
CREATE INDEX sequence_enrollments_passes ON sequence_enrollments (sequence_id, contact_phone, id);

-- One first attempt per step and enrollment (a pass); retries are rows with retry_of.
DROP INDEX broadcast_messages_step_phone;
CREATE UNIQUE INDEX broadcast_messages_step_enrollment ON broadcast_messages (enrollment_id, sequence_stepid)
  WHERE sequence_stepid IS NOT NULL AND retry_of IS NULL;
CREATE UNIQUE INDEX broadcast_messages_one_retry ON broadcast_messages (retry_of)
  WHERE retry_of IS NOT NULL AND sequence_stepid IS NOT NULL;

-- The entry step is found inside enroll_leads (its delay no longer applies on entry).
DROP FUNCTION IF EXISTS sequence_first_step(bigint);
