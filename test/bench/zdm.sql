-- test/bench/zdm.sql: the table under zdm's dual-write trigger.  The table
-- starts with legacy_status only; zdm.expand adds status_enum and the C
-- trigger.  The application writes legacy_status only (an API v3 client);
-- the trigger fills status_enum on INSERT and recomputes it on UPDATE.
-- psql variables: rows.  Prints "RESULT zdm <insert ms> <update ms>
-- <insert CPU ms> <update CPU ms>".
\set ON_ERROR_STOP 1
\set variant zdm
SET client_min_messages = warning;
SELECT bench.reset();
CREATE TABLE orders (
    id            bigint PRIMARY KEY,
    customer      text,
    legacy_status text
);
SELECT zdm.expand('bench', '{"operations": [{"alter_column": {"table": "orders",
    "column": "legacy_status", "name": "status_enum", "type": "order_status",
    "up": "legacy_status::order_status", "down": "status_enum::text"}}]}') AS expanded \gset
\if :expanded
\else
\echo 'bench zdm: zdm.expand() did not apply the migration'
SELECT 1/0 AS expand_failed;
\endif
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
