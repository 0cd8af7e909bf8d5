-- leads' owner and device references were foreign keys, whose insert check is one query per row:
-- ~40 % of a million-row CSV import. db/functions/leads.sql now keeps the same guarantees once per
-- statement (trigger leads_parents: each new or moved lead's owner and device exist and are locked
-- FOR KEY SHARE until commit, as a foreign key locks them) and keeps the delete actions (an owner's
-- deletion deletes their leads, a device's sends its leads to the AI pool) with row triggers on
-- users and user_devices, whose deletions are rare.
-- depends: 1801_lead_tokens_fast

ALTER TABLE leads DROP CONSTRAINT leads_user_id_fkey, DROP CONSTRAINT leads_device_id_fkey;
