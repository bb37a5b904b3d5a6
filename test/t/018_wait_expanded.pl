# zdm.wait_expanded() between real sessions, as a migration role: a
# deployer whose zdm.expand() returned false because another instance held
# the migration's lock learns how that expand ended.
#
#   - the other instance commits: the waiter returns the phase;
#   - it rolls back, or its backend dies: 40001, "run expand again";
#   - it is still expanding when the timeout ends: 55P03, after about the
#     timeout;
#   - while it waits, the waiter holds no lock any session queues behind:
#     client sessions queue behind the expanding session only, and a third
#     deployer's expand still returns false at once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('wait');
$node->init;
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION zdm;
	CREATE ROLE migrator LOGIN;
	GRANT zdm_migrator TO migrator;
	CREATE ROLE app LOGIN;
	CREATE TABLE orders (id bigint PRIMARY KEY, legacy_status text NOT NULL);
	INSERT INTO orders SELECT g, 'paid' FROM generate_series(1, 1000) g;
	ALTER TABLE orders OWNER TO migrator;
	GRANT SELECT, INSERT, UPDATE ON orders TO app;
});

my $def =
  q({"operations": [{"add_column": {"table": "orders", "column": {"name": "status", "type": "text", "nullable": true}, "up": "upper(legacy_status)"}}]});
my $expand = "SELECT zdm.expand('m', '$def')";
# The README's recipe: one statement, expand or learn how the other one ended.
my $deploy =
  "SELECT CASE WHEN zdm.expand('m', '$def') THEN 'expanded' ELSE zdm.wait_expanded('m', '60s') END";

# Run sql as a role; (exit code, stdout, stderr with the SQLSTATE).
sub as_role
{
	my ($role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role, '-v', 'ON_ERROR_STOP=1' ]);
	return ($rc, $out, $err);
}

# A deployer that holds its expand open, as the migration role.
sub expanding_session
{
	my $s = $node->background_psql('postgres',
		extra_params => [ '-U', 'migrator' ]);
	$s->query_safe('BEGIN');
	is($s->query_safe($expand), 't', 'the first deployer expands (transaction open)');
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	return ($s, $pid);
}

# Start the recipe in a background session, as the migration role, and
# wait until it waits for the lock holder.
sub start_waiter
{
	my ($holder_pid, $name) = @_;
	my $w = $node->background_psql('postgres', on_error_stop => 0,
		extra_params => [ '-U', 'migrator', '-v', 'VERBOSITY=verbose' ]);
	$w->query_safe("SET application_name = '$name'");
	$w->query_until(qr/sent\n/, "\\echo sent\n$deploy;\n");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT $holder_pid = ANY (pg_blocking_pids(pid)) FROM pg_stat_activity WHERE application_name = '$name'"
		),
		"$name waits for the expanding session");
	return $w;
}

# What the waiter printed since it was started (its result, or its error).
sub waiter_result
{
	my ($w) = @_;
	my $out = $w->query('SELECT 1');
	my $err = $w->{stderr};
	$w->{stderr} = '';
	$out =~ s/\n?1$//;
	return ($out, $err);
}

# 1. The first deployer commits: the waiter returns the phase.
{
	my ($s1, $pid1) = expanding_session();
	my $w = start_waiter($pid1, 'waiter1');

	# The waiter holds no table lock, and no one waits for it: a client
	# queued behind the expand's ACCESS EXCLUSIVE waits for the expanding
	# session only, and a third deployer's expand returns false at once.
	is( $node->safe_psql(
			'postgres', q{
			SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			 WHERE a.application_name = 'waiter1' AND l.locktype = 'relation'}),
		'0',
		'the waiter holds no relation lock');
	my $client = $node->background_psql('postgres', extra_params => [ '-U', 'app' ]);
	$client->query_safe("SET application_name = 'client'");
	$client->query_until(qr/sent\n/, "\\echo sent\nSELECT count(*) FROM orders;\n");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT $pid1 = ANY (pg_blocking_pids(pid)) FROM pg_stat_activity WHERE application_name = 'client'"
		),
		'a client queues behind the expanding session');
	is( $node->safe_psql(
			'postgres', q{
			SELECT count(*) FROM pg_stat_activity c, pg_stat_activity w
			 WHERE w.application_name = 'waiter1' AND w.pid = ANY (pg_blocking_pids(c.pid))}),
		'0',
		'no session waits for the waiter');
	my $t0 = time();
	my ($rc, $out, $err) = as_role('migrator', $expand);
	is($out, 'f', 'a third deployer skips');
	cmp_ok(time() - $t0, '<', 5, 'a third deployer skips at once');

	$s1->query_safe('COMMIT');
	my ($res, $werr) = waiter_result($w);
	is($res, 'expanded', 'the waiter returns the phase once the expand commits');
	like($werr, qr/NOTICE:  00000: migration "m" is being expanded by another session, skipping/,
		'its expand had skipped');
	is($client->query_safe('SELECT 1'), "1000\n1", 'the queued client went on at the commit');
	$client->quit;
	$w->quit;
	$s1->quit;

	# Later calls return the phase at once.
	($rc, $out, $err) = as_role('migrator', "SELECT zdm.wait_expanded('m', '0')");
	is($out, 'expanded', 'with nothing to wait for, the phase at once');
	as_role('migrator', "SELECT zdm.rollback('m')");
}

