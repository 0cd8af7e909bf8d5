-- Sequence views: the seed-era `sequence_contacts` (read-only, over enrollments and step messages)
-- and the monitor views analysts query. Figures come from the rollups, not from scans.

CREATE VIEW sequence_contacts (id, sequence_id, sequence_stepid, contact_phone, contact_name, current_step,
                               current_trigger, status, next_trigger_time, processing_device_id,
                               processing_started_at, completed_at, user_id, enrollment_id, error_message) AS
  -- Each processed step of the contact's latest pass: its latest attempt (pending/queued = active,
  -- sent, failed/skipped = failed). processing_device_id/processing_started_at are set only while a
  -- sender holds the message (queued), so "processing for over 5 minutes" means stuck.
  SELECT b.id, b.sequence_id, b.sequence_stepid, b.recipient_phone, coalesce(b.recipient_name, ''),
         st.day_number, st.trigger,
         CASE WHEN b.status IN ('pending', 'queued') THEN 'active' WHEN b.status = 'sent' THEN 'sent' ELSE 'failed' END,
         b.scheduled_at, CASE WHEN b.status = 'queued' THEN b.device_id END,
         CASE WHEN b.status = 'queued' THEN b.claimed_at END, coalesce(b.sent_at, b.failed_at), b.user_id,
         b.enrollment_id, b.error_message
    FROM broadcast_messages b JOIN sequence_steps st ON st.id = b.sequence_stepid
   WHERE b.sequence_stepid IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = b.id)
     AND NOT EXISTS (SELECT 1 FROM sequence_enrollments later WHERE later.sequence_id = b.sequence_id
                        AND later.contact_phone = b.recipient_phone AND later.id > b.enrollment_id)
  UNION ALL
  -- Each active contact's next step, not yet a message: pending until it is due and in the window.
  SELECT -e.id, e.sequence_id, e.next_step_id, e.contact_phone, e.contact_name, st.day_number, st.trigger,
         'pending', _sequence_send_time(e.next_due_at, s.schedule_time, s.schedule_tolerance_minutes, u.timezone),
         NULL::bigint, NULL::timestamptz, NULL::timestamptz, e.user_id, e.id, NULL::text
    FROM sequence_enrollments e
    JOIN sequence_steps st ON st.id = e.next_step_id
    JOIN sequences s ON s.id = e.sequence_id
    JOIN users u ON u.id = e.user_id
   WHERE e.status = 'active'
  UNION ALL
  -- Each contact that went through the whole sequence.
  SELECT -e.id, e.sequence_id, NULL::bigint, e.contact_phone, e.contact_name, NULL::integer, s.trigger,
         'completed', NULL::timestamptz, NULL::bigint, NULL::timestamptz, e.completed_at, e.user_id, e.id, NULL::text
    FROM sequence_enrollments e JOIN sequences s ON s.id = e.sequence_id
   WHERE e.status = 'completed'
     AND NOT EXISTS (SELECT 1 FROM sequence_enrollments later WHERE later.sequence_id = e.sequence_id
                        AND later.contact_phone = e.contact_phone AND later.id > e.id);
COMMENT ON VIEW sequence_contacts IS
  'Read-only (write through the sequence functions). Per contact and step of its latest pass: processed steps from broadcast_messages, latest attempt (id = message id; active/sent/failed; processing_device_id and processing_started_at only while a sender holds it), the next step of each active contact (pending, id = -enrollment id, next_trigger_time = when it can go out), and one completed row per finished contact (current_step NULL).';

CREATE VIEW sequence_progress_monitor (sequence_id, user_id, name, trigger, status, contacts, active, completed,
                                       stopped, should_send, sent, failed, remaining, progress_percentage) AS
  SELECT s.id, s.user_id, s.name, s.trigger, s.status,
         coalesce(c.contacts, 0), coalesce(c.active, 0), coalesce(c.completed, 0), coalesce(c.stopped, 0),
         coalesce(f.should_send, 0), coalesce(f.done_send, 0), coalesce(f.failed_send, 0), coalesce(f.remaining_send, 0),
         coalesce(round(100.0 * (f.done_send + f.failed_send) / nullif(f.should_send, 0), 1), 0)
    FROM sequences s
    LEFT JOIN LATERAL _sequence_contact_counts(s.id) c ON true
    LEFT JOIN LATERAL (
      SELECT sum(g.should_send)::bigint AS should_send, sum(g.done_send)::bigint AS done_send,
             sum(g.failed_send)::bigint AS failed_send, sum(g.remaining_send)::bigint AS remaining_send
        FROM _sequence_flow_figures(ARRAY[s.id]) g) f ON true;
COMMENT ON VIEW sequence_progress_monitor IS
  'Per sequence: contacts enrolled (active, completed, stopped), steps should/sent/failed/remaining and progress_percentage = (sent + failed) / should. From the rollups.';

CREATE VIEW failed_flows_monitor (message_id, user_id, sequence_id, sequence_name, sequence_stepid, day_number,
                                  step_trigger, contact_phone, contact_name, device_id, device_name, status,
                                  error_message, failed_at) AS
  SELECT b.id, b.user_id, b.sequence_id, s.name, b.sequence_stepid, st.day_number, st.trigger, b.recipient_phone,
         coalesce(b.recipient_name, ''), b.device_id, d.device_name, b.status, b.error_message, b.failed_at
    FROM broadcast_messages b
    JOIN sequences s ON s.id = b.sequence_id
    JOIN sequence_steps st ON st.id = b.sequence_stepid
    LEFT JOIN user_devices d ON d.id = b.device_id
   WHERE b.sequence_stepid IS NOT NULL AND b.status IN ('failed', 'skipped');
COMMENT ON VIEW failed_flows_monitor IS
  'Sequence steps that were not sent (failed, or skipped when the contact was stopped): contact, device, error and failed_at.';
