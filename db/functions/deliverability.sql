-- Keeping numbers alive (issue 17): WhatsApp's reach-out timelock, self-pause after failed sends,
-- and the health score. Warm-up's daily cap and the timelock's effect on the claim are
-- _device_send_limits (db/functions/device_load.sql); warm contacts are filled by
-- record_inbound_message (db/functions/chats.sql).

CREATE OR REPLACE FUNCTION device_timelocked(p_device_id bigint, p_until timestamptz, p_active boolean DEFAULT true)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_user bigint; v_was timestamptz; v_until timestamptz;
BEGIN
  SELECT d.user_id, d.timelocked_until INTO v_user, v_was FROM user_devices d WHERE d.id = p_device_id FOR UPDATE;
  IF v_user IS NULL THEN
    RETURN false;  -- deleted meanwhile
  END IF;
  -- WhatsApp's own end wins; a 463 that named none holds at least the default from now.
  v_until := CASE WHEN NOT p_active THEN NULL
                  WHEN p_until IS NOT NULL THEN p_until
                  ELSE greatest(v_was, now() + make_interval(hours => setting('timelock_default_hours')::int)) END;
  UPDATE user_devices SET timelocked_until = v_until WHERE id = p_device_id;
  -- Logged and pushed when the lock starts, moves or ends, not for every refused send.
  IF (v_was > now()) IS DISTINCT FROM (v_until > now()) OR (p_until IS NOT NULL AND p_until IS DISTINCT FROM v_was) THEN
    INSERT INTO device_events (device_id, event, detail)
    VALUES (p_device_id, CASE WHEN v_until > now() THEN 'timelocked' ELSE 'timelock_ended' END,
            CASE WHEN v_until > now() THEN 'reach-out timelock until ' || v_until::text END);
    PERFORM notify_user(v_user, 'device_timelock', jsonb_build_object('device_id', p_device_id, 'until', v_until));
  END IF;
  RETURN true;
END $$;
COMMENT ON FUNCTION device_timelocked(bigint, timestamptz, boolean) IS
  'WhatsApp put a reach-out timelock on the device (error 463 on a send, or its notification): until p_until '
  '(NULL: not said; the timelock_default_hours setting from now, never shortening a known lock) it sends only '
  'to warm contacts (claim_messages). p_active false lifts it. Logged in device_events and pushed live '
  '(device_timelock) when it starts, moves or ends. False when the device no longer exists.';

-- Self-pause and the cold share ----------------------------------------------------------
-- The cold count probes the device's warm contacts for each settled row: as an EXISTS, the planner
-- may instead hash the whole table once per call, cheap by statistics taken while the fleet had few
-- contacts and read on every completion however many it has since (a drain's first 100k sends:
-- 25 ms a call; 1M contacts: 370 ms). A scalar subquery is never hashed, and with sequential scans
-- off it is one probe of the primary key whatever the statistics say.
CREATE OR REPLACE FUNCTION _record_send_outcomes(p_rows broadcast_messages[], p_failed boolean)
RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_window integer := setting('self_pause_window_sends')::int;
        v_paused integer;
BEGIN
  WITH settled AS (
    SELECT m.device_id, m.user_id, m.recipient_phone FROM unnest(p_rows) m
     WHERE m.status IN ('sent', 'failed') AND m.device_id IS NOT NULL
       -- a refusal by a reach-out timelock (sender/transport/base.py ReachOutRefused) is the lock's
       -- doing, handled by holding cold contacts; an undeliverable message (Undeliverable: a number
       -- not on WhatsApp, refused media) the recipient's or the content's: neither says anything
       -- more about the device
       AND NOT (p_failed AND (m.error_message LIKE 'reach-out timelock (error 463)%'
                              OR m.error_message LIKE 'undeliverable: %'))
  ), n AS (
    -- The owner's day once per device, by the rows' own owner. Joined per row through user_devices,
    -- the cached plan read each device by the id at the end of its (user_id, name, id) index -- a
    -- walk of that whole index per row wherever the fleet has few enough devices for it to look
    -- cheaper than the primary key (200 devices: 9 ms of a 1,000-row completion).
    SELECT m.device_id, count(*)::int AS k,
           (now() AT TIME ZONE (SELECT u.timezone FROM users u WHERE u.id = m.user_id))::date AS today,
           -- a sent message to a contact the device never talked with spends its cold share (called
           -- before _record_outbound_chats makes the contact warm). The chat by its key alone, the one
           -- index that serves it (migration 2123 says why), talked_at read from the row found.
           count(*) FILTER (WHERE NOT p_failed AND (
             SELECT w.talked_at FROM chats w WHERE w.device_id = m.device_id AND w.chat_jid = m.recipient_phone || '@s.whatsapp.net'
           ) IS NULL)::int AS cold
      FROM settled m
     GROUP BY m.device_id, m.user_id
  ), pushed AS (
    -- One bit per settled send, newest last, the window's length kept.
    UPDATE device_pacing p
       SET recent_outcomes = substring(p.recent_outcomes || repeat(CASE WHEN p_failed THEN '1' ELSE '0' END, least(n.k, v_window))::varbit
                                       FROM greatest(1, length(p.recent_outcomes) + least(n.k, v_window) - v_window + 1)),
           cold_count = CASE WHEN p.cold_day = n.today THEN p.cold_count ELSE 0 END + n.cold,
           cold_day = n.today
      FROM n WHERE p.device_id = n.device_id
    RETURNING p.device_id, p.recent_outcomes
  ), tripped AS (
    -- Only failures can trip the rule, and only once the window is full.
    UPDATE user_devices d
       SET paused_at = now(),
           pause_reason = format('self-paused: %s of its last %s sends failed; press Resume when it is fixed',
                                 bit_count(x.recent_outcomes), v_window)
      FROM pushed x
     WHERE p_failed AND d.id = x.device_id AND d.paused_at IS NULL
       AND length(x.recent_outcomes) >= v_window AND v_window > 0
       AND bit_count(x.recent_outcomes) >= setting('self_pause_failure_share') * v_window
    RETURNING d.id, d.user_id, d.pause_reason, d AS device
  ), logged AS (
    INSERT INTO device_events (device_id, event, detail) SELECT t.id, 'paused', t.pause_reason FROM tripped t
  )
  SELECT count(notify_user(t.user_id, 'devices_paused', jsonb_build_object(
           'paused', true, 'count', 1, 'device_ids', jsonb_build_array(t.id), 'truncated', false,
           'reason', t.pause_reason))) + count(_emit_device_status_webhook(t.device, t.pause_reason))
    INTO v_paused FROM tripped t;
