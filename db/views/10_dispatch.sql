-- Dispatch monitors: what device_load (db/functions/device_load.sql) computes, under the names
-- analysts query.

CREATE VIEW device_load_balance (device_id, messages_hour, messages_today, is_available, updated_at) AS
SELECT l.device_id, l.messages_hour, l.messages_today, l.is_available, l.updated_at
  FROM device_load() l;
COMMENT ON VIEW device_load_balance IS
  'Read-only. Per device: sends in the trailing hour (whole minutes, as the hourly cap counts them) and in '
  'the owner''s calendar day (as the daily cap counts them), whether it can take more now (online, not paused and '
  'under both caps), and when either last changed. Computed by device_load from the counts the claim keeps with '
  'every send it claims (the device''s pacing row), so it is always true; it is written only by claim_messages.';

CREATE VIEW device_performance_monitor (device_id, user_id, device_name, device_status, messages_hour,
                                        messages_today, hourly_limit, daily_limit, processing_now,
                                        last_sent_at) AS
SELECT l.device_id, l.user_id, l.device_name, l.device_status, l.messages_hour, l.messages_today,
       l.hourly_limit, l.daily_limit, l.processing_now, l.last_sent_at
  FROM device_load() l;
COMMENT ON VIEW device_performance_monitor IS
  'Per device: status, sends in the trailing hour and today against its caps, messages being sent right '
  'now (claimed, not yet completed) and the time of its last completed send (device_load). Filter by user_id.';

CREATE VIEW skipped_messages_by_reason (user_id, campaign_id, sequence_id, device_id, skip_reason, meaning,
                                        messages, last_skipped_at) AS
SELECT m.user_id, m.campaign_id, m.sequence_id, m.device_id, m.skip_reason, r.meaning, count(*), max(m.failed_at)
  FROM broadcast_messages m JOIN skip_reasons r ON r.code = m.skip_reason
 WHERE m.status = 'skipped'
 GROUP BY m.user_id, m.campaign_id, m.sequence_id, m.device_id, m.skip_reason, r.meaning;
COMMENT ON VIEW skipped_messages_by_reason IS
  'Skipped messages (never sent) counted per owner, campaign or sequence, device and skip_reason, with the reason''s '
  'meaning and the last skip time. Filter by user_id (and campaign_id / sequence_id) when querying.';
