-- Scheduled work. One list, app_jobs(), feeds both pg_cron (scripts/apply.py schedules it) and the
-- Procfile `clock` process (which runs the same commands where pg_cron is not installed).

CREATE OR REPLACE FUNCTION app_jobs()
RETURNS TABLE (name text, schedule text, command text)
LANGUAGE sql STABLE AS $$
  VALUES
    ('purge-history', '17 * * * *', 'SELECT purge_history()'),
    ('message-history', '41 * * * *', 'SELECT maintain_message_history()'),
    ('dispatch-stuck', '* * * * *', 'SELECT recover_stuck()'),
    ('dispatch-skip', '* * * * *', 'SELECT skip_undeliverable()'),
    ('queue-counts', '* * * * *', 'SELECT fold_device_queue_counts()'),
    ('early-receipts', '*/5 * * * *', 'SELECT apply_stranded_receipts()'),
    ('device-health', '* * * * *', 'SELECT device_health_tick()'),
    ('campaigns', '* * * * *', 'CALL run_campaigns()'),
    ('lead-imports', '* * * * *', 'CALL run_lead_imports()'),
    ('sequence-tick', '* * * * *', 'CALL sequence_tick()'),
    ('sequence-sweep', '*/10 * * * *', 'SELECT sequence_enrollment_sweep()')
  UNION ALL   -- the fan-out's further lanes, a runner each beside the campaign tick
  SELECT 'campaign-fanout-' || g, '* * * * *', 'CALL expand_campaigns()'
    FROM generate_series(2, setting('campaign_fanout_lanes')::integer) g
$$;
COMMENT ON FUNCTION app_jobs() IS
  'The scheduled jobs: name, cron schedule (minute granularity) and the SQL each runs (a fan-out runner per '
  'campaign_fanout_lanes beyond the first: a change of that setting reaches pg_cron at the next apply, the clock '
  'at its next start).';

CREATE OR REPLACE FUNCTION purge_history()
RETURNS void LANGUAGE sql AS $$
  DELETE FROM login_attempts WHERE attempted_at < now() - interval '1 day';
  DELETE FROM early_receipts WHERE received_at < now() - interval '1 day';
  -- At most 1M a run (the full fleet delivers ~300k an hour): an outbox kept for months before this
  -- job existed is caught up over hours, not in one transaction.
  DELETE FROM webhook_deliveries WHERE id IN (
    SELECT d.id FROM webhook_deliveries d
     WHERE d.status = 'delivered' AND d.delivered_at < now() - make_interval(days => setting('webhook_retention_days')::int)
     ORDER BY d.delivered_at LIMIT 1000000);
  -- Received chat messages go with the sent ones (message_retention_days, by the time they were
  -- sent: a chat keeps one window of both sides); device events but bans after 90 days (device
  -- health reads 30 days at most, and bans ever). At most 1M each a run, as above.
  -- (The ids as an array: probed by key whatever the planner makes of the hour's share of the table.)
  DELETE FROM chat_inbound WHERE id = ANY (array(
    SELECT i.id FROM chat_inbound i
     WHERE i.sent_at < now() - make_interval(days => setting('message_retention_days')::int)
     ORDER BY i.sent_at LIMIT 1000000));
  DELETE FROM device_events WHERE id = ANY (array(
    SELECT e.id FROM device_events e
     WHERE e.event <> 'banned' AND e.at < now() - interval '90 days'
     ORDER BY e.at LIMIT 1000000));
  -- A sender silent for a day was killed or lost its host (a clean exit removes itself): /healthz
  -- and the monitoring page stop counting it. One that was only hung registers again at its next
  -- heartbeat (sender/lease_keeper.py).
  DELETE FROM senders WHERE heartbeat_at < now() - interval '1 day';
$$;
COMMENT ON FUNCTION purge_history() IS
  'Drops bookkeeping no cap or chart reads any more (login attempts and receipts '
  'that never found their message after 1), delivered webhook deliveries after webhook_retention_days, received '
  'chat messages after message_retention_days and device events other than bans after 90 days (at most 1M of each '
  'a run), and senders silent for a day.';
