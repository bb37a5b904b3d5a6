-- Deploy zdm_orders:orders_status_expand (release 1).
-- Expand, or, when another session holds the migration's lock, wait for
-- it and fail unless it committed: a deployment that records this change
-- as done has a migration behind it.  The background worker backfills
-- once this transaction commits.  Nothing else in this transaction: it
-- holds expand's ACCESS EXCLUSIVE on orders until COMMIT.
BEGIN;

SELECT CASE WHEN zdm.expand('001_orders_status_enum', '{
  "operations": [{"alter_column": {
      "table": "orders", "column": "legacy_status", "name": "status_enum",
      "type": "order_status", "nullable": false,
      "up":   "legacy_status::order_status",
      "down": "status_enum::text"}}]}')
       THEN 'expanded'
       ELSE zdm.wait_expanded('001_orders_status_enum', '60s') END AS deployed;

SELECT zdm.start_backfill('001_orders_status_enum');

COMMIT;
