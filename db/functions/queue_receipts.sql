-- The message lifecycle's writers, part 3: delivery and read receipts on sent messages (and the
-- receipts that overtake their message's completion, kept until it lands).

-- A receipt comes within days of its message: the weeks of the history settled in the seven days
-- before it are searched first (pruned when the statement starts, the bound being a parameter), the
-- older weeks only for the ids not found there. Searched in every week at once, each receipt
-- probed every weekly partition: 0.83-0.92 ms a receipt with the default retention's 26 weeks,
-- 0.50-0.54 ms for a second delivery receipt that changes nothing (one per linked device of the
-- recipient); 0.69-0.73 and 0.33-0.35 ms now. The price: an id no message carries yet (typed on
-- the phone, or ahead of its completion) is searched twice, 0.80 -> 1.0 ms.
CREATE OR REPLACE FUNCTION _receipt_weeks_from(p_at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT least(p_at, now()) - interval '7 days'   -- p_at comes from the phone's clock
$$;
COMMENT ON FUNCTION _receipt_weeks_from(timestamptz) IS
  'The earliest settle time searched first for the message of a receipt (or a status change) at p_at: the week '
  'before it. Lookups of settled messages by id read the history from here, and older weeks only for what they miss.';

-- Receipts come by the thousand from a fleet's devices at once: a batch of them (each a device, a
-- WhatsApp id and when it came) is one call. A call per device cost ~0.7 ms (its lookups and its
-- NOTIFY): a burst's receipts trailed its sends by seconds.
CREATE OR REPLACE FUNCTION _mark_receipts(p_device_ids bigint[], p_wa_message_ids text[], p_ats timestamptz[],
                                          p_kind text, p_settled_from timestamptz)
RETURNS TABLE (id bigint, user_id bigint, device_id bigint, campaign_id bigint) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  -- A read receipt implies delivery (receipts do not always arrive, nor in order); the first
  -- receipt of a message in the batch counts.
  RETURN QUERY
  UPDATE broadcast_messages m
     SET delivered_at = coalesce(m.delivered_at, r.at),
         read_at      = CASE WHEN p_kind = 'read' THEN coalesce(m.read_at, r.at) ELSE m.read_at END
    FROM (SELECT w.device_id, w.wa_id, min(w.at) AS at
            FROM unnest(p_device_ids, p_wa_message_ids, p_ats) AS w(device_id, wa_id, at)
           GROUP BY w.device_id, w.wa_id) r
   WHERE m.wa_message_id = ANY (p_wa_message_ids)   -- the index of each week searched, by id
     AND m.wa_message_id = r.wa_id AND m.device_id = r.device_id AND m.status = 'sent'
     AND coalesce(m.sent_at, m.failed_at) >= p_settled_from
     AND (m.delivered_at IS NULL OR (p_kind = 'read' AND m.read_at IS NULL))
  RETURNING m.id, m.user_id, m.device_id, m.campaign_id;
END $$;
COMMENT ON FUNCTION _mark_receipts(bigint[], text[], timestamptz[], text, timestamptz) IS
  'Sets delivered_at (and read_at for read receipts) on the sent messages with these (device, WhatsApp id) '
  'pairs settled since p_settled_from, where not set yet (to the earliest of the batch''s times for it); returns '
  'the rows changed. For record_receipt_batch.';

CREATE OR REPLACE FUNCTION _settled_wa_ids(p_device_ids bigint[], p_wa_message_ids text[], p_settled_from timestamptz)
RETURNS TABLE (device_id bigint, wa_message_id text) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  -- a WhatsApp id is set when the message settles
  RETURN QUERY
  SELECT DISTINCT m.device_id, m.wa_message_id FROM broadcast_messages m
   WHERE m.wa_message_id = ANY (p_wa_message_ids)
     AND (m.device_id, m.wa_message_id) IN (SELECT * FROM unnest(p_device_ids, p_wa_message_ids))
     AND m.status IN ('sent', 'failed')
     AND coalesce(m.sent_at, m.failed_at) >= p_settled_from;
