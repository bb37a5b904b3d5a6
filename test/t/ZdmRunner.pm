# ZdmRunner: what the runner tests (t/019 to t/023) share.
#
# Each test deploys the seed's orders migration (001_orders_status_enum:
# legacy_status text -> status_enum order_status) with one migration runner
# and its recipe from test/runners/<runner> (the README's "Migration
# runners"), as a migration role (migrator: LOGIN, GRANT zdm_migrator, owner
# of its database and tables; no superuser), against a temporary cluster
# that listens on a unix socket only:
#
#   - release 1 while another session holds the migration's lock and then
#     rolls back: the runner must fail and record nothing (its expand got
#     false; zdm.wait_expanded() says the expand was rolled back);
#   - release 1 again while another session holds the lock and commits:
#     the runner waits, succeeds and records release 1;
#   - old and new clients write during the migration (an application role);
#   - the backfill, as the recipe does it;
#   - release 2 (contract), and the end state: one column, NOT NULL, every
#     row converted, no trigger, the runner's registry with both releases.
package ZdmRunner;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

our @EXPORT = qw(runner_dir need_command missing_dependency start_shop migrator_env run_runner
  deploy_while_held app_writes wait_backfilled check_end_state state_of
  $MIGRATION_NAME $MIGRATION_JSON $ROWS);

our $MIGRATION_NAME = '001_orders_status_enum';
our $MIGRATION_JSON =
  q({"operations": [{"alter_column": {"table": "orders", "column": "legacy_status", "name": "status_enum", "type": "order_status", "nullable": false, "up": "legacy_status::order_status", "down": "status_enum::text"}}]});
our $ROWS = 20000;

# The folder of a runner's recipe (test/runners/<name>, copied beside t/).
sub runner_dir
{
	my ($name) = @_;
	return File::Spec->rel2abs(File::Spec->catdir(dirname(__FILE__), '..', 'runners', $name));
}

# The path of a command, or a skip (a failure under CI, where test/deps.sh
# has installed every runner).
sub need_command
{
	my ($label, @candidates) = @_;
	for my $c (@candidates)
	{
		return $c if $c =~ m{/} && -x $c;
		next if $c =~ m{/};
		for my $dir (split /:/, $ENV{PATH})
		{
			return "$dir/$c" if -x "$dir/$c";
		}
	}
	missing_dependency($label);
}

# Skip the test, or fail it under CI, where test/deps.sh has installed
# everything.
sub missing_dependency
{
	my ($label) = @_;
	if ($ENV{CI})
	{
		fail("$label is installed (test/deps.sh installs it)");
		done_testing();
		exit 0;
	}
	plan skip_all => "$label is not installed: run test/deps.sh (make deps)";
}

# A cluster with database "shop" owned by migrator, zdm in it, and the
# seed's orders table (ROWS rows) created by migrator; an application role
# "app" with table privileges only.
sub start_shop
{
	my ($name) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->start;
	$node->safe_psql(
		'postgres', q{
		CREATE ROLE migrator LOGIN;
		CREATE ROLE app LOGIN;
		CREATE DATABASE shop OWNER migrator;
	});
	$node->safe_psql(
		'shop', q{
		CREATE EXTENSION zdm;
		GRANT zdm_migrator TO migrator;
	});
	is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'migrator'"),
		'f', 'the migration role is not a superuser');
	$node->safe_psql(
		'shop', qq{
		CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
		CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, legacy_status text NOT NULL);
		INSERT INTO orders (customer, legacy_status)
		  SELECT 'c' || g, (ARRAY['pending', 'paid', 'shipped'])[1 + g % 3]
		    FROM generate_series(1, $ROWS) g;
		GRANT SELECT, INSERT, UPDATE ON orders TO app;
		GRANT USAGE ON SEQUENCE orders_id_seq TO app;
	}, extra_params => [ '-U', 'migrator' ]);
	return $node;
}

# The environment a runner connects with: libpq's variables, as migrator.
sub migrator_env
{
	my ($node) = @_;
	return (
		PGHOST => $node->host,
		PGPORT => $node->port,
		PGUSER => 'migrator',
		PGDATABASE => 'shop');
}

