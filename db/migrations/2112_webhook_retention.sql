-- The webhook outbox kept every delivered row for good: ~3 a message for a subscriber to
-- message.status, 7M rows a day at the full fleet. Delivered rows now go after
-- webhook_retention_days (purge_history, hourly: an hour's deliveries a run, found by this index);
-- pending and dead ones stay until delivered or redelivered, and each endpoint's delivered count
-- (webhook_endpoints.delivered) keeps the ones purged.
-- depends: 2111_rollup_totals
INSERT INTO settings (name, value, meaning) VALUES
  ('webhook_retention_days', 7,
   'delivered webhook deliveries are kept this many days (purge_history); pending and dead ones until handled');
CREATE INDEX webhook_deliveries_delivered ON webhook_deliveries (delivered_at) WHERE status = 'delivered';
