--
-- create_table: new tables from pgroll's create_table operation.
--
-- pgroll's semantics: a column is NOT NULL unless "nullable": true; primary
-- key columns are NOT NULL; "unique", "default", "check" and "comment" apply.
--

-- pgroll example 01_create_tables (customers, bills, sellers with a
-- composite primary key), under ct_ names.
SELECT zdm.expand('ct_01_create_tables', $${"operations": [
  {"create_table": {"name": "ct_customers", "columns": [
    {"name": "id", "type": "integer", "pk": true},
    {"name": "name", "type": "varchar(255)", "unique": true},
    {"name": "credit_card", "type": "text", "nullable": true}]}},
  {"create_table": {"name": "ct_bills", "columns": [
    {"name": "id", "type": "integer", "pk": true},
    {"name": "date", "type": "time with time zone"},
    {"name": "quantity", "type": "integer"}]}},
  {"create_table": {"name": "ct_sellers", "columns": [
    {"name": "name", "type": "varchar(255)", "pk": true},
    {"name": "zip", "type": "integer", "pk": true},
    {"name": "description", "type": "varchar(255)", "nullable": true}]}}]}$$);
SELECT zt.shape('ct_customers');
SELECT zt.shape('ct_bills');
SELECT zt.shape('ct_sellers');
SELECT name, phase, tables FROM zdm.status WHERE name = 'ct_01_create_tables';

-- The tables are usable at once, with their constraints.
INSERT INTO ct_customers VALUES (1, 'alice', NULL);
SELECT zt.try($$INSERT INTO ct_customers VALUES (2, 'alice', NULL)$$);
SELECT zt.try($$INSERT INTO ct_customers (id, credit_card) VALUES (3, '4111')$$);
SELECT zt.try($$INSERT INTO ct_bills (id, date) VALUES (1, '10:00+00')$$);
INSERT INTO ct_sellers VALUES ('bob', 1000, NULL), ('bob', 2000, 'second shop');
SELECT zt.try($$INSERT INTO ct_sellers VALUES ('bob', 1000, 'again')$$);
SELECT zt.try($$INSERT INTO ct_sellers (name, description) VALUES ('carol', 'no zip')$$);
SELECT * FROM ct_sellers ORDER BY name, zip;

-- Nothing to backfill in new tables; no trigger either.
SELECT zdm.backfill('ct_01_create_tables');
SELECT zdm.verify('ct_01_create_tables');
SELECT count(*) AS dual_write_triggers FROM pg_trigger
 WHERE tgrelid IN ('ct_customers'::regclass, 'ct_bills'::regclass, 'ct_sellers'::regclass);

-- Rollback drops all three tables, data and all.
SELECT zdm.rollback('ct_01_create_tables');
SELECT to_regclass('ct_customers') AS customers, to_regclass('ct_bills') AS bills,
       to_regclass('ct_sellers') AS sellers;
SELECT name, phase FROM zdm.status WHERE name = 'ct_01_create_tables';

-- pgroll example 28_different_defaults: serial, and defaults including now().
SELECT zdm.expand('ct_28_different_defaults', $${"operations": [
  {"create_table": {"name": "ct_items", "columns": [
    {"name": "id", "type": "serial", "pk": true},
    {"name": "name", "type": "varchar(255)", "default": "'unnamed'"},
    {"name": "price", "type": "decimal(10,2)", "default": "0.00"},
    {"name": "created_at", "type": "timestamptz", "default": "now()"}]}}]}$$);
SELECT zt.shape('ct_items');
BEGIN;
INSERT INTO ct_items DEFAULT VALUES;
INSERT INTO ct_items (name, price) VALUES ('lamp', 12.5);
-- now() is the transaction's start: the default took it.
SELECT id, name, price, created_at = now() AS created_now FROM ct_items ORDER BY id;
COMMIT;
SELECT pg_get_serial_sequence('ct_items', 'id') AS sequence;

-- pgroll example 56_with_version_schema: the top-level "version_schema" key
-- is accepted.
SELECT zdm.expand('ct_56_with_version_schema', $${"version_schema": "with_version_schema", "operations": [
  {"create_table": {"name": "ct_products", "columns": [
    {"name": "id", "type": "serial", "pk": true},
    {"name": "name", "type": "varchar(255)", "unique": true}]}}]}$$);
SELECT zt.shape('ct_products');

-- A column check, comments on the table and its columns, and the nullable
-- default: "nullable" absent or false means NOT NULL.
SELECT zdm.expand('ct_notes', $${"operations": [
  {"create_table": {"name": "ct_notes", "comment": "notes of the ct suite", "columns": [
    {"name": "id", "type": "bigint", "pk": true, "comment": "the key"},
    {"name": "body", "type": "text", "comment": "what was said",
     "check": {"name": "ct_notes_body_length", "constraint": "length(body) <= 20"}},
    {"name": "stars", "type": "smallint", "nullable": false, "default": "3"},
    {"name": "author", "type": "text", "nullable": true}]}}]}$$);
