--
-- backfill: historical rows converted in committed batches, by key, with a
-- checkpoint that moves only when a batch commits.
--
-- The status and checkpoint of a migration, without timestamps.
CREATE FUNCTION pg_temp.bf_state(m text)
RETURNS TABLE (phase text, rows_done bigint, batches bigint, backfill_table integer, backfill_key text[])
LANGUAGE sql AS $$
    SELECT s.phase, s.rows_done, s.batches, m2.backfill_table, m2.backfill_key
      FROM zdm.status s JOIN zdm.migrations m2 USING (name)
     WHERE s.name = m
$$;

--
-- 2500 rows, batches of 1000: 1000, 1000, 500, 0.
--
CREATE TABLE bf_orders (id integer PRIMARY KEY, legacy_status text NOT NULL, note text);
INSERT INTO bf_orders
SELECT g, (ARRAY['NEW', 'Paid', 'SHIPPED'])[g % 3 + 1], 'n' || g FROM generate_series(1, 2500) g;

SELECT zdm.expand('bf_orders_status', $${"operations": [{"alter_column": {
    "table": "bf_orders", "column": "legacy_status", "name": "status",
    "up": "lower(legacy_status)", "down": "upper(status)"}}]}$$);
SELECT * FROM pg_temp.bf_state('bf_orders_status');

-- Rows written after expand are converted by the trigger.  Row 1500 gets a
-- value from a new client that up would not produce from the old column
-- ('MiXed' <-> 'MIXED'): the backfill must skip it, not recompute it.
UPDATE bf_orders SET status = 'MiXed' WHERE id = 1500;
UPDATE bf_orders SET legacy_status = 'PAID' WHERE id = 2400;
SELECT id, legacy_status, status FROM bf_orders WHERE id IN (1, 1500, 2400) ORDER BY id;

-- Every other row is still to be converted.
SELECT zdm.verify('bf_orders_status');
SELECT count(*) FILTER (WHERE status IS NULL) AS unconverted FROM bf_orders;

-- A batch whose transaction rolls back leaves no trace: resuming is exact.
BEGIN;
SELECT zdm.backfill('bf_orders_status', 1000);
ROLLBACK;
SELECT * FROM pg_temp.bf_state('bf_orders_status');
SELECT count(*) FILTER (WHERE status IS NULL) AS unconverted FROM bf_orders;

SELECT zdm.backfill('bf_orders_status', 1000);
SELECT * FROM pg_temp.bf_state('bf_orders_status');
SELECT count(*) FILTER (WHERE status IS NULL) AS unconverted,
       max(id) FILTER (WHERE status IS NOT NULL AND id NOT IN (1500, 2400)) AS last_converted
  FROM bf_orders;

-- The walk's end is the largest key when it began (2500, the checkpoint's
-- first half).  Rows inserted since go through the trigger, so the walk
-- never visits them: on a busy table it would otherwise chase the inserts.
INSERT INTO bf_orders (id, legacy_status)
SELECT g, 'NEW' FROM generate_series(2501, 4000) g;

SELECT zdm.backfill('bf_orders_status', 1000);
SELECT * FROM pg_temp.bf_state('bf_orders_status');

SELECT zdm.backfill('bf_orders_status', 1000);
SELECT * FROM pg_temp.bf_state('bf_orders_status');

SELECT zdm.backfill('bf_orders_status', 1000);
SELECT * FROM pg_temp.bf_state('bf_orders_status');
SELECT percent FROM zdm.status WHERE name = 'bf_orders_status';

-- Done: once more is 0 and changes nothing.
SELECT zdm.backfill('bf_orders_status', 1000);
SELECT * FROM pg_temp.bf_state('bf_orders_status');
-- The inserted rows were not walked (rows_done 2500), and are converted.
SELECT count(*), count(*) FILTER (WHERE status = 'new') AS converted
  FROM bf_orders WHERE id > 2500;
DELETE FROM bf_orders WHERE id > 2500;

