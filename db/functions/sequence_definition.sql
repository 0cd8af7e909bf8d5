-- Drip sequences, the definition: the owner's sequences and steps as JSON in and out (the JSON is
-- parsed once, checked by _check_sequence_input), status changes and deletion.
-- The engine (enrollment, activation, completion, retry) is in sequence_engine.sql; the counters and
-- report reads in sequence_reports.sql.

-- Definition --------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION _check_sequence_input(p_user_id bigint, p_sequence_id bigint, p_seq sequences,
                                                p_steps sequence_steps[])
RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF p_seq.trigger IS NULL OR p_seq.trigger = '' OR p_seq.trigger ~ '[,\s]' THEN
    RAISE EXCEPTION 'the entry trigger must be one word without commas or spaces' USING ERRCODE = '22023';
  END IF;
  IF coalesce(p_seq.name, '') = '' THEN
    RAISE EXCEPTION 'the sequence needs a name' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(p_steps) s WHERE s.day_number IS NULL OR s.day_number NOT BETWEEN 1 AND 31) THEN
    RAISE EXCEPTION 'every step needs a day_number from 1 to 31' USING ERRCODE = '22023';
  END IF;
  IF (SELECT count(DISTINCT s.day_number) <> count(*) FROM unnest(p_steps) s) THEN
    RAISE EXCEPTION 'two steps have the same day_number' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(p_steps) s WHERE coalesce(s.content, '') = '') THEN
    RAISE EXCEPTION 'every step needs a message' USING ERRCODE = '22023';
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(p_steps) s WHERE s.trigger_delay_hours < 0) THEN
    RAISE EXCEPTION 'a step''s wait (trigger_delay_hours) cannot be negative' USING ERRCODE = '22023';
  END IF;
  IF (SELECT count(*) FROM unnest(p_steps) s WHERE s.is_entry_point) > 1 THEN
    RAISE EXCEPTION 'only one step can be the entry point' USING ERRCODE = '22023';
  END IF;
  IF p_seq.schedule_tolerance_minutes NOT BETWEEN 0 AND 720 THEN
    RAISE EXCEPTION 'the window tolerance must be 0 to 720 minutes' USING ERRCODE = '22023';
  END IF;
  IF p_seq.min_delay_seconds < 0 OR p_seq.max_delay_seconds < p_seq.min_delay_seconds THEN
    RAISE EXCEPTION 'the maximum delay must be at least the minimum delay' USING ERRCODE = '22023';
  END IF;
  IF cardinality(p_seq.device_ids) > 0 THEN
    PERFORM _require_own_devices(p_user_id, p_seq.device_ids);
  END IF;
  IF EXISTS (SELECT 1 FROM unnest(p_steps) s WHERE s.chain_sequence_id IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM sequences x WHERE x.id = s.chain_sequence_id AND x.user_id = p_user_id
                                   AND x.id IS DISTINCT FROM p_sequence_id)) THEN
    RAISE EXCEPTION 'the sequence to chain to does not exist' USING ERRCODE = '22023';
  END IF;
END $$;
COMMENT ON FUNCTION _check_sequence_input(bigint, bigint, sequences, sequence_steps[]) IS
  'Raises 22023 with the reason when a parsed sequence definition is invalid (trigger, name, days, messages, waits, entry point, window, delays, foreign devices, chain target).';

