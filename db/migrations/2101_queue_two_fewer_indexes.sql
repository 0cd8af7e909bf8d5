-- The live queue loses two of its five index insertions per queued campaign row (a bare insert of
-- 150k campaign rows: 0.32 of the floor with them; the floor has two):
--  - message_queue_device_phone (device_id, recipient_phone, id) served the device-scoped reads of
--    live rows. A device's live rows are now reached through the two partial indexes that already
--    hold them: message_queue_due for pending rows — widened to every pending row, held ones too,
--    with held as its second column so the claim's scan of (device, not held, due) still reads only
--    sendable rows in order — and message_queue_inflight for queued ones. A chat thread reads its
--    device's live rows and keeps those to its number (a device holds hundreds to thousands).
--  - message_queue_due_at (scheduled_at) told the claim which devices had due work. The claim now
--    probes message_queue_due once per device its sender leases; reading due rows in time order
--    also read the uncommitted rows of a fan-out in progress (every campaign row is due at once),
--    10-17 ms per claim while a big campaign was written.
-- depends: 2100_leads_phone_check_no_regex

DROP INDEX message_queue_due_at;
DROP INDEX message_queue_device_phone;
DROP INDEX message_queue_due;
CREATE INDEX message_queue_due ON message_queue (device_id, held, scheduled_at, id) WHERE status = 'pending';
