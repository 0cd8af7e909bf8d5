-- CSV lead imports. The web process streams the upload into lead_import_lines with COPY (each record
-- as its fields joined by U+001F, or a text array: _lead_import_fields); everything after that is
-- here: header check, per-line validation with a reason, the merge of good rows (_merge_leads),
-- progress and the downloadable report.

CREATE OR REPLACE FUNCTION start_lead_import(p_user_id bigint, p_device_id bigint, p_filename text,
                                             p_bytes_total bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
  IF p_device_id IS NOT NULL AND NOT p_device_id = ANY (_own_device_ids(p_user_id)) THEN
    RAISE EXCEPTION 'device % is not one of your devices', p_device_id USING ERRCODE = '22023';
  END IF;
  PERFORM require_quota(p_user_id, 'leads', 1);
  -- One import at a time per account: a running one holds a database connection per lane.
  PERFORM FROM users WHERE id = p_user_id FOR NO KEY UPDATE;   -- two starts at once: one after the other
  IF EXISTS (SELECT FROM lead_imports WHERE user_id = p_user_id AND status IN ('uploading', 'validating')) THEN
    RAISE EXCEPTION 'another import of yours is still running: wait for it to finish '
                    '(an upload that stopped is given up after 10 minutes)';
  END IF;
  INSERT INTO lead_imports (user_id, device_id, filename, bytes_total)
  VALUES (p_user_id, p_device_id, left(coalesce(p_filename, ''), 255), p_bytes_total)
  RETURNING id INTO v_id;
  INSERT INTO lead_import_lanes (import_id, lane)
  SELECT v_id, generate_series(0, greatest(setting('lead_import_lanes')::integer, 1) - 1);
  RETURN v_id;
END $$;
COMMENT ON FUNCTION start_lead_import(bigint, bigint, text, bigint) IS
  'Opens an import job (status uploading) with its validation lanes, unless another of the owner''s imports is still running; '
  'p_device_id is used for rows whose device_id column is blank (NULL: the AI pool).';

CREATE OR REPLACE FUNCTION _lead_import_event(i lead_imports) RETURNS void
LANGUAGE sql AS $$
  SELECT notify_user(i.user_id, 'lead_import', jsonb_build_object(
    'id', i.id, 'status', i.status, 'bytes_read', i.bytes_read, 'bytes_total', i.bytes_total,
    'lines_processed', i.lines_processed, 'lines_total', i.lines_total, 'inserted', i.rows_inserted,
    'merged', i.rows_merged, 'bad', i.rows_bad, 'error', i.error))
$$;
COMMENT ON FUNCTION _lead_import_event(lead_imports) IS 'Pushes an import''s progress to its owner''s dashboards (event lead_import).';

CREATE OR REPLACE FUNCTION lead_import_uploaded(p_import_id bigint, p_bytes_read bigint, p_lines integer,
                                               p_done boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE v lead_imports;
BEGIN
  UPDATE lead_imports
     SET bytes_read = p_bytes_read, lines_total = p_lines, updated_at = now(),
         status = CASE WHEN p_done THEN 'validating' ELSE status END
   WHERE id = p_import_id AND status = 'uploading'
  RETURNING * INTO v;
  IF FOUND THEN PERFORM _lead_import_event(v); END IF;
END $$;
COMMENT ON FUNCTION lead_import_uploaded(bigint, bigint, integer, boolean) IS
  'Upload progress (bytes and lines staged so far); p_done moves the import on to validation.';

CREATE OR REPLACE FUNCTION fail_lead_import(p_import_id bigint, p_error text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE v lead_imports;
BEGIN
  UPDATE lead_imports SET status = 'failed', error = p_error, finished_at = now(), updated_at = now()
   WHERE id = p_import_id AND status IN ('uploading', 'validating')
  RETURNING * INTO v;
  IF FOUND THEN PERFORM _lead_import_event(v); END IF;
  -- Its lanes stay: one may be mid-chunk, holding its lane's row while it waits for the import's,
  -- which this transaction now holds (deleting the lanes here would wait on it: a deadlock).
  DELETE FROM lead_import_lines WHERE import_id = p_import_id;
END $$;
COMMENT ON FUNCTION fail_lead_import(bigint, text) IS 'Ends an import as failed with the reason, dropping its staged lines.';

CREATE OR REPLACE FUNCTION _lead_import_fields(p_fields text[], p_record text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT coalesce(p_fields, string_to_array(p_record, E'\x1f')) $$;
COMMENT ON FUNCTION _lead_import_fields(text[], text) IS
  'A staged line''s CSV fields: the text[] column, else the U+001F-joined record split back.';

-- The header names the columns (any order, a subset of _lead_csv_columns(), phone required).
-- Returns the columns, or raises 22023 saying what is wrong.
CREATE OR REPLACE FUNCTION _lead_import_header(p_import_id bigint) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
DECLARE v_cols text[];
        v_bad text;
BEGIN
  SELECT array_agg(lower(btrim(f)) ORDER BY n) INTO v_cols
    FROM lead_import_lines s, unnest(_lead_import_fields(s.fields, s.record)) WITH ORDINALITY AS u(f, n)
   WHERE s.import_id = p_import_id AND s.line_no = 1;
  IF v_cols IS NULL THEN
    RAISE EXCEPTION 'the file is empty or its first line is unreadable; it must start with a header such as %',
      array_to_string(_lead_csv_columns(), ',') USING ERRCODE = '22023';
  END IF;
  v_cols[1] := regexp_replace(v_cols[1], '^\ufeff', '');  -- a byte-order mark from spreadsheet exports
  SELECT c INTO v_bad FROM unnest(v_cols) AS c WHERE NOT c = ANY (_lead_csv_columns()) LIMIT 1;
  IF v_bad IS NOT NULL THEN
    RAISE EXCEPTION 'unknown column "%" in the header line (known: %)', left(v_bad, 40),
      array_to_string(_lead_csv_columns(), ', ') USING ERRCODE = '22023';
  END IF;
  IF NOT 'phone' = ANY (v_cols) THEN
    RAISE EXCEPTION 'the header line has no phone column' USING ERRCODE = '22023';
  END IF;
  IF (SELECT count(DISTINCT c) FROM unnest(v_cols) AS c) <> cardinality(v_cols) THEN
    RAISE EXCEPTION 'the header line names a column twice' USING ERRCODE = '22023';
  END IF;
  RETURN v_cols;
END $$;
COMMENT ON FUNCTION _lead_import_header(bigint) IS 'The column names of an import''s header line, checked.';

-- Validates and merges the next p_lines staged lines of one lane (the one furthest behind that no
-- other session is working on: sessions calling side by side take a lane each). A line belongs to
-- the lane of its phone number's last character (a valid number's last digit: normalising rewrites
-- only its start), a line without one to lane 0 (migration 2108); a lane reads just that field of
-- the others' lines. Returns false when this session found no lane to work on: none left (the
-- import is then finished) or the rest taken by others.
-- Each line is split once and only its values travel on, streamed through subqueries into one
-- stored step (each materialised step cost ~0.1 s a chunk of 100k lines); a bad line's content for
-- the report is read back from staging.
-- The lanes' chunk ends take the import's row one at a time, so the quota's count after one lane's
-- chunk sees the other's, and a chunk of an import that ended meanwhile is undone.
-- work_mem: a chunk's sorts (line order, the merge's key order) fit in memory rather than on disk.
CREATE OR REPLACE FUNCTION lead_import_step(p_import_id bigint, p_lines integer DEFAULT 100000)
RETURNS boolean LANGUAGE plpgsql SET work_mem = '64MB' AS $$
DECLARE v lead_imports;
        v_lane smallint;
        v_lanes integer;
        v_from integer;
        v_cols text[];
        v_phone_at integer;
        v_to integer;
        v_bad integer;
        v_good integer;
        v_inserted integer;
        v_slowest integer;
        v_own bigint[];
        v_country text;
BEGIN
  SELECT * INTO v FROM lead_imports WHERE id = p_import_id AND status = 'validating';
  IF NOT FOUND THEN RETURN false; END IF;
  BEGIN
    v_cols := _lead_import_header(p_import_id);
  EXCEPTION WHEN invalid_parameter_value THEN
    PERFORM fail_lead_import(p_import_id, SQLERRM);
    RETURN false;
  END;
  SELECT l.lane, l.lines_processed INTO v_lane, v_from
    FROM lead_import_lanes l
   WHERE l.import_id = p_import_id AND l.lines_processed < v.lines_total
   ORDER BY l.lines_processed, l.lane
   LIMIT 1 FOR UPDATE SKIP LOCKED;
  IF NOT FOUND THEN RETURN false; END IF;
  v_lanes := (SELECT count(*) FROM lead_import_lanes WHERE import_id = p_import_id);
  v_own := _own_device_ids(v.user_id);
  v_country := _user_country(v.user_id);
  v_phone_at := array_position(v_cols, 'phone');
  v_to := least(greatest(v_from, 1) + p_lines, v.lines_total);

  BEGIN   -- one chunk, whole or not at all
  WITH checked AS MATERIALIZED (   -- the one stored step: the layers below stream (OFFSET 0 keeps each apart)
    SELECT t.line_no, t.name, t.niche, t.target_status, t.trigger, t.device_id, t.phone_stored,
           CASE WHEN t.defect IS NOT NULL THEN t.defect
                WHEN t.n_fields <> cardinality(v_cols)
                  THEN format('expected %s columns, found %s', cardinality(v_cols), t.n_fields)
                WHEN t.device_id IS NULL AND coalesce(t.device_text, '') <> ''
                  THEN format('device_id "%s" is not a number', left(t.device_text, 40))
                WHEN t.phone_stored IS NULL THEN _phone_problem(t.phone, v_country)
                ELSE _lead_fields_problem(t.target_status, t.device_id, v_own)
           END AS reason
      FROM (SELECT st.*,   -- each value computed once (pulled up, the CASE above would repeat them)
                   CASE WHEN coalesce(st.device_text, '') = '' THEN v.device_id
                        WHEN st.device_text ~ '^[0-9]{1,18}$' THEN st.device_text::bigint END AS device_id,
                   _normalize_phone(st.phone, v_country) AS phone_stored
              FROM (SELECT s.line_no, s.defect, cardinality(s.fields) AS n_fields,
                           _csv_restored(s.fields[array_position(v_cols, 'name')]) AS name,
                           s.fields[array_position(v_cols, 'phone')] AS phone,
                           _csv_restored(s.fields[array_position(v_cols, 'niche')]) AS niche,
                           s.fields[array_position(v_cols, 'target_status')] AS target_status,
                           _csv_restored(s.fields[array_position(v_cols, 'trigger')]) AS trigger,
                           btrim(s.fields[array_position(v_cols, 'device_id')]) AS device_text
                      FROM (SELECT l.line_no, _lead_import_fields(l.fields, l.record) AS fields, l.defect
                              FROM lead_import_lines l
                             WHERE l.import_id = p_import_id AND l.line_no > greatest(v_from, 1) AND l.line_no <= v_to
                               AND _phone_lane(_phone_stripped(coalesce(l.fields[v_phone_at],
                                                                         split_part(l.record, E'\x1f', v_phone_at))),
                                               v_lanes) = v_lane   -- the lane's lines only, before splitting them
                             OFFSET 0) s   -- each record split once
                     WHERE s.defect IS NOT NULL OR btrim(array_to_string(s.fields, '')) <> ''   -- blank lines are no rows
                    OFFSET 0) st
            OFFSET 0) t
  ), bad AS (
    INSERT INTO lead_import_errors (import_id, line_no, reason, content)
    SELECT p_import_id, c.line_no, c.reason,
           (SELECT left(coalesce(array_to_string(_lead_import_fields(l.fields, l.record), ',', ''), ''), 200)
              FROM lead_import_lines l WHERE l.import_id = p_import_id AND l.line_no = c.line_no)   -- a probe per bad line
      FROM checked c
     WHERE c.reason IS NOT NULL
    RETURNING 1
  ), good AS (   -- in line order (one sort for all the arrays: the last of a repeated lead wins)
    SELECT array_agg(device_id) AS devices, array_agg(name) AS names, array_agg(phone_stored) AS phones,
           array_agg(niche) AS niches, array_agg(target_status) AS statuses, array_agg(trigger) AS triggers,
           count(*) AS n
      FROM (SELECT * FROM checked WHERE reason IS NULL ORDER BY line_no) ok
  ), merged AS (
    SELECT m.inserted FROM good, _merge_leads(v.user_id, good.devices, good.names, good.phones, good.niches,
                                             good.statuses, good.triggers) AS m
     WHERE good.n > 0
  )
  SELECT (SELECT count(*) FROM bad), (SELECT n FROM good), (SELECT count(*) FILTER (WHERE inserted) FROM merged)
    INTO v_bad, v_good, v_inserted;
  SELECT * INTO v FROM lead_imports WHERE id = p_import_id FOR UPDATE;   -- held until commit
  IF v.status <> 'validating' THEN   -- failed by another lane meanwhile
    RAISE EXCEPTION 'import % ended while this chunk ran', p_import_id USING ERRCODE = 'WAI01';
  END IF;
  IF v_inserted > 0 THEN   -- a chunk of merges adds no lead (the count costs ~0.1 s at a million leads)
    PERFORM require_quota(v.user_id, 'leads', 0);
  END IF;
  EXCEPTION WHEN SQLSTATE 'WAQ01' THEN   -- past the lead quota: this chunk is undone and the import ends
    PERFORM fail_lead_import(p_import_id, SQLERRM);
    RETURN false;
  WHEN SQLSTATE 'WAI01' THEN   -- this chunk is undone: the import ended without it
    RETURN false;
  END;

  UPDATE lead_import_lanes SET lines_processed = v_to WHERE import_id = p_import_id AND lane = v_lane;
  v_slowest := (SELECT min(lines_processed) FROM lead_import_lanes WHERE import_id = p_import_id);
  UPDATE lead_imports
     SET lines_processed = v_slowest, rows_bad = rows_bad + v_bad, rows_inserted = rows_inserted + v_inserted,
         rows_merged = rows_merged + v_good - v_inserted, updated_at = now(),
         status = CASE WHEN v_slowest >= lines_total THEN 'finished' ELSE status END,
         finished_at = CASE WHEN v_slowest >= lines_total THEN now() END
   WHERE id = p_import_id
  RETURNING * INTO v;
  IF v.status = 'finished' THEN
    DELETE FROM lead_import_lines WHERE import_id = p_import_id;
    DELETE FROM lead_import_lanes WHERE import_id = p_import_id;
  END IF;
  PERFORM _lead_import_event(v);
  RETURN v.status = 'validating';
END $$;
COMMENT ON FUNCTION lead_import_step(bigint, integer) IS
  'Validates the next p_lines staged lines of one of an import''s lanes: bad ones to lead_import_errors with a reason, good ones merged into leads; '
  'true while lines remain, false when no lane is left to this session. '
  'A chunk that would pass the owner''s lead quota is undone and the import fails with the reason.';

CREATE OR REPLACE PROCEDURE run_lead_imports(p_max_seconds integer DEFAULT 50)
LANGUAGE plpgsql AS $$
DECLARE v_until timestamptz := clock_timestamp() + make_interval(secs => p_max_seconds);
        v_id bigint;
BEGIN
  -- Uploads whose web process died never finish staging.
  FOR v_id IN SELECT id FROM lead_imports WHERE status = 'uploading' AND updated_at < now() - interval '10 minutes' LOOP
    PERFORM fail_lead_import(v_id, 'the upload was interrupted; upload the file again');
    COMMIT;
  END LOOP;
  -- Validations left behind (their web thread died): one chunk per transaction, so progress sticks.
  FOR v_id IN SELECT id FROM lead_imports WHERE status = 'validating' AND updated_at < now() - interval '2 minutes' LOOP
    WHILE clock_timestamp() < v_until AND lead_import_step(v_id) LOOP
      COMMIT;
    END LOOP;
    COMMIT;
  END LOOP;
END $$;
COMMENT ON PROCEDURE run_lead_imports(integer) IS
  'Scheduled recovery: fails uploads interrupted for 10 minutes and resumes validations idle for 2 minutes.';

CREATE OR REPLACE FUNCTION lead_import_status(p_user_id bigint, p_import_id bigint)
RETURNS TABLE (id bigint, filename text, status text, error text, bytes_total bigint, bytes_read bigint,
               lines_total integer, lines_processed integer, rows_inserted integer, rows_merged integer,
               rows_bad integer, progress_pct numeric, created_at timestamptz, finished_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT i.id, i.filename, i.status, i.error, i.bytes_total, i.bytes_read, i.lines_total, i.lines_processed,
         i.rows_inserted, i.rows_merged, i.rows_bad,
         -- uploading is the first half of the bar, validating the second
         round(CASE i.status
                 WHEN 'uploading' THEN 50.0 * i.bytes_read / nullif(i.bytes_total, 0)
                 WHEN 'validating' THEN 50 + 50.0 * i.lines_processed / nullif(i.lines_total, 0)
                 ELSE 100 END, 1),
         i.created_at, i.finished_at
    FROM lead_imports i
   WHERE i.user_id = p_user_id AND (p_import_id IS NULL OR i.id = p_import_id)
   ORDER BY i.id DESC
   LIMIT 20
$$;
COMMENT ON FUNCTION lead_import_status(bigint, bigint) IS
  'One of the owner''s imports (or, with NULL, the 20 latest) with counts and progress percentage.';

CREATE OR REPLACE FUNCTION lead_import_report(p_user_id bigint, p_import_id bigint)
RETURNS TABLE (line_no integer, reason text, content text)
LANGUAGE sql STABLE AS $$
  SELECT e.line_no, e.reason, _csv_neutralised(e.content)
    FROM lead_import_errors e JOIN lead_imports i ON i.id = e.import_id
   WHERE i.user_id = p_user_id AND e.import_id = p_import_id
   ORDER BY e.line_no
$$;
COMMENT ON FUNCTION lead_import_report(bigint, bigint) IS
  'The rejected lines of one of the owner''s imports, by line number (content neutralised for spreadsheets).';
