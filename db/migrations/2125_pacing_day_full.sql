-- A device at its daily cap is passed by until the owner's next day, not read again by every claim
-- (db/functions/queue.sql, claim_messages).
-- depends: 2124_claimed_message
ALTER TABLE device_pacing ADD COLUMN IF NOT EXISTS day_full_until timestamptz,
                          ADD COLUMN IF NOT EXISTS day_full_limit integer;
COMMENT ON COLUMN device_pacing.day_full_until IS
  'Set by a claim that found the device''s day full (day_count at its daily cap, warm-up''s included): the owner''s '
  'next midnight. Until then, while daily_limit is no higher than day_full_limit, claims pass the device by.';
COMMENT ON COLUMN device_pacing.day_full_limit IS
  'The device''s daily_limit when a claim found its day full (day_full_until): a raised limit frees it at once.';
