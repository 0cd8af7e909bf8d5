-- The chat history under the replaced system's names and columns, so operators' SQL keeps working:
-- whatsapp_chats (chat_name, last_message_text, last_message_time) over chats, and whatsapp_messages
-- (chat_jid, message_id, message_text, is_sent, is_read, timestamp as Unix seconds) over what the
-- connections reported (chat_inbound) and what the queue sent (broadcast_messages). Read-only: the
-- functions of db/functions/chats.sql write.

CREATE VIEW whatsapp_chats (id, user_id, device_id, chat_jid, chat_name, phone, name, is_group,
                            last_message_text, last_message_time, last_message_preview, last_message_at,
                            unread_count, read_through) AS
SELECT c.id, c.user_id, c.device_id, c.chat_jid,
       coalesce(nullif(c.name, ''), c.phone, split_part(c.chat_jid, '@', 1)),
       c.phone, c.name, c.chat_jid LIKE '%@g.us',
       c.last_message_preview, c.last_message_at, c.last_message_preview, c.last_message_at,
       c.unread_count, c.read_through
  FROM chats c;
COMMENT ON VIEW whatsapp_chats IS
  'Read-only (the replaced system''s table, now a view over chats). One conversation per device and chat_jid: '
  'chat_name (the contact''s WhatsApp name, else the number), last_message_text / last_message_time (also as '
  'last_message_preview / last_message_at), unread_count, and read_through, when the operator last read it. '
  'Chats open on the first message either way, the queue''s sends included.';

CREATE TRIGGER whatsapp_chats_read_only INSTEAD OF INSERT OR UPDATE OR DELETE ON whatsapp_chats
  FOR EACH ROW EXECUTE FUNCTION refuse_view_write();

CREATE VIEW whatsapp_messages (source, id, user_id, device_id, chat_id, chat_jid, message_id, sender_jid,
                               is_sent, message_type, message_text, media_url, status, is_read, "timestamp",
                               sent_at, delivered_at, read_at) AS
SELECT 'chat', m.id, m.user_id, m.device_id, m.chat_id, c.chat_jid, m.wa_message_id, m.sender_jid,
       m.from_me, m.message_type, m.content, m.media_url,
       CASE WHEN m.from_me THEN 'sent' ELSE 'received' END,
       CASE WHEN m.from_me THEN m.read_at IS NOT NULL ELSE coalesce(m.sent_at <= c.read_through, false) END,
       extract(epoch FROM m.sent_at)::bigint, m.sent_at, m.delivered_at, m.read_at
  FROM chat_inbound m
  JOIN chats c ON c.id = m.chat_id
UNION ALL
SELECT 'queue', b.id, b.user_id, b.device_id, c.id, c.chat_jid, b.wa_message_id, d.jid,
       true, b.message_type, b.content, b.media_url, b.status, b.read_at IS NOT NULL,
       extract(epoch FROM b.sent_at)::bigint, b.sent_at, b.delivered_at, b.read_at
  FROM broadcast_messages b
  JOIN chats c ON c.device_id = b.device_id AND c.phone = b.recipient_phone
  JOIN user_devices d ON d.id = b.device_id
 WHERE b.status = 'sent';
COMMENT ON VIEW whatsapp_messages IS
  'Read-only (the replaced system''s table, now a view). Every message of every chat: received or sent from the '
  'phone (source chat, rows of chat_inbound) and sent by campaigns, sequences and the chat view (source queue, '
  'rows of broadcast_messages with status sent). (source, id) is the key; message_id is the WhatsApp id, '
  'message_text the text or caption, is_sent true for what the device sent, is_read the recipient''s read '
  'receipt for a sent message and the operator''s read mark (whatsapp_chats.read_through) for a received one, '
  '"timestamp" Unix seconds as the replaced system stored it (sent_at is the same instant as timestamptz).';
CREATE TRIGGER whatsapp_messages_read_only INSTEAD OF INSERT OR UPDATE OR DELETE ON whatsapp_messages
  FOR EACH ROW EXECUTE FUNCTION refuse_view_write();
