# The backfill resumes after crashes and converts every row exactly once.
#
# A 50,000-row table is expanded and backfilled in committed batches of
# 5,000.  Twice a batch is left uncommitted and the server crashes under
# it: first its backend is killed with SIGKILL (the postmaster resets every
# backend and recovers), then the whole server is shut down in immediate
# mode and restarted.  Each time the checkpoint must be exactly what the
# committed batches left; the loop then runs on until backfill returns 0,
# and every row is converted, zdm.verify finds nothing and rows_backfilled
# is the sum of what the committed batches reported.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $migration = '001_orders_status_enum';
my $rows = 50000;
my $batch = 5000;
my $definition = '{"operations":[{"alter_column":{"table":"orders",'
  . '"column":"legacy_status","name":"status_enum","type":"order_status",'
  . '"nullable":false,"up":"legacy_status::order_status",'
  . '"down":"status_enum::text"}}]}';
my $backfill = "SELECT zdm.backfill('$migration', $batch)";
my $progress_sql =
  "SELECT rows_backfilled, batches FROM zdm.migrations WHERE name = '$migration'";
my $converted_sql =
  'SELECT count(*) FILTER (WHERE status_enum IS NOT NULL) FROM orders';

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
# The test framework turns this off; the first crash relies on it.
$node->append_conf('postgresql.conf', 'restart_after_crash = on');
$node->start;

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION zdm;
	CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
	CREATE TABLE orders (
		id bigserial PRIMARY KEY,
		customer text NOT NULL,
		legacy_status text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now());
	INSERT INTO orders (customer, legacy_status)
		SELECT 'customer ' || g, (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5]
		FROM generate_series(1, $rows) g;
	ANALYZE orders;
});
is($node->safe_psql('postgres', "SELECT zdm.expand('$migration', '$definition')"),
	't', 'expanded');

# Sum of the rows the committed batches reported.
my $committed = 0;

# Run $n committed batches, one transaction each.
sub run_batches
{
	my ($n) = @_;
	for (1 .. $n)
	{
		my $done = $node->safe_psql('postgres', $backfill);
		$committed += $done;
		last if $done == 0;
	}
}

# Start a batch in a transaction that never commits, and return the session.
sub open_batch
{
	my $session = $node->background_psql('postgres', on_error_stop => 0);
	$session->query_safe('BEGIN');
	my $done = $session->query_safe($backfill);
	cmp_ok($done, '>', 0, 'the uncommitted batch converted rows');
	return $session;
}

# Check the checkpoint is what the committed batches left.
sub check_checkpoint
{
	my ($when) = @_;
	my ($done, $batches) = split /\|/, $node->safe_psql('postgres', $progress_sql);
	is($done, $committed, "rows_backfilled counts the committed batches $when");
	is($node->safe_psql('postgres', $converted_sql),
		$committed, "converted rows are the committed batches' $when");
}

# Crash 1: SIGKILL of the backend running an uncommitted batch.
run_batches(3);
my $session = open_batch();
my $pid = $session->query_safe('SELECT pg_backend_pid()');
my $offset = -s $node->logfile;
kill 'KILL', $pid;
eval { $session->quit; };
# The postmaster restarts every backend; wait until it has (a query alone
# can get in before the postmaster has even noticed the crash), then until
# it accepts queries.
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
$node->poll_query_until('postgres', 'SELECT 1', '1')
  or die 'the server did not come back after the backend was killed';
like(
	slurp_file($node->logfile, $offset),
	qr/terminated by signal 9/,
	'the postmaster saw the backend crash');
check_checkpoint('after the backend was killed');

# Crash 2: immediate shutdown of the server under an uncommitted batch.
run_batches(2);
$session = open_batch();
$node->stop('immediate');
eval { $session->quit; };
$node->start;
check_checkpoint('after the immediate shutdown');

# Resume until done.
my $loops = 0;
while (1)
{
	my $done = $node->safe_psql('postgres', $backfill);
	$committed += $done;
	last if $done == 0;
	die 'the backfill does not finish' if ++$loops > 2 * $rows / $batch;
}

is($node->safe_psql('postgres', "SELECT zdm.verify('$migration')"),
	'0', 'zdm.verify finds no mismatch');
is( $node->safe_psql(
		'postgres', 'SELECT count(*) FROM orders WHERE status_enum IS NULL'),
	'0',
	'every row is converted');
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM orders WHERE status_enum::text <> legacy_status'),
	'0',
	'every converted value matches');
is($committed, $rows, 'the committed batches converted every row once');
my ($done) = split /\|/, $node->safe_psql('postgres', $progress_sql);
is($done, $rows, 'rows_backfilled is the number of rows');
is( $node->safe_psql(
		'postgres', "SELECT phase FROM zdm.migrations WHERE name = '$migration'"),
	'backfilled',
	'the migration is backfilled');

$node->stop;
done_testing();
