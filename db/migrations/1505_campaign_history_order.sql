-- A campaign report's lead lists page a campaign's messages of one status in id order: with the id in
-- the history's campaign index each weekly partition hands its rows in that order (a merge, then the
-- page), instead of every row of that status being read and sorted.
-- depends: 1504_window_tolerance_setting
DROP INDEX IF EXISTS message_history_campaign;
CREATE INDEX message_history_campaign ON message_history (campaign_id, status, id) WHERE campaign_id IS NOT NULL;
