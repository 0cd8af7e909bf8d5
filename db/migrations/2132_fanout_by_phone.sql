-- A broadcast's lanes read their leads in phone order (a cursor on the phone number, not the lead
-- id): a chunk takes whole phones, so a phone is drafted once per fan-out and a chunk's drafts need
-- none of the duplicate guards' probes (queue and history, one or more index descents per lead:
-- 47 % of the insert of a sending campaign's chunk).
-- Lanes expanding at the upgrade start again from the first phone with the guards on (`guarded`):
-- they leave out every phone their campaign already has queued or sent.
-- depends: 2131_campaign_fanout_lanes

ALTER TABLE campaign_fanout_lanes
  ADD COLUMN phone_cursor text NOT NULL DEFAULT '',
  ADD COLUMN guarded boolean NOT NULL DEFAULT false;
UPDATE campaign_fanout_lanes SET guarded = true WHERE done_at IS NULL AND lead_cursor > 0;
ALTER TABLE campaign_fanout_lanes DROP COLUMN lead_cursor;
COMMENT ON TABLE campaign_fanout_lanes IS
  'The lanes of a campaign''s fan-out (opened when it is triggered): how far each has read the owner''s leads (by '
  'phone number) and when it reached the end. The campaign is expanded (campaigns.expanded_at) once every lane is done.';
COMMENT ON COLUMN campaign_fanout_lanes.phone_cursor IS
  'How far the lane has read: every phone number up to this one is behind it (its leads are read in phone order, '
  'a phone''s leads in one chunk).';
COMMENT ON COLUMN campaign_fanout_lanes.guarded IS
  'The lane started again after an upgrade (migration 2132): its drafts go through the duplicate guards.';

-- The writers of new messages take whether the drafts are known fresh (no overloads: the old
-- signatures go).
DROP FUNCTION IF EXISTS _enqueue_messages(message_draft[]);
DROP FUNCTION IF EXISTS _insert_drafts(message_draft[]);
