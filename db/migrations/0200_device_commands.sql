-- Devices: commands from the dashboard to the sender holding a connection, and the index behind a
-- chat's history of queued messages.
-- depends: 0001_schema

-- The web never talks to a WhatsApp connection: it inserts a command row (and NOTIFYs channel
-- wa_device_commands); the sender that leases the device takes it, runs it on its transport and
-- records the outcome. A command nobody takes expires (device_health_tick).
CREATE TABLE device_commands (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id    bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  device_id  bigint NOT NULL REFERENCES user_devices ON DELETE CASCADE,
  command    text NOT NULL CHECK (command IN ('pair', 'pair_phone', 'simulate_scan', 'logout', 'delete', 'reconnect')),
  phone      text CHECK (phone ~ '^[1-9][0-9]{6,14}$'),
  status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'taken', 'done', 'failed')),
  taken_by   text,
  result     text,
  error      text,
  created_at timestamptz NOT NULL DEFAULT now(),
  taken_at   timestamptz,
  done_at    timestamptz,
  CHECK (command <> 'pair_phone' OR phone IS NOT NULL),
  CHECK ((status = 'pending') = (taken_at IS NULL) OR status = 'failed'),
  CHECK ((status IN ('done', 'failed')) = (done_at IS NOT NULL)),
  CHECK (status <> 'failed' OR error IS NOT NULL)
);
CREATE INDEX device_commands_open ON device_commands (device_id, id) WHERE status IN ('pending', 'taken');
CREATE INDEX device_commands_user ON device_commands (user_id, created_at);
COMMENT ON TABLE device_commands IS
  'Requests from the dashboard (pair, pair_phone, simulate_scan, logout, delete, reconnect) to the sender leasing the device.';

-- A chat's outgoing history is the queue itself (one source of truth): this finds a device's
-- messages to one number.
CREATE INDEX broadcast_messages_device_phone ON broadcast_messages (device_id, recipient_phone, id);
