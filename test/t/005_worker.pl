# The background backfill worker without shared_preload_libraries.
#
# A 200,000-row table gets an alter_column migration (qty integer ->
# qty_text text, NOT NULL).  Its backfill is handed to the worker with
# zdm.start_backfill:
#
#   - inside a transaction that is rolled back: the worker never works;
#   - committed, rate-limited so that it can be watched: it progresses and
#     shows itself in pg_stat_activity and zdm.status;
#   - paused (no progress for a second), retuned while paused (the first
#     batch after resume has exactly the new size, and the rate limit holds
#     from that first batch on), resumed, retuned while running;
#   - its worker killed with SIGKILL in the middle: the postmaster restarts
#     every backend; the checkpoint is what the committed batches left,
#     nothing resumes by itself (no launcher without preload), and
#     zdm.start_backfill resumes it from the checkpoint;
#   - the server shut down in immediate mode in the middle: the same;
#   - finally sped up: it reaches phase backfilled (announced by NOTIFY
#     zdm), every row is converted, zdm.verify finds nothing, and contract
#     completes the migration.
#
# A second migration has an up expression that fails for one row only:
# the worker bisects down to it, the migration goes to phase failed with
# the error and that row's key, and the worker stops (no endless retry).
# Once the row is fixed, zdm.start_backfill finishes it.
#
# Two migrations in one database, one with a rate limit that pauses it for
# about 10 s after each batch: the other, unlimited, finishes meanwhile
# (a rate limit holds back its own migration, not the worker).
#
# A rate limit spreads each batch's rows over the batch: the worker is
# seen sleeping inside its batch, not only between batches.
#
# A migration rolled back while its worker runs stops the worker cleanly
# (its new worker, too, keeps to the rate limit from its first batch).
#
# Bad input (unknown, contracted and rolled back migrations, nonsense
# settings, pause and resume in the wrong state) gets clear errors with
# their SQLSTATE and changes nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $rows = 200000;
my $migration = 'm_qty';
my $definition = '{"operations":[{"alter_column":{"table":"items",'
  . '"column":"qty","name":"qty_text","type":"text","nullable":false,'
  . '"up":"qty::text","down":"qty_text::integer"}}]}';

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
# The test framework turns this off; the SIGKILL of the worker relies on it.
$node->append_conf('postgresql.conf', qq{
restart_after_crash = on
max_worker_processes = 16
});
$node->start;

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION zdm;
	CREATE TABLE items (
		id bigint PRIMARY KEY,
		qty integer NOT NULL,
		note text);
	INSERT INTO items SELECT g, g % 1000, 'item ' || g FROM generate_series(1, $rows) g;
	ANALYZE items;
});
is($node->safe_psql('postgres', "SELECT zdm.expand('$migration', '$definition')"),
	't', 'expanded');

# ---------- helpers ----------

# One value of zdm.status for a migration.
sub status_of
{
	my ($name, $column) = @_;
	return $node->safe_psql('postgres',
		"SELECT $column FROM zdm.status WHERE name = '$name'");
}

# The pid of the database's backfill worker, or ''.
sub worker_pid
{
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'zdm backfill'"
	);
}

sub wait_no_worker
{
	my ($what) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'zdm backfill'")
	  or die "the backfill worker did not exit $what";
}

# Wait until a migration's rows_done exceeds $n.
sub wait_rows_above
{
	my ($name, $n, $what) = @_;
	$node->poll_query_until('postgres',
		"SELECT rows_done > $n FROM zdm.status WHERE name = '$name'")
	  or die "migration $name did not progress beyond $n rows $what";
}

