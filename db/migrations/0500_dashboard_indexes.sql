-- Dashboard: narrow partial indexes so today's sent/failed counts and the hourly chart read only
-- the owner's rows of the day (index-only), whatever the size of the message history.
-- depends: 0001_schema
CREATE INDEX broadcast_messages_user_sent ON broadcast_messages (user_id, sent_at) WHERE status = 'sent';
CREATE INDEX broadcast_messages_user_failed ON broadcast_messages (user_id, failed_at) WHERE status = 'failed';
