# The dbmate recipe (README "Migration runners: dbmate";
# test/runners/dbmate), as a migration role: release 1 is `dbmate up` over
# the expand file and the backfill file (transaction:false, a loop of
# committed batches), release 2 `dbmate up` with the contract file added.
# dbmate 2.36 from npm (its Linux binary, package @dbmate/linux-x64),
# installed in test/runners by test/deps.sh (npm ci).  dbmate takes no lock
# of its own, so two instances deploying at once both run the expand file:
# the case zdm.wait_expanded() is for.  What ZdmRunner.pm says every runner
# test checks, plus the schema_migrations table.
use strict;
use warnings;
use File::Copy qw(copy);
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZdmRunner;

my $dir = runner_dir('dbmate');
my $dbmate = need_command('dbmate (npm package @dbmate/linux-x64, test/runners)',
	runner_dir('node_modules') . '/@dbmate/linux-x64/bin/dbmate');
my $node = start_shop('dbmate');
my %env = (DATABASE_URL => 'postgres://migrator@:' . $node->port . '/shop?socket=' . $node->host . '&sslmode=disable');

# Release 1 ships the first two files; release 2 all three.
my $release1_dir = PostgreSQL::Test::Utils::tempdir();
for my $f ('20250106090000_orders_status_expand.sql', '20250106090100_orders_status_backfill.sql')
{
	copy("$dir/db/migrations/$f", "$release1_dir/$f") or die "copy $f: $!";
}
my @release1 = ($dbmate, '--no-dump-schema', '--migrations-dir', $release1_dir, 'up');
my @release2 = ($dbmate, '--no-dump-schema', '--migrations-dir', "$dir/db/migrations", 'up');
my $deployed = q{SELECT coalesce(string_agg(version, ', ' ORDER BY version), 'none') FROM schema_migrations};

# Release 1 while another instance expands and then rolls back: fails,
# and nothing is recorded (without the wait, dbmate would record the
# expand file as applied with no migration behind it).
my ($rc, $out) = deploy_while_held($node, 'ROLLBACK', \@release1, $dir, %env);
isnt($rc, 0, 'release 1 fails when the expand it skipped rolled back');
like($out, qr/was not expanded: the session expanding it rolled back/, 'and says why');
is($node->safe_psql('shop', $deployed), 'none', 'schema_migrations records nothing');
is(state_of($node), 'no migration | id not null, customer not null, legacy_status not null | 0 triggers',
	'nothing is expanded');

# Again, the other instance commits: release 1 waits, then backfills.
($rc, $out) = deploy_while_held($node, 'COMMIT', \@release1, $dir, %env);
is($rc, 0, 'release 1 succeeds once the expand it skipped commits') or diag($out);
is($node->safe_psql('shop', $deployed), '20250106090000, 20250106090100',
	'schema_migrations records release 1');
is($node->safe_psql('shop', 'SELECT phase, batches FROM zdm.status'), 'backfilled|4',
	'the backfill file converted the rows, a committed batch of 5000 at a time');

app_writes($node);

($rc, $out) = run_runner(\@release2, $dir, %env);
is($rc, 0, 'release 2 contracts') or diag($out);
is($node->safe_psql('shop', $deployed), '20250106090000, 20250106090100, 20250120090000',
	'schema_migrations records release 2');
check_end_state($node);

($rc, $out) = run_runner(\@release2, $dir, %env);
is($rc, 0, 'a redeploy succeeds') or diag($out);
unlike($out, qr/Applying/, 'and has nothing to do');

$node->stop;
done_testing();
