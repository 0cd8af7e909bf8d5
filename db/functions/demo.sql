-- Demo data for `make run` (simulated WhatsApp): devices, leads, a campaign a few minutes out and
-- an active drip sequence, once per account. Everything goes through the same functions the
-- dashboard uses, so the demo exercises the real paths.

CREATE OR REPLACE FUNCTION seed_demo(p_user_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_devices bigint[];
  v_local timestamp := (now() + interval '3 minutes') AT TIME ZONE (SELECT timezone FROM users WHERE id = p_user_id);
  v_sequence bigint;
BEGIN
  IF EXISTS (SELECT 1 FROM user_devices WHERE user_id = p_user_id) THEN
    RETURN;  -- seeded already, or the operator has real devices: never touch them
  END IF;
  SELECT array_agg(create_device(p_user_id, 'Demo phone ' || i, 5, 15) ORDER BY i)
    INTO v_devices FROM generate_series(1, 3) AS i;
  -- Phones 1 and 2 were "paired before" (the simulated network resumes a stored session);
  -- phone 3 waits for a QR scan, so the pairing flow can be tried from the devices page.
  UPDATE user_devices d SET phone = '601900000' || d.id % 10, jid = '601900000' || d.id % 10 || '.0:1@s.whatsapp.net'
   WHERE d.id IN (v_devices[1], v_devices[2]);
  INSERT INTO leads (user_id, device_id, name, phone, niche, target_status)
  SELECT p_user_id, v_devices[1 + i % 3],
         (ARRAY['Aisyah', 'Ben', 'Chong', 'Devi', 'Eric', 'Farah', ''])[1 + i % 7],
         '60123' || lpad(i::text, 6, '0'),
         (ARRAY['fitness', 'fitness,nutrition', 'property', 'insurance'])[1 + i % 4],
         CASE WHEN i % 5 = 0 THEN 'customer' ELSE 'prospect' END
    FROM generate_series(1, 120) AS i;

  PERFORM create_campaign(p_user_id, 'broadcast', 'Demo: fitness promo', 'fitness', 'all',
                          '{Hi|Hello|Hey} {name}, our {new|latest} fitness plan starts this week!', NULL,
                          NULL, NULL, v_local::date, date_trunc('minute', v_local)::time, 5, 15);

  v_sequence := save_sequence(p_user_id, NULL, jsonb_build_object(
    'name', 'Demo: welcome drip', 'trigger', 'welcome', 'min_delay_seconds', 5, 'max_delay_seconds', 15,
    'steps', jsonb_build_array(
      jsonb_build_object('day_number', 1, 'is_entry_point', true, 'trigger_delay_hours', 0,
                         'content', 'Welcome {name}! Reply anytime with questions.'),
      jsonb_build_object('day_number', 2, 'trigger_delay_hours', 24,
                         'content', '{name}, here is day 2 of your plan.'),
      jsonb_build_object('day_number', 3, 'trigger_delay_hours', 24,
                         'content', 'Last tip, {name}: consistency beats intensity.'))));
  PERFORM set_sequence_status(p_user_id, v_sequence, 'active');
  -- A few leads carry the entry trigger: the lead trigger enrolls them at once.
  UPDATE leads SET trigger = 'welcome' WHERE user_id = p_user_id AND id % 10 = 0;
END $$;
COMMENT ON FUNCTION seed_demo(bigint) IS
  'Creates demo devices, leads, a campaign due in three minutes and an active welcome sequence for an account '
  'that has no devices yet (make run, simulated transport).';