# Run $sql; it must fail with SQLSTATE $state and a message matching $re.
sub expect_error
{
	my ($sql, $state, $re, $label) = @_;
	my ($ret, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	isnt($ret, 0, "$label: fails");
	like($err, qr/ERROR:  $state: $re/, "$label: $state, $re");
}

# Run $sql; it must return false with a NOTICE matching $re.
sub expect_notice_false
{
	my ($sql, $re, $label) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	is($ret, 0, "$label: succeeds");
	is($out, 'f', "$label: returns false");
	like($err, qr/NOTICE:  $re/, "$label: NOTICE $re");
}

# A table of $rows rows (id, v) and a migration adding w = v, expanded.
sub expanded_table
{
	my ($table, $rows, $migration) = @_;
	$node->safe_psql(
		'postgres', qq{
	CREATE TABLE $table (id bigint PRIMARY KEY, v integer NOT NULL);
	INSERT INTO $table SELECT g, g FROM generate_series(1, $rows) g;
	ANALYZE $table;
	SELECT zdm.expand('$migration', '{"operations":[{"add_column":{"table":"$table",
		"column":{"name":"w","type":"bigint","nullable":true},"up":"v"}}]}');
});
	return;
}

# The checkpoint is exactly what the committed batches left: as many rows
# converted as rows_done says, all of them at or below the checkpoint key,
# none above.
sub check_checkpoint
{
	my ($when) = @_;
	# One statement, one snapshot.
	my ($done, $converted, $above, $missing) = split /\|/,
	  $node->safe_psql(
		'postgres', qq{
		SELECT m.rows_backfilled,
		       count(*) FILTER (WHERE i.qty_text IS NOT NULL),
		       count(*) FILTER (WHERE i.qty_text IS NOT NULL AND i.id > m.backfill_key[2]::bigint),
		       count(*) FILTER (WHERE i.qty_text IS NULL AND i.id <= m.backfill_key[2]::bigint)
		  FROM zdm.migrations m, items i
		 WHERE m.name = '$migration'
		 GROUP BY m.rows_backfilled});
	cmp_ok($done, '>', 0, "rows were backfilled before $when");
	cmp_ok($done, '<', $rows, "the backfill was not finished at $when");
	is($converted, $done, "converted rows are the committed batches' after $when");
	is($above, 0, "no row above the checkpoint is converted after $when");
	is($missing, 0, "every row up to the checkpoint is converted after $when");
	return $done;
}

# ---------- bad input before anything runs ----------

expect_error("SELECT zdm.start_backfill('no_such_migration')",
	'42704', 'migration "no_such_migration" does not exist', 'start_backfill of an unknown migration');
expect_error("SELECT zdm.pause('no_such_migration')",
	'42704', 'migration "no_such_migration" does not exist', 'pause of an unknown migration');
expect_error("SELECT zdm.tune('no_such_migration', batch_size => 10)",
	'42704', 'migration "no_such_migration" does not exist', 'tune of an unknown migration');
expect_error("SELECT zdm.start_backfill('$migration', batch_size => 0)",
	'22023', qq{migration "$migration": batch_size must be between 1 and \\d+, not 0},
	'batch_size 0');
expect_error("SELECT zdm.start_backfill('$migration', batch_size => -5)",
	'22023', qq{migration "$migration": batch_size must be between}, 'negative batch_size');
expect_error("SELECT zdm.start_backfill('$migration', sleep_ratio => -1)",
	'22023', qq{migration "$migration": sleep_ratio must be between}, 'sleep_ratio -1');
expect_error("SELECT zdm.start_backfill('$migration', batch_time => '0')",
	'22023', qq{migration "$migration": batch_time must be between}, "batch_time '0'");
expect_error("SELECT zdm.start_backfill('$migration', max_rows_per_sec => 0)",
	'22023', qq{migration "$migration": max_rows_per_sec must be positive}, 'max_rows_per_sec 0');
expect_error("SELECT zdm.tune('$migration')",
	'22023', qq{migration "$migration": zdm.tune\\(\\) needs at least one setting}, 'tune with no setting');
expect_error("SELECT zdm.tune('$migration', sleep_ratio => -1)",
	'22023', qq{migration "$migration": sleep_ratio must be between}, 'tune sleep_ratio -1');
expect_error("SELECT zdm.pause('$migration')",
	'55000', qq{migration "$migration" has no background backfill to pause}, 'pause with no worker requested');
expect_notice_false("SELECT zdm.resume('$migration')",
	qq{migration "$migration" is not paused}, 'resume with no worker requested');
is( $node->safe_psql(
		'postgres', qq{
	SELECT worker_requested, paused, batch_size, batch_time_ms, max_rows_per_sec, sleep_ratio, phase
	  FROM zdm.migrations WHERE name = '$migration'}),
	'f|f|||||expanded',
	'bad input changed nothing');

