-- Verify zdm_orders:orders_status_contract.
SELECT 1 / (phase = 'contracted')::int FROM zdm.migrations WHERE name = '001_orders_status_enum';
