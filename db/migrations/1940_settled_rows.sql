-- Completion bookkeeping takes the rows as settled instead of their ids (issue 15: reading them
-- back from the history partition cost as much as the settle itself).
-- depends: 1801_lead_tokens_fast
DROP FUNCTION IF EXISTS _settle_claimed(text, bigint[], text, text[]);
DROP FUNCTION IF EXISTS _record_outbound_chats(bigint[]);
DROP FUNCTION IF EXISTS _record_send_outcomes(bigint[], boolean);
