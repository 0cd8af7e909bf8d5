-- The message lifecycle's writers, part 3: delivery and read receipts on sent messages (and the
-- receipts that overtake their message's completion, kept until it lands).

CREATE OR REPLACE FUNCTION record_receipts(p_device_id bigint, p_wa_message_ids text[], p_kind text, p_at timestamptz)
RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_done integer;
        v_ids bigint[]; v_users bigint[]; v_devices bigint[]; v_campaigns bigint[];
BEGIN
  IF p_kind NOT IN ('delivered', 'read') THEN
    RAISE EXCEPTION 'unknown receipt kind "%"', p_kind USING ERRCODE = '22023';
  END IF;
  -- A read receipt implies delivery (receipts do not always arrive, nor in order).
  WITH marked AS (
    UPDATE broadcast_messages m
       SET delivered_at = coalesce(m.delivered_at, p_at),
           read_at      = CASE WHEN p_kind = 'read' THEN coalesce(m.read_at, p_at) ELSE m.read_at END
     WHERE m.wa_message_id = ANY (p_wa_message_ids) AND m.device_id = p_device_id AND m.status = 'sent'
       AND (m.delivered_at IS NULL OR (p_kind = 'read' AND m.read_at IS NULL))
    RETURNING m.id, m.user_id, m.device_id, m.campaign_id
  )
  SELECT count(*), array_agg(marked.id), array_agg(marked.user_id), array_agg(marked.device_id),
         array_agg(marked.campaign_id)
    INTO v_done, v_ids, v_users, v_devices, v_campaigns FROM marked;
  PERFORM _notify_queue_changes(p_kind, v_ids, v_users, v_devices, v_campaigns);
  -- A receipt can overtake its message's completion: kept until complete_messages applies it.
  IF v_done < cardinality(p_wa_message_ids) THEN
    INSERT INTO early_receipts (device_id, wa_message_id, kind, received_at)
    SELECT p_device_id, w.id, p_kind, p_at FROM unnest(p_wa_message_ids) AS w(id)
     WHERE NOT EXISTS (SELECT 1 FROM broadcast_messages m   -- a WhatsApp id is set when the message settles
                        WHERE m.wa_message_id = w.id AND m.device_id = p_device_id AND m.status IN ('sent', 'failed'))
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN v_done;
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
