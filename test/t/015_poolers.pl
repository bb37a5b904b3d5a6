# zdm behind a connection pooler: pgbouncer in transaction mode, the mode
# most production deployments use, with shared_preload_libraries = 'zdm'.
#
# pgbouncer gets one server connection for its pool (default_pool_size =
# 1), so the clients of one role take turns on the same backend; the test
# shows they do (pg_backend_pid()).  Two clients of the application role
# "app" (table privileges only), one speaking v3 and one v4, interleave
# their transactions through it:
#
#   - declared per transaction (BEGIN; SELECT zdm.use_version(v, true);
#     ...; COMMIT): each client's statements run under its own version
#     (zdm.api_version, search_path through its schema of views), its
#     writes take its version's side of the dual-write, and the telemetry
#     counts equal work under the two versions equally, statement for
#     statement;
#   - declared per session (SELECT zdm.use_version(v)), the form for a
#     connection of one's own: the declaration stays on the server
#     connection for whichever client comes next.  The v3 client runs as
#     v4, its write takes the v4 side and its statements are counted under
#     v4: the gate would under-count the old version.  This is why is_local
#     exists;
#   - per transaction again, over the connection that the session-level
#     declaration left at v4: still each client its own version;
#   - per role (ALTER ROLE ... SET zdm.api_version, search_path): a role of
#     its own gets a pool of its own, and its settings hold;
#   - connection options (-c zdm.api_version=v3) are refused by pgbouncer.
#
# Skipped only when pgbouncer is not installed; test/deps.sh installs it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my ($pgbouncer) =
  grep { -x $_ }
  map { "$_/pgbouncer" }
  (split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/usr/local/sbin', '/usr/bin');
plan skip_all =>
  'pgbouncer is not installed (test/deps.sh installs the Debian package pgbouncer)'
  unless $pgbouncer;

my $node = PostgreSQL::Test::Cluster->new('poolers');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'zdm'
max_worker_processes = 16
log_statement = 'all'
});
$node->start;

# ---- the database, its roles and the seed's migration ----

$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql(
	'app', q{
	CREATE EXTENSION zdm;
	CREATE ROLE migrator LOGIN;
	GRANT zdm_migrator TO migrator;
	GRANT CREATE ON SCHEMA public TO migrator;
	GRANT CREATE ON DATABASE app TO migrator;
	CREATE ROLE app LOGIN;
	CREATE ROLE app_v3 LOGIN;
});
$node->safe_psql(
	'app', q{
	CREATE TABLE orders (id int PRIMARY KEY, customer text NOT NULL,
	                     legacy_status text NOT NULL DEFAULT 'pending');
	INSERT INTO orders SELECT g, 'before', 'paid' FROM generate_series(1, 10) g;
	GRANT SELECT, INSERT, UPDATE ON orders TO app, app_v3;
	SELECT zdm.expand('001_orders_status', '{"versions": {"old": "v3", "new": "v4"},
	  "operations": [{"alter_column": {"table": "orders", "column": "legacy_status",
	    "name": "status", "up": "upper(legacy_status)", "down": "lower(status)"}}]}');
}, extra_params => [ '-U', 'migrator' ]);
$node->safe_psql(
	'app', q{
	ALTER ROLE app_v3 SET zdm.api_version = 'v3';
	ALTER ROLE app_v3 SET search_path = v3, public;
});

# ---- pgbouncer in transaction mode, one server connection ----

my $dir = PostgreSQL::Test::Utils::tempdir_short();
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node_host = $node->host;
my $node_port = $node->port;
open(my $users, '>', "$dir/users.txt") or die $!;
print $users qq{"app" ""\n"app_v3" ""\n};
close $users;
# No server_check_query: a check would be a statement of its own on the
# server connection, counted under whatever version is in force there.
open(my $ini, '>', "$dir/pgbouncer.ini") or die $!;
print $ini <<"INI";
[databases]
app = host=$node_host port=$node_port dbname=app

[pgbouncer]
unix_socket_dir = $dir
listen_port = $port
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = 1
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 20
server_check_query =
logfile = $dir/pgbouncer.log
INI
close $ini;

my ($bouncer_out, $bouncer_err) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ],
	'>', \$bouncer_out, '2>', \$bouncer_err);
END { $bouncer->kill_kill if $bouncer && $bouncer->pumpable; }

# A libpq connection string through pgbouncer.
sub via_pgbouncer
{
	my ($user) = @_;
	return "host=$dir port=$port dbname=app user=$user";
}

