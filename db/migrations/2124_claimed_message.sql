-- A claim collects its rows before returning them (db/functions/queue.sql, claim_messages): rows a
-- RETURN QUERY had produced stayed in the function's result when its statement then failed and was
-- taken again (a serialization failure), so a sender got them twice and sent them twice.
-- depends: 2123_warm_contacts_in_chats
CREATE TYPE claimed_message AS (
  id bigint, device_id bigint, user_id bigint, recipient_phone text, recipient_name text, message_type text,
  content text, media_url text, claimed_at timestamptz);
COMMENT ON TYPE claimed_message IS 'A message a claim took for its sender to send: claim_messages'' rows.';
