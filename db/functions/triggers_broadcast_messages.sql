-- Every trigger on broadcast_messages, in one place. PostgreSQL fires the triggers of one event
-- in name order, so the digit after the table name is the firing order.
--
-- All are AFTER … FOR EACH STATEMENT on the partitioned table, so they fire once per statement
-- whichever partition the rows land in; a status change to sent/failed/skipped moves the row
-- from message_queue to message_history and still counts as one UPDATE here. The side effects:
--
--   INSERT  3_wake      notify_dispatch          NOTIFY wa_dispatch: senders wake and claim
--           (the rollups of new rows are kept by their one writer: _count_enqueued, queue_enqueue.sql)
--   UPDATE  1_outcomes  count_message_outcomes   message_outcome_counts (new minus old)
--           2_sequence  sequence_message_counts  sequence_counter_deltas (new minus old)
--           3_wake      notify_dispatch          NOTIFY wa_dispatch, only for UPDATE OF held, scheduled_at
--           4_campaign_done settle_campaigns_done campaigns.status (+ the campaign live event) when a
--                                                running campaign's last message settled
--           5_campaign_counts count_campaign_messages  campaign_counts (new minus old of the changed rows)
--           6_device_queue count_device_queue    device_queue_count_deltas (new minus old)
--   DELETE  1_outcomes  count_message_outcomes   message_outcome_counts (minus old)
--           2_sequence  sequence_message_counts  sequence_counter_deltas (minus old)
--           5_campaign_counts count_campaign_messages  campaign_counts (minus old)
--           6_device_queue count_device_queue    device_queue_count_deltas (minus old)
--
-- In place of foreign keys (checked row by row on every enqueue), statement triggers on the
-- parent tables do what ON DELETE did, once per statement:
--   users, campaigns, sequences, sequence_steps, sequence_enrollments  DELETE → their messages deleted
--   user_devices, leads                                               DELETE → device_id / lead_id set NULL
--
-- The UPDATE and DELETE ones with transition tables make every statement that changes messages
-- (each claim and completion too) build its old_rows/new_rows tuplestores; an INSERT builds none.
-- Dropping a history partition (retention) fires none of them: the rollups keep the dropped rows'
-- counts.

CREATE OR REPLACE TRIGGER broadcast_messages_3_wake AFTER INSERT ON broadcast_messages
  FOR EACH STATEMENT EXECUTE FUNCTION notify_dispatch();

-- Every UPDATE (transition tables allow no column list); rows staying pending/queued are filtered
-- out, and a sent row that only got a receipt nets to zero before the upsert.
CREATE OR REPLACE TRIGGER broadcast_messages_1_outcomes_upd AFTER UPDATE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_message_outcomes();
CREATE OR REPLACE TRIGGER broadcast_messages_2_sequence_upd AFTER UPDATE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_message_counts();
-- Un-holding (campaign resumed, sequence re-activated) or rescheduling also releases work.
CREATE OR REPLACE TRIGGER broadcast_messages_3_wake_release AFTER UPDATE OF held, scheduled_at ON broadcast_messages
  FOR EACH STATEMENT EXECUTE FUNCTION notify_dispatch();
CREATE OR REPLACE TRIGGER broadcast_messages_4_campaign_done AFTER UPDATE ON broadcast_messages
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION settle_campaigns_done();

CREATE OR REPLACE TRIGGER broadcast_messages_1_outcomes_del AFTER DELETE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_message_outcomes();
CREATE OR REPLACE TRIGGER broadcast_messages_2_sequence_del AFTER DELETE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_message_counts();

CREATE OR REPLACE TRIGGER broadcast_messages_5_campaign_counts_upd AFTER UPDATE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_campaign_messages();
CREATE OR REPLACE TRIGGER broadcast_messages_5_campaign_counts_del AFTER DELETE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_campaign_messages();

CREATE OR REPLACE TRIGGER broadcast_messages_6_device_queue_upd AFTER UPDATE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_device_queue();
CREATE OR REPLACE TRIGGER broadcast_messages_6_device_queue_del AFTER DELETE ON broadcast_messages
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_device_queue();
-- What writes ran before these triggers and _count_enqueued were in place is counted now
-- (recount_device_queue says why).
SELECT recount_device_queue();

-- In place of the foreign keys' ON DELETE (see the header).
-- The deleted ids as an array probed by index, never a join with the transition table: its plan is
-- kept for the session, sized by the session's first deletion (see count_campaign_messages).
CREATE OR REPLACE FUNCTION forget_deleted_message_parents() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v_ids bigint[] := array(SELECT o.id FROM old_rows o);
BEGIN
  CASE TG_TABLE_NAME
    WHEN 'users' THEN DELETE FROM broadcast_messages m WHERE m.user_id = ANY (v_ids);
    WHEN 'campaigns' THEN DELETE FROM broadcast_messages m WHERE m.campaign_id = ANY (v_ids);
    WHEN 'sequences' THEN DELETE FROM broadcast_messages m WHERE m.sequence_id = ANY (v_ids);
    WHEN 'sequence_steps' THEN DELETE FROM broadcast_messages m WHERE m.sequence_stepid = ANY (v_ids);
    WHEN 'sequence_enrollments' THEN DELETE FROM broadcast_messages m WHERE m.enrollment_id = ANY (v_ids);
    WHEN 'user_devices' THEN
      -- Two statements, each reading its partition's indexes by device (the live rows': _due OR _inflight).
      UPDATE broadcast_messages m SET device_id = NULL
       WHERE m.device_id = ANY (v_ids) AND (m.status = 'pending' OR m.status = 'queued');
      UPDATE broadcast_messages m SET device_id = NULL
       WHERE m.device_id = ANY (v_ids) AND m.status IN ('sent', 'failed', 'skipped');
    WHEN 'leads' THEN UPDATE broadcast_messages m SET lead_id = NULL WHERE m.lead_id = ANY (v_ids);
  END CASE;
  RETURN NULL;
END $$;
COMMENT ON FUNCTION forget_deleted_message_parents() IS
  'Statement trigger on the tables broadcast_messages refers to (no foreign keys): deletes the messages of deleted '
  'owners, campaigns, sequences, steps and enrollments; clears device_id and lead_id of deleted devices and leads.';

-- One per parent table, named <table>_messages_forget.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['users', 'campaigns', 'sequences', 'sequence_steps', 'sequence_enrollments',
                           'user_devices', 'leads'] LOOP
    EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION forget_deleted_message_parents()', t || '_messages_forget', t);
  END LOOP;
END $$;
