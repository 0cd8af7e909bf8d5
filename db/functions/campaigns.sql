-- Campaigns: create/edit/cancel/pause/resume, the fan-out into broadcast_messages (chunked for
-- broadcasts, spread over devices for AI campaigns), retries, and the one status rule.
-- Nothing here sends: the dispatch engine claims the queued rows.
--
-- A campaign's row is locked FOR NO KEY UPDATE for a state change (never FOR UPDATE, which only a
-- delete needs): campaign_counts' foreign key check takes KEY SHARE on it, and a completion
-- adding rollup rows then waited on the tick holding the campaign while the tick waited on a row
-- the completion had written: a deadlock, the sender's batch failed and it reconnected (soak).

-- Time --------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION _owner_local_instant(p_user_id bigint, p_date date, p_time time) RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT (p_date + p_time) AT TIME ZONE u.timezone FROM users u WHERE u.id = p_user_id $$;
COMMENT ON FUNCTION _owner_local_instant(bigint, date, time) IS
  'The instant a wall-clock date and time denote in the owner''s time zone (09:00 Kuala Lumpur = 01:00 UTC).';

-- The status rule -----------------------------------------------------------------------------
-- The only place a campaign's status is decided, from what is true of it now.
CREATE OR REPLACE FUNCTION campaign_status_rule(p_status text, p_cancel boolean, p_due boolean, p_expanded boolean,
                                                p_has_live boolean, p_has_sent boolean, p_has_failed boolean,
                                                p_has_rows boolean, p_has_devices boolean,
                                                OUT status text, OUT reason text)
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p_status = 'cancelled' OR p_cancel THEN 'cancelled'
              WHEN p_status = 'pending' AND NOT p_due THEN 'pending'
              WHEN NOT p_expanded THEN 'triggered'
              WHEN p_has_live THEN 'processing'
              WHEN NOT p_has_rows OR (p_has_failed AND NOT p_has_sent) THEN 'failed'
              ELSE 'finished' END,
         CASE WHEN p_status = 'cancelled' OR p_cancel THEN 'cancelled by its owner'
              WHEN (p_status = 'pending' AND NOT p_due) OR NOT p_expanded OR p_has_live THEN NULL
              WHEN NOT p_has_rows AND NOT p_has_devices THEN 'no device to send from'
              WHEN NOT p_has_rows THEN 'no lead in the audience (or all opted out)'
              WHEN p_has_failed AND NOT p_has_sent THEN 'no message could be sent'
         END
$$;
COMMENT ON FUNCTION campaign_status_rule(text, boolean, boolean, boolean, boolean, boolean, boolean, boolean, boolean) IS
  'The campaign status rule: pending until due, triggered while expanding, processing while any message is '
  'pending or in flight, then finished (failed when nothing was queued, or nothing sent and some failed); '
  'cancelled stays cancelled. A retry re-opens an ended campaign (processing again).';

