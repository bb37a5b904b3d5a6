--
-- errors: every mistake a user can make gets an error with a real SQLSTATE,
-- a message naming the migration and object, and a hint; nothing changes.
--
CREATE TABLE er_orders (id int PRIMARY KEY, status text NOT NULL, note text, qty int);
INSERT INTO er_orders VALUES (1, 'paid', NULL, 2);
SELECT zt.shape('er_orders') AS before \gset

CREATE TEMP TABLE attempts (label text, stmt text);
INSERT INTO attempts VALUES
 ('null name',            $$SELECT zdm.expand(NULL, '{"operations": []}')$$),
 ('empty name',           $$SELECT zdm.expand('', '{"operations": []}')$$),
 ('null definition',      $$SELECT zdm.expand('e1', NULL)$$),
 ('not an object',        $$SELECT zdm.expand('e1', '[1, 2]')$$),
 ('malformed json',       $$SELECT zdm.expand('e1', '{"operations": [')$$),
 ('no operations',        $$SELECT zdm.expand('e1', '{}')$$),
 ('empty operations',     $$SELECT zdm.expand('e1', '{"operations": []}')$$),
 ('operations not array', $$SELECT zdm.expand('e1', '{"operations": {"add_column": {}}}')$$),
 ('unknown top key',      $$SELECT zdm.expand('e1', '{"operations": [], "opperations": []}')$$),
 ('operation not object', $$SELECT zdm.expand('e1', '{"operations": ["add_column"]}')$$),
 ('two kinds in one',     $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {}, "drop_column": {}}]}')$$),
 ('unknown operation',    $$SELECT zdm.expand('e1', '{"operations": [{"add_colum": {"table": "er_orders"}}]}')$$),
 ('unsupported operation',$$SELECT zdm.expand('e1', '{"operations": [{"set_replica_identity": {"table": "er_orders", "identity": {"type": "full"}}}]}')$$),
 ('missing field',        $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders"}}]}')$$),
 ('wrong field type',     $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": 7, "type": "int"}}}]}')$$),
 ('empty string field',   $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "", "column": {"name": "x", "type": "int"}}}]}')$$),
 ('unknown field',        $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "colum": {}}}]}')$$),
 ('unsupported field',    $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": "x", "type": "int", "nullable": true, "references": {"name": "f", "table": "t", "column": "c"}}}}]}')$$),
 ('unknown table',        $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "no_such", "column": {"name": "x", "type": "int", "nullable": true}}}]}')$$),
 ('unknown schema',       $$SELECT zdm.expand('e1', '{"schema": "nowhere", "operations": [{"add_column": {"table": "er_orders", "column": {"name": "x", "type": "int", "nullable": true}}}]}')$$),
 ('not a table',          $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "pg_class_view", "column": {"name": "x", "type": "int", "nullable": true}}}]}')$$),
 ('unknown column',       $$SELECT zdm.expand('e1', '{"operations": [{"drop_column": {"table": "er_orders", "column": "nope"}}]}')$$),
 ('unknown type',         $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": "x", "type": "no_such_type", "nullable": true}}}]}')$$),
 ('type injection',       $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": "x", "type": "int; DROP TABLE er_orders", "nullable": true}}}]}')$$),
 ('column exists',        $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": "note", "type": "int", "nullable": true}}}]}')$$),
 ('added twice',          $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": "x", "type": "int", "nullable": true}}}, {"add_column": {"table": "er_orders", "column": {"name": "x", "type": "int", "nullable": true}}}]}')$$),
 ('rename onto existing', $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "note"}}]}')$$),
 ('altered twice',        $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2"}}, {"drop_column": {"table": "er_orders", "column": "status", "down": "''x''"}}]}')$$),
 ('in-place change',      $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "type": "varchar(10)", "up": "status", "down": "status"}}]}')$$),
 ('up does not parse',    $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "upper(status"}}]}')$$),
 ('up unknown column',    $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "upper(stats)"}}]}')$$),
 ('up wrong type',        $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "type": "int[]", "up": "now()"}}]}')$$),
 ('down wrong type',      $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "qty", "name": "q2", "type": "text", "up": "qty::text", "down": "now()"}}]}')$$),
 ('second statement',     $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "status; DROP TABLE er_orders"}}]}')$$),
 ('closing paren',        $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "status) FROM pg_authid --"}}]}')$$),
 ('union',                $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "status) UNION SELECT (rolpassword"}}]}')$$),
 ('subquery in a default', $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": "x", "type": "int", "default": "(SELECT 1)"}}}]}')$$),
 ('subquery in a check',  $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "check": {"name": "c", "constraint": "s2 <> (SELECT max(status) FROM er_orders)"}}}]}')$$),
 ('row in a sub-select',  $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "(SELECT er_orders::text)"}}]}')$$),
 ('aggregate',            $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "max(status)"}}]}')$$),
 ('set-returning',        $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "generate_series(1, 2)::text"}}]}')$$),
 ('system column',        $$SELECT zdm.expand('e1', '{"operations": [{"alter_column": {"table": "er_orders", "column": "status", "name": "s2", "up": "ctid::text"}}]}')$$),
 ('name too long',        $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "type": "int", "nullable": true}}}]}')$$),
 ('check name too long',  $$SELECT zdm.expand('e1', '{"operations": [{"add_column": {"table": "er_orders", "column": {"name": "x", "type": "int", "nullable": true, "check": {"name": "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc", "constraint": "x > 0"}}}}]}')$$),
 ('backfill null name',   $$SELECT zdm.backfill(NULL::text, 10)$$),
 ('backfill empty name',  $$SELECT zdm.backfill('', 10)$$),
 ('backfill unknown',     $$SELECT zdm.backfill('no_such_migration', 10)$$),
 ('backfill batch 0',     $$SELECT zdm.backfill('no_such_migration', 0)$$),
 ('backfill negative',    $$SELECT zdm.backfill(-5)$$),
 ('verify unknown',       $$SELECT zdm.verify('no_such_migration')$$),
 ('verify null',          $$SELECT zdm.verify(NULL)$$),
 ('contract unknown',     $$SELECT zdm.contract('no_such_migration')$$),
 ('contract empty',       $$SELECT zdm.contract('')$$),
 ('rollback unknown',     $$SELECT zdm.rollback('no_such_migration')$$),
 ('rollback null',        $$SELECT zdm.rollback(NULL)$$),
 ('trigger called alone', $$SELECT zdm.dual_write()$$);
