-- The monitoring page shows a page of the owner's devices, not the whole fleet: its two per-device
-- functions take the page's devices (db/functions/dashboard.sql). One definition each: the
-- signatures they replace go.
-- depends: 2140_hour_cap_from_the_ring

DROP FUNCTION IF EXISTS monitor_queue_depth(bigint);
DROP FUNCTION IF EXISTS monitor_device_load(bigint);
DROP FUNCTION IF EXISTS _device_queue_live(bigint);
