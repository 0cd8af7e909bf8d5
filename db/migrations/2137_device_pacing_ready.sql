-- The devices whose next send is due, read off their pacing by time. A claim over a large backlog
-- looked at every device its sender leases; in a paced fleet most of them wait out their delays
-- (soak --quick, 3,000 devices on two senders: 403 claims a minute of 12 rows each, 8.4 ms a claim,
-- 2.6 ms of it probing 1,500 pacing rows to find the ~20 ready). The claim now reads the ready ones
-- here (claim_messages). Only the claim and a release move next_send_at, so only their updates of
-- a pacing row add an entry here; the others (counts, marks, outcomes) stay HOT.
-- depends: 2136_device_send_hours

CREATE INDEX device_pacing_next_send ON device_pacing (next_send_at);
