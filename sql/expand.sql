--
-- expand: coordination, idempotency and atomicity of zdm.expand().
--
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer text NOT NULL,
    legacy_status text NOT NULL
);
INSERT INTO orders SELECT g, 'c' || g, (ARRAY['pending', 'paid', 'shipped'])[1 + g % 3]
  FROM generate_series(1, 10) g;

-- The seed's migration: v4 reads status_enum, v3 keeps legacy_status.
\set m001 '{"operations": [{"alter_column": {"table": "orders", "column": "legacy_status", "name": "status_enum", "type": "order_status", "nullable": false, "up": "legacy_status::order_status", "down": "status_enum::text"}}]}'

-- A rolled-back expand leaves nothing behind: DDL and state row alike.
BEGIN;
SELECT zdm.expand('001_status_enum', :'m001');
SELECT zt.shape('orders');
ROLLBACK;
SELECT zt.shape('orders');
SELECT count(*) FROM zdm.migrations;

-- While a transaction expands, the migration's advisory lock is held
-- (zdm's key space, a hash of the name, sub-key 5), and so is zdm's claim
-- on the table (its OID, sub-key 4); a second call in the same
-- transaction is a no-op.
BEGIN;
SELECT zdm.expand('001_status_enum', :'m001');
SELECT locktype, classid, objsubid, objid = 'orders'::regclass::oid AS objid_is_table, mode, granted
  FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid()
 ORDER BY objsubid;
SELECT zdm.expand('001_status_enum', :'m001');
COMMIT;

SELECT zt.shape('orders');
SELECT name, phase, definition = :'m001'::jsonb AS same_definition FROM zdm.migrations;

-- Every instance calls expand at start-up: the same definition is skipped.
SELECT zdm.expand('001_status_enum', :'m001');

-- The same name with another definition is an error, and changes nothing.
SELECT zt.try($$SELECT zdm.expand('001_status_enum', '{"operations": [{"add_column": {"table": "orders", "column": {"name": "x", "type": "int", "nullable": true}}}]}')$$);
SELECT zt.shape('orders');

-- The plan: what later steps run.
SELECT t->>'table' AS "table", t->'key' AS key, t->>'set' AS backfill_set, t->>'todo' AS todo
  FROM zdm.migrations, jsonb_array_elements(plan->'tables') t WHERE name = '001_status_enum';
SELECT s->>'lock' AS lock, s->>'sql' AS contract_step
  FROM zdm.migrations, jsonb_array_elements(plan->'contract') s WHERE name = '001_status_enum';
SELECT s->>'lock' AS lock, s->>'sql' AS rollback_step
  FROM zdm.migrations, jsonb_array_elements(plan->'rollback') s WHERE name = '001_status_enum';

-- The journal: the phase change and every DDL statement.
SELECT event, phase, left(statement, 60) AS statement, attempts FROM zdm.migration_log ORDER BY id;

-- Both versions work at once.
INSERT INTO orders (id, customer, legacy_status) VALUES (101, 'v3 client', 'paid');
INSERT INTO orders (id, customer, status_enum) VALUES (102, 'v4 client', 'shipped');
SELECT id, legacy_status, status_enum FROM orders WHERE id > 100 ORDER BY id;

SELECT zdm.rollback('001_status_enum');
SELECT zt.shape('orders');
DROP TABLE orders;