-- Every row converted; the trigger's rows kept their values, and the old
-- column is untouched ('Paid' would have become 'PAID' had the backfill's
-- own UPDATE fired the trigger's down).
SELECT count(*) FILTER (WHERE status IS NULL) AS unconverted,
       count(*) FILTER (WHERE status <> lower(legacy_status)) AS differing
  FROM bf_orders;
SELECT id, legacy_status, status FROM bf_orders WHERE id IN (1, 1000, 1001, 1500, 2400, 2500) ORDER BY id;
SELECT legacy_status, status, count(*) FROM bf_orders GROUP BY 1, 2 ORDER BY 1 COLLATE "C", 2 COLLATE "C";
SELECT zdm.verify('bf_orders_status');

-- The journal has the phase changes.
SELECT event, phase FROM zdm.migration_log
 WHERE migration = 'bf_orders_status' AND event = 'phase' ORDER BY id;

SELECT zdm.contract('bf_orders_status');
SELECT zt.shape('bf_orders');

-- After contract there is nothing to backfill: 0 and a NOTICE, not an
-- error, so that a scheduled job still calling it does not fail on every
-- run; the phase and the journal stay as they were.
SELECT count(*) AS events FROM zdm.migration_log WHERE migration = 'bf_orders_status' \gset
SELECT zdm.backfill('bf_orders_status', 1000);
SELECT phase, (SELECT count(*) FROM zdm.migration_log WHERE migration = 'bf_orders_status') - :events AS new_events
  FROM zdm.migrations WHERE name = 'bf_orders_status';
-- Unknown names and bad batches are still errors.
SELECT zt.try($$SELECT zdm.backfill('bf_no_such_migration', 1000)$$);
SELECT zt.try($$SELECT zdm.backfill('bf_orders_status', 0)$$);

--
-- One migration over two tables: a composite primary key (text, integer),
-- then a table without a primary key but with a unique index on NOT NULL
-- columns.  backfill_table moves from 0 to 1 to 2 (past the end).
--
CREATE TABLE bf_lines (region text, n integer, legacy_qty text NOT NULL, PRIMARY KEY (region, n));
INSERT INTO bf_lines SELECT r, n, (n * 10)::text
  FROM unnest(ARRAY['eu', 'us', 'ap']) r, generate_series(1, 7) n;
CREATE TABLE bf_codes (code text NOT NULL, seq integer NOT NULL, legacy_label text, extra integer UNIQUE);
CREATE UNIQUE INDEX bf_codes_code_seq ON bf_codes (code, seq);
INSERT INTO bf_codes SELECT 'c' || (g % 3), g, 'L' || g, NULL FROM generate_series(1, 6) g;

SELECT zdm.expand('bf_multi', $${"operations": [
    {"alter_column": {"table": "bf_lines", "column": "legacy_qty", "name": "qty", "type": "integer",
                      "up": "legacy_qty::integer", "down": "qty::text"}},
    {"alter_column": {"table": "bf_codes", "column": "legacy_label", "name": "label",
                      "up": "lower(legacy_label)", "down": "upper(label)"}}]}$$);
-- The keys the backfill walks: the primary key, and the unique NOT NULL index
-- (not the UNIQUE on the nullable column "extra").
SELECT t->>'table' AS tab, t->'key' AS key, t->'key_types' AS key_types
  FROM zdm.migrations, jsonb_array_elements(plan->'tables') t
 WHERE name = 'bf_multi';
SELECT zdm.verify('bf_multi');

SELECT zdm.backfill('bf_multi', 10);
SELECT * FROM pg_temp.bf_state('bf_multi');
SELECT zdm.backfill('bf_multi', 10);
SELECT * FROM pg_temp.bf_state('bf_multi');
-- The last row of bf_lines.
SELECT zdm.backfill('bf_multi', 10);
SELECT * FROM pg_temp.bf_state('bf_multi');
-- Nothing left in bf_lines: the same call goes on with bf_codes.
SELECT zdm.backfill('bf_multi', 10);
SELECT * FROM pg_temp.bf_state('bf_multi');
SELECT zdm.backfill('bf_multi', 10);
SELECT * FROM pg_temp.bf_state('bf_multi');

SELECT region, n, legacy_qty, qty FROM bf_lines WHERE n IN (1, 7) ORDER BY region, n;
SELECT count(*) FILTER (WHERE qty IS NULL) AS unconverted, sum(qty) AS total FROM bf_lines;
SELECT code, seq, legacy_label, label FROM bf_codes ORDER BY code, seq;
SELECT zdm.verify('bf_multi');

-- After rollback there is nothing to backfill either: 0 and a NOTICE.
SELECT zdm.rollback('bf_multi');
SELECT zdm.backfill('bf_multi', 10);
SELECT zt.shape('bf_lines');
SELECT zt.shape('bf_codes');

--
-- A table with neither a primary key nor a usable unique key: a unique index
-- on a nullable column, a partial one and one on an expression don't count.
--
CREATE TABLE bf_heap (a integer UNIQUE, b integer NOT NULL, c text NOT NULL, legacy text NOT NULL);
CREATE UNIQUE INDEX bf_heap_b_partial ON bf_heap (b) WHERE b > 0;
CREATE UNIQUE INDEX bf_heap_c_expr ON bf_heap (lower(c));
INSERT INTO bf_heap SELECT g, g, 'c' || g, 'l' || g FROM generate_series(1, 1200) g;
ANALYZE bf_heap;
-- Without a usable key the backfill walks ranges of blocks (ctid).
SELECT zdm.expand('bf_heap_m', '{"operations": [{"alter_column":
    {"table": "bf_heap", "column": "legacy", "name": "modern"}}]}');
