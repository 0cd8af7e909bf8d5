-- A device that cannot reach new contacts, with only such contacts due, is read once, not by every
-- claim (db/functions/queue.sql, claim_messages).
-- depends: 2121_pacing_hour_full_until
ALTER TABLE device_pacing ADD COLUMN IF NOT EXISTS warm_none_until timestamptz;
COMMENT ON COLUMN device_pacing.warm_none_until IS
  'Set by a claim that found the device unable to reach new contacts (a reach-out timelock, or its cold share of the '
  'day used), read all its due messages and found none to a contact it talked with: for 5 minutes claims pass the '
  'device by while that lasts. Cleared when a message is queued for the device (_count_enqueued) or a contact of it '
  'writes (record_inbound_message).';
