-- Release 1 of the orders migration, with psql:
--
--   psql -1 -v ON_ERROR_STOP=1 -f expand.sql
--
-- -1 makes the file one transaction.  Expand, or, when another session
-- holds the migration's lock, wait for that session and fail (40001)
-- unless it committed: a deployment that succeeds has a migration behind
-- it.  Keep the file to this: until it commits, it holds expand's ACCESS
-- EXCLUSIVE on orders, and whatever ran after the expand would make
-- every client of orders wait that much longer.
SELECT CASE WHEN zdm.expand('001_orders_status_enum', '{
  "operations": [{"alter_column": {
      "table": "orders", "column": "legacy_status", "name": "status_enum",
      "type": "order_status", "nullable": false,
      "up":   "legacy_status::order_status",
      "down": "status_enum::text"}}]}')
       THEN 'expanded'
       ELSE zdm.wait_expanded('001_orders_status_enum', '60s') END AS deployed;
