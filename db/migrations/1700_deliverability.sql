-- Deliverability (issue 17): warm-up of newly paired numbers, WhatsApp's reach-out timelock,
-- warm contacts, self-pause on failures.
-- depends: 1504_window_tolerance_setting

ALTER TABLE user_devices
  ADD COLUMN warmup_started_at timestamptz,
  ADD COLUMN timelocked_until  timestamptz,
  ADD COLUMN pause_reason      text;
COMMENT ON COLUMN user_devices.warmup_started_at IS
  'When the number paired on this device (a new or newly paired number): its daily cap ramps up from '
  'here over the warmup_days setting (_device_send_limits). NULL: no warm-up (paired before warm-up existed).';
COMMENT ON COLUMN user_devices.timelocked_until IS
  'WhatsApp''s reach-out timelock (error 463): until then the device sends only to warm contacts.';
COMMENT ON COLUMN user_devices.pause_reason IS
  'Why the device is paused (by the owner, or self-paused after failed sends); NULL when not paused.';

-- The outcomes of the device's last sends, newest last, one bit each (1 = failed), at most the
-- self_pause_window_sends setting long: the self-pause rule reads it without scanning messages.
ALTER TABLE device_pacing ADD COLUMN recent_outcomes varbit NOT NULL DEFAULT B'';
COMMENT ON COLUMN device_pacing.recent_outcomes IS
  'The device''s last settled sends, one bit each, newest last (1 = failed); at most self_pause_window_sends bits.';

-- Warm contacts: numbers that wrote to the device. A probe by primary key, never a history scan.
CREATE TABLE device_warm_contacts (
  device_id bigint NOT NULL REFERENCES user_devices ON DELETE CASCADE,
  phone     text   NOT NULL,
  since     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device_id, phone)
);
COMMENT ON TABLE device_warm_contacts IS
  'Contacts each device has talked with (they wrote to it or replied): a timelocked device still sends to '
  'these. Filled by record_inbound_message.';

INSERT INTO device_warm_contacts (device_id, phone)
SELECT DISTINCT c.device_id, c.phone
  FROM chats c
 WHERE c.phone IS NOT NULL
   AND EXISTS (SELECT 1 FROM chat_inbound i WHERE i.chat_id = c.id AND NOT i.from_me);

INSERT INTO settings (name, value, meaning) VALUES
  ('warmup_start_per_day', 20, 'a newly paired number''s daily cap on its first day of warm-up'),
  ('warmup_days', 14,
   'a newly paired number''s daily cap ramps from warmup_start_per_day to its own cap over this many days (0: no warm-up)'),
  ('timelock_default_hours', 24,
   'a reach-out timelock whose end WhatsApp did not say holds the device''s cold contacts this long'),
  ('self_pause_window_sends', 20, 'the self-pause rule looks at this many of the device''s last sends'),
  ('self_pause_failure_share', 0.5,
   'a device pauses itself when this share (0..1) of its last self_pause_window_sends sends failed');

-- Their results gain warm-up, timelock, pause reason and health score columns (re-created by
-- db/functions; the view device_health with db/views).
DROP FUNCTION IF EXISTS device_page(bigint, text, text, text, boolean, integer, integer);
DROP FUNCTION IF EXISTS _device_health() CASCADE;
