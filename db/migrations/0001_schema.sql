-- The schema: every table of CONTRACT.md, with the invariants enforced by the database.
-- Times are timestamptz (UTC inside); wall-clock inputs are interpreted in the owner's zone by
-- functions in db/functions. Status columns are text with CHECKs so values read well in psql.
-- depends:

-- Whole-token lists ("fit, Fitness ,gym" -> {fit,fitness,gym}): matching is by token, never substring.
CREATE FUNCTION lead_tokens(list text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(DISTINCT t ORDER BY t), '{}')
    FROM unnest(string_to_array(lower(coalesce(list, '')), ',')) AS u(raw),
         LATERAL btrim(u.raw) AS t
   WHERE t <> ''
$$;
COMMENT ON FUNCTION lead_tokens(text) IS
  'Splits a comma-separated niche/trigger list into sorted, lower-case, de-duplicated tokens.';

CREATE FUNCTION is_valid_timezone(tz text) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = tz) $$;
COMMENT ON FUNCTION is_valid_timezone(text) IS 'True when tz is an IANA zone name PostgreSQL knows.';

-- Accounts ----------------------------------------------------------------------------------
CREATE TABLE users (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email         text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(email) <= 254),
  full_name     text NOT NULL DEFAULT '' CHECK (length(full_name) <= 200),
  password_hash text NOT NULL CHECK (password_hash ~ '^\$(argon2id|argon2i|2b)\$'),
  timezone      text NOT NULL DEFAULT 'Asia/Kuala_Lumpur' CHECK (is_valid_timezone(timezone)),
  is_admin      boolean NOT NULL DEFAULT false,
  country_code  text NOT NULL DEFAULT '60' CHECK (country_code ~ '^[1-9][0-9]{0,3}$'),
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
COMMENT ON TABLE users IS 'Operators. password_hash is argon2 (or bcrypt); timezone is used for every wall-clock time.';

