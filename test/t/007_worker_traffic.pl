# The background backfill under live client traffic ends consistent.
#
# A 50,000-row table gets an alter_column migration (amount integer ->
# amount_cents bigint, NOT NULL, up amount * 100, down amount_cents / 100).
# pgbench runs 4 clients the whole time, in 2-second rounds, from before
# zdm.start_backfill until a round after the worker has finished; each
# transaction is one of:
#
#   - a v3 insert (old column only), a v4 insert (new column only);
#   - an update of the old column, of the new column, of another column;
#   - a delete of a random original row.
#
# Inserts and deletes record the ids they touched in a log table, in the
# same statement.  At the end pgbench reports no failed transaction and no
# aborted client, the table holds exactly the initial rows plus the
# inserts minus the deletes the clients made (pgbench's own transaction
# counts agree with the log), every row is converted and zdm.verify finds
# no mismatch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $rows = 50000;
my $migration = 'm_cents';
my $definition = '{"operations":[{"alter_column":{"table":"accounts",'
  . '"column":"amount","name":"amount_cents","type":"bigint","nullable":false,'
  . '"up":"amount::bigint * 100","down":"(amount_cents / 100)::integer"}}]}';
my $clients = 4;
my $round_seconds = 2;
my $max_rounds = 40;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', 'max_worker_processes = 16');
$node->start;

$node->safe_psql(
	'postgres', qq{
	CREATE EXTENSION zdm;
	CREATE TABLE accounts (
		id bigserial PRIMARY KEY,
		amount integer NOT NULL,
		note text);
	INSERT INTO accounts (amount, note) SELECT g % 10007, 'initial' FROM generate_series(1, $rows) g;
	ANALYZE accounts;
	-- What the clients did: one row per inserted or deleted account.
	CREATE TABLE client_log (op text NOT NULL, id bigint NOT NULL);
});
is($node->safe_psql('postgres', "SELECT zdm.expand('$migration', '$definition')"),
	't', 'expanded');

# ---------- the clients ----------

my %scripts = (
	insert_v3 => [
		3, q{
\set v random(1, 100000)
WITH i AS (INSERT INTO accounts (amount, note) VALUES (:v, 'v3') RETURNING id)
INSERT INTO client_log (op, id) SELECT 'insert', id FROM i;
}
	],
	insert_v4 => [
		2, q{
\set v random(1, 100000)
WITH i AS (INSERT INTO accounts (amount_cents, note) VALUES (:v * 100 + 37, 'v4') RETURNING id)
INSERT INTO client_log (op, id) SELECT 'insert', id FROM i;
}
	],
	update_old => [
		3, qq{
\\set id random(1, $rows)
UPDATE accounts SET amount = amount + 1 WHERE id = :id;
}
	],
	update_new => [
		2, qq{
\\set id random(1, $rows)
\\set v random(1, 100000)
UPDATE accounts SET amount_cents = :v * 100 + 11 WHERE id = :id;
}
	],
	update_other => [
		2, qq{
\\set id random(1, $rows)
UPDATE accounts SET note = 'touched by ' || :client_id WHERE id = :id;
}
	],
	delete => [
		2, qq{
\\set id random(1, $rows)
WITH d AS (DELETE FROM accounts WHERE id = :id RETURNING id)
INSERT INTO client_log (op, id) SELECT 'delete', id FROM d;
}
	],);

my @script_args;
for my $name (sort keys %scripts)
{
	my $file = "$PostgreSQL::Test::Utils::tmp_check/007_$name.sql";
	append_to_file($file, $scripts{$name}[1]);
	push @script_args, '-f', "$file\@$scripts{$name}[0]";
}

# Start one round of pgbench in the background.
sub start_round
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'pgbench', '-n',
			'-h', $node->host,
			'-p', $node->port,
			'-c', $clients,
			'-j', 2,
			'-T', $round_seconds,
			@script_args, 'postgres'
		],
		'>', \$out,
		'2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return { h => $h, out => \$out, err => \$err };
}

my %transactions;    # script name => transactions pgbench counted
my ($total, $failed, $bad_rounds) = (0, 0, 0);

# Wait for a round and add up what pgbench reports.
sub finish_round
{
	my ($round, $n) = @_;
	my $ok = $round->{h}->finish;
	my $out = ${ $round->{out} };
	my $err = ${ $round->{err} };
	unless ($ok && $out =~ /number of transactions actually processed: (\d+)/)
	{
		$bad_rounds++;
		diag "pgbench round $n failed:\n$out\n$err";
		return;
	}
	$total += $1;
	if ($out =~ /number of failed transactions: (\d+)/)
	{
		$failed += $1;
	}
	else
	{
		$bad_rounds++;
		diag "pgbench round $n printed no failure count:\n$out";
	}
	if ($err =~ /aborted|ERROR/)
	{
		$bad_rounds++;
		diag "pgbench round $n reported errors:\n$err";
	}
	# Per script: "SQL script N: <file>" then " - <n> transactions (...)".
	while ($out =~ /SQL script \d+: \S*007_(\w+)\.sql\n(?: - .*\n)*? - (\d+) transactions/g)
	{
		$transactions{$1} += $2;
	}
	note "round $n: $out";
}

# ---------- backfill under traffic ----------

