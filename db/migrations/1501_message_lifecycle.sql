-- One owner for a message's state: the shapes the queue family (db/functions/queue*.sql) needs.
--
--  - message_draft: what an enqueuer hands _enqueue_messages (campaigns, sequences, retries and the
--    chat view all queue through it), so the column list is written once.
--  - skip_reason: the closed set of reasons a message is skipped for (a new reason is a new enum
--    value in a migration); skip_reasons holds each one's text, shown in reports and chats.
--    Every skipped row carries its reason (broadcast_messages_skipped_has_reason).
-- depends: 1500_message_partitions

CREATE TYPE message_draft AS (
  user_id bigint, device_id bigint, lead_id bigint, recipient_phone text, recipient_name text,
  message_type text, content text, media_url text, min_delay_seconds integer, max_delay_seconds integer,
  scheduled_at timestamptz, held boolean,
  campaign_id bigint, sequence_id bigint, sequence_stepid bigint, enrollment_id bigint, retry_of bigint);
COMMENT ON TYPE message_draft IS
  'A message to queue, as the enqueuers hand it to _enqueue_messages: broadcast_messages'' writable columns. '
  'NULL scheduled_at means now, NULL held means false, NULL message_type means text.';

CREATE TYPE skip_reason AS ENUM (
  'campaign_cancelled', 'campaign_device_dropped', 'opted_out', 'sequence_stopped',
  'device_deleted', 'device_logged_out', 'device_banned', 'device_ban_not_lifted', 'device_offline',
  'unrecorded');
COMMENT ON TYPE skip_reason IS 'Why a message was skipped (never sent): the closed set, one row each in skip_reasons.';

CREATE TABLE skip_reasons (
  code skip_reason PRIMARY KEY,
  message text NOT NULL,
  meaning text NOT NULL
);
COMMENT ON TABLE skip_reasons IS
  'Each skip_reason with the text written to a skipped message''s error_message (a %s in it takes the detail '
  'the skipper gives) and what it means. Read-only reference data.';
INSERT INTO skip_reasons (code, message, meaning) VALUES
  ('campaign_cancelled', 'campaign cancelled', 'its campaign was cancelled before it was sent'),
  ('campaign_device_dropped', 'device dropped from the campaign (%s)',
   'an AI campaign dropped its banned, logged-out or deleted device; the lead was queued again on another device'),
  ('opted_out', 'opted out', 'the contact opted out before it was sent'),
  ('sequence_stopped', 'sequence stopped: %s', 'the contact''s sequence enrollment stopped (reply, opt-out, removal)'),
  ('device_deleted', 'skipped: device deleted', 'its device was deleted'),
  ('device_logged_out', 'skipped: device logged out', 'its device was logged out of WhatsApp'),
  ('device_banned', 'skipped: device banned', 'its device was banned without an end'),
  ('device_ban_not_lifted', 'skipped: device still banned %s after its ban expired',
   'its device stayed banned past the grace after its ban''s announced end'),
  ('device_offline', 'skipped: device offline for more than %s', 'its device stayed offline past the grace'),
  ('unrecorded', 'skipped', 'skipped before reasons were recorded (rows older than migration 1501)');

ALTER TABLE broadcast_messages ADD COLUMN skip_reason skip_reason;
COMMENT ON COLUMN broadcast_messages.skip_reason IS 'Why a skipped message was not sent (skip_reasons); NULL unless skipped.';
UPDATE broadcast_messages SET skip_reason = CASE
    WHEN error_message = 'campaign cancelled' THEN 'campaign_cancelled'
    WHEN error_message LIKE 'device dropped from the campaign%' THEN 'campaign_device_dropped'
    WHEN error_message = 'opted out' THEN 'opted_out'
    WHEN error_message LIKE 'sequence stopped%' THEN 'sequence_stopped'
    WHEN error_message = 'skipped: device deleted' THEN 'device_deleted'
    WHEN error_message = 'skipped: device logged out' THEN 'device_logged_out'
    WHEN error_message = 'skipped: device banned' THEN 'device_banned'
    WHEN error_message LIKE 'skipped: device still banned%' THEN 'device_ban_not_lifted'
    WHEN error_message LIKE 'skipped: device offline%' THEN 'device_offline'
    ELSE 'unrecorded' END::skip_reason
 WHERE status = 'skipped';
ALTER TABLE broadcast_messages ADD CONSTRAINT broadcast_messages_skipped_has_reason
  CHECK ((status = 'skipped') = (skip_reason IS NOT NULL));