-- Personal API tokens and webhook secrets: only their SHA-256 is stored.
CREATE TABLE api_tokens (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id      bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  purpose      text NOT NULL CHECK (purpose IN ('api', 'webhook')),
  name         text NOT NULL DEFAULT '',
  token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
COMMENT ON TABLE api_tokens IS 'Bearer tokens (purpose api) and webhook intake secrets (purpose webhook); sha256 only.';

CREATE TABLE login_attempts (
  email        text NOT NULL,
  attempted_at timestamptz NOT NULL DEFAULT now(),
  succeeded    boolean NOT NULL
);
CREATE INDEX login_attempts_recent ON login_attempts (lower(email), attempted_at);
COMMENT ON TABLE login_attempts IS 'Login attempts, for throttling password guessing.';

-- Devices -----------------------------------------------------------------------------------
CREATE TABLE user_devices (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id           bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  device_name       text NOT NULL CHECK (length(btrim(device_name)) BETWEEN 1 AND 100),
  phone             text CHECK (phone ~ '^[1-9][0-9]{6,14}$'),
  jid               text,
  status            text NOT NULL DEFAULT 'offline'
                    CHECK (status IN ('online', 'offline', 'connecting', 'logged_out', 'banned')),
  status_reason     text,
  status_changed_at timestamptz NOT NULL DEFAULT now(),
  banned_until      timestamptz CHECK (banned_until IS NULL OR status = 'banned'),
  min_delay_seconds integer NOT NULL DEFAULT 30 CHECK (min_delay_seconds >= 0),
  max_delay_seconds integer NOT NULL DEFAULT 60 CHECK (max_delay_seconds >= min_delay_seconds),
  hourly_limit      integer NOT NULL DEFAULT 80 CHECK (hourly_limit > 0),
  daily_limit       integer NOT NULL DEFAULT 800 CHECK (daily_limit > 0),
  last_seen         timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_devices_user ON user_devices (user_id);
CREATE UNIQUE INDEX user_devices_jid ON user_devices (jid) WHERE jid IS NOT NULL;
COMMENT ON TABLE user_devices IS 'WhatsApp numbers. status follows the transport''s events; caps and delays pace every send.';

-- Lifecycle log: reconnects, bans, failures per device, for health counts and audits.
CREATE TABLE device_events (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  device_id bigint NOT NULL REFERENCES user_devices ON DELETE CASCADE,
  event     text NOT NULL,
  detail    text,
  at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_events_device ON device_events (device_id, at);
COMMENT ON TABLE device_events IS 'What happened to each device (connected, disconnected, logged_out, banned, send_failed, ...).';

-- Pacing state, one row per device, kept apart from user_devices so the hot updates stay small.
CREATE TABLE device_pacing (
  device_id    bigint PRIMARY KEY REFERENCES user_devices ON DELETE CASCADE,
  next_send_at timestamptz NOT NULL DEFAULT '-infinity',
  -- Upper bound of sends in the trailing hour: exact when recounted, only grows between recounts,
  -- so comparing it with the cap is always safe; recounted from device_send_minutes near the cap.
  hour_count      integer NOT NULL DEFAULT 0 CHECK (hour_count >= 0),
  hour_counted_at timestamptz NOT NULL DEFAULT '-infinity',
  day_start    timestamptz NOT NULL DEFAULT '-infinity',   -- the owner's local midnight of day_count
  day_count    integer NOT NULL DEFAULT 0 CHECK (day_count >= 0)
);
COMMENT ON TABLE device_pacing IS 'Per-device pacing: earliest next send, trailing-hour and calendar-day send counts.';

CREATE TABLE device_send_minutes (
  device_id bigint NOT NULL REFERENCES user_devices ON DELETE CASCADE,
  minute    timestamptz NOT NULL,
  sends     integer NOT NULL CHECK (sends > 0),
  PRIMARY KEY (device_id, minute)
);
COMMENT ON TABLE device_send_minutes IS 'Send attempts per device and minute: the exact record behind the rolling-hour cap and hourly charts.';

-- Sender processes and the device leases that give each device exactly one sender.
CREATE TABLE senders (
  id           text PRIMARY KEY,
  hostname     text NOT NULL,
  pid          integer NOT NULL,
  capacity     integer NOT NULL CHECK (capacity > 0),
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  stopping     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE senders IS 'Live sender processes and their heartbeats.';

CREATE TABLE device_leases (
  device_id   bigint PRIMARY KEY REFERENCES user_devices ON DELETE CASCADE,
  sender_id   text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  CHECK (expires_at > acquired_at)
);
CREATE INDEX device_leases_sender ON device_leases (sender_id);
COMMENT ON TABLE device_leases IS 'Which sender runs which device, until expires_at (renewed by heartbeat).';

-- Leads -------------------------------------------------------------------------------------
CREATE TABLE leads (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id        bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  device_id      bigint REFERENCES user_devices ON DELETE SET NULL,
  name           text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
  phone          text NOT NULL CHECK (phone ~ '^[1-9][0-9]{6,14}$'),
  niche          text NOT NULL DEFAULT '' CHECK (length(niche) <= 1000),
  target_status  text NOT NULL DEFAULT 'prospect' CHECK (target_status IN ('prospect', 'customer')),
  trigger        text CHECK (length(trigger) <= 1000),
  niche_tokens   text[] GENERATED ALWAYS AS (lead_tokens(niche)) STORED,
  trigger_tokens text[] GENERATED ALWAYS AS (lead_tokens(trigger)) STORED,
  replied_at     timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT leads_owner_device_phone UNIQUE NULLS NOT DISTINCT (user_id, device_id, phone)
);
CREATE INDEX leads_device ON leads (device_id);
CREATE INDEX leads_user_phone ON leads (user_id, phone);
CREATE INDEX leads_niche_tokens ON leads USING gin (niche_tokens);
CREATE INDEX leads_trigger_tokens ON leads USING gin (trigger_tokens) WHERE trigger IS NOT NULL;
CREATE INDEX leads_pool ON leads (user_id, id) WHERE device_id IS NULL;
COMMENT ON TABLE leads IS 'Contacts per owner and device. A lead without a device is in the AI pool (view leads_ai).';

CREATE TABLE opt_outs (
  user_id    bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  phone      text NOT NULL CHECK (phone ~ '^[1-9][0-9]{6,14}$'),
  reason     text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, phone)
);
COMMENT ON TABLE opt_outs IS 'Numbers that asked to stop: no later campaign or sequence message is queued for them.';

-- Campaigns ---------------------------------------------------------------------------------
CREATE TABLE campaigns (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id           bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  kind              text NOT NULL DEFAULT 'broadcast' CHECK (kind IN ('broadcast', 'ai')),
  title             text NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
  niche             text NOT NULL DEFAULT '',
  target_status     text NOT NULL DEFAULT 'all' CHECK (target_status IN ('prospect', 'customer', 'all')),
  message           text NOT NULL CHECK (length(message) BETWEEN 1 AND 4096),
  image_url         text,
  device_ids        bigint[],            -- NULL: every device of the owner
  ai_limit_per_device integer CHECK (ai_limit_per_device IS NULL OR ai_limit_per_device > 0),
  campaign_date     date NOT NULL,       -- wall clock in the owner's zone ...
  time_schedule     time NOT NULL,
  scheduled_at      timestamptz NOT NULL, -- ... and the instant it denotes
  min_delay_seconds integer NOT NULL DEFAULT 30 CHECK (min_delay_seconds >= 0),
  max_delay_seconds integer NOT NULL DEFAULT 60 CHECK (max_delay_seconds >= min_delay_seconds),
  status            text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'triggered', 'processing', 'finished', 'failed', 'cancelled')),
  status_reason     text,
  paused_at         timestamptz,
  expand_cursor     bigint NOT NULL DEFAULT 0,  -- last lead id expanded (chunked fan-out)
  created_at        timestamptz NOT NULL DEFAULT now(),
  triggered_at      timestamptz,
  finished_at       timestamptz,
  CHECK (status = 'pending' OR triggered_at IS NOT NULL OR status = 'cancelled'),
  CHECK ((status IN ('finished', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
  CHECK (kind = 'broadcast' OR ai_limit_per_device IS NOT NULL)
);
CREATE INDEX campaigns_user ON campaigns (user_id, scheduled_at);
CREATE INDEX campaigns_due ON campaigns (scheduled_at) WHERE status IN ('pending', 'triggered');
COMMENT ON TABLE campaigns IS 'Scheduled broadcasts (kind broadcast) and pool spreads (kind ai).';

-- Sequences ---------------------------------------------------------------------------------
CREATE TABLE sequences (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id            bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  name               text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
  niche              text NOT NULL DEFAULT '',
  trigger            text NOT NULL CHECK (trigger ~ '^[^,\s][^,]*$' AND trigger = lower(btrim(trigger))),
  status             text NOT NULL DEFAULT 'inactive' CHECK (status IN ('active', 'inactive')),
  schedule_time      time,                 -- send window centre in the owner's zone; NULL: any time
  schedule_tolerance_minutes integer NOT NULL DEFAULT 60 CHECK (schedule_tolerance_minutes BETWEEN 0 AND 720),
  min_delay_seconds  integer NOT NULL DEFAULT 30 CHECK (min_delay_seconds >= 0),
  max_delay_seconds  integer NOT NULL DEFAULT 60 CHECK (max_delay_seconds >= min_delay_seconds),
  stop_on_reply      boolean NOT NULL DEFAULT true,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT sequences_owner_trigger UNIQUE (user_id, trigger)
);
COMMENT ON TABLE sequences IS 'Drip sequences; a lead enters by its entry trigger.';

CREATE TABLE sequence_steps (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sequence_id         bigint NOT NULL REFERENCES sequences ON DELETE CASCADE,
  day_number          integer NOT NULL CHECK (day_number BETWEEN 1 AND 31),
  trigger             text NOT NULL,
  next_trigger        text,
  trigger_delay_hours numeric(8, 2) NOT NULL DEFAULT 24 CHECK (trigger_delay_hours >= 0),
  is_entry_point      boolean NOT NULL DEFAULT false,
  content             text NOT NULL CHECK (length(content) BETWEEN 1 AND 4096),
  media_url           text,
  chain_sequence_id   bigint REFERENCES sequences ON DELETE SET NULL,
  UNIQUE (sequence_id, day_number)
);
CREATE UNIQUE INDEX sequence_steps_one_entry ON sequence_steps (sequence_id) WHERE is_entry_point;
COMMENT ON TABLE sequence_steps IS 'Steps of a sequence, in day_number order; the last may chain to another sequence.';

-- One row per lead and sequence: where the lead is. Future steps are not rows (storage grows with
-- steps processed); each processed step is its broadcast_messages row.
CREATE TABLE sequence_enrollments (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sequence_id   bigint NOT NULL REFERENCES sequences ON DELETE CASCADE,
  user_id       bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  lead_id       bigint REFERENCES leads ON DELETE SET NULL,
  device_id     bigint REFERENCES user_devices ON DELETE SET NULL,  -- the lead's own device
  contact_phone text NOT NULL CHECK (contact_phone ~ '^[1-9][0-9]{6,14}$'),
  contact_name  text NOT NULL DEFAULT '',
  status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'stopped')),
  next_step_id  bigint REFERENCES sequence_steps ON DELETE SET NULL,
  next_due_at   timestamptz,
  steps_done    integer NOT NULL DEFAULT 0 CHECK (steps_done >= 0),
  stop_reason   text,
  enrolled_at   timestamptz NOT NULL DEFAULT now(),
  completed_at  timestamptz,
  CONSTRAINT sequence_enrollments_once UNIQUE (sequence_id, contact_phone),
  CHECK ((status = 'active') = (completed_at IS NULL)),
  CHECK (status <> 'stopped' OR stop_reason IS NOT NULL),
  CHECK (status <> 'active' OR next_due_at IS NOT NULL OR next_step_id IS NULL)
);
CREATE INDEX sequence_enrollments_due ON sequence_enrollments (next_due_at) WHERE status = 'active';
CREATE INDEX sequence_enrollments_lead ON sequence_enrollments (lead_id);
COMMENT ON TABLE sequence_enrollments IS 'A lead''s place in a sequence: next step and when it is due.';

-- The send queue ----------------------------------------------------------------------------
CREATE TABLE broadcast_messages (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id           bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  device_id         bigint REFERENCES user_devices ON DELETE SET NULL,
  campaign_id       bigint REFERENCES campaigns ON DELETE CASCADE,
  sequence_id       bigint REFERENCES sequences ON DELETE CASCADE,
  sequence_stepid   bigint REFERENCES sequence_steps ON DELETE CASCADE,
  enrollment_id     bigint REFERENCES sequence_enrollments ON DELETE CASCADE,
  lead_id           bigint REFERENCES leads ON DELETE SET NULL,
  retry_of          bigint REFERENCES broadcast_messages ON DELETE SET NULL,
  recipient_phone   text NOT NULL CHECK (recipient_phone ~ '^[1-9][0-9]{6,14}$'),
  recipient_name    text,
  message_type      text NOT NULL DEFAULT 'text' CHECK (message_type IN ('text', 'image')),
  content           text NOT NULL,
  media_url         text,
  min_delay_seconds integer CHECK (min_delay_seconds >= 0),  -- NULL: the device's own
  max_delay_seconds integer CHECK (max_delay_seconds >= min_delay_seconds),
  scheduled_at      timestamptz NOT NULL DEFAULT now(),
  status            text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'queued', 'sent', 'failed', 'skipped')),
  held              boolean NOT NULL DEFAULT false,  -- paused campaign, inactive sequence
  error_message     text,
  claimed_at        timestamptz,
  claimed_by        text,
  sent_at           timestamptz,
  failed_at         timestamptz,
  delivered_at      timestamptz,
  read_at           timestamptz,
  wa_message_id     text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  CHECK (message_type = 'text' OR media_url IS NOT NULL),
  CHECK (sequence_stepid IS NULL OR (sequence_id IS NOT NULL AND enrollment_id IS NOT NULL)),
  -- State timestamps tied to states.
  CHECK (status <> 'pending' OR (claimed_at IS NULL AND sent_at IS NULL AND failed_at IS NULL)),
  CHECK (status <> 'queued'  OR (claimed_at IS NOT NULL AND claimed_by IS NOT NULL AND sent_at IS NULL AND failed_at IS NULL)),
  CHECK (status <> 'sent'    OR (claimed_at IS NOT NULL AND sent_at IS NOT NULL AND failed_at IS NULL)),
  CHECK (status NOT IN ('failed', 'skipped') OR (failed_at IS NOT NULL AND sent_at IS NULL AND error_message IS NOT NULL)),
  CHECK (status <> 'skipped' OR claimed_at IS NULL),
  CHECK (delivered_at IS NULL OR status = 'sent'),
  CHECK (read_at IS NULL OR delivered_at IS NOT NULL),
  CHECK (NOT held OR status = 'pending')
);
-- The claim path: due, unheld rows of one device in order. Narrow and partial.
CREATE INDEX broadcast_messages_due ON broadcast_messages (device_id, scheduled_at, id)
  WHERE status = 'pending' AND NOT held;