END $$;
COMMENT ON FUNCTION _record_send_outcomes(broadcast_messages[], boolean) IS
  'Adds the messages p_rows as complete_messages or fail_messages settled them (p_failed: they failed, else sent; reach-out timelock refusals and undeliverable messages left out) to their '
  'devices'' recent_outcomes, and the sent '
  'ones to contacts the device never talked with (chats.talked_at; complete_messages calls it before '
  '_record_outbound_chats makes them warm) to its cold_count of the owner''s day (the cold share). A device whose last self_pause_window_sends sends include at least self_pause_failure_share '
  'failures pauses itself (pause_reason says why), logged, pushed live as devices_paused with its reason and '
  'sent as a device.status webhook event. '
  'Called by complete_messages and fail_messages.';

-- Health score ------------------------------------------------------------------------------
-- 100 for a number with nothing against it; each fact costs a bounded share, so one bad fact
-- never hides the others. Pure, so the weights are read and tested in one place.
CREATE OR REPLACE FUNCTION _health_score(p_failed_share numeric, p_disconnects_24h integer, p_bans_total integer,
                                         p_timelocked boolean, p_timelocks_30d integer, p_sends_48h integer,
                                         p_repliers_48h integer, p_warmup_day integer, p_warmup_days integer)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT greatest(0, least(100, round(100
           - 40 * coalesce(p_failed_share, 0)
           - least(20, 4 * p_disconnects_24h)
           - least(30, 15 * p_bans_total)
           - CASE WHEN p_timelocked THEN 20 ELSE least(10, 5 * p_timelocks_30d) END
           -- replies show real conversations: 1 new replier per 10 sends counts as perfect
           - CASE WHEN p_sends_48h >= 20 THEN 10 * (1 - least(1, p_repliers_48h * 10.0 / p_sends_48h)) ELSE 0 END
           -- a young number is fragile until its warm-up ends
           - CASE WHEN p_warmup_day IS NOT NULL AND p_warmup_days > 0
                  THEN 10 * (1 - (p_warmup_day - 1)::numeric / p_warmup_days) ELSE 0 END)))::int
$$;
COMMENT ON FUNCTION _health_score(numeric, integer, integer, boolean, integer, integer, integer, integer, integer) IS
  'A device''s health, 0-100: 100 minus 40 x the failed share of its last sends, 4 per disconnect in 24 h (at '
  'most 20), 15 per ban ever (at most 30), 20 while timelocked (else 5 per timelock in 30 days, at most 10), '
  'up to 10 for few replies (under 1 new replier per 10 sends in 48 h, from 20 sends on) and up to 10 while '
  'warming up (less each day).';

-- Each device's score once, then banded: joined to the four bands, the score of every device was
-- computed once per band (3,000 devices: 171 ms on every refresh of the overview, now 29 ms).
CREATE OR REPLACE FUNCTION device_health_distribution(p_user_id bigint)
RETURNS TABLE (band text, devices bigint)
LANGUAGE sql STABLE AS $$
  WITH scores AS MATERIALIZED (SELECT h.health_score FROM _device_health() h WHERE h.user_id = p_user_id)
  SELECT b.band, count(s.health_score)
    FROM (VALUES ('0-24', 0, 24, 1), ('25-49', 25, 49, 2), ('50-74', 50, 74, 3), ('75-100', 75, 100, 4))
           AS b(band, lo, hi, pos)
    LEFT JOIN scores s ON s.health_score BETWEEN b.lo AND b.hi
   GROUP BY b.band, b.pos
   ORDER BY b.pos
$$;
COMMENT ON FUNCTION device_health_distribution(bigint) IS
  'The owner''s devices counted per health score band (0-24, 25-49, 50-74, 75-100; zeros included), worst first.';
