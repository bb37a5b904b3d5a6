--
-- corrupt: a migration's row in zdm.migrations edited outside zdm (as the
-- superuser, the only role that may write it).  Every step that reads the
-- stored plan or backfill checkpoint checks its shape first: a bad one is
-- an error (data_corrupted, XX001) naming the migration and what is wrong,
-- never a crash or an internal error; nothing changes, the next statement
-- works, and restoring the row makes everything work again.
--
\set SHOW_CONTEXT never

-- Four tables: a key of one column, a key of two, no key (walked by
-- blocks), and one the migration creates (nothing to backfill).
CREATE TABLE cr_orders (id int PRIMARY KEY, legacy_status text NOT NULL);
INSERT INTO cr_orders SELECT g, 'paid' FROM generate_series(1, 20) g;
CREATE TABLE cr_pairs (a int, b text, qty int NOT NULL, PRIMARY KEY (a, b));
INSERT INTO cr_pairs SELECT g % 4, 'k' || g, g FROM generate_series(1, 12) g;
CREATE TABLE cr_log (msg text);
INSERT INTO cr_log SELECT 'line ' || g FROM generate_series(1, 8) g;
SELECT zdm.expand('cr_1', $${"operations": [
  {"alter_column": {"table": "cr_orders", "column": "legacy_status", "name": "status",
                    "up": "upper(legacy_status)", "down": "lower(status)"}},
  {"add_column": {"table": "cr_pairs", "column": {"name": "qty2", "type": "int", "nullable": true}, "up": "qty * 2"}},
  {"add_column": {"table": "cr_log", "column": {"name": "len", "type": "int", "nullable": true}, "up": "length(msg)"}},
  {"create_table": {"name": "cr_new", "columns": [{"name": "id", "type": "int", "pk": true}]}}]}$$);
SELECT zdm.backfill('cr_1', 5);
SELECT backfill_table, backfill_key FROM zdm.migrations WHERE name = 'cr_1';
SELECT zdm.backfill('cr_1', 1000) FROM generate_series(1, 4);
SELECT phase, backfill_table, backfill_key FROM zdm.migrations WHERE name = 'cr_1';

-- The row as zdm wrote it, and the tables as they are.
CREATE TEMP TABLE saved AS SELECT * FROM zdm.migrations WHERE name = 'cr_1';
SELECT string_agg(zt.shape(t), E'\n' ORDER BY t) AS shapes
  FROM unnest('{cr_orders,cr_pairs,cr_log,cr_new}'::regclass[]) t \gset

