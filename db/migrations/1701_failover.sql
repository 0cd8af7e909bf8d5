-- Failover (issue 17): a campaign or sequence may let its messages move to another device of the
-- owner when theirs is banned, logged out or offline too long (_failover_messages).
-- depends: 1700_deliverability
ALTER TABLE campaigns ADD COLUMN failover boolean NOT NULL DEFAULT false;
ALTER TABLE sequences ADD COLUMN failover boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN campaigns.failover IS
  'Its waiting messages move to another online device of the owner when theirs is banned, logged out or offline '
  'for failover_offline_minutes (_failover_messages); otherwise they wait, or are skipped as no_failover_device.';
COMMENT ON COLUMN sequences.failover IS
  'Its waiting step messages move to another online device of the owner when theirs is banned, logged out or '
  'offline for failover_offline_minutes (_failover_messages); otherwise they wait, or are skipped as no_failover_device.';

-- The reason a failover message that found no device is skipped with (its text: migration 1702,
-- as a new enum value cannot be used in the transaction that adds it).
ALTER TYPE skip_reason ADD VALUE IF NOT EXISTS 'no_failover_device';

INSERT INTO settings (name, value, meaning) VALUES
  ('failover_offline_minutes', 10,
   'a device offline or connecting this long hands the due messages of campaigns and sequences with failover on '
   'to another online device of its owner');

-- create_campaign and update_campaign gain p_failover.
DROP FUNCTION IF EXISTS create_campaign(bigint, text, text, text, text, text, text, bigint[], integer, date, time,
                                        integer, integer, bigint);
DROP FUNCTION IF EXISTS update_campaign(bigint, bigint, text, text, text, text, text, bigint[], integer, date, time,
                                        integer, integer, bigint);
DROP FUNCTION IF EXISTS get_campaign(bigint, bigint);   -- its result gains failover
