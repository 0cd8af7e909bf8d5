-- Warm-first routing (issue 17): which of the owner's devices already talked with a contact, by
-- the contact's number (an index probe per contact when steps are activated). And the text of
-- failover's skip reason (migration 1701 added the value).
-- depends: 1701_failover
CREATE INDEX device_warm_contacts_phone ON device_warm_contacts (phone);

INSERT INTO skip_reasons (code, message, meaning) VALUES
  ('no_failover_device', 'skipped: no other device with room to fail over to',
   'its device was lost (banned, logged out, offline past the grace), its campaign or sequence has failover on, '
   'and no other online device of the owner had room');
