-- A send's bookkeeping writes a chats row and a device_warm_contacts row per new contact; their
-- foreign keys were checked row by row, a third of the completion's cost (issue 15). The statement
-- trigger user_devices_contacts_forget (db/functions/chats.sql) does what their ON DELETE CASCADE
-- did; deleting a user deletes its devices, so that trigger covers users too.
-- depends: 1940_settled_rows
ALTER TABLE chats DROP CONSTRAINT chats_device_id_fkey;
ALTER TABLE chats DROP CONSTRAINT chats_user_id_fkey;
ALTER TABLE device_warm_contacts DROP CONSTRAINT device_warm_contacts_device_id_fkey;
