-- purge_history drops the per-minute send counts older than 3 days every hour, and with no index
-- by minute it read all of them to find that hour: 3,000 devices sending every minute keep ~13M
-- rows (5.4M rows: 551 ms a run). An index by minute reads the hour it drops. It costs one entry
-- per device and minute sent in (a claim's later sends in the same minute update the row in place).
-- depends: 2112_webhook_retention
CREATE INDEX device_send_minutes_minute ON device_send_minutes (minute);