SELECT plan->'tables'->0->'key' AS key FROM zdm.migrations WHERE name = 'bf_heap_m';
SELECT zdm.verify('bf_heap_m');
-- Until it returns 0 (each call converts some blocks; never 0 before the end).
SELECT count(*) AS calls, bool_and(n > 0) AS all_positive
  FROM (SELECT zdm.backfill('bf_heap_m', 300) AS n FROM generate_series(1, 100)) b WHERE n > 0;
SELECT phase FROM zdm.migrations WHERE name = 'bf_heap_m';
SELECT zdm.verify('bf_heap_m'), count(*) FILTER (WHERE modern IS DISTINCT FROM legacy) AS unconverted
  FROM bf_heap;
SELECT zdm.rollback('bf_heap_m');
SELECT zt.shape('bf_heap');

--
-- Bad arguments.
--
SELECT zt.try($$SELECT zdm.backfill('bf_none', 100)$$);
SELECT zt.try($$SELECT zdm.backfill('bf_orders_status', 0)$$);
SELECT zt.try($$SELECT zdm.backfill('bf_orders_status', -5)$$);
SELECT zt.try($$SELECT zdm.backfill(0)$$);
SELECT zt.try($$SELECT zdm.backfill(-1)$$);
SELECT zt.try($$SELECT zdm.backfill('bf_none', 0)$$);

--
-- An up yielding NULL for a NOT NULL new column: the batch fails on the
-- column's check, the checkpoint does not move; after the data is fixed,
-- the backfill goes on from where it stopped.
--
CREATE TABLE bf_grades (id integer PRIMARY KEY, legacy_grade text NOT NULL);
INSERT INTO bf_grades SELECT g, CASE WHEN g = 15 THEN '?' ELSE chr(64 + g % 5 + 1) END
  FROM generate_series(1, 25) g;
SELECT zdm.expand('bf_grades_m', $${"operations": [{"alter_column": {
    "table": "bf_grades", "column": "legacy_grade", "name": "grade",
    "up": "nullif(lower(legacy_grade), '?')", "down": "upper(grade)"}}]}$$);
