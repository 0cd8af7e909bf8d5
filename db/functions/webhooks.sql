-- Outbound webhooks: endpoints, the outbox (_emit_webhook_event, called in the transaction where
-- each event happens), and the deliverer's claim / finish / redeliver steps. The deliverer
-- (webhooks/deliverer.py) sends; everything it decides about order and retries is here.

CREATE OR REPLACE FUNCTION webhook_event_types() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY['message.received', 'message.status', 'lead.replied', 'lead.opted_out',
               'device.status', 'campaign.finished', 'sequence.completed']
$$;
COMMENT ON FUNCTION webhook_event_types() IS
  'The event types an endpoint may subscribe to (webhook.test is sent on request only).';

-- The outbox ------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION _emit_webhook_event(p_user_id bigint, p_type text, p_data jsonb,
                                              p_endpoint_id bigint DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_event uuid := gen_random_uuid();
        v_rows integer;
BEGIN
  INSERT INTO webhook_deliveries (endpoint_id, user_id, event_id, event_type, payload)
  SELECT e.id, e.user_id, v_event, p_type,
         jsonb_build_object('id', v_event, 'type', p_type, 'created_at', now(), 'data', coalesce(p_data, '{}'))
    FROM webhook_endpoints e
   WHERE e.user_id = p_user_id
     AND CASE WHEN p_endpoint_id IS NULL THEN e.enabled AND p_type = ANY (e.events) ELSE e.id = p_endpoint_id END;
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  IF v_rows > 0 THEN
    PERFORM pg_notify('wa_webhooks', '');   -- wakes the deliverer at commit (repeats fold into one)
  END IF;
  RETURN v_rows;
END $$;
COMMENT ON FUNCTION _emit_webhook_event(bigint, text, jsonb, bigint) IS
  'Writes one event into the webhook outbox, in the caller''s transaction: a row for each of the owner''s enabled '
  'endpoints subscribed to p_type (or only for p_endpoint_id, whatever its filter: a test event). Payload '
  '{id (the event id, for receivers to deduplicate), type, created_at, data}. Returns rows written.';

CREATE OR REPLACE FUNCTION _emit_device_status_webhook(p_device user_devices, p_reason text) RETURNS integer
LANGUAGE sql AS $$
  SELECT _emit_webhook_event(p_device.user_id, 'device.status', jsonb_build_object(
    'device_id', p_device.id, 'status', p_device.status, 'paused', p_device.paused_at IS NOT NULL,
    'reason', p_reason, 'banned_until', p_device.banned_until))
$$;
COMMENT ON FUNCTION _emit_device_status_webhook(user_devices, text) IS
  'A device.status webhook event for the device as it is now: {device_id, status, paused, reason, banned_until}.';

-- The rows a statement changed settled just now (sent, failed, skipped) or, for a receipt, almost
-- always within the week: they are looked up in the weeks a receipt's message is searched in first
-- (_receipt_weeks_from) and in the older weeks only when some are missing. By id in every week at
-- once, each one was probed in every weekly partition (26 at the default retention): 1.46 ms for a
-- 200-row completion's rows, 0.28 ms now.
CREATE OR REPLACE FUNCTION _emit_message_status_webhooks(p_status text, p_ids bigint[], p_user_ids bigint[])
RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE v_recent timestamptz := _receipt_weeks_from(now());
        v_rows broadcast_messages[];
BEGIN
  -- The queue's hot path pays one index probe when nobody subscribed.
  IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                  WHERE e.user_id = ANY (p_user_ids) AND e.enabled AND 'message.status' = ANY (e.events)) THEN
    RETURN;
  END IF;
  v_rows := array(SELECT m FROM broadcast_messages m
                   WHERE m.id = ANY (p_ids) AND m.status IN ('sent', 'failed', 'skipped')
                     AND coalesce(m.sent_at, m.failed_at) >= v_recent);
  IF cardinality(v_rows) < cardinality(p_ids) THEN
    v_rows := v_rows || array(SELECT m FROM broadcast_messages m
                               WHERE m.id = ANY (p_ids) AND m.status IN ('sent', 'failed', 'skipped')
                                 AND coalesce(m.sent_at, m.failed_at) < v_recent);
  END IF;
  PERFORM _emit_webhook_event(m.user_id, 'message.status', jsonb_build_object(
            'message_id', m.id, 'status', p_status, 'device_id', m.device_id, 'campaign_id', m.campaign_id,
            'sequence_id', m.sequence_id, 'recipient_phone', m.recipient_phone,
            'error', CASE WHEN p_status IN ('failed', 'skipped') THEN m.error_message END,
            'skip_reason', m.skip_reason, 'at', now()))
     FROM unnest(v_rows) m
    ORDER BY m.id;
