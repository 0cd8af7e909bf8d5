-- The WhatsApp Web view's own reads and the image send. The chat list, history, read marks and
-- text send are the chats family's (chats.sql); these add the device header, one chat's
-- identity, the 30-day searchable list and images with a caption.

CREATE OR REPLACE FUNCTION chat_view_device(p_user_id bigint, p_device_id bigint)
RETURNS TABLE (id bigint, device_name text, phone text, status text)
LANGUAGE sql STABLE AS $$
  SELECT d.id, d.device_name, d.phone, d.status FROM user_devices d WHERE d.id = p_device_id AND d.user_id = p_user_id
$$;
COMMENT ON FUNCTION chat_view_device(bigint, bigint) IS 'The chat view''s header: the owner''s device, or no row (404).';

CREATE OR REPLACE FUNCTION chat_view_chat(p_user_id bigint, p_chat_id bigint)
RETURNS TABLE (id bigint, device_id bigint, phone text, name text)
LANGUAGE sql STABLE AS $$
  SELECT c.id, c.device_id, c.phone, c.name FROM chats c WHERE c.id = p_chat_id AND c.user_id = p_user_id
$$;
COMMENT ON FUNCTION chat_view_chat(bigint, bigint) IS 'One of the owner''s chats (its device and number), or no row (404).';

CREATE OR REPLACE FUNCTION chat_search(p_user_id bigint, p_device_id bigint, p_query text DEFAULT NULL,
                                       p_days integer DEFAULT 30, p_limit integer DEFAULT 100)
RETURNS TABLE (id bigint, phone text, name text, last_message_at timestamptz, last_message_preview text,
               unread_count integer, lead_name text)
LANGUAGE sql STABLE AS $$
  SELECT c.id, c.phone, c.name, c.last_message_at, c.last_message_preview, c.unread_count, lead.name
    FROM chats c
    LEFT JOIN LATERAL (
      SELECT l.name FROM leads l WHERE l.user_id = c.user_id AND l.phone = c.phone
       ORDER BY l.device_id = c.device_id DESC NULLS LAST, l.id LIMIT 1) lead ON true
   WHERE c.user_id = p_user_id AND c.device_id = p_device_id
     AND c.last_message_at >= now() - make_interval(days => least(greatest(p_days, 1), 365))
     AND (coalesce(btrim(p_query), '') = ''
          OR strpos(lower(concat_ws(' ', c.name, lead.name, c.phone, c.last_message_preview)), lower(btrim(p_query))) > 0)
   ORDER BY c.last_message_at DESC, c.id DESC
   LIMIT least(greatest(p_limit, 1), 500)
$$;
COMMENT ON FUNCTION chat_search(bigint, bigint, text, integer, integer) IS
  'The chat view''s list: the device''s chats with a message in the last p_days days, newest first, optionally '
  'only those whose name, lead name, number or last message contains p_query (case-insensitive).';

CREATE OR REPLACE FUNCTION send_chat_image(p_user_id bigint, p_device_id bigint, p_phone text,
                                           p_caption text, p_media_id bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  IF p_media_id IS NULL THEN
    RAISE EXCEPTION 'an image message needs a stored image' USING ERRCODE = '22023';
  END IF;
  PERFORM _require_own_media(p_user_id, p_media_id);
  IF length(coalesce(p_caption, '')) > 1024 THEN
    RAISE EXCEPTION 'a caption has at most 1024 characters' USING ERRCODE = '22023';
  END IF;
  -- The chat's preview shows the photo mark.
  RETURN _queue_chat_message(p_user_id, p_device_id, p_phone, 'image', coalesce(btrim(p_caption), ''),
                             media_path(p_media_id, NULL), '📷 ' || coalesce(nullif(btrim(p_caption), ''), 'Photo'));
END $$;
COMMENT ON FUNCTION send_chat_image(bigint, bigint, text, text, bigint) IS
  'Queues one of the owner''s stored images with an optional caption typed in the chat view (as send_chat_message '
  'does for text). Returns the queued message id.';
