# Two migrations expanding the same table at the same moment never end in
# a deadlock: the second waits for the first (without holding a lock on
# the table) and then applies, or, when the two clash, fails with zdm's
# usual error.
#
# Both expands check their migration under ACCESS SHARE and then need
# ACCESS EXCLUSIVE.  Without zdm's claim on the table (an advisory lock
# taken before ACCESS SHARE), both could hold ACCESS SHARE and wait for
# each other's ACCESS EXCLUSIVE: deadlock_timeout is 10 ms here, so the
# deadlock detector runs well before zdm.lock_timeout ends an attempt, and
# such a deadlock shows as 40P01.
#
# Rounds of four kinds, each with fresh migrations:
#  - race: two sessions wait at a barrier (an advisory lock a third
#    session holds), are released together and expand at once;
#  - queued: a client holds ACCESS SHARE on the table, so the first
#    expand retries its ACCESS EXCLUSIVE while the second arrives; the
#    client commits 1.5 s later, once the second has logged a retry (or
#    at the first deadlock);
#  - crossed: two-table migrations naming the tables in opposite orders,
#    raced as above, and queued behind a client holding ACCESS EXCLUSIVE
#    on the first one's first table (zdm claims all of an expand's tables
#    at once; claimed one by one, each would hold one claim and wait for
#    the other);
#  - clash: both add the same column, raced or queued; one applies, the
#    other gets duplicate_column (42701);
#  - contract: a contract (which verifies and validates its table before
#    it asks for ACCESS EXCLUSIVE) queued, and an expand of another
#    migration of the table arriving meanwhile.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use ZdmPsql ();
use IPC::Run;
use Time::HiRes qw(time usleep);

my $race_rounds = 15;
my $queued_rounds = 4;
my $crossed_rounds = 10;
my $clash_rounds = 6;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', "deadlock_timeout = '10ms'\n");
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION zdm;
	CREATE TABLE orders (id bigint PRIMARY KEY, note text);
	INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 1000) g;
	CREATE TABLE payments (id bigint PRIMARY KEY, note text);
	INSERT INTO payments SELECT g, 'payment ' || g FROM generate_series(1, 1000) g;
});

my $settings = "SET zdm.lock_timeout = '200ms'; SET zdm.lock_budget = '20s';";

# A migration adding nullable integer columns, one per [table, column].
sub add_columns
{
	my @ops = map {
		qq({"add_column":{"table":"$_->[0]","column":{"name":"$_->[1]","type":"integer","nullable":true}}})
	} @_;
	return '{"operations":[' . join(',', @ops) . ']}';
}

# Start psql on $script in the background (ZdmPsql.pm); returns the
# IPC::Run handle and references to its stdout and stderr.
sub start_psql
{
	my ($h, $out, $err) = ZdmPsql::start_psql($node, @_);
	return { h => $h, out => $out, err => $err };
}

# The barrier: a session holding an advisory lock the expands wait for.
my $barrier = $node->background_psql('postgres');

# Run two expands released together from the barrier; returns their
# results ({ok, err} each).
sub race
{
	my ($name1, $def1, $name2, $def2) = @_;
	$barrier->query_safe('SELECT pg_advisory_lock(11)');
	my @s;
	for my $m ([ $name1, $def1 ], [ $name2, $def2 ])
	{
		push @s,
		  start_psql(
			"\\set VERBOSITY verbose\n$settings\n"
			  . "SELECT pg_advisory_lock_shared(11);\n"
			  . "SELECT pg_advisory_unlock_shared(11);\n"
			  . "SELECT zdm.expand('$m->[0]', '$m->[1]');\n",
			'zdm_race');
	}
	$node->poll_query_until(
		'postgres', q{
		SELECT count(*) = 2 FROM pg_locks
		 WHERE locktype = 'advisory' AND objid = 11 AND NOT granted})
	  or die 'the expands never reached the barrier';
	$barrier->query_safe('SELECT pg_advisory_unlock(11)');
	return map { { ok => $_->{h}->finish, err => ${ $_->{err} } } } @s;
}

my @deadlocks;
my @failures;
my @contract_deadlocks;
my @contract_failures;

# Count what went wrong in a round where both expands should apply.
sub both_applied
{
	my ($label, @r) = @_;
	for my $r (@r)
	{
		push @deadlocks, "$label: $r->{err}" if $r->{err} =~ /40P01|deadlock detected/;
		push @failures, "$label: $r->{err}" unless $r->{ok};
	}
}

# Race: one table, two migrations adding different columns.
for my $i (1 .. $race_rounds)
{
	both_applied(
		"race $i",
		race(
			"race_a_$i", add_columns([ 'orders', "race_a_$i" ]),
			"race_b_$i", add_columns([ 'orders', "race_b_$i" ])));
}

