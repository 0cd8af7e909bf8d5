-- Stored media (images). The web process fetches or receives an image, validates and normalises it
-- to JPEG, then stores it here; campaigns, steps and queued messages refer to it by id.

CREATE OR REPLACE FUNCTION store_media(p_user_id bigint, p_jpeg bytea, p_source text DEFAULT '')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_sha bytea := sha256(p_jpeg);
        v_id bigint;
BEGIN
  SELECT id INTO v_id FROM media WHERE user_id = p_user_id AND sha256 = v_sha;
  IF FOUND THEN
    RETURN v_id;   -- the same picture again: one copy
  END IF;
  PERFORM require_quota(p_user_id, 'media', 1);
  INSERT INTO media (user_id, jpeg, sha256, source)
  VALUES (p_user_id, p_jpeg, v_sha, coalesce(p_source, ''))
  ON CONFLICT ON CONSTRAINT media_owner_content DO UPDATE SET source = media.source
  RETURNING id INTO v_id;
  RETURN v_id;
END $$;
COMMENT ON FUNCTION store_media(bigint, bytea, text) IS
  'Stores an already normalised JPEG for its owner (one copy per content) and returns its id; p_source is the '
  'URL it was fetched from.';

CREATE OR REPLACE FUNCTION media_from_source(p_user_id bigint, p_source text) RETURNS bigint
LANGUAGE sql STABLE AS $$
  SELECT id FROM media WHERE user_id = p_user_id AND source = p_source ORDER BY id DESC LIMIT 1
$$;
COMMENT ON FUNCTION media_from_source(bigint, text) IS
  'The owner''s image last fetched from this URL, if any: saving a campaign or step again does not fetch it again.';

CREATE OR REPLACE FUNCTION owned_media(p_user_id bigint, p_media_id bigint)
RETURNS TABLE (id bigint, jpeg bytea, created_at timestamptz) LANGUAGE sql STABLE AS $$
  SELECT m.id, m.jpeg, m.created_at FROM media m WHERE m.id = p_media_id AND m.user_id = p_user_id
$$;
COMMENT ON FUNCTION owned_media(bigint, bigint) IS 'One of the owner''s stored images (no row for another owner''s id).';

CREATE OR REPLACE FUNCTION _require_own_media(p_user_id bigint, p_media_id bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF p_media_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM media WHERE id = p_media_id AND user_id = p_user_id) THEN
    RAISE EXCEPTION 'image % is not one of your images', p_media_id USING ERRCODE = '22023';
  END IF;
  RETURN p_media_id;
END $$;
COMMENT ON FUNCTION _require_own_media(bigint, bigint) IS
  'Returns p_media_id when it is NULL or one of the owner''s images; raises 22023 otherwise.';

CREATE OR REPLACE FUNCTION media_path(p_media_id bigint, p_source text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  -- an explicit cast: text || bigint is only STABLE, and an IMMUTABLE function whose body is not is never inlined
  SELECT CASE WHEN p_media_id IS NOT NULL THEN '/media/' || p_media_id::text ELSE p_source END
$$;
COMMENT ON FUNCTION media_path(bigint, text) IS
  'A queued message''s media_url: /media/<id> of the stored image (also where its owner views it). A campaign or '
  'step saved before images were stored has only its source URL, which the sender refuses with a clear error.';

CREATE OR REPLACE FUNCTION media_jpeg(p_media_id bigint) RETURNS bytea
LANGUAGE sql STABLE AS $$ SELECT jpeg FROM media WHERE id = p_media_id $$;
COMMENT ON FUNCTION media_jpeg(bigint) IS 'The stored JPEG of an image, for the sender (NULL when there is none).';
