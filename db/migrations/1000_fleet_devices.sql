-- Devices at fleet scale: a device can be paused (it keeps its connection; nothing is claimed for
-- it until resumed), and a sequence can be limited to a set of devices as a campaign can.
-- depends: 0802_quotas_throttle

ALTER TABLE user_devices ADD COLUMN paused_at timestamptz;
COMMENT ON COLUMN user_devices.paused_at IS
  'When the owner paused the device (NULL: not paused). A paused device stays connected; claim_messages takes '
  'nothing for it and it counts as unavailable for sequence steps and AI spreads.';

-- The devices page searches, filters and sorts an owner's devices (thousands): name order is the default.
CREATE INDEX user_devices_user_name ON user_devices (user_id, lower(device_name), id);

ALTER TABLE sequences ADD COLUMN device_ids bigint[];
COMMENT ON COLUMN sequences.device_ids IS
  'The devices that may send this sequence''s steps (NULL: every device of the owner).';

-- Renaming is one of the settings update_devices changes.
DROP FUNCTION IF EXISTS rename_device(bigint, bigint, text);
