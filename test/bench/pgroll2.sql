-- test/bench/pgroll2.sql: the table under both PL/pgSQL triggers that
-- pgroll installs for an alter_column (see pgroll_triggers.sql): up, which
-- sets status_enum, and down, which for an old-version client only
-- compares search_path.  The application writes legacy_status only.
-- psql variables: rows.  Prints "RESULT pgroll2 <insert ms> <update ms>
-- <insert CPU ms> <update CPU ms>".
\set ON_ERROR_STOP 1
\set variant pgroll2
SET client_min_messages = warning;
SELECT bench.reset();
CREATE TABLE orders (
    id            bigint PRIMARY KEY,
    customer      text,
    legacy_status text,
    status_enum   order_status
);
\ir pgroll_triggers.sql
CREATE TRIGGER _pgroll_trigger_orders_legacy_status
    BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bench.pgroll_up();
CREATE TRIGGER _pgroll_trigger_orders_status_enum
    BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bench.pgroll_down();
CHECKPOINT;

\ir start.sql
INSERT INTO orders (id, customer, legacy_status)
SELECT g, 'customer ' || g,
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5]
  FROM generate_series(1, :rows) g;
\ir stop.sql
\set insert_ms :bench_ms
\set insert_cpu_ms :bench_cpu_ms
SELECT bench.check(:'variant', 'INSERT', :rows, 0);
VACUUM ANALYZE orders;
CHECKPOINT;

\ir start.sql
UPDATE orders
   SET legacy_status = (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + (id + 1) % 5];
\ir stop.sql
\set update_ms :bench_ms
\set update_cpu_ms :bench_cpu_ms
SELECT bench.check(:'variant', 'UPDATE', :rows, 1);

\echo RESULT :variant :insert_ms :update_ms :insert_cpu_ms :update_cpu_ms
