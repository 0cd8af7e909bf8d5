-- Sent and failed messages per owner and quarter hour, kept by a statement trigger on
-- broadcast_messages (db/functions/dashboard.sql): the overview's "today" figures and hourly chart
-- read a few hundred rows instead of the day's messages. Quarter hours, because every time zone's
-- local hours and midnights fall on them.
-- depends: 0001_schema
CREATE TABLE message_outcome_counts (
  user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
  bucket  timestamptz NOT NULL CHECK (bucket = date_bin('15 minutes', bucket, timestamptz '2000-01-01 00:00+00')),
  sent    integer NOT NULL DEFAULT 0,
  failed  integer NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, bucket)
);
COMMENT ON TABLE message_outcome_counts IS
  'Read-only rollup: per owner and quarter hour (bucket, by sent_at / failed_at), how many of their messages are '
  'sent and failed. Maintained by the broadcast_messages_outcomes_* triggers; equals counting broadcast_messages.';

INSERT INTO message_outcome_counts (user_id, bucket, sent, failed)
SELECT user_id, date_bin('15 minutes', coalesce(sent_at, failed_at), timestamptz '2000-01-01 00:00+00'),
       count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed')
  FROM broadcast_messages
 WHERE status IN ('sent', 'failed')
 GROUP BY 1, 2;
