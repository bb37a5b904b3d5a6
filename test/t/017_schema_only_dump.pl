# A schema-only dump of a database with migrations in flight.
#
# pg_dump --schema-only (and the schema.sql of tools such as dbmate)
# restores zdm's dual-write triggers and version schemas, but not zdm's
# state: zdm.migrations is extension configuration, dumped with the data.
# A migration role expands two migrations (one with API versions on a
# plain table, one on a partitioned table), backfills a batch, and the
# database is dumped with pg_dump -s, restored once with psql (plain
# format) and once with pg_restore (custom format) into new databases.
# There, as the roles users have:
#
#   - the application's writes (INSERT, UPDATE, through the trigger or
#     planned with the conversion) fail with an error naming the migration
#     and a hint (restore zdm's state, or drop the trigger: on a partition,
#     the partitioned table's), never dual-write; reads and deletes work;
#   - zdm.status shows nothing, zdm.dual_write_triggers shows the triggers
#     as not dual-writing, and so do the metrics that pg_monitor reads;
#   - zdm.rollback and zdm.expand say what happened;
#   - once zdm's state is restored (pg_dump --data-only --schema=zdm of
#     the original), writes dual-write again and rollback works;
#   - a schema-only restore followed by a data-only one that loads zdm's
#     state first loads every row, and dual-writes;
#   - following the other hint (drop the trigger and what the migration
#     added), the application writes again.
#
# With and without shared_preload_libraries (with it, zdm plans UPDATEs
# from a session's first statement on).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $orders_def = '{"versions": {"old": "v3", "new": "v4"}, "operations": [{"alter_column": '
  . '{"table": "orders", "column": "legacy_status", "name": "status_code", '
  . '"up": "upper(legacy_status)", "down": "lower(status_code)"}}]}';
my $events_def = '{"operations": [{"add_column": {"table": "events", '
  . '"column": {"name": "kind_upper", "type": "text", "nullable": true}, "up": "upper(kind)"}}]}';

# Run sql in db as role; returns (exit code, stdout, stderr).
sub as_role
{
	my ($node, $db, $role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql($db, $sql,
		stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role, '-v', 'ON_ERROR_STOP=1' ]);
	return ($rc, $out, $err);
}

sub succeeds
{
	my ($node, $db, $role, $sql, $name) = @_;
	my ($rc, $out, $err) = as_role($node, $db, $role, $sql);
	is($rc, 0, "$name: succeeds") or diag($err);
	return $out;
}

sub fails_with
{
	my ($node, $db, $role, $sql, $pattern, $name) = @_;
	my ($rc, $out, $err) = as_role($node, $db, $role, $sql);
	isnt($rc, 0, "$name: refused");
	like($err, $pattern, "$name: the error");
}

# The error and hint of a write through a trigger zdm does not know.
sub refused_write
{
	my ($migration, $table, $root) = @_;
	return qr/dual-write trigger "zdm_[^"]*" on table "\Q$table\E" belongs to migration "\Q$migration\E", which zdm does not know.*DETAIL:\s+zdm\.migrations has no live row.*schema-only dump.*HINT:\s+Restore zdm's state.*pg_dump --data-only --schema=zdm.*DROP TRIGGER zdm_\S+ ON public\.\Q$root\E;/s;
}

