-- test/bench/plpgsql.sql: the least a PL/pgSQL dual-write trigger can do:
-- no per-column variables, the search_path compared in a plain expression
-- (no SELECT), NEW assigned.  A yardstick for pgroll.sql, which has
-- pgroll's shape.  Not in the default variant list:
--   ZDM_BENCH_VARIANTS="plain plpgsql pgroll zdm" make bench
-- psql variables: rows.  Prints "RESULT plpgsql <insert ms> <update ms>
-- <insert CPU ms> <update CPU ms>".
\set ON_ERROR_STOP 1
\set variant plpgsql
SET client_min_messages = warning;
SELECT bench.reset();
CREATE TABLE orders (
    id            bigint PRIMARY KEY,
    customer      text,
    legacy_status text,
    status_enum   order_status
);
CREATE OR REPLACE FUNCTION bench.plpgsql_up() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('search_path') <> 'public_bench_status_enum' THEN
        NEW.status_enum := NEW.legacy_status::order_status;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER plpgsql_up
    BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_up();
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
