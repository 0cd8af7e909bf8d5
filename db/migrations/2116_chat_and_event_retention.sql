-- Two tables that grew for as long as the fleet ran, the last unbounded ones with a row per
-- message or per connection change:
--  - chat_inbound, every message the devices receive (replies, group chats, with image thumbnails
--    of up to 64 kB): the chat view showed received messages forever beside the sent ones that
--    message retention drops. Received messages now leave after message_retention_days too, by
--    the time they were sent, so a chat keeps the same window of both sides.
--  - device_events, every connection change, pause, timelock and failover of every device (a
--    blip is two rows). Device health reads the last 24 hours, timelocks over 30 days and bans
--    ever: events other than bans now leave after 90 days.
-- purge_history (hourly) deletes an hour's worth a run through these indexes.
-- depends: 2115_enrollment_step_in_flight
CREATE INDEX chat_inbound_sent_at ON chat_inbound (sent_at);
CREATE INDEX device_events_at ON device_events (at) WHERE event <> 'banned';
