-- Release 1: backfill 001_orders_status_enum in the deployment itself, a
-- committed batch at a time.  transaction:false is needed: inside dbmate's
-- transaction the COMMITs are refused (and one transaction would hold every
-- batch's row locks to the end).  zdm.start_backfill() in the expand file
-- instead returns at once and leaves the work to the background worker.

-- migrate:up transaction:false
DO $$
BEGIN
    WHILE zdm.backfill('001_orders_status_enum', 5000) > 0 LOOP
        COMMIT;
    END LOOP;
END
$$;

-- migrate:down
