-- The send queue (broadcast_messages): rendering at queue time, claim, complete, fail, stuck
-- recovery, the undeliverable sweep and the wake-up NOTIFY. Pacing and caps are enforced inside
-- the claim.
--
-- Where a message changes state — the queue family, the only writers of broadcast_messages
-- (tests/test_message_lifecycle.py holds every other file to reading it):
--   queue_enqueue.sql   new rows (pending, or pending and held)            _enqueue_messages
--   queue.sql           pending -> queued (claim); queued -> sent / failed (complete, fail,
--                       stuck recovery); queued -> pending (release); the undeliverable sweep
--   queue_waiting.sql   pending -> skipped with a skip_reason; held / released; lead re-pointed
--   queue_receipts.sql  sent: delivered_at, read_at
--   queue_failover.sql  pending rows of a lost device moved to another device (failover)
--   triggers_broadcast_messages.sql  what fires on each write (rollups, wake-up, campaign end),
--                       and the deletes that replace the foreign keys' ON DELETE
-- Every outcome (sent, failed, skipped, delivered, read) is pushed through _notify_queue_changes.

-- Rendering ---------------------------------------------------------------------------------
-- Fields are recognised first and parked as private-use characters, so spintax never sees a
-- field's braces and a value containing '|' or '{' is never parsed as spintax; then spintax
-- groups are resolved innermost first; then the values are put in.
CREATE OR REPLACE FUNCTION _park_fields(p_template text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT regexp_replace(regexp_replace(p_template, '\{\s*name\s*\}', U&'\E000', 'gi'), '\{\s*phone\s*\}', U&'\E001', 'gi')
$$;
COMMENT ON FUNCTION _park_fields(text) IS
  'A template with its {name} and {phone} fields (case-insensitive, inner spaces allowed) parked as private-use characters.';

CREATE OR REPLACE FUNCTION _fill_fields(p_parked text, p_name text, p_phone text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT replace(replace(p_parked, U&'\E000', coalesce(nullif(btrim(p_name), ''), 'Customer')), U&'\E001', coalesce(p_phone, ''))
$$;
COMMENT ON FUNCTION _fill_fields(text, text, text) IS
  'Puts the values into a template''s parked fields ("Customer" for an empty name).';

-- A bulk enqueuer renders one template for many leads: without spintax there is nothing random,
-- so the fields are parked once (_message_template) and each row only fills them (_fill_fields);
-- regular expressions per row were a third of a campaign fan-out's time.
CREATE OR REPLACE FUNCTION _message_template(p_template text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN strpos(p_template, '|') = 0 THEN _park_fields(p_template) END
$$;
COMMENT ON FUNCTION _message_template(text) IS
  'The template parked once for _fill_fields when it has no spintax; NULL when each message needs render_message.';

CREATE OR REPLACE FUNCTION render_message(p_template text, p_name text, p_phone text)
RETURNS text LANGUAGE plpgsql VOLATILE PARALLEL SAFE AS $$
DECLARE
  v_text   text := p_template;
  v_group  text;
  v_pick   text[];
  v_at     integer;
BEGIN
  IF v_text IS NULL OR strpos(v_text, '{') = 0 THEN
    RETURN v_text;
  END IF;
  v_text := _park_fields(v_text);
  LOOP
    v_group := (regexp_match(v_text, '\{[^{}]*\|[^{}]*\}'))[1];
    EXIT WHEN v_group IS NULL;
    v_pick := string_to_array(substr(v_group, 2, length(v_group) - 2), '|');
    v_at := strpos(v_text, v_group);  -- the leftmost occurrence is the regex's match
    v_text := overlay(v_text PLACING v_pick[1 + floor(random() * cardinality(v_pick))::int]
                      FROM v_at FOR length(v_group));
  END LOOP;
  RETURN _fill_fields(v_text, p_name, p_phone);
END $$;
COMMENT ON FUNCTION render_message(text, text, text) IS
  'The text to store on a queued message: {name} (case-insensitive; "Customer" when the name is empty) and '
  '{phone} are filled first, then spintax {a|b|c} (nested allowed) picks one option per group at random. '
  'Field values are never read as spintax. Call it in the INSERT that queues the row.';

-- Wake-ups ----------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION notify_dispatch() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  PERFORM pg_notify('wa_dispatch', '');
  RETURN NULL;
END $$;
COMMENT ON FUNCTION notify_dispatch() IS
  'Statement trigger: wakes the senders (channel wa_dispatch) once per statement that queued or released work.';

-- Fired by the broadcast_messages triggers (db/functions/triggers_broadcast_messages.sql).

-- Statistics after bulk enqueues ------------------------------------------------------------
-- The claim's plan is cached and built from the table's statistics. A queue that was nearly empty
-- at the last ANALYZE and then takes a campaign of 100k+ rows gets plans for a tiny table until
-- autovacuum catches up (measured: 2k msgs/s instead of 25k for the first minute; with a tiny
-- table every way to read it costs the same, so the cached plan may probe the claimed rows by a
-- full scan of the queue each). The one writer of new rows (_enqueue_messages) calls this in the
-- transaction that queued them, before it commits (ANALYZE counts the transaction's own rows): the
-- statistics and the rows become visible together, for fan-out chunks, step activations, AI
-- spreads and retries alike. Called after the commit, the senders the rows woke claimed first with
-- the plan for an empty queue -- a nested loop over every due row, 20 s per claim of 1,000 with
-- 100k due.
-- The queue's size now is its live rows as the statistics system counts them (committed work of
-- every session) plus the caller's own p_added: many small batches (a soak's campaigns of a few
-- hundred leads each) grow it as surely as one big one. A session flushes its counts at most once a
-- second and, when idle, up to 10 s later: each batch asks for its own to be flushed at its commit.
-- Batches committing together still miss each other: the claim, which sees the due rows
-- themselves, checks too (_analyze_queue_if_grown with the rows it saw).
CREATE OR REPLACE FUNCTION _analyze_queue_if_grown(p_rows bigint, p_wait boolean)
RETURNS boolean LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_known real := (SELECT greatest(c.reltuples, 0) FROM pg_class c WHERE c.oid = 'message_queue'::regclass);
BEGIN
  IF p_rows < 1000 OR p_rows <= 1.5 * v_known THEN
    RETURN false;
  END IF;
  -- Whoever holds this lock is analyzing or vacuuming the queue, which refreshes its statistics: a
  -- claim never waits behind them. The writer does while the statistics describe a nearly empty
  -- queue (under 10,000 rows), so its rows' statistics commit with them: plans built for a tiny
  -- table are the bad ones, and vacuuming one is quick. Past that it would wait behind a vacuum of
  -- a large queue, which gives way only when the deadlock check cancels it, after deadlock_timeout
  -- (1 s): a fan-out chunk stalled a second and the vacuum's work thrown away (bench_fanout --quick
  -- under a busy sender pool: 1 s of a 4.3 s fan-out waiting on autovacuum).
  IF NOT (p_wait AND v_known < 10000) THEN
    BEGIN
      LOCK TABLE message_queue IN SHARE UPDATE EXCLUSIVE MODE NOWAIT;
    EXCEPTION WHEN lock_not_available THEN
      RETURN false;
    END;
  END IF;
  ANALYZE message_queue;
  RETURN true;
END $$;
COMMENT ON FUNCTION _analyze_queue_if_grown(bigint, boolean) IS
  'Re-analyzes message_queue (the live partition) when it holds p_rows rows by the caller''s count, at least 1,000 and '
  'half again as many as at its last ANALYZE; not when another session is analyzing or vacuuming it, unless p_wait and '
  'the statistics describe fewer than 10,000 rows. '
  'Cached plans of this session are rebuilt at once, those of others when the caller commits. Returns whether it analyzed.';

CREATE OR REPLACE FUNCTION refresh_queue_stats(p_added bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF p_added <= 0 THEN
    RETURN false;
  END IF;
  PERFORM pg_stat_force_next_flush();   -- these rows counted for the next writer as soon as they commit
  RETURN _analyze_queue_if_grown(coalesce(pg_stat_get_live_tuples('message_queue'::regclass), 0) + p_added, true);
END $$;
COMMENT ON FUNCTION refresh_queue_stats(bigint) IS
  'Re-analyzes message_queue (the live partition) when, with p_added just-queued rows, it has grown by half since its '
  'last ANALYZE (_analyze_queue_if_grown), so cached claim plans are rebuilt for its real size. Called by '
  '_enqueue_messages before the transaction that queued them commits; behind a vacuum or analyze at work it waits only '
  'while the statistics describe a nearly empty queue. Returns whether it analyzed.';

-- Claim -------------------------------------------------------------------------------------
-- One statement: for each device this sender leases (online, pacing due, with due work), in
-- order of its next allowed send time (a round robin under zero delays), take the rows pacing
-- and caps allow now. Row 1 goes at now(); a later row only if the random delays before it
-- sum to zero, so with real delays that is one row per device per claim. Caps: the trailing hour
-- from the device's minute ring (whole minutes from the minute an hour ago: never less than the
-- true rolling hour), the day from day_count (both on its pacing row, moved by the claim itself).
-- PL/pgSQL so the statement's plan is cached (see plan_cache_mode below).
CREATE OR REPLACE FUNCTION claim_messages(p_sender_id text, p_limit integer, p_per_device integer DEFAULT 100,
                                          p_begin integer DEFAULT 0)
RETURNS TABLE (id bigint, device_id bigint, user_id bigint, recipient_phone text, recipient_name text,
               message_type text, content text, media_url text, claimed_at timestamptz)
LANGUAGE plpgsql VOLATILE
-- The generic plan is as good here (the sender id does not change the best plan) and planning
-- the statement costs ~1.5 ms, more than running it: never re-plan per call.
SET plan_cache_mode = force_generic_plan
-- Every table here is read by key or in an index's order (the due rows by time, a device's first due
-- rows, a claimed row, a device's pacing): right at any size, while a plan cached on a nearly empty
-- queue would keep the sequential scans that suited it until the next ANALYZE (a claim of 300 rows
-- after 30,000 arrived: 5.5 s and 27M rows read), and a bitmap scan reads all of a device's due
-- rows to sort them instead of its first few.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
  v_due     bigint[];
  v_ready   bigint[];
  v_devices bigint[];
  v_claimed claimed_message[];
BEGIN
  -- Which devices may have due work, found the cheap way for the load at hand (a fixed plan shape
  -- either way, so a plan cached when the queue was empty stays right when it holds a million):
  -- few due rows -> their devices; many -> the devices whose next send is due (the per-device
  -- lookup below finds nothing for those without).
  v_due := ARRAY(SELECT m.device_id FROM broadcast_messages m
                  WHERE m.status = 'pending' AND NOT m.held AND m.scheduled_at <= now()
                  ORDER BY m.scheduled_at   -- read off the due_at index, never past held or later rows
                  LIMIT 5001);
  -- Not a probe of message_queue_due per leased device: with 1,550 devices an idle claim cost
  -- 1.5 ms instead of 0.13, and 11 ms instead of 0.35 over a drained queue (migration 2105).
  IF cardinality(v_due) = 0 THEN
    RETURN;
  END IF;
  -- Due rows the statistics do not know of yet (batches committed in the same second): analyzed
  -- now, so the statement below is planned for them.
  PERFORM _analyze_queue_if_grown(cardinality(v_due), false);
  -- The devices to look at, then those of them this sender leases (by key), or, none said, every
  -- device it leases. Many due rows: the devices whose next send is due. In a paced fleet most of
  -- a sender's wait out their delays (1,500 leased, ~20 ready: 2.6 ms of a claim's ~8 went to
  -- probing every one's pacing, on nearly every result), so up to 250 ready ones (every
  -- sender's) are read off the pacing's time index (migration 2137). More than that (nothing
  -- paced: zero delays, a fleet's first claims; or many idle devices, which stay ready): every
  -- leased device, as the statement below checks each one's pacing anyway.
  IF cardinality(v_due) <= 5000 THEN
    v_devices := ARRAY(SELECT DISTINCT x FROM unnest(v_due) x);
  ELSE
    v_ready := ARRAY(SELECT p.device_id FROM device_pacing p WHERE p.next_send_at <= now()
                      ORDER BY p.next_send_at LIMIT 251);
    v_devices := CASE WHEN cardinality(v_ready) <= 250 THEN v_ready END;
  END IF;
  IF v_devices IS NULL THEN
    v_devices := ARRAY(SELECT l.device_id FROM device_leases l
                        WHERE l.sender_id = p_sender_id AND l.expires_at > now());
  ELSE
    v_devices := ARRAY(SELECT l.device_id FROM device_leases l
                        WHERE l.device_id = ANY (v_devices) AND l.sender_id = p_sender_id AND l.expires_at > now());
  END IF;
-- A pending row a concurrent cancel or skip just moved to message_history makes the lock fail
-- (serialization_failure) even under SKIP LOCKED: the claim is taken again, without that row. Its
-- rows are collected and returned once it succeeded: a RETURN QUERY keeps the rows a failed attempt
-- had already produced, and the sender sent those twice.
LOOP
  BEGIN
    WITH dev AS (
      SELECT p.device_id, last_hour.sent AS hour_base, p.day_start, p.day_count,
             d.hourly_limit, lim.daily_cap AS daily_limit, d.daily_limit AS limit_set, lim.cold_ok,
             d.min_delay_seconds AS dev_min, d.max_delay_seconds AS dev_max,
             date_trunc('day', now() AT TIME ZONE u.timezone) AT TIME ZONE u.timezone AS today, u.timezone
        FROM unnest(v_devices) AS leased(device_id)   -- this sender's leases, read above
        JOIN user_devices d ON d.id = leased.device_id
        JOIN users u ON u.id = d.user_id
        JOIN device_pacing p ON p.device_id = leased.device_id
        -- warm-up's daily cap, the reach-out timelock and the cold share (db/functions/device_load.sql)
        CROSS JOIN LATERAL _device_send_limits(d.daily_limit, d.warmup_started_at, d.timelocked_until, u.timezone,
                                               p.cold_day, p.cold_count) lim
        -- its trailing hour, exactly as the cap counts it (an expression: no read)
        CROSS JOIN LATERAL (SELECT _sends_last_hour(p.sends_total, p.sends_before, p.sends_minute) AS sent) last_hour
       WHERE d.status = 'online' AND d.paused_at IS NULL  -- a paused device keeps its connection, sends nothing
         AND p.next_send_at <= now()
         AND last_hour.sent < d.hourly_limit   -- its hour full: passed by until a send of it leaves the hour
         -- passed by while its day stays full for its limit, or while it still cannot reach new
         -- contacts (passed_by below)
         AND NOT (coalesce(p.day_full_until > now(), false) AND p.day_full_limit >= d.daily_limit)
         AND NOT (coalesce(p.warm_none_until > now(), false) AND NOT lim.cold_ok)
       ORDER BY p.next_send_at, p.device_id
    ),
    counted AS (
      SELECT dev.*, CASE WHEN dev.day_start = dev.today THEN dev.day_count ELSE 0 END AS day_base FROM dev
    ),
    room AS (
      SELECT c.*, c.day_start = c.today AND c.day_base >= c.daily_limit AS day_full,
             greatest(0, least(p_per_device, c.hourly_limit - c.hour_base, c.daily_limit - c.day_base)) AS allowed
        FROM counted c
    ),
    cand AS MATERIALIZED (
      SELECT r.device_id, r.today, c.id, c.delay
        FROM room r
        CROSS JOIN LATERAL (
          SELECT w.id, w.delay FROM (
            SELECT b.id, b.delay,
                   coalesce(sum(b.delay) OVER (ORDER BY b.scheduled_at, b.id
                                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
              FROM (SELECT m.id, m.scheduled_at,
                           lo + random() * (greatest(hi, lo) - lo) AS delay
                      FROM broadcast_messages m,
                           LATERAL (SELECT coalesce(m.min_delay_seconds, r.dev_min) AS lo,
                                           coalesce(m.max_delay_seconds, r.dev_max) AS hi) bounds
                     WHERE m.device_id = r.device_id AND m.status = 'pending' AND NOT m.held
                       AND m.scheduled_at <= now()
                       -- a probe of the chat's key per row, never a hash or index scan of every warm
                       -- contact (_record_send_outcomes says why)
                       AND (r.cold_ok OR (SELECT w.talked_at FROM chats w
                                           WHERE w.device_id = m.device_id
                                             AND w.chat_jid = m.recipient_phone || '@s.whatsapp.net') IS NOT NULL)
                     ORDER BY m.scheduled_at, m.id
                     LIMIT r.allowed) b
          ) w
          WHERE w.before = 0
        ) c
       LIMIT p_limit
    ),
    -- Devices the next claims can pass by for a while, rather than walk again each time (a sender
    -- leasing 1,500 of them: 88 ms a claim for 100 cold rows each, against 3.4 ms when they are
    -- paced past now; full days with 30k rows due: 24 ms, 12 ms passed by, 7.5 ms paced past now;
    -- a full hour needs no mark: dev reads it off the ring). The marks hold only while what set
    -- them holds (the filter in dev), so a raised limit, a lifted timelock or a new day frees the
    -- device at once; only the claim writes them:
    -- - its day full (at the daily cap of today, warm-up's included): until the owner's next midnight
    --   (device_pacing.day_full_until), while its daily_limit is no higher (day_full_limit); a raised
    --   warm-up setting, or a new zone of the owner, counts from that midnight;
    -- - unable to reach new contacts, read to its last due row (cand did not stop at p_limit), and
    --   none of them to a contact it talked with: for 5 seconds (device_pacing.warm_none_until). Not
    --   longer: a message to a warm contact, or a contact who writes, waits that much at most (a
    --   device's own delay between two sends is 30-60 s by default); and not cleared by writers,
    --   whose rows a claim running meanwhile may not see.
    -- Rows another transaction holds are left unmarked: a claim never waits.
    passed_by AS (
      SELECT q.device_id, r.day_full, r.limit_set,
             (date_trunc('day', now() AT TIME ZONE r.timezone) + interval '1 day') AT TIME ZONE r.timezone AS tomorrow
        FROM room r JOIN device_pacing q ON q.device_id = r.device_id
       WHERE r.day_full
          OR (NOT r.cold_ok AND r.allowed > 0 AND (SELECT count(*) FROM cand) < p_limit
              AND r.device_id <> ALL (ARRAY(SELECT DISTINCT c.device_id FROM cand c)))
         FOR UPDATE OF q SKIP LOCKED
    ),
    passing AS (
      UPDATE device_pacing p
         SET day_full_until  = CASE WHEN b.day_full THEN b.tomorrow ELSE p.day_full_until END,
             day_full_limit  = CASE WHEN b.day_full THEN b.limit_set ELSE p.day_full_limit END,
             warm_none_until = CASE WHEN b.day_full THEN p.warm_none_until ELSE now() + make_interval(secs => 5) END
        FROM passed_by b WHERE p.device_id = b.device_id
    ),
    -- Joins between these CTEs always go from one CTE into a table's primary key, never CTE to CTE:
    -- the cached plan cannot know their sizes, and a CTE-to-CTE nested loop is quadratic (passed_by
    -- compares with cand's devices as one array, read once).
    -- Locking the pacing row with each message row (SKIP LOCKED on both) keeps two senders from
    -- pacing one device twice; the re-check of next_send_at happens on the locked row.
    locked AS (
      SELECT m.id, c.device_id, c.delay, c.today
        FROM cand c
        JOIN message_queue m ON m.id = c.id
        JOIN device_pacing p ON p.device_id = c.device_id
       WHERE m.status = 'pending' AND NOT m.held AND p.next_send_at <= now()
       FOR UPDATE OF m, p SKIP LOCKED
    ),
    -- The queue partition itself, not broadcast_messages: pending and queued count alike in every
    -- rollup (campaign_counts' pending, the sequences' in_flight; outcomes count settled rows only),
    -- so the statement triggers on broadcast_messages would copy each row twice into their
    -- transition tables and run four times for deltas that cancel out (guarded by
    -- tests/test_dispatch_sql.py::test_a_claim_changes_nothing_the_rollups_count).
    claimed AS (
      UPDATE message_queue m
         SET status = 'queued', claimed_at = now(), claimed_by = p_sender_id
        FROM locked WHERE m.id = locked.id
         AND m.status = 'pending'   -- re-checked on the row's latest version: never a row claimed twice
      RETURNING m.id, m.device_id, m.user_id, m.recipient_phone, m.recipient_name, m.message_type,
                m.content, m.media_url, m.claimed_at,
                locked.delay, locked.today
    ),
    per_dev AS (
      SELECT c.device_id, count(*)::int AS k, sum(c.delay) AS total_delay, max(c.today) AS today
        FROM claimed c
       GROUP BY c.device_id
    ),
    paced AS (
      UPDATE device_pacing p
         SET next_send_at    = now() + make_interval(secs => d.total_delay),
             day_count       = CASE WHEN p.day_start = d.today THEN p.day_count ELSE 0 END + d.k,
             day_start       = d.today,
             -- the rings (device_load.sql): the trailing hour's sends for the hourly cap and
             -- device_load, two days' for the health score
             sends_before    = _send_ring_add(p.sends_before, p.sends_minute, p.sends_total, now(), d.k,
                                              interval '1 minute', 61),
             sends_before_hours = _send_ring_add(p.sends_before_hours, p.sends_hour, p.sends_total, now(), d.k,
                                                 interval '1 hour', 49),
             sends_total     = p.sends_total + d.k,
             sends_minute    = greatest(p.sends_minute, date_trunc('minute', now())),
             sends_hour      = greatest(p.sends_hour, date_trunc('hour', now(), 'UTC'))
        FROM per_dev d WHERE p.device_id = d.device_id
    )
    SELECT array_agg(ROW(claimed.id, claimed.device_id, claimed.user_id, claimed.recipient_phone,
                         claimed.recipient_name, claimed.message_type, claimed.content, claimed.media_url,
                         claimed.claimed_at)::claimed_message)
      INTO v_claimed FROM claimed;
    EXIT;
  EXCEPTION WHEN serialization_failure THEN
  END;
END LOOP;
-- The sender begins the first p_begin device groups at once (sender_may_begin, marked here rather
-- than in a round trip of its own before an idle sender's first send). A claim commits only for a
-- sender not given up: the give-up updates the same row, so it either comes first and the claim is
-- undone, or waits for the claim and takes back its rows past the mark.
IF cardinality(v_claimed) > 0
   AND NOT sender_may_begin(p_sender_id, CASE WHEN p_begin > 0 THEN now() END,
                            (SELECT max(g.device_id)   -- NULL for p_begin 0: the mark stays
                               FROM (SELECT DISTINCT c.device_id FROM unnest(v_claimed) c ORDER BY 1 LIMIT p_begin) g)) THEN
  RAISE EXCEPTION 'sender % was given up when its leases lapsed: it must not send again', p_sender_id
        USING ERRCODE = '55000';
END IF;
RETURN QUERY SELECT c.* FROM unnest(v_claimed) c;
END $$;
COMMENT ON FUNCTION claim_messages(text, integer, integer, integer) IS
  'Claims up to p_limit due messages (status pending -> queued) for the online, unpaused devices leased by p_sender_id, '
  'at most p_per_device per device and only what pacing (random min..max delay between sends) and the '
  'hourly (rolling 60 min) and daily (owner''s calendar day; lower during warm-up) caps allow now, and while a '
  'reach-out timelock lasts, or once its cold share of the day is sent, only messages to warm contacts. Rows and pacing rows are taken '
  'with SKIP LOCKED, so concurrent senders never claim a row twice. Marks the first p_begin of its devices (in id '
  'order) as begun, as sender_may_begin does (raises 55000 for a sender given up). Returns what to send.';

-- Planned on a tiny queue, every read of each leased device's first due row costs about the
-- same: planned so, it became a sequential scan per device, or a walk of the
-- time-ordered due index filtered by device and then sorted -- 1,550 walks per call, each over
-- every due row, of a queue a big batch may be filling meanwhile (auto_explain in bench_dispatch:
-- both senders 94 s in one call at the start of a 1M drain, claiming nothing; 6 of 9 full runs
-- drained 1M in 120-226 s instead of 44-60 s). Only the device's due index gives the rows in the
-- order asked without a sort: with scans and sorts off, one probe of it per device at any size.
-- That plan is kept for the session (as a SQL function with these settings it was planned on
-- every call: 0.7 ms of each idle sender's 4.4 in the soak).
CREATE OR REPLACE FUNCTION next_dispatch_at(p_sender_id text)
RETURNS timestamptz LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_incremental_sort = off
-- probes by key, never a hash or merge of every device's or pacing row
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_devices bigint[]; v_times timestamptz[];
BEGIN
  -- Asked by every sender after each claim that found nothing, so on every wake-up of an idle fleet
  -- (any insert anywhere wakes them all). Few rows waiting: read from them (the time-ordered due
  -- index), their devices looked up by key. The per-device walk below, for a sender leasing 1,500
  -- devices: 6.4 ms a call over an empty queue, 3.3 ms with 3 rows waiting (0.5 and 0.4 ms now).
  SELECT array_agg(w.device_id), array_agg(w.scheduled_at) INTO v_devices, v_times
    FROM (SELECT m.device_id, m.scheduled_at FROM broadcast_messages m
           WHERE m.status = 'pending' AND NOT m.held ORDER BY m.scheduled_at LIMIT 5001) w;
  IF v_devices IS NULL THEN
    RETURN NULL;
  ELSIF cardinality(v_devices) <= 5000 THEN
    RETURN (
      SELECT min(greatest(p.next_send_at, w.scheduled_at))
        FROM unnest(v_devices, v_times) AS w(device_id, scheduled_at)
        JOIN device_leases l ON l.device_id = w.device_id AND l.sender_id = p_sender_id AND l.expires_at > now()
        JOIN user_devices d ON d.id = w.device_id AND d.status = 'online' AND d.paused_at IS NULL
        JOIN device_pacing p ON p.device_id = w.device_id);
  END IF;
  -- Many waiting: a probe of each leased device's first due row.
  RETURN (
    SELECT min(greatest(p.next_send_at, first_due.scheduled_at))
      FROM device_leases l
      JOIN user_devices d ON d.id = l.device_id AND d.status = 'online' AND d.paused_at IS NULL
      JOIN device_pacing p ON p.device_id = l.device_id
      CROSS JOIN LATERAL (SELECT m.scheduled_at FROM broadcast_messages m
                           WHERE m.device_id = l.device_id AND m.status = 'pending' AND NOT m.held
                           ORDER BY m.scheduled_at, m.id LIMIT 1) first_due
     WHERE l.sender_id = p_sender_id AND l.expires_at > now());
END $$;
COMMENT ON FUNCTION next_dispatch_at(text) IS
  'Earliest time a device leased by p_sender_id may send its next pending message (pacing and schedule; '
  'caps excluded), or NULL when it has none: how long an idle sender may sleep. Reads the waiting rows when '
  'up to 5,000 wait, else each leased device''s first due row.';

-- Complete and fail -------------------------------------------------------------------------
-- What completion and failure share: queued rows of this sender settle as p_status with, per id,
-- its WhatsApp id (sent) or its error (failed).
CREATE OR REPLACE FUNCTION _settle_claimed(p_sender_id text, p_ids bigint[], p_status text, p_values text[])
RETURNS broadcast_messages[]
LANGUAGE plpgsql
-- The rows are found by id alone and each one's value looked up by id in a map: no join whose plan
-- hangs on how many rows statistics say are queued (taken when the queue was idle they say none,
-- and a join of the ids with the queue became a nested loop, quadratic in the batch: 10x slower
-- completions). Its one plan, a probe of the queue's primary key per id, is right at any size: kept
-- for the session rather than planned per call (0.55 ms of a 20-row completion's 2.5), and never a
-- sequential scan, which a plan cached while the queue was nearly empty would keep.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
  v_values jsonb;
  v_rows broadcast_messages[];
  v_ids bigint[]; v_users bigint[]; v_devices bigint[]; v_campaigns bigint[];
BEGIN
  IF cardinality(p_ids) IS DISTINCT FROM cardinality(p_values) THEN
    RAISE EXCEPTION '% ids but % %', cardinality(p_ids), cardinality(p_values),
      CASE p_status WHEN 'sent' THEN 'WhatsApp message ids' ELSE 'errors' END USING ERRCODE = '22023';
  END IF;
  v_values := jsonb_object(p_ids::text[], p_values);
  LOOP
    BEGIN
      WITH settled AS (
        UPDATE broadcast_messages m
           SET status = p_status,
               sent_at = CASE WHEN p_status = 'sent' THEN now() END,
               wa_message_id = CASE WHEN p_status = 'sent' THEN v_values ->> m.id::text END,
               failed_at = CASE WHEN p_status = 'failed' THEN now() END,
               error_message = CASE WHEN p_status = 'failed'
                                    THEN coalesce(nullif(v_values ->> m.id::text, ''), 'send failed') END
         -- Queued, written as "live and claimed" (the same rows: broadcast_messages_pending_is_unclaimed):
         -- with status = 'queued' the planner may read the in-flight index whole instead, its predicate
         -- met and its statistics taken while nothing was in flight -- every queued row of every sender
         -- fetched and compared with every id, per call (a pool has up to 8,000 in flight).
         WHERE m.id = ANY (p_ids) AND m.status IN ('pending', 'queued') AND m.claimed_at IS NOT NULL
           AND m.claimed_by = p_sender_id
        RETURNING m.*)
      SELECT array_agg(s::broadcast_messages), array_agg(s.id), array_agg(s.user_id), array_agg(s.device_id),
             array_agg(s.campaign_id)
        INTO v_rows, v_ids, v_users, v_devices, v_campaigns FROM settled s;
      EXIT;
    EXCEPTION WHEN serialization_failure THEN
      -- One of the rows was settled (moved to message_history) by recover_stuck meanwhile: it is no
      -- longer queued, so running the statement again leaves it alone.
    END;
  END LOOP;
  PERFORM _notify_queue_changes(p_status, v_ids, v_users, v_devices, v_campaigns);
  RETURN coalesce(v_rows, '{}');
END $$;
COMMENT ON FUNCTION _settle_claimed(text, bigint[], text, text[]) IS
  'Settles the messages of p_ids this sender claimed (still queued by p_sender_id) as sent (p_values: their WhatsApp '
  'ids) or failed (p_values: their errors) and pushes the change live; returns the rows as settled, so the '
  'bookkeeping after it never reads them again.';

CREATE OR REPLACE FUNCTION complete_messages(p_sender_id text, p_ids bigint[], p_wa_message_ids text[])
RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_rows broadcast_messages[];
BEGIN
  v_rows := _settle_claimed(p_sender_id, p_ids, 'sent', p_wa_message_ids);
  UPDATE device_pacing p SET last_sent_at = now()
   WHERE p.device_id IN (SELECT DISTINCT m.device_id FROM unnest(v_rows) m);
  -- self-pause and cold share counts (deliverability family), before the chats make the recipients warm
  PERFORM _record_send_outcomes(v_rows, false);
  PERFORM _record_outbound_chats(v_rows);  -- the recipients' chats show the send (chats family)
  IF EXISTS (SELECT 1 FROM early_receipts) THEN   -- receipts that overtook this completion
    PERFORM _apply_early_receipts(v_rows);
  END IF;
  RETURN cardinality(v_rows);
END $$;
COMMENT ON FUNCTION complete_messages(text, bigint[], text[]) IS
  'Marks messages this sender claimed as sent (queued -> sent) with their WhatsApp ids. Guarded: rows '
  'not queued by p_sender_id (already failed as stuck, say) are left alone. Pushes one message_status (and '
  'campaign_progress) event per owner for the whole batch, then applies receipts that arrived before it '
  '(early_receipts). Returns how many changed.';

CREATE OR REPLACE FUNCTION fail_messages(p_sender_id text, p_ids bigint[], p_errors text[])
RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_rows broadcast_messages[];
BEGIN
  v_rows := _settle_claimed(p_sender_id, p_ids, 'failed', p_errors);
  PERFORM _record_send_outcomes(v_rows, true);   -- may self-pause the device (deliverability family)
  RETURN cardinality(v_rows);
END $$;
COMMENT ON FUNCTION fail_messages(text, bigint[], text[]) IS
  'Marks messages this sender claimed as failed (queued -> failed) with their errors. Guarded like '
  'complete_messages, pushed live the same way; a failed message is never re-sent by the queue. Too many '
  'failures in a row self-pause the device (_record_send_outcomes; errors starting "undeliverable: " or '
  '"reach-out timelock (error 463)" do not count). Returns how many changed.';

CREATE OR REPLACE FUNCTION release_messages(p_sender_id text, p_ids bigint[], p_retry_after interval DEFAULT '5 seconds')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_done integer;
BEGIN
  WITH back AS (
    UPDATE broadcast_messages m
       SET status = 'pending', claimed_at = NULL, claimed_by = NULL
     -- queued, written as _settle_claimed writes it (which says why)
     WHERE m.id = ANY (p_ids) AND m.status IN ('pending', 'queued') AND m.claimed_at IS NOT NULL
       AND m.claimed_by = p_sender_id
    RETURNING m.device_id
  ), later AS (
    -- The device's status may lag its connection by a moment: do not spin on it. Nothing to hold
    -- for a release without a wait (what a sender never began): its pacing rows are not locked,
    -- which the completions of the sender that took the devices over are updating.
    UPDATE device_pacing p SET next_send_at = greatest(p.next_send_at, now() + p_retry_after)
     WHERE p_retry_after > interval '0' AND p.device_id IN (SELECT back.device_id FROM back)
  )
  SELECT count(*) INTO v_done FROM back;
  RETURN v_done;
END $$;
COMMENT ON FUNCTION release_messages(text, bigint[], interval) IS
  'Puts messages this sender claimed but certainly did not send (the device was not connected, or it never began '
  'them) back to pending, and holds their devices for p_retry_after (none for 0). Only for sends that never left; '
  'anything uncertain is failed instead (at most once). Returns how many went back.';

-- At most once: stuck and undeliverable rows ------------------------------------------------
CREATE OR REPLACE FUNCTION recover_stuck(p_timeout interval DEFAULT make_interval(secs => setting('stuck_timeout_seconds')))
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_ids bigint[]; v_users bigint[]; v_devices bigint[]; v_campaigns bigint[];
BEGIN
  PERFORM give_up_silent_senders();   -- what a dead sender never began goes back first
  -- Rows a sender is completing right now are skipped (settling them would race its move to
  -- message_history); the next sweep takes them if that sender's transaction rolls back.
  WITH stuck AS (
    UPDATE broadcast_messages m
       SET status = 'failed', failed_at = now(), error_message = 'stuck: sender vanished'
     WHERE m.status = 'queued' AND m.id IN (SELECT q.id FROM message_queue q
                                             WHERE q.status = 'queued' AND q.claimed_at < now() - p_timeout
                                               FOR UPDATE SKIP LOCKED)
    RETURNING m.id, m.user_id, m.device_id, m.campaign_id)
  SELECT array_agg(s.id), array_agg(s.user_id), array_agg(s.device_id), array_agg(s.campaign_id)
    INTO v_ids, v_users, v_devices, v_campaigns FROM stuck s;
  PERFORM _notify_queue_changes('failed', v_ids, v_users, v_devices, v_campaigns);
  RETURN coalesce(cardinality(v_ids), 0);
END $$;
COMMENT ON FUNCTION recover_stuck(interval) IS
  'Fails messages claimed more than p_timeout ago and never completed (their sender died mid-send), pushed live '
  'like any failure. They are never re-queued: whether WhatsApp got them is unknown, and a message is sent at most once. '
  'First returns to the queue what senders silent past their lease had claimed and not begun (give_up_silent_senders).';

CREATE OR REPLACE FUNCTION skip_undeliverable(p_offline_grace interval DEFAULT '30 minutes')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_done integer := 0;
        s record;
BEGIN
  PERFORM _failover_messages(p_offline_grace);   -- first, what may go from another device (queue_failover.sql)
  FOR s IN
    WITH reason AS (
      SELECT d.id AS device_id,
             CASE WHEN d.status = 'logged_out' THEN 'device_logged_out'
                  WHEN d.status = 'banned' AND d.banned_until IS NULL THEN 'device_banned'
                  WHEN d.status = 'banned' AND d.banned_until < now() - p_offline_grace THEN 'device_ban_not_lifted'
                  WHEN d.status IN ('offline', 'connecting') AND d.status_changed_at < now() - p_offline_grace
                    THEN 'device_offline'
             END::skip_reason AS why
        FROM user_devices d
       WHERE d.status <> 'online')
    SELECT x.why, array_agg(x.id) AS ids
      FROM (SELECT r.why, m.id
              FROM reason r JOIN broadcast_messages m ON m.device_id = r.device_id
             WHERE r.why IS NOT NULL AND m.status = 'pending' AND NOT m.held AND m.scheduled_at <= now()
            UNION ALL
            SELECT 'device_deleted', m.id
              FROM broadcast_messages m
             WHERE m.device_id IS NULL AND m.status = 'pending' AND NOT m.held AND m.scheduled_at <= now()) x
     GROUP BY x.why
  LOOP
    v_done := v_done + _skip_messages(s.ids, s.why, p_offline_grace::text);
  END LOOP;
  RETURN v_done;
END $$;
COMMENT ON FUNCTION skip_undeliverable(interval) IS
  'Skips due pending messages that cannot go out: device logged out, banned without end (or still banned '
  'p_offline_grace after its ban ended), deleted, or offline/connecting for longer than p_offline_grace. '
  'A temporary ban or a brief disconnect only delays them. Messages whose campaign or sequence has failover on '
  'first move to another device where they can (_failover_messages). Returns how many were skipped.';
