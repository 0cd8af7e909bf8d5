-- A device's warm contacts live in its chats, whose key they share (device and number): a first
-- send wrote a chat and a device_warm_contacts row, two heap rows, their index entries and a second
-- upsert per new number (issue 15; a completion in SQL alone: 27-31 us a message before, 23-26 us
-- after). Now the chat says when the device first talked with the number and when it first wrote.
-- depends: 2122_pacing_warm_none_until
ALTER TABLE chats ADD COLUMN IF NOT EXISTS talked_at timestamptz, ADD COLUMN IF NOT EXISTS wrote_at timestamptz;
COMMENT ON COLUMN chats.talked_at IS
  'When the device first sent to this number or heard from it: a warm contact from then on (a reach-out '
  'timelock does not hold its messages; its sends do not spend the cold share). NULL: not yet (a chat opened '
  'with a message still queued, a chat of messages typed on the phone only, an @lid identity with no number).';
COMMENT ON COLUMN chats.wrote_at IS 'When the number first wrote to the device (the health score''s reply rate); NULL: never.';

-- Every warm contact keeps its warmth: in its chat, or in a chat of its own (numbers warm before
-- sends opened chats), which the chat list shows without messages.
INSERT INTO chats AS c (user_id, device_id, chat_jid, phone, talked_at, wrote_at)
SELECT d.user_id, w.device_id, w.phone || '@s.whatsapp.net', w.phone, w.since, w.wrote_at
  FROM device_warm_contacts w JOIN user_devices d ON d.id = w.device_id
ON CONFLICT (device_id, chat_jid) DO UPDATE SET talked_at = excluded.talked_at, wrote_at = excluded.wrote_at;
DROP TABLE device_warm_contacts;

-- The warm contacts of a number on any device, or on some of them (AI spread, a sequence step's
-- device), and the contacts who wrote lately (reply rate), as device_warm_contacts' own indexes did.
CREATE INDEX IF NOT EXISTS chats_talked_phone ON chats (phone, device_id) WHERE talked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS chats_wrote ON chats (device_id, wrote_at) WHERE wrote_at IS NOT NULL;
-- Each send asks for its chat by key (device, jid). With chats_recent on every row, a plan made while
-- chats was nearly empty (a sender's first completion, kept for its session) read that index by
-- device instead and filtered every chat of the device per send: 5,000 rows read per probe at 5,000
-- chats a device. Only chats with a message are listed (chat_search), so only they need it.
DROP INDEX IF EXISTS chats_recent;
CREATE INDEX chats_recent ON chats (device_id, last_message_at DESC) WHERE last_message_at IS NOT NULL;