# Start step 1 while a client holds a lock ($lock_sql) that makes it
# retry, then step 2; the client commits once step 2 has waited for 1.5 s
# and logged a retry, or at the first deadlock.  Each step is [migration,
# SQL]; by default the SQL expands the migration, given as a definition.
# Returns the steps' results.
sub queued
{
	my ($lock_sql, @m) = @_;
	$_->[1] = "SELECT zdm.expand('$_->[0]', '$_->[1]')" for grep { $_->[1] =~ /^\{/ } @m;
	my $holder = $node->background_psql('postgres');
	$holder->query_safe('BEGIN');
	$holder->query_safe($lock_sql);
	my $offset = -s $node->logfile;
	my @s;
	for my $k (0, 1)
	{
		push @s,
		  start_psql(
			"\\set VERBOSITY verbose\n$settings\n$m[$k][1];\n", 'zdm_queued');
		last if $k == 1;
		$node->wait_for_log(qr/migration "$m[0][0]": .*not available \(attempt 1\)/, $offset);
	}
	my $second = time;
	while (time < $second + $PostgreSQL::Test::Utils::timeout_default)
	{
		my $log = slurp_file($node->logfile, $offset);
		last if $log =~ /deadlock detected/;
		last if time > $second + 1.5 && $log =~ /migration "$m[1][0]": .*\(attempt 1\)/;
		usleep(20_000);
	}
	$holder->query_safe('COMMIT');
	$holder->quit;
	return map { { ok => $_->{h}->finish, err => ${ $_->{err} } } } @s;
}

# Queued: the first expand retries its ACCESS EXCLUSIVE behind a reader
# when the second one comes.
for my $i (1 .. $queued_rounds)
{
	both_applied(
		"queued $i",
		queued(
			'SELECT count(*) FROM orders',
			[ "queued_a_$i", add_columns([ 'orders', "queued_a_$i" ]) ],
			[ "queued_b_$i", add_columns([ 'orders', "queued_b_$i" ]) ]));
}

# Crossed: two tables, named in opposite orders; raced, and queued behind
# a client holding the first migration's first table.
for my $i (1 .. $crossed_rounds)
{
	both_applied(
		"crossed $i",
		race(
			"crossed_a_$i",
			add_columns([ 'orders', "crossed_a_$i" ], [ 'payments', "crossed_a_$i" ]),
			"crossed_b_$i",
			add_columns([ 'payments', "crossed_b_$i" ], [ 'orders', "crossed_b_$i" ])));
}
for my $i (1 .. $queued_rounds)
{
	both_applied(
		"crossed queued $i",
		queued(
			'LOCK TABLE orders IN ACCESS EXCLUSIVE MODE',
			[
				"crossed_qa_$i",
				add_columns([ 'orders', "crossed_qa_$i" ], [ 'payments', "crossed_qa_$i" ])
			],
			[
				"crossed_qb_$i",
				add_columns([ 'payments', "crossed_qb_$i" ], [ 'orders', "crossed_qb_$i" ])
			]));
}

is(scalar(@deadlocks), 0, 'no expand ended in a deadlock')
  or diag join("\n", @deadlocks);
is(scalar(@failures), 0, 'every expand of different columns applied')
  or diag join("\n", @failures);

my $applied = ($race_rounds + $queued_rounds * 2 + $crossed_rounds) * 2;
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM zdm.migrations
	 WHERE phase = 'expanded' AND name ~ '^(race|queued|crossed)_'}),
	$applied,
	"all $applied migrations are expanded");
is( $node->safe_psql(
		'postgres', q{
	SELECT count(*) FROM pg_attribute
	 WHERE attrelid IN ('orders'::regclass, 'payments'::regclass)
	   AND attname ~ '^(race|queued|crossed)_' AND NOT attisdropped}),
	$race_rounds * 2 + $queued_rounds * 2 + ($crossed_rounds + $queued_rounds) * 4,
	'every new column exists');

# The journal charges the claim's wait to the first statement: in the
# queued rounds the second expand waited for the first.
cmp_ok(
	$node->safe_psql(
		'postgres', q{
	SELECT min(w) FROM (
		SELECT max(lock_wait_ms) AS w FROM zdm.migration_log
		 WHERE migration ~ '^queued_b_' AND event = 'ddl' GROUP BY migration) s}),
	'>', 100,
	'the journal records the wait of the second expand of each queued round');

