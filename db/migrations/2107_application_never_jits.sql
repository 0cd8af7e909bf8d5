-- The application's sessions never JIT-compile. PostgreSQL decides to compile a statement from its
-- plan's estimated cost, and a generic plan over a large history estimates high: a report's page of
-- 100 leads (campaign_report_leads) over a 50M-row campaign was estimated at 800k, past every JIT
-- threshold, and each call spent 6.6 s compiling and optimizing 243 functions to run for 0.2 s.
-- Nothing the application runs is a long analytic scan that compiling would repay. The setting is
-- the role's (the role this migration runs as, which the web, senders and jobs use), so a psql
-- session of another role keeps the server's default; an analyst on this role can SET jit = on.
-- depends: 2106_claim_statistics_check_waits_or_not

ALTER ROLE CURRENT_USER SET jit = off;
