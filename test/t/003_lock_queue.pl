# zdm never waits in a lock queue in front of client traffic for longer
# than zdm.lock_timeout, and gives up with nothing changed once
# zdm.lock_budget is spent.
#
# Session A holds ACCESS SHARE on orders in an open transaction, so the
# ACCESS EXCLUSIVE lock that expand needs is not available.  Session B
# runs zdm.expand with lock_timeout 100 ms and a budget of 3 s: it queues
# for at most 100 ms, steps out, backs off and retries.  Meanwhile session
# C runs short reads and writes on orders and records how long each one
# took: a statement that arrives while B is queued waits behind B, but
# only until B's lock_timeout, never for B's whole budget.  (A control
# first shows that a plain ALTER TABLE queued the same way does block C
# for its whole wait, so the measurement can tell the difference.)
#
# B then fails with lock_not_available (55P03) naming the migration,
# after about its budget, with every attempt logged and nothing changed.
# Once A commits, the same expand succeeds.  Finally A holds its lock for
# about a second only: B's expand, with a budget of 5 s, succeeds as soon
# as A is gone, and the journal records more than one attempt.
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
my $budget_ms = 3000;
# How long one client statement may take while B retries.  B queues for
# 100 ms at a time; the margin is for a loaded 2-core machine.  The point
# is that it must not be anywhere near B's 3 s budget.
my $max_client_ms = 1000;
# How long C keeps sending statements while B retries.
my $client_seconds = 2;

my $migration = '003_orders_status';
my $definition = '{"operations":[{"alter_column":{"table":"orders",'
  . '"column":"legacy_status","name":"status",'
  . '"up":"upper(legacy_status)","down":"lower(status)"}}]}';
my $expand = "SELECT zdm.expand('$migration', '$definition')";
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
});

my $columns_sql = q{
	SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	 WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped};
my $triggers_sql = q{
	SELECT count(*) FROM pg_trigger
	 WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal};
my $columns_before = $node->safe_psql('postgres', $columns_sql);

# Start psql on $script in the background (ZdmPsql.pm).
sub start_psql { return ZdmPsql::start_psql($node, @_); }

# A client session that times each statement: psql's \timing (round trip
# of the statement as the client sees it) and the wall clock around it.
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

# Session A: an open transaction that has read orders.
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN');
$holder->query_safe('SELECT * FROM orders LIMIT 1');

# Control: a plain ALTER TABLE that waits for its lock blocks the client
# statements queued behind it for as long as it waits.
{
	my ($h, $out, $err) = start_psql(
		"SET lock_timeout = '1500ms';\n"
		  . "ALTER TABLE orders ADD COLUMN control integer;\n",
		'zdm_control');
	$node->poll_query_until(
		'postgres', q{
		SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		 WHERE a.application_name = 'zdm_control' AND NOT l.granted
		   AND l.relation = 'orders'::regclass)})
	  or die 'the control ALTER TABLE never queued for its lock';
	my ($ms, $wall) = client_statement('SELECT count(*) FROM orders');
	$h->finish;
	like($$err, qr/canceling statement due to lock timeout/,
		'control: the plain ALTER TABLE times out behind session A');
	cmp_ok($ms, '>', 500,
		"control: a client read queued behind a plain ALTER TABLE waits ($ms ms)");
}

# Session B: expand, retrying behind A.
my $offset = -s $node->logfile;
my $b_start = time;
my ($b, $b_out, $b_err) =
  start_psql("\\set VERBOSITY verbose\n$zdm_settings\n$expand;\n",
	'zdm_expand');

# Wait for B's first failed attempt: from now on it queues and backs off.
$node->wait_for_log(
	qr/zdm: migration "$migration": lock on "orders" not available \(attempt 1\)/,
	$offset);

# Session C: short reads and writes for a while.
my (@ms, @wall);
my $c_start = time;
while (time - $c_start < $client_seconds)
{
	my @r = client_statement('SELECT count(*) FROM orders');
	push @ms, $r[0];
	push @wall, $r[1];
	$next_id++;
	@r = client_statement(
		"INSERT INTO orders (id, legacy_status) VALUES ($next_id, 'pending')");
	push @ms, $r[0];
	push @wall, $r[1];
}
my $c_end = time;
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE application_name = 'zdm_expand' AND state = 'active'}),
	'1',
	'session B was still retrying when the client stopped');
my $b_succeeded = $b->finish;
my $b_elapsed = (time - $b_start) * 1000;

my $max_ms = max(@ms);
my $max_wall = max(@wall);
note sprintf('client: %d statements in %.1f s, slowest %.1f ms (wall %.1f ms)',
	scalar(@ms), $c_end - $c_start, $max_ms, $max_wall);
cmp_ok(scalar(@ms), '>=', 10, 'the client ran statements while B retried');
cmp_ok($max_ms, '<', $max_client_ms,
	"no client statement waited behind zdm for long (slowest $max_ms ms)");
