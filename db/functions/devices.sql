-- Devices: creation (one or many), settings (one or a selection), pause, the search behind the
-- devices page and the device picker, and the pacing row every device has.

CREATE OR REPLACE FUNCTION _check_device_settings(p_min_delay_seconds integer, p_max_delay_seconds integer,
                                                 p_hourly_limit integer, p_daily_limit integer)
RETURNS void LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_min_delay_seconds NOT BETWEEN 0 AND 86400 OR p_max_delay_seconds NOT BETWEEN 0 AND 86400 THEN
    RAISE EXCEPTION 'delays must be 0 to 86400 seconds' USING ERRCODE = '22023';
  END IF;
  IF p_max_delay_seconds < p_min_delay_seconds THEN
    RAISE EXCEPTION 'the maximum delay (% s) must be at least the minimum delay (% s)',
      p_max_delay_seconds, p_min_delay_seconds USING ERRCODE = '22023';
  END IF;
  IF p_hourly_limit < 1 OR p_daily_limit < 1 THEN
    RAISE EXCEPTION 'the hourly and daily caps must be at least 1' USING ERRCODE = '22023';
  END IF;
END $$;
COMMENT ON FUNCTION _check_device_settings(integer, integer, integer, integer) IS
  'Raises 22023 with the reason unless 0 <= min delay <= max delay <= 86400 s and both caps are at least 1 '
  '(NULL values are not checked).';

CREATE OR REPLACE FUNCTION create_devices(p_user_id bigint, p_count integer, p_name_pattern text,
                                          p_first_number integer DEFAULT 1,
                                          p_min_delay_seconds integer DEFAULT setting('default_min_delay_seconds')::integer,
                                          p_max_delay_seconds integer DEFAULT setting('default_max_delay_seconds')::integer,
                                          p_hourly_limit integer DEFAULT setting('default_hourly_limit')::integer,
                                          p_daily_limit integer DEFAULT setting('default_daily_limit')::integer)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
  v_pattern text := btrim(coalesce(p_name_pattern, ''));
  v_ids     bigint[];
BEGIN
  IF p_count IS NULL OR p_count NOT BETWEEN 1 AND 5000 THEN
    RAISE EXCEPTION 'add 1 to 5000 devices at a time' USING ERRCODE = '22023';
  END IF;
  IF p_first_number IS NULL OR p_first_number NOT BETWEEN 0 AND 1000000 THEN
    RAISE EXCEPTION 'the first number must be 0 to 1000000' USING ERRCODE = '22023';
  END IF;
  IF replace(v_pattern, '{n}', '') !~ '\S' THEN
    RAISE EXCEPTION 'a device name needs 1 to 100 characters besides the number' USING ERRCODE = '22023';
  END IF;
  -- Several devices are numbered: "{n}" in the pattern, else " <n>" at its end.
  IF p_count > 1 AND strpos(v_pattern, '{n}') = 0 THEN
    v_pattern := v_pattern || ' {n}';
  END IF;
  IF length(replace(v_pattern, '{n}', (p_first_number + p_count - 1)::text)) NOT BETWEEN 1 AND 100 THEN
    RAISE EXCEPTION 'a device name needs 1 to 100 characters' USING ERRCODE = '22023';
  END IF;
  PERFORM _check_device_settings(p_min_delay_seconds, p_max_delay_seconds, p_hourly_limit, p_daily_limit);
  PERFORM require_quota(p_user_id, 'devices', p_count);
  WITH added AS (
    INSERT INTO user_devices (user_id, device_name, min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit)
    SELECT p_user_id, replace(v_pattern, '{n}', n::text), p_min_delay_seconds, p_max_delay_seconds,
           p_hourly_limit, p_daily_limit
      FROM generate_series(p_first_number, p_first_number + p_count - 1) AS n
     ORDER BY n
    RETURNING id)
  SELECT array_agg(id ORDER BY id) INTO v_ids FROM added;
  PERFORM notify_user(p_user_id, 'devices_added', jsonb_build_object('count', p_count, 'device_ids', v_ids[1:200]));
  RETURN v_ids;
