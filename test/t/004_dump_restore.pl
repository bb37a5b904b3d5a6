# The state of a migration survives pg_dump and pg_restore.
#
# A migration is expanded (a renamed column with a new type) and its
# backfill is stopped after one committed batch of 100 of 1000 rows.  The
# database is dumped with pg_dump -Fc and restored with pg_restore into a
# new database.  There zdm.migrations (zdm's extension configuration
# tables are dumped with the data) must hold the same row: phase, plan,
# checkpoint; the journal must be complete and its sequence must go on
# after the restored ids; the dual-write trigger must exist and work; the
# backfill must continue from the checkpoint and finish; verify must find
# nothing; and contract must complete the migration.
#
# The table has a dropped column before the migration's columns, so the
# restored table's attribute numbers differ from the original's: nothing
# of zdm may depend on them.
#
# The same dump is then restored into a second, freshly initialised server
# (the usual way of moving to a new server), whose transaction ids are
# unrelated to the first one's: the migration's expand_xid must not make a
# transaction there look like the one that expanded it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $migration = '004_orders_status_enum';
my $definition = '{"operations":[{"alter_column":{"table":"orders",'
  . '"column":"legacy_status","name":"status_enum","type":"order_status",'
  . '"up":"legacy_status::order_status",'
  . '"down":"status_enum::text"}}]}';
my $rows = 1000;
my $batch = 100;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->start;

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION zdm;
	CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
	CREATE TABLE orders (
		id bigint PRIMARY KEY,
		gone integer,
		customer text NOT NULL,
		legacy_status text NOT NULL);
	ALTER TABLE orders DROP COLUMN gone;
	INSERT INTO orders (id, customer, legacy_status)
		SELECT g, 'customer ' || g, (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5]
		FROM generate_series(1, $rows) g;
});

# Use up some transaction ids, so that this server's expand_xid lies ahead
# of a freshly initialised server's counter (see the end of the test).
$node->safe_psql('postgres',
	'DO $$ BEGIN FOR i IN 1..1500 LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$');

is($node->safe_psql('postgres', "SELECT zdm.expand('$migration', '$definition')"),
	't', 'expanded');
is($node->safe_psql('postgres', "SELECT zdm.backfill('$migration', $batch)"),
	$batch, 'one batch backfilled and committed');

# What must survive, as text.
my $migration_sql = "SELECT m FROM zdm.migrations m WHERE name = '$migration'";
my $fields_sql = qq{
	SELECT phase, backfill_key, backfill_table, rows_backfilled, batches
	  FROM zdm.migrations WHERE name = '$migration'};
my $log_sql = 'SELECT string_agg(l::text, E\'\n\' ORDER BY id) FROM zdm.migration_log l';
my $converted_sql =
  'SELECT count(*) FILTER (WHERE status_enum IS NOT NULL) FROM orders';

my $migration_row = $node->safe_psql('postgres', $migration_sql);
my $fields = $node->safe_psql('postgres', $fields_sql);
my $plan = $node->safe_psql('postgres',
	"SELECT plan FROM zdm.migrations WHERE name = '$migration'");
my $log = $node->safe_psql('postgres', $log_sql);
my $log_max_id = $node->safe_psql('postgres', 'SELECT max(id) FROM zdm.migration_log');
is($fields, "backfilling|{$rows,$batch}|0|$batch|1", 'the state before the dump');
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM zdm.migration_log WHERE migration = '$migration'"),
	'>=', 3, 'the journal has the expand and the batch');
is($node->safe_psql('postgres', $converted_sql), $batch,
	'one batch of rows is converted before the dump');
my $expand_xid = $node->safe_psql('postgres',
	"SELECT expand_xid FROM zdm.migrations WHERE name = '$migration'");

my $dump = "$PostgreSQL::Test::Utils::tmp_check/004.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'postgres', '-f', $dump ],
	'pg_dump -Fc');

# Restore into a new database of $n; pg_restore must print nothing.
sub restore
{
	my ($n, $dbname) = @_;
	$n->safe_psql('postgres', "CREATE DATABASE $dbname");
	$n->command_checks_all([ 'pg_restore', '-d', $dbname, $dump ],
		0, [qr/^$/], [qr/^$/],
		"pg_restore into $dbname on node " . $n->name . ' reports nothing');
}

