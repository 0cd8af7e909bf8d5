-- sender_heartbeat now also returns each device's session (jid, phone): drop the earlier shape
-- so db/functions/leases.sql can create the new one (CREATE OR REPLACE cannot change a result type).
-- depends: 0100_dispatch
DROP FUNCTION IF EXISTS sender_heartbeat(text, integer, interval);
