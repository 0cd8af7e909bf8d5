-- Two unique indexes of the live queue were implied by a third, and every queued sequence step
-- paid for one of them: message_queue_one_active_step allows one live row per enrollment, and
-- every row of message_queue_step_enrollment (enrollment, step: first attempts) and of
-- message_queue_one_retry (retry_of: retries of steps) carries an enrollment (CHECK
-- step_has_sequence_and_enrollment), so neither can hold two rows one_active_step would not.
-- A step's queued row now enters the primary key, the due index, one_active_step and
-- message_queue_sequence. The retry guard's probe reads message_queue_retry_of.
-- depends: 2102_enqueue_counts_its_rows

DROP INDEX message_queue_step_enrollment;
DROP INDEX message_queue_one_retry;
