-- How loaded each device is, computed once, here: the engine's device choices (sequence steps in
-- activate_due_steps, AI campaigns in _ai_campaign_devices) and the monitor views
-- (device_load_balance, device_performance_monitor, db/views/10_dispatch.sql) all read device_load.
-- Views only show what these functions compute; no function reads a view.
--
-- Counts come from what the claim writes with each send it counts: device_load's from the device's
-- pacing row (the trailing hour from its minute ring, whole minutes from the minute an hour ago,
-- exactly what the hourly cap checks; the day from day_count, the count the daily cap is enforced
-- by, from the owner's local midnight), the two days of the health score's reply rate from its hour
-- ring. Plain SQL functions, so the planner inlines them and a filter on the caller's side (a
-- device, an owner) reaches the tables.

-- A device's rings (device_pacing sends_total; sends_minute and sends_before, migration 2138;
-- sends_hour and sends_before_hours, migration 2139, which say why): the claim moves them with the
-- sends it counts; the sends since a minute of the last hour, or an hour of the last two days, are
-- then one subtraction, where the send record's buckets cost a read of up to 31 minute rows a
-- device (3,000 devices: ~60 ms of each refresh of the monitoring page) and 49 hour rows (~180 ms
-- of the overview's health bands).
-- The snapshots after p_sends sends at p_at, the ring of steps p_step (its instants whole steps
-- since the epoch: UTC's minutes and hours) and at most p_len snapshots standing at p_head with
-- p_total sends counted; the caller adds p_sends to sends_total and moves the head to the later
-- step. An expression, so the claim inlines it (stable, not immutable: an interval added to a
-- timestamptz is, and an immutable body that is not would not be inlined): ~1.6 us a device a claim,
-- ~3.4 as a PL/pgSQL call (claims of one row a device on 1,000 devices). The claim counts at the
-- current step; an earlier one (tests record past sends in any order) is _send_ring_add_earlier's.
-- Seconds by date_part, a float: extract gives a numeric (the trailing hour's subtraction: 0.85
-- against 0.62 us an evaluation).
CREATE OR REPLACE FUNCTION _send_ring_add(p_before bigint[], p_head timestamptz, p_total bigint,
                                          p_at timestamptz, p_sends integer, p_step interval, p_len integer)
RETURNS bigint[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE
    -- none of the ring's steps is within the p_len before p_at's
    WHEN p_head IS NULL OR cardinality(p_before) = 0
         OR date_bin(p_step, p_at, timestamptz 'epoch') >= p_head + p_step * p_len
      THEN ARRAY[p_total]
    -- a later step: the steps since p_head saw no sends, p_total at the start of each
    WHEN date_bin(p_step, p_at, timestamptz 'epoch') > p_head
      THEN (array_fill(p_total, ARRAY[floor(date_part('epoch', date_bin(p_step, p_at, timestamptz 'epoch') - p_head)
                                            / date_part('epoch', p_step))::int])
            || p_before)[1:p_len]
    WHEN date_bin(p_step, p_at, timestamptz 'epoch') = p_head THEN p_before
    ELSE _send_ring_add_earlier(p_before, p_head, p_at, p_sends, p_step, p_len) END
$$;
COMMENT ON FUNCTION _send_ring_add(bigint[], timestamptz, bigint, timestamptz, integer, interval, integer) IS
  'A device''s ring of steps p_step after p_sends sends at p_at (device_pacing.sends_before for minutes, '
  'sends_before_hours for hours, from the ring at p_head with p_total sends counted): the running total at the '
  'start of each of the p_len steps up to the later of p_head and p_at''s step, newest first.';

CREATE OR REPLACE FUNCTION _send_ring_add_earlier(p_before bigint[], p_head timestamptz, p_at timestamptz,
                                                  p_sends integer, p_step interval, p_len integer)
RETURNS bigint[] LANGUAGE plpgsql STABLE PARALLEL SAFE
SET plan_cache_mode = force_generic_plan   -- reached from the claim (tests/test_catalog.py says why)
AS $$
DECLARE
  v_len integer := cardinality(p_before);
  v_idx integer := 1 + floor(date_part('epoch', p_head - date_bin(p_step, p_at, timestamptz 'epoch'))
                             / date_part('epoch', p_step))::int;  -- maybe past the ring
BEGIN
  IF v_idx <= p_len AND v_idx > v_len THEN   -- the steps back to p_at's saw no sends before these
    p_before := p_before || array_fill(p_before[v_len], ARRAY[v_idx - v_len]);
  END IF;
  RETURN ARRAY(SELECT b + CASE WHEN i < v_idx THEN p_sends ELSE 0 END
                 FROM unnest(p_before) WITH ORDINALITY AS u(b, i) ORDER BY i);
END $$;
COMMENT ON FUNCTION _send_ring_add_earlier(bigint[], timestamptz, timestamptz, integer, interval, integer) IS
  '_send_ring_add for p_sends sends at a step before the ring''s p_head: counted in the snapshots of the '
  'steps after it.';

-- Sends since p_from (whole steps from the first one at or after it; p_from within the ring's reach
-- before p_head): an expression, so callers inline it.
CREATE OR REPLACE FUNCTION _send_ring_since(p_total bigint, p_before bigint[], p_head timestamptz,
                                            p_from timestamptz, p_step interval)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_head IS NULL OR p_head < p_from THEN 0
              ELSE (p_total - p_before[least(cardinality(p_before),
                                             1 + floor(date_part('epoch', p_head - p_from)
                                                       / date_part('epoch', p_step))::int)])::int END
$$;
COMMENT ON FUNCTION _send_ring_since(bigint, bigint[], timestamptz, timestamptz, interval) IS
  'A device''s sends counted in the steps p_step at or after p_from, from one of its rings (device_pacing '
  'sends_total with sends_before and sends_minute, or sends_before_hours and sends_hour); p_from within the '
  'ring''s reach before its head.';

-- A device's sends in the trailing hour as its hourly cap counts them (whole minutes from the minute
-- an hour ago), defined once: the claim enforces the cap by it, device_load shows it.
CREATE OR REPLACE FUNCTION _sends_last_hour(p_total bigint, p_before bigint[], p_minute timestamptz)
RETURNS integer LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT _send_ring_since(p_total, p_before, p_minute, date_trunc('minute', now() - interval '1 hour'),
                          interval '1 minute')
$$;
COMMENT ON FUNCTION _sends_last_hour(bigint, bigint[], timestamptz) IS
  'A device''s sends in the trailing hour, whole minutes from the minute an hour ago (the hourly cap''s window), '
  'from its minute ring (device_pacing sends_total, sends_before, sends_minute).';

-- What a device may send today, defined once: the claim (claim_messages), device_load, failover and
-- the devices page read it. A newly paired number warms up: its daily cap ramps linearly from the
-- warmup_start_per_day setting to its own cap over warmup_days calendar days of its owner's zone.
-- Warm-up day 1 is the pairing day and the calendar day after it: a number paired a minute before
-- midnight would otherwise meet day 2's cap a minute after pairing (at the defaults and a cap of
-- 800: 20 + 75 sends, 10 + 38 of them to new contacts, within its first 24 hours, where WhatsApp
-- bans new numbers that reach out that fast: shared/notes/whatsapp-realities.md); so day k's cap
-- never applies before the number is k - 1 whole days old. Contacts the device never talked with
-- (cold) take at most the cold_share_max setting of that cap a day, and none while a reach-out
-- timelock (error 463) lasts.
-- Plain SQL over its arguments, so the planner inlines it into the claim.
CREATE OR REPLACE FUNCTION _device_send_limits(p_daily_limit integer, p_warmup_started_at timestamptz,
                                               p_timelocked_until timestamptz, p_timezone text,
                                               p_cold_day date DEFAULT NULL, p_cold_count integer DEFAULT 0)
RETURNS TABLE (daily_cap integer, warmup_day integer, warmup_days integer, timelocked boolean, cold_cap integer,
               cold_ok boolean)
LANGUAGE sql STABLE AS $$
  SELECT c.daily_cap, c.warmup_day, c.days, c.timelocked, c.cold_cap,
         NOT c.timelocked AND CASE WHEN p_cold_day = c.today THEN p_cold_count ELSE 0 END < c.cold_cap
    FROM (SELECT w.days, w.today, w.cap AS daily_cap, CASE WHEN w.day <= w.days THEN w.day END AS warmup_day,
                 coalesce(p_timelocked_until > now(), false) AS timelocked,
                 ceil(w.cap * (SELECT setting('cold_share_max')))::int AS cold_cap
            FROM (SELECT v.*, CASE WHEN v.day <= v.days
                                   THEN least(p_daily_limit, v.start + (p_daily_limit - v.start) * (v.day - 1) / v.days)
                                   ELSE p_daily_limit END AS cap
                    FROM (SELECT (SELECT setting('warmup_start_per_day'))::int AS start,
                                 (SELECT setting('warmup_days'))::int AS days,
                                 (now() AT TIME ZONE p_timezone)::date AS today,
                                 -- NULL without a pairing record (greatest would make it 1)
                                 CASE WHEN p_warmup_started_at IS NOT NULL
                                      THEN greatest(1, (now() AT TIME ZONE p_timezone)::date
                                                       - (p_warmup_started_at AT TIME ZONE p_timezone)::date) END AS day
                            ) v) w) c
$$;
COMMENT ON FUNCTION _device_send_limits(integer, timestamptz, timestamptz, text, date, integer) IS
  'A device''s limits today from its daily_limit, warmup_started_at, timelocked_until, its owner''s time zone and '
  'its cold sends (device_pacing cold_day, cold_count): daily_cap (during warm-up warmup_start_per_day + '
  '(daily_limit - warmup_start_per_day) x (day - 1) / warmup_days, never above daily_limit), warmup_day (1.., '
  'the pairing day and the calendar day after it both day 1; NULL when not warming up), warmup_days (the '
  'setting), timelocked (a reach-out timelock lasts), cold_cap '
  '(cold_share_max x daily_cap, rounded up) and cold_ok (may send to contacts it never talked with: not '
  'timelocked and under cold_cap today).';

CREATE OR REPLACE FUNCTION device_load(p_user_ids bigint[] DEFAULT NULL)
RETURNS TABLE (device_id bigint, user_id bigint, device_name text, device_status text, hourly_limit integer,
               daily_limit integer, messages_hour integer, messages_today integer, processing_now integer,
               is_available boolean, load_score numeric, last_sent_at timestamptz, updated_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT d.id, d.user_id, d.device_name, d.status, d.hourly_limit, d.daily_limit,
         counts.messages_hour, counts.messages_today, busy.processing_now,
         d.status = 'online' AND d.paused_at IS NULL
           AND counts.messages_hour < d.hourly_limit AND counts.messages_today < lim.daily_cap,
         counts.messages_hour * (SELECT setting('load_weight_sends_hour'))
           + busy.processing_now * (SELECT setting('load_weight_in_flight')),
         p.last_sent_at,
         greatest(d.status_changed_at, p.sends_minute)
    FROM user_devices d
    JOIN users u ON u.id = d.user_id
    LEFT JOIN device_pacing p ON p.device_id = d.id   -- every device has one (device_pacing_row); none counts nothing
    CROSS JOIN LATERAL _device_send_limits(d.daily_limit, d.warmup_started_at, d.timelocked_until, u.timezone) lim
    CROSS JOIN LATERAL (
      SELECT _sends_last_hour(p.sends_total, p.sends_before, p.sends_minute) AS messages_hour,
             -- as the claim counts the day (its daily cap): from the owner's midnight
             CASE WHEN p.day_start = date_trunc('day', now() AT TIME ZONE u.timezone) AT TIME ZONE u.timezone
                  THEN p.day_count ELSE 0 END AS messages_today
    ) counts
    CROSS JOIN LATERAL (
      SELECT count(*)::int AS processing_now FROM broadcast_messages m WHERE m.device_id = d.id AND m.status = 'queued'
    ) busy
   WHERE p_user_ids IS NULL OR d.user_id = ANY (p_user_ids)
$$;
COMMENT ON FUNCTION device_load(bigint[]) IS
  'Per device of the given owners (NULL: all): sends in the trailing hour (its minute ring, whole minutes as the '
  'hourly cap counts them) and in the owner''s calendar day (day_count, as the daily cap counts them) against its '
  'caps, messages being sent now (claimed, not '
  'completed), whether it can take more now (online, not paused, under the hourly cap and the day''s cap '
  'of _device_send_limits), its load score '
  '(settings load_weight_sends_hour x messages_hour + load_weight_in_flight x processing_now; lower is less '
  'loaded), its last completed send and when any of it last changed (its status, or its latest counted send).';

CREATE OR REPLACE FUNCTION _device_is_running(p_device_id bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM device_leases l JOIN senders s ON s.id = l.sender_id
                  WHERE l.device_id = p_device_id AND l.expires_at > now() AND NOT s.stopping)
$$;
COMMENT ON FUNCTION _device_is_running(bigint) IS 'True when a live sender holds the device''s lease (it can carry out commands).';

-- Device health for the devices page (device_page) and the view device_health: status, when last
-- seen, whether a sender runs it, and counts of what went wrong (device_events, failed sends).
CREATE OR REPLACE FUNCTION _device_health()
RETURNS TABLE (device_id bigint, user_id bigint, device_name text, phone text, jid text, status text,
               status_reason text, status_changed_at timestamptz, banned_until timestamptz, last_seen timestamptz,
               running boolean, silent boolean, disconnects_24h integer, reconnects_24h integer, bans_total integer,
               send_failures_24h integer, open_command text, created_at timestamptz, daily_cap integer,
               warmup_day integer, warmup_days integer, timelocked_until timestamptz, pause_reason text,
               health_score integer)
LANGUAGE sql STABLE AS $$
  SELECT d.id, d.user_id, d.device_name, d.phone, d.jid, d.status, d.status_reason,
         d.status_changed_at, d.banned_until, d.last_seen, run.running,
         d.status IN ('online', 'connecting') AND NOT run.running,
         ev.disconnects_24h, ev.reconnects_24h, ev.bans_total,
         (SELECT count(*)::int FROM broadcast_messages m
           WHERE m.device_id = d.id AND m.status = 'failed' AND m.failed_at > now() - interval '24 hours'),
         (SELECT c.command FROM device_commands c
           WHERE c.device_id = d.id AND c.status IN ('pending', 'taken') ORDER BY c.id DESC LIMIT 1),
         d.created_at, lim.daily_cap, lim.warmup_day, lim.warmup_days,
         CASE WHEN lim.timelocked THEN d.timelocked_until END, d.pause_reason,
         _health_score(bit_count(p.recent_outcomes)::numeric / nullif(length(p.recent_outcomes), 0),
                       ev.disconnects_24h, ev.bans_total, lim.timelocked, ev.timelocks_30d, rep.sends_48h,
                       rep.repliers_48h, lim.warmup_day, lim.warmup_days)
    FROM user_devices d
    JOIN users u ON u.id = d.user_id
    LEFT JOIN device_pacing p ON p.device_id = d.id
    -- OFFSET 0 here and in rep keeps the subquery whole, so its columns reach _health_score as plain
    -- values and the planner inlines the score: it copies an argument used more than once only when
    -- it is cheap, and the warm-up day (with its settings) and the hour ring's expression are not. As
    -- a call a device, 3,000 devices' health bands took 44-78 ms, 21-33 with it inlined.
    CROSS JOIN LATERAL (SELECT * FROM _device_send_limits(d.daily_limit, d.warmup_started_at, d.timelocked_until,
                                                          u.timezone, p.cold_day, p.cold_count) OFFSET 0) lim
    CROSS JOIN LATERAL (SELECT _device_is_running(d.id) AS running) run
    -- reply rate: contacts who first wrote in 48 h against sends in 48 h (whole UTC hours from the one
    -- that begins nearest 48 h ago: the hour ring) -- both bounded by the device
    CROSS JOIN LATERAL (
      SELECT _send_ring_since(p.sends_total, p.sends_before_hours, p.sends_hour,
                              date_bin(interval '1 hour', now() - interval '47 hours 30 minutes', timestamptz 'epoch'),
                              interval '1 hour') AS sends_48h,
             (SELECT count(*)::int FROM chats w
               WHERE w.device_id = d.id AND w.wrote_at > now() - interval '48 hours') AS repliers_48h
      OFFSET 0
    ) rep
    -- Bounded reads: the last 24 hours of events (device_events_device), bans through their own
    -- partial index, so a device with years of history costs the same.
    CROSS JOIN LATERAL (
      SELECT count(*) FILTER (WHERE e.event = 'offline')::int AS disconnects_24h,
             -- an "online" after the first of the day is a reconnect
             greatest(count(*) FILTER (WHERE e.event = 'online') - 1, 0)::int AS reconnects_24h,
             (SELECT count(*)::int FROM device_events b WHERE b.device_id = d.id AND b.event = 'banned') AS bans_total,
             (SELECT count(*)::int FROM device_events t
               WHERE t.device_id = d.id AND t.event = 'timelocked' AND t.at > now() - interval '30 days') AS timelocks_30d
        FROM device_events e WHERE e.device_id = d.id AND e.at > now() - interval '24 hours'
    ) ev
$$;
COMMENT ON FUNCTION _device_health() IS
  'Per device: status and reason, last_seen, running (a live sender holds its lease), silent (online or '
  'connecting with no sender), disconnects and reconnects in 24 h, bans ever, failed sends in 24 h, and the '
  'command waiting for its sender, today''s daily cap with the warm-up day (_device_send_limits), the end of a '
  'reach-out timelock in force, why it is paused, and its health score (_health_score). Inlined by its callers, '
  'so their filters reach the tables.';

-- Sender processes and their heartbeats, for sender_heartbeat_monitor and monitor_senders.
CREATE OR REPLACE FUNCTION _sender_heartbeats()
RETURNS TABLE (sender_id text, hostname text, pid integer, capacity integer, started_at timestamptz,
               heartbeat_at timestamptz, heartbeat_age_seconds integer, alive boolean, stopping boolean,
               devices_leased integer)
LANGUAGE sql STABLE AS $$
  SELECT s.id, s.hostname, s.pid, s.capacity, s.started_at, s.heartbeat_at,
         extract(epoch FROM now() - s.heartbeat_at)::int,
         s.heartbeat_at > now() - make_interval(secs => (SELECT setting('sender_alive_seconds'))) AND NOT s.stopping,
         s.stopping,
         (SELECT count(*)::int FROM device_leases l WHERE l.sender_id = s.id AND l.expires_at > now())
    FROM senders s
$$;
COMMENT ON FUNCTION _sender_heartbeats() IS
  'Sender processes: heartbeat age, alive (heartbeat within the sender_alive_seconds setting and not '
  'stopping) and devices leased now.';