END $$;
COMMENT ON FUNCTION _settled_wa_ids(bigint[], text[], timestamptz) IS
  'Those of the (device, WhatsApp id) pairs a sent or failed message carries, settled since p_settled_from. '
  'For record_receipt_batch.';

CREATE OR REPLACE FUNCTION record_receipt_batch(p_device_ids bigint[], p_wa_message_ids text[], p_ats timestamptz[],
                                                p_kind text)
RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_ids bigint[]; v_users bigint[]; v_devices bigint[]; v_campaigns bigint[];
        v_from timestamptz := _receipt_weeks_from((SELECT min(a) FROM unnest(p_ats) a));
        v_known_devices bigint[]; v_known_ids text[];
        v_rest_devices bigint[]; v_rest_ids text[]; v_rest_ats timestamptz[];
BEGIN
  IF p_kind NOT IN ('delivered', 'read') THEN
    RAISE EXCEPTION 'unknown receipt kind "%"', p_kind USING ERRCODE = '22023';
  END IF;
  IF cardinality(p_device_ids) IS DISTINCT FROM cardinality(p_wa_message_ids)
     OR cardinality(p_ats) IS DISTINCT FROM cardinality(p_wa_message_ids) THEN
    RAISE EXCEPTION 'a receipt is a device, a WhatsApp id and a time: % devices, % ids, % times',
      cardinality(p_device_ids), cardinality(p_wa_message_ids), cardinality(p_ats) USING ERRCODE = '22023';
  END IF;
  SELECT array_agg(r.id), array_agg(r.user_id), array_agg(r.device_id), array_agg(r.campaign_id)
    INTO v_ids, v_users, v_devices, v_campaigns
    FROM _mark_receipts(p_device_ids, p_wa_message_ids, p_ats, p_kind, v_from) r;
  IF coalesce(cardinality(v_ids), 0) < cardinality(p_wa_message_ids) THEN
    -- Not marked: marked already or failed (in these weeks: nothing to do), settled earlier, or not yet.
    SELECT array_agg(k.device_id), array_agg(k.wa_message_id) INTO v_known_devices, v_known_ids
      FROM _settled_wa_ids(p_device_ids, p_wa_message_ids, v_from) k;
    SELECT array_agg(w.device_id), array_agg(w.wa_id), array_agg(w.at) INTO v_rest_devices, v_rest_ids, v_rest_ats
      FROM unnest(p_device_ids, p_wa_message_ids, p_ats) AS w(device_id, wa_id, at)
     WHERE (w.device_id, w.wa_id) NOT IN (SELECT * FROM unnest(coalesce(v_known_devices, '{}'), coalesce(v_known_ids, '{}')));
    IF v_rest_ids IS NOT NULL THEN
      SELECT v_ids || array_agg(r.id), v_users || array_agg(r.user_id), v_devices || array_agg(r.device_id),
             v_campaigns || array_agg(r.campaign_id)
        INTO v_ids, v_users, v_devices, v_campaigns
        FROM _mark_receipts(v_rest_devices, v_rest_ids, v_rest_ats, p_kind, '-infinity') r;
      SELECT array_agg(k.device_id), array_agg(k.wa_message_id) INTO v_known_devices, v_known_ids
        FROM _settled_wa_ids(v_rest_devices, v_rest_ids, '-infinity') k;
      -- A receipt can overtake its message's completion: kept until complete_messages applies it.
      INSERT INTO early_receipts (device_id, wa_message_id, kind, received_at)
      SELECT w.device_id, w.wa_id, p_kind, min(w.at)
        FROM unnest(v_rest_devices, v_rest_ids, v_rest_ats) AS w(device_id, wa_id, at)
       WHERE (w.device_id, w.wa_id) NOT IN (SELECT * FROM unnest(coalesce(v_known_devices, '{}'), coalesce(v_known_ids, '{}')))
       GROUP BY w.device_id, w.wa_id
      ON CONFLICT DO NOTHING;
    END IF;
  END IF;
  PERFORM _notify_queue_changes(p_kind, v_ids, v_users, v_devices, v_campaigns);
  RETURN coalesce(cardinality(v_ids), 0);
