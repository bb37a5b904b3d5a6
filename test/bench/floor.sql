-- test/bench/floor.sql: what any BEFORE UPDATE row trigger costs, whatever
-- it does.  The statements are plain.sql's (the application writes both
-- columns); the table has PostgreSQL's built-in C trigger
-- suppress_redundant_updates_trigger(), which compares the old and new row
-- and, as they differ here, returns the new one unchanged.  INSERT fires no
-- trigger (that built-in is UPDATE-only), so only the UPDATE figure means
-- anything.  Not in the default variant list:
--   ZDM_BENCH_VARIANTS="plain floor zdm" make bench
-- psql variables: rows.  Prints "RESULT floor <insert ms> <update ms>
-- <insert CPU ms> <update CPU ms>".
\set ON_ERROR_STOP 1
\set variant floor
SET client_min_messages = warning;
SELECT bench.reset();
CREATE TABLE orders (
    id            bigint PRIMARY KEY,
    customer      text,
    legacy_status text,
    status_enum   order_status
);
CREATE TRIGGER floor_before_update
    BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
CHECKPOINT;

\ir start.sql
INSERT INTO orders (id, customer, legacy_status, status_enum)
SELECT g, 'customer ' || g,
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5],
       ((ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5])::order_status
  FROM generate_series(1, :rows) g;
\ir stop.sql
\set insert_ms :bench_ms
\set insert_cpu_ms :bench_cpu_ms
SELECT bench.check(:'variant', 'INSERT', :rows, 0);
VACUUM ANALYZE orders;
CHECKPOINT;

\ir start.sql
UPDATE orders
   SET legacy_status = (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + (id + 1) % 5],
       status_enum = ((ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + (id + 1) % 5])::order_status;
\ir stop.sql
\set update_ms :bench_ms
\set update_cpu_ms :bench_cpu_ms
SELECT bench.check(:'variant', 'UPDATE', :rows, 1);

\echo RESULT :variant :insert_ms :update_ms :insert_cpu_ms :update_cpu_ms