CREATE OR REPLACE FUNCTION save_sequence(p_user_id bigint, p_sequence_id bigint, p_def jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint := p_sequence_id;
  v_seq sequences;
  v_steps sequence_steps[];
  v_last_day integer;
  v_entry_day integer;
BEGIN
  IF jsonb_typeof(p_def) <> 'object' OR coalesce(jsonb_typeof(p_def->'steps'), 'array') <> 'array' THEN
    RAISE EXCEPTION 'steps must be a list' USING ERRCODE = '22023';
  END IF;
  IF coalesce(jsonb_typeof(p_def->'device_ids'), 'null') NOT IN ('array', 'null') THEN
    RAISE EXCEPTION 'device_ids must be a list of device ids' USING ERRCODE = '22023';
  END IF;
  -- Parsed once: the settings into a sequences row, the steps into sequence_steps rows (forms send
  -- '' for an empty field: that is "not given").
  SELECT p_user_id, btrim(d.name), btrim(coalesce(d.niche, '')), lower(btrim(coalesce(d.trigger, ''))),
         nullif(d.schedule_time, '')::time, coalesce(nullif(d.schedule_tolerance_minutes, '')::int, setting('default_window_tolerance_minutes')::int),
         coalesce(nullif(d.min_delay_seconds, '')::int, setting('default_min_delay_seconds')::int),
         coalesce(nullif(d.max_delay_seconds, '')::int, setting('default_max_delay_seconds')::int),
         coalesce(d.stop_on_reply, true),
         nullif(array(SELECT x::bigint FROM jsonb_array_elements_text(coalesce(d.device_ids, '[]')) x), '{}'),
         coalesce(d.allow_reentry, false), coalesce(d.failover, false)
    INTO v_seq.user_id, v_seq.name, v_seq.niche, v_seq.trigger, v_seq.schedule_time,
         v_seq.schedule_tolerance_minutes, v_seq.min_delay_seconds, v_seq.max_delay_seconds, v_seq.stop_on_reply,
         v_seq.device_ids, v_seq.allow_reentry, v_seq.failover
    FROM jsonb_to_record(p_def) AS d(name text, niche text, trigger text, schedule_time text,
                                     schedule_tolerance_minutes text, min_delay_seconds text, max_delay_seconds text,
                                     stop_on_reply boolean, allow_reentry boolean, device_ids jsonb, failover boolean);
  SELECT array_agg(ROW(NULL::bigint, v_id, s.day_number::int, nullif(lower(btrim(s.trigger)), ''),
                       nullif(lower(btrim(s.next_trigger)), ''), nullif(s.trigger_delay_hours, '')::numeric,
                       coalesce(s.is_entry_point, false), btrim(s.content), nullif(btrim(s.media_url), ''),
                       nullif(s.chain_sequence_id, '')::bigint, nullif(s.media_id, '')::bigint)::sequence_steps
                   ORDER BY s.day_number::int)
    INTO v_steps
    FROM jsonb_to_recordset(coalesce(p_def->'steps', '[]')) AS s(day_number text, trigger text, next_trigger text,
           trigger_delay_hours text, is_entry_point boolean, content text, media_url text, chain_sequence_id text,
           media_id text);
  v_steps := coalesce(v_steps, '{}');
  PERFORM _check_sequence_input(p_user_id, p_sequence_id, v_seq, v_steps);
  v_last_day := v_steps[cardinality(v_steps)].day_number;
  v_entry_day := coalesce((SELECT s.day_number FROM unnest(v_steps) s WHERE s.is_entry_point), v_steps[1].day_number);

  IF v_id IS NULL THEN
    PERFORM require_quota(p_user_id, 'sequences', 1);
    INSERT INTO sequences (user_id, name, niche, trigger) VALUES (p_user_id, v_seq.name, '', v_seq.trigger)
    RETURNING id INTO v_id;
  ELSIF NOT EXISTS (SELECT 1 FROM sequences WHERE id = v_id AND user_id = p_user_id FOR UPDATE) THEN
    RETURN NULL;   -- not the caller's: the page says 404
  END IF;
  UPDATE sequences SET
    name = v_seq.name, niche = v_seq.niche, trigger = v_seq.trigger, schedule_time = v_seq.schedule_time,
    schedule_tolerance_minutes = v_seq.schedule_tolerance_minutes, min_delay_seconds = v_seq.min_delay_seconds,
    max_delay_seconds = v_seq.max_delay_seconds, stop_on_reply = v_seq.stop_on_reply,
    allow_reentry = v_seq.allow_reentry, device_ids = v_seq.device_ids, failover = v_seq.failover, updated_at = now()
   WHERE id = v_id;

  -- Steps are matched by day_number, so ids (and the history hanging on them) survive edits.
  -- A step's wait defaults to a day (the last step's to none); only the last step chains.
  UPDATE sequence_steps SET is_entry_point = false WHERE sequence_id = v_id AND is_entry_point;
  INSERT INTO sequence_steps AS st (sequence_id, day_number, trigger, next_trigger, trigger_delay_hours,
                                    is_entry_point, content, media_url, media_id, chain_sequence_id)
  SELECT v_id, d.day_number, d.step_trigger,
         CASE WHEN d.day_number = v_last_day
              THEN coalesce(d.next_trigger, (SELECT trigger FROM sequences WHERE id = d.chain))
              ELSE coalesce(d.next_trigger, lead(d.step_trigger) OVER (ORDER BY d.day_number)) END,
         coalesce(d.trigger_delay_hours, CASE WHEN d.day_number = v_last_day THEN 0 ELSE 24 END),
         d.day_number = v_entry_day, d.content, d.media_url, _require_own_media(p_user_id, d.media_id), d.chain
    FROM (SELECT s.*, CASE WHEN s.day_number = v_entry_day THEN v_seq.trigger
                           ELSE coalesce(s.trigger, v_seq.trigger || '_day' || s.day_number) END AS step_trigger,
                 CASE WHEN s.day_number = v_last_day THEN s.chain_sequence_id END AS chain
            FROM unnest(v_steps) s) d
  ON CONFLICT (sequence_id, day_number) DO UPDATE SET
    trigger = excluded.trigger, next_trigger = excluded.next_trigger,
    trigger_delay_hours = excluded.trigger_delay_hours, is_entry_point = excluded.is_entry_point,
    content = excluded.content, media_url = excluded.media_url, media_id = excluded.media_id,
    chain_sequence_id = excluded.chain_sequence_id;
  -- Contacts waiting for a removed step move on to the next step that stays.
  UPDATE sequence_enrollments e SET next_step_id = (
           SELECT k.id FROM sequence_steps k JOIN unnest(v_steps) kept ON kept.day_number = k.day_number
            WHERE k.sequence_id = v_id AND k.day_number > st.day_number ORDER BY k.day_number LIMIT 1)
    FROM sequence_steps st
   WHERE st.sequence_id = v_id AND e.next_step_id = st.id AND e.status = 'active'
     AND NOT EXISTS (SELECT 1 FROM unnest(v_steps) kept WHERE kept.day_number = st.day_number);
  DELETE FROM sequence_steps st WHERE st.sequence_id = v_id
     AND NOT EXISTS (SELECT 1 FROM unnest(v_steps) kept WHERE kept.day_number = st.day_number);
  RETURN v_id;