END $$;
COMMENT ON FUNCTION record_receipt_batch(bigint[], text[], timestamptz[], text) IS
  'Receipts of one kind for many devices at once, each a (device, WhatsApp id, time) of the parallel arrays: sets '
  'delivered_at (and read_at for read receipts) on the sent messages they name; the first receipt of each kind '
  'wins. Pushes one message_status (status delivered or read) and campaign_progress event for the batch. A '
  'receipt for an id no message carries yet (it overtook the completion) is kept in early_receipts for '
  'complete_messages. Returns how many messages changed.';

CREATE OR REPLACE FUNCTION record_receipts(p_device_id bigint, p_wa_message_ids text[], p_kind text, p_at timestamptz)
RETURNS integer LANGUAGE sql AS $$
  SELECT record_receipt_batch(array_fill(p_device_id, ARRAY[cardinality(p_wa_message_ids)]), p_wa_message_ids,
                              array_fill(p_at, ARRAY[cardinality(p_wa_message_ids)]), p_kind)
$$;
COMMENT ON FUNCTION record_receipts(bigint, text[], text, timestamptz) IS
  'Receipts of one kind for one device''s messages with these WhatsApp ids, at p_at: record_receipt_batch.';

-- Keyed by the settled rows themselves (their device and WhatsApp id, as complete_messages has
-- them): looked up again by id, each row was probed in every week of the history. A receipt of a
-- message typed on the phone waits here for a day, so most completions find some.
-- Its plan is kept for the session: never a scan of the waiting receipts (a day of them, for
-- messages typed on the phone), which a plan made while they were few would keep.
CREATE OR REPLACE FUNCTION _apply_early_receipts(p_rows broadcast_messages[])
RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_batches integer;
BEGIN
  WITH early AS (
    DELETE FROM early_receipts r
     WHERE (r.device_id, r.wa_message_id) IN (SELECT m.device_id, m.wa_message_id FROM unnest(p_rows) m)
    RETURNING r.device_id, r.wa_message_id, r.kind, r.received_at)
  SELECT count(record_receipt_batch(devices, ids, ats, kind)) INTO v_batches FROM (
    SELECT kind, array_agg(device_id) AS devices, array_agg(wa_message_id) AS ids, array_agg(received_at) AS ats
      FROM early GROUP BY kind) g;
END $$;
COMMENT ON FUNCTION _apply_early_receipts(broadcast_messages[]) IS
  'Applies (through record_receipt_batch) and removes the early receipts of these just-sent rows (as settled).';

-- A receipt recorded while its message's completion was committing finds no settled message (not
-- committed yet) and is kept, after the completion has applied the ones it could see: nothing
-- would apply it. A sender records a receipt only once it has written the completions of what the
-- receipt's device had claimed (sender/events.py), so this is left to receipts it could not hold:
-- one arriving at a process the device's lease just moved to, or held when its sender stopped
-- without writing them. Every few minutes, the
-- waiting receipts whose message has settled since are applied. The messages are searched in the
-- weeks of a receipt kept a day ago (purge_history drops older ones; a message settled when its
-- receipt was kept).
CREATE OR REPLACE FUNCTION apply_stranded_receipts() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v_rows broadcast_messages[];
BEGIN
  v_rows := array(
    SELECT m FROM broadcast_messages m
     WHERE (m.device_id, m.wa_message_id) IN (SELECT r.device_id, r.wa_message_id FROM early_receipts r)
       AND m.status IN ('sent', 'failed')
       AND coalesce(m.sent_at, m.failed_at) >= _receipt_weeks_from(now() - interval '1 day'));
  IF v_rows <> '{}' THEN
    PERFORM _apply_early_receipts(v_rows);
  END IF;
  RETURN cardinality(v_rows);
END $$;
COMMENT ON FUNCTION apply_stranded_receipts() IS
  'Applies (and removes) the waiting early receipts whose message has settled since they were kept: one recorded '
  'while its completion was committing. Returns how many messages they named. Run every 5 minutes by app_jobs.';
