-- Leads: phone normalisation, validation, create/edit/delete, search, the one merge rule shared by
-- the form, the webhook and CSV import, and the audience test campaigns use.

-- Phone numbers ---------------------------------------------------------------------------------
-- Digits with the country code first. `012-345 6789` (national, leading 0) takes the owner's
-- country code; `+60 12-345 6789` and `0060...` are international; a bare `60123456789` is kept.
-- These are single expressions on purpose: PostgreSQL inlines them into the calling query, which
-- matters when a CSV import checks a million numbers (a nested, non-inlined call costs ~100x).
-- Inlining copies an argument wherever the body names it, so the raw number is stripped once and
-- the candidate checked once (a regex each, not a CASE naming them again and again).
-- Those using format() are STABLE, as format() is: a function marked more strictly is not inlined.
CREATE OR REPLACE FUNCTION _phone_stripped(p_raw text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT translate(coalesce(p_raw, ''), E' \t\r\n\u00a0().-', '') $$;
COMMENT ON FUNCTION _phone_stripped(text) IS 'A raw phone number without spaces, dashes, dots and brackets.';

-- Work split in lanes by phone number (a CSV import's validation, a broadcast's fan-out): a number's
-- last character, which normalising never rewrites, so every line or lead of one number meets in
-- one lane.
CREATE OR REPLACE FUNCTION _phone_lane(p_phone text, p_lanes integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ascii(right(p_phone, 1)) % greatest(p_lanes, 1) $$;
COMMENT ON FUNCTION _phone_lane(text, integer) IS
  'The lane (of p_lanes) a phone number belongs to: its last character''s, so one number''s work shares a lane.';

CREATE OR REPLACE FUNCTION _phone_candidate(p_raw text, p_country text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  -- national 0… takes the country code (not 00…, which is international like +…), then + or 00 goes
  SELECT regexp_replace(regexp_replace(_phone_stripped(p_raw), '^0(?!0)', p_country), '^(\+|00)', '')
$$;
COMMENT ON FUNCTION _phone_candidate(text, text) IS
  'A raw phone number with separators removed and the country code put first (not yet validated).';

CREATE OR REPLACE FUNCTION _normalize_phone(p_raw text, p_country text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  -- The length as a lookahead: substring() with a bounded repetition ([0-9]{6,14}) matched ~3x slower.
  SELECT substring(_phone_candidate(p_raw, p_country) FROM '^(?=[0-9]{7,15}$)[1-9][0-9]*$')
$$;
COMMENT ON FUNCTION _normalize_phone(text, text) IS
  'The phone number as stored (digits, country code first, 7-15 digits), or NULL when invalid (_phone_problem says why).';

CREATE OR REPLACE FUNCTION _phone_problem(p_raw text, p_country text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE
           WHEN _normalize_phone(p_raw, p_country) IS NOT NULL THEN NULL
           WHEN btrim(coalesce(p_raw, '')) = '' THEN 'phone number is empty'
           WHEN _phone_candidate(p_raw, p_country) !~ '^[0-9]*$'
             THEN format('phone number "%s" may only hold digits, spaces, dashes, dots, brackets and a leading +', left(p_raw, 40))
           WHEN _phone_candidate(p_raw, p_country) LIKE '0%'
             THEN format('phone number "%s" has no valid country code', left(p_raw, 40))
           WHEN length(_phone_candidate(p_raw, p_country)) < 7
             THEN format('phone number "%s" is too short (%s digits with the country code; at least 7)',
                         left(p_raw, 40), length(_phone_candidate(p_raw, p_country)))
           ELSE format('phone number "%s" is too long (%s digits with the country code; at most 15)',
                       left(p_raw, 40), length(_phone_candidate(p_raw, p_country)))
         END
$$;
COMMENT ON FUNCTION _phone_problem(text, text) IS
  'Why a raw phone number cannot be stored (NULL when _normalize_phone accepts it).';

-- Validation ----------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION _user_country(p_user_id bigint) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT country_code FROM users WHERE id = p_user_id $$;
COMMENT ON FUNCTION _user_country(bigint) IS 'The owner''s default country calling code for national numbers (60 by default).';

CREATE OR REPLACE FUNCTION _own_device_ids(p_user_id bigint) RETURNS bigint[]
LANGUAGE sql STABLE AS $$ SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM user_devices WHERE user_id = p_user_id $$;
COMMENT ON FUNCTION _own_device_ids(bigint) IS 'The ids of the owner''s devices.';

CREATE OR REPLACE FUNCTION _lead_problem(p_phone text, p_target_status text, p_device_id bigint,
                                        p_own_devices bigint[], p_country text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(_phone_problem(p_phone, p_country), _lead_fields_problem(p_target_status, p_device_id, p_own_devices))
$$;
COMMENT ON FUNCTION _lead_problem(text, text, bigint, bigint[], text) IS
  'Why a lead''s fields cannot be stored (bad phone, unknown target status, foreign device), or NULL.';

CREATE OR REPLACE FUNCTION _lead_fields_problem(p_target_status text, p_device_id bigint, p_own_devices bigint[])
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(
    CASE WHEN lower(btrim(coalesce(p_target_status, ''))) NOT IN ('', 'prospect', 'customer')
         THEN format('unknown target status "%s" (prospect or customer)', left(p_target_status, 40)) END,
    CASE WHEN p_device_id IS NOT NULL AND NOT p_device_id = ANY (p_own_devices)
         THEN format('device %s is not one of your devices', p_device_id) END)
$$;
COMMENT ON FUNCTION _lead_fields_problem(text, bigint, bigint[]) IS
  'Why a lead''s target status or device cannot be stored (the part of _lead_problem besides the phone), or NULL.';

CREATE OR REPLACE FUNCTION _target_status_or_default(p_raw text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT coalesce(nullif(lower(btrim(coalesce(p_raw, ''))), ''), 'prospect') $$;
COMMENT ON FUNCTION _target_status_or_default(text) IS 'A target status as stored: lower-case, blank meaning prospect.';

CREATE OR REPLACE FUNCTION _require_valid_lead(p_user_id bigint, p_phone text, p_target_status text, p_device_id bigint)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE v_problem text := _lead_problem(p_phone, p_target_status, p_device_id,
                                       _own_device_ids(p_user_id), _user_country(p_user_id));
BEGIN
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION '%', v_problem USING ERRCODE = '22023';
  END IF;
  RETURN _normalize_phone(p_phone, _user_country(p_user_id));
END $$;
COMMENT ON FUNCTION _require_valid_lead(bigint, text, text, bigint) IS
  'Raises 22023 with the reason when the lead''s fields are invalid; returns the normalised phone.';

-- The merge rule --------------------------------------------------------------------------------
-- Leads are unique by (owner, device, phone). A repeat merges into the existing lead: non-blank
-- incoming fields win, blank ones keep what is there. Callers pass validated, normalised fields;
-- within one call the last occurrence of a key wins.
-- Each incoming lead's key is looked up in the unique index (a probe per lead: a hash join would
-- read every lead of the table), the leads found are updated and the others inserted by a plain
-- INSERT (INSERT … ON CONFLICT costs a speculative insertion per row). A lead another transaction
-- adds meanwhile makes the INSERT fail on the unique key: the merge then runs again, into it.
-- The probe goes by the index at any table size: planned while the owner had few leads, a scan of
-- the table per probe read, in an import's two lanes, every lead the other lane was inserting
-- (100k lines: 38 s instead of 1).
CREATE OR REPLACE FUNCTION _merge_leads(p_user_id bigint, p_device_ids bigint[], p_names text[], p_phones text[],
                                       p_niches text[], p_target_statuses text[], p_triggers text[])
RETURNS TABLE (lead_id bigint, inserted boolean)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE v_ids bigint[];
        v_new boolean[];
BEGIN
  LOOP
    BEGIN
      WITH incoming AS MATERIALIZED (
        SELECT i.*, (SELECT l.id FROM leads l WHERE l.user_id = p_user_id AND l.phone = i.phone
                                               AND l.device_id IS NOT DISTINCT FROM i.device_id) AS existing
          FROM (SELECT DISTINCT ON (device_id, phone)
                       device_id, left(btrim(coalesce(name, '')), 200) AS name, phone, btrim(coalesce(niche, '')) AS niche,
                       _target_status_or_default(target_status) AS target_status,
                       nullif(btrim(coalesce(trigger, '')), '') AS trigger
                  FROM (SELECT unnest(p_device_ids) AS device_id, unnest(p_names) AS name, unnest(p_phones) AS phone,
                               unnest(p_niches) AS niche, unnest(p_target_statuses) AS target_status,
                               unnest(p_triggers) AS trigger, generate_series(1, cardinality(p_phones)) AS ord) r
                 ORDER BY device_id, phone, ord DESC) i
      ), merged AS (
        UPDATE leads l
           SET name = coalesce(nullif(i.name, ''), l.name), niche = coalesce(nullif(i.niche, ''), l.niche),
               target_status = i.target_status, trigger = coalesce(i.trigger, l.trigger), updated_at = now()
          FROM incoming i
         WHERE l.id = ANY (ARRAY(SELECT existing FROM incoming WHERE existing IS NOT NULL)) AND l.id = i.existing
        RETURNING l.id
      ), added AS (
        INSERT INTO leads (user_id, device_id, name, phone, niche, target_status, trigger)
        SELECT p_user_id, i.device_id, i.name, i.phone, i.niche, i.target_status, i.trigger
          FROM incoming i WHERE i.existing IS NULL
         ORDER BY i.device_id, i.phone   -- a sort: every lookup is done before the first insert
        RETURNING id
      )
      SELECT array_agg(x.id), array_agg(x.new) INTO v_ids, v_new
        FROM (SELECT id, false AS new FROM merged UNION ALL SELECT id, true FROM added) x;
      EXIT;
    EXCEPTION WHEN unique_violation THEN
      NULL;   -- added by another transaction since this statement began: merge again, into it now
    END;
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_ids, v_new);
END $$;
COMMENT ON FUNCTION _merge_leads(bigint, bigint[], text[], text[], text[], text[], text[]) IS
  'Inserts leads or merges them into the existing (owner, device, phone) lead (non-blank fields win); returns ids and whether new.';

-- Owner and device ----------------------------------------------------------------------------
-- A lead's owner and device were foreign keys, whose check is a query per inserted row (~40 % of
-- a million-row import). The same guarantees, once per statement: each new or moved lead's owner
-- and device exist, locked FOR KEY SHARE until commit as a foreign key locks them (so a concurrent
-- deletion waits, then sees the lead); deleting an owner deletes their leads, deleting a device
-- sends its leads to the AI pool (row triggers: such deletions are rare).
CREATE OR REPLACE FUNCTION leads_check_parents() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v_users bigint[];
        v_devices bigint[];
        v_found integer;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT array_agg(DISTINCT n.user_id), coalesce(array_agg(DISTINCT n.device_id) FILTER (WHERE n.device_id IS NOT NULL), '{}')
      INTO v_users, v_devices FROM new_rows n;
  ELSE   -- only the leads whose owner or device changed, as a foreign key checks on update
    -- (values only the new side has, found by grouping, not by a join of the transition tables:
    -- see leads_sequence_changes)
    SELECT array_agg(DISTINCT c.user_id), coalesce(array_agg(DISTINCT c.device_id) FILTER (WHERE c.device_id IS NOT NULL), '{}')
      INTO v_users, v_devices
      FROM (SELECT r.user_id, r.device_id
              FROM (SELECT n.id, n.user_id, n.device_id, true AS new FROM new_rows n
                    UNION ALL SELECT o.id, o.user_id, o.device_id, false FROM old_rows o) r
             GROUP BY r.id, r.user_id, r.device_id HAVING bool_and(r.new)) c;
  END IF;
  PERFORM FROM users WHERE id = ANY (v_users) FOR KEY SHARE;
  GET DIAGNOSTICS v_found = ROW_COUNT;
  IF v_found < coalesce(cardinality(v_users), 0) THEN
    RAISE EXCEPTION 'a lead''s owner does not exist' USING ERRCODE = '23503';
  END IF;
  PERFORM FROM user_devices WHERE id = ANY (v_devices) FOR KEY SHARE;
  GET DIAGNOSTICS v_found = ROW_COUNT;
  IF v_found < cardinality(v_devices) THEN
    RAISE EXCEPTION 'a lead''s device does not exist' USING ERRCODE = '23503';
  END IF;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION leads_check_parents() IS
  'Statement trigger on leads: the owner and device of each new lead (or of a lead moved to another) exist, locked FOR KEY SHARE until commit.';

CREATE OR REPLACE TRIGGER leads_parents_ins AFTER INSERT ON leads
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION leads_check_parents();
CREATE OR REPLACE TRIGGER leads_parents_upd AFTER UPDATE ON leads
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION leads_check_parents();

CREATE OR REPLACE FUNCTION users_delete_leads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM leads WHERE user_id = OLD.id;
  RETURN OLD;
END $$;
COMMENT ON FUNCTION users_delete_leads() IS 'Row trigger on users: an account''s leads go before it does.';
CREATE OR REPLACE TRIGGER users_leads BEFORE DELETE ON users FOR EACH ROW EXECUTE FUNCTION users_delete_leads();

CREATE OR REPLACE FUNCTION user_devices_pool_leads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE leads SET device_id = NULL WHERE device_id = OLD.id;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION user_devices_pool_leads() IS 'Row trigger on user_devices: a deleted device''s leads go to the AI pool.';
CREATE OR REPLACE TRIGGER user_devices_leads AFTER DELETE ON user_devices FOR EACH ROW EXECUTE FUNCTION user_devices_pool_leads();

-- Create, edit, delete -------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION create_lead(p_user_id bigint, p_device_id bigint, p_name text, p_phone text,
                                       p_niche text, p_target_status text, p_trigger text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_phone text := _require_valid_lead(p_user_id, p_phone, p_target_status, p_device_id);
        v_id bigint;
BEGIN
  PERFORM require_quota(p_user_id, 'leads', 1);
  INSERT INTO leads (user_id, device_id, name, phone, niche, target_status, trigger)
  VALUES (p_user_id, p_device_id, btrim(coalesce(p_name, '')), v_phone, btrim(coalesce(p_niche, '')),
          _target_status_or_default(p_target_status), nullif(btrim(coalesce(p_trigger, '')), ''))
  RETURNING id INTO v_id;
  RETURN v_id;
EXCEPTION WHEN unique_violation THEN
  RAISE EXCEPTION 'a lead with phone % already exists on this device', v_phone USING ERRCODE = '23505';
END $$;
COMMENT ON FUNCTION create_lead(bigint, bigint, text, text, text, text, text) IS
  'Adds a lead (device NULL: the AI pool) after validating and normalising its phone, within the lead quota; returns its id.';

CREATE OR REPLACE FUNCTION update_lead(p_user_id bigint, p_lead_id bigint, p_device_id bigint, p_name text,
                                       p_phone text, p_niche text, p_target_status text, p_trigger text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_phone text := _require_valid_lead(p_user_id, p_phone, p_target_status, p_device_id);
        v_id bigint;
BEGIN
  UPDATE leads SET device_id = p_device_id, name = btrim(coalesce(p_name, '')), phone = v_phone,
                   niche = btrim(coalesce(p_niche, '')), target_status = _target_status_or_default(p_target_status),
                   trigger = nullif(btrim(coalesce(p_trigger, '')), ''), updated_at = now()
   WHERE id = p_lead_id AND user_id = p_user_id
  RETURNING id INTO v_id;
  RETURN v_id;
EXCEPTION WHEN unique_violation THEN
  RAISE EXCEPTION 'a lead with phone % already exists on this device', v_phone USING ERRCODE = '23505';
END $$;
COMMENT ON FUNCTION update_lead(bigint, bigint, bigint, text, text, text, text, text) IS
  'Edits one of the owner''s leads; returns its id, or NULL when the owner has no such lead.';

CREATE OR REPLACE FUNCTION delete_lead(p_user_id bigint, p_lead_id bigint) RETURNS boolean
LANGUAGE sql AS $$
  WITH gone AS (DELETE FROM leads WHERE id = p_lead_id AND user_id = p_user_id RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM gone)
$$;
COMMENT ON FUNCTION delete_lead(bigint, bigint) IS 'Deletes one of the owner''s leads; false when there is no such lead.';

CREATE OR REPLACE FUNCTION intake_lead(p_user_id bigint, p_device_id bigint, p_name text, p_phone text,
                                       p_niche text, p_target_status text, p_trigger text)
RETURNS TABLE (lead_id bigint, created boolean) LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  SELECT m.lead_id, m.inserted
    FROM _merge_leads(p_user_id, ARRAY[p_device_id], ARRAY[p_name],
                     ARRAY[_require_valid_lead(p_user_id, p_phone, p_target_status, p_device_id)],
                     ARRAY[p_niche], ARRAY[p_target_status], ARRAY[p_trigger]) AS m;
  PERFORM require_quota(p_user_id, 'leads', 0);   -- a merge adds nothing; a new lead must fit
END $$;
COMMENT ON FUNCTION intake_lead(bigint, bigint, text, text, text, text, text) IS
  'Webhook intake: validates one lead and merges it by (owner, device, phone), so repeats change nothing new; a new lead must fit the lead quota.';

-- Reading ------------------------------------------------------------------------------------
-- Audience: any of the wanted niche tokens (none wanted: every lead), and the target status
-- ('all' for both). Whole tokens only: `fit` never matches `fitness`.
CREATE OR REPLACE FUNCTION lead_in_audience(p_lead_niche_tokens text[], p_lead_status text,
                                            p_niche_tokens text[], p_target_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (cardinality(p_niche_tokens) = 0 OR p_lead_niche_tokens && p_niche_tokens)
     AND (p_target_status = 'all' OR p_lead_status = p_target_status)
$$;
COMMENT ON FUNCTION lead_in_audience(text[], text, text[], text) IS
  'True when a lead (its niche tokens and status) is in an audience (niche tokens, any of; target status or all).';

-- The leads page's filters (device, niche tokens, target status, trigger tokens), shared by list and export.
CREATE OR REPLACE FUNCTION _lead_filter(l_device_id bigint, l_niche_tokens text[], l_target_status text, l_trigger text,
                                       l_trigger_tokens text[], p_device_id bigint, p_niche text,
                                       p_target_status text, p_trigger text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (p_device_id IS NULL OR l_device_id = p_device_id)
     AND lead_in_audience(l_niche_tokens, l_target_status, lead_tokens(p_niche), coalesce(nullif(p_target_status, ''), 'all'))
     AND (coalesce(p_trigger, '') = '' OR (l_trigger IS NOT NULL AND l_trigger_tokens && lead_tokens(p_trigger)))
$$;
COMMENT ON FUNCTION _lead_filter(bigint, text[], text, text, text[], bigint, text, text, text) IS
  'True when a lead (its columns first) passes the leads page filters; blank filters pass everything.';

CREATE OR REPLACE FUNCTION find_leads(p_user_id bigint, p_device_id bigint DEFAULT NULL, p_niche text DEFAULT '',
                                      p_target_status text DEFAULT 'all', p_trigger text DEFAULT '',
                                      p_search text DEFAULT '', p_pool_only boolean DEFAULT false,
                                      p_before_id bigint DEFAULT NULL, p_limit integer DEFAULT 50)
RETURNS TABLE (id bigint, device_id bigint, device_name text, name text, phone text, niche text,
               target_status text, trigger text, created_at timestamptz, updated_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT l.id, l.device_id, d.device_name, l.name, l.phone, l.niche, l.target_status, l.trigger,
         l.created_at, l.updated_at
    FROM leads l LEFT JOIN user_devices d ON d.id = l.device_id
   WHERE l.user_id = p_user_id
     AND _lead_filter(l.device_id, l.niche_tokens, l.target_status, l.trigger, l.trigger_tokens,
                     p_device_id, p_niche, p_target_status, p_trigger)
     AND (NOT p_pool_only OR l.device_id IS NULL)
     AND (coalesce(p_search, '') = '' OR l.name ILIKE '%' || p_search || '%' OR l.phone LIKE '%' || regexp_replace(p_search, '\D', '', 'g') || '%' AND p_search ~ '\d')
     AND (p_before_id IS NULL OR l.id < p_before_id)
   ORDER BY l.id DESC
   LIMIT least(greatest(coalesce(p_limit, 50), 1), 500)
$$;
COMMENT ON FUNCTION find_leads(bigint, bigint, text, text, text, text, boolean, bigint, integer) IS
  'One page of the owner''s leads, newest first (keyset: ids below p_before_id), filtered by device, niche tokens (any), status, trigger tokens (any) and name/phone search.';

CREATE OR REPLACE FUNCTION get_lead(p_user_id bigint, p_lead_id bigint)
RETURNS TABLE (id bigint, device_id bigint, name text, phone text, niche text, target_status text,
               trigger text, created_at timestamptz, updated_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT id, device_id, name, phone, niche, target_status, trigger, created_at, updated_at
    FROM leads WHERE id = p_lead_id AND user_id = p_user_id
$$;
COMMENT ON FUNCTION get_lead(bigint, bigint) IS 'One of the owner''s leads (no row for another owner''s id).';

-- Spreadsheet formulas: a cell starting with = + - @ (or a tab or carriage return) is run as a
-- formula by Excel and LibreOffice when the CSV is opened, so exports quote it with a leading
-- apostrophe, and imports take that apostrophe off again.
CREATE OR REPLACE FUNCTION _csv_neutralised(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN left(p_value, 1) IN ('=', '+', '-', '@', E'\t', E'\r') THEN '''' || p_value ELSE p_value END
$$;
COMMENT ON FUNCTION _csv_neutralised(text) IS
  'A text cell for a CSV download: one a spreadsheet would run as a formula (= + - @ tab CR first) gets a leading apostrophe.';

CREATE OR REPLACE FUNCTION _csv_restored(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  -- LIKE first: a regular expression per imported cell cost ~1 µs, and few cells start with '
  SELECT CASE WHEN p_value LIKE '''%' AND p_value ~ E'^''[=+\\-@\\t\\r]' THEN substr(p_value, 2) ELSE p_value END
$$;
COMMENT ON FUNCTION _csv_restored(text) IS 'Undoes _csv_neutralised for an imported cell, so an export imports back as it was.';

-- The CSV columns, in order: what export writes is exactly what import reads.
CREATE OR REPLACE FUNCTION _lead_csv_columns() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT ARRAY['name', 'phone', 'niche', 'target_status', 'trigger', 'device_id'] $$;
COMMENT ON FUNCTION _lead_csv_columns() IS 'The lead CSV header: export writes these columns, import reads them.';

CREATE OR REPLACE FUNCTION export_leads(p_user_id bigint, p_device_id bigint DEFAULT NULL, p_niche text DEFAULT '',
                                        p_target_status text DEFAULT 'all', p_trigger text DEFAULT '')
RETURNS TABLE (name text, phone text, niche text, target_status text, trigger text, device_id bigint)
LANGUAGE sql STABLE AS $$
  SELECT _csv_neutralised(l.name), l.phone, _csv_neutralised(l.niche), l.target_status,
         _csv_neutralised(coalesce(l.trigger, '')), l.device_id
    FROM leads l
   WHERE l.user_id = p_user_id
     AND _lead_filter(l.device_id, l.niche_tokens, l.target_status, l.trigger, l.trigger_tokens,
                     p_device_id, p_niche, p_target_status, p_trigger)
   ORDER BY l.id
$$;
COMMENT ON FUNCTION export_leads(bigint, bigint, text, text, text) IS
  'The owner''s leads as CSV rows in _lead_csv_columns() order, with the same filters as find_leads; text cells '
  'that a spreadsheet would run as formulas are neutralised (_csv_neutralised).';
