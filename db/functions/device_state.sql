-- Device state from transport events: status changes (with the lifecycle log and a live event
-- to the owner's dashboards), pairing, pairing codes, and delivery/read receipts on the queue.

CREATE OR REPLACE FUNCTION set_device_status(p_device_id bigint, p_status text, p_reason text DEFAULT NULL,
                                             p_banned_until timestamptz DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_dev user_devices;
        v_ban_lasts boolean;
BEGIN
  IF p_status NOT IN ('online', 'offline', 'connecting', 'logged_out', 'banned') THEN
    RAISE EXCEPTION 'unknown device status "%"', p_status USING ERRCODE = '22023';
  END IF;
  -- WhatsApp reports a temporary ban on every connect while it lasts (whatsmeow's TemporaryBan, in
  -- the next sender process after a restart too): that is the ban in force, logged as still_banned,
  -- not another ban for the health score's count of bans. Its time left comes in whole seconds, so
  -- a reconnect at the end it announced may meet it still on: a minute's grace.
  SELECT d.last_ban_until > now() - interval '1 minute' INTO v_ban_lasts
    FROM user_devices d WHERE d.id = p_device_id FOR NO KEY UPDATE;
  UPDATE user_devices d
     SET status            = p_status,
         status_reason     = p_reason,
         status_changed_at = CASE WHEN d.status = p_status THEN d.status_changed_at ELSE now() END,
         banned_until      = CASE WHEN p_status = 'banned' THEN p_banned_until END,
         last_ban_until    = CASE WHEN p_status = 'banned' THEN p_banned_until ELSE d.last_ban_until END,
         last_seen         = CASE WHEN p_status = 'online' THEN now() ELSE d.last_seen END,
         -- A logged-out session is gone: the number may be paired again, on this or another device.
         jid               = CASE WHEN p_status = 'logged_out' THEN NULL ELSE d.jid END
   WHERE d.id = p_device_id
  RETURNING d.* INTO v_dev;
  IF NOT FOUND THEN
    RETURN false;  -- deleted meanwhile
  END IF;
  INSERT INTO device_events (device_id, event, detail)
  VALUES (p_device_id, CASE WHEN p_status = 'banned' AND v_ban_lasts THEN 'still_banned' ELSE p_status END,
          concat_ws(' ', p_reason, 'until ' || p_banned_until::text));
  PERFORM notify_user(v_dev.user_id, 'device_status',
                      jsonb_build_object('device_id', p_device_id, 'status', p_status, 'reason', p_reason,
                                         'banned_until', p_banned_until));
  PERFORM _emit_device_status_webhook(v_dev, p_reason);
  RETURN true;
END $$;
COMMENT ON FUNCTION set_device_status(bigint, text, text, timestamptz) IS
  'Applies a transport event to a device: online/offline/connecting/logged_out/banned (banned_until for a '
  'temporary ban; logged_out forgets the session jid). Logs it in device_events (a ban reported again before '
  'the latest one ends, last_ban_until, or within a minute after, as still_banned: the same ban), pushes it '
  'live and writes a '
  'device.status webhook event. '
  'False when the device no longer exists.';

CREATE OR REPLACE FUNCTION hold_device(p_device_id bigint, p_reason text, p_until timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  UPDATE user_devices SET resume_after = p_until WHERE id = p_device_id;
  RETURN set_device_status(p_device_id, 'offline', p_reason || '; tried again after '
                           || to_char(p_until AT TIME ZONE 'UTC', 'HH24:MI') || ' UTC, or press Reconnect');
END $$;
COMMENT ON FUNCTION hold_device(bigint, text, timestamptz) IS
  'A sender gave up connecting the device: offline with the reason, and no sender leases it before p_until '
  '(its sender releases it; Reconnect or Pair clear the hold). False when the device no longer exists.';

CREATE OR REPLACE FUNCTION device_paired(p_device_id bigint, p_jid text, p_phone text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_user_id bigint;
BEGIN
  IF p_phone !~ '^[1-9][0-9]{6,14}$' THEN
    RAISE EXCEPTION 'paired phone "%" is not digits with the country code first', p_phone USING ERRCODE = '22023';
  END IF;
  -- The same number paired earlier on another device of ours: that session is gone.
  UPDATE user_devices SET jid = NULL WHERE jid = p_jid AND id <> p_device_id;
  -- A number new to this device starts its warm-up (_device_send_limits); a re-pair of the same one does not.
  UPDATE user_devices
     SET jid = p_jid, phone = p_phone,
         warmup_started_at = CASE WHEN phone IS DISTINCT FROM p_phone THEN now() ELSE warmup_started_at END
   WHERE id = p_device_id RETURNING user_id INTO v_user_id;
  IF v_user_id IS NULL THEN
    RETURN false;
  END IF;
  INSERT INTO device_events (device_id, event, detail) VALUES (p_device_id, 'paired', p_jid);
  PERFORM notify_user(v_user_id, 'device_paired', jsonb_build_object('device_id', p_device_id, 'phone', p_phone));
  RETURN true;
END $$;
COMMENT ON FUNCTION device_paired(bigint, text, text) IS
  'Stores the session identity (jid) and phone number a device paired with; a number new to the device starts '
  'its warm-up (warmup_started_at). False when the device is gone.';

CREATE OR REPLACE FUNCTION publish_pairing_code(p_device_id bigint, p_kind text, p_code text)
RETURNS void LANGUAGE sql AS $$
  SELECT notify_user(d.user_id, 'device_pairing', jsonb_build_object('device_id', d.id, 'kind', p_kind, 'code', p_code))
    FROM user_devices d WHERE d.id = p_device_id
$$;
COMMENT ON FUNCTION publish_pairing_code(bigint, text, text) IS
  'Pushes a pairing QR string (kind qr) or phone code (kind code) to the owner''s dashboards; not stored.';