# 2. The first deployer rolls back: the waiter fails with 40001, and the
#    deployment run again applies the migration.
{
	my ($s1, $pid1) = expanding_session();
	my $w = start_waiter($pid1, 'waiter2');
	$s1->query_safe('ROLLBACK');
	my ($res, $werr) = waiter_result($w);
	like(
		$werr,
		qr/ERROR:  40001: migration "m" was not expanded: the session expanding it rolled back\nDETAIL:  zdm.wait_expanded\(\) waited for the session with PID $pid1, whose transaction ended without the migration\.\nHINT:  Run zdm.expand\(\) for "m" again, in a new transaction\./,
		'a rolled-back expand: 40001, run expand again');
	$w->quit;
	$s1->quit;
	my ($rc, $out, $err) = as_role('migrator', $deploy);
	is($out, 'expanded', 'the deployment run again expands');
	as_role('migrator', "SELECT zdm.rollback('m')");
}

# 3. The first deployer's backend dies mid-expand: as a rollback.
{
	my ($s1, $pid1) = expanding_session();
	my $w = start_waiter($pid1, 'waiter3');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid1)");
	my ($res, $werr) = waiter_result($w);
	like($werr, qr/ERROR:  40001: migration "m" was not expanded/,
		'an expanding backend that dies: 40001');
	$w->quit;
	eval { $s1->quit; };
	is($node->safe_psql('postgres', "SELECT count(*) FROM zdm.migrations WHERE name = 'm' AND phase <> 'rolled_back'"),
		'0', 'and no migration exists');
}

# 4. Still expanding when the timeout ends: 55P03 after about the timeout.
{
	my ($s1, $pid1) = expanding_session();
	my $t0 = time();
	my ($rc, $out, $err) = as_role('migrator', "SELECT zdm.wait_expanded('m', '700ms')");
	my $took = time() - $t0;
	isnt($rc, 0, 'the timeout is an error');
	like(
		$err,
		qr/ERROR:  55P03: migration "m" is still being expanded by another session after 700 ms\nDETAIL:  The session with PID $pid1 holds the migration's lock; its transaction has not ended\./,
		'the timeout: 55P03, naming the session');
	cmp_ok($took, '>=', 0.7, "it waited the timeout ($took s)");
	cmp_ok($took, '<', 10, 'and not much longer');

	# statement_timeout still cancels it, as any statement.
	($rc, $out, $err) = as_role('migrator',
		"SET statement_timeout = '200ms'; SELECT zdm.wait_expanded('m', '60s')");
	like($err, qr/ERROR:  57014: canceling statement due to statement timeout/,
		'statement_timeout cancels the wait');

	$s1->query_safe('COMMIT');
	$s1->quit;
	($rc, $out, $err) = as_role('migrator', "SELECT zdm.wait_expanded('m', '700ms')");
	is($out, 'expanded', 'after the commit: the phase');
}

# 5. Application roles cannot call it.
{
	my ($rc, $out, $err) = as_role('app', "SELECT zdm.wait_expanded('m')");
	like($err, qr/ERROR:  42501: permission denied for function wait_expanded/,
		'an application role may not call it');
}

$node->stop;
done_testing();
