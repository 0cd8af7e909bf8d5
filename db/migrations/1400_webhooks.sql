-- Outbound webhooks: each owner's endpoints (URL, signing secret, event filter) and the outbox,
-- one row per endpoint and event, written in the same transaction as the event itself
-- (_emit_webhook_event), so nothing is sent before its transaction commits and nothing is lost.
-- The deliverer process (python -m webhooks) sends each endpoint's rows in id order.
-- depends: 1001_chat_history

CREATE TABLE webhook_endpoints (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id      bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  url          text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2048),
  secret       text NOT NULL CHECK (length(secret) >= 32),
  events       text[] NOT NULL CHECK (cardinality(events) > 0),   -- webhook_event_types() checks the names
  description  text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
  enabled      boolean NOT NULL DEFAULT true,
  created_at   timestamptz NOT NULL DEFAULT now(),
  -- A deliverer sending this endpoint's head row holds it until then (one in flight per endpoint).
  leased_until timestamptz
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id);

CREATE TABLE webhook_deliveries (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,   -- event order per endpoint
  endpoint_id      bigint NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
  user_id          bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  event_id         uuid NOT NULL,
  event_type       text NOT NULL,
  payload          jsonb NOT NULL,
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  -- Retries go on until retry_from + the deliverer's retry window; a manual redelivery resets it.
  retry_from       timestamptz NOT NULL DEFAULT now(),
  last_attempt_at  timestamptz,
  last_status_code integer,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_id),
  CONSTRAINT webhook_deliveries_delivered_iff_delivered_at CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_head ON webhook_deliveries (endpoint_id, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_user_dead ON webhook_deliveries (user_id, id DESC) WHERE status = 'dead';
COMMENT ON TABLE webhook_endpoints IS
  'An owner''s outbound webhook endpoints: URL (public addresses only, checked when saved and at every delivery), '
  'HMAC-SHA256 signing secret, the event types it receives, enabled.';
COMMENT ON TABLE webhook_deliveries IS
  'The webhook outbox: one row per endpoint and event, written in the event''s own transaction. pending until '
  'answered 2xx (delivered) or retried past the retry window (dead: the dead-letter list, redelivered by hand).';