# Run sql through pgbouncer in a psql of its own; (exit code, stdout, stderr).
sub psql_via_pgbouncer
{
	my ($user, $sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			$node->installed_command('psql'), '-XAtq', '-v',
			'ON_ERROR_STOP=1', '-d', via_pgbouncer($user), '-c', $sql
		],
		'>', \$out, '2>', \$err);
	chomp $out;
	return ($? >> 8, $out, $err);
}

my $ready = 0;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	my ($rc) = psql_via_pgbouncer('app', 'SELECT 1');
	if ($rc == 0) { $ready = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($ready, 'pgbouncer accepts connections')
  or BAIL_OUT("pgbouncer did not start: $bouncer_err "
	  . slurp_file("$dir/pgbouncer.log"));

# A client of role app: a psql session of its own, through pgbouncer (the
# last -d wins over the node's connection string).
sub client
{
	return $node->background_psql('app',
		extra_params => [ '-d', via_pgbouncer('app') ]);
}
my %client = (v3 => client(), v4 => client());

# ---- what a client does, and what the telemetry says ----

# The two sides of the migration: a write of both columns on the table
# takes the declared version's side (the trigger believes the declaration).
# Each client inserts a pending order and updates both columns: v3's
# update is about legacy_status (paid), v4's about status (SHIPPED); run
# as the other version, either would leave wrong|WRONG.
my %write = (
	v3 => { insert => "(id, customer, legacy_status) VALUES (%d, 'v3 client', 'pending')",
		update => "legacy_status = 'paid', status = 'WRONG'" },
	v4 => { insert => "(id, customer, status) VALUES (%d, 'v4 client', 'PENDING')",
		update => "legacy_status = 'wrong', status = 'SHIPPED'" });
my %side = (v3 => 'paid|PAID', v4 => 'shipped|SHIPPED');

# The statements a client's transaction counts: the declaration, the
# insert (through the version's view: the other version's view has no
# such column), the update, the check.  BEGIN and COMMIT are not counted.
my $per_transaction = 4;

# One transaction of client $v writing row $id; returns "pid|version|schema".
sub transaction
{
	my ($v, $id) = @_;
	my $insert = sprintf($write{$v}{insert}, $id);
	my $out = $client{$v}->query_safe(
		qq{BEGIN;
		SELECT zdm.use_version('$v', true);
		INSERT INTO orders $insert;
		UPDATE public.orders SET $write{$v}{update} WHERE id = $id;
		SELECT pg_backend_pid() || '|' || current_setting('zdm.api_version') || '|' || current_schema();
		COMMIT;});
	return (split /\n/, $out)[-1];
}

# The test's own queries go straight to the server, declared as version
# "checker", so that what is counted undeclared is the pooler's clients'.
sub check
{
	my ($sql) = @_;
	local $ENV{PGOPTIONS} = '-c zdm.api_version=checker';
	return $node->safe_psql('app', $sql);
}

# The requests counted so far for v3, v4 and undeclared ("v3=n v4=n undeclared=n").
my $counts_sql = q{
	SELECT 'v3=' || coalesce(sum(requests) FILTER (WHERE version = 'v3'), 0)
	    || ' v4=' || coalesce(sum(requests) FILTER (WHERE version = 'v4'), 0)
	    || ' undeclared=' || coalesce(sum(requests) FILTER (WHERE version = '(undeclared)'), 0)
	  FROM zdm.api_version_distribution};
sub counts
{
	my %c = check($counts_sql) =~ /(\w+)=(\d+)/g;
	return \%c;
}

# v3 and v4 counted $v3 and $v4 more requests since $before, and nothing
# was counted undeclared: BEGIN and COMMIT are not counted, and a
# zdm.use_version() call counts under the version it declares.
sub counts_are
{
	my ($before, $v3, $v4, $name) = @_;
	my $expected = sprintf('v3=%d v4=%d undeclared=%d',
		$before->{v3} + $v3, $before->{v4} + $v4, $before->{undeclared});
	local $ENV{PGOPTIONS} = '-c zdm.api_version=checker';
	# the worker's flush moves counts while a query reads them: poll
	ok($node->poll_query_until('app', $counts_sql, $expected), "$name: $expected")
	  or diag('counted: ' . $node->safe_psql('app', $counts_sql));
	return;
}

# The rows of client $v, as "legacy|status" lines: one line per side seen.
sub sides_of
{
	my ($v) = @_;
	return check(
		"SELECT DISTINCT legacy_status || '|' || status FROM orders WHERE customer = '$v client'");
}

# Interleave $n transactions of each client; check versions, pids, rows.
sub interleave
{
	my ($n, $first_id, $tag) = @_;
	my (%pids, %wrong);
	for my $i (0 .. $n - 1)
	{
		for my $v ('v3', 'v4')
		{
			my $id = $first_id + 2 * $i + ($v eq 'v4');
			my ($pid, $version, $schema) = split /\|/,
			  transaction($v, $id);
			$pids{$pid} = 1;
			$wrong{$v}++ if $version ne $v || $schema ne $v;
		}
	}
	is(scalar(keys %pids), 1, "$tag: the two clients took turns on one server connection");
	is($wrong{$_} // 0, 0, "$tag: every transaction of the $_ client ran as $_, through schema $_")
	  for 'v3', 'v4';
	return;
}

# ---- declared per transaction ----

my $n = 10;
my $before = counts();
interleave($n, 1000, 'per transaction');
is(sides_of($_), $side{$_}, "per transaction: the $_ client's writes took the $_ side") for 'v3', 'v4';
counts_are($before, $per_transaction * $n, $per_transaction * $n,
	'per transaction: equal work under v3 and v4 counted equally');
is($client{v3}->query_safe("SELECT current_setting('zdm.api_version') || '|' || current_setting('search_path')"),
	'|"$user", public',
	'per transaction: each declaration ended with its transaction; nothing is left on the server connection');
is(check(q{
	SELECT count(*) FROM pg_stat_activity
	 WHERE datname = 'app' AND usename = 'app'}), '1',
	'pgbouncer held one server connection for the clients of app');

# ---- declared per session: it stays on the server connection ----

$before = counts();
$client{v3}->query_safe("SELECT zdm.use_version('v3')");
$client{v4}->query_safe("SELECT zdm.use_version('v4')");
my $leaked = $client{v3}->query_safe(q{
	UPDATE public.orders SET legacy_status = 'delivered', status = 'WRONG' WHERE id = 1;
	SELECT current_setting('zdm.api_version') || '|' || current_schema()});
is($leaked, 'v4|v4',
	'per session: the v3 client runs as v4, the version the v4 client declared on the same server connection');
is(check(q{SELECT legacy_status || '|' || status FROM orders WHERE id = 1}),
	'wrong|WRONG', 'per session: the v3 client\'s write took the v4 side (v3\'s: delivered|DELIVERED)');
# v3: its declaration only; v4: the v4 declaration and both of the v3
# client's statements.
counts_are($before, 1, 3, 'per session: the v3 client\'s work was counted under v4');

# ---- per transaction again, over the connection left at v4 ----

$before = counts();
interleave($n, 2000, 'per transaction, after a session-level declaration');
is(sides_of($_), $side{$_},
	"per transaction, after a session-level declaration: the $_ client's writes took the $_ side")
  for 'v3', 'v4';
counts_are($before, $per_transaction * $n, $per_transaction * $n,
	'per transaction, after a session-level declaration: counted equally');
is($client{v4}->query_safe("SELECT current_setting('zdm.api_version')"), 'v4',
	'the session-level declaration is still on the server connection, outside those transactions');

# ---- per role ----

# The role's pool gets a server connection of its own; pgbouncer opens it
# with a SET application_name of its own, counted under the role's version
# like any statement there.  Open it first, then count.
my ($rc, $out, $err) = psql_via_pgbouncer('app_v3', 'SELECT 1');
is($rc, 0, 'per role: the role connects through pgbouncer') or diag($err);
$before = counts();
($rc, $out, $err) = psql_via_pgbouncer('app_v3', q{
	BEGIN;
	INSERT INTO orders (id, customer, legacy_status) VALUES (3000, 'v3 role', 'pending');
	UPDATE public.orders SET legacy_status = 'paid', status = 'WRONG' WHERE id = 3000;
	SELECT current_setting('zdm.api_version') || '|' || current_schema();
	COMMIT;});
is($rc, 0, 'per role: the role\'s client works through pgbouncer') or diag($err);
is($out, 'v3|v3', 'per role: it runs as v3, through schema v3');
is(check(q{SELECT legacy_status || '|' || status FROM orders WHERE id = 3000}),
	'paid|PAID', 'per role: its write took the v3 side');
counts_are($before, 3, 0, 'per role: counted under v3');

# ---- connection options ----

{
	local $ENV{PGOPTIONS} = '-c zdm.api_version=v3';
	($rc, $out, $err) = psql_via_pgbouncer('app', 'SELECT 1');
}
isnt($rc, 0, 'connection options: refused by pgbouncer');
like($err, qr/unsupported startup parameter: options/, 'connection options: the error') or diag($err);

$client{$_}->quit for 'v3', 'v4';
$bouncer->kill_kill;
$node->stop;
done_testing();