SELECT zdm.backfill('bf_grades_m', 10);
SELECT * FROM pg_temp.bf_state('bf_grades_m');
-- (Only the SQLSTATE and the table are checked: the message may gain the
-- migration's name and a hint.)
SELECT left(r, 5) AS sqlstate, r LIKE '%"bf_grades"%' AS names_table
  FROM zt.try($$SELECT zdm.backfill('bf_grades_m', 10)$$) r;
SELECT rows_done, batches, backfill_table, backfill_key FROM pg_temp.bf_state('bf_grades_m');
SELECT count(*) FILTER (WHERE grade IS NULL) AS unconverted FROM bf_grades;
-- An old client fixes the row; the trigger converts it.
UPDATE bf_grades SET legacy_grade = 'E' WHERE id = 15;
SELECT zdm.backfill('bf_grades_m', 10);
SELECT * FROM pg_temp.bf_state('bf_grades_m');
SELECT zdm.backfill('bf_grades_m', 10);
SELECT zdm.backfill('bf_grades_m', 10);
SELECT * FROM pg_temp.bf_state('bf_grades_m');
SELECT zdm.verify('bf_grades_m');
SELECT string_agg(grade, '' ORDER BY id) AS grades FROM bf_grades;

--
-- add_column with "up" and no default: only rows whose new column is NULL
-- are filled; values written by clients stay.
--
CREATE TABLE bf_items (id integer PRIMARY KEY, name text);
INSERT INTO bf_items SELECT g, CASE WHEN g <> 4 THEN 'item ' || g END FROM generate_series(1, 8) g;
SELECT zdm.expand('bf_items_slug', $${"operations": [{"add_column": {
    "table": "bf_items",
    "column": {"name": "slug", "type": "text", "nullable": true},
    "up": "replace(name, ' ', '-')"}}]}$$);
UPDATE bf_items SET slug = 'chosen' WHERE id = 2;
INSERT INTO bf_items (id, name, slug) VALUES (9, 'item 9', 'given');
SELECT zdm.verify('bf_items_slug');
SELECT zdm.backfill('bf_items_slug', 100);
SELECT zdm.backfill('bf_items_slug', 100);
SELECT zdm.verify('bf_items_slug');
-- Row 4 has no name: up yields NULL, which the nullable column keeps.
SELECT * FROM bf_items ORDER BY id;
SELECT zdm.contract('bf_items_slug');
SELECT zt.shape('bf_items');

--
-- The backfill's UPDATE runs without the migration's own trigger (not
-- even called: firing a BEFORE row trigger costs a row lock), while the
-- table's other triggers still fire.
--
CREATE TABLE bf_fired (id integer PRIMARY KEY, code text NOT NULL);
INSERT INTO bf_fired SELECT g, 'C' || g FROM generate_series(1, 6) g;
CREATE TABLE bf_fired_log (id integer, code_lower text);
CREATE FUNCTION bf_fired_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bf_fired_log VALUES (NEW.id, NEW.code_lower);
    RETURN NEW;
END $$;
CREATE TRIGGER bf_fired_audit BEFORE UPDATE ON bf_fired FOR EACH ROW EXECUTE FUNCTION bf_fired_audit();
SELECT zdm.expand('bf_fired_m', $${"operations": [{"alter_column": {
    "table": "bf_fired", "column": "code", "name": "code_lower",
    "up": "lower(code)", "down": "upper(code_lower)"}}]}$$);
BEGIN;
SET LOCAL track_functions = 'all';
SELECT zdm.backfill('bf_fired_m', 100);
SELECT count(*) AS dual_write_calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'zdm' AND funcname = 'dual_write';
-- A client's update in the same transaction fires it as usual.
UPDATE bf_fired SET code = 'X1' WHERE id = 1;
SELECT calls AS dual_write_calls FROM pg_stat_xact_user_functions
 WHERE schemaname = 'zdm' AND funcname = 'dual_write';
COMMIT;
-- The audit trigger saw the backfill's six rows, converted, then the
-- client's row 1 (before zdm's trigger, which fires after it by name,
-- converted it).
SELECT * FROM bf_fired_log ORDER BY id, code_lower;
SELECT * FROM bf_fired ORDER BY id;
SELECT zdm.rollback('bf_fired_m');

