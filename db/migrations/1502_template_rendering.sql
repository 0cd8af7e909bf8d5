-- campaign_content is replaced by _message_template + _fill_fields (db/functions/queue.sql): the
-- fan-out parks a template's fields once per chunk instead of running regular expressions per row.
-- depends: 1501_message_lifecycle
DROP FUNCTION IF EXISTS campaign_content(text, text, text);
