"""The webhook deliverer: sends the outbox (webhook_deliveries) to the owners' endpoints."""
