-- _analyze_queue_if_grown takes whether to wait for the table's lock: the writer waits (its rows'
-- statistics commit with them), the claim never does. Its one-argument form goes.
-- depends: 2105_queue_due_at_back

DROP FUNCTION IF EXISTS _analyze_queue_if_grown(bigint);
