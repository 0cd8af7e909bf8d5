-- A device whose sender gave up connecting (after its transport's last attempt) is released and
-- left alone until resume_after, so no sender retries it in a tight loop; Reconnect or Pair
-- clears it at once.
-- depends: 0553_message_outcome_shards
ALTER TABLE user_devices ADD COLUMN resume_after timestamptz;
COMMENT ON COLUMN user_devices.resume_after IS
  'Set when a sender gave up connecting the device: no sender leases it before this time (hold_device; '
  'Reconnect and Pair clear it).';
