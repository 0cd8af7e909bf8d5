-- Per-account quotas, and login/registration throttling per address as well as per email.
-- depends: 0801_sessions_tokens
CREATE TABLE quotas (
  user_id  bigint REFERENCES users ON DELETE CASCADE,   -- NULL: the default for every account
  kind     text NOT NULL CHECK (kind IN ('devices', 'leads', 'campaigns', 'sequences', 'tokens', 'media')),
  max_rows integer NOT NULL CHECK (max_rows >= 0),
  CONSTRAINT quotas_once UNIQUE NULLS NOT DISTINCT (user_id, kind)
);
INSERT INTO quotas (user_id, kind, max_rows) VALUES
  (NULL, 'devices', 100), (NULL, 'leads', 200000), (NULL, 'campaigns', 100),
  (NULL, 'sequences', 100), (NULL, 'tokens', 20), (NULL, 'media', 2000);
COMMENT ON TABLE quotas IS
  'How many of each kind an account may have (campaigns: not yet ended ones). The row with user_id NULL is the '
  'default; a row for an account overrides it. Set by administrators (set_quota).';

-- Every attempt is recorded before the password is checked, so concurrent guesses count too.
ALTER TABLE login_attempts ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY;
ALTER TABLE login_attempts ADD COLUMN kind text NOT NULL DEFAULT 'login' CHECK (kind IN ('login', 'register'));
ALTER TABLE login_attempts ADD COLUMN address text NOT NULL DEFAULT '';
CREATE INDEX login_attempts_address ON login_attempts (address, attempted_at);
COMMENT ON TABLE login_attempts IS
  'Login and registration attempts with the client address, for throttling (begin_auth_attempt); a login stays '
  'counted as failed until its password checked out.';

DROP FUNCTION IF EXISTS login_throttled(text, integer, interval);
DROP FUNCTION IF EXISTS record_login(text, boolean);