my ($rounds, $rounds_backfilling, $done_rounds) = (0, 0, 0);
while (1)
{
	die "the backfill did not finish within $max_rounds rounds" if $rounds >= $max_rounds;
	my $phase = $node->safe_psql('postgres',
		"SELECT phase FROM zdm.status WHERE name = '$migration'");
	my $round = start_round();
	$rounds++;
	if ($rounds == 1)
	{
		# The clients are running: hand the backfill to the worker, slowly
		# enough that it takes several rounds.
		usleep(500_000);
		is( $node->safe_psql(
				'postgres',
				"SELECT zdm.start_backfill('$migration', batch_size => 1000, max_rows_per_sec => 5000)"),
			't',
			'start_backfill while the clients run');
	}
	$rounds_backfilling++ if $phase eq 'backfilling';
	finish_round($round, $rounds);
	# Where the worker stands, for the log of a run that goes wrong.
	note 'status: ' . $node->safe_psql('postgres', q{
		SELECT concat_ws(' | ', phase, rows_done, batch_size, rows_per_sec, throttle_reason,
		                 worker_pid, last_error)
		  FROM zdm.status WHERE name = '} . $migration . q{'});
	# Stop after one whole round that began once the backfill was done.
	last if $phase eq 'backfilled';
}
note "pgbench: $rounds rounds, $total transactions, $rounds_backfilling began while backfilling";

is($bad_rounds, 0, 'every pgbench round completed without an error or an aborted client');
is($failed, 0, 'pgbench reports 0 failed transactions');
cmp_ok($total, '>', 1000, "the clients ran many transactions ($total)");
cmp_ok($rounds_backfilling, '>=', 2,
	"the clients ran throughout the backfill ($rounds_backfilling rounds began while it ran)");
is( $node->safe_psql('postgres',
		"SELECT phase FROM zdm.status WHERE name = '$migration'"),
	'backfilled', 'the migration is backfilled');

# ---------- the table is what the clients made it ----------

my ($inserted, $deleted, $distinct_deleted) = split /\|/,
  $node->safe_psql(
	'postgres', q{
	SELECT count(*) FILTER (WHERE op = 'insert'), count(*) FILTER (WHERE op = 'delete'),
	       count(DISTINCT id) FILTER (WHERE op = 'delete')
	  FROM client_log});
# pgbench's counts are a lower bound: it does not count the transactions
# that complete once a round's time is up, though they commit (seen: 40
# more inserts logged than counted over 6 rounds of 4 clients, more than
# one per client and round).  The log, written by the same statement as
# the row, is the exact count; the checks below hold the table to it.
# Here the counts only have to agree, within that slack.
my $counted = ($transactions{insert_v3} // 0) + ($transactions{insert_v4} // 0);
my $counted_deletes = $transactions{delete} // 0;
sub slack { my ($n) = @_; my $s = int($n / 100); return $s > $clients * $rounds ? $s : $clients * $rounds; }
ok( $inserted >= $counted && $inserted <= $counted + slack($counted),
	"the log holds one row per insert transaction ($inserted logged, $counted counted by pgbench)");
cmp_ok($deleted, '>', 0, "the clients deleted rows ($deleted)");
cmp_ok($deleted, '<=', $counted_deletes + slack($counted_deletes),
	"no more deletes than delete transactions ($deleted logged, $counted_deletes counted by pgbench)");
is($distinct_deleted, $deleted, 'every row was deleted once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM accounts'),
	$rows + $inserted - $deleted,
	'rows = initial + inserted - deleted');
is( $node->safe_psql(
		'postgres', qq{
	SELECT count(*) FROM accounts a
	 WHERE a.id > $rows
	    OR EXISTS (SELECT 1 FROM client_log l WHERE l.op = 'delete' AND l.id = a.id)}),
	$inserted,
	'exactly the inserted rows are new and no deleted row is left');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM client_log l
	 WHERE l.op = 'insert' AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = l.id)}),
	'0',
	'every inserted row exists');
cmp_ok( $node->safe_psql('postgres', "SELECT count(*) FROM accounts WHERE note LIKE 'touched by %'"),
	'>', 0, 'the clients updated other columns');

# ---------- converted and consistent ----------

is( $node->safe_psql('postgres', 'SELECT count(*) FROM accounts WHERE amount_cents IS NULL'),
	'0', 'no row is left unconverted');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM accounts
	 WHERE amount_cents <> amount::bigint * 100 AND amount <> (amount_cents / 100)::integer}),
	'0',
	'old and new columns agree in every row');
cmp_ok(
	$node->safe_psql('postgres', 'SELECT count(*) FROM accounts WHERE amount_cents % 100 <> 0'),
	'>', 0, 'v4 writes kept their own values');
is($node->safe_psql('postgres', "SELECT zdm.verify('$migration')"),
	'0', 'zdm.verify finds no mismatch');
cmp_ok($node->safe_psql('postgres', "SELECT rows_done FROM zdm.status WHERE name = '$migration'"),
	'>=', $rows - $deleted, 'rows_done covers the table');
is($node->safe_psql('postgres', "SELECT zdm.contract('$migration')"), 't', 'contract');
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*), count(amount_cents) FROM accounts}),
	join('|', ($rows + $inserted - $deleted) x 2),
	'after contract every row has amount_cents');

$node->stop;
done_testing();
