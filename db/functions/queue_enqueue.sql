-- The message lifecycle's writers, part 1: queueing. Every new row of broadcast_messages is
-- written here — campaign fan-out and AI spread, sequence steps, retries of both, the chat view —
-- and only here (tests/test_message_lifecycle.py fails on any other writer).
--
-- What guards "one message per …": the queue partition's unique indexes for the live rows
-- (one per campaign and phone; one live step per enrollment, and so one first attempt per step
-- and one retry per failed step). A draft that would break one is left out by a probe of
-- that index (NOT EXISTS) rather than by ON CONFLICT DO NOTHING, whose speculative insertion
-- checks every unique index of every row: 150k campaign rows took 10.6 s with it, 8.0 s with the
-- probe. The probes see committed rows and the statement's own earlier ones, not a concurrent
-- writer's nor a twin in the same batch: the callers send no twins (a broadcast chunk keeps one
-- lead per phone, a step retry one step per contact), the campaign writers hold their campaign's
-- row lock, and a unique violation that still happens (a step retry racing the activation of the
-- same contact, say) is retried (below; its exception block is one subtransaction per call).
-- Settled rows live in message_history, where a partitioned unique index cannot reach, so:
--  - a campaign's sent rows are checked here, only for campaigns that have any (a first chunk
--    never does) and only in the campaign's weeks (_settled_for_campaign): a broadcast's check read
--    every week of the history for each lead, 3.8-6.2 s of CPU instead of 2.7-4.3 for 118,800
--    rows of one lane beside 32 nearly empty weeks;
--  - a sequence step's retry is checked here (retries are few);
--  - a step's first attempt is guarded by its enrollment: the activation writes the message and
--    moves the enrollment past that step in one statement under the enrollment's row lock, so
--    no later activation proposes it again (probing every week of history for each of a million
--    steps would cost more than the insert);
--  - a broadcast's chunk is guarded by its lane's phone cursor (p_fresh): it drafts whole phones after
--    the cursor and moves the cursor past them in its transaction, under the lane's row lock, so no
--    later chunk proposes them again; the campaign probes (one or more index descents per draft:
--    47 % of a sending campaign's insert) are skipped. Should the caller be wrong about a live row,
--    its unique index still raises, and the batch is written again with the probes.

-- The insert itself is a SQL function: its statement is planned afresh on each call, without the
-- drafts' values (told a batch holds 50k drafts, the planner hashes a whole history partition for
-- the checks above; a plan cached across calls kept the empty history's plan after it filled:
-- 2x slower fan-outs with 1.1M rows of history).
-- Its probes read message_queue while the statement grows it, which no statistics can show: told
-- the queue is empty (a new deployment, a drained queue just analyzed) the planner probed it by a
-- sequential scan per draft, free when empty and quadratic as the statement fills it (a first 50k
-- chunk: 33 s instead of 1.5 s). Sequential scans are off for this statement: it has none to make
-- (and its one trigger, the senders' wake-up, reads nothing).
CREATE OR REPLACE FUNCTION _insert_drafts(p_drafts message_draft[], p_fresh boolean)
RETURNS SETOF message_enqueued LANGUAGE sql
SET enable_seqscan = off
AS $$
  WITH d AS (
    SELECT * FROM unnest(p_drafts)
  ), settled_campaigns AS MATERIALIZED (
    SELECT cp.id AS campaign_id, cp.created_at
      FROM (SELECT DISTINCT d.campaign_id FROM d WHERE d.campaign_id IS NOT NULL) x
      JOIN campaigns cp ON cp.id = x.campaign_id
     -- one probe per campaign, ending at its first sent row: written as EXISTS, the planner may make it
     -- a semi-join that hashes every sent row of the history (one campaign filling the statistics:
     -- 45M rows read per fan-out chunk beside 50M rows of history, 26 s a chunk instead of 1)
     WHERE NOT p_fresh
       AND (SELECT true FROM message_history h
             WHERE h.campaign_id = cp.id AND h.status = 'sent'
               AND _settled_for_campaign(coalesce(h.sent_at, h.failed_at), cp.created_at)
             LIMIT 1)
  )
  INSERT INTO broadcast_messages (user_id, device_id, lead_id, recipient_phone, recipient_name, message_type,
                                  content, media_url, min_delay_seconds, max_delay_seconds, scheduled_at, held,
                                  campaign_id, sequence_id, sequence_stepid, enrollment_id, retry_of)
  SELECT d.user_id, d.device_id, d.lead_id, d.recipient_phone, d.recipient_name, coalesce(d.message_type, 'text'),
         d.content, d.media_url, d.min_delay_seconds, d.max_delay_seconds, coalesce(d.scheduled_at, now()),
         coalesce(d.held, false), d.campaign_id, d.sequence_id, d.sequence_stepid, d.enrollment_id, d.retry_of
    FROM d
   WHERE NOT (d.campaign_id IN (SELECT s.campaign_id FROM settled_campaigns s)
              AND EXISTS (SELECT 1 FROM message_history h
                           WHERE h.campaign_id = d.campaign_id AND h.recipient_phone = d.recipient_phone
                             AND h.status = 'sent'
                             AND _settled_for_campaign(coalesce(h.sent_at, h.failed_at),
                                                       (SELECT min(s.created_at) FROM settled_campaigns s))))
     AND NOT (d.retry_of IS NOT NULL AND d.sequence_stepid IS NOT NULL
              AND EXISTS (SELECT 1 FROM message_history h WHERE h.retry_of = d.retry_of))
     -- the live rows, each probe shaped like the index it reads (message_queue_campaign_phone,
     -- _one_active_step, _retry_of; one live row per enrollment also means one per step and one
     -- retry per failed step, migration 2103)
     AND NOT (NOT p_fresh AND d.campaign_id IS NOT NULL
              AND EXISTS (SELECT 1 FROM message_queue q
                           WHERE q.campaign_id = d.campaign_id AND q.recipient_phone = d.recipient_phone))
     AND NOT (d.enrollment_id IS NOT NULL
              AND EXISTS (SELECT 1 FROM message_queue q WHERE q.enrollment_id = d.enrollment_id))
     AND NOT (d.retry_of IS NOT NULL AND d.sequence_stepid IS NOT NULL
              AND EXISTS (SELECT 1 FROM message_queue q
                           WHERE q.retry_of = d.retry_of AND q.sequence_stepid IS NOT NULL))
  -- what the callers and the rollups read: no copy of each rendered row
  RETURNING id, enrollment_id, sequence_stepid, campaign_id, device_id, sequence_id, retry_of, user_id, held
$$;
COMMENT ON FUNCTION _insert_drafts(message_draft[], boolean) IS
  'The insert of _enqueue_messages (which see): the drafts as pending rows, less those the guards leave out (p_fresh: '
  'without the campaign guards); returns the id and keys of each row written.';

-- The rollups of new rows, kept here rather than by AFTER INSERT triggers, whose transition table
-- copied every queued row whole to count it (migration 2102). A new row is pending: it counts in
-- flight for its step (sequence_counter_deltas) and assigned, current and pending for its campaign
-- and device (campaign_counts), on a device and not held its device's queue (device_queue_count_deltas),
-- nothing in the sent/failed outcomes. A retry takes the place of
-- the attempt it retries (failed or skipped, in the history) in both.
CREATE OR REPLACE FUNCTION _count_enqueued(p_rows message_enqueued[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE v_deltas campaign_counts[];
        v_retried bigint[] := array(SELECT r.retry_of FROM unnest(p_rows) r WHERE r.retry_of IS NOT NULL);
        v_superseded broadcast_messages[];
BEGIN
  v_deltas := array(   -- what a pending row adds, as campaign_counts.sql defines it (_campaign_count_row)
    SELECT ROW(r.campaign_id, coalesce(r.device_id, 0), 0, count(*), sum(k.current), sum(k.sent), sum(k.failed),
               sum(k.skipped), sum(k.pending), sum(k.delivered), sum(k.read), sum(k.live_or_sent),
               count(r.retry_of))::campaign_counts
      FROM unnest(p_rows) r, _campaign_count_row('pending', false, false, 1) k
     WHERE r.campaign_id IS NOT NULL
     GROUP BY r.campaign_id, coalesce(r.device_id, 0));
  INSERT INTO sequence_counter_deltas (sequence_id, step_id, day, in_flight)
  SELECT r.sequence_id, r.sequence_stepid, NULL, count(*)
    FROM unnest(p_rows) r WHERE r.sequence_stepid IS NOT NULL
   GROUP BY r.sequence_id, r.sequence_stepid;
  PERFORM _append_device_queue_deltas(array_agg(c.user_id), array_agg(c.device_id), array_agg(c.live))
     FROM (SELECT r.user_id, r.device_id, count(*) AS live
             FROM unnest(p_rows) r WHERE _in_device_queue('pending', r.held, r.device_id)
            GROUP BY r.user_id, r.device_id) c;
  IF v_retried <> '{}' THEN   -- by id, in the history only (planning every week of it costs: retries only)
    v_superseded := array(SELECT o FROM broadcast_messages o
                           WHERE o.id = ANY (v_retried) AND o.status IN ('failed', 'skipped'));
    v_deltas := v_deltas || array(
      SELECT ROW(o.campaign_id, coalesce(o.device_id, 0), 0, 0, -1, 0, -(o.status = 'failed')::int,
                 -(o.status = 'skipped')::int, 0, 0, 0, 0, 0)::campaign_counts
        FROM unnest(v_superseded) o WHERE o.campaign_id IS NOT NULL);
    PERFORM _record_message_count_deltas('{}', array(SELECT o FROM unnest(v_superseded) o
                                                      WHERE o.sequence_stepid IS NOT NULL));
  END IF;
  IF v_deltas <> '{}' THEN
    PERFORM _add_campaign_counts(v_deltas);
  END IF;
END $$;
COMMENT ON FUNCTION _count_enqueued(message_enqueued[]) IS
  'Adds the rows _insert_drafts wrote to campaign_counts, sequence_counter_deltas (in flight) and '
  'device_queue_count_deltas (waiting: those on a device, not held), and takes '
  'the attempts retried among them out of their current and outcome counts.';

CREATE OR REPLACE FUNCTION _enqueue_messages(p_drafts message_draft[], p_fresh boolean DEFAULT false)
RETURNS TABLE (id bigint, enrollment_id bigint, sequence_stepid bigint) LANGUAGE plpgsql AS $$
DECLARE v_rows message_enqueued[];
BEGIN
  FOR attempt IN 1..3 LOOP
    BEGIN
      v_rows := array(SELECT i FROM _insert_drafts(p_drafts, p_fresh AND attempt = 1) i);
      EXIT;
    EXCEPTION WHEN unique_violation THEN
      -- A concurrent writer committed the same key between our probe and our insert (the index
      -- waited for it), or drafts said fresh were not: a new statement with the probes sees the
      -- row and leaves the draft out. Twins within one batch fail every attempt: a caller's bug, raised.
      IF attempt = 3 THEN RAISE; END IF;
    END;
  END LOOP;
  PERFORM _count_enqueued(v_rows);
  -- In the caller's transaction, so the statistics commit with the rows (queue.sql, refresh_queue_stats).
  PERFORM refresh_queue_stats(cardinality(v_rows));
  RETURN QUERY SELECT r.id, r.enrollment_id, r.sequence_stepid FROM unnest(v_rows) r;
END $$;
COMMENT ON FUNCTION _enqueue_messages(message_draft[], boolean) IS
  'The one writer of new messages: inserts the drafts as pending rows (held when the draft says so) and returns '
  'the id, enrollment_id and sequence_stepid of each row written. A draft that would be a second message for a '
  'campaign and phone (live or sent), a second first attempt of a step for an enrollment, or a second retry of a '
  'failed step is left out; the drafts of one call must not repeat such a key (a unique violation is raised). '
  'p_fresh: the caller knows no draft''s campaign has its phone yet (a broadcast''s chunk), so those probes are '
  'skipped (a live row it missed still raises in its unique index, and the batch is written again with them). '
  'The insert wakes the senders (trigger broadcast_messages_3_wake) and is counted in the rollups (_count_enqueued); '
  'a batch that grows the queue by half '
  're-analyzes it before the caller commits (refresh_queue_stats).';
