-- Internal helpers carry a leading underscore (db/functions: _check_device_settings, _normalize_phone, ...):
-- only SQL calls them, never Python (tests/test_catalog.py checks). Their old names go; apply creates
-- the new ones right after.
-- depends: 1202_engine_reads_no_views

DROP FUNCTION IF EXISTS add_message_outcomes(bigint[],timestamp with time zone[],bigint[],bigint[]);
DROP FUNCTION IF EXISTS chat_list(bigint,bigint,integer,timestamp with time zone);
DROP FUNCTION IF EXISTS chat_preview(text,text);
DROP FUNCTION IF EXISTS check_campaign_input(bigint,text,bigint[],integer,integer,integer,date,time without time zone);
DROP FUNCTION IF EXISTS check_device_settings(integer,integer,integer,integer);
DROP FUNCTION IF EXISTS csv_neutralised(text);
DROP FUNCTION IF EXISTS csv_restored(text);
DROP FUNCTION IF EXISTS delete_device(bigint,bigint);
DROP FUNCTION IF EXISTS is_opt_out_text(text);
DROP FUNCTION IF EXISTS is_opted_out(bigint,text);
DROP FUNCTION IF EXISTS lead_csv_columns();
DROP FUNCTION IF EXISTS lead_filter(bigint,text[],text,text,text[],bigint,text,text,text);
DROP FUNCTION IF EXISTS lead_import_event(lead_imports);
DROP FUNCTION IF EXISTS lead_import_header(bigint);
DROP FUNCTION IF EXISTS lead_problem(text,text,bigint,bigint[],text);
DROP FUNCTION IF EXISTS merge_leads(bigint,bigint[],text[],text[],text[],text[],text[]);
DROP FUNCTION IF EXISTS message_outcome_bucket(timestamp with time zone);
DROP FUNCTION IF EXISTS normalize_phone(text,text);
DROP FUNCTION IF EXISTS own_device_ids(bigint);
DROP FUNCTION IF EXISTS owned_campaign_for_update(bigint,bigint);
DROP FUNCTION IF EXISTS owner_day_start(bigint);
DROP FUNCTION IF EXISTS owner_local_instant(bigint,date,time without time zone);
DROP FUNCTION IF EXISTS phone_candidate(text,text);
DROP FUNCTION IF EXISTS phone_problem(text,text);
DROP FUNCTION IF EXISTS phone_stripped(text);
DROP FUNCTION IF EXISTS quota_limit(bigint,text);
DROP FUNCTION IF EXISTS quota_usage(bigint,text,bigint);
DROP FUNCTION IF EXISTS rebalance_ai_campaigns();
DROP FUNCTION IF EXISTS require_admin(bigint);
DROP FUNCTION IF EXISTS require_valid_lead(bigint,text,text,bigint);
DROP FUNCTION IF EXISTS sender_fair_share(text,integer,interval);
DROP FUNCTION IF EXISTS sender_label(text,boolean);
DROP FUNCTION IF EXISTS stop_sequences_if_possible(bigint,text);
DROP FUNCTION IF EXISTS target_status_or_default(text);
DROP FUNCTION IF EXISTS trigger_due_campaigns();
DROP FUNCTION IF EXISTS user_country(bigint);