# The checks on a database restored from the schema-only dump.
sub check_restored
{
	my ($node, $db, $tag) = @_;

	is($node->safe_psql($db, 'SELECT count(*) FROM zdm.migrations'), '0', "$tag: no state restored");
	is($node->safe_psql($db, 'SELECT count(*) FROM zdm.status'), '0', "$tag: zdm.status shows no migration");
	is( $node->safe_psql($db,
			'SELECT string_agg(format(\'%s %s %s %s\', relation, migration, coalesce(phase, \'-\'), dual_writing), \', \''
			  . ' ORDER BY relation::text) FROM zdm.dual_write_triggers'),
		'events 002_events - f, orders 001_orders - f',
		"$tag: zdm.dual_write_triggers shows the triggers, not dual-writing");
	like(succeeds($node, $db, 'monitor', 'SELECT zdm.metrics()', "$tag: pg_monitor reads the metrics"),
		qr/^zdm_dual_write_active\{migration="001_orders",table="public.orders"\} 0$/m,
		"$tag: the metrics show the trigger is not dual-writing");

	# The application's writes, each kind.
	fails_with($node, $db, 'app', "INSERT INTO orders (id, legacy_status) VALUES (1001, 'paid')",
		refused_write('001_orders', 'orders', 'orders'), "$tag: an old client's INSERT");
	fails_with($node, $db, 'app', "INSERT INTO orders (id, legacy_status, status_code) VALUES (1002, 'paid', 'PAID')",
		refused_write('001_orders', 'orders', 'orders'), "$tag: a new client's INSERT");
	fails_with($node, $db, 'app', "UPDATE orders SET legacy_status = 'shipped' WHERE id = 1",
		refused_write('001_orders', 'orders', 'orders'), "$tag: an UPDATE zdm plans the conversion into");
	fails_with($node, $db, 'app', "UPDATE orders SET status_code = 'SHIPPED' WHERE id = 2",
		refused_write('001_orders', 'orders', 'orders'), "$tag: an UPDATE the trigger handles");
	fails_with($node, $db, 'app', "SELECT zdm.use_version('v4'); UPDATE orders SET legacy_status = 'shipped' WHERE id = 3",
		qr/API version "v4" is not known/, "$tag: zdm.use_version of a version zdm does not know");
	fails_with($node, $db, 'app', "INSERT INTO events (id, kind) VALUES (1001, 'click')",
		refused_write('002_events', 'events_1', 'events'), "$tag: an INSERT into a partition (the hint names the partitioned table)");
	is(succeeds($node, $db, 'app', "SELECT count(*), min(legacy_status) FROM orders", "$tag: the application reads"),
		"1000|paid", "$tag: what it reads");
	succeeds($node, $db, 'app', "SELECT count(*) FROM v4.orders; DELETE FROM orders WHERE id = 1000",
		"$tag: reading through a version's view, and deleting");
	is($node->safe_psql($db, "SELECT count(*) FROM orders WHERE status_code IS NOT NULL AND id > 1000"),
		'0', "$tag: nothing was dual-written");

	# zdm's functions, as the migration role.
	fails_with($node, $db, 'migrator', "SELECT zdm.rollback('001_orders')",
		qr/zdm has no state for migration "001_orders", but its dual-write triggers exist.*HINT:.*DROP TRIGGER zdm_\S+ ON public\.orders;/s,
		"$tag: zdm.rollback");
	fails_with($node, $db, 'migrator', "SELECT zdm.backfill('002_events', 10)",
		qr/zdm has no state for migration "002_events", but its dual-write triggers exist.*DROP TRIGGER zdm_\S+ ON public\.events;/s,
		"$tag: zdm.backfill");
	fails_with($node, $db, 'migrator', "SELECT zdm.expand('001_orders', '$orders_def')",
		qr/zdm has no state for migration "001_orders", but its dual-write triggers exist.*DROP TRIGGER zdm_\S+ ON public\.orders;/s,
		"$tag: zdm.expand again");
}

