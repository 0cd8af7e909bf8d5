-- Webhook reads that grew with every delivery ever made (the outbox keeps delivered rows; the
-- message.status event alone writes ~3 a message): /metrics counted the backlog by a scan of the
-- whole outbox (1M rows: 72 ms a scrape), the endpoint list counted each endpoint's delivered rows
-- (1M: 185 ms) and an owner's delivery list, with no index by owner, read every tenant's rows to
-- find theirs (1M: 83 ms). The delivered count is now a counter on the endpoint, kept by the one
-- function that marks a delivery delivered (deliveries of one endpoint go one at a time, under its
-- lease, so the counter is never contended); the list reads the owner's newest rows by index.
-- depends: 2109_warm_contacts_who_wrote
ALTER TABLE webhook_endpoints ADD COLUMN delivered bigint NOT NULL DEFAULT 0;
UPDATE webhook_endpoints e
   SET delivered = (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'delivered');
COMMENT ON COLUMN webhook_endpoints.delivered IS 'How many of its deliveries were delivered (finish_webhook_delivery counts them).';

CREATE INDEX webhook_deliveries_user_recent ON webhook_deliveries (user_id, id DESC);
