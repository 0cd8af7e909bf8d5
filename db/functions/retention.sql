-- Retention of settled messages: message_history is partitioned by settle week; whole weeks
-- are created ahead and dropped once past the retention, so the daily work is constant and no
-- row is ever bulk-deleted. Rollups (message_outcome_counts, sequence_step_counters, campaign
-- counts on campaigns) are separate tables and keep the dropped weeks' figures.

-- create_history_week(week), which makes one week's partition, is defined by its migration (1500),
-- which needed it before this folder is applied.
COMMENT ON FUNCTION create_history_week(timestamptz) IS
  'Creates (and comments) the message_history partition of the week starting at p_week (a Monday 00:00 UTC); returns its name.';

CREATE OR REPLACE FUNCTION maintain_message_history(p_now timestamptz DEFAULT now(), p_weeks_ahead integer DEFAULT 4)
RETURNS TABLE (created text[], dropped text[])
LANGUAGE plpgsql
-- Making or detaching a week locks message_history exclusively. Waiting for that lock behind a long
-- read (an analyst's query over the history) would queue every completion behind the wait: the
-- fleet's sends stop until the read ends. So each step waits this long at most, and one that cannot
-- have its lock is left to the next run (hourly; weeks are made 4 ahead, and rows of a week not made
-- yet land in the default partition).
SET lock_timeout = '100ms'
AS $$
DECLARE
  v_week timestamptz;
  v_name text;
  v_upper timestamptz;
  v_cutoff timestamptz := p_now - make_interval(days => setting('message_retention_days')::integer);
  r record;
BEGIN
  created := '{}'; dropped := '{}';
  -- Weeks start on Monday 00:00 UTC, whatever the session's zone.
  FOR v_week IN SELECT generate_series(date_trunc('week', p_now, 'UTC'),
                                       date_trunc('week', p_now, 'UTC') + make_interval(weeks => p_weeks_ahead),
                                       interval '1 week')
  LOOP
    v_name := 'message_history_' || to_char(v_week AT TIME ZONE 'UTC', 'YYYYMMDD');
    CONTINUE WHEN to_regclass(v_name) IS NOT NULL
      -- a week already holding rows in the default partition would fail to attach: left there
      OR EXISTS (SELECT 1 FROM message_history_default d
                  WHERE coalesce(d.sent_at, d.failed_at) >= v_week
                    AND coalesce(d.sent_at, d.failed_at) < v_week + interval '1 week');
    BEGIN
      created := created || create_history_week(v_week);
    EXCEPTION WHEN lock_not_available THEN
      RAISE WARNING 'message history: % not created yet, a long read holds message_history (next run)', v_name;
    END;
  END LOOP;
  -- Whole weeks that ended before the cutoff: detached, then dropped (no row-by-row delete).
  FOR r IN SELECT c.oid::regclass AS part, pg_get_expr(c.relpartbound, c.oid) AS bound
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'message_history'::regclass
            ORDER BY 1
  LOOP
    CONTINUE WHEN r.bound = 'DEFAULT';
    v_upper := substring(r.bound FROM 'TO \(''([^'']+)''\)')::timestamptz;
    CONTINUE WHEN v_upper > v_cutoff;
    v_name := r.part::text;
    BEGIN   -- detached and dropped together, or neither: a detached week nobody drops would stay for good
      EXECUTE format('ALTER TABLE message_history DETACH PARTITION %s', v_name);
      EXECUTE format('DROP TABLE %s', v_name);
      dropped := dropped || v_name;
    EXCEPTION WHEN lock_not_available THEN
      RAISE WARNING 'message history: % not dropped yet, a long read holds it (next run)', v_name;
    END;
  END LOOP;
  RETURN NEXT;
END $$;
COMMENT ON FUNCTION maintain_message_history(timestamptz, integer) IS
  'Keeps message_history''s weekly partitions: creates those of this week and the next p_weeks_ahead, and '
  'detaches and drops every week that ended more than the setting message_retention_days before p_now. Returns the '
  'partitions created and dropped. A step whose lock a long read holds for more than 100 ms is left to the next run '
  '(with a warning), so completions never queue behind it. Run hourly by app_jobs.';
