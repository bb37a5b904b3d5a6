# The constraint operations through their whole lifecycle, as the roles
# users have: a migration role (GRANT zdm_migrator, owns its tables, not a
# superuser) runs create_constraint (check, foreign_key, unique,
# primary_key), then drop_constraint, drop_multicolumn_constraint and
# rename_constraint; an application role (table privileges only) writes
# throughout.  The deferred steps (VALIDATE, CREATE UNIQUE INDEX
# CONCURRENTLY, and after a rollback DROP INDEX CONCURRENTLY) run in the
# background worker, started by expand and rollback themselves: without
# shared_preload_libraries (a dynamic worker) and with it (the launcher
# too).  At the end every constraint is valid, under its name, on an index
# of its name, and nothing INVALID is left.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rows = 20000;

# Run sql as role in db; returns (exit code, stdout, stderr).
sub as_role
{
	my ($node, $role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', $sql,
		stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role, '-v', 'ON_ERROR_STOP=1' ]);
	return ($rc, $out, $err);
}

sub succeeds
{
	my ($node, $role, $sql, $name) = @_;
	my ($rc, $out, $err) = as_role($node, $role, $sql);
	is($rc, 0, $name) or diag($err);
	return $out;
}

sub fails_with
{
	my ($node, $role, $sql, $pattern, $name) = @_;
	my ($rc, $out, $err) = as_role($node, $role, $sql);
	isnt($rc, 0, "$name: refused");
	like($err, $pattern, "$name: the error");
}

# Wait until the worker owes the migration nothing (or it failed): its phase.
sub steps_done
{
	my ($node, $name) = @_;
	$node->poll_query_until('postgres',
		"SELECT deferred_section IS NULL OR phase = 'failed' FROM zdm.migrations WHERE name = '$name'")
	  or die "the background steps of $name do not end";
	return $node->safe_psql('postgres', "SELECT phase FROM zdm.migrations WHERE name = '$name'");
}

