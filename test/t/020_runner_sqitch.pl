# The sqitch recipe (README "Migration runners: sqitch"; test/runners/sqitch),
# as a migration role: release 1 is `sqitch deploy --to
# orders_status_expand` (expand, and start_backfill for the background
# worker), release 2 `sqitch deploy` (contract).  What ZdmRunner.pm says
# every runner test checks, plus sqitch's registry and `sqitch verify`.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZdmRunner;

my $dir = runner_dir('sqitch');
my $sqitch = need_command('sqitch (Debian package sqitch)', 'sqitch');
my $node = start_shop('sqitch');
my %env = (migrator_env($node), SQITCH_FULLNAME => 'zdm test', SQITCH_EMAIL => 'zdm@example.invalid');
my @release1 = ($sqitch, 'deploy', '--to', 'orders_status_expand', 'db:pg:');
my @release2 = ($sqitch, 'deploy', 'db:pg:');
my $deployed = q{SELECT coalesce(string_agg(change, ', ' ORDER BY committed_at), 'none') FROM sqitch.changes};

# Release 1 while another instance expands and then rolls back: fails,
# and sqitch records no change.
my ($rc, $out) = deploy_while_held($node, 'ROLLBACK', \@release1, $dir, %env);
isnt($rc, 0, 'release 1 fails when the expand it skipped rolled back');
like($out, qr/was not expanded: the session expanding it rolled back/, 'and says why');
is($node->safe_psql('shop', $deployed), 'none', 'sqitch records no change');
is(state_of($node), 'no migration | id not null, customer not null, legacy_status not null | 0 triggers',
	'nothing is expanded');

# Again, the other instance commits: release 1 waits and succeeds.
($rc, $out) = deploy_while_held($node, 'COMMIT', \@release1, $dir, %env);
is($rc, 0, 'release 1 succeeds once the expand it skipped commits') or diag($out);
is($node->safe_psql('shop', $deployed), 'orders_status_expand', 'sqitch records release 1');

app_writes($node);
wait_backfilled($node);

($rc, $out) = run_runner(\@release2, $dir, %env);
is($rc, 0, 'release 2 contracts') or diag($out);
is($node->safe_psql('shop', $deployed), 'orders_status_expand, orders_status_contract',
	'sqitch records release 2');
check_end_state($node);

($rc, $out) = run_runner([ $sqitch, 'verify', 'db:pg:' ], $dir, %env);
is($rc, 0, 'sqitch verify passes') or diag($out);
($rc, $out) = run_runner(\@release2, $dir, %env);
like($out, qr/Nothing to deploy/, 'a redeploy has nothing to do');

$node->stop;
done_testing();
