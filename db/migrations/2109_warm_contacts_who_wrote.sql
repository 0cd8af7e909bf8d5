-- A device's reply rate (_device_health: contacts who first wrote in the last 48 hours) counted
-- them among all of the device's warm contacts, and every number a device ever sent to is one: at
-- 800 sends a day a device knows ~150k numbers within half a year, and the owner's device page read
-- all of them for each device (20 such devices: 250 ms; the fleet's device_health view: ~40 s).
-- Only the few who wrote are in this index, so the count reads those of the last 48 hours and a
-- send's first contact (wrote_at NULL) does not touch it.
-- depends: 2108_lead_import_lanes
CREATE INDEX device_warm_contacts_wrote ON device_warm_contacts (device_id, wrote_at) WHERE wrote_at IS NOT NULL;
