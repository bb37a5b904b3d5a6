# Monitoring zdm with Prometheus: the files in test/monitoring.
#
#   - promtool checks the alerting rules (zdm-alerts.yml) and runs their
#     unit tests (zdm-alerts.test.yml);
#   - Debian's prometheus-postgres-exporter, with postgres_exporter.yaml as
#     its custom queries, scrapes a cluster as a role that has pg_monitor
#     and nothing else (over the unix socket); its /metrics, fetched over
#     HTTP on 127.0.0.1, has zdm's series with the values the database
#     holds, and promtool accepts it;
#   - the exporter's zdm series and zdm.metrics() agree (names, labels,
#     values);
#   - the alerting rules, run by promtool on the series scraped from each
#     source, fire exactly the alerts the database's state calls for: the
#     retired version is below the threshold, and a dual-write trigger
#     whose migration zdm does not know refuses writes; without telemetry
#     (a NaN share) none.
use strict;
use warnings;
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $monitoring = dirname(__FILE__) . '/../monitoring';
my $promtool = '/usr/bin/promtool';
my $exporter = '/usr/bin/prometheus-postgres-exporter';
ok(-x $promtool, 'promtool is installed (test/deps.sh installs prometheus)');
ok(-x $exporter, 'the exporter is installed (test/deps.sh installs prometheus-postgres-exporter)');

# Run a command; returns (success, stdout and stderr).
sub run_cmd
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return ($ok, "$out$err");
}

# ---- the rule files on their own ----

my ($ok, $out) = run_cmd($promtool, 'check', 'rules', "$monitoring/zdm-alerts.yml");
ok($ok, 'promtool check rules zdm-alerts.yml') or diag($out);
like($out, qr/SUCCESS: 5 rules found/, 'five alerting rules');
($ok, $out) = run_cmd($promtool, 'test', 'rules', "$monitoring/zdm-alerts.test.yml");
ok($ok, 'promtool test rules zdm-alerts.test.yml') or diag($out);

# ---- a cluster in the state the alerts are about ----

my $node = PostgreSQL::Test::Cluster->new('monitoring');
$node->init;
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION zdm;
	CREATE ROLE migrator LOGIN;
	CREATE ROLE monitor LOGIN;
	GRANT zdm_migrator TO migrator;
	GRANT pg_monitor TO monitor;
	GRANT CREATE ON SCHEMA public TO migrator;
	GRANT CREATE ON DATABASE postgres TO migrator;
});
$node->safe_psql(
	'postgres', q{
	SET ROLE migrator;
	CREATE TABLE orders (id int PRIMARY KEY, legacy_status text NOT NULL);
	INSERT INTO orders SELECT g, 'paid' FROM generate_series(1, 100) g;
	SELECT zdm.expand('001_orders', '{"versions": {"old": "v3", "new": "v4"}, "operations": [{"alter_column": {"table": "orders", "column": "legacy_status", "name": "status_code", "up": "upper(legacy_status)", "down": "lower(status_code)"}}]}');
	SELECT zdm.backfill('001_orders', 1000);
	SELECT zdm.backfill('001_orders', 1000);
	SELECT zdm.record_traffic('v3', 5), zdm.record_traffic('v4', 985), zdm.record_traffic('(undeclared)', 10);
	CREATE TABLE notes (id int PRIMARY KEY, body text);
	SELECT zdm.expand('002_notes', '{"operations": [{"add_column": {"table": "notes", "column": {"name": "title", "type": "text", "nullable": true}, "up": "left(body, 10)"}}]}');
});
# 002_notes's state is gone, as after a schema-only restore: its trigger
# refuses writes.
$node->safe_psql('postgres', "DELETE FROM zdm.migrations WHERE name = '002_notes'");
is( $node->safe_psql('postgres',
		"SELECT rolsuper, (SELECT count(*) FROM pg_auth_members WHERE member = 'monitor'::regrole) FROM pg_roles WHERE rolname = 'monitor'"),
	'f|1', 'the monitoring role is no superuser and has one role: pg_monitor');

