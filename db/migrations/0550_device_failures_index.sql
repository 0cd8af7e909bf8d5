-- Devices page: failed sends per device in the last 24 hours read only that device's failures.
-- depends: 0001_schema
CREATE INDEX broadcast_messages_device_failed ON broadcast_messages (device_id, failed_at) WHERE status = 'failed';
