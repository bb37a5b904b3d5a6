-- Release 2 (the backfill done, the old clients gone): contract
-- 001_orders_status_enum.  Refused, and so not recorded, until the
-- migration is backfilled; alone in its transaction, as its ACCESS
-- EXCLUSIVE is held until that commits.

-- migrate:up
SELECT zdm.contract('001_orders_status_enum');

-- migrate:down
DO $$
BEGIN
    RAISE EXCEPTION 'migration "001_orders_status_enum" is contracted and cannot be reverted'
        USING HINT = 'Write a new migration that brings the old column back.';
END
$$;