-- Run stmt after change (an UPDATE of the row), report its result or its
-- SQLSTATE and message, and undo both either way.
CREATE FUNCTION cr_attempt(change text, stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
    st text;
    msg text;
BEGIN
    BEGIN
        EXECUTE change;
        EXECUTE stmt INTO result;
        RAISE EXCEPTION USING ERRCODE = 'ZX999', MESSAGE = coalesce(result, 'null');
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    END;
    RETURN CASE WHEN st = 'ZX999' THEN 'ok: ' || msg ELSE st || ': ' || msg END;
END
$$;

-- The calls that read the row.  backfill runs from a checkpoint at the
-- start of the walk (the cases below may move it), contract from phase
-- backfilled (it reads the plan only then).
CREATE TEMP TABLE calls (ord int, fn text, prepare text, stmt text);
INSERT INTO calls VALUES
 (1, 'backfill', $$UPDATE zdm.migrations SET phase = 'backfilling', backfill_table = 0, backfill_key = NULL WHERE name = 'cr_1'$$,
                 $$SELECT zdm.backfill('cr_1', 5)$$),
 (2, 'verify',   NULL, $$SELECT zdm.verify('cr_1')$$),
 (3, 'contract', NULL, $$SELECT zdm.contract('cr_1')$$),
 (4, 'rollback', NULL, $$SELECT zdm.rollback('cr_1')$$),
 (5, 'status',   NULL, $$SELECT phase || ' ' || coalesce(tables::text, '(no tables)') FROM zdm.status WHERE name = 'cr_1'$$);

-- The ways the row can be wrong: the plan (set plan = ...), the
-- checkpoint (the rest).
CREATE TEMP TABLE cases (ord serial, label text, change text);
INSERT INTO cases (label, change) VALUES
 ('plan an array',               $$plan = '[]'$$),
 ('plan a string',               $$plan = '"plan"'$$),
 ('no tables',                   $$plan = plan - 'tables'$$),
 ('tables an object',            $$plan = jsonb_set(plan, '{tables}', '{"relation": "cr_orders"}')$$),
 ('table a string',              $$plan = jsonb_set(plan, '{tables,1}', '"cr_pairs"')$$),
 ('table null',                  $$plan = jsonb_set(plan, '{tables,0}', 'null')$$),
 ('no relation',                 $$plan = plan #- '{tables,0,relation}'$$),
 ('relation a number',           $$plan = jsonb_set(plan, '{tables,0,relation}', '42')$$),
 ('relation not a name',         $$plan = jsonb_set(plan, '{tables,0,relation}', '"cr_orders; DROP TABLE cr_orders"')$$),
 ('relation too dotted',         $$plan = jsonb_set(plan, '{tables,0,relation}', '"a.b.c.d"')$$),
 ('table name empty',            $$plan = jsonb_set(plan, '{tables,0,table}', '""')$$),
 ('backfill a string',           $$plan = jsonb_set(plan, '{tables,0,backfill}', '"yes"')$$),
 ('no key',                      $$plan = plan #- '{tables,0,key}'$$),
 ('key a string',                $$plan = jsonb_set(plan, '{tables,0,key}', '"id"')$$),
 ('key element a number',        $$plan = jsonb_set(plan, '{tables,0,key,0}', '7')$$),
 ('key_types short',             $$plan = jsonb_set(plan, '{tables,1,key_types}', '["integer"]')$$),
 ('key_types long',              $$plan = jsonb_set(plan, '{tables,0,key_types}', '["integer", "text"]')$$),
 ('key_types on a keyless table',$$plan = jsonb_set(plan, '{tables,2,key_types}', '["integer"]')$$),
 ('key type null',               $$plan = jsonb_set(plan, '{tables,0,key_types,0}', 'null')$$),
 ('key type an object',          $$plan = jsonb_set(plan, '{tables,1,key_types,1}', '{}')$$),
 ('no set',                      $$plan = plan #- '{tables,0,set}'$$),
 ('todo a boolean',              $$plan = jsonb_set(plan, '{tables,1,todo}', 'true')$$),
 ('verify an array',             $$plan = jsonb_set(plan, '{tables,0,verify}', '["id > 0"]')$$),
 ('no search_path',              $$plan = plan - 'search_path'$$),
 ('search_path a number',        $$plan = jsonb_set(plan, '{search_path}', '1')$$),
 ('search_path not a list',      $$plan = jsonb_set(plan, '{search_path}', '"public,"')$$),
 ('format a string',             $$plan = jsonb_set(plan, '{format}', '"2"')$$),
 ('format a fraction',           $$plan = jsonb_set(plan, '{format}', '1.5')$$),
 ('format huge',                 $$plan = jsonb_set(plan, '{format}', '1e30')$$),
 ('format of a newer zdm',       $$plan = jsonb_set(plan, '{format}', '99')$$),
 ('no contract',                 $$plan = plan - 'contract'$$),
 ('contract a string',           $$plan = jsonb_set(plan, '{contract}', '"DROP TABLE cr_orders"')$$),
 ('contract step an array',      $$plan = jsonb_set(plan, '{contract,0}', '[]')$$),
 ('contract lock unknown',       $$plan = jsonb_set(plan, '{contract,0,lock}', '"share"')$$),
 ('contract step without sql',   $$plan = plan #- '{contract,1,sql}'$$),
 ('contract runs unknown',       $$plan = jsonb_set(plan, '{contract,0,runs}', '"later"')$$),
 ('contract index a number',     $$plan = jsonb_set(plan, '{contract,0,index}', '5')$$),
 ('no rollback',                 $$plan = plan - 'rollback'$$),
 ('rollback step a number',      $$plan = jsonb_set(plan, '{rollback,2}', '3')$$),
 ('rollback relation a number',  $$plan = jsonb_set(plan, '{rollback,0,relation}', '1')$$),
 ('rollback lock none on a table',$$plan = jsonb_set(plan, '{rollback,0,lock}', '"none"')$$),
 ('rollback sql empty',          $$plan = jsonb_set(plan, '{rollback,1,sql}', '""')$$),
 ('backfill_table negative',     $$backfill_table = -1$$),
 ('backfill_table past the end', $$backfill_table = 7$$),
 ('backfill_key too short',      $$backfill_table = 1, backfill_key = '{3}'$$),
 ('backfill_key too long',       $$backfill_key = '{20,5,1}'$$),
 ('backfill_key empty',          $$backfill_key = '{}'$$),
 ('backfill_key null element',   $$backfill_key = '{20,NULL}'$$),
 ('backfill_key 2-dimensional',  $$backfill_table = 1, backfill_key = '{{3,k3},{3,k7}}'$$),
 ('block walk short',            $$backfill_table = 2, backfill_key = '{0,1}'$$),
 ('block not a number',          $$backfill_table = 2, backfill_key = '{x,1,8}'$$),
 ('block negative',              $$backfill_table = 2, backfill_key = '{-4,1,8}'$$),
 ('rows per block NaN',          $$backfill_table = 2, backfill_key = '{0,1,NaN}'$$),
 ('key on a table without backfill', $$backfill_table = 3, backfill_key = '{1,2}'$$),
 ('key once every table is done',$$backfill_table = 4, backfill_key = '{1,2}'$$);

SET client_min_messages = warning;
CREATE TEMP TABLE results AS
SELECT c.ord, c.label, f.ord AS fn_ord, f.fn,
       cr_attempt(coalesce(f.prepare || '; ', '') || 'UPDATE zdm.migrations SET ' || c.change || $$ WHERE name = 'cr_1'$$,
                  f.stmt) AS result
  FROM cases c CROSS JOIN calls f;
RESET client_min_messages;
SELECT label, fn, result FROM results ORDER BY ord, fn_ord;

-- The server is up, nothing is an internal error, and nothing changed.
SELECT 1 AS still_up;
SELECT count(*) FILTER (WHERE result LIKE 'XX000%') AS internal_errors,
       count(*) FILTER (WHERE result LIKE 'XX001%') AS data_corrupted,
       count(*) FILTER (WHERE result LIKE 'ok%') AS ok,
       count(*) AS attempts
  FROM results;
SELECT (m.*)::text = (s.*)::text AS row_unchanged
  FROM zdm.migrations m, saved s WHERE m.name = 'cr_1';
SELECT string_agg(zt.shape(t), E'\n' ORDER BY t) = :'shapes' AS tables_unchanged
  FROM unnest('{cr_orders,cr_pairs,cr_log,cr_new}'::regclass[]) t;

-- The hints: each says what still works.
UPDATE zdm.migrations SET phase = 'backfilling', backfill_table = 1,
       plan = jsonb_set(plan, '{tables,1,key_types}', '["integer"]') WHERE name = 'cr_1';
SELECT zt.try($$SELECT zdm.backfill('cr_1', 5)$$);
UPDATE zdm.migrations SET plan = jsonb_set(plan, '{rollback,0}', '"DROP TABLE cr_new"') WHERE name = 'cr_1';
SELECT zt.try($$SELECT zdm.rollback('cr_1')$$);
UPDATE zdm.migrations m SET plan = s.plan, backfill_key = '{3,NULL,3,k3}' FROM saved s WHERE m.name = s.name;
SELECT zt.try($$SELECT zdm.backfill('cr_1', 5)$$);
-- ... and a row whose NOT NULL columns were let go of.
BEGIN;
ALTER TABLE zdm.migrations ALTER COLUMN plan DROP NOT NULL;
UPDATE zdm.migrations SET plan = NULL WHERE name = 'cr_1';
SELECT zt.try($$SELECT zdm.verify('cr_1')$$);
ROLLBACK;

-- The dual-write trigger's arguments are checked too.
CREATE TABLE cr_hand (id int PRIMARY KEY, a text, b text);
CREATE TRIGGER t1 BEFORE INSERT ON cr_hand FOR EACH ROW EXECUTE FUNCTION zdm.dual_write('cr_1');
SELECT zt.try($$INSERT INTO cr_hand VALUES (1, 'x')$$);
DROP TRIGGER t1 ON cr_hand;
CREATE TRIGGER t2 BEFORE INSERT ON cr_hand FOR EACH ROW EXECUTE FUNCTION zdm.dual_write('cr_1', 'public', 'a', 'b', 'upper(a)');
SELECT zt.try($$INSERT INTO cr_hand VALUES (1, 'x')$$);
DROP TRIGGER t2 ON cr_hand;
CREATE TRIGGER t3 BEFORE INSERT ON cr_hand FOR EACH ROW EXECUTE FUNCTION zdm.dual_write('cr_1', 'public', 'a', 'b', 'upper(a)', 'lower(b)',
    '--zdm-versions-------------------------------------------------------', 'v1');
SELECT zt.try($$INSERT INTO cr_hand VALUES (1, 'x')$$);
DROP TRIGGER t3 ON cr_hand;
CREATE TRIGGER t4 BEFORE INSERT ON cr_hand FOR EACH ROW EXECUTE FUNCTION zdm.dual_write('cr_1', 'public', 'a', 'nope', 'upper(a)', '');
SELECT zt.try($$INSERT INTO cr_hand VALUES (1, 'x')$$);
DROP TABLE cr_hand;

-- Restored, the migration goes on where it was: backfill, verify, contract.
UPDATE zdm.migrations m SET plan = s.plan, phase = 'backfilling', backfill_table = 0, backfill_key = NULL
  FROM saved s WHERE m.name = s.name;
SELECT zdm.backfill('cr_1', 1000) FROM generate_series(1, 4);
SELECT phase FROM zdm.status WHERE name = 'cr_1';
SELECT zdm.verify('cr_1');
SET client_min_messages = warning;
SELECT zdm.contract('cr_1');
RESET client_min_messages;
SELECT name, phase, tables FROM zdm.status WHERE name = 'cr_1';
SELECT zt.shape('cr_orders');
DROP TABLE cr_orders, cr_pairs, cr_log, cr_new;
DROP FUNCTION cr_attempt(text, text);
