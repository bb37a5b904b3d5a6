# The psql recipe (README "Migration runners: psql"), as a migration role:
# release 1 is `psql -1 -f expand.sql`, the backfill a shell loop of
# zdm.backfill() calls (backfill.sh), release 2 `psql -1 -f contract.sql`.
# What ZdmRunner.pm says every runner test checks, plus: a contract
# deployed before the backfill is refused and changes nothing.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZdmRunner;

my $dir = runner_dir('psql');
my $psql = need_command('psql', 'psql');
my $node = start_shop('psql');
my %env = migrator_env($node);
my @release1 = ($psql, '-X', '-1', '-v', 'ON_ERROR_STOP=1', '-f', 'expand.sql');
my @release2 = ($psql, '-X', '-1', '-v', 'ON_ERROR_STOP=1', '-f', 'contract.sql');

# Release 1 while another instance expands and then rolls back: fails.
my ($rc, $out) = deploy_while_held($node, 'ROLLBACK', \@release1, $dir, %env);
isnt($rc, 0, 'release 1 fails when the expand it skipped rolled back');
like($out, qr/migration "001_orders_status_enum" was not expanded: the session expanding it rolled back/,
	'and says why');
is(state_of($node), 'no migration | id not null, customer not null, legacy_status not null | 0 triggers',
	'nothing is expanded');

# Again, the other instance commits: release 1 waits and succeeds.
($rc, $out) = deploy_while_held($node, 'COMMIT', \@release1, $dir, %env);
is($rc, 0, 'release 1 succeeds once the expand it skipped commits') or diag($out);
like($out, qr/^ expanded$/m, 'it reports the phase');

# Run again (a redeploy): expand skips, the phase is returned at once.
($rc, $out) = run_runner(\@release1, $dir, %env);
is($rc, 0, 'release 1 again: a no-op') or diag($out);

app_writes($node);

# Release 2 before the backfill: refused, nothing changes.
my $before = state_of($node);
($rc, $out) = run_runner(\@release2, $dir, %env);
isnt($rc, 0, 'release 2 before the backfill is refused');
like($out, qr/cannot be contracted before its backfill is done/, 'and says to backfill first');
is(state_of($node), $before, 'and changes nothing');

# The backfill from the shell, then release 2.
($rc, $out) = run_runner([ 'sh', 'backfill.sh', '001_orders_status_enum', '5000' ], $dir, %env);
is($rc, 0, 'the shell loop backfills') or diag($out);
is($node->safe_psql('shop', "SELECT phase, batches >= 4 FROM zdm.status"), 'backfilled|t',
	'in batches of 5000');
($rc, $out) = run_runner(\@release2, $dir, %env);
is($rc, 0, 'release 2 contracts') or diag($out);
check_end_state($node);

# The loop stops at an error instead of spinning.
($rc, $out) = run_runner([ 'sh', 'backfill.sh', 'no_such_migration' ], $dir, %env);
isnt($rc, 0, 'the shell loop stops at an error');

$node->stop;
done_testing();