sub run_suite
{
	my ($preload) = @_;
	my $tag = $preload ? 'preload' : 'no preload';
	my $node = PostgreSQL::Test::Cluster->new($preload ? 'preload' : 'plain');
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'zdm'") if $preload;
	$node->start;

	$node->safe_psql(
		'postgres', q{
		CREATE EXTENSION zdm;
		CREATE ROLE migrator LOGIN;
		CREATE ROLE app LOGIN;
		CREATE ROLE monitor LOGIN;
		GRANT zdm_migrator TO migrator;
		GRANT pg_monitor TO monitor;
		GRANT CREATE ON SCHEMA public TO migrator;
		GRANT CREATE ON DATABASE postgres TO migrator;
	});
	succeeds(
		$node, 'postgres', 'migrator', qq{
		CREATE TABLE orders (id bigint PRIMARY KEY, legacy_status text NOT NULL);
		INSERT INTO orders SELECT g, 'paid' FROM generate_series(1, 1000) g;
		CREATE TABLE events (id bigint, kind text NOT NULL, PRIMARY KEY (id)) PARTITION BY RANGE (id);
		CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (MINVALUE) TO (100000);
		INSERT INTO events SELECT g, 'view' FROM generate_series(1, 100) g;
		GRANT SELECT, INSERT, UPDATE, DELETE ON orders, events TO app;
		SELECT zdm.expand('001_orders', '$orders_def');
		SELECT zdm.backfill('001_orders', 300);
		SELECT zdm.expand('002_events', '$events_def');
	}, "$tag: the migration role expands two migrations");
	succeeds($node, 'postgres', 'app', "INSERT INTO orders VALUES (2000, 'shipped')",
		"$tag: the application writes, and it is dual-written");
	is($node->safe_psql('postgres', 'SELECT status_code FROM orders WHERE id = 2000'),
		'SHIPPED', "$tag: dual-written in the original");

	# pg_dump -s, restored as psql and as pg_restore would.
	my $dir = $node->basedir;
	$node->command_ok([ 'pg_dump', '-s', '-d', $node->connstr('postgres'), '-f', "$dir/schema.sql" ],
		"$tag: pg_dump --schema-only (plain)");
	$node->command_ok([ 'pg_dump', '-s', '-Fc', '-d', $node->connstr('postgres'), '-f', "$dir/schema.dump" ],
		"$tag: pg_dump --schema-only (custom)");
	$node->safe_psql('postgres', 'CREATE DATABASE restored_psql; CREATE DATABASE restored_custom');
	$node->command_ok(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored_psql'), '-f', "$dir/schema.sql" ],
		"$tag: restored with psql");
	$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored_custom'), "$dir/schema.dump" ],
		"$tag: restored with pg_restore");
	# The tables are empty: give them rows, as a test suite's fixtures would.
	for my $db ('restored_psql', 'restored_custom')
	{
		$node->safe_psql($db, q{
			ALTER TABLE orders DISABLE TRIGGER USER;
			INSERT INTO orders SELECT g, 'paid', 'PAID' FROM generate_series(1, 1000) g;
			ALTER TABLE orders ENABLE TRIGGER USER;
		});
		check_restored($node, $db, "$tag, $db");
	}

	# zdm's state restored from the original (what a full dump brings):
	# the triggers work again, and so does rollback.
	$node->command_ok(
		[ 'pg_dump', '--data-only', '--schema=zdm', '-d', $node->connstr('postgres'), '-f', "$dir/state.sql" ],
		"$tag: pg_dump --data-only --schema=zdm");
	$node->command_ok(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored_psql'), '-f', "$dir/state.sql" ],
		"$tag: zdm's state restored");
	succeeds($node, 'restored_psql', 'app',
		"INSERT INTO orders (id, legacy_status) VALUES (1001, 'paid'); UPDATE orders SET legacy_status = 'shipped' WHERE id = 1;"
		  . " INSERT INTO events (id, kind) VALUES (1001, 'click')",
		"$tag: with the state back, the application writes");
	is( $node->safe_psql('restored_psql',
			"SELECT string_agg(status_code, ',' ORDER BY id) FROM orders WHERE id IN (1, 1001);"
			  . " SELECT kind_upper FROM events WHERE id = 1001"),
		"SHIPPED,PAID\nCLICK", "$tag: and its writes are dual-written");
	is( $node->safe_psql('restored_psql', 'SELECT bool_and(dual_writing) FROM zdm.dual_write_triggers'),
		't', "$tag: zdm.dual_write_triggers shows them dual-writing");
	succeeds($node, 'restored_psql', 'migrator', "SELECT zdm.rollback('001_orders'), zdm.rollback('002_events')",
		"$tag: zdm.rollback");
	is( $node->safe_psql('restored_psql',
			"SELECT count(*) FROM zdm.dual_write_triggers;"
			  . " SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status_code' AND NOT attisdropped"),
		"0\n0", "$tag: rolled back: no trigger, no new column");

	# A schema-only restore, then a data-only one with zdm's state first:
	# the rows load through working triggers, which convert those the
	# backfill had not reached.
	$node->command_ok([ 'pg_dump', '-a', '-Fc', '-d', $node->connstr('postgres'), '-f', "$dir/data.dump" ],
		"$tag: pg_dump --data-only");
	$node->safe_psql('postgres', 'CREATE DATABASE restored_split');
	$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored_split'), "$dir/schema.dump" ],
		"$tag: split restore: the schema");
	$node->command_ok([ 'pg_restore', '-a', '-n', 'zdm', '-d', $node->connstr('restored_split'), "$dir/data.dump" ],
		"$tag: split restore: zdm's state");
	$node->command_ok([ 'pg_restore', '-a', '-N', 'zdm', '-d', $node->connstr('restored_split'), "$dir/data.dump" ],
		"$tag: split restore: the rest of the data");
	is( $node->safe_psql('restored_split',
			"SELECT count(*), count(status_code) FROM orders; SELECT phase FROM zdm.status WHERE name = '001_orders'"),
		"1001|1001\nbackfilling", "$tag: split restore: every row, converted, and the state");
	succeeds($node, 'restored_split', 'app', "UPDATE orders SET legacy_status = 'lost' WHERE id = 7",
		"$tag: split restore: the application writes");
	is($node->safe_psql('restored_split', 'SELECT status_code FROM orders WHERE id = 7'),
		'LOST', "$tag: split restore: dual-written");

	# Following the other hint: the migration given up by hand.
	succeeds($node, 'restored_custom', 'migrator', q{
		DO $$
		DECLARE t record;
		BEGIN
			FOR t IN SELECT relation, trigger FROM zdm.dual_write_triggers LOOP
				EXECUTE format('DROP TRIGGER %I ON %s', t.trigger, t.relation);
			END LOOP;
		END $$;
		DROP SCHEMA v3, v4 CASCADE;
		ALTER TABLE orders DROP COLUMN status_code;
		ALTER TABLE events DROP COLUMN kind_upper;
	}, "$tag: the migrations given up by hand");
	succeeds($node, 'restored_custom', 'app',
		"INSERT INTO orders VALUES (1001, 'paid'); INSERT INTO events VALUES (1001, 'click')",
		"$tag: then the application writes");

	$node->stop;
}

run_suite(0);
run_suite(1);
done_testing();
