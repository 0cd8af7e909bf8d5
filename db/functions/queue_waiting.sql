-- The message lifecycle's writers, part 2: what happens to waiting (pending) messages besides
-- being claimed — skipped with a reason, held and released, re-pointed to a merged lead. The
-- callers (campaigns, sequences, devices, opt-outs, the undeliverable sweep) say which messages
-- and why; these functions are the only ones that change them.

-- Skipped: pending -> skipped, with one of the closed skip_reasons. Pushed live and to webhooks
-- like every other outcome (message_status / campaign_progress, message.status "skipped").
CREATE OR REPLACE FUNCTION _skip_messages(p_ids bigint[], p_reason skip_reason, p_detail text DEFAULT NULL,
                                          p_settle_campaigns boolean DEFAULT true)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  v_message text := format((SELECT r.message FROM skip_reasons r WHERE r.code = p_reason), p_detail);
  v_ids bigint[]; v_users bigint[]; v_devices bigint[]; v_campaigns bigint[];
  v_campaign bigint;
BEGIN
  LOOP
    BEGIN
      WITH skipped AS (
        UPDATE broadcast_messages m
           SET status = 'skipped', held = false, failed_at = now(), skip_reason = p_reason, error_message = v_message
         WHERE m.id = ANY (p_ids) AND m.status = 'pending'
        RETURNING m.id, m.user_id, m.device_id, m.campaign_id)
      SELECT array_agg(s.id), array_agg(s.user_id), array_agg(s.device_id), array_agg(s.campaign_id)
        INTO v_ids, v_users, v_devices, v_campaigns FROM skipped s;
      EXIT;
    EXCEPTION WHEN serialization_failure THEN
      -- Another session settled one of these rows while this waited for it (the row moved to
      -- message_history): the statement is taken again and finds that row no longer pending.
    END;
  END LOOP;
  PERFORM _notify_queue_changes('skipped', v_ids, v_users, v_devices, v_campaigns);
  -- A campaign whose last messages were skipped ends now, not at the next minute tick.
  IF p_settle_campaigns THEN
    FOR v_campaign IN SELECT DISTINCT x FROM unnest(v_campaigns) x WHERE x IS NOT NULL ORDER BY 1 LOOP
      PERFORM settle_campaign(v_campaign);
    END LOOP;
  END IF;
  RETURN coalesce(cardinality(v_ids), 0);
END $$;
COMMENT ON FUNCTION _skip_messages(bigint[], skip_reason, text, boolean) IS
  'The one way a message is skipped: those of p_ids still pending become skipped with p_reason (its skip_reasons '
  'text, p_detail filling its %s, goes to error_message); claimed ones finish as they are. Pushes the change live '
  'and, unless p_settle_campaigns is false (the caller settles them), settles their campaigns. Returns how many '
  'were skipped.';

CREATE OR REPLACE FUNCTION _hold_messages(p_ids bigint[], p_held boolean)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_done integer;
BEGIN
  UPDATE broadcast_messages m SET held = p_held
   WHERE m.id = ANY (p_ids) AND m.status = 'pending' AND m.held <> p_held;
  GET DIAGNOSTICS v_done = ROW_COUNT;
  RETURN v_done;   -- releasing wakes the senders (trigger broadcast_messages_3_wake_release)
END $$;
COMMENT ON FUNCTION _hold_messages(bigint[], boolean) IS
  'Holds (p_held) or releases the pending messages among p_ids: a held message is never claimed (paused campaign, '
  'inactive sequence). Returns how many changed.';

CREATE OR REPLACE FUNCTION _move_messages_to_lead(p_from_leads bigint[], p_to_leads bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE v_done integer;
BEGIN
  UPDATE broadcast_messages m SET lead_id = p.to_lead
    FROM unnest(p_from_leads, p_to_leads) AS p(from_lead, to_lead)
   WHERE m.lead_id = p.from_lead;
  GET DIAGNOSTICS v_done = ROW_COUNT;
  RETURN v_done;
END $$;
COMMENT ON FUNCTION _move_messages_to_lead(bigint[], bigint[]) IS
  'Points the messages of each lead in p_from_leads at the lead at the same position of p_to_leads (a deleted '
  'device''s lead merged into the pool lead of the same number). Returns how many messages changed.';