END $$;
COMMENT ON FUNCTION create_devices(bigint, integer, text, integer, integer, integer, integer, integer) IS
  'Adds p_count devices (1..5000, status offline until paired) with the same delays and caps, named by p_name_pattern '
  'with "{n}" replaced by p_first_number, p_first_number + 1, ... (several devices without "{n}" get " <n>" appended; '
  'one device is named by the pattern as typed), within the owner''s device quota. Checked first, all or nothing; '
  'pushes devices_added. Returns the ids.';

CREATE OR REPLACE FUNCTION create_device(p_user_id bigint, p_device_name text,
                                         p_min_delay_seconds integer DEFAULT setting('default_min_delay_seconds')::integer,
                                         p_max_delay_seconds integer DEFAULT setting('default_max_delay_seconds')::integer,
                                         p_hourly_limit integer DEFAULT setting('default_hourly_limit')::integer,
                                         p_daily_limit integer DEFAULT setting('default_daily_limit')::integer)
RETURNS bigint LANGUAGE sql AS $$
  SELECT (create_devices(p_user_id, 1, p_device_name, 1, p_min_delay_seconds, p_max_delay_seconds,
                         p_hourly_limit, p_daily_limit))[1]
$$;
COMMENT ON FUNCTION create_device(bigint, text, integer, integer, integer, integer) IS
  'Adds one device (status offline until paired) with its delays and caps, within the owner''s device quota '
  '(create_devices); returns its id.';

CREATE OR REPLACE FUNCTION device_pacing_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO device_pacing (device_id) VALUES (NEW.id);
  RETURN NEW;
END $$;
COMMENT ON FUNCTION device_pacing_row() IS 'Trigger: every device gets its pacing row when created.';

CREATE OR REPLACE TRIGGER user_devices_pacing AFTER INSERT ON user_devices
  FOR EACH ROW EXECUTE FUNCTION device_pacing_row();

CREATE OR REPLACE FUNCTION _require_own_devices(p_user_id bigint, p_device_ids bigint[])
RETURNS void LANGUAGE plpgsql STABLE AS $$
DECLARE v_foreign bigint;
BEGIN
  IF coalesce(cardinality(p_device_ids), 0) = 0 THEN
    RAISE EXCEPTION 'choose at least one device' USING ERRCODE = '22023';
  END IF;
  SELECT x INTO v_foreign FROM unnest(p_device_ids) x
   WHERE x IS NULL OR NOT EXISTS (SELECT 1 FROM user_devices d WHERE d.id = x AND d.user_id = p_user_id)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'device % is not one of your devices', coalesce(v_foreign::text, 'NULL') USING ERRCODE = '22023';
  END IF;
END $$;
COMMENT ON FUNCTION _require_own_devices(bigint, bigint[]) IS
  'Raises 22023 unless p_device_ids is a non-empty list of the owner''s devices.';

