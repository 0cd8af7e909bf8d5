-- The overview's queue figures from a rollup: per owner, the messages waiting or in flight on a
-- device. dashboard_today counted the owner's waiting rows on each refresh (every 1.5 s while a
-- campaign sends), one index entry each: with 1M waiting, 148 ms of the database a refresh, a
-- fifth of a core per open overview. Now a few rows, and the in-flight rows (a few thousand at
-- most) by their index.
-- Deltas are appended, never upserted: a fan-out's chunk and a completion of the same owner never
-- wait on each other's row lock. fold_owner_queue_counts (a job, every minute) moves them into
-- owner_queue_counts; readers add what is not folded yet.
-- Written by _count_enqueued (inserts) and the broadcast_messages_6_owner_queue_* triggers (updates,
-- deletes); counted from the queue by the same apply once they are in place (recount_owner_queue).
-- depends: 2133_queue_statistics_sample

CREATE TABLE owner_queue_counts (
  user_id bigint PRIMARY KEY REFERENCES users ON DELETE CASCADE,
  live    bigint NOT NULL
);
COMMENT ON TABLE owner_queue_counts IS
  'Read-only rollup: per owner, messages pending (not held) or in flight with a device, folded from '
  'owner_queue_count_deltas (add the deltas not folded yet: _owner_queue_live).';

CREATE TABLE owner_queue_count_deltas (
  user_id bigint NOT NULL,
  live    bigint NOT NULL
);
CREATE INDEX owner_queue_count_deltas_user ON owner_queue_count_deltas (user_id);
COMMENT ON TABLE owner_queue_count_deltas IS
  'Signed changes to owner_queue_counts not folded yet, one row per writing statement and owner '
  '(_count_enqueued, count_owner_queue); fold_owner_queue_counts moves them.';

ALTER TYPE message_enqueued ADD ATTRIBUTE user_id bigint, ADD ATTRIBUTE held boolean;