# Run a runner's command in a folder with extra environment; returns
# (exit code, stdout and stderr together).
sub run_runner
{
	my ($cmd, $dir, %env) = @_;
	my $out = '';
	local %ENV = (%ENV, %env);
	my $h = IPC::Run::start($cmd, init => sub { chdir $dir or die "chdir $dir: $!" },
		'>', \$out, '2>&1',
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$h->finish;
	return ($h->result(0), $out);
}

# Run a runner's release while another session (another instance of the
# application, say) holds the migration's expand open, and end that
# session with $end (COMMIT or ROLLBACK) once the runner waits for it.
# Returns what run_runner returns.
sub deploy_while_held
{
	my ($node, $end, $cmd, $dir, %env) = @_;
	# Timers of twice the default: the poll below may take the default whole.
	my $holder = $node->background_psql('shop', extra_params => [ '-U', 'migrator' ],
		timeout => 2 * $PostgreSQL::Test::Utils::timeout_default);
	$holder->query_safe('BEGIN');
	is($holder->query_safe("SELECT zdm.expand('$MIGRATION_NAME', '$MIGRATION_JSON')"),
		't', "another session expands and holds its transaction ($end)");
	my $pid = $holder->query_safe('SELECT pg_backend_pid()');

	my $out = '';
	my $h;
	{
		local %ENV = (%ENV, %env);
		$h = IPC::Run::start($cmd, init => sub { chdir $dir or die "chdir $dir: $!" },
			'>', \$out, '2>&1',
			IPC::Run::timeout(2 * $PostgreSQL::Test::Utils::timeout_default));
	}
	# The runner's expand returned false and it now waits in
	# zdm.wait_expanded() for the holder, and for nothing else.
	ok( $node->poll_query_until(
			'shop', qq{
			SELECT count(*) > 0 FROM pg_stat_activity
			 WHERE $pid = ANY (pg_blocking_pids(pid)) AND query LIKE '%wait_expanded%'}),
		"the runner waits for the session that holds the expand ($end)");
	$holder->query_safe($end);
	$holder->quit;
	# A runner that did not wait has long finished; a stuck one is killed.
	if (!eval { $h->finish; 1 })
	{
		$h->kill_kill;
		fail("the runner finishes ($end)");
		return (-1, $out);
	}
	return ($h->result(0), $out);
}

# Old and new clients write while the migration is live, as "app".
sub app_writes
{
	my ($node) = @_;
	$node->safe_psql(
		'shop', q{
		INSERT INTO orders (customer, legacy_status) VALUES ('v3 client', 'delivered');
		INSERT INTO orders (customer, status_enum) VALUES ('v4 client', 'cancelled');
		UPDATE orders SET legacy_status = 'shipped' WHERE id = 1;
	}, extra_params => [ '-U', 'app' ]);
}

# Wait until the background worker has backfilled the migration.
sub wait_backfilled
{
	my ($node) = @_;
	ok( $node->poll_query_until(
			'shop',
			"SELECT phase = 'backfilled' FROM zdm.status WHERE name = '$MIGRATION_NAME'"),
		'the background worker backfills the migration');
}

# The migration's phase and the orders table's shape, as one string.
sub state_of
{
	my ($node) = @_;
	return $node->safe_psql(
		'shop', qq{
		SELECT concat_ws(' | ',
		    coalesce((SELECT phase FROM zdm.migrations WHERE name = '$MIGRATION_NAME'), 'no migration'),
		    (SELECT string_agg(attname || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
		       FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped),
		    (SELECT count(*) || ' triggers' FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal))
	});
}

# After release 2: contracted, one status column, every row converted.
sub check_end_state
{
	my ($node) = @_;
	is(state_of($node),
		'contracted | id not null, customer not null, status_enum not null | 0 triggers',
		'contracted: status_enum NOT NULL, legacy_status and the trigger gone');
	is( $node->safe_psql(
			'shop', q{
			SELECT count(*) || ' rows; '
			    || count(*) FILTER (WHERE status_enum = 'paid') || ' paid, '
			    || count(*) FILTER (WHERE status_enum = 'shipped') || ' shipped, '
			    || count(*) FILTER (WHERE status_enum = 'pending') || ' pending; '
			    || (SELECT status_enum FROM orders WHERE customer = 'v3 client') || ', '
			    || (SELECT status_enum FROM orders WHERE customer = 'v4 client') || ', '
			    || (SELECT status_enum FROM orders WHERE id = 1)
			  FROM orders}),
		($ROWS + 2) . ' rows; 6666 paid, 6668 shipped, 6666 pending; delivered, cancelled, shipped',
		'every row converted, the clients\' writes included');
}

1;
