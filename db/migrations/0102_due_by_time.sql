-- Due messages by time alone (pending, not held): lets a claim see in one short range scan
-- whether anything is due at all, however many messages wait for a later time.
-- depends: 0101_sender_heartbeat_returns_session
CREATE INDEX broadcast_messages_due_at ON broadcast_messages (scheduled_at) WHERE status = 'pending' AND NOT held;
