-- message_retention_days now also drops received chat messages (2116): its meaning says so.
-- depends: 2117_enrollments_by_sequence
UPDATE settings
   SET meaning = 'settled messages are kept this many days (whole weeks of message_history dropped after it), received '
                 'chat messages as long (by when they were sent); rollups keep their counts'
 WHERE name = 'message_retention_days';
