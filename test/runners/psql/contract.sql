-- Release 2 (the backfill done, the old clients gone), with psql:
--
--   psql -1 -v ON_ERROR_STOP=1 -f contract.sql
--
-- Refused (and the deployment fails) until the migration is backfilled and
-- verified, or while old clients still carry traffic when the migration
-- declares its versions.  Alone in its transaction: contract's brief
-- ACCESS EXCLUSIVE is held until the file commits.
SELECT zdm.contract('001_orders_status_enum');
