-- Drip sequences, the engine: enrollment, activation of due steps, completion and chaining,
-- stopping on reply / opt-out, retry of failed steps, and the every-minute tick.
--
-- Storage grows with steps processed: an enrollment row says where a contact is in one pass (next
-- step, when due); each processed step is its broadcast_messages row. Ordering rules:
--   * the entry step is due as soon as the lead enters; each later step is due trigger_delay_hours
--     of the step before it after that step was activated; a step goes out inside the sequence's
--     send window, earliest due first;
--   * steps follow day_number; a contact starts at the entry-point step (else the lowest day);
--   * a failed step stays failed and the contact moves on on schedule; the owner may retry failed
--     steps (a new message with retry_of);
--   * a sequence with allow_reentry takes a lead that completed it again when its trigger is set
--     again (a new enrollment, a new pass).

-- Send window -------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION _sequence_window_open(p_schedule_time time, p_tolerance_minutes integer,
                                                p_timezone text, p_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
  -- Circular distance on the 24h clock, so a window may span midnight.
  SELECT p_schedule_time IS NULL OR least(m, 1440 - m) <= p_tolerance_minutes
    FROM (SELECT abs(extract(epoch FROM (p_at AT TIME ZONE p_timezone)::time - p_schedule_time)) / 60 AS m) d
$$;
COMMENT ON FUNCTION _sequence_window_open(time, integer, text, timestamptz) IS
  'True when p_at (read in p_timezone) is within p_tolerance_minutes of p_schedule_time, across midnight; NULL time: always.';

CREATE OR REPLACE FUNCTION _sequence_send_time(p_due timestamptz, p_schedule_time time,
                                              p_tolerance_minutes integer, p_timezone text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN p_due IS NULL OR _sequence_window_open(p_schedule_time, p_tolerance_minutes, p_timezone, p_due) THEN p_due
    ELSE (CASE WHEN local < opening THEN opening ELSE opening + interval '1 day' END) AT TIME ZONE p_timezone
  END
  FROM (SELECT p_due AT TIME ZONE p_timezone AS local,
               (p_due AT TIME ZONE p_timezone)::date + p_schedule_time
                 - make_interval(mins => p_tolerance_minutes) AS opening) w
$$;
COMMENT ON FUNCTION _sequence_send_time(timestamptz, time, integer, text) IS
  'When a step due at p_due can go out: p_due inside the window, else the next window opening (owner''s zone).';

-- Enrollment --------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION _enroll_leads(p_lead_ids bigint[], p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$
  -- Each lead enters every active sequence of its owner whose entry trigger is one of its tokens and
  -- whose niche (when set) is one of the lead's, once per sequence and phone (several leads with one
  -- phone: the oldest lead), unless opted out. It enters again (a new pass) only where the sequence
  -- allows re-entry and every earlier pass completed. It starts at the entry-point step (else the
  -- lowest day), due at once.
  WITH enrolled AS (
    INSERT INTO sequence_enrollments (sequence_id, user_id, lead_id, device_id, contact_phone, contact_name,
                                      next_step_id, next_due_at, enrolled_at)
    SELECT DISTINCT ON (s.id, l.phone) s.id, l.user_id, l.id, l.device_id, l.phone, l.name, f.id, p_now, p_now
      FROM leads l
      JOIN sequences s ON s.user_id = l.user_id AND s.trigger = ANY (l.trigger_tokens) AND s.status = 'active'
      LEFT JOIN LATERAL (SELECT st.id FROM sequence_steps st WHERE st.sequence_id = s.id
                          ORDER BY st.is_entry_point DESC, st.day_number LIMIT 1) f ON true
     WHERE l.id = ANY (p_lead_ids)
       AND (s.niche = '' OR l.niche_tokens && lead_tokens(s.niche))
       AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.user_id = l.user_id AND o.phone = l.phone)
       AND NOT EXISTS (SELECT 1 FROM sequence_enrollments e WHERE e.sequence_id = s.id AND e.contact_phone = l.phone
                          AND (e.status <> 'completed' OR NOT s.allow_reentry))
     ORDER BY s.id, l.phone, l.id
    ON CONFLICT DO NOTHING   -- sequence_enrollments_once: one active pass per sequence and phone
    RETURNING 1)
  SELECT count(*)::int FROM enrolled
$$;
COMMENT ON FUNCTION _enroll_leads(bigint[], timestamptz) IS
  'Enrolls the given leads in the active sequences their trigger tokens name and their niches match (sequence niche empty: any lead); once per sequence and phone, again after a completed pass where allow_reentry; opted-out phones never. The entry step is due at once. Returns enrollments made.';

CREATE OR REPLACE FUNCTION sequence_enrollment_sweep() RETURNS integer LANGUAGE sql AS $$
  -- The safety net behind the leads trigger: anything it missed is enrolled here.
  SELECT _enroll_leads(array(
    SELECT l.id FROM sequences s
      JOIN leads l ON l.user_id = s.user_id AND l.trigger IS NOT NULL AND l.trigger_tokens @> ARRAY[s.trigger]
     WHERE s.status = 'active'
       AND NOT EXISTS (SELECT 1 FROM sequence_enrollments e WHERE e.sequence_id = s.id AND e.contact_phone = l.phone)))
$$;
COMMENT ON FUNCTION sequence_enrollment_sweep() IS
  'Periodic job: enrolls every lead whose trigger names an active sequence it is not enrolled in yet. Returns enrollments made.';

CREATE OR REPLACE FUNCTION _stop_enrollments(p_enrollment_ids bigint[], p_reason text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_stopped bigint[];
BEGIN
  IF p_enrollment_ids = '{}' THEN
    RETURN 0;   -- most replies have nothing to stop: no statement (its triggers would run for no row)
  END IF;
  WITH stopped AS (
    UPDATE sequence_enrollments SET status = 'stopped', stop_reason = p_reason, completed_at = now()
     WHERE id = ANY (p_enrollment_ids) AND status = 'active'
    RETURNING id)
  SELECT array_agg(id) INTO v_stopped FROM stopped;
  IF v_stopped IS NULL THEN
    RETURN 0;
  END IF;
  -- A step not yet claimed is not sent; one already with a sender finishes.
  PERFORM _skip_messages(array(SELECT b.id FROM broadcast_messages b
                                WHERE b.enrollment_id = ANY (v_stopped) AND b.status = 'pending'),
                         'sequence_stopped', p_reason);
  RETURN coalesce(cardinality(v_stopped), 0);
END $$;
COMMENT ON FUNCTION _stop_enrollments(bigint[], text) IS
  'Stops active enrollments (reason kept) and skips their not-yet-claimed step; returns how many stopped.';

CREATE OR REPLACE FUNCTION stop_sequences_for_reply(p_user_id bigint, p_phone text)
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
  -- Only enrollments made before the reply (the lead's replied_at, else now) stop. PL/pgSQL, so the
  -- statement keeps its plan: as a SQL function it was planned again for every reply.
  RETURN _stop_enrollments(array(
    SELECT e.id FROM sequence_enrollments e JOIN sequences s ON s.id = e.sequence_id
     WHERE e.user_id = p_user_id AND e.contact_phone = p_phone AND e.status = 'active' AND s.stop_on_reply
       AND e.enrolled_at < coalesce((SELECT max(l.replied_at) FROM leads l
                                      WHERE l.user_id = p_user_id AND l.phone = p_phone), now())), 'reply');
END $$;
COMMENT ON FUNCTION stop_sequences_for_reply(bigint, text) IS
  'Inbound path: the contact replied; stops its active enrollments (made before the reply) in sequences with stop_on_reply. Setting leads.replied_at does the same by trigger. Returns how many stopped.';

CREATE OR REPLACE FUNCTION _stop_sequences_for_opt_out(p_user_id bigint, p_phone text)
RETURNS integer LANGUAGE sql AS $$
  SELECT _stop_enrollments(array(
    SELECT id FROM sequence_enrollments
     WHERE user_id = p_user_id AND contact_phone = p_phone AND status = 'active'), 'opt_out')
$$;
COMMENT ON FUNCTION _stop_sequences_for_opt_out(bigint, text) IS
  'Stops every active enrollment of an opted-out number (runs by trigger on opt_outs); returns how many.';

CREATE OR REPLACE FUNCTION leads_sequence_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v_entering bigint[];
BEGIN
  IF TG_OP = 'INSERT' THEN
    v_entering := array(SELECT id FROM new_rows WHERE trigger_tokens <> '{}');
  ELSE
    -- A changed value is one only the new side has: found by grouping old and new rows, never by a
    -- join of the transition tables. PL/pgSQL plans these once per session, sized by its first
    -- statement's rows: a join planned for one row on each side compared every pair of a later bulk
    -- update, and a hashed EXCEPT cannot spill to disk; a grouping stays linear and spills.
    v_entering := array(
      SELECT r.id FROM (SELECT n.id, n.trigger_tokens, true AS new FROM new_rows n WHERE n.trigger_tokens <> '{}'
                        UNION ALL SELECT o.id, o.trigger_tokens, false FROM old_rows o) r
       GROUP BY r.id, r.trigger_tokens HAVING bool_and(r.new));
    PERFORM stop_sequences_for_reply(l.user_id, l.phone)
       FROM leads l
      WHERE l.id = ANY (array(
        SELECT r.id FROM (SELECT n.id, n.replied_at, true AS new FROM new_rows n WHERE n.replied_at IS NOT NULL
                          UNION ALL SELECT o.id, o.replied_at, false FROM old_rows o) r
         GROUP BY r.id, r.replied_at HAVING bool_and(r.new)));
  END IF;
  -- _enroll_leads (a SQL function, planned on every call: 0.5 ms) only when a lead may enter: most
  -- statements on leads (a reply's replied_at, an edit, a lead without a trigger) change no trigger.
  IF v_entering <> '{}' THEN
    PERFORM _enroll_leads(v_entering);
  END IF;
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
  PERFORM _stop_sequences_for_opt_out(user_id, phone) FROM new_rows;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION opt_outs_stop_sequences() IS 'Statement trigger on opt_outs: stops the new opt-outs'' sequences.';

CREATE OR REPLACE TRIGGER opt_outs_sequences AFTER INSERT ON opt_outs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION opt_outs_stop_sequences();

-- Steps in flight ---------------------------------------------------------------------------

-- An enrollment's step_in_flight is set by the writers that queue its step (activate_due_steps,
-- retry_failed_steps) and cleared here, at the start of each chunk of the tick, for the enrollments
-- whose step message settled since (the queue's trigger records them: sequence_message_counts).
-- It is cleared only when no live message of the enrollment is left (a retry queued meanwhile keeps
-- it), so "in flight" never outlives the message that will clear it; a flag left clear while a
-- message is live only costs the probe the tick's reads still make. Records another tick is
-- taking are left to it (SKIP LOCKED): concurrent ticks never wait on each other here. At most
-- 100,000 a call (~3 s at 1M enrollments): a backlog left by a stopped clock goes over the chunks.
CREATE OR REPLACE FUNCTION _mark_settled_steps() RETURNS integer LANGUAGE sql AS $$
  WITH taken AS (
    DELETE FROM enrollment_steps_settled
     WHERE ctid = ANY (array(SELECT ctid FROM enrollment_steps_settled LIMIT 100000 FOR UPDATE SKIP LOCKED))
    RETURNING enrollment_id),
  cleared AS (
    UPDATE sequence_enrollments e SET step_in_flight = false
     WHERE e.id IN (SELECT enrollment_id FROM taken) AND e.step_in_flight
       AND NOT EXISTS (SELECT 1 FROM broadcast_messages b
                        WHERE b.enrollment_id = e.id AND b.status IN ('pending', 'queued'))
    RETURNING 1)
  SELECT count(*)::int FROM cleared
$$;
COMMENT ON FUNCTION _mark_settled_steps() IS
  'Takes up to 100,000 recorded settled steps (enrollment_steps_settled) and clears step_in_flight of those '
  'enrollments that have no pending or queued message left. Returns enrollments cleared.';

-- Activation --------------------------------------------------------------------------------

-- Device choice, among the sequence's devices (all the owner's when it names none) that can send now:
-- one that talked with the contact (warm first: chats.talked_at), else the lead's own
-- device while online, under its caps and under the preferred_device_hourly_sends setting this hour;
-- otherwise the available ones by device_load's load score, the chunk's contacts spread over them
-- lowest score first. No device: the step waits.
CREATE OR REPLACE FUNCTION activate_due_steps(p_limit integer DEFAULT 5000, p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE sql AS $$
  SELECT _mark_settled_steps();
  WITH open_sequences AS (   -- active, inside their window, with something due
    SELECT s.id, s.user_id, s.min_delay_seconds, s.max_delay_seconds, s.device_ids
      FROM sequences s JOIN users u ON u.id = s.user_id
     WHERE s.status = 'active'
       AND _sequence_window_open(s.schedule_time, s.schedule_tolerance_minutes, u.timezone, p_now)
       AND EXISTS (SELECT 1 FROM sequence_enrollments e WHERE e.sequence_id = s.id AND e.status = 'active'
                      AND NOT e.step_in_flight AND e.next_due_at <= p_now)),
  available AS (    -- the devices that can send now, of the owners of those sequences
    SELECT l.* FROM device_load(array(SELECT DISTINCT user_id FROM open_sequences)) l WHERE l.is_available),
  servable AS (     -- a sequence none of whose devices can send keeps its due steps out of the chunk
    SELECT s.* FROM open_sequences s
     WHERE EXISTS (SELECT 1 FROM available a WHERE a.user_id = s.user_id
                      AND (s.device_ids IS NULL OR a.device_id = ANY (s.device_ids)))),
  -- Fair between accounts: each account's steps earliest due first (never by step number), the
  -- accounts taking turns, so one account's backlog takes only its share of the chunk.
  candidates AS (
    SELECT c.id FROM (
      SELECT c.id, c.next_due_at, row_number() OVER (PARTITION BY s.user_id ORDER BY c.next_due_at, c.id) AS turn
        FROM servable s
       CROSS JOIN LATERAL (
         SELECT e.id, e.next_due_at FROM sequence_enrollments e
          WHERE e.sequence_id = s.id AND e.status = 'active' AND NOT e.step_in_flight AND e.next_due_at <= p_now
            AND e.next_step_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM broadcast_messages b
                             WHERE b.enrollment_id = e.id AND b.status IN ('pending', 'queued'))
          ORDER BY e.next_due_at LIMIT p_limit) c) c
     ORDER BY c.turn, c.next_due_at LIMIT p_limit),
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
           row_number() OVER (PARTITION BY s.id ORDER BY l.load_score, l.device_id) - 1 AS pos
      FROM servable s JOIN available l ON l.user_id = s.user_id
     WHERE s.id IN (SELECT DISTINCT sequence_id FROM locked)
       AND (s.device_ids IS NULL OR l.device_id = ANY (s.device_ids))),
  -- Per sequence of the chunk, its devices as arrays: by score (the spread, and the least loaded of
  -- a contact's warm devices), and those under the preferred hourly sends a contact's own device
  -- must be among. Each contact's devices are then picked from its sequence's arrays and from the
  -- devices that talked with it (found by its number: a few), with no join but the one to its
  -- sequence: joined row by row with the devices and warm contacts instead, the planner (told there
  -- are a few of each) paired every contact with every device or every warm pair (5,000 contacts on
  -- 300 devices: 4.5M rows and 1.5M probes of the warm contacts, 1.9 s a chunk).
  devices_by_sequence AS (
    SELECT l.sequence_id, array_agg(l.device_id ORDER BY l.pos) AS by_score,
           array_agg(l.device_id) FILTER (WHERE l.messages_hour < (SELECT setting('preferred_device_hourly_sends'))) AS own_ok
      FROM loads l GROUP BY l.sequence_id),
  with_own AS (     -- warm first (the least loaded that talked with the contact), else its own
    SELECT k.*, coalesce(
             (SELECT w.device_id FROM chats w
               WHERE w.phone = k.contact_phone AND w.talked_at IS NOT NULL AND w.device_id = ANY (ds.by_score)
               ORDER BY array_position(ds.by_score, w.device_id) LIMIT 1),
             CASE WHEN k.device_id = ANY (ds.own_ok) THEN k.device_id END) AS own_device_id
      FROM locked k
      LEFT JOIN devices_by_sequence ds ON ds.sequence_id = k.sequence_id),
  numbered AS (     -- the contacts without their own device, numbered per sequence for the spread
    SELECT w.*, row_number() OVER (PARTITION BY w.sequence_id, w.own_device_id IS NULL ORDER BY w.id) - 1 AS nth
      FROM with_own w),
  picked AS (
    SELECT k.*, coalesce(k.own_device_id, ds.by_score[1 + k.nth % cardinality(ds.by_score)]) AS send_device_id
      FROM numbered k
      LEFT JOIN devices_by_sequence ds ON ds.sequence_id = k.sequence_id),
  steps AS (
    SELECT st.id, st.content, _message_template(st.content) AS template, media_path(st.media_id, st.media_url) AS media_url,
           lead(st.id) OVER w AS next_id, st.trigger_delay_hours AS wait_after
      FROM sequence_steps st
     WHERE st.sequence_id IN (SELECT DISTINCT sequence_id FROM locked)
    WINDOW w AS (PARTITION BY st.sequence_id ORDER BY st.day_number)),
  queued AS (       -- the queue's unique indexes are the last word on one live step per contact
    SELECT q.enrollment_id, q.sequence_stepid FROM _enqueue_messages(array(
      SELECT ROW(p.user_id, p.send_device_id, p.lead_id, p.contact_phone, p.contact_name,
                 CASE WHEN st.media_url IS NULL THEN 'text' ELSE 'image' END,
                 coalesce(_fill_fields(st.template, p.contact_name, p.contact_phone),
                          render_message(st.content, p.contact_name, p.contact_phone)), st.media_url,
                 s.min_delay_seconds, s.max_delay_seconds, p_now, false,
                 NULL, p.sequence_id, p.next_step_id, p.id, NULL)::message_draft
        FROM picked p JOIN steps st ON st.id = p.next_step_id JOIN open_sequences s ON s.id = p.sequence_id
       WHERE p.send_device_id IS NOT NULL)) q),
  advanced AS (
    UPDATE sequence_enrollments e
       SET next_step_id = st.next_id, steps_done = e.steps_done + 1, step_in_flight = true,
           next_due_at = p_now + make_interval(secs => (st.wait_after * 3600)::double precision)
      FROM queued q JOIN steps st ON st.id = q.sequence_stepid
     WHERE e.id = q.enrollment_id
    RETURNING 1)
  SELECT count(*)::int FROM advanced
$$;
COMMENT ON FUNCTION activate_due_steps(integer, timestamptz) IS
  'One chunk of activation: up to p_limit due steps of active sequences whose window is open, earliest due first, queued as rendered messages on the chosen device (warm first: one that talked with the contact, else the lead''s own, else the least loaded); each contact advances to its next step. Returns steps activated.';

-- Completion and chaining -------------------------------------------------------------------

CREATE OR REPLACE FUNCTION complete_finished_enrollments(p_limit integer DEFAULT 5000)
RETURNS integer LANGUAGE sql AS $$
  SELECT _mark_settled_steps();
  -- Past the last step and its message done (sent or failed): completed. The lead loses the
  -- sequence's trigger and, when the last step chains, gains the next sequence's entry trigger;
  -- the leads trigger then enrolls it there.
  WITH finished AS (
    SELECT e.id FROM sequence_enrollments e
     WHERE e.status = 'active' AND e.next_step_id IS NULL AND NOT e.step_in_flight
       AND NOT EXISTS (SELECT 1 FROM broadcast_messages b
                        WHERE b.enrollment_id = e.id AND b.status IN ('pending', 'queued'))
     LIMIT p_limit FOR UPDATE SKIP LOCKED),
  completed AS (
    UPDATE sequence_enrollments e SET status = 'completed', completed_at = now()
      FROM finished f WHERE e.id = f.id
    RETURNING e.id, e.lead_id, e.user_id, e.sequence_id, e.contact_phone),
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
  -- One sequence.completed webhook event per enrollment (the count is the completions).
  SELECT count(_emit_webhook_event(c.user_id, 'sequence.completed', jsonb_build_object(
           'sequence_id', c.sequence_id, 'enrollment_id', c.id, 'lead_id', c.lead_id, 'phone', c.contact_phone)))::int
    FROM completed c
$$;
COMMENT ON FUNCTION complete_finished_enrollments(integer) IS
  'Completes enrollments whose last step is done, removes the sequence trigger from the lead and applies the chained sequence''s trigger, with a sequence.completed webhook event each. Returns enrollments completed.';

-- Retry -------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION retry_failed_steps(p_user_id bigint, p_sequence_id bigint, p_step_id bigint DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  s sequences;
  v_queued integer;
BEGIN
  SELECT * INTO s FROM sequences WHERE id = p_sequence_id AND user_id = p_user_id;
  IF NOT FOUND THEN RETURN NULL; END IF;
  -- Each failed, not yet retried step of a contact not stopped and not opted out is queued again
  -- (retry_of = the failed one, which stays as it was) on its device while that can send, else on
  -- the sequence's least loaded available device. A contact with a step in flight is left for later.
  -- The queue allows one step in flight per contact and one retry per failed message: of a
  -- contact's failed steps the earliest goes now, the next on a later retry.
  WITH queued AS (
    SELECT q.enrollment_id FROM _enqueue_messages(array(
      SELECT DISTINCT ON (m.enrollment_id) ROW(m.user_id, coalesce(own.device_id, alt.device_id, m.device_id), m.lead_id, m.recipient_phone,
                 m.recipient_name, m.message_type, m.content, m.media_url, m.min_delay_seconds, m.max_delay_seconds,
                 now(), s.status = 'inactive', NULL, m.sequence_id, m.sequence_stepid, m.enrollment_id, m.id)::message_draft
        FROM broadcast_messages m
        JOIN sequence_enrollments e ON e.id = m.enrollment_id AND e.status <> 'stopped'
        LEFT JOIN LATERAL (SELECT l.device_id FROM device_load(ARRAY[p_user_id]) l
                            WHERE l.device_id = m.device_id AND l.is_available) own ON true
        LEFT JOIN LATERAL (SELECT l.device_id FROM device_load(ARRAY[p_user_id]) l
                            WHERE l.is_available AND (s.device_ids IS NULL OR l.device_id = ANY (s.device_ids))
                            ORDER BY l.messages_hour, l.device_id LIMIT 1) alt ON own.device_id IS NULL
       WHERE m.sequence_id = s.id AND m.status = 'failed' AND (p_step_id IS NULL OR m.sequence_stepid = p_step_id)
         AND NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = m.id)
         AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.user_id = m.user_id AND o.phone = m.recipient_phone)
       ORDER BY m.enrollment_id, m.id)) q
  ), in_flight AS (
    UPDATE sequence_enrollments e SET step_in_flight = true
     WHERE e.id IN (SELECT enrollment_id FROM queued) AND NOT e.step_in_flight
    RETURNING 1)
  SELECT count(*) INTO v_queued FROM queued;
  RETURN v_queued;
END $$;
COMMENT ON FUNCTION retry_failed_steps(bigint, bigint, bigint) IS
  'Queues a new message (retry_of = the failed one) for each failed, not yet retried step message of one of the owner''s sequences (one step when p_step_id is given); stopped or opted-out contacts and contacts with a step in flight are left. Returns how many; NULL when not the owner''s.';

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
    v_last := clock_timestamp() - v_started;
    EXIT WHEN v_done < p_chunk;
  END LOOP;
END $$;
COMMENT ON PROCEDURE sequence_tick(integer, interval) IS
  'The every-minute job (CALL sequence_tick(), outside a transaction block): folds counters, completes finished contacts, activates due steps in chunks of p_chunk, committing each, for at most p_budget.';
