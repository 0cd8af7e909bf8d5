-- get_campaign now returns the date and time as typed text: drop the earlier signature so the function file can recreate it.
-- depends: 0300_lead_imports
DROP FUNCTION IF EXISTS get_campaign(bigint, bigint);
