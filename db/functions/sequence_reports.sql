-- Drip sequences, the reports: counters kept by statement triggers and folded each minute, and the
-- reads behind the pages and API (always scoped to the owner).

-- Counters ----------------------------------------------------------------------------------

-- What a sequence's counts see of a message's status.
CREATE OR REPLACE FUNCTION _sequence_count_class(p_status text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p_status IN ('pending', 'queued') THEN 'in_flight' WHEN p_status = 'sent' THEN 'sent' ELSE 'failed' END
$$;
COMMENT ON FUNCTION _sequence_count_class(text) IS
  'How a sequence''s counts class a message status: in_flight (pending, queued), sent, or failed (failed, skipped).';

-- Statement triggers hand their transition rows to these (the same code for insert, update and
-- delete): a row counts in its (sequence, step) and the delta is new rows minus old rows.
CREATE OR REPLACE FUNCTION _record_message_count_deltas(p_new broadcast_messages[], p_old broadcast_messages[])
RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  -- A message counts in its class (_sequence_count_class) on the all-time row (day NULL) and, once
  -- done, on its completion day in the owner's zone.
  INSERT INTO sequence_counter_deltas (sequence_id, step_id, day, in_flight, sent, failed)
  SELECT r.sequence_id, r.sequence_stepid, k.day, sum(r.sign * k.in_flight), sum(r.sign * k.sent), sum(r.sign * k.failed)
    FROM (SELECT sequence_id, sequence_stepid, user_id, _sequence_count_class(status) AS class,
                 coalesce(sent_at, failed_at) AS done_at, 1 AS sign
            FROM unnest(p_new)
          UNION ALL
          SELECT sequence_id, sequence_stepid, user_id, _sequence_count_class(status), coalesce(sent_at, failed_at), -1
            FROM unnest(p_old)) r
    JOIN users u ON u.id = r.user_id
   CROSS JOIN LATERAL (VALUES
          (NULL::date, (r.class = 'in_flight')::int, (r.class = 'sent')::int, (r.class = 'failed')::int),
          ((r.done_at AT TIME ZONE u.timezone)::date, 0, (r.class = 'sent')::int, (r.class = 'failed')::int))
          AS k(day, in_flight, sent, failed)
   WHERE k.day IS NULL OR r.done_at IS NOT NULL
   GROUP BY 1, 2, 3
  HAVING sum(r.sign * k.in_flight) <> 0 OR sum(r.sign * k.sent) <> 0 OR sum(r.sign * k.failed) <> 0;
END $$;
COMMENT ON FUNCTION _record_message_count_deltas(broadcast_messages[], broadcast_messages[]) IS
  'Appends to sequence_counter_deltas what the new sequence-step messages count minus what the old ones counted.';

CREATE OR REPLACE FUNCTION sequence_message_counts() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  v_new broadcast_messages[] := '{}'::broadcast_messages[];
  v_old broadcast_messages[];
BEGIN
  -- New rows are counted by their writer (_count_enqueued): UPDATE and DELETE only.
  IF TG_OP = 'UPDATE' THEN
    -- What is counted (in flight, sent, failed; when it settled) and recorded (a contact's step no
    -- longer live) unchanged in every row, as after a claim or a receipt: nothing to do. Summed,
    -- never joined (see count_campaign_messages).
    IF NOT EXISTS (
         SELECT FROM (SELECT n.enrollment_id, n.sequence_id, n.sequence_stepid, n.user_id,
                             _sequence_count_class(n.status) AS class, coalesce(n.sent_at, n.failed_at) AS done_at, 1 AS sign
                        FROM new_rows n WHERE n.sequence_stepid IS NOT NULL
                      UNION ALL
                      SELECT o.enrollment_id, o.sequence_id, o.sequence_stepid, o.user_id,
                             _sequence_count_class(o.status), coalesce(o.sent_at, o.failed_at), -1
                        FROM old_rows o WHERE o.sequence_stepid IS NOT NULL) r
          GROUP BY r.enrollment_id, r.sequence_id, r.sequence_stepid, r.user_id, r.class, r.done_at
         HAVING sum(r.sign) <> 0) THEN
      RETURN NULL;
    END IF;
    v_new := array(SELECT n::broadcast_messages FROM new_rows n WHERE n.sequence_stepid IS NOT NULL);
  END IF;
  v_old := array(SELECT o::broadcast_messages FROM old_rows o WHERE o.sequence_stepid IS NOT NULL);
  IF v_new <> '{}' OR v_old <> '{}' THEN   -- campaign traffic stops here
    PERFORM _record_message_count_deltas(v_new, v_old);
    -- A contact's step no longer in flight (an enrollment has one live message at most): the tick
    -- clears its step_in_flight (_mark_settled_steps). Appended, never the enrollment's row: a
    -- completion must not wait on a lock the tick or a stop holds.
    INSERT INTO enrollment_steps_settled (enrollment_id)
    SELECT o.enrollment_id FROM unnest(v_old) o WHERE o.status IN ('pending', 'queued')
    EXCEPT
    SELECT n.enrollment_id FROM unnest(v_new) n WHERE n.status IN ('pending', 'queued');
  END IF;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION sequence_message_counts() IS
  'Statement trigger on broadcast_messages (UPDATE, DELETE): counts the sequence-step rows changed (campaign rows are '
  'ignored) and records the enrollments whose step message settled or went (enrollment_steps_settled). New rows '
  'are counted by _count_enqueued.';

CREATE OR REPLACE FUNCTION _record_enrollment_count_deltas(p_new sequence_enrollments[], p_old sequence_enrollments[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- Per sequence (step_id NULL): contacts and their status; per step: active contacts waiting for it.
  INSERT INTO sequence_counter_deltas (sequence_id, step_id, contacts, active, completed, stopped, waiting)
  SELECT r.sequence_id, k.step_id, sum(r.sign * k.contacts), sum(r.sign * k.active), sum(r.sign * k.completed),
         sum(r.sign * k.stopped), sum(r.sign * k.waiting)
    FROM (SELECT sequence_id, next_step_id, status, 1 AS sign FROM unnest(p_new)
          UNION ALL
          SELECT sequence_id, next_step_id, status, -1 FROM unnest(p_old)) r
   CROSS JOIN LATERAL (VALUES
          (NULL::bigint, 1, (r.status = 'active')::int, (r.status = 'completed')::int, (r.status = 'stopped')::int, 0),
          (r.next_step_id, 0, 0, 0, 0, (r.status = 'active')::int)) AS k(step_id, contacts, active, completed, stopped, waiting)
   WHERE k.step_id IS NOT NULL OR k.contacts = 1
   GROUP BY 1, 2
  HAVING sum(r.sign * k.contacts) <> 0 OR sum(r.sign * k.active) <> 0 OR sum(r.sign * k.completed) <> 0
      OR sum(r.sign * k.stopped) <> 0 OR sum(r.sign * k.waiting) <> 0;
END $$;
COMMENT ON FUNCTION _record_enrollment_count_deltas(sequence_enrollments[], sequence_enrollments[]) IS
  'Appends to sequence_counter_deltas the change in contacts/active/completed/stopped and per-step waiting between old and new enrollment rows.';

CREATE OR REPLACE FUNCTION sequence_enrollment_counts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_new sequence_enrollments[] := '{}'::sequence_enrollments[];
  v_old sequence_enrollments[] := '{}'::sequence_enrollments[];
BEGIN
  IF TG_OP <> 'DELETE' THEN
    v_new := array(SELECT n::sequence_enrollments FROM new_rows n);
  END IF;
  IF TG_OP <> 'INSERT' THEN
    v_old := array(SELECT o::sequence_enrollments FROM old_rows o);
  END IF;
  PERFORM _record_enrollment_count_deltas(v_new, v_old);
  RETURN NULL;
END $$;
COMMENT ON FUNCTION sequence_enrollment_counts() IS
  'Statement trigger on sequence_enrollments: counts the enrollment rows changed.';

-- The broadcast_messages triggers calling sequence_message_counts are in db/functions/triggers_broadcast_messages.sql.
CREATE OR REPLACE TRIGGER sequence_enrollments_counts_ins AFTER INSERT ON sequence_enrollments
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_enrollment_counts();
CREATE OR REPLACE TRIGGER sequence_enrollments_counts_upd AFTER UPDATE ON sequence_enrollments
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_enrollment_counts();
CREATE OR REPLACE TRIGGER sequence_enrollments_counts_del AFTER DELETE ON sequence_enrollments
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_enrollment_counts();

CREATE OR REPLACE FUNCTION fold_sequence_counters() RETURNS integer LANGUAGE sql AS $$
  WITH moved AS (DELETE FROM sequence_counter_deltas RETURNING *),
  folded AS (
    INSERT INTO sequence_counters AS c (sequence_id, step_id, day, contacts, active, completed, stopped,
                                        waiting, in_flight, sent, failed)
    SELECT m.sequence_id, m.step_id, m.day, sum(m.contacts), sum(m.active), sum(m.completed), sum(m.stopped),
           sum(m.waiting), sum(m.in_flight), sum(m.sent), sum(m.failed)
      FROM moved m
     WHERE EXISTS (SELECT 1 FROM sequences s WHERE s.id = m.sequence_id)   -- deleted since: drop
       AND (m.step_id IS NULL OR EXISTS (SELECT 1 FROM sequence_steps st WHERE st.id = m.step_id))
     GROUP BY 1, 2, 3
    ON CONFLICT (sequence_id, step_id, day) DO UPDATE SET
      contacts = c.contacts + excluded.contacts, active = c.active + excluded.active,
      completed = c.completed + excluded.completed, stopped = c.stopped + excluded.stopped,
      waiting = c.waiting + excluded.waiting, in_flight = c.in_flight + excluded.in_flight,
      sent = c.sent + excluded.sent, failed = c.failed + excluded.failed
    RETURNING 1)
  SELECT count(*)::int FROM folded
$$;
COMMENT ON FUNCTION fold_sequence_counters() IS
  'Moves the pending counter deltas into sequence_counters (readers add any deltas not folded yet); returns rows touched.';

CREATE OR REPLACE FUNCTION _sequence_contact_counts(p_sequence_id bigint)
RETURNS TABLE (contacts bigint, active bigint, completed bigint, stopped bigint)
LANGUAGE sql STABLE AS $$
  SELECT sum(x.contacts)::bigint, sum(x.active)::bigint, sum(x.completed)::bigint, sum(x.stopped)::bigint
    FROM (SELECT c.contacts, c.active, c.completed, c.stopped FROM sequence_counters c
           WHERE c.sequence_id = p_sequence_id AND c.step_id IS NULL AND c.day IS NULL
          UNION ALL
          SELECT d.contacts, d.active, d.completed, d.stopped FROM sequence_counter_deltas d
           WHERE d.sequence_id = p_sequence_id AND d.step_id IS NULL AND d.day IS NULL) x
$$;
COMMENT ON FUNCTION _sequence_contact_counts(bigint) IS
  'One sequence''s passes (enrollments) in all and by status: active, completed, stopped (folded + unfolded counters).';

CREATE OR REPLACE FUNCTION _sequence_step_live(p_sequence_ids bigint[])
RETURNS TABLE (sequence_id bigint, step_id bigint, waiting bigint, in_flight bigint, sent bigint, failed bigint)
LANGUAGE sql STABLE AS $$
  SELECT c.sequence_id, c.step_id, sum(c.waiting)::bigint, sum(c.in_flight)::bigint, sum(c.sent)::bigint, sum(c.failed)::bigint
    FROM (SELECT sequence_id, step_id, waiting, in_flight, sent, failed FROM sequence_counters
           WHERE sequence_id = ANY (p_sequence_ids) AND step_id IS NOT NULL AND day IS NULL
          UNION ALL
          SELECT sequence_id, step_id, waiting, in_flight, sent, failed FROM sequence_counter_deltas
           WHERE sequence_id = ANY (p_sequence_ids) AND step_id IS NOT NULL AND day IS NULL) c
   GROUP BY 1, 2
$$;
COMMENT ON FUNCTION _sequence_step_live(bigint[]) IS
  'Per step of the given sequences: waiting contacts, in-flight messages, sent and failed, all-time (folded + unfolded).';

-- Per step: should = done + failed + remaining, where remaining is this step's in-flight messages
-- plus the active contacts whose next step is this one or an earlier one (they will reach it).
-- With a date range, done/failed count completions in [p_from, p_to] (owner's zone); remaining is now.
CREATE OR REPLACE FUNCTION _sequence_flow_figures(p_sequence_ids bigint[], p_from date DEFAULT NULL, p_to date DEFAULT NULL)
RETURNS TABLE (sequence_id bigint, step_id bigint, day_number integer, step_trigger text,
               should_send bigint, done_send bigint, failed_send bigint, remaining_send bigint)
LANGUAGE sql STABLE AS $$
  WITH dated AS (
    SELECT c.step_id, sum(c.sent) AS sent, sum(c.failed) AS failed
      FROM (SELECT step_id, sent, failed, day FROM sequence_counters
             WHERE sequence_id = ANY (p_sequence_ids) AND step_id IS NOT NULL AND day IS NOT NULL
            UNION ALL
            SELECT step_id, sent, failed, day FROM sequence_counter_deltas
             WHERE sequence_id = ANY (p_sequence_ids) AND step_id IS NOT NULL AND day IS NOT NULL) c
     WHERE (p_from IS NOT NULL OR p_to IS NOT NULL)
       AND c.day >= coalesce(p_from, '-infinity') AND c.day <= coalesce(p_to, 'infinity')
     GROUP BY 1),
  steps AS (
    SELECT st.sequence_id, st.id, st.day_number, st.trigger,
           CASE WHEN p_from IS NULL AND p_to IS NULL THEN coalesce(l.sent, 0) ELSE coalesce(d.sent, 0) END AS done,
           CASE WHEN p_from IS NULL AND p_to IS NULL THEN coalesce(l.failed, 0) ELSE coalesce(d.failed, 0) END AS failed,
           coalesce(l.in_flight, 0) + sum(coalesce(l.waiting, 0))
             OVER (PARTITION BY st.sequence_id ORDER BY st.day_number) AS remaining
      FROM sequence_steps st
      LEFT JOIN _sequence_step_live(p_sequence_ids) l ON l.step_id = st.id
      LEFT JOIN dated d ON d.step_id = st.id
     WHERE st.sequence_id = ANY (p_sequence_ids))
  SELECT sequence_id, id, day_number, trigger, (done + failed + remaining)::bigint, done::bigint, failed::bigint,
         remaining::bigint
    FROM steps
$$;
COMMENT ON FUNCTION _sequence_flow_figures(bigint[], date, date) IS
  'Per step (flow): should/done/failed/remaining sends from the rollups; done/failed limited to completions in the date range when given.';

CREATE OR REPLACE FUNCTION sequence_overview(p_user_id bigint)
RETURNS TABLE (id bigint, name text, trigger text, status text, created_at timestamptz, total_flows bigint,
               should_send bigint, done_send bigint, failed_send bigint, remaining_send bigint)
LANGUAGE sql STABLE AS $$
  SELECT s.id, s.name, s.trigger, s.status, s.created_at, count(f.step_id),
         coalesce(sum(f.should_send), 0)::bigint, coalesce(sum(f.done_send), 0)::bigint,
         coalesce(sum(f.failed_send), 0)::bigint, coalesce(sum(f.remaining_send), 0)::bigint
    FROM sequences s
    LEFT JOIN _sequence_flow_figures(array(SELECT x.id FROM sequences x WHERE x.user_id = p_user_id)) f
           ON f.sequence_id = s.id
   WHERE s.user_id = p_user_id
   GROUP BY s.id
   ORDER BY s.created_at DESC, s.id DESC
$$;
COMMENT ON FUNCTION sequence_overview(bigint) IS
  'The owner''s sequences, newest first, with flows (steps) and should/done/failed/remaining sends from the rollups.';

CREATE OR REPLACE FUNCTION sequence_summary(p_user_id bigint, p_recent integer DEFAULT 10)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  WITH o AS (SELECT * FROM sequence_overview(p_user_id))
  SELECT to_jsonb(ROW(
    ROW(count(*), count(*) FILTER (WHERE status = 'active'),
        count(*) FILTER (WHERE status = 'inactive'))::sequence_counts_doc,
    coalesce(sum(total_flows), 0), coalesce(sum(should_send), 0), coalesce(sum(done_send), 0),
    coalesce(sum(failed_send), 0), coalesce(sum(remaining_send), 0),
    ARRAY(SELECT ROW(r.id, r.name, r.trigger, r.total_flows, r.should_send, r.done_send, r.failed_send,
                     r.remaining_send)::sequence_recent_doc
            FROM o r ORDER BY r.created_at DESC, r.id DESC LIMIT p_recent)
  )::sequence_summary_doc)
  FROM o
$$;
COMMENT ON FUNCTION sequence_summary(bigint, integer) IS
  'GET /api/sequences/summary (CONTRACT.md, sequence_summary_doc): sequence counts, totals of flows and sends, and the p_recent newest sequences.';

CREATE OR REPLACE FUNCTION sequence_flows(p_user_id bigint, p_sequence_id bigint, p_from date DEFAULT NULL,
                                          p_to date DEFAULT NULL)
RETURNS TABLE (step_id bigint, day_number integer, step_trigger text, should_send bigint, done_send bigint,
               failed_send bigint, remaining_send bigint)
LANGUAGE sql STABLE AS $$
  SELECT f.step_id, f.day_number, f.step_trigger, f.should_send, f.done_send, f.failed_send, f.remaining_send
    FROM _sequence_flow_figures(array(SELECT id FROM sequences WHERE id = p_sequence_id AND user_id = p_user_id),
                               p_from, p_to) f
   ORDER BY f.day_number
$$;
COMMENT ON FUNCTION sequence_flows(bigint, bigint, date, date) IS
  'Per flow (step) of one of the owner''s sequences: should/done/failed/remaining; done/failed by completed_at date in [p_from, p_to] (owner''s zone) when given. No rows when not the owner''s.';

CREATE OR REPLACE FUNCTION sequence_flow_contacts(p_user_id bigint, p_step_id bigint, p_kind text,
                                                  p_from date DEFAULT NULL, p_to date DEFAULT NULL,
                                                  p_limit integer DEFAULT 100, p_offset integer DEFAULT 0)
RETURNS TABLE (contact_phone text, contact_name text, status text, device_id bigint, device_name text,
               due_at timestamptz, completed_at timestamptz, error_message text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_sequence_id bigint;
  v_day integer;
  v_tz text;
  v_from timestamptz;
  v_to timestamptz;
BEGIN
  IF p_kind NOT IN ('done', 'failed', 'remaining') THEN
    RAISE EXCEPTION 'kind must be done, failed or remaining' USING ERRCODE = '22023';
  END IF;
  SELECT st.sequence_id, st.day_number, u.timezone INTO v_sequence_id, v_day, v_tz FROM sequence_steps st JOIN sequences s ON s.id = st.sequence_id
    JOIN users u ON u.id = s.user_id WHERE st.id = p_step_id AND s.user_id = p_user_id;
  IF v_tz IS NULL THEN
    RETURN;
  END IF;
  v_from := coalesce(p_from::timestamp AT TIME ZONE v_tz, '-infinity');
  v_to := coalesce((p_to + 1)::timestamp AT TIME ZONE v_tz, 'infinity');
  IF p_kind IN ('done', 'failed') THEN
    RETURN QUERY
      SELECT b.recipient_phone, coalesce(b.recipient_name, ''), b.status, b.device_id, d.device_name,
             b.scheduled_at, coalesce(b.sent_at, b.failed_at), b.error_message
        FROM broadcast_messages b LEFT JOIN user_devices d ON d.id = b.device_id
       WHERE b.sequence_stepid = p_step_id
         AND b.status = ANY (CASE p_kind WHEN 'done' THEN ARRAY['sent'] ELSE ARRAY['failed', 'skipped'] END)
         AND NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = b.id)   -- retried: counted by its retry
         AND coalesce(b.sent_at, b.failed_at) >= v_from AND coalesce(b.sent_at, b.failed_at) < v_to
       ORDER BY coalesce(b.sent_at, b.failed_at) DESC, b.id DESC
       LIMIT p_limit OFFSET p_offset;
  ELSE
    RETURN QUERY
      SELECT r.phone, r.name, r.status, r.device_id, d.device_name, r.due_at, NULL::timestamptz, NULL::text
        FROM (SELECT b.recipient_phone AS phone, coalesce(b.recipient_name, '') AS name, b.status, b.device_id,
                     b.scheduled_at AS due_at
                FROM broadcast_messages b
               WHERE b.sequence_stepid = p_step_id AND b.status IN ('pending', 'queued')
              UNION ALL
              SELECT e.contact_phone, e.contact_name, 'waiting', e.device_id, e.next_due_at
                FROM sequence_enrollments e JOIN sequence_steps nx ON nx.id = e.next_step_id
               WHERE e.sequence_id = v_sequence_id AND e.status = 'active'
                 AND nx.day_number <= v_day) r
        LEFT JOIN user_devices d ON d.id = r.device_id
       ORDER BY r.due_at, r.phone
       LIMIT p_limit OFFSET p_offset;
  END IF;
END $$;
COMMENT ON FUNCTION sequence_flow_contacts(bigint, bigint, text, date, date, integer, integer) IS
  'The contacts behind one report cell of the owner''s step: done (sent), failed (failed/skipped; both by completed_at date range) or remaining (in flight, or still to reach this step). No rows when not the owner''s.';


CREATE OR REPLACE FUNCTION sequence_contacts_page(p_user_id bigint, p_sequence_id bigint, p_limit integer DEFAULT 100,
                                                  p_offset integer DEFAULT 0)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  -- One entry per pass (enrollment), oldest first. Per step: the latest attempt's status (sent,
  -- failed, skipped, pending, queued; retries counted in attempts), else waiting (the next step, with
  -- when it can go out), upcoming (later steps of an active pass) or null (not reached).
  SELECT to_jsonb(ROW(
    -- the passes counted by the rollup: a count of a sequence's enrollments read them all (700k: 48 ms)
    (SELECT coalesce(k.contacts, 0) FROM _sequence_contact_counts(s.id) k), p_limit, p_offset,
    ARRAY(
      SELECT ROW(e.id, e.contact_phone, e.contact_name, e.status, e.stop_reason, e.enrolled_at, e.completed_at,
                 e.steps_done, e.next_step_id,
                 CASE WHEN e.status = 'active' THEN
                   _sequence_send_time(e.next_due_at, s.schedule_time, s.schedule_tolerance_minutes, u.timezone) END,
                 ARRAY(SELECT ROW(st.id, st.day_number,
                                  coalesce(m.status, CASE WHEN e.status <> 'active' THEN NULL
                                                          WHEN st.id = e.next_step_id THEN 'waiting'
                                                          WHEN st.day_number > nx.day_number THEN 'upcoming' END),
                                  m.id, m.attempts, m.done_at, m.error_message)::sequence_contact_step_doc
                         FROM sequence_steps st
                         LEFT JOIN LATERAL (
                           SELECT b.id, b.status, coalesce(b.sent_at, b.failed_at) AS done_at, b.error_message,
                                  count(*) OVER () AS attempts
                             FROM broadcast_messages b
                            WHERE b.enrollment_id = e.id AND b.sequence_stepid = st.id
                            ORDER BY b.id DESC LIMIT 1) m ON true
                        WHERE st.sequence_id = s.id
                        ORDER BY st.day_number))::sequence_contact_doc
        -- Read in sequence_enrollments_sequence's order. Planned without the sequence's id, the pkey's
        -- order looked as cheap for a sequence of average size, and a new one's first page read every
        -- older enrollment (1M: 80 ms); written as a range, the sequence stays a sort key the pkey
        -- cannot give (an equality would drop it from the ORDER BY).
        FROM (SELECT * FROM sequence_enrollments WHERE sequence_id >= s.id AND sequence_id <= s.id
               ORDER BY sequence_id, id LIMIT p_limit OFFSET p_offset) e
        LEFT JOIN sequence_steps nx ON nx.id = e.next_step_id
       ORDER BY e.id)
  )::sequence_contacts_page_doc)
    FROM sequences s JOIN users u ON u.id = s.user_id
   WHERE s.id = p_sequence_id AND s.user_id = p_user_id
$$;
COMMENT ON FUNCTION sequence_contacts_page(bigint, bigint, integer, integer) IS
  'GET /api/sequences/{id}/contacts (CONTRACT.md): {total, limit, offset, contacts:[{enrollment_id, contact_phone, contact_name, status, stop_reason, enrolled_at, completed_at, steps_done, next_step_id, next_send_at, steps:[{step_id, day_number, status (sent|failed|skipped|pending|queued|waiting|upcoming|null), message_id, attempts, done_at, error_message}]}]}, one entry per pass, oldest first; NULL when not the owner''s.';
