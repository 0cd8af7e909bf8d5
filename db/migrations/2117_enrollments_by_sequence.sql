-- A sequence's contacts page (GET /api/sequences/{id}/contacts: its passes, oldest first) read the
-- enrollments in id order and skipped every other sequence's: a new sequence's first page beside
-- 1M older enrollments read them all (80 ms). Its passes in order, by sequence. The index costs an
-- entry per enrollment and per update that is not HOT (a step's activation, its settling): not
-- measurable in an activation (bench_sequences --quick 0.63 with it, 0.61 without).
-- depends: 2116_chat_and_event_retention
CREATE INDEX sequence_enrollments_sequence ON sequence_enrollments (sequence_id, id);
