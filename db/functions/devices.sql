-- Devices: creation and the pacing row every device has.

CREATE OR REPLACE FUNCTION create_device(p_user_id bigint, p_device_name text,
                                         p_min_delay_seconds integer DEFAULT 30,
                                         p_max_delay_seconds integer DEFAULT 60,
                                         p_hourly_limit integer DEFAULT 80,
                                         p_daily_limit integer DEFAULT 800)
RETURNS bigint LANGUAGE sql AS $$
  SELECT require_quota(p_user_id, 'devices', 1);
  INSERT INTO user_devices (user_id, device_name, min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit)
  VALUES (p_user_id, btrim(p_device_name), p_min_delay_seconds, p_max_delay_seconds, p_hourly_limit, p_daily_limit)
  RETURNING id
$$;
COMMENT ON FUNCTION create_device(bigint, text, integer, integer, integer, integer) IS
  'Adds a device (status offline until paired) with its delays and caps, within the owner''s device quota; returns its id.';

CREATE OR REPLACE FUNCTION device_pacing_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO device_pacing (device_id) VALUES (NEW.id);
  RETURN NEW;
END $$;
COMMENT ON FUNCTION device_pacing_row() IS 'Trigger: every device gets its pacing row when created.';

CREATE OR REPLACE TRIGGER user_devices_pacing AFTER INSERT ON user_devices
  FOR EACH ROW EXECUTE FUNCTION device_pacing_row();