# ---------- a request that is rolled back ----------

$node->safe_psql(
	'postgres', qq{
	BEGIN;
	SELECT zdm.start_backfill('$migration', batch_size => 1000);
	ROLLBACK;
});
# The worker it started waits for the transaction, finds nothing and exits.
wait_no_worker('after a rolled-back request');
usleep(1_000_000);
is(worker_pid(), '', 'no worker runs after a rolled-back request');
is( $node->safe_psql(
		'postgres', qq{
	SELECT worker_requested, rows_backfilled, batches, phase
	  FROM zdm.migrations WHERE name = '$migration'}),
	'f|0|0|expanded',
	'a rolled-back start_backfill did nothing');

# ---------- start, watch ----------

is( $node->safe_psql(
		'postgres',
		"SELECT zdm.start_backfill('$migration', batch_size => 1000, max_rows_per_sec => 5000)"),
	't',
	'start_backfill');
wait_rows_above($migration, 0, 'after start_backfill');
$node->poll_query_until(
	'postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'zdm backfill' AND query LIKE 'zdm: backfilling "$migration", batch of % rows'})
  or die 'the worker never showed its work in pg_stat_activity';
pass('pg_stat_activity shows the worker backfilling');
my $pid = worker_pid();
like($pid, qr/^\d+$/, 'one backfill worker runs');
# zdm.worker_nice (default 10): the 19th field of /proc/<pid>/stat, after
# the command name in parentheses.
my $stat = slurp_file("/proc/$pid/stat");
$stat =~ s/^.*\) //s;
is((split / /, $stat)[16], '10', 'the worker runs at nice 10 (zdm.worker_nice)');
$node->poll_query_until('postgres',
	"SELECT worker_pid = $pid AND eta IS NOT NULL AND rows_per_sec > 0 FROM zdm.status WHERE name = '$migration'")
  or die 'zdm.status never showed the worker pid, rate and eta';
is( $node->safe_psql(
		'postgres',
		"SELECT phase, worker, paused, throttle_reason IS NULL FROM zdm.status WHERE name = '$migration'"
	),
	'backfilling|t|f|t',
	'zdm.status: backfilling, handed to the worker, not paused');
is( $node->safe_psql(
		'postgres',
		"SELECT author = current_user, max_rows_per_sec FROM zdm.migrations WHERE name = '$migration'"),
	't|5000',
	'the migration records its author and the rate limit');

# ---------- pause ----------

is($node->safe_psql('postgres', "SELECT zdm.pause('$migration')"), 't', 'pause');
# After its current batch the worker has nothing to do and exits.
wait_no_worker('after pause');
my $r1 = status_of($migration, 'rows_done');
usleep(1_200_000);
my $r2 = status_of($migration, 'rows_done');
is($r2, $r1, "no progress while paused ($r1 rows)");
cmp_ok($r1, '<', $rows, 'paused in the middle');
is( status_of($migration, q{paused, throttle_reason, coalesce(worker_pid::text, 'none')}),
	't|paused|none',
	'zdm.status: paused, no worker pid');
expect_notice_false("SELECT zdm.pause('$migration')",
	qq{migration "$migration" is already paused}, 'pause twice');

# ---------- tune while paused, resume ----------

# A slow rate: the first batch (777 rows, more than 400 rows/s spreads
# over one batch_time) goes in 200 ms, and the worker must then wait
# about 1.7 s, long enough to observe that batch alone.
is( $node->safe_psql(
		'postgres', "SELECT zdm.tune('$migration', batch_size => 777, max_rows_per_sec => 400)"),
	't',
	'tune while paused');
is(status_of($migration, 'batch_size'), '777', 'zdm.status shows the new batch size');
my $b1 = status_of($migration, 'batches');
is($node->safe_psql('postgres', "SELECT zdm.resume('$migration')"), 't', 'resume');
expect_notice_false("SELECT zdm.resume('$migration')",
	qq{migration "$migration" is not paused}, 'resume when not paused');
$node->poll_query_until('postgres',
	"SELECT batches > $b1 FROM zdm.status WHERE name = '$migration'")
  or die 'no batch after resume';