-- In flight: stuck recovery and "processing now" per device.
CREATE INDEX broadcast_messages_inflight ON broadcast_messages (device_id, claimed_at) WHERE status = 'queued';
-- At most one live (pending, in flight or sent) message per campaign and phone; a failed one may
-- be retried explicitly, which never rewrites it.
CREATE UNIQUE INDEX broadcast_messages_campaign_phone ON broadcast_messages (campaign_id, recipient_phone)
  WHERE campaign_id IS NOT NULL AND status IN ('pending', 'queued', 'sent');
-- One message per sequence step and contact, ever; at most one active step per contact and sequence.
CREATE UNIQUE INDEX broadcast_messages_step_phone ON broadcast_messages (sequence_stepid, recipient_phone)
  WHERE sequence_stepid IS NOT NULL;
CREATE UNIQUE INDEX broadcast_messages_one_active_step ON broadcast_messages (enrollment_id)
  WHERE enrollment_id IS NOT NULL AND status IN ('pending', 'queued');
CREATE INDEX broadcast_messages_campaign ON broadcast_messages (campaign_id, status) WHERE campaign_id IS NOT NULL;
CREATE INDEX broadcast_messages_sequence ON broadcast_messages (sequence_id, status) WHERE sequence_id IS NOT NULL;
CREATE INDEX broadcast_messages_wa_id ON broadcast_messages (wa_message_id) WHERE wa_message_id IS NOT NULL;
CREATE INDEX broadcast_messages_user_created ON broadcast_messages (user_id, created_at);
COMMENT ON TABLE broadcast_messages IS
  'The send queue and its history: one row per message, the only place its state lives. Rendered content is exactly what is sent.';

