-- _chat_list had no caller left: the chat view lists a device's chats with chat_search.
-- depends: 2113_send_minutes_by_minute
DROP FUNCTION IF EXISTS _chat_list(bigint, bigint, integer, timestamptz);
