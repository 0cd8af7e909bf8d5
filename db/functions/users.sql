-- Accounts: creation, login lookup and throttling, API tokens. Passwords are hashed by the caller
-- (argon2); the database only ever sees the hash.

CREATE OR REPLACE FUNCTION create_user(p_email text, p_full_name text, p_password_hash text,
                                       p_timezone text DEFAULT 'Asia/Kuala_Lumpur',
                                       p_is_admin boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
  IF NOT is_valid_timezone(p_timezone) THEN
    RAISE EXCEPTION 'unknown time zone "%"', p_timezone USING ERRCODE = '22023';
  END IF;
  INSERT INTO users (email, full_name, password_hash, timezone, is_admin)
  VALUES (lower(btrim(p_email)), btrim(coalesce(p_full_name, '')), p_password_hash, p_timezone, p_is_admin)
  RETURNING id INTO v_id;
  RETURN v_id;
EXCEPTION WHEN unique_violation THEN
  RAISE EXCEPTION 'an account with email % already exists', lower(btrim(p_email)) USING ERRCODE = '23505';
END $$;
COMMENT ON FUNCTION create_user(text, text, text, text, boolean) IS
  'Creates an account from an already-hashed password; returns its id. Email is stored lower-case.';

CREATE OR REPLACE FUNCTION user_for_login(p_email text)
RETURNS TABLE (id bigint, email text, full_name text, password_hash text, timezone text, is_admin boolean)
LANGUAGE sql STABLE AS $$
  SELECT id, email, full_name, password_hash, timezone, is_admin FROM users WHERE lower(email) = lower(btrim(p_email))
$$;
COMMENT ON FUNCTION user_for_login(text) IS 'The account (with its password hash) for a login email, if any.';

-- Throttling ----------------------------------------------------------------------------------
-- An attempt is recorded (as failed) before the password is hashed or checked, under locks per
-- address and per email, so a burst of concurrent guesses counts in full. Limits, per 15 minutes:
-- 5 failed logins for one email from one address, 30 from one address, 100 for one email from
-- anywhere (a victim is locked out only by a spread attack); 5 registrations per address an hour.
CREATE OR REPLACE FUNCTION begin_auth_attempt(p_kind text, p_email text, p_address text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_email text := lower(btrim(coalesce(p_email, '')));
        v_address text := left(coalesce(p_address, ''), 64);
        v_id bigint;
BEGIN
  IF p_kind IS NULL OR p_kind NOT IN ('login', 'register') THEN
    RAISE EXCEPTION 'attempt kind must be login or register' USING ERRCODE = '22023';
  END IF;
  -- Always the address first, then the email: no two callers wait on each other in a cycle.
  PERFORM pg_advisory_xact_lock(hashtextextended('auth address ' || v_address, 0));
  PERFORM pg_advisory_xact_lock(hashtextextended('auth email ' || v_email, 0));
  IF p_kind = 'register' THEN
    IF (SELECT count(*) FROM login_attempts WHERE address = v_address AND kind = 'register'
          AND attempted_at > now() - interval '1 hour') >= 5 THEN
      RETURN NULL;
    END IF;
  ELSIF (SELECT count(*) FROM login_attempts WHERE lower(email) = v_email AND address = v_address
           AND kind = 'login' AND NOT succeeded AND attempted_at > now() - interval '15 minutes') >= 5
     OR (SELECT count(*) FROM login_attempts WHERE address = v_address
           AND kind = 'login' AND NOT succeeded AND attempted_at > now() - interval '15 minutes') >= 30
     OR (SELECT count(*) FROM login_attempts WHERE lower(email) = v_email
           AND kind = 'login' AND NOT succeeded AND attempted_at > now() - interval '15 minutes') >= 100 THEN
    RETURN NULL;
  END IF;
  INSERT INTO login_attempts (email, succeeded, kind, address) VALUES (v_email, false, p_kind, v_address)
  RETURNING id INTO v_id;
  RETURN v_id;
END $$;
COMMENT ON FUNCTION begin_auth_attempt(text, text, text) IS
  'Records a login or registration attempt from p_address before any password work and returns its id; NULL '
  'when throttled (5 failed logins per email and address, 30 per address, 100 per email in 15 minutes; 5 '
  'registrations per address an hour). A login counts as failed until finish_auth_attempt says otherwise.';

CREATE OR REPLACE FUNCTION finish_auth_attempt(p_attempt_id bigint, p_succeeded boolean)
RETURNS void LANGUAGE sql AS $$
  UPDATE login_attempts SET succeeded = p_succeeded WHERE id = p_attempt_id
$$;
COMMENT ON FUNCTION finish_auth_attempt(bigint, boolean) IS 'Marks a login attempt as succeeded (or failed) once the password is checked.';

CREATE OR REPLACE FUNCTION set_user_password(p_user_id bigint, p_password_hash text)
RETURNS void LANGUAGE sql AS $$
  UPDATE users SET password_hash = p_password_hash WHERE id = p_user_id;
  DELETE FROM user_sessions WHERE user_id = p_user_id;
$$;
COMMENT ON FUNCTION set_user_password(bigint, text) IS
  'Replaces an account''s password hash and ends every session of the account (each browser signs in again).';

CREATE OR REPLACE FUNCTION session_user_info(p_user_id bigint)
RETURNS TABLE (id bigint, email text, full_name text, timezone text, is_admin boolean)
LANGUAGE sql STABLE AS $$
  SELECT id, email, full_name, timezone, is_admin FROM users WHERE id = p_user_id
$$;
COMMENT ON FUNCTION session_user_info(bigint) IS 'The signed-in account''s profile (no password hash).';

-- Sessions ------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION open_session(p_user_id bigint, p_token text, p_lifetime interval)
RETURNS void LANGUAGE sql AS $$
  DELETE FROM user_sessions WHERE user_id = p_user_id AND expires_at <= now();
  INSERT INTO user_sessions (user_id, token_hash, expires_at)
  VALUES (p_user_id, sha256(convert_to(p_token, 'UTF8')), now() + p_lifetime);
$$;
COMMENT ON FUNCTION open_session(bigint, text, interval) IS
  'Starts a session for a browser that signed in (the caller generates the token and puts it in the cookie); '
  'drops the account''s expired sessions.';

CREATE OR REPLACE FUNCTION session_account(p_token text)
RETURNS TABLE (id bigint, email text, full_name text, timezone text, is_admin boolean)
LANGUAGE sql STABLE AS $$
  SELECT u.id, u.email, u.full_name, u.timezone, u.is_admin
    FROM user_sessions s JOIN users u ON u.id = s.user_id
   WHERE s.token_hash = sha256(convert_to(p_token, 'UTF8')) AND s.expires_at > now()
$$;
COMMENT ON FUNCTION session_account(text) IS 'The account of a live session token (no row when ended or expired).';

CREATE OR REPLACE FUNCTION close_session(p_token text)
RETURNS void LANGUAGE sql AS $$
  DELETE FROM user_sessions WHERE token_hash = sha256(convert_to(p_token, 'UTF8'))
$$;
COMMENT ON FUNCTION close_session(text) IS 'Ends one session (logout): its cookie no longer signs anyone in.';

-- API tokens and webhook secrets ----------------------------------------------------------------
CREATE OR REPLACE FUNCTION issue_token(p_user_id bigint, p_purpose text, p_name text, p_token text,
                                       p_expires_in_days integer)
RETURNS TABLE (id bigint, name text, purpose text, created_at timestamptz, expires_at timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
  IF p_purpose IS NULL OR p_purpose NOT IN ('api', 'webhook') THEN
    RAISE EXCEPTION 'purpose must be api or webhook' USING ERRCODE = '22023';
  END IF;
  IF coalesce(btrim(p_name), '') = '' OR length(btrim(p_name)) > 100 THEN
    RAISE EXCEPTION 'a token needs a name of 1 to 100 characters (what uses it)' USING ERRCODE = '22023';
  END IF;
  IF p_expires_in_days IS NULL OR p_expires_in_days NOT BETWEEN 1 AND 365 THEN
    RAISE EXCEPTION 'expires_in_days must be from 1 to 365' USING ERRCODE = '22023';
  END IF;
  PERFORM require_quota(p_user_id, 'tokens', 1);
  RETURN QUERY
  INSERT INTO api_tokens AS t (user_id, purpose, name, token_hash, expires_at)
  VALUES (p_user_id, p_purpose, btrim(p_name), sha256(convert_to(p_token, 'UTF8')),
          now() + make_interval(days => p_expires_in_days))
  RETURNING t.id, t.name, t.purpose, t.created_at, t.expires_at;
END $$;
COMMENT ON FUNCTION issue_token(bigint, text, text, text, integer) IS
  'Stores the hash of a new named API or webhook token (generated by the caller, shown to the user once) that '
  'expires after p_expires_in_days (1 to 365).';

CREATE OR REPLACE FUNCTION list_tokens(p_user_id bigint)
RETURNS TABLE (id bigint, name text, purpose text, created_at timestamptz, last_used_at timestamptz,
               expires_at timestamptz, expired boolean)
LANGUAGE sql STABLE AS $$
  SELECT t.id, t.name, t.purpose, t.created_at, t.last_used_at, t.expires_at, t.expires_at <= now()
    FROM api_tokens t WHERE t.user_id = p_user_id ORDER BY t.id DESC
$$;
COMMENT ON FUNCTION list_tokens(bigint) IS 'The owner''s API tokens and webhook secrets (never the secret itself), newest first.';

CREATE OR REPLACE FUNCTION revoke_token(p_user_id bigint, p_token_id bigint)
RETURNS boolean LANGUAGE sql AS $$
  WITH gone AS (DELETE FROM api_tokens WHERE id = p_token_id AND user_id = p_user_id RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM gone)
$$;
COMMENT ON FUNCTION revoke_token(bigint, bigint) IS 'Revokes one of the owner''s tokens at once; false when there is no such token.';

CREATE OR REPLACE FUNCTION token_user(p_token text, p_purpose text)
RETURNS bigint LANGUAGE sql AS $$
  UPDATE api_tokens SET last_used_at = now()
   WHERE token_hash = sha256(convert_to(p_token, 'UTF8')) AND purpose = p_purpose AND expires_at > now()
  RETURNING user_id
$$;
COMMENT ON FUNCTION token_user(text, text) IS
  'The owner of a live (unexpired, unrevoked) token of that purpose (NULL otherwise); marks it used.';
