-- Receipts for many devices in one call (record_receipt_batch): its helpers take (device, WhatsApp
-- id) pairs instead of one device's ids.
-- depends: 2129_claim_marks_begun
DROP FUNCTION IF EXISTS _mark_receipts(bigint, text[], text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS _settled_wa_ids(bigint, text[], timestamptz);
