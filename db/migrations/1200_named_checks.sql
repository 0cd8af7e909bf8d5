-- Every state rule under a name that says it: a violation's error ("violates check constraint
-- broadcast_messages_sent_has_sent_at") names the rule that broke. The rules were unnamed table
-- constraints, numbered by PostgreSQL (broadcast_messages_check5). Renamed where they exist (a table
-- rebuilt before this, say partitioned, keeps the copied names; a rename on a partitioned table
-- reaches its partitions). tests/test_catalog.py refuses a new unnamed rule over several columns.
-- depends: 1001_chat_history

DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM (VALUES
    ('broadcast_messages',   'broadcast_messages_check',    'broadcast_messages_delays_ordered'),
    ('broadcast_messages',   'broadcast_messages_check1',   'broadcast_messages_image_has_media'),
    ('broadcast_messages',   'broadcast_messages_check2',   'broadcast_messages_step_has_sequence_and_enrollment'),
    ('broadcast_messages',   'broadcast_messages_check3',   'broadcast_messages_pending_is_unclaimed'),
    ('broadcast_messages',   'broadcast_messages_check4',   'broadcast_messages_queued_is_claimed'),
    ('broadcast_messages',   'broadcast_messages_check5',   'broadcast_messages_sent_has_sent_at'),
    ('broadcast_messages',   'broadcast_messages_check6',   'broadcast_messages_failed_has_error'),
    ('broadcast_messages',   'broadcast_messages_check7',   'broadcast_messages_skipped_never_claimed'),
    ('broadcast_messages',   'broadcast_messages_check8',   'broadcast_messages_delivered_only_when_sent'),
    ('broadcast_messages',   'broadcast_messages_check9',   'broadcast_messages_read_after_delivered'),
    ('broadcast_messages',   'broadcast_messages_check10',  'broadcast_messages_held_only_when_pending'),
    ('campaigns',            'campaigns_check',             'campaigns_delays_ordered'),
    ('campaigns',            'campaigns_check1',            'campaigns_started_has_triggered_at'),
    ('campaigns',            'campaigns_check2',            'campaigns_finished_iff_finished_at'),
    ('campaigns',            'campaigns_check3',            'campaigns_ai_has_limit_per_device'),
    ('device_commands',      'device_commands_check',       'device_commands_pair_phone_has_phone'),
    ('device_commands',      'device_commands_check1',      'device_commands_taken_has_taken_at'),
    ('device_commands',      'device_commands_check2',      'device_commands_finished_iff_done_at'),
    ('device_commands',      'device_commands_check3',      'device_commands_failed_has_error'),
    ('device_leases',        'device_leases_check',         'device_leases_expire_after_acquired'),
    ('lead_imports',         'lead_imports_check',          'lead_imports_finished_iff_finished_at'),
    ('lead_imports',         'lead_imports_check1',         'lead_imports_failed_has_error'),
    ('sequence_enrollments', 'sequence_enrollments_check',  'sequence_enrollments_completed_at_iff_not_active'),
    ('sequence_enrollments', 'sequence_enrollments_check1', 'sequence_enrollments_stopped_has_reason'),
    ('sequence_enrollments', 'sequence_enrollments_check2', 'sequence_enrollments_active_step_has_due_time'),
    ('sequences',            'sequences_check',             'sequences_delays_ordered'),
    ('user_devices',         'user_devices_check',          'user_devices_banned_until_only_when_banned'),
    ('user_devices',         'user_devices_check1',         'user_devices_delays_ordered'),
    ('user_sessions',        'user_sessions_check',         'user_sessions_expire_after_created')
  ) AS m(tbl, old_name, new_name)
  LOOP
    IF EXISTS (SELECT 1 FROM pg_constraint c
                WHERE c.conrelid = to_regclass(r.tbl) AND c.conname = r.old_name AND c.contype = 'c') THEN
      EXECUTE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', r.tbl, r.old_name, r.new_name);
    END IF;
  END LOOP;
END $$;
