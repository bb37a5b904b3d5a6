-- Revert zdm_orders:orders_status_expand: the old column holds every write.
SELECT zdm.rollback('001_orders_status_enum');
