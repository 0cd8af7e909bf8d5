-- Devices: creation and the pacing row every device has.

CREATE OR REPLACE FUNCTION create_device(p_user_id bigint, p_device_name text,
                                         p_min_delay_seconds integer DEFAULT 30,
                                         p_max_delay_seconds integer DEFAULT 60,
                                         p_hourly_limit integer DEFAULT 80,
                                         p_daily_limit integer DEFAULT 800)
RETURNS bigint LANGUAGE sql AS $$
  INSERT INTO user_devices (user_id, device_name, min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit)
  VALUES (p_user_id, btrim(p_device_name), p_min_delay_seconds, p_max_delay_seconds, p_hourly_limit, p_daily_limit)
  RETURNING id
$$;
COMMENT ON FUNCTION create_device(bigint, text, integer, integer, integer, integer) IS
  'Adds a device (status offline until paired) with its delays and caps; returns its id.';

CREATE OR REPLACE FUNCTION device_pacing_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO device_pacing (device_id) VALUES (NEW.id);
  RETURN NEW;
END $$;
COMMENT ON FUNCTION device_pacing_row() IS 'Trigger: every device gets its pacing row when created.';

CREATE OR REPLACE TRIGGER user_devices_pacing AFTER INSERT ON user_devices
  FOR EACH ROW EXECUTE FUNCTION device_pacing_row();
