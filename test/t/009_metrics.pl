# zdm.metrics() is valid Prometheus text exposition: promtool (Debian's
# prometheus package) checks it, with label values that need escaping,
# with and without traffic.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('metrics');
$node->init;
$node->start;

my $promtool = '/usr/bin/promtool';
ok(-x $promtool, 'promtool is installed (test/deps.sh installs prometheus)');

sub check_metrics
{
	my ($label) = @_;
	my $metrics = $node->safe_psql('postgres', 'SELECT zdm.metrics()');
	my $file = $node->basedir . '/metrics.txt';
	open(my $fh, '>', $file) or die "cannot write $file: $!";
	print $fh "$metrics\n";
	close($fh);
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ $promtool, 'check', 'metrics' ], '<', $file, '>', \$stdout, '2>', \$stderr);
	ok($ok, "promtool accepts zdm.metrics() $label") or diag("$stdout$stderr\n$metrics");
	return $metrics;
}

$node->safe_psql('postgres', 'CREATE EXTENSION zdm');
check_metrics('with no migration and no traffic');

$node->safe_psql(
	'postgres', q{
	CREATE TABLE orders (id int PRIMARY KEY, legacy_status text NOT NULL);
	INSERT INTO orders SELECT g, 'paid' FROM generate_series(1, 100) g;
	SELECT zdm.expand('001 "quoted" \ name', '{"versions": {"old": "v3", "new": "v\"4"}, "operations": [{"alter_column": {"table": "orders", "column": "legacy_status", "name": "status", "up": "upper(legacy_status)", "down": "lower(status)"}}]}');
	SELECT zdm.backfill('001 "quoted" \ name', 60);
	SELECT zdm.record_traffic('v3', 7), zdm.record_traffic('v"4', 993);
});
my $metrics = check_metrics('with a migration, traffic and escaped labels');
like($metrics, qr/^zdm_api_requests\{version="v3"\} 7$/m, 'requests of v3');
like($metrics, qr/^zdm_api_request_share\{version="v\\"4"\} 0\.993/m, 'share of v"4, its quote escaped');
like($metrics, qr/^zdm_migration_phase\{migration="001 \\"quoted\\" \\\\ name",phase="backfilling"\} 1$/m,
	'phase of the migration, quotes and backslash escaped');
like($metrics, qr/^zdm_backfill_rows_total\{migration="001 \\"quoted\\" \\\\ name"\} 60$/m, 'rows backfilled');

$node->stop;
done_testing();
