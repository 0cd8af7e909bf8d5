-- Demo data for `make run` (simulated WhatsApp): a few devices and leads, once per account.

CREATE OR REPLACE FUNCTION seed_demo(p_user_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_devices bigint[];
BEGIN
  IF EXISTS (SELECT 1 FROM user_devices WHERE user_id = p_user_id) THEN
    RETURN;  -- seeded already, or the operator has real devices: never touch them
  END IF;
  SELECT array_agg(create_device(p_user_id, 'Demo phone ' || i, 5, 15, 80, 800) ORDER BY i)
    INTO v_devices FROM generate_series(1, 3) AS i;
  INSERT INTO leads (user_id, device_id, name, phone, niche, target_status, trigger)
  SELECT p_user_id, v_devices[1 + i % 3],
         (ARRAY['Aisyah', 'Ben', 'Chong', 'Devi', 'Eric', 'Farah', ''])[1 + i % 7],
         '60123' || lpad(i::text, 6, '0'),
         (ARRAY['fitness', 'fitness,nutrition', 'property', 'insurance'])[1 + i % 4],
         CASE WHEN i % 5 = 0 THEN 'customer' ELSE 'prospect' END,
         NULL
    FROM generate_series(1, 120) AS i;
END $$;
COMMENT ON FUNCTION seed_demo(bigint) IS
  'Creates demo devices and leads for an account that has no devices yet (make run, simulated transport).';
