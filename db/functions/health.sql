-- Health of the whole system, for /healthz (no user data).

CREATE OR REPLACE FUNCTION system_health(p_stale interval DEFAULT make_interval(secs => setting('sender_alive_seconds')))
RETURNS TABLE (senders_alive integer, senders_stale integer, last_heartbeat_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT count(*) FILTER (WHERE heartbeat_at > now() - p_stale)::int,
         count(*) FILTER (WHERE heartbeat_at <= now() - p_stale)::int,
         max(heartbeat_at)
    FROM senders
$$;
COMMENT ON FUNCTION system_health(interval) IS
  'Sender processes with a heartbeat inside p_stale (alive) and older (stale), and the latest heartbeat.';