CREATE VIEW pg_class_view AS SELECT 1 AS x;

SELECT label, zt.try(stmt) AS result FROM attempts;

-- Not one of them is an internal error, and none changed anything.
SELECT count(*) AS internal_errors FROM attempts WHERE zt.try(stmt) LIKE 'XX%';
SELECT zt.shape('er_orders') = :'before' AS unchanged;
SELECT count(*) AS migrations FROM zdm.migrations WHERE name = 'e1';

-- Identifiers full of quotes and semicolons are only ever identifiers.
CREATE TABLE "we""ird; DROP TABLE er_orders; --" ("id" int PRIMARY KEY, "co""l; x" text NOT NULL);
INSERT INTO "we""ird; DROP TABLE er_orders; --" VALUES (1, 'a');
SELECT zdm.expand('e2 ''; DROP TABLE er_orders; --', $${"operations": [{"alter_column": {"table": "we\"ird; DROP TABLE er_orders; --", "column": "co\"l; x", "name": "new\"; col", "up": "upper(\"co\"\"l; x\")", "down": "lower(\"new\"\"; col\")"}}]}$$);
INSERT INTO "we""ird; DROP TABLE er_orders; --" ("id", "co""l; x") VALUES (2, 'b');
SELECT zdm.backfill('e2 ''; DROP TABLE er_orders; --', 10);
SELECT zdm.backfill('e2 ''; DROP TABLE er_orders; --', 10);
SELECT * FROM "we""ird; DROP TABLE er_orders; --" ORDER BY 1;
SELECT zdm.contract('e2 ''; DROP TABLE er_orders; --');
SELECT zt.shape('"we""ird; DROP TABLE er_orders; --"');
SELECT to_regclass('er_orders') IS NOT NULL AS er_orders_still_there;
DROP TABLE "we""ird; DROP TABLE er_orders; --", er_orders;
DROP VIEW pg_class_view;
