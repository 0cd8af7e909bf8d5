-- The JSON documents SQL builds for the API, each defined once as a composite type: its function
-- builds the answer as to_jsonb(ROW(...)::type) and /api/openapi.json describes that same type
-- (api_row_schema), so a document and its schema cannot drift. api_row_schema now takes a name:
-- a function, a view or one of these types.
-- depends: 1401_sender_claim_stats

DROP FUNCTION IF EXISTS api_row_schema(regproc);
DROP FUNCTION IF EXISTS _json_schema_of_type(regtype);

CREATE TYPE sequence_step_doc AS (
  id bigint, day_number integer, trigger text, next_trigger text, trigger_delay_hours numeric(8,2),
  is_entry_point boolean, content text, media_url text, media_id bigint, chain_sequence_id bigint);
COMMENT ON TYPE sequence_step_doc IS 'A step in sequence_definition()''s JSON.';

CREATE TYPE sequence_definition_doc AS (
  id bigint, name text, niche text, trigger text, status text,
  schedule_time text,                       -- HH24:MI in the owner's zone
  schedule_tolerance_minutes integer, min_delay_seconds integer, max_delay_seconds integer,
  stop_on_reply boolean, allow_reentry boolean, device_ids bigint[], created_at timestamptz,
  steps sequence_step_doc[]);
COMMENT ON TYPE sequence_definition_doc IS 'sequence_definition()''s JSON: a sequence''s settings and its steps.';

CREATE TYPE sequence_counts_doc AS (total bigint, active bigint, inactive bigint);
COMMENT ON TYPE sequence_counts_doc IS 'The sequences counts in sequence_summary()''s JSON.';

CREATE TYPE sequence_recent_doc AS (
  id bigint, name text, trigger text, total_flows bigint, should_send bigint, done_send bigint,
  failed_send bigint, remaining_send bigint);
COMMENT ON TYPE sequence_recent_doc IS 'One of the newest sequences in sequence_summary()''s JSON.';

CREATE TYPE sequence_summary_doc AS (
  sequences sequence_counts_doc, total_flows bigint, total_should_send bigint, total_done_send bigint,
  total_failed_send bigint, total_remaining_send bigint, recent_sequences sequence_recent_doc[]);
COMMENT ON TYPE sequence_summary_doc IS 'sequence_summary()''s JSON: GET /api/sequences/summary (CONTRACT.md).';

CREATE TYPE sequence_contact_step_doc AS (
  step_id bigint, day_number integer,
  status text,                              -- sent|failed|skipped|pending|queued|waiting|upcoming, null: not reached
  message_id bigint, attempts bigint, done_at timestamptz, error_message text);
COMMENT ON TYPE sequence_contact_step_doc IS 'One step of a contact in sequence_contacts_page()''s JSON.';

CREATE TYPE sequence_contact_doc AS (
  enrollment_id bigint, contact_phone text, contact_name text, status text, stop_reason text,
  enrolled_at timestamptz, completed_at timestamptz, steps_done integer, next_step_id bigint,
  next_send_at timestamptz, steps sequence_contact_step_doc[]);
COMMENT ON TYPE sequence_contact_doc IS 'One contact (a pass through the sequence) in sequence_contacts_page()''s JSON.';

CREATE TYPE sequence_contacts_page_doc AS (
  total bigint, "limit" integer, "offset" integer, contacts sequence_contact_doc[]);
COMMENT ON TYPE sequence_contacts_page_doc IS 'sequence_contacts_page()''s JSON: GET /api/sequences/{id}/contacts.';

CREATE TYPE device_delete_doc AS (
  deleted boolean,
  pending boolean,                          -- true: the device's sender logs it out first, then deletes
  command_id bigint,                        -- that sender's delete command (pending only)
  leads_to_pool integer, leads_merged_into_pool integer, messages_skipped integer, messages_in_flight integer,
  session_removed boolean);
COMMENT ON TYPE device_delete_doc IS
  'request_device_delete()''s JSON: deleted now (counts of what happened) or pending (the command id; counts null).';
