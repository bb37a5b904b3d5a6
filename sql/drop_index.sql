--
-- drop_index: the index stays for old clients until contract; contract
-- leaves DROP INDEX CONCURRENTLY to the deferred-steps worker, which runs
-- it once contract has committed (the phase reads "contracted" meanwhile,
-- zdm.status shows the step owed).  Rollback has nothing to undo.  An
-- index that backs a constraint or is a replica identity is refused.  All
-- of it as a migration role.  (zt_ci's helpers: suite create_index.)
--
CREATE ROLE regress_di_migrator;
GRANT zdm_migrator TO regress_di_migrator;
CREATE ROLE regress_di_other;
GRANT regress_di_other TO regress_di_migrator;
GRANT USAGE ON SCHEMA zt, zt_ci TO regress_di_migrator;

CREATE TABLE di_fruits (id bigint PRIMARY KEY, name text NOT NULL, price numeric,
                        CONSTRAINT di_fruits_name_key UNIQUE (name));
CREATE INDEX idx_di_fruits_price ON di_fruits (price);
CREATE INDEX idx_di_fruits_lower ON di_fruits (lower(name));
CREATE INDEX idx_di_fruits_name_price ON di_fruits (name, price);
CREATE UNIQUE INDEX idx_di_fruits_ident ON di_fruits (id);
ALTER TABLE di_fruits REPLICA IDENTITY USING INDEX idx_di_fruits_ident;
INSERT INTO di_fruits SELECT g, 'fruit ' || g, g FROM generate_series(1, 100) g;
CREATE TABLE di_parted (id int, k int) PARTITION BY RANGE (id);
CREATE INDEX idx_di_parted_k ON di_parted (k);
ALTER TABLE di_fruits OWNER TO regress_di_migrator;
ALTER TABLE di_parted OWNER TO regress_di_migrator;
SELECT * FROM zt_ci.indexes('di_fruits');

SET ROLE regress_di_migrator;

--
-- 1. pgroll's 11_drop_index: nothing at expand; at contract, concurrently, after it commits.
--
SELECT zdm.expand('di_11', '{"operations": [{"drop_index": {"name": "idx_di_fruits_price"}}]}');
SELECT plan->'contract' AS contract, plan->'deferred' AS deferred FROM zdm.migrations WHERE name = 'di_11';
SELECT phase, deferred FROM zdm.status WHERE name = 'di_11';
SELECT * FROM zt_ci.indexes('di_fruits') AS i WHERE i LIKE '%price%';
SELECT zdm.backfill('di_11');
BEGIN;
SELECT zdm.contract('di_11', force => true);
-- Contracted, with the drop still owed to the worker.
SELECT phase, deferred, deferred_done, deferred_total FROM zdm.status WHERE name = 'di_11';
COMMIT;
CALL zt_ci.settle('di_11');
SELECT phase, deferred, deferred_done, last_error FROM zdm.status WHERE name = 'di_11';
SELECT * FROM zt_ci.indexes('di_fruits') AS i WHERE i LIKE '%price%';
SELECT event, phase, statement, detail FROM zdm.migration_log
 WHERE migration = 'di_11' AND event IN ('ddl', 'steps_done') ORDER BY id;
-- Contract again: nothing owed, nothing done.
SELECT zdm.contract('di_11');

--
-- 2. Rollback: the index was never touched.
--
SELECT zdm.expand('di_rb', '{"operations": [{"drop_index": {"name": "idx_di_fruits_lower"}}]}');
SELECT zdm.rollback('di_rb');
SELECT phase, deferred FROM zdm.status WHERE name = 'di_rb';
SELECT * FROM zt_ci.indexes('di_fruits') AS i WHERE i LIKE '%lower%';

--
-- 3. A contract step that fails: the index's table changed owner after the
--    expand, so the author may no longer drop it.  The migration stays
--    contracted with the step owed and the error in last_error; once the
--    cause is fixed, zdm.contract() called again runs it again.
--
SELECT zdm.expand('di_owner', '{"operations": [{"drop_index": {"name": "idx_di_fruits_lower"}}]}');
SELECT zdm.backfill('di_owner');
RESET ROLE;
ALTER TABLE di_fruits OWNER TO regress_di_other;
REVOKE regress_di_other FROM regress_di_migrator;
SELECT zdm.contract('di_owner', force => true);
CALL zt_ci.settle('di_owner');
SELECT phase, deferred, deferred_done, deferred_total, last_error FROM zdm.status WHERE name = 'di_owner';
SELECT * FROM zt_ci.indexes('di_fruits') AS i WHERE i LIKE '%lower%';
ALTER TABLE di_fruits OWNER TO regress_di_migrator;
SET ROLE regress_di_migrator;
SELECT zdm.contract('di_owner');
CALL zt_ci.settle('di_owner');
SELECT phase, deferred, last_error FROM zdm.status WHERE name = 'di_owner';
SELECT * FROM zt_ci.indexes('di_fruits') AS i WHERE i LIKE '%lower%';

--
-- 4. Bad input: each error, its SQLSTATE, message and hint; nothing changed.
--
RESET ROLE;
CREATE TABLE di_other (id int);
ALTER TABLE di_other OWNER TO regress_di_migrator;
SET ROLE regress_di_migrator;
CREATE TEMP TABLE attempts (label text, ops text);
INSERT INTO attempts VALUES
 ('no name',            '[{"drop_index": {}}]'),
 ('unknown key',        '[{"drop_index": {"name": "idx_di_fruits_ident", "table": "di_fruits"}}]'),
 ('missing',            '[{"drop_index": {"name": "no_such_index"}}]'),
 ('a table',            '[{"drop_index": {"name": "di_other"}}]'),
 ('unique constraint',  '[{"drop_index": {"name": "di_fruits_name_key"}}]'),
 ('primary key',        '[{"drop_index": {"name": "di_fruits_pkey"}}]'),
 ('replica identity',   '[{"drop_index": {"name": "idx_di_fruits_ident"}}]'),
 ('partitioned',        '[{"drop_index": {"name": "idx_di_parted_k"}}]'),
 ('twice',              '[{"drop_index": {"name": "idx_di_fruits_name_price"}}, {"drop_index": {"name": "public.idx_di_fruits_name_price"}}]'),
 ('schema missing',     '[{"drop_index": {"name": "nowhere.idx_di_fruits_ident"}}]');
SELECT label, zt.try(format('SELECT zdm.expand(%L, %L)', 'di_bad', format('{"operations": %s}', ops)))
  FROM attempts ORDER BY label;
SELECT count(*) AS migrations FROM zdm.migrations WHERE name = 'di_bad';
SELECT * FROM zt_ci.indexes('di_fruits');

RESET ROLE;

DROP TABLE di_fruits, di_parted, di_other, attempts CASCADE;
DELETE FROM zdm.migrations WHERE name LIKE 'di\_%';
REVOKE USAGE ON SCHEMA zt, zt_ci FROM regress_di_migrator;
DROP ROLE regress_di_migrator;
DROP ROLE regress_di_other;
DROP PROCEDURE zt_ci.settle, zt_ci.running;
DROP FUNCTION zt_ci.indexes, zt_ci.slow_positive;
DROP SCHEMA zt_ci;
