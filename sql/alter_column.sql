--
-- alter_column with a new name: the whole lifecycle, and expand -> rollback.
--
CREATE TABLE ac_orders (
    id bigint PRIMARY KEY,
    legacy_status text NOT NULL DEFAULT 'pending',
    note varchar(20)
);
INSERT INTO ac_orders SELECT g, (ARRAY['pending', 'paid', 'shipped'])[1 + g % 3], 'n' || g
  FROM generate_series(1, 25) g;

\set mig '{"operations": [{"alter_column": {"table": "ac_orders", "column": "legacy_status", "name": "status_enum", "type": "order_status", "nullable": false, "default": "''pending''", "comment": "the order''s status", "up": "SELECT CASE WHEN legacy_status = ''void'' THEN ''cancelled'' ELSE legacy_status END::order_status", "down": "status_enum::text"}}]}'
SELECT zdm.expand('ac_1', :'mig');
SELECT zt.shape('ac_orders');
SELECT col_description('ac_orders'::regclass, 4);

-- v3 writes only legacy_status; the trigger fills status_enum (its up maps
-- 'void' to 'cancelled').  v4 leaves legacy_status out: it gets down's value,
-- not the old column's default.
INSERT INTO ac_orders (id, legacy_status) VALUES (101, 'void');
INSERT INTO ac_orders (id, status_enum) VALUES (102, 'delivered');
SELECT id, legacy_status, status_enum FROM ac_orders WHERE id > 100 ORDER BY id;

-- Historical rows are converted by the backfill.
SELECT zdm.verify('ac_1');
SELECT zdm.backfill('ac_1', 10);
SELECT zdm.backfill('ac_1', 10);
SELECT zdm.backfill('ac_1', 10);
SELECT zdm.backfill('ac_1', 10);
SELECT zdm.verify('ac_1');
SELECT count(*) FILTER (WHERE status_enum::text = legacy_status
                           OR (legacy_status = 'void' AND status_enum = 'cancelled')) AS consistent,
       count(*) AS total
  FROM ac_orders;

-- Contract: the old column goes, NOT NULL and the default arrive.
SELECT zdm.contract('ac_1');
SELECT zt.shape('ac_orders');
INSERT INTO ac_orders (id) VALUES (103);
SELECT id, status_enum FROM ac_orders WHERE id = 103;
SELECT event, phase, statement FROM zdm.migration_log
 WHERE migration = 'ac_1' AND event IN ('ddl', 'phase') ORDER BY id;

-- A plain rename (no type, no up/down) carries the value as it is.
SELECT zdm.expand('ac_2', '{"operations": [{"alter_column": {"table": "ac_orders", "column": "note", "name": "remark"}}]}');
SELECT zt.shape('ac_orders');
UPDATE ac_orders SET note = 'from v3' WHERE id = 1;
UPDATE ac_orders SET remark = 'from v4' WHERE id = 2;
SELECT id, note, remark FROM ac_orders WHERE id IN (1, 2) ORDER BY id;

-- Rollback: the definition is exactly what it was, and writes made through
-- the new column are kept in the old one.
SELECT zdm.rollback('ac_2');
SELECT zt.shape('ac_orders');
SELECT id, note FROM ac_orders WHERE id IN (1, 2) ORDER BY id;
SELECT name, phase FROM zdm.status WHERE name LIKE 'ac_%' ORDER BY name;
DROP TABLE ac_orders;
