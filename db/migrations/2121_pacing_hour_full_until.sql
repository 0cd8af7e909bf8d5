-- A device at its hourly cap is recounted once, not by every claim until its hour frees up
-- (db/functions/queue.sql, claim_messages).
-- depends: 2120_early_receipts_by_settled_rows
ALTER TABLE device_pacing ADD COLUMN IF NOT EXISTS hour_full_until timestamptz;
COMMENT ON COLUMN device_pacing.hour_full_until IS
  'Set by a claim that recounted the trailing hour (hour_count, exact then) and found the hourly cap reached: when the '
  'oldest send of that hour leaves it, the first moment another can fit. Until then, while hour_count stays at or '
  'above the hourly limit, claims pass the device by without recounting.';
