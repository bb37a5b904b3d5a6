-- Release 1: expand 001_orders_status_enum.  dbmate runs this file in one
-- transaction with its row in schema_migrations: expand, or wait for the
-- session that holds the migration's lock and fail unless it committed,
-- so that the row is written only when the migration exists.

-- migrate:up
SELECT CASE WHEN zdm.expand('001_orders_status_enum', '{
  "operations": [{"alter_column": {
      "table": "orders", "column": "legacy_status", "name": "status_enum",
      "type": "order_status", "nullable": false,
      "up":   "legacy_status::order_status",
      "down": "status_enum::text"}}]}')
       THEN 'expanded'
       ELSE zdm.wait_expanded('001_orders_status_enum', '60s') END;

-- migrate:down
SELECT zdm.rollback('001_orders_status_enum');