SELECT zt.shape('ct_notes');
SELECT attname, col_description(attrelid, attnum) AS comment
  FROM pg_attribute WHERE attrelid = 'ct_notes'::regclass AND attnum > 0 ORDER BY attnum;
SELECT obj_description('ct_notes'::regclass, 'pg_class') AS table_comment;
INSERT INTO ct_notes (id, body) VALUES (1, 'short');
SELECT zt.try($$INSERT INTO ct_notes (id, body) VALUES (2, 'much longer than twenty characters')$$);
SELECT zt.try($$INSERT INTO ct_notes (id) VALUES (3)$$);
SELECT zt.try($$INSERT INTO ct_notes (id, body, stars) VALUES (4, 'x', NULL)$$);
SELECT * FROM ct_notes ORDER BY id;

--
-- Mistakes: each refused whole, nothing created, no state recorded.
--
-- A table that exists already.
SELECT zt.try($$SELECT zdm.expand('ct_bad_exists', '{"operations": [{"create_table": {"name": "ct_notes",
    "columns": [{"name": "id", "type": "integer", "pk": true}]}}]}')$$);
-- Twice in one migration.
SELECT zt.try($$SELECT zdm.expand('ct_bad_twice', '{"operations": [
    {"create_table": {"name": "ct_twice", "columns": [{"name": "id", "type": "integer", "pk": true}]}},
    {"create_table": {"name": "ct_twice", "columns": [{"name": "id", "type": "integer", "pk": true}]}}]}')$$);
-- An unknown type.
SELECT zt.try($$SELECT zdm.expand('ct_bad_type', '{"operations": [{"create_table": {"name": "ct_bad_type",
    "columns": [{"name": "id", "type": "integer", "pk": true}, {"name": "x", "type": "no_such_type"}]}}]}')$$);
-- Two columns of the same name.
SELECT zt.try($$SELECT zdm.expand('ct_bad_dup', '{"operations": [{"create_table": {"name": "ct_bad_dup",
    "columns": [{"name": "id", "type": "integer", "pk": true}, {"name": "id", "type": "text"}]}}]}')$$);
-- "references" and "constraints" are pgroll's, but not implemented by zdm yet.
SELECT zt.try($$SELECT zdm.expand('ct_bad_refs', '{"operations": [{"create_table": {"name": "ct_bad_refs",
    "columns": [{"name": "id", "type": "integer", "pk": true},
                {"name": "note_id", "type": "bigint",
                 "references": {"name": "ct_bad_refs_fk", "table": "ct_notes", "column": "id"}}]}}]}')$$);
SELECT zt.try($$SELECT zdm.expand('ct_bad_cons', '{"operations": [{"create_table": {"name": "ct_bad_cons",
    "columns": [{"name": "id", "type": "integer", "pk": true}, {"name": "a", "type": "integer"}],
    "constraints": [{"name": "ct_bad_cons_a", "type": "check", "check": "a > 0"}]}}]}')$$);
-- A good table before a bad one: the good one is not created either.
SELECT zt.try($$SELECT zdm.expand('ct_bad_second', '{"operations": [
    {"create_table": {"name": "ct_good_first", "columns": [{"name": "id", "type": "integer", "pk": true}]}},
    {"create_table": {"name": "ct_bad_second", "columns": [{"name": "id", "type": "nope"}]}}]}')$$);
SELECT to_regclass('ct_twice') AS twice, to_regclass('ct_bad_type') AS bad_type,
       to_regclass('ct_bad_dup') AS bad_dup, to_regclass('ct_bad_refs') AS bad_refs,
       to_regclass('ct_bad_cons') AS bad_cons, to_regclass('ct_good_first') AS good_first;
SELECT count(*) FROM zdm.migrations WHERE name LIKE 'ct\_bad\_%';
SELECT zt.shape('ct_notes');

--
-- The normal life of a create_table migration: expand, backfill (nothing to
-- do: 0), contract; the table stays.
--
SELECT zdm.expand('ct_orders', $${"operations": [
  {"create_table": {"name": "ct_orders", "columns": [
    {"name": "id", "type": "bigint", "pk": true},
    {"name": "item", "type": "text"},
    {"name": "qty", "type": "integer", "default": "1",
     "check": {"name": "ct_orders_qty_positive", "constraint": "qty > 0"}}]}}]}$$);
