# Pacing the backfill by the clients' commit latency (src/pace.c), with
# shared_preload_libraries = 'zdm'.
#
#   - Client commits are counted: exactly one per client transaction that
#     wrote, none for read-only ones (zdm.metrics()).
#   - With pgbench committing and zdm.throttle_commit_latency set below
#     what any commit can achieve (0.5: commits "must" get faster while the
#     backfill runs), the worker paces itself: zdm.status says so, at a
#     rate below the migration's own limit.  The test then raises the
#     target far above what the clients feel (100), and the rate goes back
#     up; the backfill finishes and verifies clean.
#   - With zdm.throttle_commit_latency = 0 (off) the same backfill is never
#     paced.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $rows = 30000;
my $limit = 5000;    # the migrations' own max_rows_per_sec

my $node = PostgreSQL::Test::Cluster->new('pace');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'zdm'
max_worker_processes = 16
});
$node->start;

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION zdm;
	CREATE TABLE a (id bigint PRIMARY KEY, amount integer NOT NULL);
	CREATE TABLE b (id bigint PRIMARY KEY, amount integer NOT NULL);
	INSERT INTO a SELECT g, g % 1000 FROM generate_series(1, $rows) g;
	INSERT INTO b SELECT g, g % 1000 FROM generate_series(1, $rows) g;
	CREATE TABLE hits (n integer);
});

sub commits
{
	my $m = $node->safe_psql('postgres', 'SELECT zdm.metrics()');
	$m =~ /^zdm_client_commits_total (\d+)$/m or die "no zdm_client_commits_total in:\n$m";
	return $1;
}

# ---------- counting ----------

my $commits0 = commits();
$node->safe_psql('postgres', join('', map { "SELECT count(*) FROM hits;\n" } 1 .. 50));
is(commits(), $commits0, 'read-only transactions are not counted');
$node->safe_psql('postgres', join('', map { "INSERT INTO hits VALUES ($_);\n" } 1 .. 50));
is(commits(), $commits0 + 50, 'each client transaction that wrote is counted once');
$node->safe_psql('postgres', 'BEGIN; INSERT INTO hits VALUES (0); ROLLBACK;');
is(commits(), $commits0 + 50, 'a rolled-back transaction is not counted');

# ---------- pacing under client traffic ----------

my $script = "$PostgreSQL::Test::Utils::tmp_check/010_hits.sql";
append_to_file($script, "INSERT INTO hits VALUES (1);\n");
my ($out, $err) = ('', '');
my $pgbench = IPC::Run::start(
	[
		'pgbench', '-n', '-h', $node->host, '-p', $node->port,
		'-c', 2, '-R', 200, '-T', 25, '-f', $script, 'postgres'
	],
	'>', \$out, '2>', \$err);

# Backfill table $table with zdm.throttle_commit_latency = $target; returns
# the throttle reasons seen in zdm.status, and the paced rates seen before
# and after the target was raised to 100.
sub backfill
{
	my ($table, $target) = @_;
	my $name = "cents_$table";
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET zdm.throttle_commit_latency = $target; SELECT pg_reload_conf()");
	$node->safe_psql('postgres',
		"SELECT zdm.expand('$name', '{\"operations\":[{\"add_column\":{\"table\":\"$table\","
		  . "\"column\":{\"name\":\"cents\",\"type\":\"bigint\",\"nullable\":true},"
		  . "\"up\":\"amount::bigint * 100\"}}]}')");
	my $t0 = time();
	$node->safe_psql('postgres',
		"SELECT zdm.start_backfill('$name', sleep_ratio => 0, max_rows_per_sec => $limit)");
	my %reasons;
	my (@before, @after);
	while (1)
	{
		my ($phase, $reason) = split /\|/,
		  $node->safe_psql('postgres',
			"SELECT phase, throttle_reason FROM zdm.status WHERE name = '$name'");
		$reasons{$reason}++ if defined $reason && $reason ne '';
		last if $phase eq 'backfilled';
		if (defined $reason && $reason =~ /paced to (\d+) rows\/s/)
		{
			push @{ $target == 100 ? \@after : \@before }, $1;
		}
		# Seen pacing: a target far above what the clients feel, under
		# which the rate must rise again (a target no commit can meet
		# would slow the rest down to the floor).
		if ($target > 0 && $target < 100 && @before)
		{
			$node->safe_psql('postgres',
				'ALTER SYSTEM SET zdm.throttle_commit_latency = 100; SELECT pg_reload_conf()');
			$target = 100;
		}
		die "backfill of $table: phase $phase" unless $phase =~ /^(expanded|backfilling)$/;
		die "backfill of $table did not finish in 180 s" if time() - $t0 > 180;
		usleep(100_000);
	}
	is($node->safe_psql('postgres', "SELECT zdm.verify('$name')"), '0', "$name verifies clean");
	note "$name: " . (time() - $t0) . " s; throttle reasons seen: " . join(' / ', sort keys %reasons);
	return (\%reasons, \@before, \@after);
}

my ($reasons, $before, $after) = backfill('a', 0.5);
my @paced = map { /clients' commits took [0-9.]+x their time without the backfill .* paced to (\d+) rows\/s/ ? $1 : () }
  keys %$reasons;
ok(scalar(@paced), 'with the clients under a target they cannot meet, zdm.status shows the worker pacing itself');
ok((grep { $_ < $limit } @paced),
	"the pace went below the migration's own limit of $limit rows/s (" . join(', ', sort { $b <=> $a } @paced) . ')');

my ($first, $highest) = ($before->[0] // 0, (sort { $b <=> $a } @$after)[0] // 0);
ok($highest > $first,
	"with the clients under the target, the pace's rate rises again ($first rows/s before, up to $highest after)");

my ($reasons_off) = backfill('b', 0);
ok(!(grep { /paced to/ } keys %$reasons_off),
	'with zdm.throttle_commit_latency = 0 the worker does not pace itself');

$pgbench->finish;
like($out, qr/number of failed transactions: 0 /, 'the clients ran without failures');

$node->stop;
done_testing();
