# The node-pg-migrate recipe (README "Migration runners: node-pg-migrate";
# test/runners/node-pg-migrate), as a migration role: release 1 is
# `node-pg-migrate up 1 --no-single-transaction` (expand, and start_backfill
# for the background worker), release 2 `node-pg-migrate up
# --no-single-transaction` (contract).  node-pg-migrate 7.9 from npm,
# installed in test/runners by test/deps.sh (npm ci).  What ZdmRunner.pm
# says every runner test checks, plus the pgmigrations table.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZdmRunner;

my $dir = runner_dir('node-pg-migrate');
my $npm_bin = runner_dir('node_modules') . '/.bin';
need_command('node', 'node');
my $nodepg = need_command('node-pg-migrate (npm, test/runners)', "$npm_bin/node-pg-migrate");
my $node = start_shop('nodepg');
my %env = (DATABASE_URL => 'postgresql://migrator@/shop?host=' . $node->host . '&port=' . $node->port);
my @release1 = ($nodepg, 'up', '1', '--no-single-transaction');
my @release2 = ($nodepg, 'up', '--no-single-transaction');
my $deployed = q{SELECT coalesce(string_agg(name, ', ' ORDER BY id), 'none') FROM pgmigrations};

# Release 1 while another instance expands and then rolls back: fails,
# and nothing is recorded.
my ($rc, $out) = deploy_while_held($node, 'ROLLBACK', \@release1, $dir, %env);
isnt($rc, 0, 'release 1 fails when the expand it skipped rolled back');
like($out, qr/was not expanded: the session expanding it rolled back/, 'and says why');
is($node->safe_psql('shop', $deployed), 'none', 'pgmigrations records nothing');
is(state_of($node), 'no migration | id not null, customer not null, legacy_status not null | 0 triggers',
	'nothing is expanded');

# Again, the other instance commits: release 1 waits and succeeds.
($rc, $out) = deploy_while_held($node, 'COMMIT', \@release1, $dir, %env);
is($rc, 0, 'release 1 succeeds once the expand it skipped commits') or diag($out);
is($node->safe_psql('shop', $deployed), '1736154000000_orders-status-expand',
	'pgmigrations records release 1');

app_writes($node);
wait_backfilled($node);

($rc, $out) = run_runner(\@release2, $dir, %env);
is($rc, 0, 'release 2 contracts') or diag($out);
is($node->safe_psql('shop', $deployed),
	'1736154000000_orders-status-expand, 1737363600000_orders-status-contract',
	'pgmigrations records release 2');
check_end_state($node);

($rc, $out) = run_runner(\@release2, $dir, %env);
like($out, qr/No migrations to run/, 'a redeploy has nothing to do');

$node->stop;
done_testing();
