-- The live channel's checks: what a browser may ask the /ws socket about.

CREATE OR REPLACE FUNCTION live_device_allowed(p_user_id bigint, p_device_id bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM user_devices WHERE id = p_device_id AND user_id = p_user_id)
$$;
COMMENT ON FUNCTION live_device_allowed(bigint, bigint) IS
  'True when the device belongs to the user: a browser may watch only its own devices'' live events.';
