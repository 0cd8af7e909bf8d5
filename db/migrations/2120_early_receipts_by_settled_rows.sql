-- _apply_early_receipts takes the settled rows (device and WhatsApp id) instead of their ids, which
-- it looked up again in every week of the history (db/functions/queue_receipts.sql).
-- depends: 2119_enrollments_by_device
DROP FUNCTION IF EXISTS _apply_early_receipts(bigint[]);
