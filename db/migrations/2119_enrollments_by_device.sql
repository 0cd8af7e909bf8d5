-- Deleting a device sets its sequence enrollments' device to NULL (the foreign key's action), and
-- with no index by device that read every enrollment of every owner: 55-69 ms a device at 1M
-- enrollments, once per device of a fleet's clean-up. Only enrollments that name a device.
-- depends: 2118_retention_setting_meaning
CREATE INDEX sequence_enrollments_device ON sequence_enrollments (device_id) WHERE device_id IS NOT NULL;
