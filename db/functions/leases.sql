-- Senders and device leases: each device is run by exactly one sender at a time. A sender
-- registers, takes free or expired leases up to its fair share, renews them with its heartbeat,
-- sheds the excess when other senders join, and releases everything when it stops. A dead
-- sender's devices are taken over once their leases expire.

CREATE OR REPLACE FUNCTION register_sender(p_sender_id text, p_hostname text, p_pid integer, p_capacity integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO senders (id, hostname, pid, capacity) VALUES (p_sender_id, p_hostname, p_pid, p_capacity)
  ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid, capacity = excluded.capacity,
                                 heartbeat_at = now(), stopping = false
   WHERE senders.given_up_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'sender % was given up when its leases lapsed (the claims it had not begun went back to the '
                    'queue): it must not send again; start a new sender', p_sender_id USING ERRCODE = '55000';
  END IF;
END $$;
COMMENT ON FUNCTION register_sender(text, text, integer, integer) IS
  'Records a live sender process (or refreshes it) before it takes leases; raises 55000 for a sender given up '
  '(give_up_silent_senders).';

CREATE OR REPLACE FUNCTION runnable_device_count()
RETURNS bigint LANGUAGE sql STABLE AS $$
  SELECT count(*) FROM user_devices WHERE status <> 'logged_out' AND (resume_after IS NULL OR resume_after <= now())
$$;
COMMENT ON FUNCTION runnable_device_count() IS
  'Devices senders should run: not logged out and not held by hold_device. Fair shares and the sender pool''s '
  'size follow it.';

CREATE OR REPLACE FUNCTION _sender_fair_share(p_sender_id text, p_capacity integer, p_ttl interval)
RETURNS integer LANGUAGE sql STABLE AS $$
  SELECT least(p_capacity,
               ceil(runnable_device_count()::numeric
                    / greatest(1, (SELECT count(*) FROM senders
                                    WHERE (heartbeat_at > now() - p_ttl AND NOT stopping) OR id = p_sender_id)))::int)
$$;
COMMENT ON FUNCTION _sender_fair_share(text, integer, interval) IS
  'How many devices one sender should run: runnable devices (runnable_device_count) spread over live senders, '
  'at most its capacity.';

CREATE OR REPLACE FUNCTION acquire_leases(p_sender_id text, p_capacity integer,
                                         p_ttl interval DEFAULT make_interval(secs => setting('lease_seconds')))
RETURNS TABLE (device_id bigint, jid text, phone text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_room integer;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM senders s WHERE s.id = p_sender_id AND NOT s.stopping) THEN
    RAISE EXCEPTION 'sender % is not registered (or is stopping)', p_sender_id USING ERRCODE = '22023';
  END IF;
  v_room := _sender_fair_share(p_sender_id, p_capacity, p_ttl)
            - (SELECT count(*) FROM device_leases l WHERE l.sender_id = p_sender_id);
  IF v_room <= 0 THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH wanted AS (
    SELECT d.id FROM user_devices d
      LEFT JOIN device_leases l ON l.device_id = d.id
     WHERE d.status <> 'logged_out' AND (d.resume_after IS NULL OR d.resume_after <= now())
       AND (l.device_id IS NULL OR l.expires_at <= now())
     ORDER BY d.id
     LIMIT v_room
     FOR UPDATE OF d SKIP LOCKED
  ), taken AS (
    INSERT INTO device_leases AS dl (device_id, sender_id, acquired_at, expires_at)
    SELECT wanted.id, p_sender_id, now(), now() + p_ttl FROM wanted
    ON CONFLICT ON CONSTRAINT device_leases_pkey DO UPDATE
       SET sender_id = excluded.sender_id, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
     WHERE dl.expires_at <= now()
    RETURNING dl.device_id
  )
  SELECT d.id, d.jid, d.phone FROM taken JOIN user_devices d ON d.id = taken.device_id;
END $$;
COMMENT ON FUNCTION acquire_leases(text, integer, interval) IS
  'Gives p_sender_id free or expired leases (devices not logged out, not held by hold_device) up to its fair '
  'share and capacity, '
  'for p_ttl; returns the newly leased devices (with their stored session jid) to start.';

CREATE OR REPLACE FUNCTION sender_heartbeat(p_sender_id text, p_capacity integer,
                                           p_ttl interval DEFAULT make_interval(secs => setting('lease_seconds')))
RETURNS TABLE (device_id bigint, jid text, phone text, shed boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE v_fair integer;
BEGIN
  v_fair := _sender_fair_share(p_sender_id, p_capacity, p_ttl);
  RETURN QUERY
  WITH renewed AS (
    UPDATE device_leases l SET expires_at = now() + p_ttl
     WHERE l.sender_id = p_sender_id
    RETURNING l.device_id
  )
  SELECT r.device_id, d.jid, d.phone, row_number() OVER (ORDER BY r.device_id) > v_fair
    FROM renewed r JOIN user_devices d ON d.id = r.device_id;
  -- The sender's own row last, just before the commit: every claim of this sender updates it too
  -- (sender_may_begin), and while the leases are renewed (1,550 of them: 12-24 ms) it waited --
  -- the idle wake-up's worst sends, every 5 s. A sender not registered (or given up) raises here,
  -- which undoes the renewal.
  UPDATE senders SET heartbeat_at = now(), lease_ttl = p_ttl
   WHERE id = p_sender_id AND NOT stopping AND given_up_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'sender % is not registered (or is stopping, or was given up)', p_sender_id USING ERRCODE = '22023';
  END IF;
END $$;
COMMENT ON FUNCTION sender_heartbeat(text, integer, interval) IS
  'A sender''s heartbeat: renews it and all its leases for p_ttl; returns the devices it holds (with their '
  'session jid), shed '
  'true for those above its fair share (stop them, then release_leases, so other senders take them).';

CREATE OR REPLACE FUNCTION release_leases(p_sender_id text, p_device_ids bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_done integer;
        v_events integer;
BEGIN
  WITH gone AS (
    DELETE FROM device_leases l
     WHERE l.sender_id = p_sender_id AND l.device_id = ANY (p_device_ids)
    RETURNING l.device_id
  ), idle AS (
    UPDATE user_devices d
       SET status = 'offline', status_reason = 'sender released the device', status_changed_at = now()
      FROM gone WHERE d.id = gone.device_id AND d.status IN ('online', 'connecting')
    RETURNING d AS device
  )
  SELECT (SELECT count(*) FROM gone),
         (SELECT count(_emit_device_status_webhook(i.device, (i.device).status_reason)) FROM idle i)
    INTO v_done, v_events;
  RETURN v_done;
END $$;
COMMENT ON FUNCTION release_leases(text, bigint[]) IS
  'Gives up this sender''s leases on the devices (after it stopped them); a running device shows offline '
  'until the next sender connects it (a device.status webhook event each). Returns how many leases were released.';

CREATE OR REPLACE FUNCTION retire_sender(p_sender_id text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_done integer;
BEGIN
  v_done := release_leases(p_sender_id,
                           ARRAY(SELECT l.device_id FROM device_leases l WHERE l.sender_id = p_sender_id));
  DELETE FROM senders WHERE id = p_sender_id;
  RETURN v_done;
END $$;
COMMENT ON FUNCTION retire_sender(text) IS
  'A sender''s clean exit: releases all its leases and removes it. Returns how many leases it held.';

CREATE OR REPLACE FUNCTION sender_stopping(p_sender_id text)
RETURNS void LANGUAGE sql AS $$
  UPDATE senders SET stopping = true WHERE id = p_sender_id
$$;
COMMENT ON FUNCTION sender_stopping(text) IS
  'Marks a sender as draining: it takes no new leases and no longer counts for fair shares.';

-- A sender that dies leaves messages it claimed: those it may have begun sending are failed as stuck
-- after the stuck timeout (whether WhatsApp got them is unknown: at most once), but those it never
-- began can go back to the queue. It hands claimed messages to its send threads only after marking
-- how far it may have begun (claims in claimed_at order, each claim's devices in id order), a few
-- rounds of its threads ahead; the mark and the give-up both update the senders row, so a sender
-- given up while it still runs finds out before it begins anything the queue took back.
CREATE OR REPLACE FUNCTION sender_may_begin(p_sender_id text, p_claimed_at timestamptz, p_device_id bigint)
RETURNS boolean LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan   -- run by every claim that takes rows (claim_messages)
AS $$
BEGIN
  UPDATE senders SET begun_claimed_at = coalesce(p_claimed_at, begun_claimed_at),
                     begun_device_id = coalesce(p_device_id, begun_device_id)
   WHERE id = p_sender_id AND given_up_at IS NULL;
  -- a sender whose row is gone (removed by hand; it registers again) was not given up
  RETURN FOUND OR NOT EXISTS (SELECT 1 FROM senders s WHERE s.id = p_sender_id);
END $$;
COMMENT ON FUNCTION sender_may_begin(text, timestamptz, bigint) IS
  'Written by a sender before it begins sending claimed messages: it may begin every message it claimed up to '
  'the device p_device_id of its claim at p_claimed_at. False when the sender was given up '
  '(give_up_silent_senders): the messages past its mark went back to the queue and it must not begin them '
  '(true, unmarked, for a sender without a row). With NULLs the mark stays: the check alone (claim_messages).';

CREATE OR REPLACE FUNCTION give_up_silent_senders()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_sender record;
        v_back integer := 0;
BEGIN
  FOR v_sender IN
    UPDATE senders s SET given_up_at = now()
     WHERE s.given_up_at IS NULL AND s.heartbeat_at + s.lease_ttl < now()
    RETURNING s.id, s.begun_claimed_at, s.begun_device_id
  LOOP
    v_back := v_back + release_messages(v_sender.id, ARRAY(
      SELECT q.id FROM message_queue q
       WHERE q.status = 'queued' AND q.claimed_by = v_sender.id
         AND (v_sender.begun_claimed_at IS NULL
              OR (q.claimed_at, q.device_id) > (v_sender.begun_claimed_at, v_sender.begun_device_id))),
      interval '0 seconds');
  END LOOP;
  RETURN v_back;
END $$;
COMMENT ON FUNCTION give_up_silent_senders() IS
  'Gives up each sender silent past its own lease (its devices are free for others): the messages it claimed and '
  'had not begun sending (past its sender_may_begin mark) go back to pending; those it may have begun stay for '
  'recover_stuck. A sender given up can neither begin a send nor register again. Returns how many went back. '
  'Run by recover_stuck.';
