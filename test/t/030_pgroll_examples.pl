# pgroll's 56 example migrations, in sequence, as pgroll runs them.
#
# ../shared/pgroll-format/examples (copied into test/pgroll-examples with
# pgroll's license notice) form one sequence on an empty database: each
# builds on what the earlier ones left.  A migration role (not a
# superuser: GRANT zdm_migrator, owner of its database) runs each file
# unchanged through zdm: expand, the backfill (zdm.backfill until 0), the
# background worker's deferred steps, verify, contract, the worker's steps
# after contract (forced: no client runs here, so there is no telemetry
# for the gate).  A migration zdm refuses at expand changes nothing, and
# the sequence goes on (later ones that need what it would have made fail
# too, as they would in pgroll after a failed start).
#
# The test prints each migration's outcome and holds zdm to the list of
# those that run their whole lifecycle: one that stops running fails it,
# one that starts running is reported (add it to @expected).
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $dir = "$FindBin::RealBin/../pgroll-examples";
opendir(my $dh, $dir) or die "$dir: $!";
my @files = sort grep { /^\d\d_.*\.json$/ } readdir($dh);
closedir($dh);
is(scalar(@files), 56, "pgroll's 56 examples are here");

# The migrations that run their whole lifecycle with this zdm (36 of 56).
# The others: operation kinds zdm does not implement yet (rename_table,
# sql, drop_table, rename_column, set_replica_identity; create_table's
# "constraints" and a column's "references"), those that need what one of
# them would have made (06, 21, 24, 41, 48, 53, 56), 35 (its "down" names
# a column that does not exist) and 45 (an "up" that converts values in a
# create_constraint: zdm keeps one column, see the README).
my @expected = qw(
  01_create_tables 02_create_another_table 03_add_column
  08_create_fruits_table 09_drop_column 10_create_index
  11_drop_index 12_create_employees_table 14_add_reviews_table
  15_set_column_unique 16_set_nullable 17_add_rating_column
  18_change_column_type 20_create_posts_table 22_add_check_constraint
  23_drop_check_constraint 25_add_table_with_check_constraint 26_add_column_with_check_constraint
  27_drop_unique_constraint 28_different_defaults 30_add_column_simple_up
  31_unset_not_null 33_rename_check_constraint 34_create_events_table
  36_set_comment_to_null 37_create_partial_index 38_create_hash_index_with_fillfactor
  39_add_column_with_multiple_pk_in_table 42_create_unique_index 43_create_tickets_table
  44_add_table_unique_constraint 46_alter_column_drop_default 47_add_table_foreign_key_constraint
  49_unset_not_null_on_indexed_column 54_create_index_with_opclass 55_add_primary_key_constraint_to_table);

my $node = PostgreSQL::Test::Cluster->new('pgroll');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE ROLE migrator LOGIN;
	CREATE DATABASE app OWNER migrator;
});
$node->safe_psql('app', q{
	CREATE EXTENSION zdm;
	GRANT zdm_migrator TO migrator;
});

# Run sql as the migration role; (ok, stdout, stderr).
sub as_migrator
{
	my ($sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('app', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', 'migrator', '-v', 'ON_ERROR_STOP=1' ]);
	return ($rc == 0, $out, $err);
}

# Wait for the worker to owe the migration nothing; its phase, or the error.
sub settle
{
	my ($name) = @_;
	my $phase;
	for (1 .. 1200)
	{
		$phase = $node->safe_psql('app',
			"SELECT phase || CASE WHEN deferred IS NOT NULL AND phase <> 'failed' AND last_error IS NULL"
			  . " THEN ' (owed)' ELSE coalesce(': ' || last_error, '') END"
			  . " FROM zdm.status WHERE name = '$name'");
		return $phase unless $phase =~ /\(owed\)$/;
		select(undef, undef, undef, 0.1);
	}
	return $phase;
}

my (%outcome, @ran);
for my $file (@files)
{
	(my $name = $file) =~ s/\.json$//;
	my $json = slurp_file("$dir/$file");
	my ($ok, $out, $err) = as_migrator("SELECT zdm.expand('$name', \$zdm\$$json\$zdm\$)");
	if (!$ok)
	{
		($outcome{$name} = "refused at expand: $err") =~ s/\n.*//s;
		next;
	}
	# The backfill, as a runner's loop does it (each call commits).
	my $rows = 1;
	for (1 .. 1000)
	{
		($ok, $rows, $err) = as_migrator("SELECT zdm.backfill('$name', 5000)");
		last if !$ok || $rows == 0;
	}
	my $phase = settle($name);
	if (!$ok || $phase ne 'backfilled')
	{
		($outcome{$name} = "stopped before contract: " . ($ok ? $phase : $err)) =~ s/\n.*//s;
		as_migrator("SELECT zdm.rollback('$name')");
		settle($name);
		next;
	}
	($ok, $out, $err) = as_migrator("SELECT zdm.verify('$name')");
	if (!$ok || $out ne '0')
	{
		($outcome{$name} = "verify: " . ($ok ? "$out inconsistent rows" : $err)) =~ s/\n.*//s;
		next;
	}
	# No client runs here, so the contract gate has no telemetry to judge
	# the retired version's traffic by and would refuse (as it should on a
	# live database that records none): forced (force => true, journaled
	# as a gate override).
	($ok, $out, $err) = as_migrator("SELECT zdm.contract('$name', force => true)");
	$phase = $ok ? settle($name) : '';
	if (!$ok || $phase ne 'contracted')
	{
		($outcome{$name} = "contract: " . ($ok ? $phase : $err)) =~ s/\n.*//s;
		next;
	}
	$outcome{$name} = 'ran its whole lifecycle';
	push @ran, $name;
}

for my $file (@files)
{
	(my $name = $file) =~ s/\.json$//;
	note(sprintf("%-45s %s", $name, $outcome{$name}));
}
my %ran = map { $_ => 1 } @ran;
for my $name (@expected)
{
	ok($ran{$name}, "$name runs its whole lifecycle") or diag($outcome{$name});
}
my %expected = map { $_ => 1 } @expected;
for my $name (grep { !$expected{$_} } @ran)
{
	diag("$name now runs its whole lifecycle too: add it to \@expected");
}
note(scalar(@ran) . " of " . scalar(@files) . " run their whole lifecycle");

# Nothing a refused migration tried is left half done: no INVALID index.
is($node->safe_psql('app', 'SELECT count(*) FROM pg_index WHERE NOT indisvalid'), '0',
	'no INVALID index is left behind');

$node->stop;
done_testing();
