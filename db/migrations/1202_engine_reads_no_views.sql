-- Functions read tables and functions, never views (views only show what functions compute):
-- these read views and are replaced by device_load and the _-prefixed helpers of db/functions
-- (db/functions/device_load.sql). Views depending on them are recreated right after by apply.
-- depends: 1201_settings

DROP FUNCTION IF EXISTS sequence_device_loads(bigint[]);
DROP FUNCTION IF EXISTS ai_campaign_devices(campaigns);
DROP FUNCTION IF EXISTS device_is_running(bigint) CASCADE;   -- the view device_health, recreated by apply
