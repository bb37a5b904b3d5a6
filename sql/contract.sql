--
-- contract: refused until the backfill is done and verified, never in the
-- expand's own transaction; contract(NULL) takes every ready migration.
--
CREATE TABLE co_orders (id int PRIMARY KEY, legacy_status text NOT NULL);
INSERT INTO co_orders SELECT g, 'paid' FROM generate_series(1, 5) g;
\set mig '{"operations": [{"alter_column": {"table": "co_orders", "column": "legacy_status", "name": "status", "up": "upper(legacy_status)", "down": "lower(status)"}}]}'

-- Expand and contract in one deployment: refused, and the expand stays.
BEGIN;
SELECT zdm.expand('co_1', :'mig');
SELECT zt.try($$SELECT zdm.contract('co_1')$$);
COMMIT;
SELECT name, phase FROM zdm.migrations WHERE name = 'co_1';

-- Before the backfill: refused.
SELECT zt.try($$SELECT zdm.contract('co_1')$$);
SELECT zdm.backfill('co_1', 2);
SELECT zt.try($$SELECT zdm.contract('co_1')$$);
SELECT zdm.backfill('co_1', 100);
SELECT zdm.backfill('co_1', 100);

-- Backfilled but inconsistent (someone bypassed the trigger): refused.
ALTER TABLE co_orders DISABLE TRIGGER USER;
UPDATE co_orders SET status = 'SHIPPED' WHERE id = 1;
ALTER TABLE co_orders ENABLE TRIGGER USER;
SELECT zdm.verify('co_1');
SELECT zt.try($$SELECT zdm.contract('co_1')$$);
SELECT zt.shape('co_orders');
-- Writing the same value again is no write: the trigger leaves the row.
UPDATE co_orders SET status = 'SHIPPED' WHERE id = 1;
SELECT zdm.verify('co_1');
-- A real write through either version repairs it.
UPDATE co_orders SET legacy_status = 'shipped' WHERE id = 1;
SELECT zdm.verify('co_1');

-- contract(NULL): every backfilled migration.
CREATE TABLE co_items (id int PRIMARY KEY, qty int NOT NULL);
INSERT INTO co_items VALUES (1, 3);
SELECT zdm.expand('co_2', '{"operations": [{"drop_column": {"table": "co_items", "column": "qty", "down": "1"}}]}');
SELECT zdm.backfill('co_2');
SELECT zdm.contract();
SELECT name, phase FROM zdm.status WHERE name LIKE 'co_%' ORDER BY name;
SELECT zt.shape('co_orders');
SELECT zt.shape('co_items');
SELECT * FROM co_orders ORDER BY id;

-- Twice: a notice, false.
SELECT zdm.contract('co_1');
-- Nothing left to contract.
SELECT zt.try($$SELECT zdm.contract()$$);
-- After contract there is one version left: no verify or rollback; a
-- backfill does nothing (0 and a NOTICE, so a scheduled job does not fail).
SELECT zt.try($$SELECT zdm.verify('co_1')$$);
SELECT zdm.backfill('co_1');
SELECT zt.try($$SELECT zdm.rollback('co_1')$$);
SELECT count(*) AS contract_statements FROM zdm.migration_log
 WHERE migration = 'co_1' AND event = 'ddl' AND phase = 'contracted';
DROP TABLE co_orders, co_items;
