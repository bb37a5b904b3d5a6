# The Alembic recipe (README "Migration runners: Alembic";
# test/runners/alembic), as a migration role: release 1 is `alembic upgrade
# 0001_orders_status_expand` (expand, and start_backfill for the background
# worker), release 2 `alembic upgrade head` (contract).  Alembic 1.8 and
# psycopg2 from Debian (alembic, python3-psycopg2).  env.py sets
# transaction_per_migration; the migration's JSON is a bind parameter.
# What ZdmRunner.pm says every runner test checks, plus alembic_version.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZdmRunner;

my $dir = runner_dir('alembic');
# Debian's alembic runs on Debian's python3, where python3-psycopg2 is.
my $alembic = need_command('alembic (Debian packages alembic, python3-psycopg2)', '/usr/bin/alembic', 'alembic');
my $node = start_shop('alembic');
my %env = (
	ZDM_DATABASE_URL => 'postgresql+psycopg2://migrator@/shop?host=' . $node->host . '&port=' . $node->port,
	PYTHONDONTWRITEBYTECODE => '1');
my @release1 = ($alembic, '-c', 'alembic.ini', 'upgrade', '0001_orders_status_expand');
my @release2 = ($alembic, '-c', 'alembic.ini', 'upgrade', 'head');
my $deployed = q{SELECT coalesce(string_agg(version_num, ', '), 'none') FROM alembic_version};

# Release 1 while another instance expands and then rolls back: fails,
# and nothing is recorded.
my ($rc, $out) = deploy_while_held($node, 'ROLLBACK', \@release1, $dir, %env);
isnt($rc, 0, 'release 1 fails when the expand it skipped rolled back');
like($out, qr/was not expanded: the session expanding it rolled back/, 'and says why');
is($node->safe_psql('shop', $deployed), 'none', 'alembic_version records nothing');
is(state_of($node), 'no migration | id not null, customer not null, legacy_status not null | 0 triggers',
	'nothing is expanded');

# Again, the other instance commits: release 1 waits and succeeds.
($rc, $out) = deploy_while_held($node, 'COMMIT', \@release1, $dir, %env);
is($rc, 0, 'release 1 succeeds once the expand it skipped commits') or diag($out);
is($node->safe_psql('shop', $deployed), '0001_orders_status_expand', 'alembic_version records release 1');

app_writes($node);
wait_backfilled($node);

($rc, $out) = run_runner(\@release2, $dir, %env);
is($rc, 0, 'release 2 contracts') or diag($out);
is($node->safe_psql('shop', $deployed), '0002_orders_status_contract', 'alembic_version records release 2');
check_end_state($node);

($rc, $out) = run_runner(\@release2, $dir, %env);
is($rc, 0, 'a redeploy succeeds') or diag($out);
is($node->safe_psql('shop', $deployed), '0002_orders_status_contract', 'and changes nothing');

$node->stop;
done_testing();
