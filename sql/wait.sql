--
-- wait: zdm.wait_expanded(), what a deployer whose zdm.expand() returned
-- false learns about the expand it skipped.  The cases one session can
-- show; two sessions (one expanding, one waiting) are in
-- test/isolation/specs/wait_expanded.spec and test/t/018_wait_expanded.pl.
--
CREATE ROLE regress_wait_migrator;
GRANT zdm_migrator TO regress_wait_migrator;
CREATE ROLE regress_wait_app;
CREATE TABLE wt_orders (id bigint PRIMARY KEY, legacy_status text NOT NULL);
INSERT INTO wt_orders SELECT g, 'paid' FROM generate_series(1, 5) g;
ALTER TABLE wt_orders OWNER TO regress_wait_migrator;
GRANT SELECT, INSERT, UPDATE ON wt_orders TO regress_wait_app;
GRANT USAGE ON SCHEMA zt TO regress_wait_migrator, regress_wait_app;
\set mw '{"operations": [{"add_column": {"table": "wt_orders", "column": {"name": "status", "type": "text", "nullable": true}, "up": "upper(legacy_status)"}}]}'

SET ROLE regress_wait_migrator;

-- Nothing expanded and no one expanding: "run expand again" (40001, the
-- code of a transaction to run again), at once, whatever the timeout.
SELECT zt.try($$SELECT zdm.wait_expanded('wt_add_status')$$);

-- In the transaction that expanded it (it holds the lock itself): its phase.
BEGIN;
SELECT zdm.expand('wt_add_status', :'mw');
SELECT zdm.wait_expanded('wt_add_status');
COMMIT;

-- Committed: the phase, whichever it is now.
SELECT zdm.wait_expanded('wt_add_status');
-- A second deployer's expand returns false (already expanded), and the
-- recipe of the README then returns the phase without waiting.
SELECT CASE WHEN zdm.expand('wt_add_status', :'mw') THEN 'expanded'
            ELSE zdm.wait_expanded('wt_add_status') END AS deployed;
SELECT zdm.backfill('wt_add_status', 100);
SELECT zdm.backfill('wt_add_status', 100);
SELECT zdm.wait_expanded('wt_add_status', '0');

-- Rolled back: not expanded, run expand again.
SELECT zdm.rollback('wt_add_status');
SELECT zt.try($$SELECT zdm.wait_expanded('wt_add_status', '1s')$$);
-- and expand applies it again.
SELECT CASE WHEN zdm.expand('wt_add_status', :'mw') THEN 'expanded'
            ELSE zdm.wait_expanded('wt_add_status') END AS deployed;

-- Bad input.
SELECT zt.try($$SELECT zdm.wait_expanded(NULL)$$);
SELECT zt.try($$SELECT zdm.wait_expanded('')$$);
SELECT zt.try($$SELECT zdm.wait_expanded('wt_add_status', NULL)$$);
SELECT zt.try($$SELECT zdm.wait_expanded('wt_add_status', '-1s')$$);
SELECT zt.try($$SELECT zdm.wait_expanded('wt_add_status', '-1 day')$$);
-- A long timeout is fine (capped at a year); nothing to wait for here.
SELECT zdm.wait_expanded('wt_add_status', '100 years');

-- REPEATABLE READ would keep seeing the state of before the other
-- session's commit: refused.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT zt.try($$SELECT zdm.wait_expanded('wt_add_status')$$);
COMMIT;

RESET ROLE;

-- Only migration roles may call it (PUBLIC has no EXECUTE).
SET ROLE regress_wait_app;
SELECT zt.try($$SELECT zdm.wait_expanded('wt_add_status')$$);
RESET ROLE;
SELECT has_function_privilege('zdm_migrator', 'zdm.wait_expanded(text, interval)', 'EXECUTE') AS migrator,
       has_function_privilege('pg_monitor', 'zdm.wait_expanded(text, interval)', 'EXECUTE') AS monitor;

SET ROLE regress_wait_migrator;
SELECT zdm.rollback('wt_add_status');
RESET ROLE;
DROP TABLE wt_orders;
REVOKE USAGE ON SCHEMA zt FROM regress_wait_migrator, regress_wait_app;
DROP ROLE regress_wait_app;
DROP ROLE regress_wait_migrator;