sub lifecycle
{
	my ($node, $label) = @_;

	$node->safe_psql(
		'postgres', q{
		CREATE EXTENSION zdm;
		CREATE ROLE migrator LOGIN;
		GRANT zdm_migrator TO migrator;
		GRANT CREATE ON SCHEMA public TO migrator;
		CREATE ROLE app LOGIN;
	});
	succeeds(
		$node, 'migrator', qq{
		CREATE TABLE customers (id integer PRIMARY KEY, email text, region text);
		INSERT INTO customers SELECT g, 'c' || g || '\@x', 'eu' FROM generate_series(1, $rows) g;
		CREATE TABLE orders (id bigint PRIMARY KEY, customer_id integer, qty integer,
		                     CONSTRAINT orders_qty_known CHECK (qty IS NOT NULL));
		INSERT INTO orders SELECT g, 1 + g % $rows, 1 + g % 9 FROM generate_series(1, $rows) g;
		CREATE TABLE legacy (code text, note text);
		INSERT INTO legacy SELECT 'k' || g, 'n' FROM generate_series(1, $rows) g;
		GRANT SELECT, INSERT, UPDATE, DELETE ON customers, orders, legacy TO app;
		ANALYZE;
	}, "$label: the migration role creates its tables");

	# 1. create_constraint, all four types, in one migration.
	succeeds(
		$node, 'migrator', q{
		SELECT zdm.expand('c_add', '{"operations": [
		  {"create_constraint": {"type": "check", "table": "orders", "name": "orders_qty_positive",
		                         "check": "qty > 0", "up": {"qty": "qty"}, "down": {"qty": "qty"}}},
		  {"create_constraint": {"type": "foreign_key", "table": "orders", "name": "orders_customer_fk",
		                         "columns": ["customer_id"], "references": {"table": "customers", "columns": ["id"],
		                         "on_delete": "CASCADE"}}},
		  {"create_constraint": {"type": "unique", "table": "customers", "name": "customers_email_key",
		                         "columns": ["email"]}},
		  {"create_constraint": {"type": "primary_key", "table": "legacy", "name": "legacy_pkey",
		                         "columns": ["code"]}}]}');
	}, "$label: create_constraint expands");

	# The application writes meanwhile: what breaks a constraint already in
	# force is refused, everything else goes on.
	succeeds($node, 'app', q{INSERT INTO orders VALUES (100001, 5, 2)}, "$label: a valid write");
	fails_with($node, 'app', q{INSERT INTO orders VALUES (100002, 5, 0)},
		qr/violates check constraint "orders_qty_positive"/, "$label: a write breaking the check");
	fails_with($node, 'app', q{INSERT INTO orders VALUES (100003, 999999, 1)},
		qr/violates foreign key constraint "orders_customer_fk"/, "$label: a write breaking the foreign key");
	fails_with($node, 'app', q{INSERT INTO legacy VALUES (NULL, 'x')},
		qr/violates check constraint "zdm_pknn_legacy_code_/, "$label: a NULL key");

	succeeds($node, 'migrator', q{SELECT zdm.backfill('c_add')}, "$label: backfill (nothing to convert)");
	is(steps_done($node, 'c_add'), 'backfilled', "$label: the worker ran the deferred steps");
	like(
		$node->safe_psql(
			'postgres', q{
		SELECT string_agg(statement, E'\n' ORDER BY id) FROM zdm.migration_log
		 WHERE migration = 'c_add' AND event = 'ddl' AND phase = 'backfilling'}),
		qr/\AALTER TABLE public.orders VALIDATE CONSTRAINT orders_qty_positive
ALTER TABLE public.orders VALIDATE CONSTRAINT orders_customer_fk
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS zdm_uq_customers_customers_email_key_\w+ ON public.customers \(email\)
ALTER TABLE public.legacy VALIDATE CONSTRAINT zdm_pknn_legacy_code_\w+
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS zdm_uq_legacy_legacy_pkey_\w+ ON public.legacy \(code\)\z/,
		"$label: the worker's steps, in order");
	fails_with($node, 'app', q{INSERT INTO customers VALUES (999999, 'c1@x', 'eu')},
		qr/duplicate key value violates unique constraint "zdm_uq_customers_customers_email_key_/,
		"$label: a duplicate, once the index is built");

	succeeds($node, 'migrator', q{SELECT zdm.contract('c_add')}, "$label: contract");
	is( $node->safe_psql(
			'postgres', q{
		SELECT string_agg(format('%s.%s %s %s', conrelid::regclass, conname, contype, convalidated), ', '
		                  ORDER BY conrelid::regclass::text, conname)
		  FROM pg_constraint WHERE conrelid IN ('orders'::regclass, 'customers'::regclass, 'legacy'::regclass)}),
		'customers.customers_email_key u t, customers.customers_pkey p t, legacy.legacy_pkey p t, '
		  . 'orders.orders_customer_fk f t, orders.orders_pkey p t, orders.orders_qty_known c t, '
		  . 'orders.orders_qty_positive c t',
		"$label: every constraint valid, under its name, no helper left");
	is( $node->safe_psql(
			'postgres', q{
		SELECT string_agg(indexrelid::regclass::text || ' ' || indisvalid, ', ' ORDER BY indexrelid::regclass::text)
		  FROM pg_index WHERE indrelid IN ('customers'::regclass, 'legacy'::regclass)}),
		'customers_email_key true, customers_pkey true, legacy_pkey true',
		"$label: the indexes carry the constraints' names");
	is($node->safe_psql('postgres', q{SELECT attnotnull FROM pg_attribute WHERE attrelid = 'legacy'::regclass AND attname = 'code'}),
		't', "$label: the primary key's column is NOT NULL");

	# 2. A unique constraint rolled back once built: the worker drops the index.
	succeeds($node, 'migrator',
		q{SELECT zdm.expand('c_undo', '{"operations": [{"create_constraint": {"type": "unique", "table": "customers", "name": "customers_region_id", "columns": ["region", "id"]}}]}')},
		"$label: another unique constraint expands");
	is(steps_done($node, 'c_undo'), 'backfilled', "$label: its index is built");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_index WHERE indrelid = 'customers'::regclass}),
		'3', "$label: three indexes on customers");
	succeeds($node, 'migrator', q{SELECT zdm.rollback('c_undo')}, "$label: rollback");
	is(steps_done($node, 'c_undo'), 'rolled_back', "$label: the worker ran the rollback's step");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_index WHERE indrelid = 'customers'::regclass}),
		'2', "$label: the index is gone");

	# 3. Rename, then drop what was added, at contract.
	succeeds(
		$node, 'migrator', q{
		SELECT zdm.expand('c_change', '{"operations": [
		  {"rename_constraint": {"table": "customers", "from": "customers_email_key", "to": "customers_email_unique"}},
		  {"drop_constraint": {"table": "orders", "name": "orders_customer_fk", "up": "customer_id", "down": "customer_id"}},
		  {"drop_multicolumn_constraint": {"table": "orders", "name": "orders_qty_positive", "down": {"qty": "qty"}}}]}');
	}, "$label: rename and drops expand");
	fails_with($node, 'app', q{INSERT INTO orders VALUES (100004, 999999, 1)},
		qr/violates foreign key constraint "orders_customer_fk"/, "$label: the foreign key holds until contract");
	succeeds($node, 'app',
		q{INSERT INTO customers VALUES (100000, 'c1@x', 'eu') ON CONFLICT ON CONSTRAINT customers_email_key DO NOTHING},
		"$label: old clients name the constraint by its old name until contract");
	succeeds($node, 'migrator', q{SELECT zdm.backfill('c_change')}, "$label: backfill");
	succeeds($node, 'migrator', q{SELECT zdm.contract('c_change')}, "$label: contract renames and drops");
	is( $node->safe_psql(
			'postgres', q{
		SELECT string_agg(conname, ', ' ORDER BY conname) FROM pg_constraint
		 WHERE conrelid IN ('orders'::regclass, 'customers'::regclass)}),
		'customers_email_unique, customers_pkey, orders_pkey, orders_qty_known',
		"$label: renamed and dropped");
	succeeds($node, 'app', q{INSERT INTO orders VALUES (100004, 999999, 0)}, "$label: the dropped ones hold no more");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_index WHERE NOT indisvalid}),
		'0', "$label: no INVALID index anywhere");

	$node->safe_psql(
		'postgres', q{
		DROP TABLE orders, customers, legacy;
		DROP EXTENSION zdm CASCADE;
		REVOKE CREATE ON SCHEMA public FROM migrator;
		DROP ROLE migrator, app;
	});
}

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', "max_worker_processes = 16\n");
$node->start;
lifecycle($node, 'without shared_preload_libraries');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'zdm launcher'}),
	'0', 'no launcher without shared_preload_libraries');

$node->append_conf('postgresql.conf', "shared_preload_libraries = 'zdm'\nzdm.launcher_naptime = 1\n");
$node->restart;
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'zdm launcher'")
  or die 'the zdm launcher does not run';
lifecycle($node, 'with shared_preload_libraries');

$node->stop;
done_testing();