my ($d_rows, $d_batches, $activity) = split /\|/,
  $node->safe_psql(
	'postgres', qq{
	SELECT rows_done - $r1, batches - $b1,
	       (SELECT query FROM pg_stat_activity WHERE backend_type = 'zdm backfill')
	  FROM zdm.status WHERE name = '$migration'});
is($d_batches, 1,
	'max_rows_per_sec holds from the first batch after resume: no second batch at once');
# The first batch has the tuned size; if a second one ran too, it has
# at most one batch_time of the rate: 80 rows.
ok( ($d_batches == 1 && $d_rows == 777)
	  || ($d_batches == 2 && $d_rows - 777 >= 1 && $d_rows - 777 <= 80),
	"the first batch after resume has the tuned size ($d_rows rows in $d_batches batches)");
like($activity, qr/^zdm: backfilling "$migration", batch of \d+ rows$/,
	'pg_stat_activity shows the batch');
is(status_of($migration, 'paused, throttle_reason IS NULL'),
	'f|t', 'zdm.status: not paused after resume');

# ---------- tune while running ----------

is( $node->safe_psql(
		'postgres', "SELECT zdm.tune('$migration', batch_size => 1500, max_rows_per_sec => 5000)"),
	't',
	'tune while running');
# The worker may have run a few batches since, each changing the size by
# +10% / -20% at most.
my $size = status_of($migration, 'batch_size');
ok($size >= 1500 * 0.8**3 && $size <= 1500 * 1.1**3 + 4,
	"zdm.status shows the tuned batch size ($size)");
is( $node->safe_psql('postgres',
		"SELECT max_rows_per_sec FROM zdm.migrations WHERE name = '$migration'"),
	'5000', 'the new rate limit is stored');

# ---------- SIGKILL of the worker in the middle ----------

my $r3 = status_of($migration, 'rows_done');
wait_rows_above($migration, $r3 + 3000, 'after the tune');
$pid = worker_pid();
like($pid, qr/^\d+$/, 'the worker runs before it is killed');
my $offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
$node->poll_query_until('postgres', 'SELECT 1', '1')
  or die 'the server did not come back after the worker was killed';
like(slurp_file($node->logfile, $offset),
	qr/\(PID $pid\) was terminated by signal 9/,
	'the postmaster saw the worker die and restarted');
my $r4 = check_checkpoint('the SIGKILL of the worker');
# Without shared_preload_libraries, nothing starts a worker by itself.
usleep(1_500_000);
is(worker_pid(), '', 'no worker after the crash (no launcher without preload)');
is(status_of($migration, 'rows_done'), $r4, 'no progress after the crash until asked');
is( status_of($migration, q{phase, worker, coalesce(worker_pid::text, 'none')}),
	'backfilling|t|none',
	'zdm.status after the crash: still requested, no worker pid');
is($node->safe_psql('postgres', "SELECT zdm.start_backfill('$migration')"),
	't', 'start_backfill after the crash');
wait_rows_above($migration, $r4, 'after the crash');
pass('the backfill resumed after the crash');
is( $node->safe_psql('postgres',
		"SELECT max_rows_per_sec FROM zdm.migrations WHERE name = '$migration'"),
	'5000', 'start_backfill with no settings keeps the tuned ones');

# ---------- immediate shutdown in the middle ----------

wait_rows_above($migration, $r4 + 3000, 'before the immediate shutdown');
$node->stop('immediate');
$node->start;
my $r5 = check_checkpoint('the immediate shutdown');
cmp_ok($r5, '>', $r4, 'the backfill had gone on before the shutdown');
usleep(1_000_000);
is(worker_pid(), '', 'no worker after the restart');
is($node->safe_psql('postgres', "SELECT zdm.start_backfill('$migration')"),
	't', 'start_backfill after the restart');
wait_rows_above($migration, $r5, 'after the restart');
pass('the backfill resumed after the restart');

# ---------- finish, announced by NOTIFY ----------

my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN zdm');
is( $node->safe_psql(
		'postgres',
		"SELECT zdm.tune('$migration', batch_size => 10000, max_rows_per_sec => 10000000, sleep_ratio => 0)"),
	't',
	'tune for speed');
