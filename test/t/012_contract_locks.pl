# Contract and rollback of a two-table migration never hold one table's
# ACCESS EXCLUSIVE while they queue for the other's.
#
# (Two migrations, on orders and payments, and on invoices and refunds.)
#
# For each of the two steps, session A holds ACCESS SHARE on the table the
# step's exclusive statements reach second, in an open transaction.  The
# step (session B, zdm.lock_timeout 100 ms, budget 8 s) retries for it.
# Meanwhile session C reads and writes the FIRST table and times each
# statement: none may wait anywhere near B's budget (under 1 s), because B
# waits for the busy table holding nothing on the other.  (Taking the
# tables one after the other, B held the first table's lock while it
# retried for the second, and C's first statement waited for all of it.)
# Then A commits and the step completes, its journal charging the wait to
# its first exclusive statement.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use ZdmPsql ();
use IPC::Run;
use Time::HiRes qw(time);
use List::Util qw(max);

my $lock_timeout_ms = 100;
my $budget_ms = 8000;
my $max_client_ms = 1000;
my $client_seconds = 2;
my $zdm_settings = "SET zdm.lock_timeout = '${lock_timeout_ms}ms'; "
  . "SET zdm.lock_budget = '${budget_ms}ms';";

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION zdm;
	CREATE TABLE orders (id bigint PRIMARY KEY, legacy_status text NOT NULL);
	INSERT INTO orders
		SELECT g, (ARRAY['pending', 'paid', 'shipped'])[1 + g % 3]
		FROM generate_series(1, 1000) g;
	CREATE TABLE payments (id bigint PRIMARY KEY, legacy_status text NOT NULL);
	INSERT INTO payments
		SELECT g, (ARRAY['open', 'settled'])[1 + g % 2]
		FROM generate_series(1, 1000) g;
	CREATE TABLE invoices (LIKE orders INCLUDING ALL);
	INSERT INTO invoices SELECT * FROM orders;
	CREATE TABLE refunds (LIKE payments INCLUDING ALL);
	INSERT INTO refunds SELECT * FROM payments;
});

# Start psql on $script in the background (ZdmPsql.pm).
sub start_psql { return ZdmPsql::start_psql($node, @_); }

my $client = $node->background_psql('postgres');
$client->query_safe('\timing on');
my $next_id = 100000;

# Run one client statement; returns (psql's time, wall time) in ms.
sub client_statement
{
	my ($sql) = @_;
	my $t0 = time;
	my $out = $client->query_safe($sql);
	my $wall = (time - $t0) * 1000;
	my ($ms) = $out =~ /^Time: ([\d.]+) ms/m;
	die "no timing in client output: $out" unless defined $ms;
	return ($ms, $wall);
}

