-- How far a sender may have begun sending what it claimed, so that when it dies the messages it
-- never began go back to the queue, and only those it may have sent are failed as stuck (at most
-- once). A sender writes the mark before it hands claimed messages to its send threads
-- (sender_may_begin); a sender silent past its own lease is given up (give_up_silent_senders).
-- depends: 2127_settings_bounds
ALTER TABLE senders ADD COLUMN IF NOT EXISTS lease_ttl interval NOT NULL DEFAULT make_interval(secs => setting('lease_seconds')),
                    ADD COLUMN IF NOT EXISTS begun_claimed_at timestamptz,
                    ADD COLUMN IF NOT EXISTS begun_device_id bigint,
                    ADD COLUMN IF NOT EXISTS given_up_at timestamptz;
COMMENT ON COLUMN senders.lease_ttl IS
  'How long this sender''s leases outlive its heartbeat (what its last heartbeat renewed them for).';
COMMENT ON COLUMN senders.begun_claimed_at IS
  'With begun_device_id, the last of its claimed messages this sender may have begun sending: it begins them '
  'in the order of their claim (claimed_at), each claim''s devices in id order (sender_may_begin).';
COMMENT ON COLUMN senders.begun_device_id IS 'See begun_claimed_at.';
COMMENT ON COLUMN senders.given_up_at IS
  'When the sender was given up, silent past its lease (give_up_silent_senders): the claims it had not begun went '
  'back to the queue, and it may neither begin another send nor register again under this id.';