$node->poll_query_until('postgres',
	"SELECT phase = 'backfilled' FROM zdm.status WHERE name = '$migration'")
  or die 'the backfill never finished';
pass('the migration is backfilled');
my $notes = '';
for (1 .. 50)
{
	$notes .= $listener->query('SELECT 1');
	last if $notes =~ /"phase" ?: ?"backfilled"/;
	usleep(100_000);
}
like(
	$notes,
	qr/Asynchronous notification "zdm" with payload "\{.*"migration" ?: ?"$migration".*"phase" ?: ?"backfilled".*\}" received/,
	'LISTEN zdm heard the phase change to backfilled');
$listener->quit;

my ($done, $nulls, $wrong) = split /\|/,
  $node->safe_psql(
	'postgres', qq{
	SELECT (SELECT rows_done FROM zdm.status WHERE name = '$migration'),
	       count(*) FILTER (WHERE qty_text IS NULL),
	       count(*) FILTER (WHERE qty_text IS DISTINCT FROM qty::text)
	  FROM items});
cmp_ok($done, '>=', $rows, "rows_done covers the table ($done)");
is($nulls, 0, 'no row is left unconverted');
is($wrong, 0, 'every converted value is right');
is($node->safe_psql('postgres', "SELECT zdm.verify('$migration')"),
	'0', 'zdm.verify finds no mismatch');
wait_no_worker('once the backfill is done');
pass('the worker exits once the backfill is done');
expect_notice_false("SELECT zdm.start_backfill('$migration')",
	qq{migration "$migration" is already backfilled}, 'start_backfill when backfilled');
is($node->safe_psql('postgres', "SELECT zdm.contract('$migration')"),
	't', 'contract');
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(attname || ':' || attnotnull, ',' ORDER BY attnum) FROM pg_attribute
	 WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped}),
	'id:true,note:false,qty_text:true',
	'contract dropped qty and made qty_text NOT NULL');

# ---------- contracted and rolled-back migrations ----------

expect_error("SELECT zdm.start_backfill('$migration')",
	'55000', qq{migration "$migration" is contracted; there is no backfill to start},
	'start_backfill of a contracted migration');
expect_error("SELECT zdm.pause('$migration')",
	'55000', qq{migration "$migration" is contracted}, 'pause of a contracted migration');
expect_error("SELECT zdm.tune('$migration', batch_size => 10)",
	'55000', qq{migration "$migration" is contracted}, 'tune of a contracted migration');

$node->safe_psql(
	'postgres', q{
	CREATE TABLE gone (id bigint PRIMARY KEY, v integer);
	INSERT INTO gone SELECT g, g FROM generate_series(1, 100) g;
	SELECT zdm.expand('m_gone', '{"operations":[{"add_column":{"table":"gone",
		"column":{"name":"w","type":"bigint","nullable":true},"up":"v * 2"}}]}');
	SELECT zdm.rollback('m_gone');
});
expect_error("SELECT zdm.start_backfill('m_gone')",
	'55000', 'migration "m_gone" is rolled back; there is no backfill to start',
	'start_backfill of a rolled-back migration');
expect_error("SELECT zdm.resume('m_gone')",
	'55000', 'migration "m_gone" is rolled back', 'resume of a rolled-back migration');

# A migration rolled back while its worker runs: the worker stops at its
# next batch, with no error.
$node->safe_psql(
	'postgres', q{
	CREATE TABLE rb (id bigint PRIMARY KEY, v integer NOT NULL);
	INSERT INTO rb SELECT g, g FROM generate_series(1, 20000) g;
	ANALYZE rb;
	SELECT zdm.expand('m_rb', '{"operations":[{"alter_column":{"table":"rb",
		"column":"v","name":"v_big","type":"bigint","up":"v","down":"v_big::integer"}}]}');
});
# 500 rows at 250 rows/s: the new worker's first batch (more than one
# batch_time of the rate) goes in 200 ms, then it must wait about 1.8 s.
is( $node->safe_psql(
		'postgres', "SELECT zdm.start_backfill('m_rb', batch_size => 500, max_rows_per_sec => 250)"),
	't',
	'start_backfill of m_rb');
