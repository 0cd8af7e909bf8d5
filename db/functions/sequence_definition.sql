-- Drip sequences, the definition: the owner's sequences and steps as JSON in and out (the JSON is
-- parsed once, checked by check_sequence_input), status changes and deletion.
-- The engine (enrollment, activation, completion, retry) is in sequence_engine.sql; the counters and
-- report reads in sequence_reports.sql.

-- Definition --------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION save_sequence(p_user_id bigint, p_sequence_id bigint, p_def jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint := p_sequence_id;
  v_trigger text := lower(btrim(coalesce(p_def->>'trigger', '')));
  v_steps jsonb := coalesce(p_def->'steps', '[]');
  v_days integer[];
  v_last_day integer;
  v_entry_day integer;
  v_chain bigint;
  v_devices bigint[];
BEGIN
  IF jsonb_typeof(v_steps) <> 'array' THEN
    RAISE EXCEPTION 'steps must be a list' USING ERRCODE = '22023';
  END IF;
  IF v_trigger = '' OR v_trigger ~ '[,\s]' THEN
    RAISE EXCEPTION 'the entry trigger must be one word without commas or spaces' USING ERRCODE = '22023';
  END IF;
  IF coalesce(btrim(p_def->>'name'), '') = '' THEN
    RAISE EXCEPTION 'the sequence needs a name' USING ERRCODE = '22023';
  END IF;
  SELECT array_agg((s->>'day_number')::int ORDER BY (s->>'day_number')::int) INTO v_days
    FROM jsonb_array_elements(v_steps) s;
  IF EXISTS (SELECT 1 FROM unnest(v_days) d WHERE d IS NULL OR d NOT BETWEEN 1 AND 31) THEN
    RAISE EXCEPTION 'every step needs a day_number from 1 to 31' USING ERRCODE = '22023';
  END IF;
  IF (SELECT count(DISTINCT d) FROM unnest(v_days) d) <> coalesce(cardinality(v_days), 0) THEN
    RAISE EXCEPTION 'two steps have the same day_number' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_steps) s WHERE coalesce(btrim(s->>'content'), '') = '') THEN
    RAISE EXCEPTION 'every step needs a message' USING ERRCODE = '22023';
  END IF;
  IF (SELECT count(*) FROM jsonb_array_elements(v_steps) s WHERE (s->>'is_entry_point')::boolean) > 1 THEN
    RAISE EXCEPTION 'only one step can be the entry point' USING ERRCODE = '22023';
  END IF;
  IF coalesce(nullif(p_def->>'max_delay_seconds', '')::int, 60) < coalesce(nullif(p_def->>'min_delay_seconds', '')::int, 30) THEN
    RAISE EXCEPTION 'the maximum delay must be at least the minimum delay' USING ERRCODE = '22023';
  END IF;
  IF coalesce(jsonb_typeof(p_def->'device_ids'), 'null') NOT IN ('array', 'null') THEN
    RAISE EXCEPTION 'device_ids must be a list of device ids' USING ERRCODE = '22023';
  END IF;
  v_devices := array(SELECT x::bigint FROM jsonb_array_elements_text(
                        CASE WHEN jsonb_typeof(p_def->'device_ids') = 'array' THEN p_def->'device_ids' END) x);
  IF cardinality(v_devices) > 0 THEN
    PERFORM require_own_devices(p_user_id, v_devices);
  END IF;
  v_last_day := v_days[cardinality(v_days)];
  v_entry_day := coalesce((SELECT (s->>'day_number')::int FROM jsonb_array_elements(v_steps) s
                            WHERE (s->>'is_entry_point')::boolean), v_days[1]);
  SELECT nullif(s->>'chain_sequence_id', '')::bigint INTO v_chain
    FROM jsonb_array_elements(v_steps) s WHERE (s->>'day_number')::int = v_last_day;
  IF v_chain IS NOT NULL AND NOT EXISTS (SELECT 1 FROM sequences WHERE id = v_chain AND user_id = p_user_id
                                                                   AND id IS DISTINCT FROM p_sequence_id) THEN
    RAISE EXCEPTION 'the sequence to chain to does not exist' USING ERRCODE = '22023';
  END IF;

  IF v_id IS NULL THEN
    PERFORM require_quota(p_user_id, 'sequences', 1);
    INSERT INTO sequences (user_id, name, niche, trigger) VALUES (p_user_id, btrim(p_def->>'name'), '', v_trigger)
    RETURNING id INTO v_id;
  ELSIF NOT EXISTS (SELECT 1 FROM sequences WHERE id = v_id AND user_id = p_user_id FOR UPDATE) THEN
    RETURN NULL;   -- not the caller's: the page says 404
  END IF;
  UPDATE sequences SET
    name = btrim(p_def->>'name'),
    niche = btrim(coalesce(p_def->>'niche', '')),
    trigger = v_trigger,
    schedule_time = nullif(p_def->>'schedule_time', '')::time,
    schedule_tolerance_minutes = coalesce(nullif(p_def->>'schedule_tolerance_minutes', '')::int, 60),
    min_delay_seconds = coalesce(nullif(p_def->>'min_delay_seconds', '')::int, 30),
    max_delay_seconds = coalesce(nullif(p_def->>'max_delay_seconds', '')::int, 60),
    stop_on_reply = coalesce((p_def->>'stop_on_reply')::boolean, true),
    device_ids = nullif(v_devices, '{}'),
    updated_at = now()
   WHERE id = v_id;

  -- Steps are matched by day_number, so ids (and the history hanging on them) survive edits.
  UPDATE sequence_steps SET is_entry_point = false WHERE sequence_id = v_id AND is_entry_point;
  INSERT INTO sequence_steps AS st (sequence_id, day_number, trigger, next_trigger, trigger_delay_hours,
                                    is_entry_point, content, media_url, media_id, chain_sequence_id)
  SELECT v_id, d.day, d.step_trigger,
         CASE WHEN d.day = v_last_day
              THEN coalesce(d.next_trigger, (SELECT trigger FROM sequences WHERE id = v_chain))
              ELSE coalesce(d.next_trigger, lead(d.step_trigger) OVER (ORDER BY d.day)) END,
         d.delay, d.day = v_entry_day, d.content, d.media_url, require_own_media(p_user_id, d.media_id),
         CASE WHEN d.day = v_last_day THEN v_chain END
    FROM (SELECT (s->>'day_number')::int AS day,
                 CASE WHEN (s->>'day_number')::int = v_entry_day THEN v_trigger
                      ELSE coalesce(nullif(lower(btrim(s->>'trigger')), ''),
                                    v_trigger || '_day' || (s->>'day_number')) END AS step_trigger,
                 nullif(lower(btrim(s->>'next_trigger')), '') AS next_trigger,
                 coalesce(nullif(s->>'trigger_delay_hours', '')::numeric,
                          CASE WHEN (s->>'day_number')::int = v_entry_day THEN 0 ELSE 24 END) AS delay,
                 btrim(s->>'content') AS content, nullif(btrim(s->>'media_url'), '') AS media_url,
                 nullif(s->>'media_id', '')::bigint AS media_id
            FROM jsonb_array_elements(v_steps) s) d
  ON CONFLICT (sequence_id, day_number) DO UPDATE SET
    trigger = excluded.trigger, next_trigger = excluded.next_trigger,
    trigger_delay_hours = excluded.trigger_delay_hours, is_entry_point = excluded.is_entry_point,
    content = excluded.content, media_url = excluded.media_url, media_id = excluded.media_id,
    chain_sequence_id = excluded.chain_sequence_id;
  -- Contacts waiting for a removed step move on to the next step that stays.
  UPDATE sequence_enrollments e SET next_step_id = (
           SELECT k.id FROM sequence_steps k WHERE k.sequence_id = v_id AND k.day_number > st.day_number
              AND k.day_number = ANY (v_days) ORDER BY k.day_number LIMIT 1)
    FROM sequence_steps st
   WHERE st.sequence_id = v_id AND e.next_step_id = st.id AND e.status = 'active'
     AND st.day_number <> ALL (coalesce(v_days, '{}'));
  DELETE FROM sequence_steps WHERE sequence_id = v_id AND day_number <> ALL (coalesce(v_days, '{}'));
  RETURN v_id;
