-- test/bench/plain.sql: the baseline.  No trigger: the application writes
-- both columns itself, converting the status to the enum per row.
-- psql variables: rows.  Prints "RESULT plain <insert ms> <update ms>
-- <insert CPU ms> <update CPU ms>".
\set ON_ERROR_STOP 1
\set variant plain
SET client_min_messages = warning;
SELECT bench.reset();
CREATE TABLE orders (
    id            bigint PRIMARY KEY,
    customer      text,
    legacy_status text,
    status_enum   order_status
);
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
