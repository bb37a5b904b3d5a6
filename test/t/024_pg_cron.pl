# The pg_cron recipe (README "Scheduled backfill with pg_cron"), as a
# migration role: a job that calls zdm.backfill(name, 5000) every minute
# converts rows, and once the migration is contracted the same job keeps
# succeeding (0 rows, a NOTICE) instead of failing every minute.
#
# Debian's pg_cron 1.4 (postgresql-15-cron) schedules by the minute only,
# so each run is waited for: the first at the next minute boundary, the
# second a minute later.  The test takes 1 to 2 minutes.
#
# The server listens on a unix socket only: pg_cron connects to it with
# libpq, so cron.host names the socket directory.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use ZdmRunner;

# pg_cron must be installed where this PostgreSQL loads libraries from.
my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
missing_dependency('pg_cron (Debian package postgresql-15-cron)') unless -e "$pkglibdir/pg_cron.so";

my $node = start_shop('cron');
my $socket_dir = $node->host;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'shop'
cron.host = '$socket_dir'
});
$node->restart;
$node->safe_psql(
	'shop', q{
	CREATE EXTENSION pg_cron;
	GRANT USAGE ON SCHEMA cron TO migrator;
});

sub as_migrator
{
	my ($sql) = @_;
	return $node->safe_psql('shop', $sql, extra_params => [ '-U', 'migrator' ]);
}

# Release 1: expand.  The job is the migration role's.
is(as_migrator("SELECT zdm.expand('$MIGRATION_NAME', '$MIGRATION_JSON')"), 't', 'expanded');
my $jobid = as_migrator(
	"SELECT cron.schedule('backfill-orders', '* * * * *', \$\$SELECT zdm.backfill('$MIGRATION_NAME', 5000)\$\$)");
like($jobid, qr/^\d+$/, 'the migration role schedules the backfill job');

# A finished run of the job after $after (a timestamptz literal): "status|message".
sub next_run
{
	my ($after, $name) = @_;
	ok( $node->poll_query_until(
			'shop', qq{
			SELECT count(*) > 0 FROM cron.job_run_details
			 WHERE jobid = $jobid AND start_time > '$after' AND status IN ('succeeded', 'failed')}),
		$name);
	return $node->safe_psql(
		'shop', qq{
		SELECT status || '|' || username || '|' || coalesce(return_message, '')
		  FROM cron.job_run_details
		 WHERE jobid = $jobid AND start_time > '$after' AND status IN ('succeeded', 'failed')
		 ORDER BY start_time LIMIT 1});
}

# The first run (at the next minute) converts a batch.
my $t0 = $node->safe_psql('shop', 'SELECT now()');
is(next_run($t0, 'the job runs within a minute'), 'succeeded|migrator|1 row',
	'the first run succeeds, as the migration role');
is($node->safe_psql('shop', 'SELECT count(*) FROM orders WHERE status_enum IS NOT NULL'),
	'5000', 'and converts a batch of 5000 rows');

# The rest by hand (a job converting 5000 rows a minute would take four
# minutes here), then release 2.
as_migrator("SELECT zdm.backfill('$MIGRATION_NAME', 100000)") for 1 .. 2;
is(as_migrator("SELECT zdm.contract('$MIGRATION_NAME')"), 't', 'contracted');
my $contracted = $node->safe_psql('shop', 'SELECT now()');

# The job, still scheduled, keeps succeeding: 0 rows and a NOTICE.
is(next_run($contracted, 'the job runs after the contract'), 'succeeded|migrator|1 row',
	'after the contract the job still succeeds');
is($node->safe_psql('shop', "SELECT count(*) FROM cron.job_run_details WHERE jobid = $jobid AND status = 'failed'"),
	'0', 'no run of the job failed');

# Unscheduling is still the clean end.
is(as_migrator("SELECT cron.unschedule('backfill-orders')"), 't', 'the job is unscheduled');

$node->stop;
done_testing();
