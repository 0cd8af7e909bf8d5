-- Receipts that arrive before their message is recorded as sent. WhatsApp can deliver a message
-- (and the phone report it read) before the sender's completion commits: the receipt names a
-- WhatsApp id no row carries yet. Kept here, applied by complete_messages, purged after a day
-- (receipts of messages typed on the phone itself never find a row).
CREATE TABLE early_receipts (
  device_id     bigint NOT NULL,
  wa_message_id text NOT NULL,
  kind          text NOT NULL CONSTRAINT early_receipts_kind CHECK (kind IN ('delivered', 'read')),
  received_at   timestamptz NOT NULL,
  PRIMARY KEY (device_id, wa_message_id, kind)
);
CREATE INDEX early_receipts_received ON early_receipts (received_at);
COMMENT ON TABLE early_receipts IS
  'Receipts whose message was not yet recorded as sent; applied when it is (complete_messages), purged after a day.';