-- Chats -------------------------------------------------------------------------------------
CREATE TABLE whatsapp_chats (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id              bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  device_id            bigint NOT NULL REFERENCES user_devices ON DELETE CASCADE,
  chat_jid             text NOT NULL,
  phone                text,
  name                 text NOT NULL DEFAULT '',
  last_message_at      timestamptz,
  last_message_preview text NOT NULL DEFAULT '',
  unread_count         integer NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
  UNIQUE (device_id, chat_jid)
);
CREATE INDEX whatsapp_chats_recent ON whatsapp_chats (device_id, last_message_at DESC);
COMMENT ON TABLE whatsapp_chats IS 'One conversation per device and chat JID.';

CREATE TABLE whatsapp_messages (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id              bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  device_id            bigint NOT NULL REFERENCES user_devices ON DELETE CASCADE,
  chat_id              bigint NOT NULL REFERENCES whatsapp_chats ON DELETE CASCADE,
  wa_message_id        text NOT NULL,
  from_me              boolean NOT NULL,
  sender_jid           text,
  message_type         text NOT NULL DEFAULT 'text' CHECK (message_type IN ('text', 'image', 'other')),
  content              text NOT NULL DEFAULT '',
  media_url            text,
  broadcast_message_id bigint REFERENCES broadcast_messages ON DELETE SET NULL,
  sent_at              timestamptz NOT NULL,
  delivered_at         timestamptz,
  read_at              timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  UNIQUE (device_id, wa_message_id)
);
CREATE INDEX whatsapp_messages_chat ON whatsapp_messages (chat_id, sent_at DESC, id DESC);
COMMENT ON TABLE whatsapp_messages IS 'Chat history per device: received messages and what was sent from the dashboard or the queue.';
