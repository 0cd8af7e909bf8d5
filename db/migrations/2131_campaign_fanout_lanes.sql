-- A broadcast's fan-out runs in lanes side by side, one connection and core each, as CSV imports
-- are validated (2108): a lead belongs to the lane of its phone number's last character, so the
-- leads of one phone (on two devices) meet in one lane and two lanes never write the same
-- campaign and phone. Each lane keeps its own cursor; the campaign row is only read (FOR SHARE)
-- by a lane's chunk, so lanes never wait on each other and a pause, cancel or delete still waits
-- for the chunk at work. One lane left a 1M-lead fan-out at ~0.35 of one plain INSERT.
-- depends: 2130_receipt_batches

CREATE TABLE campaign_fanout_lanes (
  campaign_id bigint NOT NULL REFERENCES campaigns ON DELETE CASCADE,
  lane        smallint NOT NULL CHECK (lane >= 0),
  lead_cursor bigint NOT NULL DEFAULT 0,
  done_at     timestamptz,
  PRIMARY KEY (campaign_id, lane)
);
COMMENT ON TABLE campaign_fanout_lanes IS
  'The lanes of a campaign''s fan-out (opened when it is triggered): how far each has read the owner''s leads (by id) '
  'and when it reached the end. The campaign is expanded (campaigns.expanded_at) once every lane is done.';

INSERT INTO settings (name, value, meaning, lowest, highest) VALUES
  ('campaign_fanout_lanes', 2,
   'a broadcast is queued in this many lanes side by side (a connection and a core each: the campaign tick and a '
   'helper job per further lane); set when a campaign is triggered', 1, 16);

-- Campaigns expanding now go on in lanes, each from the campaign's cursor.
INSERT INTO campaign_fanout_lanes (campaign_id, lane, lead_cursor)
SELECT c.id, l.lane, c.expand_cursor
  FROM campaigns c,
       generate_series(0, CASE WHEN c.kind = 'ai' THEN 0 ELSE setting('campaign_fanout_lanes')::integer - 1 END) AS l(lane)
 WHERE c.status = 'triggered' AND c.expanded_at IS NULL;

-- A chunk is now of one lane (its signature takes the lane).
DROP FUNCTION IF EXISTS _expand_broadcast_chunk(campaigns, integer);
ALTER TABLE campaigns DROP COLUMN expand_cursor;