END $$;
COMMENT ON FUNCTION _emit_message_status_webhooks(text, bigint[], bigint[]) IS
  'message.status webhook events (sent, failed, skipped, delivered, read) for the messages one statement changed; '
  'called by _notify_queue_changes. Costs one probe when none of the owners subscribed.';

-- Endpoints -------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION _check_webhook_events(p_events text[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF coalesce(cardinality(p_events), 0) = 0 THEN
    RAISE EXCEPTION 'choose at least one event (%)', array_to_string(webhook_event_types(), ', ')
      USING ERRCODE = '22023';
  END IF;
  IF NOT p_events <@ webhook_event_types() OR array_position(p_events, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'unknown event "%": choose from %',
      (SELECT min(x) FROM unnest(p_events) x WHERE x IS NULL OR x <> ALL (webhook_event_types())),
      array_to_string(webhook_event_types(), ', ') USING ERRCODE = '22023';
  END IF;
END $$;
COMMENT ON FUNCTION _check_webhook_events(text[]) IS 'Raises 22023 unless the list names one or more known event types.';

CREATE OR REPLACE FUNCTION create_webhook_endpoint(p_user_id bigint, p_url text, p_secret text, p_events text[],
                                                   p_description text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
  PERFORM _check_webhook_events(p_events);
  -- Per-owner lock: two concurrent creations cannot both pass the count.
  PERFORM pg_advisory_xact_lock(hashtextextended('webhook_endpoints', p_user_id));
  IF (SELECT count(*) FROM webhook_endpoints WHERE user_id = p_user_id) >= 10 THEN
    RAISE EXCEPTION 'you have 10 webhook endpoints already; delete one first' USING ERRCODE = 'WAQ01';
  END IF;
  INSERT INTO webhook_endpoints (user_id, url, secret, events, description)
  VALUES (p_user_id, p_url, p_secret, (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(p_events) x),
          coalesce(p_description, ''))
  RETURNING id INTO v_id;
  RETURN v_id;
END $$;
COMMENT ON FUNCTION create_webhook_endpoint(bigint, text, text, text[], text) IS
  'Adds an endpoint for the owner (at most 10) with its signing secret and event filter; the caller has '
  'checked the URL against the outbound-address rules. Returns its id.';

CREATE OR REPLACE FUNCTION update_webhook_endpoint(p_user_id bigint, p_id bigint, p_url text, p_events text[],
                                                   p_description text, p_enabled boolean)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF p_events IS NOT NULL THEN
    PERFORM _check_webhook_events(p_events);
  END IF;
  UPDATE webhook_endpoints
     SET url = coalesce(p_url, url),
         events = coalesce((SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(p_events) x), events),
         description = coalesce(p_description, description),
         enabled = coalesce(p_enabled, enabled)
   WHERE id = p_id AND user_id = p_user_id;
  RETURN FOUND;
END $$;
COMMENT ON FUNCTION update_webhook_endpoint(bigint, bigint, text, text[], text, boolean) IS
  'Changes an owner''s endpoint (null arguments keep their value). False when it is not the owner''s.';

CREATE OR REPLACE FUNCTION delete_webhook_endpoint(p_user_id bigint, p_id bigint) RETURNS boolean
LANGUAGE sql AS $$
  WITH gone AS (DELETE FROM webhook_endpoints WHERE id = p_id AND user_id = p_user_id RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM gone)
$$;
COMMENT ON FUNCTION delete_webhook_endpoint(bigint, bigint) IS
  'Deletes an owner''s endpoint and its outbox rows (nothing more is sent to it). False when not the owner''s.';

CREATE OR REPLACE FUNCTION webhook_endpoint_list(p_user_id bigint)
RETURNS TABLE (id bigint, url text, secret text, events text[], description text, enabled boolean,
               created_at timestamptz, pending bigint, dead bigint, delivered bigint, last_attempt_at timestamptz,
               last_status_code integer)
LANGUAGE sql STABLE AS $$
  SELECT e.id, e.url, e.secret, e.events, e.description, e.enabled, e.created_at,
         -- the backlog and the dead letters through their partial indexes; delivered rows are counted
         -- as they are delivered (webhook_endpoints.delivered): counting them read every one ever made
         (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending'),
         (SELECT count(*) FROM webhook_deliveries d
           WHERE d.user_id = p_user_id AND d.status = 'dead' AND d.endpoint_id = e.id),
         e.delivered,
         last.last_attempt_at, last.last_status_code
    FROM webhook_endpoints e
    LEFT JOIN LATERAL (SELECT d.last_attempt_at, d.last_status_code FROM webhook_deliveries d
                        WHERE d.endpoint_id = e.id AND d.last_attempt_at IS NOT NULL
                        ORDER BY d.id DESC LIMIT 1) last ON true
   WHERE e.user_id = p_user_id
   ORDER BY e.id
$$;
COMMENT ON FUNCTION webhook_endpoint_list(bigint) IS
  'The owner''s endpoints with their secret, filter, deliveries by status and the latest attempt''s HTTP status.';

CREATE OR REPLACE FUNCTION webhook_delivery_list(p_user_id bigint, p_endpoint_id bigint, p_status text,
                                                 p_limit integer DEFAULT 50)
RETURNS TABLE (id bigint, endpoint_id bigint, event_id uuid, event_type text, status text, attempts integer,
               last_status_code integer, last_error text, created_at timestamptz, last_attempt_at timestamptz,
               next_attempt_at timestamptz, delivered_at timestamptz, payload jsonb)
LANGUAGE sql STABLE AS $$
  SELECT d.id, d.endpoint_id, d.event_id, d.event_type, d.status, d.attempts, d.last_status_code, d.last_error,
         d.created_at, d.last_attempt_at, d.next_attempt_at, d.delivered_at, d.payload
    FROM webhook_deliveries d
   WHERE d.user_id = p_user_id
     AND (p_endpoint_id IS NULL OR d.endpoint_id = p_endpoint_id)
     AND (p_status IS NULL OR d.status = p_status)
   ORDER BY d.id DESC
   LIMIT least(greatest(coalesce(p_limit, 50), 1), 500)
$$;
COMMENT ON FUNCTION webhook_delivery_list(bigint, bigint, text, integer) IS
  'The owner''s most recent deliveries, newest first (optionally one endpoint''s, one status''s: dead is the '
  'dead-letter list), with attempts and the last HTTP status. At most 500.';

CREATE OR REPLACE FUNCTION send_test_webhook(p_user_id bigint, p_endpoint_id bigint) RETURNS boolean
LANGUAGE sql AS $$
  SELECT _emit_webhook_event(p_user_id, 'webhook.test',
                            jsonb_build_object('endpoint_id', p_endpoint_id, 'message', 'a test event'),
                            p_endpoint_id) > 0
$$;
COMMENT ON FUNCTION send_test_webhook(bigint, bigint) IS
  'Queues a webhook.test event to one of the owner''s endpoints (enabled or not in its filter). False when not the owner''s.';

CREATE OR REPLACE FUNCTION redeliver_webhook(p_user_id bigint, p_delivery_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE webhook_deliveries
     SET status = 'pending', attempts = 0, next_attempt_at = now(), retry_from = now()
   WHERE id = p_delivery_id AND user_id = p_user_id AND status = 'dead';
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM pg_notify('wa_webhooks', '');
  RETURN true;
END $$;
COMMENT ON FUNCTION redeliver_webhook(bigint, bigint) IS
  'Puts a dead-lettered delivery of the owner''s back in the outbox with a fresh retry window. It keeps its '
  'place in the endpoint''s order. False when it is not the owner''s or not dead.';

-- The deliverer ---------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION claim_webhook_deliveries(p_limit integer, p_lease_seconds double precision)
RETURNS TABLE (delivery_id bigint, endpoint_id bigint, url text, secret text, event_id uuid, event_type text,
               payload jsonb, attempts integer)
LANGUAGE sql AS $$
  -- Only an endpoint's oldest pending row may go, and only one at a time (the lease): delivery in
  -- event order, and a failing head holds back the rows behind it until it is delivered or dead.
  WITH heads AS (
    SELECT e.id AS endpoint_id, h.id AS delivery_id
      FROM webhook_endpoints e
      CROSS JOIN LATERAL (SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
                           WHERE d.endpoint_id = e.id AND d.status = 'pending'
                           ORDER BY d.id LIMIT 1) h
     WHERE e.enabled AND (e.leased_until IS NULL OR e.leased_until < now()) AND h.next_attempt_at <= now()
     ORDER BY h.next_attempt_at
     LIMIT p_limit
       FOR UPDATE OF e SKIP LOCKED
  ), leased AS (
    UPDATE webhook_endpoints e SET leased_until = now() + make_interval(secs => p_lease_seconds)
      FROM heads WHERE e.id = heads.endpoint_id
    RETURNING e.id, e.url, e.secret, heads.delivery_id
  )
  SELECT l.delivery_id, l.id, l.url, l.secret, d.event_id, d.event_type, d.payload, d.attempts
    FROM leased l JOIN webhook_deliveries d ON d.id = l.delivery_id
   ORDER BY d.id
$$;
COMMENT ON FUNCTION claim_webhook_deliveries(integer, double precision) IS
  'The deliverer''s claim: for up to p_limit enabled endpoints not held by another deliverer, the oldest pending '
  'delivery when it is due; each endpoint is held for p_lease_seconds (longer than one HTTP attempt), so a '
  'deliverer that dies mid-send only delays it: the row is sent again (at least once; receivers deduplicate by event id).';

CREATE OR REPLACE FUNCTION finish_webhook_delivery(p_delivery_id bigint, p_status_code integer, p_error text,
                                                   p_backoff_seconds double precision,
                                                   p_window_seconds double precision)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE d webhook_deliveries;
        v_delay interval;
BEGIN
  SELECT * INTO d FROM webhook_deliveries WHERE id = p_delivery_id AND status = 'pending' FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;   -- deleted with its endpoint meanwhile
  END IF;
  UPDATE webhook_endpoints
     SET leased_until = NULL, delivered = delivered + coalesce(p_status_code BETWEEN 200 AND 299, false)::int
   WHERE id = d.endpoint_id;
  IF p_status_code BETWEEN 200 AND 299 THEN
    UPDATE webhook_deliveries
       SET status = 'delivered', delivered_at = now(), attempts = d.attempts + 1, last_attempt_at = now(),
           last_status_code = p_status_code, last_error = NULL
     WHERE id = d.id;
    PERFORM notify_user(d.user_id, 'webhook_delivery', jsonb_build_object('id', d.id, 'status', 'delivered'));
    RETURN 'delivered';
  END IF;
  -- Exponential back-off, each step capped at an hour, with jitter (half to all of the step) so
  -- a recovering receiver is not hit by every retry at once.
  v_delay := make_interval(secs => least(p_backoff_seconds * 2 ^ least(d.attempts, 40), 3600) * (0.5 + random() / 2));
  UPDATE webhook_deliveries
     SET attempts = d.attempts + 1, last_attempt_at = now(), last_status_code = p_status_code,
         last_error = left(p_error, 500), next_attempt_at = now() + v_delay,
         status = CASE WHEN now() + v_delay > d.retry_from + make_interval(secs => p_window_seconds)
                       THEN 'dead' ELSE 'pending' END
   WHERE id = d.id
  RETURNING status INTO d.status;
  PERFORM notify_user(d.user_id, 'webhook_delivery', jsonb_build_object('id', d.id, 'status', d.status));
  RETURN d.status;
END $$;
COMMENT ON FUNCTION finish_webhook_delivery(bigint, integer, text, double precision, double precision) IS
  'Records one attempt (p_status_code null when no HTTP answer came, p_error why) and releases the endpoint: '
  '2xx delivered; otherwise retried after an exponential back-off from p_backoff_seconds with jitter, or dead '
  '(the dead-letter list) when the next attempt would fall past p_window_seconds. Pushes a live webhook_delivery '
  'event {id, status} to the owner. Returns the new status.';