wait_rows_above('m_rb', 0, 'after start_backfill');
is(status_of('m_rb', 'batches'), 1,
	'max_rows_per_sec holds from the first batch of a new worker: no second batch at once');
$offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT zdm.rollback('m_rb')"), 't',
	'rollback while the worker runs');
wait_no_worker('after the rollback');
pass('the worker stops once its migration is rolled back');
is( $node->safe_psql(
		'postgres', q{
	SELECT phase, last_error IS NULL FROM zdm.status WHERE name = 'm_rb'}),
	'rolled_back|t',
	'the migration stays rolled back, with no error');
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	 WHERE attrelid = 'rb'::regclass AND attnum > 0 AND NOT attisdropped}),
	'id,v', 'the rolled-back column is gone');
unlike(slurp_file($node->logfile, $offset), qr/ERROR/,
	'the worker logged no error after the rollback');

# ---------- a row the up expression cannot convert ----------

my $bad_id = 2345;
$node->safe_psql(
	'postgres', qq{
	CREATE TABLE codes (id bigint PRIMARY KEY, code text NOT NULL);
	INSERT INTO codes SELECT g, CASE WHEN g = $bad_id THEN 'oops' ELSE g::text END
	  FROM generate_series(1, 3000) g;
	ANALYZE codes;
	SELECT zdm.expand('m_code', '{"operations":[{"alter_column":{"table":"codes",
		"column":"code","name":"code_num","type":"integer",
		"up":"code::integer","down":"code_num::text"}}]}');
});
$offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT zdm.start_backfill('m_code', batch_size => 500)"),
	't', 'start_backfill of the migration with a bad row');
$node->poll_query_until('postgres',
	"SELECT phase = 'failed' FROM zdm.status WHERE name = 'm_code'")
  or die 'the migration with a bad row never failed';
pass('the migration with a bad row goes to phase failed');
is( $node->safe_psql(
		'postgres', q{
	SELECT failed_key, worker, last_error FROM zdm.status WHERE name = 'm_code'}),
	qq{$bad_id|f|migration "m_code": backfill of table "codes" failed for keys up to ($bad_id): }
	  . 'invalid input syntax for type integer: "oops"',
	'zdm.status names the bad row and the error');
cmp_ok(
	$node->safe_psql('postgres',
		"SELECT count(*) FROM zdm.migration_log WHERE migration = 'm_code' AND event = 'bisect'"),
	'>', 0, 'the worker bisected the failing batch');
$node->wait_for_log(qr/zdm: migration "m_code" failed at key \($bad_id\)/, $offset);
pass('the server log names the bad row');
wait_no_worker('after the migration failed');
my $batches = status_of('m_code', 'batches');
usleep(1_500_000);
is(status_of('m_code', 'batches'), $batches, 'no more batches once failed (no retry loop)');
is(worker_pid(), '', 'no worker once failed');
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FILTER (WHERE code_num IS NULL AND id < $bad_id),
	       count(*) FILTER (WHERE code_num IS NOT NULL AND id >= $bad_id)
	  FROM codes}),
	'0|0',
	'every row before the bad one is converted, none after');

# Fix the row; start again from the checkpoint.
$node->safe_psql('postgres', "UPDATE codes SET code = '$bad_id' WHERE id = $bad_id");
# With no settings: the worker starts again from the size it bisected to.
is($node->safe_psql('postgres', "SELECT zdm.start_backfill('m_code')"),
	't', 'start_backfill after the row is fixed');
$node->poll_query_until('postgres',
	"SELECT phase = 'backfilled' FROM zdm.status WHERE name = 'm_code'")
  or die 'the fixed migration never finished';
pass('the fixed migration is backfilled');
is( $node->safe_psql(
		'postgres', q{
	SELECT failed_key IS NULL, last_error IS NULL FROM zdm.status WHERE name = 'm_code'}),
	't|t',
	'zdm.status no longer shows the failure');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FILTER (WHERE code_num IS NULL), count(*) FILTER (WHERE code_num::text <> code)
	  FROM codes}),
	'0|0',
	'every row of codes is converted');
is($node->safe_psql('postgres', "SELECT zdm.verify('m_code')"), '0',
	'zdm.verify finds no mismatch in codes');