cmp_ok($max_wall, '<', $max_client_ms + 1000,
	"no client statement took long on the wall clock (slowest $max_wall ms)");

# B gave up after its budget, with a proper error.
ok(!$b_succeeded, 'expand fails while session A holds its lock');
like(
	$$b_err,
	qr/ERROR:  55P03: migration "$migration": could not lock table "orders" in ACCESS EXCLUSIVE mode within $budget_ms ms/,
	'the error is lock_not_available and names the migration and table');
like($$b_err, qr/HINT:  .*zdm\.lock_budget/, 'the error has a hint');
my ($attempts) = $$b_err =~ /DETAIL:  (\d+) attempts/;
ok(defined $attempts && $attempts > 1, 'the error reports several attempts')
  or diag $$b_err;
$attempts //= 0;
cmp_ok($b_elapsed, '>=', $budget_ms - 100,
	"expand kept retrying for its budget ($b_elapsed ms)");
cmp_ok($b_elapsed, '<', $budget_ms + 3000,
	"expand gave up soon after its budget ($b_elapsed ms)");

# Every failed attempt but the last logged a retry, in order.
my $log = slurp_file($node->logfile, $offset);
my @logged = $log =~
  /LOG:  zdm: migration "$migration": lock on "orders" not available \(attempt (\d+)\), retrying in \d+ ms/g;
is_deeply(\@logged, [ 1 .. $attempts - 1 ],
	'the server log has one "retrying" line per failed attempt');

# Nothing changed.
is($node->safe_psql('postgres', $columns_sql), $columns_before,
	'no new column after the failed expand');
is($node->safe_psql('postgres', $triggers_sql), '0',
	'no trigger after the failed expand');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM zdm.migrations WHERE name = '$migration'"),
	'0',
	'no migrations row after the failed expand');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM zdm.migration_log WHERE migration = '$migration'"),
	'0',
	'no journal entry after the failed expand');
is($holder->query_safe('SELECT count(*) FROM orders WHERE id < 100000'),
	'1000', 'session A is unharmed');

# A commits; the same expand now succeeds.
$holder->query_safe('COMMIT');
is($node->safe_psql('postgres', "$zdm_settings $expand"),
	't', 'expand succeeds once session A has committed');
like($node->safe_psql('postgres', $columns_sql), qr/,status$/,
	'the new column exists');
is( $node->safe_psql(
		'postgres', "SELECT phase FROM zdm.migrations WHERE name = '$migration'"),
	'expanded',
	'the migration is expanded');
is( $node->safe_psql(
		'postgres', q{
	INSERT INTO orders (id, legacy_status) VALUES (1, 'x')
		ON CONFLICT (id) DO UPDATE SET legacy_status = 'refunded';
	SELECT status FROM orders WHERE id = 1}),
	'REFUNDED',
	'the dual-write trigger works');
# The ACCESS EXCLUSIVE lock was held only for the DDL itself.
my $ddl_ms = $node->safe_psql('postgres',
	"SELECT sum(duration_ms) FROM zdm.migration_log WHERE migration = '$migration' AND event = 'ddl'");
cmp_ok($ddl_ms, '<', 1000, "expand's DDL ran briefly ($ddl_ms ms)");

# Second case: A holds its lock for about a second, then commits.
my $migration2 = '003_payments_status';
my $definition2 = '{"operations":[{"alter_column":{"table":"payments",'
  . '"column":"legacy_status","name":"status",'
  . '"up":"upper(legacy_status)","down":"lower(status)"}}]}';
my ($a2) = start_psql(
	"BEGIN;\nSELECT * FROM payments LIMIT 1;\nSELECT pg_sleep(1);\nCOMMIT;\n",
	'zdm_holder');
$node->poll_query_until(
	'postgres', q{
	SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE a.application_name = 'zdm_holder' AND l.granted
	   AND l.relation = 'payments'::regclass AND a.wait_event = 'PgSleep')})
  or die 'session A never took its lock';
my $t0 = time;
is( $node->safe_psql(
		'postgres',
		"SET zdm.lock_timeout = '${lock_timeout_ms}ms'; SET zdm.lock_budget = '5s'; "
		  . "SELECT zdm.expand('$migration2', '$definition2')"),
	't',
	'expand succeeds once the short transaction of session A ends');
my $elapsed2 = (time - $t0) * 1000;
ok($a2->finish, "session A's transaction committed");
cmp_ok($elapsed2, '<', 5000, "expand did not spend its budget ($elapsed2 ms)");
my ($attempts2, $wait2) = split /\|/,
  $node->safe_psql(
	'postgres', qq{
	SELECT attempts, lock_wait_ms FROM zdm.migration_log
	 WHERE migration = '$migration2' AND event = 'ddl' ORDER BY id LIMIT 1});
cmp_ok($attempts2, '>', 1, "the journal records $attempts2 attempts");
cmp_ok($wait2, '>', $lock_timeout_ms,
	"the journal records the lock wait ($wait2 ms)");

$client->quit;
$holder->quit;
$node->stop;
done_testing();
