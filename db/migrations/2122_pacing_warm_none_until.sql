-- A device that cannot reach new contacts, with only such contacts due, is read at most every few
-- seconds, not by every claim (db/functions/queue.sql, claim_messages).
-- depends: 2121_pacing_hour_full_until
ALTER TABLE device_pacing ADD COLUMN IF NOT EXISTS warm_none_until timestamptz;
COMMENT ON COLUMN device_pacing.warm_none_until IS
  'Set by a claim that found the device unable to reach new contacts (a reach-out timelock, or its cold share of the '
  'day used), read all its due messages and found none to a contact it talked with: for the next 5 seconds, while it '
  'still cannot reach new contacts, claims pass the device by.';
