-- Warm-first routing (issue 17): which of the owner's devices already talked with a contact, by
-- the contact's number (an index probe per contact when steps are activated).
-- depends: 1701_failover
CREATE INDEX device_warm_contacts_phone ON device_warm_contacts (phone);
