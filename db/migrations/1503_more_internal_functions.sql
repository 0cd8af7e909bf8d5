-- Helpers only SQL calls take the internal "_" prefix (like migration 1203's); the apply step
-- creates them under their new names from db/functions. The views on two of them are recreated
-- by the apply step too (hence CASCADE: nothing else depends on these functions).
-- depends: 1502_template_rendering
DROP FUNCTION IF EXISTS sequence_step_live(bigint[]);
DROP FUNCTION IF EXISTS require_own_devices(bigint, bigint[]);
DROP FUNCTION IF EXISTS record_outbound_chats(bigint[]);
DROP FUNCTION IF EXISTS notify_queue_changes(text, bigint[], bigint[], bigint[], bigint[]);
DROP FUNCTION IF EXISTS sequence_send_time(timestamptz, time, integer, text) CASCADE;
DROP FUNCTION IF EXISTS enroll_leads(bigint[], timestamptz);
DROP FUNCTION IF EXISTS stop_enrollments(bigint[], text);
DROP FUNCTION IF EXISTS record_message_count_deltas(broadcast_messages[], broadcast_messages[]);
DROP FUNCTION IF EXISTS record_enrollment_count_deltas(sequence_enrollments[], sequence_enrollments[]);
DROP FUNCTION IF EXISTS sequence_window_open(time, integer, text, timestamptz);
DROP FUNCTION IF EXISTS mark_lead_replied(bigint, text, timestamptz);
DROP FUNCTION IF EXISTS check_sequence_input(bigint, bigint, sequences, sequence_steps[]);
DROP FUNCTION IF EXISTS require_own_media(bigint, bigint);
DROP FUNCTION IF EXISTS stop_sequences_for_opt_out(bigint, text);
DROP FUNCTION IF EXISTS sequence_flow_figures(bigint[], date, date) CASCADE;
DROP FUNCTION IF EXISTS expand_broadcast_chunk(campaigns, integer);
DROP FUNCTION IF EXISTS spread_ai_campaign(campaigns);