EXCEPTION
  WHEN unique_violation THEN
    RAISE EXCEPTION 'you already have a sequence with trigger "%"', v_seq.trigger USING ERRCODE = '23505';
  WHEN invalid_text_representation OR invalid_datetime_format OR datetime_field_overflow
       OR numeric_value_out_of_range THEN
    RAISE EXCEPTION 'bad value: %', SQLERRM USING ERRCODE = '22023';
END $$;
COMMENT ON FUNCTION save_sequence(bigint, bigint, jsonb) IS
  'Creates (p_sequence_id NULL) or updates one of the owner''s sequences with its steps from JSON {name, niche (leads of that niche only; empty: any), trigger, schedule_time, schedule_tolerance_minutes (default: the setting default_window_tolerance_minutes), min/max_delay_seconds, stop_on_reply, allow_reentry, failover (its messages may move to another device when theirs is lost), device_ids (empty or absent: every device), steps:[{day_number, trigger, next_trigger, trigger_delay_hours (wait after this step before the next; default 24, last 0), is_entry_point, content, media_url, media_id, chain_sequence_id}]}; media_id is the step''s stored image (media_url where it came from). Step triggers default to <trigger>_day<N>. Returns the id, NULL when not the owner''s.';

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
  PERFORM _hold_messages(array(SELECT m.id FROM broadcast_messages m
                                WHERE m.sequence_id = p_sequence_id AND m.status = 'pending'
                                  AND m.held = (p_status = 'active')), p_status = 'inactive');
  IF p_status = 'active' THEN
    PERFORM _enroll_leads(array(
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
  SELECT to_jsonb(ROW(
           s.id, s.name, s.niche, s.trigger, s.status, to_char(s.schedule_time, 'HH24:MI'),
           s.schedule_tolerance_minutes, s.min_delay_seconds, s.max_delay_seconds, s.stop_on_reply,
           s.allow_reentry, s.device_ids, s.created_at,
           ARRAY(SELECT ROW(st.id, st.day_number, st.trigger, st.next_trigger, st.trigger_delay_hours,
                            st.is_entry_point, st.content, st.media_url, st.media_id,
                            st.chain_sequence_id)::sequence_step_doc
                   FROM sequence_steps st WHERE st.sequence_id = s.id ORDER BY st.day_number),
           s.failover
         )::sequence_definition_doc)
    FROM sequences s WHERE s.id = p_sequence_id AND s.user_id = p_user_id
$$;
COMMENT ON FUNCTION sequence_definition(bigint, bigint) IS
  'One of the owner''s sequences with its steps, as JSON (sequence_definition_doc) for the builder and API; NULL when not the owner''s.';

