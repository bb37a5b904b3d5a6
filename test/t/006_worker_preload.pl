# The background backfill with shared_preload_libraries = 'zdm': the
# launcher resumes requested backfills after crashes with no one calling.
#
# Two databases each have zdm: db1 with two migrations on two tables,
# db2 with one.  Every backfill is handed to the worker, rate-limited so
# that it takes several seconds:
#
#   - the zdm launcher runs (one process);
#   - the two migrations of db1 progress concurrently (both have converted
#     rows before either is done), with one worker per database;
#   - the worker of db1 is killed with SIGKILL in the middle: the postmaster
#     restarts every backend; the checkpoints are what the committed
#     batches left; without any call, the launcher resumes the backfills
#     of both databases;
#   - the server is shut down in immediate mode in the middle and started:
#     again the backfills resume with no call;
#   - at the end every migration is backfilled, every row converted, and
#     zdm.verify finds nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rows = 30000;

# database => [ [migration, table, max_rows_per_sec], ... ]
my %migrations = (
	db1 => [ [ 'm_a', 'a', 6000 ], [ 'm_b', 'b', 6000 ] ],
	db2 => [ [ 'm_c', 'c', 3000 ] ],);
my @all;
for my $db (sort keys %migrations)
{
	push @all, map { [ $db, @$_ ] } @{ $migrations{$db} };
}

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
# restart_after_crash: the test framework turns it off; the SIGKILL of the
# worker relies on it.
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'zdm'
zdm.launcher_naptime = 1
restart_after_crash = on
max_worker_processes = 16
});
$node->start;

# ---------- the launcher ----------

$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'zdm launcher'")
  or die 'the zdm launcher does not run';
pass('the zdm launcher runs');
is($node->safe_psql('postgres', 'SHOW zdm.launcher_naptime'),
	'1s', 'zdm.launcher_naptime is set');

# ---------- set-up ----------

for my $db (sort keys %migrations)
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION zdm');
	for my $m (@{ $migrations{$db} })
	{
		my ($name, $table) = @$m;
		$node->safe_psql(
			$db, qq{
			CREATE TABLE $table (id bigint PRIMARY KEY, qty integer NOT NULL);
			INSERT INTO $table SELECT g, g % 977 FROM generate_series(1, $rows) g;
			ANALYZE $table;
		});
		is( $node->safe_psql(
				$db,
				"SELECT zdm.expand('$name', '{\"operations\":[{\"alter_column\":{\"table\":\"$table\","
				  . "\"column\":\"qty\",\"name\":\"qty_text\",\"type\":\"text\",\"nullable\":false,"
				  . "\"up\":\"qty::text\",\"down\":\"qty_text::integer\"}}]}')"),
			't',
			"$db: $name expanded");
	}
}

# ---------- helpers ----------

sub rows_done
{
	my ($db, $name) = @_;
	return $node->safe_psql($db, "SELECT rows_done FROM zdm.status WHERE name = '$name'");
}

# Wait until every migration has more rows done than in %$before (or 0).
sub wait_all_progress
{
	my ($before, $what) = @_;
	for my $m (@all)
	{
		my ($db, $name) = @$m;
		my $n = $before ? $before->{$name} : 0;
		$node->poll_query_until($db,
			"SELECT rows_done > $n FROM zdm.status WHERE name = '$name'")
		  or die "$db: $name did not progress beyond $n rows $what";
	}
}

# rows_done of every migration, checked against the table: the rows
# converted are exactly the committed batches', all at or below the
# checkpoint; none is done yet.
sub check_checkpoints
{
	my ($when) = @_;
	my %done;
	for my $m (@all)
	{
		my ($db, $name, $table) = @$m;
		# One statement, one snapshot: the launcher may already have started
		# the worker again.  Phase, rows_done, checkpoint key, converted
		# rows, converted rows above the key, unconverted rows up to it.
		my ($phase, $done, $key, $converted, $above, $missing) = split /\|/,
		  $node->safe_psql(
			$db, qq{
			SELECT m.phase, m.rows_backfilled, m.backfill_key[2],
			       count(*) FILTER (WHERE t.qty_text IS NOT NULL),
			       count(*) FILTER (WHERE t.qty_text IS NOT NULL AND t.id > m.backfill_key[2]::bigint),
			       count(*) FILTER (WHERE t.qty_text IS NULL AND t.id <= m.backfill_key[2]::bigint)
			  FROM zdm.migrations m, $table t
			 WHERE m.name = '$name'
			 GROUP BY m.phase, m.rows_backfilled, m.backfill_key});
		is($phase, 'backfilling', "$db: $name was in the middle at $when");
		is("$converted|$above|$missing", "$done|0|0",
			"$db: $name: the converted rows are the committed batches' after $when (key $key)");
		$done{$name} = $done;
	}
	return \%done;
}

