-- Drip sequences: definition (save, status, delete), enrollment, activation of due steps,
-- completion and chaining, stopping on reply / opt-out, and the counters the reports read.
--
-- Storage grows with steps processed: an enrollment row says where a contact is (next step, when
-- due); each processed step is its broadcast_messages row. Ordering rules:
--   * a step is due trigger_delay_hours after the previous step was activated (the first step:
--     after enrollment), and is activated by earliest due time inside the sequence's send window;
--   * steps follow day_number; a contact starts at the entry-point step (else the lowest day);
--   * no retries: a failed step stays failed and the contact moves on on schedule.

-- Send window -------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION sequence_window_open(p_schedule_time time, p_tolerance_minutes integer,
                                                p_timezone text, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
  -- Circular distance on the 24h clock, so a window may span midnight.
  SELECT p_schedule_time IS NULL OR least(m, 1440 - m) <= p_tolerance_minutes
    FROM (SELECT abs(extract(epoch FROM (p_at AT TIME ZONE p_timezone)::time - p_schedule_time)) / 60 AS m) d
$$;
COMMENT ON FUNCTION sequence_window_open(time, integer, text, timestamptz) IS
  'True when p_at (read in p_timezone) is within p_tolerance_minutes of p_schedule_time, across midnight; NULL time: always.';

CREATE OR REPLACE FUNCTION sequence_send_time(p_due timestamptz, p_schedule_time time,
                                              p_tolerance_minutes integer, p_timezone text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN p_due IS NULL OR sequence_window_open(p_schedule_time, p_tolerance_minutes, p_timezone, p_due) THEN p_due
    ELSE (CASE WHEN local < opening THEN opening ELSE opening + interval '1 day' END) AT TIME ZONE p_timezone
  END
  FROM (SELECT p_due AT TIME ZONE p_timezone AS local,
               (p_due AT TIME ZONE p_timezone)::date + p_schedule_time
                 - make_interval(mins => p_tolerance_minutes) AS opening) w
$$;
COMMENT ON FUNCTION sequence_send_time(timestamptz, time, integer, text) IS
  'When a step due at p_due can go out: p_due inside the window, else the next window opening (owner''s zone).';

-- Counters ----------------------------------------------------------------------------------

-- Statement triggers hand their transition rows to these (the same code for insert, update and
-- delete): a row counts in its (sequence, step) and the delta is new rows minus old rows.
CREATE OR REPLACE FUNCTION record_message_count_deltas(p_new broadcast_messages[], p_old broadcast_messages[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- A message counts as in flight (pending/queued), sent, or failed (failed/skipped), on the
  -- all-time row (day NULL) and, once done, on its completion day in the owner's zone.
  INSERT INTO sequence_counter_deltas (sequence_id, step_id, day, in_flight, sent, failed)
  SELECT r.sequence_id, r.sequence_stepid, k.day, sum(r.sign * k.in_flight), sum(r.sign * k.sent), sum(r.sign * k.failed)
    FROM (SELECT sequence_id, sequence_stepid, user_id, status, coalesce(sent_at, failed_at) AS done_at, 1 AS sign
            FROM unnest(p_new)
          UNION ALL
          SELECT sequence_id, sequence_stepid, user_id, status, coalesce(sent_at, failed_at), -1
            FROM unnest(p_old)) r
    JOIN users u ON u.id = r.user_id
   CROSS JOIN LATERAL (VALUES
          (NULL::date, (r.status IN ('pending', 'queued'))::int, (r.status = 'sent')::int,
           (r.status IN ('failed', 'skipped'))::int),
          ((r.done_at AT TIME ZONE u.timezone)::date, 0, (r.status = 'sent')::int,
           (r.status IN ('failed', 'skipped'))::int)) AS k(day, in_flight, sent, failed)
   WHERE k.day IS NULL OR r.done_at IS NOT NULL
   GROUP BY 1, 2, 3
  HAVING sum(r.sign * k.in_flight) <> 0 OR sum(r.sign * k.sent) <> 0 OR sum(r.sign * k.failed) <> 0;
END $$;
COMMENT ON FUNCTION record_message_count_deltas(broadcast_messages[], broadcast_messages[]) IS
  'Appends to sequence_counter_deltas what the new sequence-step messages count minus what the old ones counted.';

CREATE OR REPLACE FUNCTION sequence_message_counts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  v_new broadcast_messages[] := '{}'::broadcast_messages[];
  v_old broadcast_messages[] := '{}'::broadcast_messages[];
BEGIN
  IF TG_OP <> 'DELETE' THEN
    v_new := array(SELECT n::broadcast_messages FROM new_rows n WHERE n.sequence_stepid IS NOT NULL);
  END IF;
  IF TG_OP <> 'INSERT' THEN
    v_old := array(SELECT o::broadcast_messages FROM old_rows o WHERE o.sequence_stepid IS NOT NULL);
  END IF;
  IF v_new <> '{}' OR v_old <> '{}' THEN   -- campaign traffic stops here
    PERFORM record_message_count_deltas(v_new, v_old);
  END IF;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION sequence_message_counts() IS
  'Statement trigger on broadcast_messages: counts the sequence-step rows changed (campaign rows are ignored).';

CREATE OR REPLACE FUNCTION record_enrollment_count_deltas(p_new sequence_enrollments[], p_old sequence_enrollments[])
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
COMMENT ON FUNCTION record_enrollment_count_deltas(sequence_enrollments[], sequence_enrollments[]) IS
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
  PERFORM record_enrollment_count_deltas(v_new, v_old);
  RETURN NULL;
END $$;
COMMENT ON FUNCTION sequence_enrollment_counts() IS
  'Statement trigger on sequence_enrollments: counts the enrollment rows changed.';

CREATE OR REPLACE TRIGGER broadcast_messages_sequence_ins AFTER INSERT ON broadcast_messages
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_message_counts();
CREATE OR REPLACE TRIGGER broadcast_messages_sequence_upd AFTER UPDATE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_message_counts();
CREATE OR REPLACE TRIGGER broadcast_messages_sequence_del AFTER DELETE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_message_counts();
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

CREATE OR REPLACE FUNCTION sequence_step_live(p_sequence_ids bigint[])
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
COMMENT ON FUNCTION sequence_step_live(bigint[]) IS
  'Per step of the given sequences: waiting contacts, in-flight messages, sent and failed, all-time (folded + unfolded).';

-- Per step: should = done + failed + remaining, where remaining is this step's in-flight messages
-- plus the active contacts whose next step is this one or an earlier one (they will reach it).
-- With a date range, done/failed count completions in [p_from, p_to] (owner's zone); remaining is now.
CREATE OR REPLACE FUNCTION sequence_flow_figures(p_sequence_ids bigint[], p_from date DEFAULT NULL, p_to date DEFAULT NULL)
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
      LEFT JOIN sequence_step_live(p_sequence_ids) l ON l.step_id = st.id
      LEFT JOIN dated d ON d.step_id = st.id
     WHERE st.sequence_id = ANY (p_sequence_ids))
  SELECT sequence_id, id, day_number, trigger, (done + failed + remaining)::bigint, done::bigint, failed::bigint,
         remaining::bigint
    FROM steps
$$;
COMMENT ON FUNCTION sequence_flow_figures(bigint[], date, date) IS
  'Per step (flow): should/done/failed/remaining sends from the rollups; done/failed limited to completions in the date range when given.';

-- Enrollment --------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION sequence_first_step(p_sequence_id bigint)
RETURNS TABLE (step_id bigint, delay_hours numeric) LANGUAGE sql STABLE AS $$
  SELECT id, trigger_delay_hours FROM sequence_steps WHERE sequence_id = p_sequence_id
   ORDER BY is_entry_point DESC, day_number LIMIT 1
$$;
COMMENT ON FUNCTION sequence_first_step(bigint) IS 'Where a contact starts: the entry-point step, else the lowest day.';

CREATE OR REPLACE FUNCTION enroll_leads(p_lead_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$
  -- Each lead enters every active sequence of its owner whose entry trigger is one of its tokens,
  -- once per sequence and phone (several leads with one phone: the oldest lead), unless opted out.
  WITH enrolled AS (
    INSERT INTO sequence_enrollments (sequence_id, user_id, lead_id, device_id, contact_phone, contact_name,
                                      next_step_id, next_due_at, enrolled_at)
    SELECT DISTINCT ON (s.id, l.phone) s.id, l.user_id, l.id, l.device_id, l.phone, l.name, f.step_id,
           p_now + make_interval(secs => (coalesce(f.delay_hours, 0) * 3600)::double precision), p_now
      FROM leads l
      JOIN sequences s ON s.user_id = l.user_id AND s.trigger = ANY (l.trigger_tokens) AND s.status = 'active'
      LEFT JOIN LATERAL sequence_first_step(s.id) f ON true
     WHERE l.id = ANY (p_lead_ids)
       AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.user_id = l.user_id AND o.phone = l.phone)
     ORDER BY s.id, l.phone, l.id
    ON CONFLICT ON CONSTRAINT sequence_enrollments_once DO NOTHING
    RETURNING 1)
  SELECT count(*)::int FROM enrolled
$$;
COMMENT ON FUNCTION enroll_leads(bigint[], timestamptz) IS
  'Enrolls the given leads in the active sequences their trigger tokens name (once per sequence and phone; opted-out phones never). The first step is due after its trigger_delay_hours. Returns enrollments made.';

CREATE OR REPLACE FUNCTION sequence_enrollment_sweep() RETURNS integer LANGUAGE sql AS $$
  -- The safety net behind the leads trigger: anything it missed is enrolled here.
  SELECT enroll_leads(array(
    SELECT l.id FROM sequences s
      JOIN leads l ON l.user_id = s.user_id AND l.trigger IS NOT NULL AND l.trigger_tokens @> ARRAY[s.trigger]
     WHERE s.status = 'active'
       AND NOT EXISTS (SELECT 1 FROM sequence_enrollments e WHERE e.sequence_id = s.id AND e.contact_phone = l.phone)))
$$;
COMMENT ON FUNCTION sequence_enrollment_sweep() IS
  'Periodic job: enrolls every lead whose trigger names an active sequence it is not enrolled in yet. Returns enrollments made.';

CREATE OR REPLACE FUNCTION stop_enrollments(p_enrollment_ids bigint[], p_reason text)
RETURNS integer LANGUAGE sql AS $$
  WITH stopped AS (
    UPDATE sequence_enrollments SET status = 'stopped', stop_reason = p_reason, completed_at = now()
     WHERE id = ANY (p_enrollment_ids) AND status = 'active'
    RETURNING id),
  skipped AS (   -- a step not yet claimed is not sent; one already with a sender finishes
    UPDATE broadcast_messages b SET status = 'skipped', held = false, failed_at = now(),
           error_message = 'sequence stopped: ' || p_reason
      FROM stopped WHERE b.enrollment_id = stopped.id AND b.status = 'pending')
  SELECT count(*)::int FROM stopped
$$;
COMMENT ON FUNCTION stop_enrollments(bigint[], text) IS
  'Stops active enrollments (reason kept) and skips their not-yet-claimed step; returns how many stopped.';

CREATE OR REPLACE FUNCTION stop_sequences_for_reply(p_user_id bigint, p_phone text)
RETURNS integer LANGUAGE sql AS $$
  -- Only enrollments made before the reply (the lead's replied_at, else now) stop.
  SELECT stop_enrollments(array(
    SELECT e.id FROM sequence_enrollments e JOIN sequences s ON s.id = e.sequence_id
     WHERE e.user_id = p_user_id AND e.contact_phone = p_phone AND e.status = 'active' AND s.stop_on_reply
       AND e.enrolled_at < coalesce((SELECT max(l.replied_at) FROM leads l
                                      WHERE l.user_id = p_user_id AND l.phone = p_phone), now())), 'reply')
$$;
COMMENT ON FUNCTION stop_sequences_for_reply(bigint, text) IS
  'Inbound path: the contact replied; stops its active enrollments (made before the reply) in sequences with stop_on_reply. Setting leads.replied_at does the same by trigger. Returns how many stopped.';

CREATE OR REPLACE FUNCTION stop_sequences_for_opt_out(p_user_id bigint, p_phone text)
RETURNS integer LANGUAGE sql AS $$
  SELECT stop_enrollments(array(
    SELECT id FROM sequence_enrollments
     WHERE user_id = p_user_id AND contact_phone = p_phone AND status = 'active'), 'opt_out')
$$;
COMMENT ON FUNCTION stop_sequences_for_opt_out(bigint, text) IS
  'Stops every active enrollment of an opted-out number (runs by trigger on opt_outs); returns how many.';

CREATE OR REPLACE FUNCTION leads_sequence_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM enroll_leads(array(SELECT id FROM new_rows WHERE trigger_tokens <> '{}'));
    RETURN NULL;
  END IF;
  PERFORM enroll_leads(array(
    SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE n.trigger_tokens <> '{}' AND n.trigger_tokens IS DISTINCT FROM o.trigger_tokens));
  PERFORM stop_sequences_for_reply(n.user_id, n.phone)
     FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.replied_at IS NOT NULL AND n.replied_at IS DISTINCT FROM o.replied_at;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION leads_sequence_changes() IS
  'Statement trigger on leads: enrolls leads whose trigger tokens changed (or new leads), and stops sequences for leads that replied.';

CREATE OR REPLACE TRIGGER leads_sequences_ins AFTER INSERT ON leads
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION leads_sequence_changes();
CREATE OR REPLACE TRIGGER leads_sequences_upd AFTER UPDATE ON leads
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION leads_sequence_changes();

CREATE OR REPLACE FUNCTION opt_outs_stop_sequences() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM stop_sequences_for_opt_out(user_id, phone) FROM new_rows;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION opt_outs_stop_sequences() IS 'Statement trigger on opt_outs: stops the new opt-outs'' sequences.';

CREATE OR REPLACE TRIGGER opt_outs_sequences AFTER INSERT ON opt_outs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION opt_outs_stop_sequences();

-- Activation --------------------------------------------------------------------------------

-- Device choice, among the sequence's devices (all the owner's when it names none): the lead's own
-- device while online, under its caps and under the preferred_device_hourly_sends setting this hour;
-- otherwise the available ones by device_load's load score, the chunk's contacts spread over them
-- lowest score first. No device: the step waits.
CREATE OR REPLACE FUNCTION activate_due_steps(p_limit integer DEFAULT 5000, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$
  WITH open_sequences AS (
    SELECT s.id, s.user_id, s.min_delay_seconds, s.max_delay_seconds
      FROM sequences s JOIN users u ON u.id = s.user_id
     WHERE s.status = 'active'
       AND sequence_window_open(s.schedule_time, s.schedule_tolerance_minutes, u.timezone, p_now)),
  candidates AS (   -- earliest due first across all open sequences, never by step number
    SELECT c.id FROM open_sequences s
     CROSS JOIN LATERAL (
       SELECT e.id, e.next_due_at FROM sequence_enrollments e
        WHERE e.sequence_id = s.id AND e.status = 'active' AND e.next_due_at <= p_now
          AND e.next_step_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM broadcast_messages b
                           WHERE b.enrollment_id = e.id AND b.status IN ('pending', 'queued'))
        ORDER BY e.next_due_at LIMIT p_limit) c
     ORDER BY c.next_due_at LIMIT p_limit),
  -- Re-checked under the lock. A row another tick advanced meanwhile and that is due again has
  -- an active message: the unique index turns its insert into nothing, and nothing advances.
  locked AS (
    SELECT e.id, e.user_id, e.sequence_id, e.next_step_id, e.device_id, e.lead_id, e.contact_phone, e.contact_name
      FROM sequence_enrollments e
     WHERE e.id = ANY (array(SELECT id FROM candidates)) AND e.status = 'active' AND e.next_due_at <= p_now
       AND e.next_step_id IS NOT NULL
       FOR UPDATE SKIP LOCKED),

  loads AS (        -- per sequence of the chunk: the devices it may use now, by score
    SELECT s.id AS sequence_id, l.device_id, l.messages_hour,
           row_number() OVER (PARTITION BY s.id ORDER BY l.load_score, l.device_id) - 1 AS pos,
           count(*) OVER (PARTITION BY s.id) AS n
      FROM sequences s
      JOIN device_load(array(SELECT DISTINCT user_id FROM locked)) l ON l.user_id = s.user_id
     WHERE s.id IN (SELECT DISTINCT sequence_id FROM locked) AND l.is_available
       AND (s.device_ids IS NULL OR l.device_id = ANY (s.device_ids))),
  with_own AS (
    SELECT k.*, own.device_id AS own_device_id
      FROM locked k
      LEFT JOIN loads own ON own.sequence_id = k.sequence_id AND own.device_id = k.device_id
                         AND own.messages_hour < (SELECT setting('preferred_device_hourly_sends'))),
  numbered AS (     -- the contacts without their own device, numbered per sequence for the spread
    SELECT w.*, row_number() OVER (PARTITION BY w.sequence_id, w.own_device_id IS NULL ORDER BY w.id) - 1 AS nth
      FROM with_own w),
  picked AS (
    SELECT k.*, coalesce(k.own_device_id, spread.device_id) AS send_device_id
      FROM numbered k
      LEFT JOIN (SELECT DISTINCT sequence_id, n FROM loads) usable ON usable.sequence_id = k.sequence_id
      LEFT JOIN loads spread ON spread.sequence_id = k.sequence_id AND spread.pos = k.nth % usable.n),
  steps AS (
    SELECT st.id, st.content, media_path(st.media_id, st.media_url) AS media_url,
           lead(st.id) OVER w AS next_id, lead(st.trigger_delay_hours) OVER w AS next_delay
      FROM sequence_steps st
     WHERE st.sequence_id IN (SELECT DISTINCT sequence_id FROM locked)
    WINDOW w AS (PARTITION BY st.sequence_id ORDER BY st.day_number)),
  queued AS (
    INSERT INTO broadcast_messages (user_id, device_id, sequence_id, sequence_stepid, enrollment_id, lead_id,
                                    recipient_phone, recipient_name, message_type, content, media_url,
                                    min_delay_seconds, max_delay_seconds, scheduled_at)
    SELECT p.user_id, p.send_device_id, p.sequence_id, p.next_step_id, p.id, p.lead_id, p.contact_phone,
           p.contact_name, CASE WHEN st.media_url IS NULL THEN 'text' ELSE 'image' END,
           render_message(st.content, p.contact_name, p.contact_phone), st.media_url,
           s.min_delay_seconds, s.max_delay_seconds, p_now
      FROM picked p JOIN steps st ON st.id = p.next_step_id JOIN open_sequences s ON s.id = p.sequence_id
     WHERE p.send_device_id IS NOT NULL
    ON CONFLICT DO NOTHING   -- the unique indexes are the last word on one message per step and contact
    RETURNING enrollment_id, sequence_stepid),
  advanced AS (
    UPDATE sequence_enrollments e
       SET next_step_id = st.next_id, steps_done = e.steps_done + 1,
           next_due_at = p_now + make_interval(secs => (st.next_delay * 3600)::double precision)
      FROM queued q JOIN steps st ON st.id = q.sequence_stepid
     WHERE e.id = q.enrollment_id
    RETURNING 1)
  SELECT count(*)::int FROM advanced
$$;
COMMENT ON FUNCTION activate_due_steps(integer, timestamptz) IS
  'One chunk of activation: up to p_limit due steps of active sequences whose window is open, earliest due first, queued as rendered messages on the chosen device; each contact advances to its next step. Returns steps activated.';

-- Completion and chaining -------------------------------------------------------------------

CREATE OR REPLACE FUNCTION complete_finished_enrollments(p_limit integer DEFAULT 5000)
RETURNS integer LANGUAGE sql AS $$
  -- Past the last step and its message done (sent or failed): completed. The lead loses the
  -- sequence's trigger and, when the last step chains, gains the next sequence's entry trigger;
  -- the leads trigger then enrolls it there.
  WITH finished AS (
    SELECT e.id FROM sequence_enrollments e
     WHERE e.status = 'active' AND e.next_step_id IS NULL
       AND NOT EXISTS (SELECT 1 FROM broadcast_messages b
                        WHERE b.enrollment_id = e.id AND b.status IN ('pending', 'queued'))
     LIMIT p_limit FOR UPDATE SKIP LOCKED),
  completed AS (
    UPDATE sequence_enrollments e SET status = 'completed', completed_at = now()
      FROM finished f WHERE e.id = f.id
    RETURNING e.lead_id, e.user_id, e.sequence_id),
  moves AS (
    SELECT c.lead_id, s.trigger AS leaving, nxt.trigger AS entering
      FROM completed c JOIN sequences s ON s.id = c.sequence_id
      LEFT JOIN LATERAL (SELECT chain_sequence_id, lower(btrim(next_trigger)) AS next_trigger
                           FROM sequence_steps WHERE sequence_id = s.id
                          ORDER BY day_number DESC LIMIT 1) last ON true
      LEFT JOIN LATERAL (SELECT t.trigger FROM sequences t
                          WHERE t.user_id = c.user_id AND t.id <> s.id
                            AND (t.id = last.chain_sequence_id OR t.trigger = last.next_trigger)
                          ORDER BY t.id = last.chain_sequence_id DESC LIMIT 1) nxt ON true
     WHERE c.lead_id IS NOT NULL),
  per_lead AS (
    SELECT m.lead_id, array_agg(m.leaving) AS leaving, array_remove(array_agg(m.entering), NULL) AS entering
      FROM moves m GROUP BY m.lead_id),
  retriggered AS (
    UPDATE leads l
       SET trigger = nullif(array_to_string(array(
             SELECT t FROM unnest(l.trigger_tokens) t WHERE t <> ALL (p.leaving)
             UNION SELECT unnest(p.entering) ORDER BY 1), ','), ''),
           updated_at = now()
      FROM per_lead p WHERE l.id = p.lead_id
    RETURNING 1)
  SELECT count(*)::int FROM completed
$$;
COMMENT ON FUNCTION complete_finished_enrollments(integer) IS
  'Completes enrollments whose last step is done, removes the sequence trigger from the lead and applies the chained sequence''s trigger. Returns enrollments completed.';

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
    min_delay_seconds = coalesce(nullif(p_def->>'min_delay_seconds', '')::int, setting('default_min_delay_seconds')::int),
    max_delay_seconds = coalesce(nullif(p_def->>'max_delay_seconds', '')::int, setting('default_max_delay_seconds')::int),
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

-- Reads for the pages and API (always scoped to the owner) ------------------------------------

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

CREATE OR REPLACE FUNCTION sequence_overview(p_user_id bigint)
RETURNS TABLE (id bigint, name text, trigger text, status text, created_at timestamptz, total_flows bigint,
               should_send bigint, done_send bigint, failed_send bigint, remaining_send bigint)
LANGUAGE sql STABLE AS $$
  SELECT s.id, s.name, s.trigger, s.status, s.created_at, count(f.step_id),
         coalesce(sum(f.should_send), 0)::bigint, coalesce(sum(f.done_send), 0)::bigint,
         coalesce(sum(f.failed_send), 0)::bigint, coalesce(sum(f.remaining_send), 0)::bigint
    FROM sequences s
    LEFT JOIN sequence_flow_figures(array(SELECT x.id FROM sequences x WHERE x.user_id = p_user_id)) f
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
  SELECT jsonb_build_object(
    'sequences', jsonb_build_object('total', count(*), 'active', count(*) FILTER (WHERE status = 'active'),
                                    'inactive', count(*) FILTER (WHERE status = 'inactive')),
    'total_flows', coalesce(sum(total_flows), 0),
    'total_should_send', coalesce(sum(should_send), 0),
    'total_done_send', coalesce(sum(done_send), 0),
    'total_failed_send', coalesce(sum(failed_send), 0),
    'total_remaining_send', coalesce(sum(remaining_send), 0),
    'recent_sequences', coalesce((SELECT jsonb_agg(jsonb_build_object(
        'id', r.id, 'name', r.name, 'trigger', r.trigger, 'total_flows', r.total_flows,
        'should_send', r.should_send, 'done_send', r.done_send, 'failed_send', r.failed_send,
        'remaining_send', r.remaining_send) ORDER BY r.created_at DESC, r.id DESC)
        FROM (SELECT * FROM o ORDER BY created_at DESC, id DESC LIMIT p_recent) r), '[]'))
  FROM o
$$;
COMMENT ON FUNCTION sequence_summary(bigint, integer) IS
  'GET /api/sequences/summary (CONTRACT.md): sequence counts, totals of flows and sends, and the p_recent newest sequences.';

CREATE OR REPLACE FUNCTION sequence_flows(p_user_id bigint, p_sequence_id bigint, p_from date DEFAULT NULL,
                                          p_to date DEFAULT NULL)
RETURNS TABLE (step_id bigint, day_number integer, step_trigger text, should_send bigint, done_send bigint,
               failed_send bigint, remaining_send bigint)
LANGUAGE sql STABLE AS $$
  SELECT f.step_id, f.day_number, f.step_trigger, f.should_send, f.done_send, f.failed_send, f.remaining_send
    FROM sequence_flow_figures(array(SELECT id FROM sequences WHERE id = p_sequence_id AND user_id = p_user_id),
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

-- The scheduled tick --------------------------------------------------------------------------

CREATE OR REPLACE PROCEDURE sequence_tick(p_chunk integer DEFAULT 5000, p_budget interval DEFAULT '15 seconds')
LANGUAGE plpgsql AS $$
DECLARE
  v_deadline timestamptz := clock_timestamp() + p_budget;
  v_started  timestamptz;
  v_last     interval := interval '0';  -- the last chunk's time: no chunk starts unless one more fits the budget
  v_done     integer;
BEGIN
  -- Chunks commit as they go. Overlapping ticks (pg_cron and a clock) are safe: rows are taken
  -- with SKIP LOCKED and the unique indexes allow one message per step and contact.
  PERFORM fold_sequence_counters();
  COMMIT;
  LOOP
    v_started := clock_timestamp();
    v_done := complete_finished_enrollments(p_chunk);
    COMMIT;
    v_last := clock_timestamp() - v_started;
    EXIT WHEN v_done < p_chunk OR clock_timestamp() + v_last > v_deadline;
  END LOOP;
  LOOP
    EXIT WHEN clock_timestamp() + v_last > v_deadline;
    v_started := clock_timestamp();
    v_done := activate_due_steps(p_chunk);
    COMMIT;
    PERFORM refresh_queue_stats(v_done);
    COMMIT;
    v_last := clock_timestamp() - v_started;
    EXIT WHEN v_done < p_chunk;
  END LOOP;
END $$;
COMMENT ON PROCEDURE sequence_tick(integer, interval) IS
  'The every-minute job (CALL sequence_tick(), outside a transaction block): folds counters, completes finished contacts, activates due steps in chunks of p_chunk, committing each, for at most p_budget.';
