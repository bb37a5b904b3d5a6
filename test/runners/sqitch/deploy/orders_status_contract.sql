-- Deploy zdm_orders:orders_status_contract (release 2, once the backfill is
-- done and the old clients are gone).  Refused, and so not recorded,
-- until zdm.status shows the migration backfilled.  Only the contract in
-- this transaction: its ACCESS EXCLUSIVE is held until COMMIT.
BEGIN;

SELECT zdm.contract('001_orders_status_enum');

COMMIT;