EXCEPTION
  WHEN unique_violation THEN
    RAISE EXCEPTION 'you already have a sequence with trigger "%"', v_trigger USING ERRCODE = '23505';
  WHEN invalid_text_representation OR invalid_datetime_format OR datetime_field_overflow THEN
    RAISE EXCEPTION 'bad value: %', SQLERRM USING ERRCODE = '22023';
END $$;
COMMENT ON FUNCTION save_sequence(bigint, bigint, jsonb) IS
  'Creates (p_sequence_id NULL) or updates one of the owner''s sequences with its steps from JSON {name, niche, trigger, schedule_time, schedule_tolerance_minutes, min/max_delay_seconds, stop_on_reply, device_ids (empty or absent: every device), steps:[{day_number, trigger, next_trigger, trigger_delay_hours, is_entry_point, content, media_url, media_id, chain_sequence_id}]}; media_id is the step''s stored image (media_url where it came from). Step triggers default to <trigger>_day<N>. Returns the id, NULL when not the owner''s.';

CREATE OR REPLACE FUNCTION set_sequence_status(p_user_id bigint, p_sequence_id bigint, p_status text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF p_status NOT IN ('active', 'inactive') THEN
    RAISE EXCEPTION 'status must be active or inactive' USING ERRCODE = '22023';
  END IF;
  PERFORM 1 FROM sequences WHERE id = p_sequence_id AND user_id = p_user_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF p_status = 'active' AND NOT EXISTS (SELECT 1 FROM sequence_steps WHERE sequence_id = p_sequence_id) THEN
    RAISE EXCEPTION 'add at least one step before activating the sequence' USING ERRCODE = '22023';
  END IF;
  UPDATE sequences SET status = p_status, updated_at = now() WHERE id = p_sequence_id AND status <> p_status;
  IF NOT FOUND THEN
    RETURN true;   -- already so
  END IF;
  -- Inactive: queued-not-claimed steps are held (activation skips the sequence); active: resumed,
  -- and leads already carrying the trigger are enrolled.
  UPDATE broadcast_messages SET held = (p_status = 'inactive')
   WHERE sequence_id = p_sequence_id AND status = 'pending' AND held = (p_status = 'active');
  IF p_status = 'active' THEN
    PERFORM enroll_leads(array(
      SELECT l.id FROM leads l JOIN sequences s ON s.id = p_sequence_id
       WHERE l.user_id = p_user_id AND l.trigger IS NOT NULL AND l.trigger_tokens @> ARRAY[s.trigger]));
  END IF;
  RETURN true;
END $$;
COMMENT ON FUNCTION set_sequence_status(bigint, bigint, text) IS
  'Activates (resumes held steps, enrolls matching leads) or deactivates (holds pending steps) one of the owner''s sequences; false when not the owner''s.';

CREATE OR REPLACE FUNCTION delete_sequence(p_user_id bigint, p_sequence_id bigint)
RETURNS boolean LANGUAGE sql AS $$
  WITH gone AS (DELETE FROM sequences WHERE id = p_sequence_id AND user_id = p_user_id RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM gone)
$$;
COMMENT ON FUNCTION delete_sequence(bigint, bigint) IS
  'Deletes one of the owner''s sequences with its steps, enrollments and step messages; false when not the owner''s.';

CREATE OR REPLACE FUNCTION sequence_definition(p_user_id bigint, p_sequence_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
           'id', s.id, 'name', s.name, 'niche', s.niche, 'trigger', s.trigger, 'status', s.status,
           'schedule_time', to_char(s.schedule_time, 'HH24:MI'),
           'schedule_tolerance_minutes', s.schedule_tolerance_minutes,
           'min_delay_seconds', s.min_delay_seconds, 'max_delay_seconds', s.max_delay_seconds,
           'stop_on_reply', s.stop_on_reply, 'device_ids', s.device_ids, 'created_at', s.created_at,
           'steps', coalesce((SELECT jsonb_agg(jsonb_build_object(
                      'id', st.id, 'day_number', st.day_number, 'trigger', st.trigger,
                      'next_trigger', st.next_trigger, 'trigger_delay_hours', st.trigger_delay_hours,
                      'is_entry_point', st.is_entry_point, 'content', st.content, 'media_url', st.media_url,
                      'media_id', st.media_id,
                      'chain_sequence_id', st.chain_sequence_id) ORDER BY st.day_number)
                      FROM sequence_steps st WHERE st.sequence_id = s.id), '[]'))
    FROM sequences s WHERE s.id = p_sequence_id AND s.user_id = p_user_id
$$;
COMMENT ON FUNCTION sequence_definition(bigint, bigint) IS
  'One of the owner''s sequences with its steps, as JSON for the builder and API; NULL when not the owner''s.';

