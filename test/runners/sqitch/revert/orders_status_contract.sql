-- Revert zdm_orders:orders_status_contract: impossible, the old column is gone.
DO $$
BEGIN
    RAISE EXCEPTION 'migration "001_orders_status_enum" is contracted and cannot be reverted'
        USING HINT = 'Write a new migration that brings the old column back.';
END
$$;