INSERT INTO ct_orders (id, item) VALUES (1, 'pen');
SELECT zdm.backfill('ct_orders');
SELECT name, phase, rows_done, batches FROM zdm.status WHERE name = 'ct_orders';
SELECT zdm.contract('ct_orders');
SELECT name, phase FROM zdm.status WHERE name = 'ct_orders';
SELECT zt.shape('ct_orders');
SELECT * FROM ct_orders;
SELECT zt.try($$INSERT INTO ct_orders (id, item, qty) VALUES (2, 'ink', 0)$$);
-- Contracted: it cannot be rolled back any more.
SELECT zt.try($$SELECT zdm.rollback('ct_orders')$$);
SELECT to_regclass('ct_orders') AS still_there;

-- The others are contracted too (nothing is left expanded by this suite).
SELECT zdm.backfill('ct_28_different_defaults');
SELECT zdm.backfill('ct_56_with_version_schema');
SELECT zdm.backfill('ct_notes');
SELECT zdm.contract('ct_28_different_defaults');
SELECT zdm.contract('ct_56_with_version_schema');
SELECT zdm.contract('ct_notes');
SELECT name, phase FROM zdm.status WHERE name LIKE 'ct\_%' ORDER BY name;
SELECT zt.shape('ct_items');
SELECT zt.shape('ct_notes');

--
-- "generated": identity columns (pgroll example 08_create_fruits_table) and
-- stored generated columns, on a table no client uses yet.
--
SELECT zdm.expand('ct_08_create_fruits_table', '{"operations": [{"create_table": {"name": "ct_fruits", "columns": [
  {"name": "id", "type": "bigint", "pk": true, "generated": {"identity": {"user_specified_values": "BY DEFAULT"}}},
  {"name": "name", "type": "varchar(255)", "unique": true},
  {"name": "price", "type": "decimal(10,2)"},
  {"name": "serial_no", "type": "integer", "generated": {"identity": {"sequence_options": "START WITH 1000 INCREMENT BY 10"}}},
  {"name": "price_cents", "type": "bigint", "generated": {"expression": "(price * 100)::bigint"}}]}}]}');
SELECT zt.shape('ct_fruits');
INSERT INTO ct_fruits (name, price) VALUES ('apple', 1.25), ('pear', 2.5);
INSERT INTO ct_fruits (id, name, price) VALUES (100, 'fig', 3);
SELECT * FROM ct_fruits ORDER BY id;
SELECT zt.try($$INSERT INTO ct_fruits (name, price, serial_no) VALUES ('kiwi', 1, 7)$$);
SELECT zdm.backfill('ct_08_create_fruits_table');
SELECT zdm.rollback('ct_08_create_fruits_table');
SELECT to_regclass('ct_fruits') AS fruits_after_rollback;

-- Mistakes in "generated", each refused at expand, nothing created.
CREATE TEMP TABLE generated_cases (label text, migration text);
INSERT INTO generated_cases VALUES
 ('both kinds',          '{"name": "id", "type": "bigint", "generated": {"expression": "1", "identity": {}}}'),
 ('neither kind',        '{"name": "id", "type": "bigint", "generated": {}}'),
 ('nullable identity',   '{"name": "id", "type": "bigint", "nullable": true, "generated": {"identity": {}}}'),
 ('identity and default','{"name": "id", "type": "bigint", "default": "1", "generated": {"identity": {}}}'),
 ('bad user values',     '{"name": "id", "type": "bigint", "generated": {"identity": {"user_specified_values": "sometimes"}}}'),
 ('options not options', '{"name": "id", "type": "bigint", "generated": {"identity": {"sequence_options": "START 1) ; DROP TABLE ct_notes; --"}}}'),
 ('options a statement', '{"name": "id", "type": "bigint", "generated": {"identity": {"sequence_options": "START 1; SELECT 1"}}}'),
 ('unknown identity key','{"name": "id", "type": "bigint", "generated": {"identity": {"cycle": true}}}'),
 ('volatile expression', '{"name": "id", "type": "double precision", "generated": {"expression": "random()"}}'),
 ('unknown column',      '{"name": "id", "type": "bigint", "generated": {"expression": "nope + 1"}}'),
 ('two statements',      '{"name": "id", "type": "bigint", "generated": {"expression": "1); DROP TABLE ct_notes; SELECT (1"}}');
SELECT label, zt.try(format('SELECT zdm.expand(%L, %L)', 'ct_gen_bad',
       '{"operations": [{"create_table": {"name": "ct_gen", "columns": [' || migration || ']}}]}')) AS result
  FROM generated_cases;
SELECT to_regclass('ct_gen') AS ct_gen, to_regclass('ct_notes') IS NOT NULL AS notes_kept,
       (SELECT count(*) FROM zdm.migrations WHERE name = 'ct_gen_bad') AS recorded;