--
-- zdm.backfill(batch): one batch of every migration being backfilled.
--
-- (No migration of another suite may be left active here.)
SELECT name, phase FROM zdm.migrations WHERE phase IN ('expanded', 'backfilling') ORDER BY name;
CREATE TABLE bf_a (id integer PRIMARY KEY, old_a text NOT NULL);
CREATE TABLE bf_b (id integer PRIMARY KEY, old_b text NOT NULL);
INSERT INTO bf_a SELECT g, 'A' || g FROM generate_series(1, 15) g;
INSERT INTO bf_b SELECT g, 'B' || g FROM generate_series(1, 8) g;
SELECT zdm.expand('bf_all_1', $${"operations": [{"alter_column": {
    "table": "bf_a", "column": "old_a", "name": "new_a", "up": "lower(old_a)", "down": "upper(new_a)"}}]}$$);
SELECT zdm.expand('bf_all_2', $${"operations": [{"alter_column": {
    "table": "bf_b", "column": "old_b", "name": "new_b", "up": "lower(old_b)", "down": "upper(new_b)"}}]}$$);
SELECT zdm.verify('bf_all_1') AS v1, zdm.verify('bf_all_2') AS v2;
-- 10 of bf_a + 8 of bf_b
SELECT zdm.backfill(10);
SELECT name, s.* FROM unnest(ARRAY['bf_all_1', 'bf_all_2']) name, pg_temp.bf_state(name) s;
-- A checkpoint as zdm 0.2 wrote it (the last key alone) gets its end key
-- at the next batch and goes on from the same place.
UPDATE zdm.migrations SET backfill_key = '{10}' WHERE name = 'bf_all_1';
-- 5 of bf_a; bf_all_2 finds nothing more and is backfilled
SELECT zdm.backfill(10);
SELECT name, s.* FROM unnest(ARRAY['bf_all_1', 'bf_all_2']) name, pg_temp.bf_state(name) s;
SELECT zdm.backfill(10);
SELECT name, s.* FROM unnest(ARRAY['bf_all_1', 'bf_all_2']) name, pg_temp.bf_state(name) s;
-- Nothing left anywhere.
SELECT zdm.backfill(10);
SELECT zdm.verify('bf_all_1') AS v1, zdm.verify('bf_all_2') AS v2;
SELECT count(*) FILTER (WHERE new_a = lower(old_a)) AS a_converted FROM bf_a;
SELECT count(*) FILTER (WHERE new_b = lower(old_b)) AS b_converted FROM bf_b;
SELECT zdm.rollback('bf_all_1');
SELECT zdm.contract('bf_all_2');
SELECT zt.shape('bf_a');
SELECT zt.shape('bf_b');

--
-- Several batches in one statement: each call goes on from the checkpoint
-- the previous one wrote.
--
CREATE TABLE bf_loop (id integer PRIMARY KEY, old_v text NOT NULL);
INSERT INTO bf_loop SELECT g, 'V' || g FROM generate_series(1, 25) g;
SELECT zdm.expand('bf_loop_m', $${"operations": [{"alter_column": {
    "table": "bf_loop", "column": "old_v", "name": "new_v", "up": "lower(old_v)", "down": "upper(new_v)"}}]}$$);
SELECT i, zdm.backfill('bf_loop_m', 10) AS rows FROM generate_series(1, 4) i;
SELECT * FROM pg_temp.bf_state('bf_loop_m');
SELECT count(*) FILTER (WHERE new_v IS NULL) AS unconverted FROM bf_loop;
SELECT zdm.rollback('bf_loop_m');

SELECT name, phase FROM zdm.status WHERE name LIKE 'bf\_%' ORDER BY name;
