-- Dispatch: the time of each device's last completed send, kept on its pacing row for monitors.
-- depends: 0001_schema
ALTER TABLE device_pacing ADD COLUMN last_sent_at timestamptz;
COMMENT ON COLUMN device_pacing.last_sent_at IS 'When this device last completed a send (set by complete_messages).';
