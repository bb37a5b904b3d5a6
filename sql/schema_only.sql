--
-- schema_only: dual-write triggers without zdm's state, as a schema-only
-- dump restores them, refuse writes with an error naming the migration;
-- reads and deletes go on; zdm's functions say what happened; once the
-- state is back the triggers work again, in the same session too.
--
CREATE TABLE so_orders (id int PRIMARY KEY, legacy_status text NOT NULL);
INSERT INTO so_orders VALUES (1, 'paid'), (2, 'paid');
SELECT zdm.expand('so_1', '{"operations": [{"alter_column": {"table": "so_orders", "column": "legacy_status", "name": "status", "up": "upper(legacy_status)", "down": "lower(status)"}}]}');
INSERT INTO so_orders (id, legacy_status) VALUES (3, 'shipped');
SELECT relation, trigger, migration, phase, enabled, dual_writing FROM zdm.dual_write_triggers;

-- What a schema-only restore leaves: the triggers, and no state.
CREATE TABLE so_saved AS SELECT * FROM zdm.migrations WHERE name = 'so_1';
DELETE FROM zdm.migrations WHERE name = 'so_1';
\c
-- An old client's write, a new client's, an UPDATE zdm would plan the
-- conversion into, one the trigger would handle: all refused, unchanged.
INSERT INTO so_orders (id, legacy_status) VALUES (4, 'paid');
\set VERBOSITY terse
INSERT INTO so_orders (id, status) VALUES (5, 'SHIPPED');
UPDATE so_orders SET legacy_status = 'delivered' WHERE id = 1;
UPDATE so_orders SET status = 'LOST' WHERE id = 2;
SET zdm.inline_updates = off;
UPDATE so_orders SET legacy_status = 'delivered' WHERE id = 1;
RESET zdm.inline_updates;
-- The same for an application role, which has its table privileges only.
CREATE ROLE regress_so_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON so_orders TO regress_so_app;
SET ROLE regress_so_app;
INSERT INTO so_orders (id, legacy_status) VALUES (4, 'paid');
UPDATE so_orders SET legacy_status = 'delivered' WHERE id = 1;
RESET ROLE;
\set VERBOSITY default
-- Reads and deletes go on.
DELETE FROM so_orders WHERE id = 3;
SELECT * FROM so_orders ORDER BY id;
SELECT relation, trigger, migration, phase, enabled, dual_writing FROM zdm.dual_write_triggers;
SELECT line FROM regexp_split_to_table(zdm.metrics(), E'\n') AS line
 WHERE line LIKE 'zdm_dual_write_active{%';
SELECT zt.try($$SELECT zdm.rollback('so_1')$$);
SELECT zt.try($$SELECT zdm.contract('so_1')$$);
SELECT zt.try($$SELECT zdm.expand('so_1', '{"operations": [{"alter_column": {"table": "so_orders", "column": "legacy_status", "name": "status", "up": "upper(legacy_status)", "down": "lower(status)"}}]}')$$);
SELECT count(*) AS known FROM zdm.status WHERE name = 'so_1';

-- zdm's state is back (as a full dump restores it): the trigger works again.
INSERT INTO zdm.migrations SELECT * FROM so_saved;
SET ROLE regress_so_app;
INSERT INTO so_orders (id, legacy_status) VALUES (6, 'paid');
UPDATE so_orders SET legacy_status = 'returned' WHERE id = 1;
RESET ROLE;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE so_orders SET legacy_status = 'lost' WHERE id = 2;
SELECT * FROM so_orders ORDER BY id;
SELECT relation, trigger, migration, phase, enabled, dual_writing FROM zdm.dual_write_triggers;

-- Rolled back in the state, yet the trigger is there: refused as well
-- (from the next session on; zdm's own rollback drops the trigger).
UPDATE zdm.migrations SET phase = 'rolled_back' WHERE name = 'so_1';
\c
\set VERBOSITY terse
INSERT INTO so_orders (id, legacy_status) VALUES (7, 'paid');
\set VERBOSITY default
UPDATE zdm.migrations SET phase = 'expanded' WHERE name = 'so_1';

-- A disabled trigger does not dual-write, and the view says so.
ALTER TABLE so_orders DISABLE TRIGGER USER;
SELECT relation, trigger, enabled, dual_writing FROM zdm.dual_write_triggers;
ALTER TABLE so_orders ENABLE TRIGGER USER;
SELECT zdm.rollback('so_1');
SELECT count(*) AS triggers FROM zdm.dual_write_triggers;
DROP TABLE so_orders, so_saved;
DROP ROLE regress_so_app;
