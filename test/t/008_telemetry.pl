# Client-version telemetry with shared_preload_libraries = 'zdm'.
#
# Twenty client sessions run at once in database "app": some declare API
# version v3, some v4 (both through PGOPTIONS), some none, and some switch
# with SET and RESET half-way; each runs a known number of statements, of
# every kind (plannable, utility, DO, a PL/pgSQL function whose own queries
# must not count again, EXPLAIN ANALYZE, PREPARE/EXECUTE).  pgbench adds
# sessions on the extended protocol.  Then:
#
#   - zdm.api_version_distribution shows exactly those counts at once,
#     before any flush (it adds zdm.pending_traffic() to zdm.api_traffic);
#   - the worker flushes them into zdm.api_traffic (source 'postgres')
#     within a few seconds (zdm.launcher_naptime = 1), and the totals do
#     not change;
#   - with flushing held off (zdm.launcher_naptime = 1h), counts not yet
#     flushed survive a clean restart: the postmaster writes them to
#     pg_stat/zdm_telemetry.stat and reads them back;
#   - a crash (postmaster killed) loses what was not flushed, and only
#     that: nothing is counted twice;
#   - zdm.count_traffic = off counts nothing (and only a superuser may turn
#     it off), and another database's statements do not show in "app";
#   - once more versions appear than the table has slots, the others are
#     counted as "(overflow)", and the server log says so.
#
# The test's own sessions declare version "checker", so that the
# undeclared count is the clients' alone.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

$ENV{PGOPTIONS} = '-c zdm.api_version=checker';

my $node = PostgreSQL::Test::Cluster->new('telemetry');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'zdm'
zdm.launcher_naptime = 1
max_worker_processes = 16
restart_after_crash = on
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql(
	'app', q{
	CREATE EXTENSION zdm;
	CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL);
	INSERT INTO items SELECT g, g % 7 FROM generate_series(1, 100) g;
	-- its queries run nested in the calling statement: not counted
	CREATE FUNCTION busy(n int) RETURNS bigint LANGUAGE plpgsql AS $$
	DECLARE s bigint := 0;
	BEGIN
		FOR i IN 1 .. n LOOP
			s := s + (SELECT sum(qty) FROM items WHERE id <= i);
		END LOOP;
		PERFORM count(*) FROM items;
		RETURN s;
	END $$;
	GRANT ALL ON items TO PUBLIC;
});
is($node->safe_psql('app', "SELECT extversion FROM pg_extension WHERE extname = 'zdm'"),
	'0.7', 'zdm 0.7 installed');

my %expected = (v3 => 0, v4 => 0, '' => 0);

# The statements of one repetition in a client session: 7 statements.
my $group = q{
SELECT count(*) FROM items;
SHOW zdm.api_version;
SELECT busy(3);
DO $$BEGIN PERFORM busy(2); END$$;
EXPLAIN (ANALYZE, COSTS OFF) SELECT busy(1);
PREPARE q AS SELECT sum(qty) FROM items WHERE id < $1;
EXECUTE q(10); DEALLOCATE q;
};
my $per_group = 8;

# Client $i: its PGOPTIONS, its script, and what it adds to %expected.
sub client
{
	my ($i) = @_;
	my $reps = 2 + $i % 5;
	my $kind = $i % 4;
	my $sql = $group x $reps;
	my $n = $per_group * $reps;
	if ($kind == 0)
	{
		$expected{v3} += $n;
		return ('-c zdm.api_version=v3', $sql);
	}
	if ($kind == 1)
	{
		$expected{v4} += $n;
		return ('-c zdm.api_version=v4', $sql);
	}
	if ($kind == 2)
	{
		$expected{''} += $n;
		return ('', $sql);
	}
	# switches: the SET counts as undeclared, the RESET as v4
	$expected{''} += 1 + $n;
	$expected{v4} += $n + 1;
	return ('', "SET zdm.api_version = 'v4';\n$sql\nRESET zdm.api_version;\n$sql");
}