# The tables a plan section's exclusive steps reach, in order.
sub exclusive_tables
{
	my ($migration, $section) = @_;
	my @rels = split /\n/,
	  $node->safe_psql(
		'postgres', qq{
		SELECT s->>'relation' FROM zdm.migrations,
		       jsonb_array_elements(plan->'$section') WITH ORDINALITY e(s, n)
		 WHERE name = '$migration' AND s->>'lock' = 'exclusive'
		 ORDER BY n});
	my %seen;
	return map { s/^public\.//r } grep { !$seen{$_}++ } @rels;
}

# Run $step of $migration (contract or rollback, journaled as $phase)
# while A holds the second table and C works on the first; then A commits.
sub run_step
{
	my ($migration, $step, $phase) = @_;
	my ($first, $second) = exclusive_tables($migration, $step);
	ok(defined $second && $first ne $second,
		"$step: the exclusive steps reach two tables ($first, then $second)");

	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	$holder->query_safe("SELECT count(*) FROM $second");

	my $offset = -s $node->logfile;
	my ($b, $b_out, $b_err) = start_psql(
		"\\set VERBOSITY verbose\n$zdm_settings\nSELECT zdm.$step('$migration');\n",
		"zdm_$step");
	$node->wait_for_log(
		qr/zdm: migration "$migration": lock on "$second" not available \(attempt 1\)/,
		$offset);

	my (@ms, @wall);
	my $c_start = time;
	while (time - $c_start < $client_seconds)
	{
		my @r = client_statement("SELECT count(*) FROM $first");
		push @ms, $r[0];
		push @wall, $r[1];
		$next_id++;
		@r = client_statement(
			"INSERT INTO $first (id, legacy_status) VALUES ($next_id, 'pending')");
		push @ms, $r[0];
		push @wall, $r[1];
	}
	my $max_ms = max(@ms);
	my $max_wall = max(@wall);
	note sprintf('%s: client did %d statements on %s, slowest %.1f ms (wall %.1f ms)',
		$step, scalar(@ms), $first, $max_ms, $max_wall);
	cmp_ok(scalar(@ms), '>=', 10, "$step: the client ran statements on $first meanwhile");
	cmp_ok($max_ms, '<', $max_client_ms,
		"$step: no client statement on $first waited long (slowest $max_ms ms)");
	cmp_ok($max_wall, '<', $max_client_ms + 1000,
		"$step: nor on the wall clock (slowest $max_wall ms)");
	is( $node->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM pg_stat_activity
		 WHERE application_name = 'zdm_$step' AND state = 'active'}),
		'1',
		"$step: it was still retrying when the client stopped");

	$holder->query_safe('COMMIT');
	$holder->quit;
	ok($b->finish, "$step: completes once $second is released") or diag $$b_err;

	my ($attempts, $wait, $statement) = split /\|/,
	  $node->safe_psql(
		'postgres', qq{
		SELECT attempts, lock_wait_ms, statement FROM zdm.migration_log l
		 WHERE migration = '$migration' AND event = 'ddl' AND phase = '$phase'
		   AND lock_wait_ms > $lock_timeout_ms
		 ORDER BY id LIMIT 1}) || '0|0|';
	cmp_ok($attempts, '>', 1, "$step: the journal records $attempts attempts");
	is( $statement,
		$node->safe_psql(
			'postgres', qq{
		SELECT s->>'sql' FROM zdm.migrations,
		       jsonb_array_elements(plan->'$step') WITH ORDINALITY e(s, n)
		 WHERE name = '$migration' AND s->>'lock' = 'exclusive'
		 ORDER BY n LIMIT 1}),
		"$step: the wait is charged to the first exclusive statement");
	is( $node->safe_psql(
			'postgres', qq{
		SELECT count(*) FROM zdm.migration_log
		 WHERE migration = '$migration' AND event = 'ddl' AND phase = '$phase'
		   AND lock_wait_ms > $lock_timeout_ms}),
		'1',
		"$step: the journal charges the wait to one statement only");
}

# Contract: a migration renaming a column of both tables.
my $renames = '{"operations":['
  . join(',',
	map {
		qq({"alter_column":{"table":"$_","column":"legacy_status","name":"status",)
		  . qq("up":"upper(legacy_status)","down":"lower(status)"}})
	} qw(orders payments))
  . ']}';
$node->safe_psql('postgres', "SELECT zdm.expand('012_status', '$renames')");
1 while $node->safe_psql('postgres', "SELECT zdm.backfill('012_status', 10000)") > 0;
run_step('012_status', 'contract', 'contracted');
is( $node->safe_psql(
		'postgres', "SELECT phase FROM zdm.migrations WHERE name = '012_status'"),
	'contracted', 'the migration is contracted');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM pg_attribute
	 WHERE attrelid IN ('orders'::regclass, 'payments'::regclass)
	   AND attname = 'legacy_status' AND NOT attisdropped}),
	'0', 'the old columns are gone from both tables');

# Rollback: a migration adding a column to two other tables.  (The table
# the rollback's exclusive steps reach second is the first one expanded.)
my $adds = '{"operations":['
  . join(',',
	map {
		qq({"add_column":{"table":"$_","up":"length(legacy_status)",)
		  . qq("column":{"name":"status_length","type":"integer","nullable":true}}})
	} qw(invoices refunds))
  . ']}';
$node->safe_psql('postgres', "SELECT zdm.expand('012_length', '$adds')");
run_step('012_length', 'rollback', 'rolled_back');
is( $node->safe_psql(
		'postgres', "SELECT phase FROM zdm.migrations WHERE name = '012_length'"),
	'rolled_back', 'the migration is rolled back');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM pg_attribute
	 WHERE attrelid IN ('invoices'::regclass, 'refunds'::regclass)
	   AND attname = 'status_length' AND NOT attisdropped}),
	'0', 'the new columns are gone from both tables');

$client->quit;
$node->stop;
done_testing();
