-- The settings, for the Python processes. The table `settings` and its SQL reader setting(name) are
-- in migration 1201 (column defaults need the reader before this folder is applied); every number
-- the engine and Python share is a row there.

CREATE OR REPLACE FUNCTION app_settings()
RETURNS TABLE (name text, value numeric, meaning text)
LANGUAGE sql STABLE AS $$
  SELECT s.name, s.value, s.meaning FROM settings s ORDER BY s.name
$$;
COMMENT ON FUNCTION app_settings() IS
  'Every engine setting (name with its unit, value, meaning): what the Python processes read at start '
  '(common/config.py), the same rows setting(name) reads.';
