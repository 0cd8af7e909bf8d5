-- Live events for the dashboard: one channel, JSON payloads always carrying the owner's user_id,
-- so the web's LISTEN thread can route each event to that user's browsers only.

CREATE OR REPLACE FUNCTION notify_user(p_user_id bigint, p_type text, p_data jsonb DEFAULT '{}')
RETURNS void LANGUAGE sql AS $$
  SELECT pg_notify('wa_events', jsonb_build_object('user_id', p_user_id, 'type', p_type, 'data', p_data)::text)
$$;
COMMENT ON FUNCTION notify_user(bigint, text, jsonb) IS
  'Sends a live event to one user''s dashboards (channel wa_events; delivered at commit). Keep data small (< 7 kB).';
