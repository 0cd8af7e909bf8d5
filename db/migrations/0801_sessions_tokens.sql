-- Sessions live on the server, so logging out and changing the password end them; API tokens
-- expire and can be listed and revoked.
-- depends: 0800_media
CREATE TABLE user_sessions (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id    bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  CHECK (expires_at > created_at)
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);
COMMENT ON TABLE user_sessions IS
  'Signed-in browsers: the session cookie carries a random token, only its SHA-256 is stored. A session ends at '
  'expires_at, on logout, or for every browser of the account when its password changes.';

-- Tokens issued before this expire 90 days from now; new ones say when.
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz NOT NULL DEFAULT now() + interval '90 days';
ALTER TABLE api_tokens ALTER COLUMN expires_at DROP DEFAULT;
COMMENT ON COLUMN api_tokens.expires_at IS 'After this the token is refused (revoking deletes the row).';

DROP FUNCTION IF EXISTS issue_token(bigint, text, text, text);
