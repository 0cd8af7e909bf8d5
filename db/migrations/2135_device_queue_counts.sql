-- The queue's figures per device, not only per owner: the monitoring page counted every waiting row
-- of the owner on each refresh to split it by device (1M waiting on 3,000 devices: 167-300 ms a
-- refresh, every 2 s of an open page while a campaign sends), as the overview did before migration
-- 2134. One rollup per device now serves both pages (the owner's figure is the sum of its devices'),
-- in place of 2134's per-owner one.
-- A statement appends one delta row per owner, its devices' changes as two arrays (a fan-out's chunk
-- over 3,000 devices, or a completion over a sender's devices: one row, not one per device), never
-- upserted, so writers never wait on each other's row lock; fold_device_queue_counts (a job, every
-- minute) moves them into device_queue_counts and readers add what is not folded yet. No foreign key
-- to the device: a deleted device's waiting rows lose it through broadcast_messages, whose trigger
-- takes them off its count, so its row nets to zero and the fold drops it then; the owner's figure
-- stays right meanwhile.
-- Written by _count_enqueued (inserts) and the broadcast_messages_6_device_queue_* triggers (updates,
-- deletes); counted from the queue by the same apply once they are in place (recount_device_queue).
-- depends: 2134_owner_queue_counts

DROP TRIGGER IF EXISTS broadcast_messages_6_owner_queue_upd ON broadcast_messages;
DROP TRIGGER IF EXISTS broadcast_messages_6_owner_queue_del ON broadcast_messages;
DROP FUNCTION IF EXISTS count_owner_queue();
DROP FUNCTION IF EXISTS fold_owner_queue_counts();
DROP FUNCTION IF EXISTS recount_owner_queue();
DROP FUNCTION IF EXISTS _owner_queue_live(bigint);
DROP FUNCTION IF EXISTS _in_owner_queue(text, boolean, bigint);
DROP TABLE owner_queue_counts, owner_queue_count_deltas;

CREATE TABLE device_queue_counts (
  device_id bigint PRIMARY KEY,
  user_id   bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  live      bigint NOT NULL
);
CREATE INDEX device_queue_counts_user ON device_queue_counts (user_id);
COMMENT ON TABLE device_queue_counts IS
  'Read-only rollup: per device, its messages pending (not held) or in flight, folded from '
  'device_queue_count_deltas (add the deltas not folded yet: _device_queue_live, _owner_queue_live).';

CREATE TABLE device_queue_count_deltas (
  user_id    bigint NOT NULL,
  device_ids bigint[] NOT NULL,
  lives      bigint[] NOT NULL,
  live       bigint NOT NULL,
  CONSTRAINT device_queue_count_deltas_one_change_per_device CHECK (cardinality(device_ids) = cardinality(lives))
);
CREATE INDEX device_queue_count_deltas_user ON device_queue_count_deltas (user_id);
COMMENT ON TABLE device_queue_count_deltas IS
  'Signed changes to device_queue_counts not folded yet, one row per writing statement and owner: its devices '
  '(device_ids) and the change of each (lives, in the same order), and their sum (live). Written by _count_enqueued '
  'and count_device_queue; fold_device_queue_counts moves them.';
