-- Chats: inbound messages into chats / chat_inbound, the chats the queue's sends open, replies and
-- opt-outs, and the SQL behind the dashboard's chat view. A chat's outgoing messages are not copied:
-- they are the broadcast_messages rows of that device and number (one place for a message's state).
-- whatsapp_chats / whatsapp_messages (db/views/60_chats.sql) show both under the replaced system's columns.

-- Identities --------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION jid_phone(p_jid text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_user   text := split_part(split_part(p_jid, '@', 1), ':', 1);
  v_server text := split_part(p_jid, '@', 2);
  v_pn     text;
BEGIN
  IF v_server = 's.whatsapp.net' AND v_user ~ '^[1-9][0-9]{6,14}$' THEN
    RETURN v_user;
  END IF;
  -- whatsmeow learns lid -> phone pairs as it meets them; its table exists once neonize ran here.
  IF v_server = 'lid' AND to_regclass('whatsmeow_lid_map') IS NOT NULL THEN
    EXECUTE 'SELECT pn FROM whatsmeow_lid_map WHERE lid = $1' INTO v_pn USING v_user;
    IF v_pn ~ '^[1-9][0-9]{6,14}$' THEN
      RETURN v_pn;
    END IF;
  END IF;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION jid_phone(text) IS
  'The phone number (digits) behind a WhatsApp JID: user@s.whatsapp.net directly, an @lid identity through '
  'whatsmeow_lid_map when known; NULL for groups and unknown identities.';

CREATE OR REPLACE FUNCTION _is_opt_out_text(p_text text)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT upper(regexp_replace(coalesce(p_text, ''), '^[[:space:][:punct:]]+|[[:space:][:punct:]]+$', '', 'g'))
         IN ('STOP', 'UNSUBSCRIBE', 'BERHENTI')
$$;
COMMENT ON FUNCTION _is_opt_out_text(text) IS
  'True when a whole message asks to stop: STOP, UNSUBSCRIBE or BERHENTI, any case, surrounding punctuation ignored.';

-- Replies and opt-outs ----------------------------------------------------------------------
CREATE OR REPLACE FUNCTION _stop_sequences_if_possible(p_user_id bigint, p_phone text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- The sequences family stops enrollments itself when it is installed; without it the lead's
  -- replied_at / the opt-out row is what its activation checks.
  IF to_regprocedure('stop_sequences_for_reply(bigint, text)') IS NOT NULL THEN
    EXECUTE 'SELECT stop_sequences_for_reply($1, $2)' USING p_user_id, p_phone;
  END IF;
END $$;
COMMENT ON FUNCTION _stop_sequences_if_possible(bigint, text) IS
  'Calls stop_sequences_for_reply(user, phone) when the sequences functions exist; otherwise does nothing.';

CREATE OR REPLACE FUNCTION _mark_lead_replied(p_user_id bigint, p_phone text, p_at timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_leads integer;
BEGIN
  UPDATE leads SET replied_at = greatest(replied_at, p_at), updated_at = now()
   WHERE user_id = p_user_id AND phone = p_phone;
  GET DIAGNOSTICS v_leads = ROW_COUNT;
  -- A lead's new replied_at stops its sequences by trigger (leads_sequence_changes); a number that
  -- is no lead's is stopped here.
  IF v_leads = 0 THEN
    PERFORM _stop_sequences_if_possible(p_user_id, p_phone);
  END IF;
  IF v_leads > 0 THEN
    PERFORM _emit_webhook_event(p_user_id, 'lead.replied', jsonb_build_object('phone', p_phone, 'at', p_at));
  END IF;
  RETURN v_leads;
END $$;
COMMENT ON FUNCTION _mark_lead_replied(bigint, text, timestamptz) IS
  'A number wrote to the owner: sets replied_at on the owner''s leads with that phone (on every device) and '
  'stops its sequences; a lead.replied webhook event when it is a lead. Returns the number of leads marked.';

CREATE OR REPLACE FUNCTION opt_out_phone(p_user_id bigint, p_phone text, p_reason text DEFAULT 'manual')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_skipped integer;
        v_new boolean;
BEGIN
  IF p_phone IS NULL OR p_phone !~ '^[1-9][0-9]{6,14}$' THEN
    RAISE EXCEPTION 'phone must be digits with the country code first, got "%"', p_phone USING ERRCODE = '22023';
  END IF;
  INSERT INTO opt_outs (user_id, phone, reason) VALUES (p_user_id, p_phone, coalesce(p_reason, ''))
  ON CONFLICT (user_id, phone) DO NOTHING
  RETURNING true INTO v_new;
  IF v_new THEN
    PERFORM _emit_webhook_event(p_user_id, 'lead.opted_out',
                               jsonb_build_object('phone', p_phone, 'reason', coalesce(p_reason, '')));
  END IF;
  -- Campaign and sequence messages still waiting are dropped; manual chat messages stay (the
  -- operator may confirm the opt-out). Found by key: the owner's campaigns that can still hold
  -- waiting messages with this number, and this number's enrollments. No index leads with the
  -- number (one would cost every fan-out a write), and asked for it alone the queue read all of
  -- its campaign and step messages: 36 ms a STOP reply with 1M waiting.
  v_skipped := _skip_messages(array(
    SELECT m.id FROM broadcast_messages m
     WHERE (m.campaign_id = ANY (array(SELECT c.id FROM campaigns c
                                        WHERE c.user_id = p_user_id AND c.status NOT IN ('finished', 'failed', 'cancelled')))
            OR m.enrollment_id = ANY (array(SELECT e.id FROM sequence_enrollments e
                                             WHERE e.user_id = p_user_id AND e.contact_phone = p_phone)))
       AND m.recipient_phone = p_phone AND m.status = 'pending' AND m.user_id = p_user_id), 'opted_out');
  PERFORM _stop_sequences_if_possible(p_user_id, p_phone);
  PERFORM notify_user(p_user_id, 'opt_out', jsonb_build_object('phone', p_phone, 'skipped', v_skipped));
  RETURN v_skipped;
END $$;
COMMENT ON FUNCTION opt_out_phone(bigint, text, text) IS
  'Puts a number on the owner''s opt-out list (idempotent), skips its pending campaign and sequence messages '
  'and stops its sequences; a lead.opted_out webhook event when newly listed. Every later campaign and sequence '
  'excludes opt_outs. Returns messages skipped.';

CREATE OR REPLACE FUNCTION remove_opt_out(p_user_id bigint, p_phone text)
RETURNS boolean LANGUAGE sql AS $$
  WITH gone AS (DELETE FROM opt_outs WHERE user_id = p_user_id AND phone = p_phone RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM gone)
$$;
COMMENT ON FUNCTION remove_opt_out(bigint, text) IS 'Takes a number off the owner''s opt-out list (it asked to receive again).';

CREATE OR REPLACE FUNCTION _is_opted_out(p_user_id bigint, p_phone text)
RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM opt_outs WHERE user_id = p_user_id AND phone = p_phone)
$$;
COMMENT ON FUNCTION _is_opted_out(bigint, text) IS 'True when the number is on the owner''s opt-out list.';

-- Inbound -----------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION record_inbound_message(p_device_id bigint, p_wa_message_id text, p_chat_jid text,
                                                  p_sender_jid text, p_sender_phone text, p_content text,
                                                  p_sent_at timestamptz, p_from_me boolean DEFAULT false,
                                                  p_message_type text DEFAULT 'text', p_push_name text DEFAULT '',
                                                  p_thumbnail bytea DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_user    bigint;
  v_group   boolean := p_chat_jid LIKE '%@g.us';
  v_phone   text;
  v_chat    chats%ROWTYPE;
  v_msg     bigint;
  v_type    text := CASE WHEN p_message_type IN ('text', 'image') THEN p_message_type ELSE 'other' END;
  v_content text := left(coalesce(p_content, ''), 65536);
  -- A thumbnail past the column's limit is dropped, not the message.
  v_thumb   bytea := CASE WHEN octet_length(p_thumbnail) <= 65536 THEN p_thumbnail END;
BEGIN
  SELECT user_id INTO v_user FROM user_devices WHERE id = p_device_id;
  IF v_user IS NULL THEN
    RETURN NULL;  -- the device was deleted while the event was in flight
  END IF;
  IF NOT v_group THEN
    v_phone := coalesce(CASE WHEN p_sender_phone ~ '^[1-9][0-9]{6,14}$' THEN p_sender_phone END,
                        jid_phone(p_chat_jid), CASE WHEN NOT p_from_me THEN jid_phone(p_sender_jid) END);
  END IF;

  -- One chat per person: an @lid chat whose number is known is filed under the number's JID.
  INSERT INTO chats AS c (user_id, device_id, chat_jid, phone, name)
  VALUES (v_user, p_device_id,
          CASE WHEN v_phone IS NOT NULL THEN v_phone || '@s.whatsapp.net' ELSE p_chat_jid END,
          v_phone, CASE WHEN p_from_me THEN '' ELSE coalesce(p_push_name, '') END)
  ON CONFLICT (device_id, chat_jid) DO UPDATE
     SET name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE c.name END
  RETURNING * INTO v_chat;

  INSERT INTO chat_inbound (user_id, device_id, chat_id, wa_message_id, from_me, sender_jid,
                            message_type, content, thumbnail, sent_at)
  VALUES (v_user, p_device_id, v_chat.id, p_wa_message_id, p_from_me, p_sender_jid, v_type, v_content,
          CASE WHEN v_type = 'image' THEN v_thumb END, p_sent_at)
  ON CONFLICT (device_id, wa_message_id) DO NOTHING
  RETURNING id INTO v_msg;
  IF v_msg IS NULL THEN
    RETURN NULL;  -- delivered twice: already stored, already counted
  END IF;

  -- A contact who wrote is warm from now on: a reach-out timelock does not hold messages to it.
  UPDATE chats
     SET last_message_at = greatest(last_message_at, p_sent_at),
         last_message_preview = CASE WHEN last_message_at IS NULL OR p_sent_at >= last_message_at
                                     THEN _chat_preview(v_type, v_content) ELSE last_message_preview END,
         unread_count = unread_count + CASE WHEN p_from_me THEN 0 ELSE 1 END,
         talked_at = coalesce(talked_at, CASE WHEN NOT p_from_me AND v_phone IS NOT NULL THEN now() END),
         wrote_at = coalesce(wrote_at, CASE WHEN NOT p_from_me AND v_phone IS NOT NULL THEN p_sent_at END)
   WHERE id = v_chat.id
  RETURNING * INTO v_chat;

  IF NOT p_from_me THEN
    PERFORM _emit_webhook_event(v_user, 'message.received', jsonb_build_object(
      'device_id', p_device_id, 'chat_jid', v_chat.chat_jid, 'phone', v_phone, 'name', v_chat.name,
      'wa_message_id', p_wa_message_id, 'message_type', v_type, 'content', v_content, 'sent_at', p_sent_at));
  END IF;
  IF NOT p_from_me AND v_phone IS NOT NULL THEN
    PERFORM _mark_lead_replied(v_user, v_phone, p_sent_at);
    IF _is_opt_out_text(v_content) THEN
      PERFORM opt_out_phone(v_user, v_phone, 'replied ' || upper(btrim(v_content)));
    END IF;
  END IF;

  PERFORM notify_user(v_user, 'message', jsonb_build_object(
    'device_id', p_device_id, 'chat_id', v_chat.id, 'message_id', v_msg, 'phone', v_phone,
    'name', v_chat.name, 'from_me', p_from_me, 'content', left(v_content, 500), 'sent_at', p_sent_at,
    'unread_count', v_chat.unread_count));
  RETURN v_msg;
END $$;
COMMENT ON FUNCTION record_inbound_message(bigint, text, text, text, text, text, timestamptz, boolean, text, text, bytea) IS
  'Stores a message the device received (or one its phone sent, p_from_me) in its chat, once per device and '
  'WhatsApp message id (a repeat returns NULL and changes nothing); an image keeps p_thumbnail (JPEG, up to 64 KB) '
  'and its caption. A received message makes its sender a warm contact of the device (chats.talked_at, wrote_at); a reply marks the owner''s leads replied and stops their sequences; STOP / UNSUBSCRIBE / '
  'BERHENTI opts the number out. Pushes a live "message" event and, when received, a message.received webhook event.';

-- The replaced system's chat tables are read-only views (db/views/60_chats.sql) ------------
CREATE OR REPLACE FUNCTION refuse_view_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is a read-only view: chats change through the functions of db/functions/chats.sql',
    TG_TABLE_NAME USING ERRCODE = '55000';
END $$;
COMMENT ON FUNCTION refuse_view_write() IS
  'INSTEAD OF trigger: refuses writes to a read-only view (whatsapp_chats, whatsapp_messages) with the reason.';

-- The chat view -----------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION _chat_preview(p_message_type text, p_content text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT left(CASE WHEN p_message_type = 'image' THEN '📷 ' || coalesce(nullif(btrim(p_content), ''), 'Photo')
                   ELSE coalesce(p_content, '') END, 200)
$$;
COMMENT ON FUNCTION _chat_preview(text, text) IS
  'A message as the chat list previews it: its text, or "📷 caption" ("📷 Photo") for an image; 200 characters at most.';

CREATE OR REPLACE FUNCTION chat_messages(p_user_id bigint, p_chat_id bigint, p_limit integer DEFAULT 50,
                                         p_before_at timestamptz DEFAULT NULL, p_before_key text DEFAULT NULL)
RETURNS TABLE (key text, source text, id bigint, from_me boolean, message_type text, content text,
               media_url text, has_thumbnail boolean, at timestamptz, status text, error_message text,
               delivered_at timestamptz, read_at timestamptz)
LANGUAGE sql STABLE AS $$
  WITH chat AS (SELECT c.id, c.device_id, c.phone FROM chats c WHERE c.id = p_chat_id AND c.user_id = p_user_id),
  from_queue AS (
    SELECT b.* FROM broadcast_messages b JOIN chat ON b.device_id = chat.device_id AND b.recipient_phone = chat.phone
     WHERE b.status IN ('sent', 'failed', 'skipped')               -- message_history_device_phone
    UNION ALL
    -- The live rows have no index by number: the device's (message_queue_due and _inflight), this number's kept.
    SELECT b.* FROM broadcast_messages b JOIN chat ON b.device_id = chat.device_id AND b.recipient_phone = chat.phone
     WHERE (b.status = 'pending' OR b.status = 'queued')
  ),
  -- The page's received messages in chat_inbound_chat's order, cut at the page: a group chat holds
  -- tens of thousands, and merged with the sent ones before the cut each page read and sorted them
  -- all (100k: 49 ms). (Messages sent to one number are few: they are merged whole.)
  received AS (
    SELECT m.* FROM chat_inbound m
     WHERE m.chat_id = (SELECT chat.id FROM chat)
       AND (p_before_at IS NULL OR (m.sent_at <= p_before_at
                                    AND (m.sent_at, 'in:' || lpad(m.id::text, 19, '0')) < (p_before_at, coalesce(p_before_key, ''))))
     ORDER BY m.sent_at DESC, m.id DESC
     LIMIT least(greatest(p_limit, 1), 200)
  ),
  merged AS (
    SELECT 'in:' || lpad(m.id::text, 19, '0') AS key, 'chat'::text AS source, m.id, m.from_me, m.message_type,
           m.content, m.media_url, m.thumbnail IS NOT NULL AS has_thumbnail, m.sent_at AS at,
           CASE WHEN m.from_me THEN 'sent' ELSE 'received' END AS status,
           NULL::text AS error_message, m.delivered_at, m.read_at
      FROM received m
    UNION ALL
    SELECT 'out:' || lpad(b.id::text, 19, '0'), 'queue', b.id, true, b.message_type, b.content, b.media_url, false,
           coalesce(b.sent_at, b.failed_at, b.created_at), b.status, b.error_message, b.delivered_at, b.read_at
      FROM from_queue b
  )
  SELECT merged.key, merged.source, merged.id, merged.from_me, merged.message_type, merged.content,
         merged.media_url, merged.has_thumbnail, merged.at, merged.status, merged.error_message,
         merged.delivered_at, merged.read_at
    FROM merged
   WHERE p_before_at IS NULL OR (merged.at, merged.key) < (p_before_at, coalesce(p_before_key, ''))
   ORDER BY merged.at DESC, merged.key DESC
   LIMIT least(greatest(p_limit, 1), 200)
$$;
COMMENT ON FUNCTION chat_messages(bigint, bigint, integer, timestamptz, text) IS
  'A chat''s history newest first: what the connection reported (source chat; has_thumbnail for a received image '
  'with its preview, see chat_thumbnail) merged with the queue''s messages to that number from that device '
  '(source queue, campaigns and sequences included, with status, delivered_at, read_at). Page backwards with the '
  'last row''s (at, key) as (p_before_at, p_before_key). Another owner''s chat gives no rows.';

CREATE OR REPLACE FUNCTION chat_thumbnail(p_user_id bigint, p_message_id bigint)
RETURNS bytea LANGUAGE sql STABLE AS $$
  SELECT m.thumbnail FROM chat_inbound m WHERE m.id = p_message_id AND m.user_id = p_user_id
$$;
COMMENT ON FUNCTION chat_thumbnail(bigint, bigint) IS
  'The JPEG preview of one of the owner''s received images (chat_messages source chat); NULL when there is none.';

CREATE OR REPLACE FUNCTION mark_chat_read(p_user_id bigint, p_chat_id bigint)
RETURNS boolean LANGUAGE sql AS $$
  WITH r AS (UPDATE chats SET unread_count = 0, read_through = now()
              WHERE id = p_chat_id AND user_id = p_user_id RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM r)
$$;
COMMENT ON FUNCTION mark_chat_read(bigint, bigint) IS
  'The operator opened a chat: clears its unread count and marks what it received so far read '
  '(whatsapp_messages.is_read); false when not the owner''s.';

-- Sends open chats -------------------------------------------------------------------------
-- A number the queue wrote to has a chat on that device from the first send, as on a phone: the
-- chat list shows campaign and sequence recipients, and their replies land in the same thread.
CREATE OR REPLACE FUNCTION _record_outbound_chats(p_rows broadcast_messages[])
RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_done integer;
BEGIN
  -- In (device, jid) order: concurrent callers lock chat rows in the same order. A number sent to
  -- is a warm contact from then on (talked_at; _record_send_outcomes counted the cold ones before).
  INSERT INTO chats AS c (user_id, device_id, chat_jid, phone, last_message_at, last_message_preview, talked_at)
  SELECT DISTINCT ON (m.device_id, m.recipient_phone)
         m.user_id, m.device_id, m.recipient_phone || '@s.whatsapp.net', m.recipient_phone, m.sent_at,
         _chat_preview(m.message_type, m.content), m.sent_at
    FROM unnest(p_rows) m
   WHERE m.status = 'sent' AND m.device_id IS NOT NULL
   ORDER BY m.device_id, m.recipient_phone, m.sent_at DESC
  ON CONFLICT (device_id, chat_jid) DO UPDATE
     SET last_message_at = greatest(c.last_message_at, excluded.last_message_at),
         last_message_preview = CASE WHEN c.last_message_at IS NULL OR c.last_message_at <= excluded.last_message_at
                                     THEN excluded.last_message_preview ELSE c.last_message_preview END,
         talked_at = coalesce(c.talked_at, excluded.talked_at)
   WHERE c.last_message_at IS NULL OR c.last_message_at <= excluded.last_message_at OR c.talked_at IS NULL;
  GET DIAGNOSTICS v_done = ROW_COUNT;
  RETURN v_done;
END $$;
COMMENT ON FUNCTION _record_outbound_chats(broadcast_messages[]) IS
  'The sent queue messages p_rows (as complete_messages settled them) open (or lift) the chat with their number '
  'on their device, previewing what was sent, and make the number a warm contact of the device (talked_at). '
  'Returns the chats touched.';

-- In place of the foreign keys of chats (migration 1941: checked row by row on every send): a
-- deleted device takes its chats (and their inbound log, and so its warm contacts) with it.
-- Deleting a user deletes its devices, so this covers users too.
-- The ids as an array probed by index: joined with the transition table, the plan PL/pgSQL keeps
-- for the session followed its first statement's rows (after deleting 50 devices at once, each
-- later device's deletion hashed every chat of every device).
CREATE OR REPLACE FUNCTION forget_deleted_device_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v_ids bigint[] := array(SELECT o.id FROM old_rows o);
BEGIN
  DELETE FROM chats c WHERE c.device_id = ANY (v_ids);
  RETURN NULL;
END $$;
COMMENT ON FUNCTION forget_deleted_device_contacts() IS
  'Statement trigger after DELETE on user_devices: deletes the deleted devices'' chats (no foreign keys).';
CREATE OR REPLACE TRIGGER user_devices_contacts_forget AFTER DELETE ON user_devices
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION forget_deleted_device_contacts();

-- What the chat view's text and image sends share: the message queued on the device and the chat
-- brought to the top (read) with the preview.
CREATE OR REPLACE FUNCTION _queue_chat_message(p_user_id bigint, p_device_id bigint, p_phone text, p_type text,
                                               p_content text, p_media_url text, p_preview text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_msg  bigint;
  v_chat bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM user_devices WHERE id = p_device_id AND user_id = p_user_id) THEN
    RAISE EXCEPTION 'no such device' USING ERRCODE = '22023';
  END IF;
  IF p_phone IS NULL OR p_phone !~ '^[1-9][0-9]{6,14}$' THEN
    RAISE EXCEPTION 'phone must be digits with the country code first, got "%"', p_phone USING ERRCODE = '22023';
  END IF;
  -- Manual messages skip the human-like delay (the operator is typing) but not the caps.
  SELECT q.id INTO v_msg FROM _enqueue_messages(ARRAY[ROW(
    p_user_id, p_device_id,
    (SELECT l.id FROM leads l WHERE l.user_id = p_user_id AND l.phone = p_phone
      ORDER BY l.device_id = p_device_id DESC NULLS LAST, l.id LIMIT 1),
    p_phone, NULL, p_type, p_content, p_media_url, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::message_draft]) q;
  INSERT INTO chats AS c (user_id, device_id, chat_jid, phone, last_message_at, last_message_preview)
  VALUES (p_user_id, p_device_id, p_phone || '@s.whatsapp.net', p_phone, now(), left(p_preview, 200))
  ON CONFLICT (device_id, chat_jid) DO UPDATE
     SET last_message_at = now(), last_message_preview = excluded.last_message_preview, unread_count = 0,
         read_through = now()
  RETURNING id INTO v_chat;
  PERFORM notify_user(p_user_id, 'chat', jsonb_build_object('device_id', p_device_id, 'chat_id', v_chat,
                                                             'broadcast_message_id', v_msg));
  RETURN v_msg;
END $$;
COMMENT ON FUNCTION _queue_chat_message(bigint, bigint, text, text, text, text, text) IS
  'Queues a chat-view message (text or image) on the owner''s device for p_phone and brings the chat to the top '
  '(read) with p_preview. Returns the queued message id.';

CREATE OR REPLACE FUNCTION send_chat_message(p_user_id bigint, p_device_id bigint, p_phone text, p_content text)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  IF length(btrim(coalesce(p_content, ''))) = 0 OR length(p_content) > 4096 THEN
    RAISE EXCEPTION 'a message needs 1 to 4096 characters' USING ERRCODE = '22023';
  END IF;
  RETURN _queue_chat_message(p_user_id, p_device_id, p_phone, 'text', p_content, NULL, p_content);
END $$;
COMMENT ON FUNCTION send_chat_message(bigint, bigint, text, text) IS
  'Queues a message typed in the chat view: a broadcast_messages row on that device (no random delay; caps '
  'apply) and the chat brought to the top (and read). Returns the queued message id; its state then lives in the queue.';