-- A campaign's settled rows ---------------------------------------------------------------------
-- They lie in the history's weeks from the campaign's creation to an hour past now: each settles
-- after the campaign exists, at a completion's now() (the start of a transaction that committed
-- before the reading statement began, or of its own). Read with this bound, the weeks outside are
-- pruned as the statement runs (an InitPlan or a parameter's value) or at its start; unbounded,
-- every reader of a campaign's settled rows probed every week (26 at the default retention), a
-- fan-out for each lead. The hour: a reading statement's now() may trail the clock of a transaction
-- that settled rows meanwhile by that statement's own duration.
CREATE OR REPLACE FUNCTION _settled_for_campaign(p_settled_at timestamptz, p_campaign_created_at timestamptz)
RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT p_settled_at >= p_campaign_created_at AND p_settled_at < now() + interval '1 hour'
$$;
COMMENT ON FUNCTION _settled_for_campaign(timestamptz, timestamptz) IS
  'Whether a history row''s settle time (coalesce(sent_at, failed_at), its partition key) lies where a campaign '
  'created at p_campaign_created_at can have settled rows; inlined, so the history''s other weeks are pruned.';

-- enable_seqscan off: a campaign holding half the table makes the planner expect an early hit from
-- a sequential scan, and a probe with no hit (no failed message yet) would then read all history.
-- enable_bitmapscan off: a bitmap cannot stop at the first hit; for a campaign with 1M live messages
-- it marked all of them to answer "any live?" (122 ms a call: every minute for each running
-- campaign, and after each chunk of its own fan-out).
CREATE OR REPLACE FUNCTION settle_campaign(p_campaign_id bigint, p_cancel boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE c campaigns;
        v_rule record;
        v_live boolean; v_sent boolean; v_failed boolean;
BEGIN
  SELECT * INTO c FROM campaigns WHERE id = p_campaign_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN RETURN NULL; END IF;
  -- Index probes only (message_queue_campaign_phone, message_history_campaign), in the campaign's weeks
  -- (_settled_for_campaign), so settling a 1M-message campaign stays cheap.
  v_live := EXISTS (SELECT 1 FROM message_queue m WHERE m.campaign_id = c.id);
  v_sent := EXISTS (SELECT 1 FROM message_history m WHERE m.campaign_id = c.id AND m.status = 'sent'
                       AND _settled_for_campaign(coalesce(m.sent_at, m.failed_at), c.created_at));
  v_failed := EXISTS (SELECT 1 FROM message_history m WHERE m.campaign_id = c.id AND m.status = 'failed'
                         AND _settled_for_campaign(coalesce(m.sent_at, m.failed_at), c.created_at));
  v_rule := campaign_status_rule(
    c.status, p_cancel, c.scheduled_at <= now(), c.expanded_at IS NOT NULL, v_live, v_sent, v_failed,
    v_live OR v_sent OR v_failed
      OR EXISTS (SELECT 1 FROM message_history m WHERE m.campaign_id = c.id AND m.status = 'skipped'
                    AND _settled_for_campaign(coalesce(m.sent_at, m.failed_at), c.created_at)),
    EXISTS (SELECT 1 FROM user_devices d WHERE d.user_id = c.user_id
             AND (c.device_ids IS NULL OR d.id = ANY (c.device_ids))));
  IF v_rule.status IS DISTINCT FROM c.status THEN
    IF v_rule.status = 'triggered' THEN
      PERFORM _open_fanout_lanes(c);
    END IF;
    UPDATE campaigns
       SET status = v_rule.status, status_reason = v_rule.reason,
           triggered_at = CASE WHEN v_rule.status = 'cancelled' THEN triggered_at ELSE coalesce(triggered_at, now()) END,
           finished_at = CASE WHEN v_rule.status IN ('finished', 'failed', 'cancelled') THEN now() END
     WHERE id = p_campaign_id;
    PERFORM notify_user(c.user_id, 'campaign', jsonb_build_object('id', c.id, 'status', v_rule.status,
                                                                  'reason', v_rule.reason));
    IF v_rule.status IN ('finished', 'failed', 'cancelled') THEN
      PERFORM _emit_webhook_event(c.user_id, 'campaign.finished', jsonb_build_object(
                'campaign_id', c.id, 'title', c.title, 'status', v_rule.status, 'reason', v_rule.reason));
    END IF;
  END IF;
  RETURN v_rule.status;
END $$;
COMMENT ON FUNCTION settle_campaign(bigint, boolean) IS
  'Applies campaign_status_rule to a campaign (p_cancel: its owner cancels it), stamping triggered_at/finished_at '
  'and pushing a campaign event on change (and a campaign.finished webhook event when it ends: finished, failed '
  'or cancelled). Every status change goes through here. Returns the status.';

-- A campaign ends when its last message settles, not at the next minute tick: the trigger
-- broadcast_messages_4_campaign_done (db/functions/triggers_broadcast_messages.sql) calls this after every UPDATE.
-- Two senders settling a campaign's last two messages at once each still see the other's as live;
-- then the minute tick (run_campaigns) settles it.
-- One probe per campaign by key (sequential scans off: a probe of the queue stays one whatever its
-- statistics say), whatever plan a session keeps: as one join of the campaigns, the transition
-- table and the queue it was planned once per session, for the session's first statement's rows,
-- and kept re-reading the transition table per campaign and the queue per row.
CREATE OR REPLACE FUNCTION settle_campaigns_done() RETURNS trigger LANGUAGE plpgsql SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_id bigint;
BEGIN
  FOR v_id IN
    SELECT DISTINCT n.campaign_id FROM new_rows n WHERE n.campaign_id IS NOT NULL AND n.status IN ('sent', 'failed')
  LOOP
    IF EXISTS (SELECT 1 FROM campaigns c WHERE c.id = v_id AND c.status = 'processing' AND c.expanded_at IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM message_queue q WHERE q.campaign_id = v_id) THEN
      PERFORM settle_campaign(v_id);
    END IF;
  END LOOP;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION settle_campaigns_done() IS
  'Statement trigger on broadcast_messages: settles (settle_campaign, which pushes the campaign event) each processing, '
  'fully expanded campaign whose rows just became sent or failed and that has no pending or queued message left '
  '(skips settle their campaigns themselves: _skip_messages).';

-- Create and edit -------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION _check_campaign_input(p_user_id bigint, p_kind text, p_device_ids bigint[],
                                                p_ai_limit_per_device integer, p_min_delay integer,
                                                p_max_delay integer, p_date date, p_time time)
RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF p_kind IS NULL OR p_kind NOT IN ('broadcast', 'ai') THEN
    RAISE EXCEPTION 'campaign kind must be broadcast or ai' USING ERRCODE = '22023';
  END IF;
  IF p_kind = 'ai' AND coalesce(p_ai_limit_per_device, 0) < 1 THEN
    RAISE EXCEPTION 'an AI campaign needs a limit of leads per device (1 or more)' USING ERRCODE = '22023';
  END IF;
  IF NOT coalesce(p_device_ids, '{}') <@ _own_device_ids(p_user_id) THEN
    RAISE EXCEPTION 'device % is not one of your devices',
      (SELECT min(x) FROM unnest(p_device_ids) x WHERE NOT x = ANY (_own_device_ids(p_user_id)))
      USING ERRCODE = '22023';
  END IF;
  IF p_min_delay IS NULL OR p_max_delay IS NULL OR p_min_delay < 0 OR p_max_delay < p_min_delay THEN
    RAISE EXCEPTION 'delays must satisfy 0 <= min (%) <= max (%)', p_min_delay, p_max_delay USING ERRCODE = '22023';
  END IF;
  IF p_date IS NULL OR p_time IS NULL THEN
    RAISE EXCEPTION 'a campaign needs a date and a time' USING ERRCODE = '22023';
  END IF;
END $$;
COMMENT ON FUNCTION _check_campaign_input(bigint, text, bigint[], integer, integer, integer, date, time) IS
  'Raises 22023 with the reason when campaign fields are invalid (kind, AI limit, foreign devices, delays, schedule).';

CREATE OR REPLACE FUNCTION create_campaign(p_user_id bigint, p_kind text, p_title text, p_niche text,
                                           p_target_status text, p_message text, p_image_url text,
                                           p_device_ids bigint[], p_ai_limit_per_device integer,
                                           p_date date, p_time time, p_min_delay integer, p_max_delay integer,
                                           p_media_id bigint DEFAULT NULL, p_failover boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
  PERFORM _check_campaign_input(p_user_id, p_kind, p_device_ids, p_ai_limit_per_device, p_min_delay, p_max_delay,
                               p_date, p_time);
  PERFORM require_quota(p_user_id, 'campaigns', 1);
  INSERT INTO campaigns (user_id, kind, title, niche, target_status, message, image_url, media_id, device_ids,
                         ai_limit_per_device, campaign_date, time_schedule, scheduled_at,
                         min_delay_seconds, max_delay_seconds, failover)
  VALUES (p_user_id, p_kind, btrim(coalesce(p_title, '')), btrim(coalesce(p_niche, '')),
          coalesce(nullif(p_target_status, ''), 'all'), p_message, nullif(btrim(coalesce(p_image_url, '')), ''),
          _require_own_media(p_user_id, p_media_id),
          nullif(p_device_ids, '{}'), CASE WHEN p_kind = 'ai' THEN p_ai_limit_per_device END,
          p_date, p_time, _owner_local_instant(p_user_id, p_date, p_time), p_min_delay, p_max_delay,
          coalesce(p_failover, false))
  RETURNING id INTO v_id;
  RETURN v_id;
END $$;
COMMENT ON FUNCTION create_campaign(bigint, text, text, text, text, text, text, bigint[], integer, date, time, integer, integer, bigint, boolean) IS
  'Creates a pending campaign (kind broadcast or ai); date and time are wall clock in the owner''s zone and '
  'scheduled_at is the instant they denote; p_media_id is its stored image (image_url where it came from); '
  'p_failover lets its messages move to another device when theirs is lost (_failover_messages). Returns its id.';

CREATE OR REPLACE FUNCTION update_campaign(p_user_id bigint, p_campaign_id bigint, p_title text, p_niche text,
                                           p_target_status text, p_message text, p_image_url text,
                                           p_device_ids bigint[], p_ai_limit_per_device integer,
                                           p_date date, p_time time, p_min_delay integer, p_max_delay integer,
                                           p_media_id bigint DEFAULT NULL, p_failover boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE c campaigns;
BEGIN
  SELECT * INTO c FROM campaigns WHERE id = p_campaign_id AND user_id = p_user_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN RETURN NULL; END IF;
  IF c.status <> 'pending' THEN
    RAISE EXCEPTION 'campaign % is % and can no longer be edited', c.id, c.status;
  END IF;
  PERFORM _check_campaign_input(p_user_id, c.kind, p_device_ids, p_ai_limit_per_device, p_min_delay, p_max_delay,
                               p_date, p_time);
  UPDATE campaigns
     SET title = btrim(coalesce(p_title, '')), niche = btrim(coalesce(p_niche, '')),
         target_status = coalesce(nullif(p_target_status, ''), 'all'), message = p_message,
         image_url = nullif(btrim(coalesce(p_image_url, '')), ''), media_id = _require_own_media(p_user_id, p_media_id),
         device_ids = nullif(p_device_ids, '{}'),
         ai_limit_per_device = CASE WHEN c.kind = 'ai' THEN p_ai_limit_per_device END,
         campaign_date = p_date, time_schedule = p_time, scheduled_at = _owner_local_instant(p_user_id, p_date, p_time),
         min_delay_seconds = p_min_delay, max_delay_seconds = p_max_delay, failover = coalesce(p_failover, false)
   WHERE id = c.id;
  RETURN c.id;
END $$;
COMMENT ON FUNCTION update_campaign(bigint, bigint, text, text, text, text, text, bigint[], integer, date, time, integer, integer, bigint, boolean) IS
  'Edits one of the owner''s campaigns while it is pending (not yet due); NULL when the owner has no such campaign.';

-- Owner actions ----------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION _owned_campaign_for_update(p_user_id bigint, p_campaign_id bigint) RETURNS campaigns
LANGUAGE sql AS $$ SELECT * FROM campaigns WHERE id = p_campaign_id AND user_id = p_user_id FOR NO KEY UPDATE $$;
COMMENT ON FUNCTION _owned_campaign_for_update(bigint, bigint) IS
  'One of the owner''s campaigns, locked for a state change (NULL fields when not theirs).';

CREATE OR REPLACE FUNCTION cancel_campaign(p_user_id bigint, p_campaign_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE c campaigns := _owned_campaign_for_update(p_user_id, p_campaign_id);
        v_status text;
BEGIN
  IF c.id IS NULL THEN RETURN NULL; END IF;
  IF c.status IN ('finished', 'failed', 'cancelled') THEN
    RAISE EXCEPTION 'campaign % is already %', c.id, c.status;
  END IF;
  v_status := settle_campaign(c.id, true);   -- first, so its skipped messages do not end it as finished
  PERFORM _skip_messages(array(SELECT m.id FROM broadcast_messages m WHERE m.campaign_id = c.id AND m.status = 'pending'),
                         'campaign_cancelled');
  RETURN v_status;
END $$;
COMMENT ON FUNCTION cancel_campaign(bigint, bigint) IS
  'Cancels a campaign: its unsent (pending) messages become skipped (''campaign cancelled''); in-flight ones finish. '
  'NULL when the owner has no such campaign.';

CREATE OR REPLACE FUNCTION pause_campaign(p_user_id bigint, p_campaign_id bigint, p_pause boolean) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE c campaigns := _owned_campaign_for_update(p_user_id, p_campaign_id);
BEGIN
  IF c.id IS NULL THEN RETURN NULL; END IF;
  IF c.status IN ('finished', 'failed', 'cancelled') THEN
    RAISE EXCEPTION 'campaign % is % and cannot be %', c.id, c.status, CASE WHEN p_pause THEN 'paused' ELSE 'resumed' END;
  END IF;
  IF (c.paused_at IS NOT NULL) = p_pause THEN
    RETURN c.status;  -- already so: nothing to do
  END IF;
  UPDATE campaigns SET paused_at = CASE WHEN p_pause THEN now() END WHERE id = c.id;
  PERFORM _hold_messages(array(SELECT m.id FROM broadcast_messages m
                                WHERE m.campaign_id = c.id AND m.status = 'pending' AND m.held <> p_pause), p_pause);
  PERFORM notify_user(c.user_id, 'campaign', jsonb_build_object('id', c.id, 'status', c.status, 'paused', p_pause));
  RETURN c.status;
END $$;
COMMENT ON FUNCTION pause_campaign(bigint, bigint, boolean) IS
  'Pauses (p_pause) or resumes a campaign: its pending messages are held or released, and messages it queues '
  'meanwhile are held. NULL when the owner has no such campaign.';

-- Fan-out -------------------------------------------------------------------------------------
-- Messages are rendered as they are queued, the template parked once per chunk (_message_template).
-- They are due from when they are queued (greatest(schedule, now()), as the AI spread's): with the
-- campaign's past schedule time a chunk's rows, uncommitted while it is written, sorted before
-- every due row of the queue, and each sender's claim, reading due rows in time order, stepped over
-- all of them (bench_fanout --quick: 0.21-0.27 with the claim's time-ordered scan, see queue.sql).
-- One chunk of one lane of a broadcast: the lane's next leads in phone order after its cursor, whole
-- phones, each on its own device. A lead's lane is its phone number's last character (_phone_lane);
-- a lane reads its leads in phone order and a chunk ends on a whole phone, so every lead of one
-- phone (on several devices) meets in one chunk, which keeps its first lead. Phones are reached once
-- per fan-out: the chunk's drafts are fresh (no probe of the queue or the history per draft, see
-- queue_enqueue.sql), unless the lane restarted after an upgrade (guarded).
-- The chunk's last phone is found first, by the phone index alone: the phone range holding p_chunk
-- of the owner's leads per lane (about p_chunk of the lane's; leads counted whether in the audience
-- or not: a narrow audience makes more, smaller chunks, not more reading). Filtered by lane, the
-- planner could not tell how many leads a lane holds (it guessed 0.5 %) and sorted all of the
-- owner's leads for each chunk. The last chunk ends at the owner's last phone.
CREATE OR REPLACE FUNCTION _expand_broadcast_chunk(c campaigns, p_lane campaign_fanout_lanes, p_chunk integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_lanes integer := (SELECT count(*) FROM campaign_fanout_lanes l WHERE l.campaign_id = c.id);
        v_last text;    -- the chunk's last phone; NULL: the lane's last chunk
        v_end text;
        v_queued integer;
        -- the campaign's constants, once per chunk rather than once per lead
        v_template text := _message_template(c.message);
        v_niche text[] := lead_tokens(c.niche);
        v_media text := media_path(c.media_id, c.image_url);
BEGIN
  v_last := (SELECT l.phone FROM leads l WHERE l.user_id = c.user_id AND l.phone > p_lane.phone_cursor
              ORDER BY l.phone OFFSET p_chunk * v_lanes - 1 LIMIT 1);
  v_end := coalesce(v_last, (SELECT max(l.phone) FROM leads l WHERE l.user_id = c.user_id));
  SELECT count(*) INTO v_queued FROM _enqueue_messages(array(
    SELECT ROW(c.user_id, b.device_id, b.id, b.phone, b.name, CASE WHEN v_media IS NULL THEN 'text' ELSE 'image' END,
               coalesce(_fill_fields(v_template, b.name, b.phone), render_message(c.message, b.name, b.phone)), v_media,
               c.min_delay_seconds, c.max_delay_seconds, greatest(c.scheduled_at, now()), c.paused_at IS NOT NULL,
               c.id, NULL, NULL, NULL, NULL)::message_draft
      FROM (SELECT DISTINCT ON (l.phone) l.id, l.device_id, l.name, l.phone   -- a phone on two devices: its first lead
              FROM leads l
             WHERE l.user_id = c.user_id AND l.phone > p_lane.phone_cursor AND l.phone <= v_end
               AND _phone_lane(l.phone, v_lanes) = p_lane.lane AND l.device_id IS NOT NULL
               AND (c.device_ids IS NULL OR l.device_id = ANY (c.device_ids))
               AND lead_in_audience(l.niche_tokens, l.target_status, v_niche, c.target_status)
             ORDER BY l.phone, l.id) b
     WHERE NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.user_id = c.user_id AND o.phone = b.phone)
     ORDER BY b.phone), NOT p_lane.guarded);   -- phone order: together in the campaign-and-phone index
  UPDATE campaign_fanout_lanes
     SET phone_cursor = coalesce(v_last, phone_cursor),
         done_at = CASE WHEN v_last IS NULL THEN now() END
   WHERE campaign_id = c.id AND lane = p_lane.lane;
  RETURN v_queued;
END $$;
COMMENT ON FUNCTION _expand_broadcast_chunk(campaigns, campaign_fanout_lanes, integer) IS
  'Queues one chunk of one lane of a broadcast (the lane''s next leads in phone order, about p_chunk, whole phones, on '
  'their own devices, opted-out numbers left out, one message per phone: its first audience lead); marks the lane '
  'done after its last chunk. Returns rows queued.';

-- Device score for spreading: lower is less loaded (device_load's load score). A device's live or
-- sent messages of the campaign come from the rollup: counted from the messages, each device read
-- all of the campaign's, through every week of the history.
CREATE OR REPLACE FUNCTION _ai_campaign_devices(c campaigns)
RETURNS TABLE (device_id bigint, score numeric, room integer)
LANGUAGE sql STABLE AS $$
  SELECT d.id, l.load_score,
         c.ai_limit_per_device - (SELECT coalesce(sum(k.live_or_sent), 0)::int FROM campaign_counts k
                                   WHERE k.campaign_id = c.id AND k.device_id = d.id)
    FROM user_devices d
    JOIN device_load(ARRAY[c.user_id]) l ON l.device_id = d.id
   WHERE d.user_id = c.user_id AND d.status = 'online' AND d.paused_at IS NULL
     AND (c.device_ids IS NULL OR d.id = ANY (c.device_ids))
$$;
COMMENT ON FUNCTION _ai_campaign_devices(campaigns) IS
  'The devices an AI campaign may use now (online, not paused, in its device set), their load score '
  '(device_load) and how many more leads each may take under the per-device limit.';

-- Spreads leads over the AI campaign's devices. Warm first: a lead one of them talked with goes
-- from that one (chats.talked_at), within its room. The others: slot k of every device before
-- slot k+1 of any, devices by score, so the least loaded get the first leads and none gets more
-- than its room.
-- Candidates: pool leads the campaign has not touched (only while first expanding), then leads
-- whose message was stranded on a dropped device (moved: a new row with retry_of, history kept).
-- The campaign's settled rows are read in its weeks (_settled_for_campaign): the first spread probed
-- every week of the history for each pool lead.
CREATE OR REPLACE FUNCTION _spread_ai_campaign(c campaigns) RETURNS integer
LANGUAGE sql AS $$
  WITH devices AS MATERIALIZED (
    SELECT d.device_id, d.score, d.room FROM _ai_campaign_devices(c) d WHERE d.room > 0
  ), stranded AS (
    SELECT m.id AS retry_of, m.lead_id, m.recipient_name AS name, m.recipient_phone AS phone, 0 AS pass, m.id AS ord
      FROM message_history m LEFT JOIN user_devices d ON d.id = m.device_id
     WHERE m.campaign_id = c.id AND m.status IN ('failed', 'skipped')
       AND _settled_for_campaign(coalesce(m.sent_at, m.failed_at), c.created_at)
       AND (d.id IS NULL OR d.status IN ('banned', 'logged_out'))
       AND NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = m.id)
  ), audience AS MATERIALIZED (   -- the campaign's tokens once, not once per pool lead
    SELECT lead_tokens(c.niche) AS tokens
  ), fresh AS (
    SELECT NULL::bigint AS retry_of, l.id AS lead_id, l.name, l.phone, 1 AS pass, l.id AS ord
      FROM leads l, audience a
     WHERE c.expanded_at IS NULL AND l.user_id = c.user_id AND l.device_id IS NULL
       AND lead_in_audience(l.niche_tokens, l.target_status, a.tokens, c.target_status)
       AND NOT EXISTS (SELECT 1 FROM message_queue m WHERE m.campaign_id = c.id AND m.recipient_phone = l.phone)
       AND NOT EXISTS (SELECT 1 FROM message_history m
                        WHERE m.campaign_id = c.id AND m.recipient_phone = l.phone
                          AND _settled_for_campaign(coalesce(m.sent_at, m.failed_at), c.created_at))
  ), pool AS MATERIALIZED (
    SELECT x.*, row_number() OVER (ORDER BY x.pass, x.ord) AS turn
      FROM (SELECT retry_of, lead_id, name, phone, pass, ord FROM stranded
            UNION ALL SELECT retry_of, lead_id, name, phone, pass, ord FROM fresh) x
     WHERE NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.user_id = c.user_id AND o.phone = x.phone)
  ), warm AS MATERIALIZED (   -- each warm lead's device (the least loaded that talked with it), within that device's room
    SELECT w.turn, w.device_id FROM (
      SELECT p.turn, p.device_id, p.room, row_number() OVER (PARTITION BY p.device_id ORDER BY p.turn) AS k
        FROM (SELECT DISTINCT ON (p.turn) p.turn, d.device_id, d.room
                FROM pool p JOIN chats wc ON wc.phone = p.phone AND wc.talked_at IS NOT NULL
                JOIN devices d ON d.device_id = wc.device_id
               ORDER BY p.turn, d.score, d.device_id) p) w
     WHERE w.k <= w.room
  ), free AS MATERIALIZED (   -- each device's room left after its warm leads
    SELECT d.device_id, d.score, d.room - (SELECT count(*)::int FROM warm WHERE warm.device_id = d.device_id) AS free
      FROM devices d
  ), reach AS (
    -- How deep the slots go. Slot k of every device comes before slot k+1 of any, so the pool's
    -- leads fill the slots down to the smallest depth n at which the devices' slots (min(free, n)
    -- each) cover the pool: with the free rooms sorted f1 <= f2 <= ..., the first device i whose
    -- predecessors' rooms plus (devices left) x f_i cover it gives n. Slots past that depth are
    -- never used; made anyway, a device dropped from a campaign of 100,000 a device made 29M of
    -- them to place 6,666 leads (24 s a tick).
    SELECT coalesce(
             (SELECT ceil((x.need - x.before) / (x.devices - x.i)::numeric)::int
                FROM (SELECT f.free, (SELECT count(*) FROM pool) AS need, count(*) OVER () AS devices,
                             row_number() OVER (ORDER BY f.free, f.device_id) - 1 AS i,
                             coalesce(sum(f.free) OVER (ORDER BY f.free, f.device_id
                                                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                        FROM free f WHERE f.free > 0) x
               WHERE x.before + (x.devices - x.i) * x.free >= x.need
               ORDER BY x.i LIMIT 1),
             (SELECT max(f.free) FROM free f)) AS depth
  ), slots AS MATERIALIZED (
    SELECT f.device_id, row_number() OVER (ORDER BY s.n, f.score, f.device_id) AS slot
      FROM free f, reach, generate_series(1, least(f.free, reach.depth)) AS s(n)
  ), candidates AS (
    SELECT p.*, w.device_id AS warm_device_id,
           CASE WHEN w.device_id IS NULL THEN row_number() OVER (PARTITION BY w.device_id IS NULL ORDER BY p.turn) END AS slot
      FROM pool p LEFT JOIN warm w ON w.turn = p.turn
  )
  SELECT count(*)::int FROM _enqueue_messages(array(
    SELECT ROW(c.user_id, coalesce(k.warm_device_id, s.device_id), k.lead_id, k.phone, k.name,
               CASE WHEN media_path(c.media_id, c.image_url) IS NULL THEN 'text' ELSE 'image' END,
               coalesce(_fill_fields(_message_template(c.message), k.name, k.phone), render_message(c.message, k.name, k.phone)),
               media_path(c.media_id, c.image_url),
               c.min_delay_seconds, c.max_delay_seconds, greatest(c.scheduled_at, now()), c.paused_at IS NOT NULL,
               c.id, NULL, NULL, NULL, k.retry_of)::message_draft
      FROM candidates k LEFT JOIN slots s USING (slot)
     WHERE k.warm_device_id IS NOT NULL OR s.device_id IS NOT NULL))
$$;
COMMENT ON FUNCTION _spread_ai_campaign(campaigns) IS
  'Queues AI-campaign leads on its online devices, at most ai_limit_per_device live messages per device: a lead '
  'one of them talked with from that one (warm first), the others by load-balance score; untouched pool leads '
  '(first spread only) and leads stranded on dropped devices.';

-- A lane's chunk reads the campaign FOR SHARE: lanes of one campaign go side by side, while a
-- pause, cancel or edit (FOR NO KEY UPDATE) waits for the chunk at work, and the chunk after it
-- sees the change. The campaign is marked expanded under its row lock once every lane is done, in
-- a call of its own (two lanes ending together would each see the other still open).
-- work_mem: a chunk's lead batch, its sorts and every array of its drafts unnested on the way (each
-- a tuplestore) stay in memory: at the default 4 MB a chunk of 50k wrote and read back 11 temporary
-- files, 32 MB, and an AI spread holds its whole pool.
CREATE OR REPLACE FUNCTION expand_campaign_chunk(p_campaign_id bigint, p_chunk integer DEFAULT 50000) RETURNS integer
LANGUAGE plpgsql SET work_mem = '64MB' AS $$
DECLARE c campaigns;
        l campaign_fanout_lanes;
        v_queued integer;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM campaign_fanout_lanes x WHERE x.campaign_id = p_campaign_id AND x.done_at IS NULL) THEN
    RETURN _finish_fanout(p_campaign_id);
  END IF;
  -- the campaign before its lane, in the order a delete takes them
  SELECT * INTO c FROM campaigns WHERE id = p_campaign_id FOR SHARE;
  IF NOT FOUND OR c.status <> 'triggered' OR c.expanded_at IS NOT NULL THEN
    RETURN NULL;
  END IF;
  SELECT * INTO l FROM campaign_fanout_lanes x
   WHERE x.campaign_id = c.id AND x.done_at IS NULL
   ORDER BY x.phone_cursor, x.lane LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED;
  IF NOT FOUND THEN
    RETURN NULL;   -- every open lane is at work in another session
  END IF;
  IF c.kind = 'ai' THEN   -- one lane: the spread is one statement
    v_queued := _spread_ai_campaign(c);
    UPDATE campaign_fanout_lanes SET done_at = now() WHERE campaign_id = c.id AND lane = l.lane;
  ELSE
    v_queued := _expand_broadcast_chunk(c, l, p_chunk);
  END IF;
  PERFORM notify_user(c.user_id, 'campaign_progress', jsonb_build_object('id', c.id, 'queued', v_queued));
  RETURN v_queued;
END $$;
COMMENT ON FUNCTION expand_campaign_chunk(bigint, integer) IS
  'One fan-out step of a triggered campaign: a chunk of the broadcast lane furthest behind that no other session is '
  'expanding (or the whole AI spread), or, once every lane is done, the campaign marked expanded and its status '
  'settled (0 rows). NULL when there is nothing to expand here. Sessions calling side by side take a lane each.';

CREATE OR REPLACE FUNCTION _finish_fanout(p_campaign_id bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE c campaigns;
BEGIN
  SELECT * INTO c FROM campaigns WHERE id = p_campaign_id FOR NO KEY UPDATE;
  IF NOT FOUND OR c.status <> 'triggered' OR c.expanded_at IS NOT NULL THEN
    RETURN NULL;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM campaign_fanout_lanes x WHERE x.campaign_id = c.id) THEN
    PERFORM _open_fanout_lanes(c);   -- triggered without them (by hand): open them now
    RETURN 0;
  END IF;
  UPDATE campaigns SET expanded_at = now() WHERE id = c.id;
  PERFORM settle_campaign(c.id);
  RETURN 0;
END $$;
COMMENT ON FUNCTION _finish_fanout(bigint) IS
  'Marks a triggered campaign whose fan-out lanes are all done as expanded and settles its status; returns 0, or '
  'NULL when it is not (or no longer) expanding.';

-- PL/pgSQL with its plan kept: settle_campaign, which calls it, is reached from the senders' triggers.
CREATE OR REPLACE FUNCTION _open_fanout_lanes(c campaigns) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  INSERT INTO campaign_fanout_lanes (campaign_id, lane)
  SELECT c.id, g
    FROM generate_series(0, CASE WHEN c.kind = 'ai' THEN 0
                                 ELSE setting('campaign_fanout_lanes')::integer - 1 END) g
  ON CONFLICT DO NOTHING;
END $$;
COMMENT ON FUNCTION _open_fanout_lanes(campaigns) IS
  'Opens a campaign''s fan-out lanes (campaign_fanout_lanes setting; one for an AI campaign, whose spread is one '
  'statement).';

-- The tick --------------------------------------------------------------------------------------
-- The tick and its helpers start together, and each triggers what is due first. The one that
-- triggers a campaign commits and at once holds it FOR SHARE through its first chunk: a runner that
-- had found it pending and waited on its row lock followed the row to that chunk and waited for it
-- too, one lane idle for a chunk (bench_fanout --quick: one round in five 3.5 s instead of 2.1).
-- Runners wait for each other's trigger of a campaign by a lock of the trigger's own, then read the
-- campaign again: triggered meanwhile, they leave it without touching its row; still pending, they
-- settle it (behind an owner's edit at work, if any: a chunk never holds a pending campaign).
CREATE OR REPLACE FUNCTION _trigger_due_campaigns() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
        v_triggered integer := 0;
BEGIN
  FOR v_id IN SELECT c.id FROM campaigns c WHERE c.status = 'pending' AND c.scheduled_at <= now() ORDER BY c.id LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended('campaign trigger', v_id));
    IF EXISTS (SELECT 1 FROM campaigns c WHERE c.id = v_id AND c.status = 'pending') THEN   -- a new snapshot
      PERFORM settle_campaign(v_id);
      v_triggered := v_triggered + 1;
    END IF;
  END LOOP;
  RETURN v_triggered;
END $$;
COMMENT ON FUNCTION _trigger_due_campaigns() IS
  'Moves pending campaigns whose time has come to triggered (settle_campaign); one another session is triggering '
  'is left to it once it commits, without waiting for its first chunk. Returns how many it settled.';

CREATE OR REPLACE FUNCTION expand_next_campaign_chunk(p_chunk integer DEFAULT 50000) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
        v_queued integer;
BEGIN
  FOR v_id IN SELECT id FROM campaigns WHERE status = 'triggered' AND expanded_at IS NULL ORDER BY scheduled_at, id LOOP
    v_queued := expand_campaign_chunk(v_id, p_chunk);
    IF v_queued IS NOT NULL THEN
      RETURN v_queued;
    END IF;
  END LOOP;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION expand_next_campaign_chunk(integer) IS
  'One fan-out step (expand_campaign_chunk) of the oldest triggered campaign with a lane no other session is '
  'expanding; NULL when none is waiting.';

CREATE OR REPLACE FUNCTION _rebalance_ai_campaigns() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE c campaigns;
        r record;
        v_moved integer := 0;
BEGIN
  FOR c IN SELECT * FROM campaigns WHERE kind = 'ai' AND status = 'processing' FOR NO KEY UPDATE SKIP LOCKED LOOP
    -- The campaign's devices with live messages come from its rollup (0: deleted devices, whose
    -- messages lost their device); only the dropped ones' rows are read, not every pending row of
    -- the campaign each minute (1M pending: 335 ms a tick for nothing).
    FOR r IN SELECT coalesce(d.status, 'deleted') AS why, array_agg(m.id) AS ids
               FROM (SELECT k.device_id FROM campaign_counts k WHERE k.campaign_id = c.id
                      GROUP BY k.device_id HAVING sum(k.pending) > 0) k
               LEFT JOIN user_devices d ON d.id = k.device_id
              CROSS JOIN LATERAL (
                SELECT m.id FROM broadcast_messages m
                 WHERE m.device_id = k.device_id AND m.campaign_id = c.id AND m.status = 'pending'
                UNION ALL
                SELECT m.id FROM broadcast_messages m
                 WHERE k.device_id = 0 AND m.device_id IS NULL AND m.campaign_id = c.id AND m.status = 'pending') m
              WHERE d.id IS NULL OR d.status IN ('banned', 'logged_out')
              GROUP BY 1 LOOP
      PERFORM _skip_messages(r.ids, 'campaign_device_dropped', r.why, false);   -- settled below, after the spread
    END LOOP;
    v_moved := v_moved + _spread_ai_campaign(c);
    PERFORM settle_campaign(c.id);
  END LOOP;
  RETURN v_moved;
END $$;
COMMENT ON FUNCTION _rebalance_ai_campaigns() IS
  'Drops banned, logged-out and deleted devices from running AI campaigns: their unsent messages are skipped '
  'and queued again on the other devices (retry_of), within each device''s limit. Returns messages moved.';

CREATE OR REPLACE FUNCTION settle_running_campaigns() RETURNS integer
LANGUAGE sql AS $$
  SELECT count(*)::int FROM (
    SELECT settle_campaign(id) AS s FROM campaigns WHERE status = 'processing'
  ) x WHERE x.s <> 'processing'
$$;
COMMENT ON FUNCTION settle_running_campaigns() IS
  'Re-applies the status rule to processing campaigns (their messages move on without them). Returns how many ended.';

-- The fan-out's runners: the campaign tick and a helper job per further lane (app_jobs), each
-- taking a lane per chunk.
CREATE OR REPLACE PROCEDURE expand_campaigns(p_max_seconds integer DEFAULT 50, p_chunk integer DEFAULT 50000)
LANGUAGE plpgsql AS $$
DECLARE
  v_until timestamptz := clock_timestamp() + make_interval(secs => p_max_seconds);
  v_added integer;
BEGIN
  PERFORM _trigger_due_campaigns();
  COMMIT;
  -- A commit per chunk: each chunk's messages are claimable at once, and no transaction grows large.
  LOOP
    EXIT WHEN clock_timestamp() >= v_until;
    v_added := expand_next_campaign_chunk(p_chunk);
    EXIT WHEN v_added IS NULL;
    COMMIT;
  END LOOP;
  COMMIT;
END $$;
COMMENT ON PROCEDURE expand_campaigns(integer, integer) IS
  'Triggers due campaigns and expands them chunk by chunk (a commit each, a free lane each) for up to p_max_seconds. '
  'Run by the campaign tick and by its helper jobs side by side.';

CREATE OR REPLACE PROCEDURE run_campaigns(p_max_seconds integer DEFAULT 50, p_chunk integer DEFAULT 50000)
LANGUAGE plpgsql AS $$
BEGIN
  CALL expand_campaigns(p_max_seconds, p_chunk);
  PERFORM _rebalance_ai_campaigns();
  COMMIT;
  PERFORM settle_running_campaigns();
END $$;
COMMENT ON PROCEDURE run_campaigns(integer, integer) IS
  'The campaign tick (every minute): triggers due campaigns, expands them chunk by chunk (expand_campaigns) for '
  'up to p_max_seconds, moves AI-campaign leads off dropped devices, and ends campaigns whose messages are done.';

-- Retry ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION retry_failed_messages(p_user_id bigint, p_campaign_id bigint, p_device_id bigint DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE c campaigns := _owned_campaign_for_update(p_user_id, p_campaign_id);
        v_queued integer;
BEGIN
  IF c.id IS NULL THEN RETURN NULL; END IF;
  IF c.status IN ('pending', 'triggered', 'cancelled') THEN
    RAISE EXCEPTION 'campaign % is % : only a running or ended campaign''s failed messages can be retried', c.id, c.status;
  END IF;
  IF p_device_id IS NOT NULL AND NOT p_device_id = ANY (_own_device_ids(p_user_id)) THEN
    RAISE EXCEPTION 'device % is not one of your devices', p_device_id USING ERRCODE = '22023';
  END IF;
  SELECT count(*) INTO v_queued FROM _enqueue_messages(array(
    SELECT ROW(m.user_id, coalesce(p_device_id, m.device_id), m.lead_id, m.recipient_phone, m.recipient_name,
               m.message_type, m.content, m.media_url, m.min_delay_seconds, m.max_delay_seconds, now(),
               c.paused_at IS NOT NULL, m.campaign_id, NULL, NULL, NULL, m.id)::message_draft
      FROM broadcast_messages m
     WHERE m.campaign_id = c.id AND m.status = 'failed'
       AND NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = m.id)
       AND NOT EXISTS (SELECT 1 FROM opt_outs o WHERE o.user_id = c.user_id AND o.phone = m.recipient_phone)));
  PERFORM settle_campaign(c.id);
  RETURN v_queued;
END $$;
COMMENT ON FUNCTION retry_failed_messages(bigint, bigint, bigint) IS
  'Queues a new message (retry_of = the failed one) for each failed, not yet retried message of a campaign, '
  'on p_device_id or the same device; failed rows stay as they are. Returns how many; NULL when not the owner''s.';

-- Report detail ---------------------------------------------------------------------------------
-- A message retried (explicitly, or moved off a dropped device) is superseded by its retry; the
-- reports count each lead's current attempt, and the history stays in broadcast_messages.
CREATE OR REPLACE FUNCTION _campaign_messages_current()
RETURNS TABLE (id bigint, campaign_id bigint, user_id bigint, device_id bigint, lead_id bigint, recipient_phone text,
               recipient_name text, status text, error_message text, sent_at timestamptz, delivered_at timestamptz,
               read_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT m.id, m.campaign_id, m.user_id, m.device_id, m.lead_id, m.recipient_phone, m.recipient_name, m.status,
         m.error_message, m.sent_at, m.delivered_at, m.read_at
    FROM broadcast_messages m
   WHERE m.campaign_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = m.id)
$$;
COMMENT ON FUNCTION _campaign_messages_current() IS
  'Campaign messages that are the current attempt for their lead (not superseded by a retry); inlined by its '
  'callers, so their filter on campaign_id reaches the table.';

-- The owner's rows of one campaign (current attempts), optionally of one device, with the device's
-- name: what campaign_report_leads pages through. Inlined by it.
CREATE OR REPLACE FUNCTION _campaign_report_rows(p_user_id bigint, p_campaign_id bigint, p_device_id bigint)
RETURNS TABLE (message_id bigint, lead_id bigint, recipient_phone text, recipient_name text, device_id bigint,
               device_name text, status text, error_message text, sent_at timestamptz, delivered_at timestamptz,
               read_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT m.id, m.lead_id, m.recipient_phone, m.recipient_name, m.device_id, d.device_name, m.status,
         m.error_message, m.sent_at, m.delivered_at, m.read_at
    FROM _campaign_messages_current() m
    JOIN campaigns c ON c.id = m.campaign_id AND c.user_id = p_user_id
    LEFT JOIN user_devices d ON d.id = m.device_id
   WHERE m.campaign_id = p_campaign_id
     AND (p_device_id IS NULL OR m.device_id = p_device_id)
$$;
COMMENT ON FUNCTION _campaign_report_rows(bigint, bigint, bigint) IS
  'The current attempts of one of the owner''s campaigns (optionally on one device) with their device''s name; '
  'the rows campaign_report_leads pages.';

-- A page of one settled status (sent, failed, skipped; delivered and read are sent rows with a
-- receipt) walks the history's (campaign_id, status, id) index in page order, probes each row's
-- retry by key and stops at its last row. The status is a range, not an equality: as an equality it
-- is a constant of the order, which every weekly partition's id index then also serves, filtering
-- by campaign, and the generic plan took that wherever the statistics showed few campaigns: it read
-- past every row of the others (a week holding 200k rows of another campaign: 150 ms a page at 50M
-- rows of history, 3 ms on the campaign's index). The constant list of settled statuses prunes the
-- queue partition when planned (it has no such index, and the ordered plan needs one in every
-- partition). Gathering, hashing or sorting the campaign's rows of a status (millions for a page of
-- 100) is what the planner picks whenever the statistics say the campaign is small: never here.
CREATE OR REPLACE FUNCTION _campaign_report_settled_page(p_user_id bigint, p_campaign_id bigint, p_device_id bigint,
                                                         p_bucket text, p_limit integer, p_offset integer)
RETURNS TABLE (message_id bigint, lead_id bigint, recipient_phone text, recipient_name text, device_id bigint,
               device_name text, status text, error_message text, sent_at timestamptz, delivered_at timestamptz,
               read_at timestamptz)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $$
DECLARE v_status text := CASE WHEN p_bucket IN ('delivered', 'read') THEN 'sent' ELSE p_bucket END;
BEGIN
  RETURN QUERY SELECT * FROM _campaign_report_rows(p_user_id, p_campaign_id, p_device_id) r
                WHERE (r.status, r.message_id) > (v_status, 0) AND r.status <= v_status
                  AND r.status IN ('sent', 'failed', 'skipped')
                  AND (p_bucket <> 'delivered' OR r.delivered_at IS NOT NULL)
                  AND (p_bucket <> 'read' OR r.read_at IS NOT NULL)
                ORDER BY r.status, r.message_id LIMIT p_limit OFFSET p_offset;
END $$;
COMMENT ON FUNCTION _campaign_report_settled_page(bigint, bigint, bigint, text, integer, integer) IS
  'One page of a campaign report''s settled bucket (sent, failed, skipped, delivered, read) for campaign_report_leads, '
  'read in the order of the history''s (campaign_id, status, id) index.';

-- A page of the live rows (pending, queued): the queue partition alone, so its cost follows the
-- queue, never the history.
CREATE OR REPLACE FUNCTION _campaign_report_live_page(p_user_id bigint, p_campaign_id bigint, p_device_id bigint,
                                                      p_limit integer, p_offset integer)
RETURNS TABLE (message_id bigint, lead_id bigint, recipient_phone text, recipient_name text, device_id bigint,
               device_name text, status text, error_message text, sent_at timestamptz, delivered_at timestamptz,
               read_at timestamptz)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN QUERY SELECT * FROM _campaign_report_rows(p_user_id, p_campaign_id, p_device_id) r
                WHERE r.status IN ('pending', 'queued')
                ORDER BY r.message_id LIMIT p_limit OFFSET p_offset;
END $$;
COMMENT ON FUNCTION _campaign_report_live_page(bigint, bigint, bigint, integer, integer) IS
  'One page of a campaign report''s live rows (pending and queued) in id order, for campaign_report_leads.';

-- One static query per kind of bucket, each planned once per session (a generic plan): a plan made
-- per call costs more than its execution, as every weekly history partition and its indexes are
-- planned for twice (the rows and their retries) -- 17 ms of planning for a 2 ms page with 3M
-- rows of history.
CREATE OR REPLACE FUNCTION campaign_report_leads(p_user_id bigint, p_campaign_id bigint, p_device_id bigint,
                                                 p_bucket text, p_limit integer DEFAULT 100, p_offset integer DEFAULT 0)
RETURNS TABLE (message_id bigint, lead_id bigint, recipient_phone text, recipient_name text, device_id bigint,
               device_name text, status text, error_message text, sent_at timestamptz, delivered_at timestamptz,
               read_at timestamptz)
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
DECLARE v_limit integer := least(greatest(p_limit, 1), 1000);
        v_offset integer := greatest(p_offset, 0);
BEGIN
  IF p_bucket NOT IN ('should_send', 'sent', 'failed', 'skipped', 'pending', 'delivered', 'read') THEN
    RAISE EXCEPTION 'unknown report column "%"', p_bucket USING ERRCODE = '22023';
  END IF;
  IF p_bucket = 'should_send' THEN
    -- Every status: the first rows of each, each read on its own index, merged. One walk of all the
    -- campaign's rows in id order read each week by its id index, stepping over other campaigns'
    -- rows (30k read for a page of 100 beside another campaign's 30k in the same week).
    RETURN QUERY SELECT * FROM (
        SELECT * FROM _campaign_report_live_page(p_user_id, p_campaign_id, p_device_id, v_limit + v_offset, 0)
        UNION ALL
        SELECT * FROM _campaign_report_settled_page(p_user_id, p_campaign_id, p_device_id, 'sent', v_limit + v_offset, 0)
        UNION ALL
        SELECT * FROM _campaign_report_settled_page(p_user_id, p_campaign_id, p_device_id, 'failed', v_limit + v_offset, 0)
        UNION ALL
        SELECT * FROM _campaign_report_settled_page(p_user_id, p_campaign_id, p_device_id, 'skipped', v_limit + v_offset, 0)
      ) r ORDER BY r.message_id LIMIT v_limit OFFSET v_offset;
  ELSIF p_bucket = 'pending' THEN
    RETURN QUERY SELECT * FROM _campaign_report_live_page(p_user_id, p_campaign_id, p_device_id, v_limit, v_offset);
  ELSE
    RETURN QUERY SELECT * FROM _campaign_report_settled_page(p_user_id, p_campaign_id, p_device_id, p_bucket,
                                                             v_limit, v_offset);
  END IF;
END $$;
COMMENT ON FUNCTION campaign_report_leads(bigint, bigint, bigint, text, integer, integer) IS
  'The leads behind one number of a campaign report (should_send, sent, failed, skipped, pending, delivered, '
  'read), optionally for one device; only for the owner''s campaigns.';

-- The report's settled page keeps one generic plan per session, and making it plans over every
-- weekly partition of the history and its indexes: 35-70 ms with 26 weeks, on the first page a
-- user opens on each new connection (and the web's pool replaces each of its connections hourly).
-- A new web connection makes it before it serves anyone, on ids that match no row.
CREATE OR REPLACE FUNCTION prepare_web_session() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM campaign_report_leads(0, 0, NULL, 'should_send', 1, 0);   -- the live and the settled pages
END $$;
COMMENT ON FUNCTION prepare_web_session() IS
  'Run by the web''s pool on each new connection: plans the campaign report''s pages (a generic plan over '
  'every week of the history, kept for the session) before a request needs them. Reads no row.';

CREATE OR REPLACE FUNCTION get_campaign(p_user_id bigint, p_campaign_id bigint)
RETURNS TABLE (id bigint, kind text, title text, niche text, target_status text, message text, image_url text,
               media_id bigint, device_ids bigint[], ai_limit_per_device integer, campaign_date text, time_schedule text,
               scheduled_at timestamptz, min_delay_seconds integer, max_delay_seconds integer, status text,
               status_reason text, paused_at timestamptz, created_at timestamptz, triggered_at timestamptz,
               expanded_at timestamptz, finished_at timestamptz, failover boolean)
LANGUAGE sql STABLE AS $$
  SELECT id, kind, title, niche, target_status, message, image_url, media_id, device_ids, ai_limit_per_device,
         to_char(campaign_date, 'YYYY-MM-DD'), to_char(time_schedule, 'HH24:MI'), scheduled_at, min_delay_seconds, max_delay_seconds, status, status_reason, paused_at,
         created_at, triggered_at, expanded_at, finished_at, failover
    FROM campaigns WHERE id = p_campaign_id AND user_id = p_user_id
$$;
COMMENT ON FUNCTION get_campaign(bigint, bigint) IS
  'One of the owner''s campaigns (no row for another owner''s id); date and time as the owner typed them (YYYY-MM-DD, HH24:MI).';
