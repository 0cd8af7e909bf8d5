-- message_queue_due_at comes back (dropped by 2101): the claim's probe of message_queue_due per
-- leased device that replaced it made an idle claim of a sender with 1,550 devices cost 1.5 ms
-- instead of 0.13, and 11 ms instead of 0.35 over a drained queue's dead index entries (the full
-- dispatch benchmark's idle wake-up p99: 79 ms); a drain of 465k messages took 12 % longer. Reading
-- due rows in time order finds the few devices with due work at the cost of one index insertion
-- per queued row (~7 % of a fan-out).
-- depends: 2104_queue_statistics_on_keys

CREATE INDEX message_queue_due_at ON message_queue (scheduled_at) WHERE status = 'pending' AND NOT held;
