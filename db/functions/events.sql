-- Live events for the dashboard: one channel, JSON payloads always carrying the owner's user_id,
-- so the web's LISTEN thread can route each event to that user's browsers only.

CREATE OR REPLACE FUNCTION notify_user(p_user_id bigint, p_type text, p_data jsonb DEFAULT '{}')
RETURNS void LANGUAGE sql AS $$
  SELECT pg_notify('wa_events', jsonb_build_object('user_id', p_user_id, 'type', p_type, 'data', p_data)::text)
$$;
COMMENT ON FUNCTION notify_user(bigint, text, jsonb) IS
  'Sends a live event to one user''s dashboards (channel wa_events; delivered at commit). Keep data small (< 7 kB).';

-- Queue outcomes, aggregated: the callers (complete, fail, receipts) pass the rows one statement
-- changed, and each owner gets one message_status and at most one campaign_progress event for
-- all of them, never one per row.
CREATE OR REPLACE FUNCTION _notify_queue_changes(p_status text, p_ids bigint[], p_user_ids bigint[],
                                                p_device_ids bigint[], p_campaign_ids bigint[])
RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
  PERFORM count(*) FROM (
    WITH changed AS (
      SELECT * FROM unnest(p_ids, p_user_ids, p_device_ids, p_campaign_ids) AS r(id, user_id, device_id, campaign_id)
    ), per_user AS (
      -- Lists are capped (a NOTIFY payload must stay under 8000 bytes); truncated says so.
      SELECT user_id, count(*) AS n,
             (array_agg(id ORDER BY id))[1:200] AS ids,
             (array_agg(DISTINCT device_id) FILTER (WHERE device_id IS NOT NULL))[1:100] AS device_ids,
             count(DISTINCT device_id) > 100 AS many_devices
        FROM changed GROUP BY user_id
    ), per_campaign AS (
      SELECT user_id,
             jsonb_agg(jsonb_build_object('id', campaign_id, 'count', n) ORDER BY campaign_id)
               FILTER (WHERE rank <= 100) AS campaigns,
             count(*) > 100 AS truncated
        FROM (SELECT user_id, campaign_id, count(*) AS n,
                     row_number() OVER (PARTITION BY user_id ORDER BY campaign_id) AS rank
                FROM changed WHERE campaign_id IS NOT NULL GROUP BY user_id, campaign_id) c
       GROUP BY user_id
    )
    SELECT notify_user(u.user_id, 'message_status',
                       jsonb_build_object('status', p_status, 'count', u.n, 'device_ids', u.device_ids,
                                          'ids', u.ids, 'truncated', u.n > 200 OR u.many_devices))
      FROM per_user u
    UNION ALL
    SELECT notify_user(c.user_id, 'campaign_progress',
                       jsonb_build_object('status', p_status, 'campaigns', c.campaigns, 'truncated', c.truncated))
      FROM per_campaign c
    UNION ALL
    SELECT _emit_message_status_webhooks(p_status, p_ids, p_user_ids)
  ) sent;
END $$;
COMMENT ON FUNCTION _notify_queue_changes(text, bigint[], bigint[], bigint[], bigint[]) IS
  'Pushes what one statement did to queued messages (parallel arrays of message id, owner, device, campaign), '
  'one event per owner: message_status {status, count, device_ids (first 100), ids (first 200), truncated} and, '
  'when campaign messages changed, campaign_progress {status, campaigns: [{id, count}] (first 100), truncated} '
  '(counts are this change''s). status is sent, failed, skipped, delivered or read. truncated: refetch instead. '
  'Also writes the message.status webhook events.';
