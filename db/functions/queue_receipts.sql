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

CREATE OR REPLACE FUNCTION _mark_receipts(p_device_id bigint, p_wa_message_ids text[], p_kind text, p_at timestamptz,
                                          p_settled_from timestamptz)
RETURNS TABLE (id bigint, user_id bigint, device_id bigint, campaign_id bigint) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  -- A read receipt implies delivery (receipts do not always arrive, nor in order).
  RETURN QUERY
  UPDATE broadcast_messages m
     SET delivered_at = coalesce(m.delivered_at, p_at),
         read_at      = CASE WHEN p_kind = 'read' THEN coalesce(m.read_at, p_at) ELSE m.read_at END
   WHERE m.wa_message_id = ANY (p_wa_message_ids) AND m.device_id = p_device_id AND m.status = 'sent'
     AND coalesce(m.sent_at, m.failed_at) >= p_settled_from
     AND (m.delivered_at IS NULL OR (p_kind = 'read' AND m.read_at IS NULL))
  RETURNING m.id, m.user_id, m.device_id, m.campaign_id;
END $$;
COMMENT ON FUNCTION _mark_receipts(bigint, text[], text, timestamptz, timestamptz) IS
  'Sets delivered_at (and read_at for a read receipt) on the device''s sent messages with these WhatsApp ids '
  'settled since p_settled_from, where not set yet; returns the rows changed. For record_receipts.';

CREATE OR REPLACE FUNCTION _settled_wa_ids(p_device_id bigint, p_wa_message_ids text[], p_settled_from timestamptz)
RETURNS text[] LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  -- a WhatsApp id is set when the message settles
  RETURN array(SELECT w.id FROM unnest(p_wa_message_ids) AS w(id)
                WHERE EXISTS (SELECT 1 FROM broadcast_messages m
                               WHERE m.wa_message_id = w.id AND m.device_id = p_device_id
                                 AND m.status IN ('sent', 'failed')
                                 AND coalesce(m.sent_at, m.failed_at) >= p_settled_from));
END $$;
COMMENT ON FUNCTION _settled_wa_ids(bigint, text[], timestamptz) IS
  'Those of the WhatsApp ids a sent or failed message of the device carries, settled since p_settled_from. '
  'For record_receipts.';

CREATE OR REPLACE FUNCTION record_receipts(p_device_id bigint, p_wa_message_ids text[], p_kind text, p_at timestamptz)
RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_ids bigint[]; v_users bigint[]; v_devices bigint[]; v_campaigns bigint[];
        v_from timestamptz := _receipt_weeks_from(p_at);
        v_rest text[];
BEGIN
  IF p_kind NOT IN ('delivered', 'read') THEN
    RAISE EXCEPTION 'unknown receipt kind "%"', p_kind USING ERRCODE = '22023';
  END IF;
  SELECT array_agg(r.id), array_agg(r.user_id), array_agg(r.device_id), array_agg(r.campaign_id)
    INTO v_ids, v_users, v_devices, v_campaigns
    FROM _mark_receipts(p_device_id, p_wa_message_ids, p_kind, p_at, v_from) r;
  IF coalesce(cardinality(v_ids), 0) < cardinality(p_wa_message_ids) THEN
    -- Not marked: marked already or failed (in these weeks: nothing to do), settled earlier, or not yet.
    v_rest := array(SELECT w.id FROM unnest(p_wa_message_ids) AS w(id)
                    EXCEPT SELECT unnest(_settled_wa_ids(p_device_id, p_wa_message_ids, v_from)));
    IF v_rest <> '{}' THEN
      SELECT v_ids || array_agg(r.id), v_users || array_agg(r.user_id), v_devices || array_agg(r.device_id),
             v_campaigns || array_agg(r.campaign_id)
        INTO v_ids, v_users, v_devices, v_campaigns
        FROM _mark_receipts(p_device_id, v_rest, p_kind, p_at, '-infinity') r;
      -- A receipt can overtake its message's completion: kept until complete_messages applies it.
      INSERT INTO early_receipts (device_id, wa_message_id, kind, received_at)
      SELECT p_device_id, w.id, p_kind, p_at
        FROM (SELECT unnest(v_rest) EXCEPT SELECT unnest(_settled_wa_ids(p_device_id, v_rest, '-infinity'))) AS w(id)
      ON CONFLICT DO NOTHING;
    END IF;
  END IF;
  PERFORM _notify_queue_changes(p_kind, v_ids, v_users, v_devices, v_campaigns);
  RETURN coalesce(cardinality(v_ids), 0);
END $$;
COMMENT ON FUNCTION record_receipts(bigint, text[], text, timestamptz) IS
  'Sets delivered_at (and read_at for read receipts) on the sent messages of one device with these '
  'WhatsApp ids; the first receipt of each kind wins. Pushes one message_status (status delivered or read) '
  'and campaign_progress event for the batch. A receipt for an id no message carries yet (it overtook the '
  'completion) is kept in early_receipts for complete_messages. Returns how many messages changed.';

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
  SELECT count(record_receipts(device_id, ids, kind, at)) INTO v_batches FROM (
    SELECT device_id, kind, array_agg(wa_message_id) AS ids, max(received_at) AS at
      FROM early GROUP BY device_id, kind) g;
END $$;
COMMENT ON FUNCTION _apply_early_receipts(broadcast_messages[]) IS
  'Applies (through record_receipts) and removes the early receipts of these just-sent rows (as settled).';

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
