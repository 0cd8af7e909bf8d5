-- Per-account quotas: what an account may have of each kind. Every function that adds such a row
-- calls require_quota, which raises SQLSTATE WAQ01 (the web answers 403 with its message).

CREATE OR REPLACE FUNCTION _quota_limit(p_user_id bigint, p_kind text) RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT max_rows FROM quotas WHERE (user_id = p_user_id OR user_id IS NULL) AND kind = p_kind
   ORDER BY user_id NULLS LAST LIMIT 1
$$;
COMMENT ON FUNCTION _quota_limit(bigint, text) IS 'The account''s own limit for a kind, else the default.';

CREATE OR REPLACE FUNCTION _quota_usage(p_user_id bigint, p_kind text, p_cap bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
  -- Counted up to p_cap only: an account's millionth lead costs no more to check than its first.
  RETURN CASE p_kind
    WHEN 'devices' THEN (SELECT count(*) FROM (SELECT 1 FROM user_devices WHERE user_id = p_user_id LIMIT p_cap) x)
    WHEN 'leads' THEN (SELECT count(*) FROM (SELECT 1 FROM leads WHERE user_id = p_user_id LIMIT p_cap) x)
    WHEN 'campaigns' THEN (SELECT count(*) FROM (SELECT 1 FROM campaigns WHERE user_id = p_user_id
                                                   AND status NOT IN ('finished', 'failed', 'cancelled') LIMIT p_cap) x)
    WHEN 'sequences' THEN (SELECT count(*) FROM (SELECT 1 FROM sequences WHERE user_id = p_user_id LIMIT p_cap) x)
    WHEN 'tokens' THEN (SELECT count(*) FROM (SELECT 1 FROM api_tokens WHERE user_id = p_user_id LIMIT p_cap) x)
    WHEN 'media' THEN (SELECT count(*) FROM (SELECT 1 FROM media WHERE user_id = p_user_id LIMIT p_cap) x)
  END;
END $$;
COMMENT ON FUNCTION _quota_usage(bigint, text, bigint) IS
  'How many rows of a kind the account has (campaigns: not yet ended), counted up to p_cap.';

CREATE OR REPLACE FUNCTION require_quota(p_user_id bigint, p_kind text, p_adding integer) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE v_limit integer := _quota_limit(p_user_id, p_kind);
BEGIN
  IF _quota_usage(p_user_id, p_kind, v_limit::bigint + 1) + p_adding > v_limit THEN
    RAISE EXCEPTION 'quota reached: an account may have at most % %; ask an administrator to raise it',
      v_limit, CASE p_kind WHEN 'campaigns' THEN 'campaigns waiting or running' WHEN 'media' THEN 'stored images'
                           ELSE p_kind END
      USING ERRCODE = 'WAQ01';
  END IF;
END $$;
COMMENT ON FUNCTION require_quota(bigint, text, integer) IS
  'Raises WAQ01 when the account would have more than its quota of p_kind after adding p_adding rows '
  '(0 after an insert whose count was not known before).';

CREATE OR REPLACE FUNCTION account_quotas(p_user_id bigint)
RETURNS TABLE (kind text, max_rows integer, used bigint) LANGUAGE sql STABLE AS $$
  SELECT k.kind, _quota_limit(p_user_id, k.kind), _quota_usage(p_user_id, k.kind, _quota_limit(p_user_id, k.kind) + 1::bigint)
    FROM (SELECT DISTINCT q.kind FROM quotas q WHERE q.user_id IS NULL) k ORDER BY k.kind
$$;
COMMENT ON FUNCTION account_quotas(bigint) IS 'Each kind''s limit for the account and how much of it is used.';

CREATE OR REPLACE FUNCTION quota_settings(p_admin_id bigint)
RETURNS TABLE (user_id bigint, email text, kind text, max_rows integer) LANGUAGE plpgsql STABLE AS $$
BEGIN
  PERFORM _require_admin(p_admin_id);
  RETURN QUERY SELECT q.user_id, u.email, q.kind, q.max_rows
                 FROM quotas q LEFT JOIN users u ON u.id = q.user_id
                ORDER BY q.user_id NULLS FIRST, q.kind;
END $$;
COMMENT ON FUNCTION quota_settings(bigint) IS 'Every quota row (defaults first, then per-account overrides), for an administrator.';

CREATE OR REPLACE FUNCTION set_quota(p_admin_id bigint, p_user_id bigint, p_kind text, p_max_rows integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM _require_admin(p_admin_id);
  IF p_kind IS NULL OR p_kind NOT IN (SELECT kind FROM quotas WHERE user_id IS NULL) THEN
    RAISE EXCEPTION 'unknown quota kind "%"', p_kind USING ERRCODE = '22023';
  END IF;
  IF p_user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users WHERE id = p_user_id) THEN
    RAISE EXCEPTION 'no account %', p_user_id USING ERRCODE = '22023';
  END IF;
  IF p_max_rows IS NULL THEN
    IF p_user_id IS NULL THEN
      RAISE EXCEPTION 'a default needs a number' USING ERRCODE = '22023';
    END IF;
    DELETE FROM quotas WHERE user_id = p_user_id AND kind = p_kind;   -- back to the default
  ELSE
    INSERT INTO quotas (user_id, kind, max_rows) VALUES (p_user_id, p_kind, p_max_rows)
    ON CONFLICT ON CONSTRAINT quotas_once DO UPDATE SET max_rows = excluded.max_rows;
  END IF;
END $$;
COMMENT ON FUNCTION set_quota(bigint, bigint, text, integer) IS
  'An administrator sets the default (p_user_id NULL) or one account''s quota of a kind; NULL p_max_rows '
  'removes an account''s override.';

CREATE OR REPLACE FUNCTION _require_admin(p_user_id bigint) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT coalesce((SELECT is_admin FROM users WHERE id = p_user_id), false) THEN
    RAISE EXCEPTION 'administrators only' USING ERRCODE = 'WAA01';
  END IF;
END $$;
COMMENT ON FUNCTION _require_admin(bigint) IS 'Raises WAA01 (the web answers 403) unless the account is an administrator.';
