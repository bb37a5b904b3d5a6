/*
 * Release 1: expand 001_orders_status_enum and start its backfill.
 *
 * Run with --no-single-transaction: by default node-pg-migrate runs every
 * pending migration in one transaction, so expand's ACCESS EXCLUSIVE would
 * be held until the last of them commits, and an expand and its contract
 * in one run are refused.  With it, this file is one transaction of its
 * own, committed with its row in pgmigrations.
 */
const name = '001_orders_status_enum';
const migration = {
  operations: [{
    alter_column: {
      table: 'orders', column: 'legacy_status', name: 'status_enum',
      type: 'order_status', nullable: false,
      up: 'legacy_status::order_status',
      down: 'status_enum::text',
    },
  }],
};

exports.up = (pgm) => {
  // Expand, or wait for the session that holds the migration's lock and
  // fail unless it committed: this file is recorded as run only when the
  // migration exists.
  pgm.sql(`SELECT CASE WHEN zdm.expand('${name}', $zdm$${JSON.stringify(migration)}$zdm$)
                       THEN 'expanded' ELSE zdm.wait_expanded('${name}', '60s') END`);
  // The background worker starts once this transaction commits.
  pgm.sql(`SELECT zdm.start_backfill('${name}')`);
};

exports.down = (pgm) => {
  pgm.sql(`SELECT zdm.rollback('${name}')`);
};
