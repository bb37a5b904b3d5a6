-- Verify zdm_orders:orders_status_expand: committed, in any phase but rolled_back.
SELECT zdm.wait_expanded('001_orders_status_enum', '0');