# ---------- start; concurrent progress ----------

for my $m (@all)
{
	my ($db, $name, $table, $rate) = @$m;
	is( $node->safe_psql($db,
			"SELECT zdm.start_backfill('$name', batch_size => 500, max_rows_per_sec => $rate)"),
		't',
		"$db: start_backfill('$name')");
}
wait_all_progress(undef, 'after start_backfill');
is( $node->safe_psql(
		'db1', q{
	SELECT count(*) FROM zdm.status WHERE rows_done > 0 AND phase = 'backfilling'}),
	'2',
	'db1: both migrations progressed before either finished');
# Each database is served by one worker at a time.
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(datname || ':' || n, ',' ORDER BY datname) FROM (
	  SELECT datname, count(*) AS n FROM pg_stat_activity
	   WHERE backend_type = 'zdm backfill' AND query LIKE 'zdm: backfilling %'
	   GROUP BY datname) s}),
	'db1:1,db2:1',
	'one worker backfills in each database');
# Both migrations of db1 keep advancing side by side.
my %mid = (m_a => rows_done('db1', 'm_a'), m_b => rows_done('db1', 'm_b'));
for my $name (qw(m_a m_b))
{
	$node->poll_query_until('db1',
		"SELECT rows_done > $mid{$name} FROM zdm.status WHERE name = '$name'")
	  or die "db1: $name stopped";
}
is( $node->safe_psql(
		'db1', q{
	SELECT count(*) FROM zdm.status WHERE phase = 'backfilling'}),
	'2',
	'db1: both migrations advanced again, neither finished');

# ---------- SIGKILL of db1's worker ----------

my $pid = $node->safe_psql(
	'postgres', q{
	SELECT pid FROM pg_stat_activity
	 WHERE backend_type = 'zdm backfill' AND datname = 'db1' AND query LIKE 'zdm: backfilling %'});
like($pid, qr/^\d+$/, "db1's worker runs ($pid)");
my $offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
$node->poll_query_until('postgres', 'SELECT 1', '1')
  or die 'the server did not come back after the worker was killed';
like(slurp_file($node->logfile, $offset),
	qr/\(PID $pid\) was terminated by signal 9/,
	'the postmaster saw the worker die and restarted');
my $done = check_checkpoints('the SIGKILL');

# No call: the launcher starts the workers again.
wait_all_progress($done, 'after the SIGKILL (launcher)');
pass('the launcher resumed every backfill after the SIGKILL, with no call');
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'zdm launcher'")
  or die 'the zdm launcher did not come back';
pass('the launcher runs again after the crash');

# ---------- immediate shutdown ----------

my $before = {};
$before->{ $_->[1] } = rows_done($_->[0], $_->[1]) + 2000 for @all;
wait_all_progress($before, 'before the immediate shutdown');
$node->stop('immediate');
$node->start;
my $done2 = check_checkpoints('the immediate shutdown');
cmp_ok($done2->{$_}, '>', $done->{$_}, "$_ went on between the crashes")
  for sort keys %$done;
wait_all_progress($done2, 'after the immediate shutdown (launcher)');
pass('the launcher resumed every backfill after the immediate shutdown, with no call');

# ---------- the end ----------

for my $m (@all)
{
	my ($db, $name, $table) = @$m;
	$node->poll_query_until($db,
		"SELECT phase = 'backfilled' FROM zdm.status WHERE name = '$name'")
	  or die "$db: $name never finished";
	my ($rows_done, $nulls, $wrong) = split /\|/,
	  $node->safe_psql(
		$db, qq{
		SELECT (SELECT rows_done FROM zdm.status WHERE name = '$name'),
		       count(*) FILTER (WHERE qty_text IS NULL),
		       count(*) FILTER (WHERE qty_text IS DISTINCT FROM qty::text)
		  FROM $table});
	cmp_ok($rows_done, '>=', $rows, "$db: $name: backfilled, rows_done $rows_done");
	is($nulls, 0, "$db: $name: no row is left unconverted");
	is($wrong, 0, "$db: $name: every converted value is right");
	is($node->safe_psql($db, "SELECT zdm.verify('$name')"),
		'0', "$db: $name: zdm.verify finds no mismatch");
}
# Nothing is left to do: no worker keeps backfilling.
$node->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'zdm backfill' AND query LIKE 'zdm: backfilling %'"
) or die 'a worker still backfills';
pass('no worker backfills once everything is done');

$node->stop;
done_testing();