# ---- the exporter, as the monitoring role ----

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $dsn = sprintf('host=%s port=%d user=monitor dbname=postgres sslmode=disable', $node->host, $node->port);
my ($exp_out, $exp_err) = ('', '');
my $exp = IPC::Run::start(
	[
		$exporter, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$monitoring/postgres_exporter.yaml",
		'--disable-default-metrics', '--disable-settings-metrics',
		'--no-collector.database', '--no-collector.bgwriter',
		'--log.level=warn'
	],
	'>', \$exp_out, '2>', \$exp_err,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });

my $http = HTTP::Tiny->new(timeout => 10);
my $scrape = '';
foreach my $try (1 .. 100)
{
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	if ($res->{success} && $res->{content} =~ /^zdm_/m)
	{
		$scrape = $res->{content};
		last;
	}
	$exp->pump_nb;
	last unless $exp->pumpable;
	select(undef, undef, undef, 0.1);
}
$exp->kill_kill;
ok($scrape ne '', "the exporter served /metrics on 127.0.0.1:$port") or diag($exp_err);
unlike($exp_err, qr/level=error/, 'the exporter logged no error (every query ran as pg_monitor)')
  or diag($exp_err);

like($scrape, qr/^pg_up 1$/m, 'the exporter reached PostgreSQL');
like($scrape, qr/^pg_exporter_user_queries_load_error\{[^}]*\} 0$/m, 'the queries file loaded');
like($scrape, qr/^pg_exporter_last_scrape_error 0$/m, 'the scrape had no error');
my $labels = qr/datname="postgres",/;
like($scrape, qr/^zdm_api_requests\{$labels.*version="v3"\} 5$/m, 'requests of v3');
like($scrape, qr/^zdm_api_requests\{$labels.*version="\(undeclared\)"\} 10$/m, 'undeclared requests');
like($scrape, qr/^zdm_api_request_share\{$labels.*version="v4"\} 0\.985$/m, 'share of v4');
like($scrape, qr/^zdm_migration_phase\{$labels\s*migration="001_orders",phase="backfilled",.*\} 1$/m,
	'phase of 001_orders');
like($scrape, qr/^zdm_backfill_rows_total\{$labels\s*migration="001_orders",.*\} 100$/m, 'rows backfilled');
like($scrape, qr/^zdm_backfill_throttled\{$labels\s*migration="001_orders",.*\} 0$/m, 'not throttled');
like($scrape, qr/^zdm_contract_gate_share\{$labels\s*migration="001_orders",.*version="v3"\} 0\.005050505050505051$/m,
	'the gate counts 5 of 990 (undeclared left out)');
like($scrape, qr/^zdm_contract_gate_threshold\{$labels\s*migration="001_orders",.*version="v3"\} 0\.01$/m,
	'the threshold');
like($scrape, qr/^zdm_contract_gate_requests\{$labels\s*migration="001_orders",.*version="v3"\} 990$/m,
	'the requests the gate counts');
like($scrape, qr/^zdm_dual_write_active\{$labels\s*migration="001_orders",.*table="public.orders"\} 1$/m,
	'the trigger of 001_orders dual-writes');
like($scrape, qr/^zdm_dual_write_active\{$labels\s*migration="002_notes",.*table="public.notes"\} 0$/m,
	'the trigger of 002_notes does not');

my $dir = $node->basedir;
sub check_metrics
{
	my ($text, $what) = @_;
	my $file = "$dir/check.prom";
	open(my $fh, '>', $file) or die "cannot write $file: $!";
	print $fh $text;
	close($fh);
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $promtool, 'check', 'metrics' ], '<', $file, '>', \$out, '2>', \$err);
	ok($ok, "promtool check metrics accepts $what") or diag("$out$err");
}
check_metrics($scrape, 'the exporter\'s /metrics');
my $metrics = $node->safe_psql('postgres', 'SET ROLE monitor; SELECT zdm.metrics()') . "\n";
check_metrics($metrics, 'zdm.metrics() read by the monitoring role');

# ---- the two sources agree ----

