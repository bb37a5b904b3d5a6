/*
 * Release 2 (once the backfill is done and the old clients are gone):
 * contract 001_orders_status_enum.  Refused, and so not recorded, until
 * the migration is backfilled; alone in its transaction, as its ACCESS
 * EXCLUSIVE is held until that commits.
 */
const name = '001_orders_status_enum';

exports.up = (pgm) => {
  pgm.sql(`SELECT zdm.contract('${name}')`);
};

exports.down = () => {
  throw new Error(`migration "${name}" is contracted and cannot be reverted`);
};
