-- Devices page: bans ever per device without reading the device's whole event history.
-- depends: 0001_schema
CREATE INDEX device_events_bans ON device_events (device_id) WHERE event = 'banned';