# Check the restored state of database $dbname on $n, then finish the
# migration there.
sub check_restored
{
	my ($n, $dbname) = @_;
	my $where = "($dbname on " . $n->name . ')';

	is($n->safe_psql($dbname, $migration_sql), $migration_row,
		"the migrations row is restored whole $where");
	is($n->safe_psql($dbname, $fields_sql), $fields,
		"phase and checkpoint are restored $where");
	is( $n->safe_psql(
			$dbname, "SELECT plan FROM zdm.migrations WHERE name = '$migration'"),
		$plan,
		"the plan is restored $where");
	is($n->safe_psql($dbname, $log_sql), $log, "the journal is restored $where");
	is($n->safe_psql($dbname, $converted_sql), $batch,
		"the converted rows are restored $where");

	# The dual-write trigger, enabled ALWAYS (it fires for logical replication).
	is( $n->safe_psql(
			$dbname, q{
		SELECT count(*) FROM pg_trigger
		 WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal AND tgenabled = 'A'}),
		'1',
		"the dual-write trigger is restored $where");
	is( $n->safe_psql(
			$dbname, q{
		INSERT INTO orders (id, customer, legacy_status) VALUES (10001, 'v3 client', 'paid');
		SELECT status_enum FROM orders WHERE id = 10001}),
		'paid',
		"a v3 insert fills the new column $where");
	is( $n->safe_psql(
			$dbname, q{
		INSERT INTO orders (id, customer, status_enum) VALUES (10002, 'v4 client', 'shipped');
		SELECT legacy_status FROM orders WHERE id = 10002}),
		'shipped',
		"a v4 insert fills the old column $where");
	is( $n->safe_psql(
			$dbname, q{
		UPDATE orders SET legacy_status = 'delivered' WHERE id = 1000;
		SELECT status_enum FROM orders WHERE id = 1000}),
		'delivered',
		"a v3 update of a row not yet backfilled fills the new column $where");

	# The journal's sequence goes on after the restored ids.
	cmp_ok( $n->safe_psql($dbname, "SELECT last_value FROM zdm.migration_log_id_seq"),
		'>=', $log_max_id, "the journal's sequence is restored $where");

	# The backfill resumes at the checkpoint.
	is($n->safe_psql($dbname, "SELECT zdm.backfill('$migration', $batch)"),
		$batch, "the first batch after the restore is a full batch $where");
	is( $n->safe_psql(
			$dbname,
			"SELECT backfill_key, rows_backfilled, batches FROM zdm.migrations WHERE name = '$migration'"),
		# The checkpoint: the walk's end (the largest id), the last id converted.
		"{$rows," . (2 * $batch) . '}|' . (2 * $batch) . '|2',
		"the backfill went on from the checkpoint $where");
	my $calls = 1;
	while ($calls < 100)
	{
		$calls++;
		last
		  if $n->safe_psql($dbname, "SELECT zdm.backfill('$migration', $batch)") == 0;
	}
	cmp_ok($calls, '<=', $rows / $batch + 2,
		"the backfill finishes in $calls calls $where");
	is($n->safe_psql($dbname, 'SELECT count(*) FROM orders WHERE status_enum IS NULL'),
		'0', "every row is converted $where");
	is( $n->safe_psql(
			$dbname, "SELECT phase FROM zdm.migrations WHERE name = '$migration'"),
		'backfilled',
		"the migration is backfilled $where");
	is($n->safe_psql($dbname, "SELECT zdm.verify('$migration')"),
		'0', "verify finds nothing $where");
	my $ids = $n->safe_psql(
		$dbname,
		"SELECT count(*) = count(DISTINCT id) AND min(id) FILTER (WHERE id > $log_max_id) IS NOT NULL"
		  . " FROM zdm.migration_log");
	is($ids, 't', "new journal entries get new ids $where");
}

# Contract $dbname on $n and check the result.
sub check_contract
{
	my ($n, $dbname) = @_;
	my $where = "($dbname on " . $n->name . ')';

	is($n->safe_psql($dbname, "SELECT zdm.contract('$migration')"),
		't', "contract succeeds $where");
	is( $n->safe_psql(
			$dbname, q{
		SELECT string_agg(attname || ':' || attnotnull, ',' ORDER BY attnum) FROM pg_attribute
		 WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped}),
		'id:true,customer:true,status_enum:true',
		"the old column is gone, the new one is NOT NULL like the old $where");
	is( $n->safe_psql(
			$dbname, q{
		SELECT count(*) FROM pg_trigger
		 WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal}),
		'0',
		"the dual-write trigger is gone $where");
	is( $n->safe_psql(
			$dbname, "SELECT phase FROM zdm.migrations WHERE name = '$migration'"),
		'contracted',
		"the migration is contracted $where");
}

# 1. A new database on the same server.
restore($node, 'restored');
check_restored($node, 'restored');
check_contract($node, 'restored');
is($node->safe_psql('postgres', $fields_sql), $fields,
	'the original database is untouched');

# 2. A new server.  Its transaction counter is behind the first one's, so
# a transaction there can get the very xid that expanded the migration on
# the first server; that transaction did not expand anything.
my $node2 = PostgreSQL::Test::Cluster->new('second');
$node2->init;
# Nothing but this test may consume transaction ids (autovacuum's ANALYZE
# would).
$node2->append_conf('postgresql.conf', 'autovacuum = off');
$node2->start;
restore($node2, 'restored');
check_restored($node2, 'restored');

my $next_xid = $node2->safe_psql('restored', 'SELECT pg_current_xact_id()') + 1;
cmp_ok($next_xid, '<', $expand_xid,
	"the new server's transaction ids are behind the expand_xid ($next_xid < $expand_xid)");
# Run empty transactions until the next one gets $expand_xid.
$node2->safe_psql(
	'restored', qq{
	DO \$\$ BEGIN
		WHILE pg_current_xact_id()::text::bigint < $expand_xid - 1 LOOP COMMIT; END LOOP;
	END \$\$});
my ($ret, $stdout, $stderr) = $node2->psql(
	'restored', qq{
	BEGIN;
	SELECT pg_current_xact_id() = '$expand_xid'::xid8;
	SELECT zdm.contract('$migration');
	COMMIT;},
	extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
like($stdout, qr/^t$/m, 'the contract transaction has the expand_xid of the first server')
  or diag "stdout: $stdout";
is($ret, 0, 'contract succeeds in a transaction whose xid equals the restored expand_xid')
  or diag "stderr: $stderr";
is( $node2->safe_psql(
		'restored', "SELECT phase FROM zdm.migrations WHERE name = '$migration'"),
	'contracted',
	'the migration is contracted on the new server');

$node2->stop;
$node->stop;
done_testing();
