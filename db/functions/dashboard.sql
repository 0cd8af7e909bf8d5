-- The overview and monitoring pages: every count scoped to one owner, days and hours in the
-- owner's zone. Sent/failed figures come from a rollup (message_outcome_counts) and queue depth
-- from narrow partial indexes, so the cost follows the owner's devices and backlog, not the
-- size of the history nor the day's volume.

CREATE OR REPLACE FUNCTION _owner_day_start(p_user_id bigint)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT date_trunc('day', now() AT TIME ZONE u.timezone) AT TIME ZONE u.timezone FROM users u WHERE u.id = p_user_id
$$;
COMMENT ON FUNCTION _owner_day_start(bigint) IS 'The instant of the owner''s most recent local midnight.';

-- Outcome rollup ------------------------------------------------------------------------------
-- message_outcome_counts (migration 0551) mirrors count(*) of sent/failed messages per owner and
-- quarter hour: every statement that deletes or moves messages into or out of sent/failed
-- (or changes their sent_at/failed_at) adds its rows' buckets and removes the old ones. One upsert
-- per owner and quarter hour per statement; rows staying pending/queued cost a filter.
CREATE OR REPLACE FUNCTION _message_outcome_bucket(p_at timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT date_bin('15 minutes', p_at, timestamptz '2000-01-01 00:00+00')
$$;
COMMENT ON FUNCTION _message_outcome_bucket(timestamptz) IS 'The quarter hour message_outcome_counts files an instant under.';

CREATE OR REPLACE FUNCTION _add_message_outcomes(p_user_ids bigint[], p_buckets timestamptz[], p_sent bigint[],
                                                p_failed bigint[])
RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  -- The shard follows the connection: two senders' statements never wait on each other's row.
  INSERT INTO message_outcome_counts AS c (user_id, bucket, shard, sent, failed)
  SELECT r.user_id, r.bucket, pg_backend_pid() % 16, sum(r.sent), sum(r.failed)
    FROM unnest(p_user_ids, p_buckets, p_sent, p_failed) AS r(user_id, bucket, sent, failed)
   -- an owner being deleted takes its rollup along; a probe per row (the plan is kept for the session:
   -- as a semi-join planned while owners were few it re-read the batch per owner)
   WHERE (SELECT true FROM users u WHERE u.id = r.user_id)
   GROUP BY r.user_id, r.bucket
  HAVING sum(r.sent) <> 0 OR sum(r.failed) <> 0
   ORDER BY r.user_id, r.bucket  -- one lock order for every writer
  ON CONFLICT (user_id, bucket, shard) DO UPDATE SET sent = c.sent + excluded.sent, failed = c.failed + excluded.failed;
  -- and fleet-wide (message_outcome_totals: /metrics reads 16 rows, not every owner's quarter hours)
  INSERT INTO message_outcome_totals AS t (shard, sent, failed)
  SELECT pg_backend_pid() % 16, sum(r.sent), sum(r.failed)
    FROM unnest(p_user_ids, p_sent, p_failed) AS r(user_id, sent, failed)
   WHERE (SELECT true FROM users u WHERE u.id = r.user_id)
  HAVING sum(r.sent) <> 0 OR sum(r.failed) <> 0
  ON CONFLICT (shard) DO UPDATE SET sent = t.sent + excluded.sent, failed = t.failed + excluded.failed;
END $$;
COMMENT ON FUNCTION _add_message_outcomes(bigint[], timestamptz[], bigint[], bigint[]) IS
  'Adds signed sent/failed counts (parallel arrays: owner, quarter hour, sent, failed) to message_outcome_counts '
  'and their sum to message_outcome_totals.';

CREATE OR REPLACE FUNCTION count_message_outcomes() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  v_users bigint[]; v_buckets timestamptz[]; v_sent bigint[]; v_failed bigint[];
BEGIN
  -- Aggregated per owner and quarter hour here; only the changes cross into the upsert. An update
  -- adds its new rows and subtracts its old ones (summed, never joined: see count_campaign_messages),
  -- so a receipt's, which leaves status and time as they were, calls nothing. New rows are pending
  -- (their writer, _enqueue_messages, has no INSERT trigger): nothing to count.
  IF TG_OP = 'UPDATE' THEN
    SELECT array_agg(t.user_id), array_agg(t.bucket), array_agg(t.sent), array_agg(t.failed)
      INTO v_users, v_buckets, v_sent, v_failed
      FROM (SELECT r.user_id, _message_outcome_bucket(r.at) AS bucket,
                   sum(CASE WHEN r.status = 'sent' THEN r.sign ELSE 0 END) AS sent,
                   sum(CASE WHEN r.status = 'failed' THEN r.sign ELSE 0 END) AS failed
              FROM (SELECT n.user_id, coalesce(n.sent_at, n.failed_at) AS at, n.status, 1 AS sign
                      FROM new_rows n WHERE n.status IN ('sent', 'failed')
                    UNION ALL
                    SELECT o.user_id, coalesce(o.sent_at, o.failed_at), o.status, -1
                      FROM old_rows o WHERE o.status IN ('sent', 'failed')) r
             GROUP BY 1, 2) t
     WHERE t.sent <> 0 OR t.failed <> 0;
  ELSE
    SELECT array_agg(t.user_id), array_agg(t.bucket), array_agg(-t.sent), array_agg(-t.failed)
      INTO v_users, v_buckets, v_sent, v_failed
      FROM (SELECT o.user_id, _message_outcome_bucket(coalesce(o.sent_at, o.failed_at)) AS bucket,
                   count(*) FILTER (WHERE o.status = 'sent') AS sent, count(*) FILTER (WHERE o.status = 'failed') AS failed
              FROM old_rows o WHERE o.status IN ('sent', 'failed') GROUP BY 1, 2) t;
  END IF;
  IF v_users IS NOT NULL THEN
    PERFORM _add_message_outcomes(v_users, v_buckets, v_sent, v_failed);
  END IF;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION count_message_outcomes() IS
  'Statement trigger on broadcast_messages (UPDATE, DELETE): keeps message_outcome_counts equal to the sent/failed '
  'rows per owner and quarter hour (new rows are pending).';

-- Its triggers are in db/functions/triggers_broadcast_messages.sql.

-- The queue per device, for the overview and the monitoring page (migrations 2134, 2135): messages
-- pending and not held, or in flight, on a device. Counting them on each refresh read one index
-- entry per waiting row (1M waiting: 148 ms a refresh of the overview, 167-300 ms of the monitoring
-- page, every 1.5-2 s of an open page while a campaign sends). The claim changes nothing here
-- (pending to queued: both live, on the same device); new rows are counted by _count_enqueued.
CREATE OR REPLACE FUNCTION _in_device_queue(p_status text, p_held boolean, p_device_id bigint) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p_status IN ('pending', 'queued') AND NOT p_held AND p_device_id IS NOT NULL
$$;
COMMENT ON FUNCTION _in_device_queue(text, boolean, bigint) IS
  'Whether a message counts in its device''s queue (device_queue_counts): pending and not held, or in flight, on a device.';

-- One row per owner, however many devices the statement touched.
CREATE OR REPLACE FUNCTION _append_device_queue_deltas(p_users bigint[], p_devices bigint[], p_lives bigint[])
RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan   -- on the send path: planned once per session
AS $$
BEGIN
  INSERT INTO device_queue_count_deltas (user_id, device_ids, lives, live)
  SELECT c.user_id, array_agg(c.device_id), array_agg(c.live), sum(c.live)
    FROM unnest(p_users, p_devices, p_lives) AS c(user_id, device_id, live)
   WHERE c.live <> 0
   GROUP BY c.user_id;
END $$;
COMMENT ON FUNCTION _append_device_queue_deltas(bigint[], bigint[], bigint[]) IS
  'Appends to device_queue_count_deltas the change p_lives[i] of device p_devices[i] of owner p_users[i] (one per '
  'device), one row per owner; changes of zero are left out.';

CREATE OR REPLACE FUNCTION count_device_queue() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    PERFORM _append_device_queue_deltas(array_agg(c.user_id), array_agg(c.device_id), array_agg(c.live))
       FROM (SELECT r.user_id, r.device_id, sum(r.sign)::bigint AS live
               FROM (SELECT n.user_id, n.device_id, 1 AS sign FROM new_rows n
                      WHERE _in_device_queue(n.status, n.held, n.device_id)
                     UNION ALL
                     SELECT o.user_id, o.device_id, -1 FROM old_rows o
                      WHERE _in_device_queue(o.status, o.held, o.device_id)) r
              GROUP BY r.user_id, r.device_id) c;
  ELSE
    PERFORM _append_device_queue_deltas(array_agg(c.user_id), array_agg(c.device_id), array_agg(c.live))
       FROM (SELECT o.user_id, o.device_id, -count(*) AS live FROM old_rows o
              WHERE _in_device_queue(o.status, o.held, o.device_id)
              GROUP BY o.user_id, o.device_id) c;
  END IF;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION count_device_queue() IS
  'Statement trigger on broadcast_messages (UPDATE, DELETE): appends to device_queue_count_deltas the change in each '
  'device''s messages pending (not held) or in flight (new rows are counted by _count_enqueued).';

CREATE OR REPLACE FUNCTION fold_device_queue_counts() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_devices integer;
BEGIN
  WITH moved AS (DELETE FROM device_queue_count_deltas RETURNING user_id, device_ids, lives),
  summed AS (
    SELECT c.device_id, min(m.user_id) AS user_id, sum(c.live)::bigint AS live
      FROM moved m, unnest(m.device_ids, m.lives) AS c(device_id, live)
     WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = m.user_id)   -- deleted since: dropped
     GROUP BY c.device_id),
  folded AS (
    INSERT INTO device_queue_counts AS q (device_id, user_id, live)
    SELECT s.device_id, s.user_id, s.live FROM summed s
     ORDER BY s.device_id   -- two folds at once lock the rows in one order
    ON CONFLICT (device_id) DO UPDATE SET live = q.live + excluded.live
    RETURNING 1)
  SELECT count(*) INTO v_devices FROM folded;
  -- A deleted device's row, once the deltas of its rows leaving it brought it to zero.
  DELETE FROM device_queue_counts q
   WHERE q.live = 0 AND NOT EXISTS (SELECT 1 FROM user_devices d WHERE d.id = q.device_id);
  RETURN v_devices;
END $$;
COMMENT ON FUNCTION fold_device_queue_counts() IS
  'Moves the deltas of device_queue_count_deltas into device_queue_counts (a job, every minute) and drops the rows '
  'of deleted devices once at zero; returns the devices touched.';

-- Run by every apply, right after it (re)creates this rollup's triggers (triggers_broadcast_messages.sql):
-- the functions and triggers that keep it take effect when that apply commits, so writes that ran
-- the code before them (a migration's first apply; a release's old processes meanwhile) are not in
-- it. Under the lock no writer runs until the apply commits, and after it every writer counts.
CREATE OR REPLACE FUNCTION recount_device_queue() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_off integer;
BEGIN
  -- The lock CREATE TRIGGER takes: no writes through broadcast_messages from the count to the
  -- commit, reads go on. Not its partitions: the claim, which writes message_queue itself, changes
  -- no count here and goes on too.
  LOCK TABLE ONLY broadcast_messages IN SHARE ROW EXCLUSIVE MODE;
  PERFORM fold_device_queue_counts();
  WITH counted AS (
    SELECT m.device_id, min(m.user_id) AS user_id, count(*) AS live FROM message_queue m
     WHERE _in_device_queue(m.status, m.held, m.device_id) AND EXISTS (SELECT 1 FROM users u WHERE u.id = m.user_id)
     GROUP BY m.device_id
  ), off AS (
    SELECT coalesce(k.device_id, c.device_id) AS device_id, coalesce(k.user_id, c.user_id) AS user_id,
           coalesce(k.live, 0) AS live
      FROM counted k FULL JOIN device_queue_counts c ON c.device_id = k.device_id
     WHERE coalesce(k.live, 0) <> coalesce(c.live, 0)
  ), fixed AS (
    INSERT INTO device_queue_counts AS c (device_id, user_id, live) SELECT o.device_id, o.user_id, o.live FROM off o
    ON CONFLICT (device_id) DO UPDATE SET live = excluded.live
    RETURNING 1
  )
  SELECT count(*) INTO v_off FROM fixed;
  IF v_off > 0 THEN
    RAISE WARNING 'device_queue_counts was off for % device(s): recounted from the queue', v_off;
  END IF;
  RETURN v_off;
END $$;
COMMENT ON FUNCTION recount_device_queue() IS
  'Sets device_queue_counts to the queue as counted, writes held off meanwhile (run by every apply); returns the '
  'devices that were off (and warns when any was).';

CREATE OR REPLACE FUNCTION _owner_queue_live(p_user_id bigint) RETURNS bigint LANGUAGE sql STABLE AS $$
  SELECT (coalesce((SELECT sum(c.live) FROM device_queue_counts c WHERE c.user_id = p_user_id), 0)
          + coalesce((SELECT sum(d.live) FROM device_queue_count_deltas d WHERE d.user_id = p_user_id), 0))::bigint
$$;
COMMENT ON FUNCTION _owner_queue_live(bigint) IS
  'The owner''s messages pending (not held) or in flight on a device: its devices'' device_queue_counts plus the '
  'deltas not folded.';

-- Overview ------------------------------------------------------------------------------------
-- In flight counted by the in-flight index (a sender holds a few thousand at most); waiting is
-- the owner's live rows less those, both read in the statement's one snapshot.
CREATE OR REPLACE FUNCTION dashboard_today(p_user_id bigint)
RETURNS TABLE (day_start timestamptz, sent bigint, failed bigint, pending bigint, in_flight bigint)
LANGUAGE sql STABLE AS $$
  WITH day AS (SELECT _owner_day_start(p_user_id) AS t0),
  done AS (SELECT coalesce(sum(o.sent), 0)::bigint AS sent, coalesce(sum(o.failed), 0)::bigint AS failed
             FROM message_outcome_counts o, day WHERE o.user_id = p_user_id AND o.bucket >= day.t0),
  flying AS (SELECT count(*) AS in_flight FROM broadcast_messages m
              WHERE m.status = 'queued' AND m.device_id = ANY ((SELECT _own_device_ids(p_user_id))::bigint[]))
  SELECT day.t0, done.sent, done.failed, _owner_queue_live(p_user_id) - flying.in_flight, flying.in_flight
    FROM day, done, flying
$$;
COMMENT ON FUNCTION dashboard_today(bigint) IS
  'Overview figures for the owner''s calendar day: messages sent and failed since local midnight (from '
  'message_outcome_counts), and the queue now: pending (waiting for a device, held ones excluded; from '
  'device_queue_counts) and in flight (claimed by a sender).';

CREATE OR REPLACE FUNCTION dashboard_hourly(p_user_id bigint, p_hours integer DEFAULT 24)
RETURNS TABLE (hour_start timestamptz, sent bigint, failed bigint)
LANGUAGE sql STABLE AS $$
  WITH zone AS (SELECT u.timezone AS tz FROM users u WHERE u.id = p_user_id),
  hours AS (
    SELECT (date_trunc('hour', now() AT TIME ZONE zone.tz) - make_interval(hours => n)) AT TIME ZONE zone.tz AS h
      FROM zone, generate_series(least(greatest(p_hours, 1), 168) - 1, 0, -1) AS n
  ),
  done AS (
    SELECT date_trunc('hour', o.bucket AT TIME ZONE zone.tz) AT TIME ZONE zone.tz AS h,
           sum(o.sent)::bigint AS sent, sum(o.failed)::bigint AS failed
      FROM message_outcome_counts o, zone
     WHERE o.user_id = p_user_id AND o.bucket >= (SELECT min(h) FROM hours)
     GROUP BY 1
  )
  SELECT hours.h, coalesce(done.sent, 0), coalesce(done.failed, 0)
    FROM hours LEFT JOIN done USING (h)
   ORDER BY hours.h
$$;
COMMENT ON FUNCTION dashboard_hourly(bigint, integer) IS
  'Messages sent and failed per hour of the owner''s zone over the last p_hours hours (1..168), oldest first, '
  'every hour present (zeros included); read from message_outcome_counts.';

CREATE OR REPLACE FUNCTION dashboard_devices_by_health(p_user_id bigint)
RETURNS TABLE (status text, devices bigint)
LANGUAGE sql STABLE AS $$
  SELECT s.status, count(d.id)
    FROM unnest(ARRAY['online', 'connecting', 'offline', 'banned', 'logged_out']) WITH ORDINALITY AS s(status, pos)
    LEFT JOIN user_devices d ON d.user_id = p_user_id AND d.status = s.status
   GROUP BY s.status, s.pos
   ORDER BY s.pos
$$;
COMMENT ON FUNCTION dashboard_devices_by_health(bigint) IS
  'The owner''s devices counted per status (every status listed, zeros included), healthiest first.';

-- What each device holds from the rollup (device_queue_counts and the deltas not folded yet); read
-- from the rows only what is in flight (a sender holds a few thousand at most), what waits for a
-- later time (retries, send windows: a time the rollup cannot split by) and each device's first
-- waiting row, one probe of its due index. Counting every waiting row here cost 167-300 ms a refresh
-- with 1M waiting on 3,000 devices, every 2 s of an open page while a campaign sends.
CREATE OR REPLACE FUNCTION monitor_queue_depth(p_user_id bigint, p_device_ids bigint[] DEFAULT NULL)
RETURNS TABLE (device_id bigint, device_name text, device_status text, due_now bigint,
               scheduled_later bigint, in_flight bigint, oldest_due_at timestamptz)
LANGUAGE sql STABLE AS $$
  -- The page's devices (p_device_ids; NULL: every one) as "NULL or listed" among the owner's: planned
  -- for the call, the filter is the owner's devices (their count known) or the list (its length
  -- known). An array computed in the query instead is guessed at 10 devices, and some plans of the
  -- whole fleet then took 6-8 s (3,000 devices, the queue's statistics fresh).
  WITH own AS MATERIALIZED (   -- once, not per row
    SELECT array(SELECT d.id FROM user_devices d
                  WHERE d.user_id = p_user_id AND (p_device_ids IS NULL OR d.id = ANY (p_device_ids))) AS ids),
  unfolded AS (   -- the changes since the minute's job last folded them into device_queue_counts
    SELECT u.device_id, sum(u.live) AS live
      FROM device_queue_count_deltas q, unnest(q.device_ids, q.lives) AS u(device_id, live)
     WHERE q.user_id = p_user_id
     GROUP BY u.device_id
  ), later AS (
    SELECT m.device_id, count(*) AS scheduled_later
      FROM broadcast_messages m
     WHERE m.status = 'pending' AND NOT m.held AND m.scheduled_at > now()
       AND m.device_id = ANY ((SELECT ids FROM own)::bigint[])
     GROUP BY m.device_id
  ), flying AS (
    SELECT m.device_id, count(*) AS in_flight
      FROM broadcast_messages m
     WHERE m.status = 'queued' AND m.device_id = ANY ((SELECT ids FROM own)::bigint[])
     GROUP BY m.device_id
  )
  SELECT d.id, d.device_name, d.status,
         coalesce(c.live, 0) + coalesce(u.live, 0) - coalesce(f.in_flight, 0) - coalesce(s.scheduled_later, 0),
         coalesce(s.scheduled_later, 0), coalesce(f.in_flight, 0), first_waiting.scheduled_at
    FROM user_devices d
    LEFT JOIN device_queue_counts c ON c.device_id = d.id
    LEFT JOIN unfolded u ON u.device_id = d.id
    LEFT JOIN later s ON s.device_id = d.id
    LEFT JOIN flying f ON f.device_id = d.id
    -- In the device's due index order (held is false throughout), which no other path gives without
    -- a sort: ordered by time alone, the plan walked the time-ordered index of every device's rows to
    -- find this device's first (tests/test_plan_guards.py).
    LEFT JOIN LATERAL (SELECT m.scheduled_at FROM broadcast_messages m
                        WHERE m.device_id = d.id AND m.status = 'pending' AND NOT m.held
                        ORDER BY m.held, m.scheduled_at, m.id LIMIT 1) first_waiting ON true
   WHERE d.user_id = p_user_id AND (p_device_ids IS NULL OR d.id = ANY (p_device_ids))
   ORDER BY d.id
$$;
COMMENT ON FUNCTION monitor_queue_depth(bigint, bigint[]) IS
  'Per device of the owner (those of p_device_ids; NULL: all): pending messages due now and scheduled later (held '
  'ones excluded), messages in flight (claimed by a sender), and the oldest pending due time (how far behind the '
  'device is).';

-- Sender processes are shared by every tenant: an owner sees that a sender runs their devices and
-- is alive, under a label; its host, pid, capacity and other tenants' device counts are for
-- administrators.
CREATE OR REPLACE FUNCTION _sender_label(p_sender_id text, p_admin boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p_admin THEN p_sender_id ELSE 'sender ' || left(md5(p_sender_id), 8) END
$$;
COMMENT ON FUNCTION _sender_label(text, boolean) IS
  'How a sender is named to a user: its id (host:pid:...) for an administrator, a stable opaque label for others.';

CREATE OR REPLACE FUNCTION monitor_senders(p_user_id bigint)
RETURNS TABLE (sender_id text, hostname text, pid integer, capacity integer, started_at timestamptz,
               heartbeat_at timestamptz, heartbeat_age_seconds integer, alive boolean, stopping boolean,
               devices_leased integer, own_devices_leased integer)
LANGUAGE sql STABLE AS $$
  SELECT _sender_label(h.sender_id, me.admin), CASE WHEN me.admin THEN h.hostname END,
         CASE WHEN me.admin THEN h.pid END, CASE WHEN me.admin THEN h.capacity END, h.started_at,
         h.heartbeat_at, h.heartbeat_age_seconds, h.alive, h.stopping,
         CASE WHEN me.admin THEN h.devices_leased END, own.n
    FROM _sender_heartbeats() h
   CROSS JOIN (SELECT coalesce((SELECT u.is_admin FROM users u WHERE u.id = p_user_id), false) AS admin) me
   CROSS JOIN LATERAL (
     SELECT count(*)::int AS n FROM device_leases l JOIN user_devices d ON d.id = l.device_id
      WHERE l.sender_id = h.sender_id AND d.user_id = p_user_id AND l.expires_at > now()) own
   WHERE own.n > 0 OR me.admin
   ORDER BY h.alive DESC, h.sender_id
$$;
COMMENT ON FUNCTION monitor_senders(bigint) IS
  'Sender processes with their heartbeats: those running the owner''s devices (labelled, without host, pid, '
  'capacity or other tenants'' counts), or every one in full for an admin.';

CREATE OR REPLACE FUNCTION monitor_device_load(p_user_id bigint, p_device_ids bigint[] DEFAULT NULL)
RETURNS TABLE (device_id bigint, device_name text, device_status text, messages_hour integer,
               hourly_limit integer, messages_today integer, daily_limit integer, processing_now integer,
               last_sent_at timestamptz, sender_id text, lease_expires_at timestamptz)
LANGUAGE sql STABLE AS $$
  -- Each sender's label once, not once per device: an md5 costs ~1.5 us, 4.5 ms of the ~20 a refresh
  -- of 3,000 devices took (every 2 s of an open page). A lease whose sender row is gone (pruned a day
  -- after its last heartbeat) is labelled where it is read.
  WITH labels AS MATERIALIZED (
    SELECT s.id, _sender_label(s.id, (SELECT u.is_admin FROM users u WHERE u.id = p_user_id)) AS label
      FROM senders s)
  SELECT p.device_id, p.device_name, p.device_status, p.messages_hour, p.hourly_limit, p.messages_today,
         p.daily_limit, p.processing_now, p.last_sent_at,
         coalesce(lab.label, _sender_label(l.sender_id, (SELECT u.is_admin FROM users u WHERE u.id = p_user_id))),
         l.expires_at
    FROM device_load(ARRAY[p_user_id]) p
    LEFT JOIN device_leases l ON l.device_id = p.device_id
    LEFT JOIN labels lab ON lab.id = l.sender_id
   WHERE p_device_ids IS NULL OR p.device_id = ANY (p_device_ids)   -- as in monitor_queue_depth
   ORDER BY p.device_id
$$;
COMMENT ON FUNCTION monitor_device_load(bigint, bigint[]) IS
  'Per device of the owner (those of p_device_ids; NULL: all): sends in the trailing hour and today against its '
  'caps, in flight now, last send, and which sender holds it (lease).';