is($node->safe_psql('postgres', "SELECT zdm.contract('m_code')"), 't',
	'contract of the fixed migration');

# ---------- one migration's rate limit holds back that migration only ----------

# slow: 500 rows at 50 rows/s, so its first batch (more than one
# batch_time of its rate) is followed by a pause of about 10 s; fast: no
# limit.  The one worker of the database serves both: fast must not wait
# out slow's pause.
expanded_table('slow', 5000, 'm_slow');
expanded_table('fast', 20000, 'm_fast');
my $t_slow = time();
is( $node->safe_psql(
		'postgres', "SELECT zdm.start_backfill('m_slow', batch_size => 500, max_rows_per_sec => 50)"),
	't',
	'start_backfill of a slow migration');
wait_rows_above('m_slow', 0, 'after start_backfill of m_slow');
my $t_fast = time();
# 1000-row batches: 20 of them, each of which would wait about 10 s if
# slow's pause held the worker.
is( $node->safe_psql(
		'postgres', "SELECT zdm.start_backfill('m_fast', batch_size => 1000, sleep_ratio => 0)"),
	't',
	'start_backfill of a fast migration in the same database');
$node->poll_query_until('postgres',
	"SELECT phase = 'backfilled' FROM zdm.status WHERE name = 'm_fast'")
  or die 'm_fast never finished';
my $fast_s = sprintf("%.1f", time() - $t_fast);
cmp_ok($fast_s, '<', 30, "the fast migration finished in ${fast_s} s, not held by the slow one's pauses");
my $slow_s = time() - $t_slow;
my $slow_rows = status_of('m_slow', 'rows_done');
cmp_ok($slow_rows, '<=', 500 + 50 * $slow_s,
	sprintf("the slow one kept its own rate meanwhile (%d rows in %.1f s)", $slow_rows, $slow_s));
is($node->safe_psql('postgres', "SELECT zdm.verify('m_fast')"), '0', 'm_fast verifies clean');
is($node->safe_psql('postgres', "SELECT zdm.rollback('m_slow')"), 't', 'roll the slow one back');
wait_no_worker('after the slow migration is rolled back');

# ---------- a rate limit spreads each batch's rows over the batch ----------

# 300-row batches at 150 rows/s with a batch_time of 2 s: each batch's
# rows go at the rate (zdm.delay_point() in its UPDATE), so the worker
# spends the 2 s inside its batch, sleeping between rows.  A batch run at
# full speed and followed by a 2 s pause would be seen idle instead.
expanded_table('spread', 3000, 'm_spread');
is( $node->safe_psql(
		'postgres',
		"SELECT zdm.start_backfill('m_spread', batch_size => 300, batch_time => '2 s', max_rows_per_sec => 150)"),
	't',
	'start_backfill of a migration at 150 rows/s in 2 s batches');
my $in_batch = q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type = 'zdm backfill' AND state = 'active'
	   AND wait_event_type = 'Extension' AND query LIKE 'zdm: backfilling "m_spread"%'};
$node->poll_query_until('postgres', "SELECT ($in_batch) > 0")
  or die 'the worker was never seen waiting inside a batch of m_spread';
pass('the worker waits inside its batch (a delay point), not only between batches');
my $seen = 0;
for (1 .. 20)
{
	$seen += $node->safe_psql('postgres', $in_batch);
	usleep(100_000);
}
cmp_ok($seen, '>=', 10, "inside a batch, sleeping, in $seen of 20 samples over 2 s");
my ($spread_rows, $spread_batches) = split /\|/, status_of('m_spread', 'rows_done, batches');
cmp_ok($spread_rows, '<=', 300 * $spread_batches,
	"batches keep their size ($spread_rows rows in $spread_batches batches)");
is($node->safe_psql('postgres', "SELECT zdm.tune('m_spread', max_rows_per_sec => 100000)"),
	't', 'lift the rate limit');
$node->poll_query_until('postgres',
	"SELECT phase = 'backfilled' FROM zdm.status WHERE name = 'm_spread'")
  or die 'm_spread never finished';
is($node->safe_psql('postgres', "SELECT zdm.verify('m_spread')"), '0',
	'the spread batches converted every row');

$node->stop;
done_testing();