# Run the clients $from .. $to at once; die if one fails.
sub run_clients
{
	my ($from, $to) = @_;
	my (@harness, @out, @err);
	for my $i ($from .. $to)
	{
		my ($options, $sql) = client($i);
		local $ENV{PGOPTIONS} = $options;
		push @harness,
		  IPC::Run::start(
			[
				$node->installed_command('psql'), '-XAtq', '-v',
				'ON_ERROR_STOP=1', '-d', $node->connstr('app'), '-f', '-'
			],
			'<', \$sql, '>', \$out[$i], '2>', \$err[$i]);
	}
	for my $k (0 .. $#harness)
	{
		$harness[$k]->finish
		  or die "client " . ($from + $k) . " failed: " . $err[ $from + $k ];
	}
	return;
}

# pgbench on the extended protocol: $clients x $tx transactions of 2
# statements under version $version.
sub run_pgbench
{
	my ($version, $clients, $tx) = @_;
	local $ENV{PGOPTIONS} = "-c zdm.api_version=$version";
	$node->command_ok(
		[
			'pgbench', '-n', '-M', 'prepared', '-c', $clients, '-t', $tx,
			'-f', "$ENV{TESTDIR}/telemetry_bench.sql", $node->connstr('app')
		],
		"pgbench: $clients sessions of version $version");
	$expected{$version} += 2 * $clients * $tx;
	return;
}
open(my $script, '>', "$ENV{TESTDIR}/telemetry_bench.sql") or die $!;
print $script "SELECT qty FROM items WHERE id = 1 + :client_id;\nSELECT count(*) FROM items;\n";
close $script;

# What the distribution shows for v3, v4 and undeclared, and what %expected says.
my $distribution_sql = q{
	SELECT string_agg(version || '=' || requests, ' ' ORDER BY version)
	  FROM zdm.api_version_distribution
	 WHERE version IN ('v3', 'v4', '(undeclared)')};
sub expected_distribution
{
	return
	  "(undeclared)=$expected{''} v3=$expected{v3} v4=$expected{v4}";
}
# Undeclared traffic is "(undeclared)" in zdm.api_traffic and in
# zdm.pending_traffic() too, as in the distribution.
my $flushed_sql = q{
	SELECT string_agg(version || '=' || requests, ' ' ORDER BY version)
	  FROM (SELECT version, sum(requests) AS requests
	          FROM zdm.api_traffic
	         WHERE source = 'postgres' AND version IN ('v3', 'v4', '(undeclared)')
	         GROUP BY version) t
	 WHERE NOT EXISTS (SELECT FROM zdm.pending_traffic()
	                    WHERE version IN ('v3', 'v4', '(undeclared)', ''))};

# The counts pending for v3, v4 and undeclared, and what they should be:
# %expected less what it was before (a hash given by reference).
my $pending_sql = q{
	SELECT string_agg(version || '=' || requests, ' ' ORDER BY version)
	  FROM zdm.pending_traffic() WHERE version IN ('v3', 'v4', '(undeclared)', '')};
sub expected_pending
{
	my ($before) = @_;
	return sprintf('(undeclared)=%d v3=%d v4=%d',
		$expected{''} - $before->{''},
		$expected{v3} - $before->{v3},
		$expected{v4} - $before->{v4});
}

# ---- many sessions at once ----

run_clients(0, 19);
run_pgbench('v4', 4, 25);
cmp_ok($expected{v3}, '>', 100, "the clients ran $expected{v3} v3 statements");

# A flush may be under way: the pending and flushed counts are read
# at slightly different moments, so poll.
ok( $node->poll_query_until('app', $distribution_sql, expected_distribution()),
	'the distribution counts every statement of every session: ' . expected_distribution())
  or diag $node->safe_psql('app', 'TABLE zdm.api_version_distribution');

ok($node->poll_query_until('app', $flushed_sql, expected_distribution()),
	'the worker flushed the counts into zdm.api_traffic');
is($node->safe_psql('app', $distribution_sql), expected_distribution(),
	'the distribution is unchanged after the flush');
# ---- zdm.count_traffic = off, and another database ----

{
	local $ENV{PGOPTIONS} = '-c zdm.api_version=v3 -c zdm.count_traffic=off';
	$node->safe_psql('app', 'SELECT 1; SELECT 2; SELECT 3;');
}
{
	local $ENV{PGOPTIONS} = '-c zdm.api_version=v3';
	$node->safe_psql('postgres', 'SELECT 1; SELECT 2; SELECT 3;');
}
is($node->safe_psql('app', $distribution_sql), expected_distribution(),
	'nothing counted with zdm.count_traffic = off, nor from database postgres');
$node->safe_psql('app', 'CREATE ROLE client');
my ($ret, $stdout, $stderr) = $node->psql('app',
	'SET ROLE client; SET zdm.count_traffic = off;');
like($stderr, qr/permission denied to set parameter "zdm.count_traffic"/,
	'only a superuser may turn counting off');

# ---- a clean restart keeps the counts not yet flushed ----

$node->safe_psql('app',
	"ALTER SYSTEM SET zdm.launcher_naptime = '1h'; SELECT pg_reload_conf()");
# let a round started before the reload end
sleep 3;
my %before = %expected;
run_clients(20, 27);
is($node->safe_psql('app', $pending_sql), expected_pending(\%before),
	'the new counts are pending, not flushed');
$node->stop('fast');
ok(-f $node->data_dir . '/pg_stat/zdm_telemetry.stat',
	'the postmaster wrote the unflushed counts at shutdown');
$node->start;
ok(!-f $node->data_dir . '/pg_stat/zdm_telemetry.stat',
	'and removed the file once read back');
ok( $node->poll_query_until('app', $distribution_sql, expected_distribution()),
	'after a clean restart the distribution still counts every statement: '
	  . expected_distribution());

# ---- a crash loses only what was not flushed ----

$node->safe_psql('app',
	"ALTER SYSTEM RESET zdm.launcher_naptime; SELECT pg_reload_conf()");
ok($node->poll_query_until('app', $flushed_sql, expected_distribution()),
	'everything flushed again');
$node->safe_psql('app',
	"ALTER SYSTEM SET zdm.launcher_naptime = '1h'; SELECT pg_reload_conf()");
sleep 3;
my %flushed = %expected;
run_clients(28, 31);
is($node->safe_psql('app', $pending_sql), expected_pending(\%flushed),
	'new counts pending before the crash');
# A backend killed with SIGKILL: the postmaster resets shared memory.
my $victim = $node->background_psql('app');
my $pid = $victim->query_safe('SELECT pg_backend_pid()');
kill 'KILL', $pid;
eval { $victim->quit; };
$node->poll_query_until('app', 'SELECT 1', '1')
  or die 'the server did not come back after the crash';
%expected = %flushed;
is($node->safe_psql('app', $distribution_sql), expected_distribution(),
	'after a crash the flushed counts remain, the unflushed are lost, none is counted twice: '
	  . expected_distribution());
ok(!-f $node->data_dir . '/pg_stat/zdm_telemetry.stat',
	'no counts written after the crash');

# ---- more versions than slots ----

# Each SET counts under the version before it: x1 .. x2100 get one
# request each, but only the first ones get a slot of their own.
{
	local $ENV{PGOPTIONS} = '-c zdm.api_version=x0';
	my $sql = join('', map { "SET zdm.api_version = 'x$_';\n" } 1 .. 2100);
	$node->safe_psql('app', $sql);
}
my ($versions, $overflow, $total) = split /\|/, $node->safe_psql(
	'app', q{
	SELECT count(*) FILTER (WHERE version LIKE 'x%'),
	       sum(requests) FILTER (WHERE version = '(overflow)'),
	       sum(requests)
	  FROM zdm.api_version_distribution
	 WHERE version LIKE 'x%' OR version = '(overflow)'});
cmp_ok($versions, '>', 1900, "$versions versions counted on their own");
cmp_ok($overflow, '>', 0, "$overflow requests counted as (overflow)");
is($total, 2100, 'no request lost when the table is full');
ok($node->log_contains('table of API-version counters is full'),
	'the full table was logged');

$node->stop;
done_testing();