-- Settings and pause: one device or a selection, all or nothing ------------------------------
CREATE OR REPLACE FUNCTION update_devices(p_user_id bigint, p_device_ids bigint[], p_settings jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_name    text;
  v_min     integer;
  v_max     integer;
  v_hourly  integer;
  v_daily   integer;
  v_key     text;
  v_clash   record;
  v_done    integer;
BEGIN
  IF jsonb_typeof(p_settings) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'settings must be a JSON object' USING ERRCODE = '22023';
  END IF;
  SELECT k INTO v_key FROM jsonb_object_keys(p_settings) k
   WHERE k NOT IN ('device_name', 'min_delay_seconds', 'max_delay_seconds', 'hourly_limit', 'daily_limit') LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'unknown device setting "%"', v_key USING ERRCODE = '22023';
  END IF;
  PERFORM _require_own_devices(p_user_id, p_device_ids);
  -- Absent or null: unchanged. Numbers must be whole numbers.
  BEGIN
    v_min    := (p_settings->>'min_delay_seconds')::integer;
    v_max    := (p_settings->>'max_delay_seconds')::integer;
    v_hourly := (p_settings->>'hourly_limit')::integer;
    v_daily  := (p_settings->>'daily_limit')::integer;
  EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
    RAISE EXCEPTION 'delays and caps must be whole numbers' USING ERRCODE = '22023';
  END;
  PERFORM _check_device_settings(v_min, v_max, v_hourly, v_daily);
  IF p_settings ? 'device_name' AND jsonb_typeof(p_settings->'device_name') <> 'null' THEN
    v_name := btrim(p_settings->>'device_name');
    IF length(v_name) NOT BETWEEN 1 AND 100 THEN
      RAISE EXCEPTION 'a device name needs 1 to 100 characters' USING ERRCODE = '22023';
    END IF;
    IF cardinality(p_device_ids) > 1 THEN
      RAISE EXCEPTION 'a name is given to one device at a time' USING ERRCODE = '22023';
    END IF;
  END IF;
  -- A new minimum against a device's own maximum (or the reverse): say which device.
  SELECT d.device_name, coalesce(v_min, d.min_delay_seconds) AS lo, coalesce(v_max, d.max_delay_seconds) AS hi
    INTO v_clash FROM user_devices d
   WHERE d.id = ANY (p_device_ids) AND coalesce(v_max, d.max_delay_seconds) < coalesce(v_min, d.min_delay_seconds)
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'on "%" the maximum delay (% s) would be below the minimum delay (% s)',
      v_clash.device_name, v_clash.hi, v_clash.lo USING ERRCODE = '22023';
  END IF;

  UPDATE user_devices d
     SET device_name       = coalesce(v_name, d.device_name),
         min_delay_seconds = coalesce(v_min, d.min_delay_seconds),
         max_delay_seconds = coalesce(v_max, d.max_delay_seconds),
         hourly_limit      = coalesce(v_hourly, d.hourly_limit),
         daily_limit       = coalesce(v_daily, d.daily_limit)
   WHERE d.id = ANY (p_device_ids) AND d.user_id = p_user_id;
  GET DIAGNOSTICS v_done = ROW_COUNT;
  PERFORM notify_user(p_user_id, 'devices_updated', jsonb_build_object(
    'count', v_done, 'device_ids', (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(p_device_ids) x)[1:200],
    'truncated', cardinality(p_device_ids) > 200,
    'settings', jsonb_strip_nulls(jsonb_build_object('device_name', v_name, 'min_delay_seconds', v_min,
                                                     'max_delay_seconds', v_max, 'hourly_limit', v_hourly,
                                                     'daily_limit', v_daily))));
  RETURN v_done;
END $$;
COMMENT ON FUNCTION update_devices(bigint, bigint[], jsonb) IS
  'Changes settings of one or several of the owner''s devices at once: JSON {device_name (one device only), '
  'min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit}; absent or null keeps a value. Everything is '
  'checked first (ownership, ranges, min <= max on every device) and applied in one statement, or nothing is. '
  'Pushes devices_updated. Returns how many devices changed.';

CREATE OR REPLACE FUNCTION set_devices_paused(p_user_id bigint, p_device_ids bigint[], p_paused boolean)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_changed bigint[];
BEGIN
  PERFORM _require_own_devices(p_user_id, p_device_ids);
  IF p_paused IS NULL THEN
    RAISE EXCEPTION 'say whether to pause or resume' USING ERRCODE = '22023';
  END IF;
  WITH changed AS (
    UPDATE user_devices d SET paused_at = CASE WHEN p_paused THEN now() END,
                              pause_reason = CASE WHEN p_paused THEN 'paused by the owner' END
     WHERE d.id = ANY (p_device_ids) AND d.user_id = p_user_id AND (d.paused_at IS NULL) = p_paused
    RETURNING d AS device)
  SELECT coalesce(array_agg((c.device).id ORDER BY (c.device).id), '{}') INTO v_changed
    FROM changed c, _emit_device_status_webhook(c.device, CASE WHEN p_paused THEN 'paused' ELSE 'resumed' END
                                                           || ' by the owner');
  IF NOT p_paused THEN   -- a resumed device is judged on its sends from now (self-pause)
    UPDATE device_pacing SET recent_outcomes = B'' WHERE device_id = ANY (v_changed);
  END IF;
  INSERT INTO device_events (device_id, event, detail)
  SELECT x, CASE WHEN p_paused THEN 'paused' ELSE 'resumed' END, 'by the owner' FROM unnest(v_changed) x;
  IF NOT p_paused AND cardinality(v_changed) > 0 THEN
    PERFORM pg_notify('wa_dispatch', '');   -- their waiting messages may go now
  END IF;
  PERFORM notify_user(p_user_id, 'devices_paused', jsonb_build_object(
    'paused', p_paused, 'count', cardinality(v_changed), 'device_ids', v_changed[1:200],
    'truncated', cardinality(v_changed) > 200));
  RETURN cardinality(v_changed);
END $$;
COMMENT ON FUNCTION set_devices_paused(bigint, bigint[], boolean) IS
  'Pauses (p_paused true) or resumes one or several of the owner''s devices. A paused device keeps its WhatsApp '
  'connection and its queue; claim_messages takes nothing for it until it is resumed (which also forgets the '
  'outcomes self-pause counts). Logged in device_events, '
  'pushed live as devices_paused {paused, count, device_ids (first 200), truncated}, a device.status webhook event '
  'each. Returns how many changed.';

-- Search: the devices page and the device picker ----------------------------------------------
CREATE OR REPLACE FUNCTION device_search(p_user_id bigint, p_query text DEFAULT NULL, p_status text DEFAULT NULL,
                                         p_sort text DEFAULT 'name', p_descending boolean DEFAULT false,
                                         p_limit integer DEFAULT 50, p_offset integer DEFAULT 0)
RETURNS TABLE (device_id bigint, device_name text, phone text, status text, paused boolean, pos bigint,
               total bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE v_query text := lower(btrim(coalesce(p_query, '')));
BEGIN
  IF p_status IS NOT NULL AND p_status NOT IN ('online', 'offline', 'connecting', 'logged_out', 'banned', 'paused') THEN
    RAISE EXCEPTION 'unknown device status "%"', p_status USING ERRCODE = '22023';
  END IF;
  IF p_sort IS NULL OR p_sort NOT IN ('name', 'phone', 'status', 'last_seen', 'created', 'health') THEN
    RAISE EXCEPTION 'devices sort by name, phone, status, last_seen, created or health, not "%"', p_sort
      USING ERRCODE = '22023';
  END IF;
  IF p_limit < 0 OR p_offset < 0 THEN
    RAISE EXCEPTION 'limit and offset must not be negative' USING ERRCODE = '22023';
  END IF;
  RETURN QUERY
  WITH found AS (
    SELECT d.id, d.device_name, d.phone, d.status, d.paused_at IS NOT NULL AS paused,
           -- one key per kind of order; the others are NULL for this sort
           CASE p_sort WHEN 'name' THEN lower(d.device_name) WHEN 'phone' THEN d.phone END AS text_key,
           CASE p_sort WHEN 'status'
                       THEN array_position(ARRAY['online', 'connecting', 'offline', 'banned', 'logged_out'], d.status)::bigint
                       WHEN 'created' THEN d.id   -- ids grow in the order devices were added
                       -- a few index probes per device, so only when sorting by it
                       WHEN 'health' THEN (SELECT h.health_score FROM _device_health() h WHERE h.device_id = d.id)
                       END AS rank_key,
           CASE WHEN p_sort = 'last_seen' THEN d.last_seen END AS time_key
      FROM user_devices d
     WHERE d.user_id = p_user_id
       AND (v_query = '' OR strpos(lower(d.device_name || ' ' || coalesce(d.phone, '')), v_query) > 0)
       AND (p_status IS NULL OR (p_status = 'paused' AND d.paused_at IS NOT NULL) OR d.status = p_status)
  ), ordered AS (
    SELECT f.*, row_number() OVER (ORDER BY
             CASE WHEN NOT p_descending THEN f.text_key END ASC NULLS LAST,
             CASE WHEN p_descending THEN f.text_key END DESC NULLS LAST,
             CASE WHEN NOT p_descending THEN f.rank_key END ASC,
             CASE WHEN p_descending THEN f.rank_key END DESC,
             CASE WHEN NOT p_descending THEN f.time_key END ASC NULLS LAST,
             CASE WHEN p_descending THEN f.time_key END DESC NULLS LAST,
             lower(f.device_name), f.id) AS pos,
           count(*) OVER () AS n
      FROM found f
  )
  SELECT o.id, o.device_name, o.phone, o.status, o.paused, o.pos, o.n
    FROM ordered o
   WHERE o.pos > p_offset AND (p_limit IS NULL OR o.pos <= p_offset + p_limit)
   ORDER BY o.pos;
END $$;
COMMENT ON FUNCTION device_search(bigint, text, text, text, boolean, integer, integer) IS
  'The owner''s devices whose name or number contains p_query (case-insensitive), optionally only one status '
  '(online, offline, connecting, logged_out, banned) or the paused ones (p_status paused), sorted by name, phone, '
  'status (online first), last_seen, created or health (score, worst first; p_descending reverses), rows p_offset+1 .. p_offset+p_limit '
  '(p_limit NULL: all) with their position (pos) and the total that match.';

CREATE OR REPLACE FUNCTION device_page(p_user_id bigint, p_query text DEFAULT NULL, p_status text DEFAULT NULL,
                                       p_sort text DEFAULT 'name', p_descending boolean DEFAULT false,
                                       p_limit integer DEFAULT 50, p_offset integer DEFAULT 0)
RETURNS TABLE (device_id bigint, device_name text, phone text, jid text, status text, status_reason text,
               status_changed_at timestamptz, banned_until timestamptz, last_seen timestamptz, running boolean,
               silent boolean, disconnects_24h integer, reconnects_24h integer, bans_total integer,
               send_failures_24h integer, open_command text, created_at timestamptz, paused boolean,
               min_delay_seconds integer, max_delay_seconds integer, hourly_limit integer, daily_limit integer,
               daily_cap integer, warmup_day integer, warmup_days integer, timelocked_until timestamptz,
               pause_reason text, health_score integer, total bigint)
LANGUAGE sql STABLE AS $$
  -- The health counts cost a few index probes per device: computed for this page's rows only.
  SELECT h.device_id, h.device_name, h.phone, h.jid, h.status, h.status_reason, h.status_changed_at,
         h.banned_until, h.last_seen, h.running, h.silent, h.disconnects_24h, h.reconnects_24h, h.bans_total,
         h.send_failures_24h, h.open_command, h.created_at, s.paused, d.min_delay_seconds, d.max_delay_seconds,
         d.hourly_limit, d.daily_limit, h.daily_cap, h.warmup_day, h.warmup_days, h.timelocked_until,
         h.pause_reason, h.health_score, s.total
    FROM device_search(p_user_id, p_query, p_status, p_sort, p_descending, least(greatest(p_limit, 1), 500),
                       greatest(p_offset, 0)) s
    JOIN user_devices d ON d.id = s.device_id
    JOIN _device_health() h ON h.device_id = s.device_id
   ORDER BY s.pos
$$;
COMMENT ON FUNCTION device_page(bigint, text, text, text, boolean, integer, integer) IS
  'One page of the devices page (device_search''s filter and order, at most 500 rows): each device''s health '
  '(_device_health: warm-up, timelock, health score included), whether it is paused, its delays and caps, and '
  'the total that match.';

-- Lifecycle: delete, and commands to the sender that holds the connection ---------------------
CREATE OR REPLACE FUNCTION _delete_device(p_user_id bigint, p_device_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  v_jid      text;
  v_merged   integer;
  v_from     bigint[];
  v_to       bigint[];
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
  )
  SELECT array_agg(merged.dev_lead), array_agg(merged.pool_lead) INTO v_from, v_to FROM merged;
  PERFORM _move_messages_to_lead(v_from, v_to);   -- before the delete, which would unlink them
  DELETE FROM leads l WHERE l.id = ANY (v_from);
  GET DIAGNOSTICS v_merged = ROW_COUNT;
  UPDATE leads SET device_id = NULL, updated_at = now() WHERE device_id = p_device_id;
  GET DIAGNOSTICS v_pooled = ROW_COUNT;

  -- Waiting messages cannot go out any more; messages being sent right now finish (or are failed
  -- by stuck recovery), never re-sent.
  v_skipped := _skip_messages(array(SELECT m.id FROM broadcast_messages m
                                     WHERE m.device_id = p_device_id AND m.status = 'pending'), 'device_deleted');
  SELECT count(*) INTO v_inflight FROM broadcast_messages WHERE device_id = p_device_id AND status = 'queued';

  -- The stored WhatsApp session (whatsmeow rows cascade from whatsmeow_device).
  IF v_jid IS NOT NULL AND to_regclass('whatsmeow_device') IS NOT NULL THEN
    EXECUTE 'WITH d AS (DELETE FROM whatsmeow_device WHERE jid = $1 RETURNING 1) SELECT EXISTS (SELECT 1 FROM d)'
       INTO v_session USING v_jid;
  END IF;

  DELETE FROM user_devices WHERE id = p_device_id;  -- lease, pacing and commands cascade; chats and warm contacts by trigger
  PERFORM pg_notify('wa_device_commands', p_device_id::text);
  PERFORM notify_user(p_user_id, 'device_deleted', jsonb_build_object('device_id', p_device_id));
  RETURN to_jsonb(ROW(true, false, NULL, v_pooled, v_merged, v_skipped, v_inflight, v_session)::device_delete_doc);
END $$;
COMMENT ON FUNCTION _delete_device(bigint, bigint) IS
  'Deletes one of the owner''s devices now. Its leads return to the AI pool (device_id NULL; a number '
  'already in the pool is merged into that pool lead), its pending messages are skipped ("skipped: device '
  'deleted"), messages in flight finish, its whatsmeow session rows are removed, chats and history go with it. '
  'Returns what happened as JSON (device_delete_doc). Use request_device_delete to log a connected device out first.';

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
  IF v_dev.jid IS NOT NULL AND _device_is_running(p_device_id) THEN
    RETURN to_jsonb(ROW(false, true, request_device_command(p_user_id, p_device_id, 'delete'),
                        NULL, NULL, NULL, NULL, NULL)::device_delete_doc);
  END IF;
  RETURN _delete_device(p_user_id, p_device_id);
END $$;
COMMENT ON FUNCTION request_device_delete(bigint, bigint) IS
  'Deletes a device: a paired device a sender runs (online or not) gets a delete command (logout when the '
  'connection allows, then _delete_device; JSON pending true), any other is deleted at once (_delete_device''s JSON).';

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
  -- A device a live sender runs is seen; last_seen is when that was last true. A row someone is
  -- changing right now is left to the next tick: waiting on it, the tick held every other device's
  -- row while a sender releasing some of them waited on it (a deadlock the soak met).
  UPDATE user_devices d SET last_seen = now()
   WHERE d.id IN (SELECT x.id FROM user_devices x
                   WHERE x.status = 'online' AND _device_is_running(x.id)
                   FOR UPDATE SKIP LOCKED);

  -- Online or connecting, yet no live sender for p_silent_after: nobody is running it.
  FOR r IN SELECT d.id FROM user_devices d
            WHERE d.status IN ('online', 'connecting')
              AND coalesce(d.last_seen, d.status_changed_at) < now() - p_silent_after
              AND d.status_changed_at < now() - p_silent_after
              AND NOT _device_is_running(d.id)
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
      PERFORM _delete_device(r.user_id, r.device_id);  -- the command row goes with the device
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
  RETURN _delete_device(v_cmd.user_id, v_cmd.device_id);   -- the command row goes with the device
END $$;
COMMENT ON FUNCTION finish_device_delete(bigint) IS
  'The sender''s last step of a delete command, after logging the device out: _delete_device for its owner. '
  'NULL when the device is gone already.';
