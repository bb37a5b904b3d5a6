--
-- deferred: the deferred-step engine itself, with plans a superuser edits
-- (as a later operation kind would write them): a "worker" step runs in a
-- transaction of the worker under its lock, as the migration's author;
-- one that fails puts the migration in "failed" with the error; an
-- "outside" step that is not CREATE/DROP INDEX CONCURRENTLY is refused as
-- a malformed plan; a rolled-back migration whose rollback steps are still
-- owed is not expanded again; a 0.6 schema under a 0.7 library owes nothing.
--
CREATE ROLE regress_df_migrator;
GRANT zdm_migrator TO regress_df_migrator;
GRANT CREATE ON SCHEMA public TO regress_df_migrator;
CREATE SCHEMA zt_df;
GRANT USAGE ON SCHEMA zt, zt_df TO regress_df_migrator;

CREATE PROCEDURE zt_df.settle(m text, INOUT phase text DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    d text;
    e text;
BEGIN
    FOR i IN 1..1200 LOOP
        SELECT s.phase, s.deferred, s.last_error INTO phase, d, e FROM zdm.status s WHERE s.name = m;
        IF d IS NULL OR phase = 'failed' OR e IS NOT NULL THEN
            RETURN;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.05);
        COMMIT;
    END LOOP;
    phase := format('%s, still owed %s steps', phase, d);
END
$$;

CREATE TABLE df_items (id int PRIMARY KEY, qty int NOT NULL);
INSERT INTO df_items SELECT g, g FROM generate_series(1, 50) g;
ALTER TABLE df_items ADD CONSTRAINT df_qty_positive CHECK (qty > 0) NOT VALID;
ALTER TABLE df_items ADD CONSTRAINT df_qty_small CHECK (qty < 10) NOT VALID;
ALTER TABLE df_items OWNER TO regress_df_migrator;

-- Add a step to a migration's deferred section, before the expand commits.
CREATE FUNCTION zt_df.add_step(m text, step jsonb) RETURNS void LANGUAGE sql AS $$
UPDATE zdm.migrations SET plan = jsonb_set(plan, '{deferred}', plan->'deferred' || step) WHERE name = m
$$;

--
-- 1. A worker step after an index build: VALIDATE CONSTRAINT in a
--    transaction of the worker, under SHARE UPDATE EXCLUSIVE taken with
--    the retrying lock, as the author (the journal names the lock).
--
BEGIN;
SET ROLE regress_df_migrator;
SELECT zdm.expand('df_worker', '{"operations": [{"create_index": {"name": "df_items_qty", "table": "df_items", "columns": [{"column": "qty"}]}}]}');
RESET ROLE;
SELECT zt_df.add_step('df_worker', '{"relation": "public.df_items", "lock": "validate", "runs": "worker", "sql": "ALTER TABLE public.df_items VALIDATE CONSTRAINT df_qty_positive"}');
COMMIT;
SET ROLE regress_df_migrator;
CALL zt_df.settle('df_worker');
SELECT phase, deferred_done, last_error FROM zdm.status WHERE name = 'df_worker';
SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'df_items'::regclass AND contype = 'c' ORDER BY conname;
SELECT event, statement, attempts IS NOT NULL AS lock_journaled, detail FROM zdm.migration_log
 WHERE migration = 'df_worker' AND event = 'ddl' ORDER BY id;
SELECT zdm.contract('df_worker', force => true);

--
-- 2. A worker step that fails (a check the rows break): "failed", the
--    error in last_error, the step left to do; zdm.start_backfill() runs
--    it again once the rows are fixed.
--
RESET ROLE;
BEGIN;
SET ROLE regress_df_migrator;
SELECT zdm.expand('df_fail', '{"operations": [{"create_index": {"name": "df_items_id_qty", "table": "df_items", "columns": [{"column": "id"}, {"column": "qty"}]}}]}');
RESET ROLE;
SELECT zt_df.add_step('df_fail', '{"relation": "public.df_items", "lock": "validate", "runs": "worker", "sql": "ALTER TABLE public.df_items VALIDATE CONSTRAINT df_qty_small"}');
COMMIT;
SET ROLE regress_df_migrator;
CALL zt_df.settle('df_fail');
SELECT phase, deferred_done, deferred_total, last_error FROM zdm.status WHERE name = 'df_fail';
SELECT zt.try($$SELECT zdm.contract('df_fail', force => true)$$);
UPDATE df_items SET qty = 1 WHERE qty >= 10;
SELECT zdm.start_backfill('df_fail');
CALL zt_df.settle('df_fail');
SELECT phase, deferred_done, last_error FROM zdm.status WHERE name = 'df_fail';
SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'df_items'::regclass AND contype = 'c' ORDER BY conname;
SELECT zdm.rollback('df_fail');
CALL zt_df.settle('df_fail');

--
-- 3. An outside step that is not CREATE/DROP INDEX CONCURRENTLY: the plan
--    is malformed; nothing of it runs.
--
RESET ROLE;
BEGIN;
SET ROLE regress_df_migrator;
SELECT zdm.expand('df_bad', '{"operations": [{"create_index": {"name": "df_items_bad", "table": "df_items", "columns": [{"column": "qty"}]}}]}');
RESET ROLE;
UPDATE zdm.migrations SET plan = jsonb_set(plan, '{deferred,0,sql}', '"DROP TABLE public.df_items"') WHERE name = 'df_bad';
COMMIT;
SET ROLE regress_df_migrator;
CALL zt_df.settle('df_bad');
SELECT phase, last_error FROM zdm.status WHERE name = 'df_bad';
SELECT to_regclass('df_items') IS NOT NULL AS df_items_still_there;
SELECT zdm.rollback('df_bad');
CALL zt_df.settle('df_bad');

--
-- 4. A migration whose rollback's steps are still owed is not expanded
--    again until they are done.
--
SELECT zdm.expand('df_again', '{"operations": [{"create_index": {"name": "df_items_again", "table": "df_items", "columns": [{"column": "qty"}]}}]}');
CALL zt_df.settle('df_again');
BEGIN;
SELECT zdm.rollback('df_again');
SELECT zt.try($$SELECT zdm.expand('df_again', '{"operations": [{"create_index": {"name": "df_items_again", "table": "df_items", "columns": [{"column": "qty"}]}}]}')$$);
COMMIT;
CALL zt_df.settle('df_again');
SELECT zdm.expand('df_again', '{"operations": [{"create_index": {"name": "df_items_again", "table": "df_items", "columns": [{"column": "qty"}]}}]}');
CALL zt_df.settle('df_again');
SELECT phase FROM zdm.status WHERE name = 'df_again';

RESET ROLE;
DROP TABLE df_items;
DELETE FROM zdm.migrations WHERE name LIKE 'df\_%';
DROP FUNCTION zt_df.add_step;
DROP PROCEDURE zt_df.settle;
DROP SCHEMA zt_df;
REVOKE USAGE ON SCHEMA zt FROM regress_df_migrator;
REVOKE CREATE ON SCHEMA public FROM regress_df_migrator;
DROP ROLE regress_df_migrator;
