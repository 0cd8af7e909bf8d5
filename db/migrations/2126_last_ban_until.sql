-- A ban reported again while it lasts (each connect of a banned number, in the next sender process
-- after a restart too) is the same ban, not a new one (db/functions/device_state.sql).
-- depends: 2125_pacing_day_full
ALTER TABLE user_devices ADD COLUMN IF NOT EXISTS last_ban_until timestamptz;
COMMENT ON COLUMN user_devices.last_ban_until IS
  'When the device''s latest temporary ban ends (banned_until holds it only while the status is banned): a ban '
  'reported before then (or within a minute after) is that ban again, logged as still_banned and not counted as '
  'another.';
