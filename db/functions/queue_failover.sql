-- Failover (issue 17): the due messages of campaigns and sequences with failover on leave a device
-- that is banned, logged out or offline for the failover_offline_minutes setting, for another
-- online device of the same owner with room today. Only pending rows move (guarded, locked), so a
-- message is never sent twice; rows that find no room wait, and where skip_undeliverable would
-- skip them anyway they are skipped as no_failover_device. skip_undeliverable calls it first.

CREATE OR REPLACE FUNCTION _failover_messages(p_offline_grace interval)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_moved integer;
        v_unplaced bigint[];
        v_lost bigint[];
BEGIN
  -- Lost devices of owners with failover on somewhere (a campaign not cancelled, an active
  -- sequence), found first: a lost device's waiting messages would be read each minute until they
  -- go (through a temporary ban: for hours), and with failover off (the default) none of them would
  -- move (1M waiting on lost devices: 142 ms a minute for nothing). Usually there are none.
  v_lost := array(
    SELECT d.id FROM user_devices d
     WHERE (d.status IN ('banned', 'logged_out')
            OR (d.status IN ('offline', 'connecting')
                AND d.status_changed_at < now() - make_interval(mins => setting('failover_offline_minutes')::int)))
       AND (EXISTS (SELECT 1 FROM campaigns c WHERE c.user_id = d.user_id AND c.failover AND c.status <> 'cancelled')
            OR EXISTS (SELECT 1 FROM sequences s WHERE s.user_id = d.user_id AND s.failover AND s.status = 'active')));
  IF v_lost = '{}' THEN
    RETURN 0;
  END IF;
  WITH lost AS (
    SELECT d.id, d.user_id,
           -- past what skip_undeliverable allows: no room means skipped rather than waiting
           d.status = 'logged_out' OR (d.status = 'banned' AND (d.banned_until IS NULL OR d.banned_until < now() - p_offline_grace))
             OR (d.status IN ('offline', 'connecting') AND d.status_changed_at < now() - p_offline_grace) AS final
      FROM user_devices d
     WHERE d.id = ANY (v_lost)
  ), waiting AS (
    SELECT m.id, m.user_id, m.device_id AS from_device, l.final,
           row_number() OVER (PARTITION BY m.user_id ORDER BY m.scheduled_at, m.id) AS n
      FROM lost l
      JOIN broadcast_messages m ON m.device_id = l.id
      LEFT JOIN campaigns c ON c.id = m.campaign_id
      LEFT JOIN sequences s ON s.id = m.sequence_id
     WHERE m.status = 'pending' AND NOT m.held AND m.scheduled_at <= now() AND coalesce(c.failover, s.failover, false)
  ), room AS (
    -- Devices that can send now (online, unpaused, not timelocked), least loaded first; each takes
    -- the messages numbered within its share of its owner's room (what its caps leave today).
    SELECT t.device_id, t.user_id,
           sum(t.room) OVER w - t.room AS first_n, sum(t.room) OVER w AS last_n
      FROM (SELECT dl.device_id, dl.user_id, dl.load_score,
                   greatest(0, least(dl.hourly_limit - dl.messages_hour, lim.daily_cap - dl.messages_today)) AS room
              FROM device_load((SELECT array_agg(DISTINCT w.user_id) FROM waiting w)) dl
              JOIN user_devices d ON d.id = dl.device_id
              JOIN users u ON u.id = d.user_id
              CROSS JOIN LATERAL _device_send_limits(d.daily_limit, d.warmup_started_at, d.timelocked_until, u.timezone) lim
             WHERE dl.is_available AND NOT lim.timelocked) t
    WINDOW w AS (PARTITION BY t.user_id ORDER BY t.load_score, t.device_id)
  ), target AS (
    SELECT w.id, w.from_device, w.final, r.device_id
      FROM waiting w LEFT JOIN room r ON r.user_id = w.user_id AND w.n > r.first_n AND w.n <= r.last_n
  ), locked AS (
    SELECT m.id, t.from_device, t.device_id, t.final
      FROM target t JOIN broadcast_messages m ON m.id = t.id
     WHERE m.status = 'pending' AND (t.device_id IS NOT NULL OR t.final)
       FOR UPDATE OF m SKIP LOCKED
  ), moved AS (
    UPDATE broadcast_messages m SET device_id = l.device_id
      FROM locked l WHERE m.id = l.id AND m.status = 'pending' AND l.device_id IS NOT NULL   -- the queue partition
    RETURNING m.id, l.from_device
  ), logged AS (
    INSERT INTO device_events (device_id, event, detail)
    SELECT x.from_device, 'failover', count(*) || ' waiting messages moved to other devices'
      FROM moved x GROUP BY x.from_device
  )
  SELECT (SELECT count(*) FROM moved), array(SELECT l.id FROM locked l WHERE l.device_id IS NULL)
    INTO v_moved, v_unplaced;
  PERFORM _skip_messages(v_unplaced, 'no_failover_device');
  IF v_moved > 0 THEN
    PERFORM pg_notify('wa_dispatch', '');   -- the devices they moved to may send them now
  END IF;
  RETURN v_moved;
END $$;
COMMENT ON FUNCTION _failover_messages(interval) IS
  'Moves the due pending messages of campaigns and sequences with failover on from devices banned, logged out or '
  'offline/connecting for failover_offline_minutes to online, unpaused, untimelocked devices of the same owner '
  'with room under their caps today (least loaded first). Messages that find no room wait; those whose device '
  'is past p_offline_grace (what skip_undeliverable skips) are skipped with the reason no_failover_device. '
  'Each lost device logs a failover event with the count moved. Returns how many moved.';