# Clash: both add the same column; exactly one applies.
my $clash_errors = 0;
my @clash_deadlocks;
for my $i (1 .. $clash_rounds)
{
	my $def = add_columns([ 'orders', "clash_$i" ]);
	# Odd rounds race, even ones queue the second behind the first.
	my @r =
	  $i % 2
	  ? race("clash_a_$i", $def, "clash_b_$i", $def)
	  : queued('SELECT count(*) FROM orders', [ "clash_a_$i", $def ], [ "clash_b_$i", $def ]);
	push @clash_deadlocks, "clash $i: " . join(' ', map { $_->{err} } @r)
	  if grep { $_->{err} =~ /40P01|deadlock detected/ } @r;
	my @ok = grep { $_->{ok} } @r;
	my @failed = grep { !$_->{ok} } @r;
	if (@ok == 1
		&& $failed[0]{err} =~
		/ERROR:  42701: migration "clash_[ab]_$i": add_column: column "clash_$i" of table "orders" already exists/
		&& $failed[0]{err} =~ /HINT:  /)
	{
		$clash_errors++;
	}
	else
	{
		diag "clash $i: " . join(' | ', map { ($_->{ok} ? 'ok' : 'failed') . " $_->{err}" } @r);
	}
}
is($clash_errors, $clash_rounds,
	'of two expands adding the same column, one applies and the other gets 42701');
is(scalar(@clash_deadlocks), 0, 'no clashing expand ended in a deadlock')
  or diag join("\n", @clash_deadlocks);

# A migration whose table stays claimed longer than its budget fails with
# lock_not_available, naming itself and the table, and changes nothing.
{
	my $first = $node->background_psql('postgres');
	$first->query_safe('BEGIN');
	$first->query_safe(
		"SELECT zdm.expand('budget_a', '" . add_columns([ 'orders', 'budget_a' ]) . "')");
	my ($ret, $stdout, $stderr) = $node->psql(
		'postgres',
		"\\set VERBOSITY verbose\nSET zdm.lock_timeout = '100ms'; SET zdm.lock_budget = '1s';\n"
		  . "SELECT zdm.expand('budget_b', '" . add_columns([ 'orders', 'budget_b' ]) . "');");
	isnt($ret, 0, 'an expand behind a claim held longer than its budget fails');
	like(
		$stderr,
		qr/ERROR:  55P03: migration "budget_b": table "orders" was still being migrated by another session after 1000 ms/,
		'the error is lock_not_available and names the migration and table');
	like($stderr, qr/HINT:  .*zdm\.lock_budget/, 'the error has a hint');
	$first->query_safe('COMMIT');
	$first->quit;
	is( $node->safe_psql(
			'postgres', q{
		SELECT string_agg(name || ':' || phase, ',' ORDER BY name) FROM zdm.migrations
		 WHERE name LIKE 'budget_%'}),
		'budget_a:expanded',
		'only the first migration is recorded');
}

# Contract, too, reads and validates its tables before it asks for ACCESS
# EXCLUSIVE: an expand of another migration of the table waits for it,
# and the contract does not deadlock with that expand either.
for my $i (1 .. $queued_rounds)
{
	my $m = "contract_$i";
	$node->safe_psql('postgres',
		    "SELECT zdm.expand('$m', '{\"operations\":[{\"add_column\":{\"table\":\"orders\","
		  . "\"up\":\"length(note)\",\"column\":{\"name\":\"$m\",\"type\":\"integer\",\"nullable\":false}}}]}')"
	);
	1 while $node->safe_psql('postgres', "SELECT zdm.backfill('$m', 10000)") > 0;
	my @r = queued(
		'SELECT count(*) FROM orders',
		[ $m, "SELECT zdm.contract('$m')" ],
		[ "after_$m", add_columns([ 'orders', "after_$m" ]) ]);
	push @contract_deadlocks, "contract $i: $_->{err}"
	  for grep { $_->{err} =~ /40P01|deadlock detected/ } @r;
	push @contract_failures, "contract $i: $_->{err}" for grep { !$_->{ok} } @r;
}
is(scalar(@contract_deadlocks), 0, 'no contract or expand ended in a deadlock')
  or diag join("\n", @contract_deadlocks);
is(scalar(@contract_failures), 0, 'every contract and expand applied')
  or diag join("\n", @contract_failures);
is( $node->safe_psql(
		'postgres', q{
	SELECT string_agg(DISTINCT phase, ',') FROM zdm.migrations
	 WHERE name ~ '^(after_)?contract_'}),
	'contracted,expanded',
	'the contracts are contracted, the expands expanded');

# Nothing is left waiting or holding a claim.
is( $node->safe_psql(
		'postgres', q{SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 4}),
	'0',
	'no claim survives its transaction');

$barrier->quit;
$node->stop;
done_testing();
