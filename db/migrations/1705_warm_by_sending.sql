-- A contact the device has sent to is warm too (WhatsApp keeps the relationship: the reach-out
-- timelock refuses only contacts the number never talked with); wrote_at says whether and when it
-- wrote to the device (the health score's replies).
-- depends: 1704_sequence_failover_doc
ALTER TABLE device_warm_contacts ADD COLUMN wrote_at timestamptz;
UPDATE device_warm_contacts SET wrote_at = since;
COMMENT ON COLUMN device_warm_contacts.wrote_at IS 'When the contact first wrote to the device; NULL: only written to.';
COMMENT ON TABLE device_warm_contacts IS
  'Contacts each device has talked with (it sent to them, or they wrote to it): a timelocked device still sends to '
  'these. Filled by record_inbound_message and the completion of sends (_record_send_outcomes).';
