-- Stored media: every image a campaign, a sequence step or a chat sends is fetched (or uploaded),
-- validated and normalised once, when it is saved, and kept here; queued messages refer to it by
-- id (media_url '/media/<id>'), so no sender ever fetches a user's URL.
-- depends: 0553_message_outcome_shards
CREATE TABLE media (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id    bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  jpeg       bytea NOT NULL CHECK (length(jpeg) BETWEEN 1 AND 350 * 1024),
  sha256     bytea NOT NULL CHECK (length(sha256) = 32),
  source     text NOT NULL DEFAULT '' CHECK (length(source) <= 2048),
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT media_owner_content UNIQUE (user_id, sha256)
);
CREATE INDEX media_owner_source ON media (user_id, source, id);
COMMENT ON TABLE media IS
  'Images ready to send: upright RGB JPEG of at most 350 KB, one row per owner and content. source is the URL '
  'it was fetched from (empty for uploads). Rows are never changed and live as long as their owner.';

-- Where an image comes from: the URL the owner typed (kept for the edit form) and the stored copy.
ALTER TABLE campaigns ADD COLUMN media_id bigint REFERENCES media;
ALTER TABLE sequence_steps ADD COLUMN media_id bigint REFERENCES media;
-- URLs are bounded (a 60 MB URL copied into every queued row filled disks); NOT VALID: rows saved
-- before this are left as they are.
ALTER TABLE campaigns ADD CONSTRAINT campaigns_image_url_length CHECK (length(image_url) <= 2048) NOT VALID;
ALTER TABLE sequence_steps ADD CONSTRAINT sequence_steps_media_url_length CHECK (length(media_url) <= 2048) NOT VALID;
COMMENT ON COLUMN campaigns.media_id IS 'The stored image (media) sent with every message; image_url is where it was fetched from.';
COMMENT ON COLUMN sequence_steps.media_id IS 'The stored image (media) sent with the step; media_url is where it was fetched from.';

-- Signatures that now take a media id.
DROP FUNCTION IF EXISTS send_chat_image(bigint, bigint, text, text, text);
DROP FUNCTION IF EXISTS create_campaign(bigint, text, text, text, text, text, text, bigint[], integer, date, time, integer, integer);
DROP FUNCTION IF EXISTS update_campaign(bigint, bigint, text, text, text, text, text, bigint[], integer, date, time, integer, integer);
DROP FUNCTION IF EXISTS get_campaign(bigint, bigint);
