-- Chats under their own names, so whatsapp_chats and whatsapp_messages can be the replaced system's
-- read-only faces (db/views/60_chats.sql): its columns (chat_name, chat_jid, message_id, message_text,
-- is_sent, is_read, timestamp) over these tables and the queue's sent messages.
--   chats          one conversation per device and chat JID (was the table whatsapp_chats)
--   chat_inbound   what the device's connection reported: messages received, or typed on the phone
--                  itself (from_me); the queue's own sends are broadcast_messages rows, never copied
-- depends: 1000_fleet_devices

ALTER TABLE whatsapp_chats RENAME TO chats;
ALTER SEQUENCE whatsapp_chats_id_seq RENAME TO chats_id_seq;
ALTER TABLE chats RENAME CONSTRAINT whatsapp_chats_pkey TO chats_pkey;
ALTER TABLE chats RENAME CONSTRAINT whatsapp_chats_device_id_chat_jid_key TO chats_device_id_chat_jid_key;
ALTER TABLE chats RENAME CONSTRAINT whatsapp_chats_unread_count_check TO chats_unread_count_check;
ALTER TABLE chats RENAME CONSTRAINT whatsapp_chats_user_id_fkey TO chats_user_id_fkey;
ALTER TABLE chats RENAME CONSTRAINT whatsapp_chats_device_id_fkey TO chats_device_id_fkey;
ALTER INDEX whatsapp_chats_recent RENAME TO chats_recent;
-- The operator's read mark: received messages up to it count as read (whatsapp_messages.is_read).
ALTER TABLE chats ADD COLUMN read_through timestamptz;
COMMENT ON TABLE chats IS
  'One conversation per device and chat JID: received messages open it, and so do the queue''s sends '
  '(record_outbound_chats). read_through is when the operator last read it. Read whatsapp_chats for the '
  'replaced system''s columns.';

ALTER TABLE whatsapp_messages RENAME TO chat_inbound;
ALTER SEQUENCE whatsapp_messages_id_seq RENAME TO chat_inbound_id_seq;
ALTER TABLE chat_inbound RENAME CONSTRAINT whatsapp_messages_pkey TO chat_inbound_pkey;
ALTER TABLE chat_inbound RENAME CONSTRAINT whatsapp_messages_device_id_wa_message_id_key TO chat_inbound_device_id_wa_message_id_key;
ALTER TABLE chat_inbound RENAME CONSTRAINT whatsapp_messages_message_type_check TO chat_inbound_message_type_check;
ALTER TABLE chat_inbound RENAME CONSTRAINT whatsapp_messages_user_id_fkey TO chat_inbound_user_id_fkey;
ALTER TABLE chat_inbound RENAME CONSTRAINT whatsapp_messages_device_id_fkey TO chat_inbound_device_id_fkey;
ALTER TABLE chat_inbound RENAME CONSTRAINT whatsapp_messages_chat_id_fkey TO chat_inbound_chat_id_fkey;
-- Never written: the queue's sends are read from the queue, not linked from here.
ALTER TABLE chat_inbound DROP COLUMN broadcast_message_id;
ALTER INDEX whatsapp_messages_chat RENAME TO chat_inbound_chat;
-- A received image's preview as WhatsApp sends it along (a small JPEG), shown in the chat view.
ALTER TABLE chat_inbound ADD COLUMN thumbnail bytea CHECK (octet_length(thumbnail) <= 65536);
COMMENT ON TABLE chat_inbound IS
  'What a device''s WhatsApp connection reported in its chats: messages received, or sent from the phone itself '
  '(from_me), once per device and WhatsApp id; received images keep their thumbnail. Read whatsapp_messages for '
  'the whole history with the queue''s sends and the replaced system''s columns.';

-- Chats for what the queue sent before chats were opened by sends (the last 30 days the chat view shows).
INSERT INTO chats (user_id, device_id, chat_jid, phone, last_message_at, last_message_preview)
SELECT DISTINCT ON (m.device_id, m.recipient_phone)
       m.user_id, m.device_id, m.recipient_phone || '@s.whatsapp.net', m.recipient_phone, m.sent_at,
       left(CASE WHEN m.message_type = 'image' THEN '📷 ' || coalesce(nullif(m.content, ''), 'Photo') ELSE m.content END, 200)
  FROM broadcast_messages m
 WHERE m.status = 'sent' AND m.device_id IS NOT NULL AND m.sent_at > now() - interval '30 days'
 ORDER BY m.device_id, m.recipient_phone, m.sent_at DESC
ON CONFLICT (device_id, chat_jid) DO UPDATE
   SET last_message_at = excluded.last_message_at, last_message_preview = excluded.last_message_preview
 WHERE chats.last_message_at IS NULL OR chats.last_message_at < excluded.last_message_at;

-- record_inbound_message takes the image thumbnail (a new parameter).
DROP FUNCTION IF EXISTS record_inbound_message(bigint, text, text, text, text, text, timestamptz, boolean, text, text);
-- chat_messages returns has_thumbnail (a new column).
DROP FUNCTION IF EXISTS chat_messages(bigint, bigint, integer, timestamptz, text);