# zdm's samples of an exposition: "name{labels}" => value, without the
# labels a scrape adds and the rates, which change from read to read.
sub zdm_samples
{
	my ($text) = @_;
	my %samples;
	foreach my $line (split /\n/, $text)
	{
		next unless $line =~ /^(zdm_\w+)\{(.*)\} (\S+)$/;
		my ($name, $labels, $value) = ($1, $2, $3);
		next if $name eq 'zdm_backfill_rows_per_second';
		my @kept = grep { !/^(datname|server)=/ } ($labels =~ /(\w+="(?:[^"\\]|\\.)*")/g);
		$samples{ $name . '{' . join(',', sort @kept) . '}' } = $value eq 'NaN' ? 'NaN' : 0 + $value;
	}
	return \%samples;
}
my $from_exporter = zdm_samples($scrape);
my $from_function = zdm_samples($metrics);
cmp_ok(scalar(keys %$from_function), '>=', 12, 'zdm.metrics() has the series');
is_deeply($from_exporter, $from_function, 'the exporter\'s zdm series are those of zdm.metrics(), with the same values');

# ---- the alerts, on what each source says ----

# A promtool test holding every zdm sample of an exposition for 30
# minutes; it passes when the rules then fire exactly the alerts expected.
sub alerts_fire
{
	my ($text, $what, @expected) = @_;
	my $series = '';
	foreach my $line (split /\n/, $text)
	{
		next unless $line =~ /^(zdm_\w+\{.*\}) (\S+)$/;
		my ($selector, $value) = ($1, $2);
		$selector =~ s/'/''/g;
		my $values = $value eq 'NaN' ? join(' ', ('NaN') x 31) : "${value}x30";
		$series .= "      - series: '$selector'\n        values: '$values'\n";
	}
	my $test = "$dir/live.test.yml";
	open(my $fh, '>', $test) or die "cannot write $test: $!";
	print $fh <<"YAML";
rule_files:
  - $monitoring/zdm-alerts.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
$series
    promql_expr_test:
      - expr: 'count by (alertname, migration) (ALERTS{alertstate="firing"})'
        eval_time: 30m
        exp_samples:
YAML
	print $fh @expected
	  ? join('', map { "          - labels: '{alertname=\"$_->[0]\",migration=\"$_->[1]\"}'\n            value: 1\n" } @expected)
	  : "          []\n";
	close($fh);
	my ($ok, $out) = run_cmd($promtool, 'test', 'rules', $test);
	ok($ok, "the rules on $what fire " . (@expected ? join(', ', map { "$_->[0] ($_->[1])" } @expected) : 'nothing'))
	  or diag($out);
}
my @expected = ([ 'ZdmRetiredVersionBelowThreshold', '001_orders' ], [ 'ZdmDualWriteInactive', '002_notes' ]);
alerts_fire($scrape, 'the exporter\'s series', @expected);
alerts_fire($metrics, 'zdm.metrics()', @expected);

# ---- no telemetry: the share is NaN, and the seed's alert is silent ----

$node->safe_psql('postgres', 'CREATE DATABASE quiet');
$node->safe_psql(
	'quiet', q{
	CREATE EXTENSION zdm;
	CREATE TABLE items (id int PRIMARY KEY, qty text NOT NULL);
	SELECT zdm.expand('001_items', '{"versions": {"old": "v1", "new": "v2"}, "operations": [{"alter_column": {"table": "items", "column": "qty", "name": "quantity", "up": "qty", "down": "quantity"}}]}');
	SELECT zdm.backfill('001_items');
});
$metrics = $node->safe_psql('quiet', 'SET ROLE monitor; SELECT zdm.metrics()') . "\n";
like($metrics, qr/^zdm_contract_gate_share\{migration="001_items",version="v1"\} NaN$/m, 'no telemetry: the share is NaN');
like($metrics, qr/^zdm_contract_gate_requests\{migration="001_items",version="v1"\} 0$/m, 'no telemetry: no requests');
check_metrics($metrics, 'zdm.metrics() with a NaN share');
alerts_fire($metrics, 'zdm.metrics() without telemetry');

$node->stop;
done_testing();