-- Lifecycle: rename, delete, and commands to the sender that holds the connection -------------
CREATE OR REPLACE FUNCTION rename_device(p_user_id bigint, p_device_id bigint, p_device_name text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF length(btrim(coalesce(p_device_name, ''))) NOT BETWEEN 1 AND 100 THEN
    RAISE EXCEPTION 'a device name needs 1 to 100 characters' USING ERRCODE = '22023';
  END IF;
  UPDATE user_devices SET device_name = btrim(p_device_name) WHERE id = p_device_id AND user_id = p_user_id;
  RETURN FOUND;
END $$;
COMMENT ON FUNCTION rename_device(bigint, bigint, text) IS 'Renames one of the owner''s devices; false when it is not theirs.';

CREATE OR REPLACE FUNCTION delete_device(p_user_id bigint, p_device_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_jid      text;
  v_merged   integer;
  v_pooled   integer;
  v_skipped  integer;
  v_inflight integer;
  v_session  boolean := false;
BEGIN
  SELECT jid INTO v_jid FROM user_devices WHERE id = p_device_id AND user_id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no such device' USING ERRCODE = '22023';
  END IF;

  -- Leads go back to the AI pool (device_id NULL). A number already in the pool keeps that pool
  -- lead: the device's copy is merged into it (reply time, trigger, references) and removed.
  WITH pairs AS (
    SELECT d.id AS dev_lead, p.id AS pool_lead, d.replied_at, d.trigger
      FROM leads d JOIN leads p ON p.user_id = d.user_id AND p.device_id IS NULL AND p.phone = d.phone
     WHERE d.device_id = p_device_id
  ), merged AS (
    UPDATE leads p SET replied_at = greatest(p.replied_at, pairs.replied_at),
                       trigger = coalesce(p.trigger, pairs.trigger), updated_at = now()
      FROM pairs WHERE p.id = pairs.pool_lead
    RETURNING pairs.dev_lead, pairs.pool_lead
  ), enrollments AS (
    UPDATE sequence_enrollments e SET lead_id = merged.pool_lead FROM merged WHERE e.lead_id = merged.dev_lead
  ), messages AS (
    UPDATE broadcast_messages m SET lead_id = merged.pool_lead FROM merged WHERE m.lead_id = merged.dev_lead
  ), gone AS (
    DELETE FROM leads l USING merged WHERE l.id = merged.dev_lead RETURNING 1
  )
  SELECT count(*) INTO v_merged FROM gone;
  UPDATE leads SET device_id = NULL, updated_at = now() WHERE device_id = p_device_id;
  GET DIAGNOSTICS v_pooled = ROW_COUNT;

  -- Waiting messages cannot go out any more; messages being sent right now finish (or are failed
  -- by stuck recovery), never re-sent.
  UPDATE broadcast_messages
     SET status = 'skipped', failed_at = now(), error_message = 'skipped: device deleted', held = false
   WHERE device_id = p_device_id AND status = 'pending';
  GET DIAGNOSTICS v_skipped = ROW_COUNT;
  SELECT count(*) INTO v_inflight FROM broadcast_messages WHERE device_id = p_device_id AND status = 'queued';

  -- The stored WhatsApp session (whatsmeow rows cascade from whatsmeow_device).
  IF v_jid IS NOT NULL AND to_regclass('whatsmeow_device') IS NOT NULL THEN
    EXECUTE 'WITH d AS (DELETE FROM whatsmeow_device WHERE jid = $1 RETURNING 1) SELECT EXISTS (SELECT 1 FROM d)'
       INTO v_session USING v_jid;
  END IF;

  DELETE FROM user_devices WHERE id = p_device_id;  -- lease, pacing, chats and commands cascade
  PERFORM pg_notify('wa_device_commands', p_device_id::text);
  PERFORM notify_user(p_user_id, 'device_deleted', jsonb_build_object('device_id', p_device_id));
  RETURN jsonb_build_object('deleted', true, 'leads_to_pool', v_pooled, 'leads_merged_into_pool', v_merged,
                            'messages_skipped', v_skipped, 'messages_in_flight', v_inflight,
                            'session_removed', v_session);
END $$;
COMMENT ON FUNCTION delete_device(bigint, bigint) IS
  'Deletes one of the owner''s devices now. Its leads return to the AI pool (device_id NULL; a number '
  'already in the pool is merged into that pool lead), its pending messages are skipped ("skipped: device '
  'deleted"), messages in flight finish, its whatsmeow session rows are removed, chats and history go with it. '
  'Returns what happened as JSON. Use request_device_delete to log a connected device out first.';

CREATE OR REPLACE FUNCTION device_is_running(p_device_id bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM device_leases l JOIN senders s ON s.id = l.sender_id
                  WHERE l.device_id = p_device_id AND l.expires_at > now() AND NOT s.stopping)
$$;
COMMENT ON FUNCTION device_is_running(bigint) IS 'True when a live sender holds the device''s lease (it can carry out commands).';

CREATE OR REPLACE FUNCTION request_device_command(p_user_id bigint, p_device_id bigint, p_command text,
                                                  p_phone text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_dev user_devices%ROWTYPE;
  v_id  bigint;
BEGIN
  IF p_command NOT IN ('pair', 'pair_phone', 'simulate_scan', 'logout', 'reconnect', 'delete') THEN
    RAISE EXCEPTION 'unknown device command "%"', p_command USING ERRCODE = '22023';
  END IF;
  IF p_command = 'pair_phone' AND coalesce(p_phone, '') !~ '^[1-9][0-9]{6,14}$' THEN
    RAISE EXCEPTION 'pairing by code needs the phone number as digits with the country code first' USING ERRCODE = '22023';
  END IF;
  SELECT * INTO v_dev FROM user_devices WHERE id = p_device_id AND user_id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no such device' USING ERRCODE = '22023';
  END IF;
  IF p_command IN ('pair', 'pair_phone') AND v_dev.status = 'online' THEN
    RAISE EXCEPTION 'device is online: log it out before pairing it again';
  END IF;
  IF p_command = 'logout' AND v_dev.jid IS NULL THEN
    RAISE EXCEPTION 'device has no WhatsApp session to log out';
  END IF;
  IF p_command = 'reconnect' AND v_dev.jid IS NULL THEN
    RAISE EXCEPTION 'device has no stored session: pair it instead';
  END IF;

  SELECT id INTO v_id FROM device_commands
   WHERE device_id = p_device_id AND command = p_command AND status = 'pending';
  IF v_id IS NOT NULL THEN
    RETURN v_id;  -- asked twice (a double click): one command
  END IF;
  IF p_command IN ('pair', 'pair_phone') AND v_dev.status IN ('logged_out', 'offline', 'banned') THEN
    -- Logged-out devices are not leased by any sender: "connecting" makes this one runnable again.
    PERFORM set_device_status(p_device_id, 'connecting', 'pairing requested');
  END IF;
  IF p_command IN ('pair', 'pair_phone', 'reconnect') AND v_dev.resume_after > now() THEN
    -- A device its sender gave up on is held unleased: the operator's request ends the hold.
    UPDATE user_devices SET resume_after = NULL WHERE id = p_device_id;
    PERFORM pg_notify('wa_devices', p_device_id::text);
  END IF;
  INSERT INTO device_commands (user_id, device_id, command, phone)
  VALUES (p_user_id, p_device_id, p_command, p_phone) RETURNING id INTO v_id;
  PERFORM pg_notify('wa_device_commands', p_device_id::text);
  RETURN v_id;
END $$;
COMMENT ON FUNCTION request_device_command(bigint, bigint, text, text) IS
  'Asks the sender running the device to pair (QR), pair_phone (code for p_phone), simulate_scan (simulated '
  'transport), logout, reconnect or delete it. Inserts a device_commands row and NOTIFYs wa_device_commands '
  '(payload: device id); a pending command of the same kind is reused; pair and reconnect end a hold_device '
  'hold. Returns the command id.';

CREATE OR REPLACE FUNCTION request_device_delete(p_user_id bigint, p_device_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_dev user_devices%ROWTYPE;
BEGIN
  SELECT * INTO v_dev FROM user_devices WHERE id = p_device_id AND user_id = p_user_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no such device' USING ERRCODE = '22023';
  END IF;
  -- A session a sender runs is logged out by that sender first (off the phone's Linked Devices,
  -- waiting a moment for a dropped connection to return), which then deletes; it also stops the
  -- client, so nothing writes the session's rows again. Otherwise the rows go now.
  IF v_dev.jid IS NOT NULL AND device_is_running(p_device_id) THEN
    RETURN jsonb_build_object('deleted', false, 'pending', true,
                              'command_id', request_device_command(p_user_id, p_device_id, 'delete'));
  END IF;
  RETURN delete_device(p_user_id, p_device_id);
END $$;
COMMENT ON FUNCTION request_device_delete(bigint, bigint) IS
  'Deletes a device: a paired device a sender runs (online or not) gets a delete command (logout when the '
  'connection allows, then delete_device; JSON pending true), any other is deleted at once (delete_device''s JSON).';

CREATE OR REPLACE FUNCTION take_device_commands(p_sender_id text)
RETURNS TABLE (id bigint, device_id bigint, command text, phone text, jid text)
LANGUAGE sql AS $$
  WITH open AS (
    SELECT c.id FROM device_commands c
      JOIN device_leases l ON l.device_id = c.device_id AND l.sender_id = p_sender_id AND l.expires_at > now()
     WHERE c.status = 'pending'
     ORDER BY c.id
     FOR UPDATE OF c SKIP LOCKED
  )
  UPDATE device_commands c SET status = 'taken', taken_by = p_sender_id, taken_at = now()
    FROM open, user_devices d
   WHERE c.id = open.id AND d.id = c.device_id
  RETURNING c.id, c.device_id, c.command, c.phone, d.jid
$$;
COMMENT ON FUNCTION take_device_commands(text) IS
  'The pending commands for devices this sender leases, marked taken by it, oldest first.';

CREATE OR REPLACE FUNCTION finish_device_command(p_command_id bigint, p_error text DEFAULT NULL,
                                                 p_result text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_cmd device_commands%ROWTYPE;
BEGIN
  UPDATE device_commands
     SET status = CASE WHEN p_error IS NULL THEN 'done' ELSE 'failed' END,
         error = p_error, result = p_result, done_at = now()
   WHERE id = p_command_id AND status IN ('pending', 'taken')
  RETURNING * INTO v_cmd;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM notify_user(v_cmd.user_id, 'device_command', jsonb_build_object(
    'id', v_cmd.id, 'device_id', v_cmd.device_id, 'command', v_cmd.command, 'status', v_cmd.status,
    'error', v_cmd.error, 'result', v_cmd.result));
  RETURN true;
END $$;
COMMENT ON FUNCTION finish_device_command(bigint, text, text) IS
  'Records a command''s outcome (done, or failed with p_error) and pushes it live; false when it was already finished.';

-- Health ------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION device_health_tick(p_silent_after interval DEFAULT '2 minutes',
                                              p_command_timeout interval DEFAULT '2 minutes')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_silent integer := 0;
  r        record;
BEGIN
  -- A device a live sender runs is seen; last_seen is when that was last true.
  UPDATE user_devices d SET last_seen = now()
   WHERE d.status = 'online' AND device_is_running(d.id);

  -- Online or connecting, yet no live sender for p_silent_after: nobody is running it.
  FOR r IN SELECT d.id FROM user_devices d
            WHERE d.status IN ('online', 'connecting')
              AND coalesce(d.last_seen, d.status_changed_at) < now() - p_silent_after
              AND d.status_changed_at < now() - p_silent_after
              AND NOT device_is_running(d.id)
  LOOP
    PERFORM set_device_status(r.id, 'offline', 'silent: no sender has run it for ' || p_silent_after::text);
    v_silent := v_silent + 1;
  END LOOP;

  -- Commands nobody carried out. A delete still happens (without the phone-side logout).
  FOR r IN SELECT c.id, c.user_id, c.device_id, c.command FROM device_commands c
            WHERE c.status IN ('pending', 'taken') AND c.created_at < now() - p_command_timeout
            FOR UPDATE SKIP LOCKED
  LOOP
    IF r.command = 'delete' THEN
      PERFORM delete_device(r.user_id, r.device_id);  -- the command row goes with the device
    ELSE
      PERFORM finish_device_command(r.id, 'no sender carried it out within ' || p_command_timeout::text);
    END IF;
  END LOOP;
  RETURN v_silent;
END $$;
COMMENT ON FUNCTION device_health_tick(interval, interval) IS
  'Periodic device check: refreshes last_seen of devices a live sender runs, marks online/connecting '
  'devices no sender ran for p_silent_after offline ("silent"), and expires commands older than '
  'p_command_timeout (a delete then happens without the logout). Returns how many devices went silent.';

CREATE OR REPLACE FUNCTION whatsmeow_session_exists(p_jid text)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE v_found boolean := false;
BEGIN
  -- whatsmeow_device exists once neonize has run against this database.
  IF p_jid IS NOT NULL AND to_regclass('whatsmeow_device') IS NOT NULL THEN
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM whatsmeow_device WHERE jid = $1)' INTO v_found USING p_jid;
  END IF;
  RETURN v_found;
END $$;
COMMENT ON FUNCTION whatsmeow_session_exists(text) IS
  'True when neonize''s store holds the session of this jid. neonize aborts the process when asked to resume '
  'a jid without one, so the transport checks before every resume.';

CREATE OR REPLACE FUNCTION finish_device_delete(p_command_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_cmd device_commands%ROWTYPE;
BEGIN
  SELECT * INTO v_cmd FROM device_commands WHERE id = p_command_id AND command = 'delete' AND status = 'taken';
  IF NOT FOUND THEN
    RETURN NULL;   -- deleted already (say, by the health tick's fallback)
  END IF;
  RETURN delete_device(v_cmd.user_id, v_cmd.device_id);   -- the command row goes with the device
END $$;
COMMENT ON FUNCTION finish_device_delete(bigint) IS
  'The sender''s last step of a delete command, after logging the device out: delete_device for its owner. '
  'NULL when the device is gone already.';
