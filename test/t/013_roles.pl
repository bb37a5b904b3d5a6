# zdm as the roles its users have: no role gets rights through zdm that it
# did not have, and application roles need nothing new.
#
# Roles (all LOGIN, none superuser):
#   migrator  GRANT zdm_migrator (the one documented grant), owns its tables,
#             CREATE on schema public (its tables) and on the database (the
#             schemas of API versions)
#   app       only table privileges (SELECT, INSERT, UPDATE on orders, t)
#   monitor   GRANT pg_monitor
#   attacker  GRANT zdm_migrator and CREATE on schema public, owns nothing
#   nobody    nothing at all
#
# Everything runs twice: without and with shared_preload_libraries = 'zdm'
# (with it, the planner and executor hooks run for every statement of every
# role, and the telemetry is counted and flushed by the worker as the
# bootstrap superuser).  Then a dump is restored into a cluster without the
# migration's author: the migration names its author by name, and zdm
# refuses to run it as anyone else.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Run sql as role; returns (exit code, stdout, stderr with SQLSTATEs).
sub as_role
{
	my ($node, $role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role, '-v', 'ON_ERROR_STOP=1' ]);
	return ($rc, $out, $err);
}

sub succeeds
{
	my ($node, $role, $sql, $name) = @_;
	my ($rc, $out, $err) = as_role($node, $role, $sql);
	is($rc, 0, "$name: succeeds") or diag($err);
	return $out;
}

sub fails_with
{
	my ($node, $role, $sql, $pattern, $name) = @_;
	my ($rc, $out, $err) = as_role($node, $role, $sql);
	isnt($rc, 0, "$name: refused");
	like($err, $pattern, "$name: the error");
}

sub is_superuser
{
	my ($node, $role) = @_;
	return $node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = '$role'");
}

# The migration state a role could have tampered with, as one string.
sub state_of
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(format('%s %s %s %s %s', name, phase, author, md5(plan::text), worker_requested), ';' ORDER BY name)"
		  . " FROM zdm.migrations");
}

sub run_suite
{
	my ($preload) = @_;
	my $tag = $preload ? 'preload' : 'no preload';
	my $node = PostgreSQL::Test::Cluster->new($preload ? 'preload' : 'plain');
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'zdm'\nzdm.launcher_naptime = 1")
	  if $preload;
	$node->start;

	$node->safe_psql(
		'postgres', q{
		CREATE EXTENSION zdm;
		CREATE ROLE migrator LOGIN;
		CREATE ROLE app LOGIN;
		CREATE ROLE monitor LOGIN;
		CREATE ROLE attacker LOGIN;
		CREATE ROLE nobody LOGIN;
		GRANT zdm_migrator TO migrator, attacker;
		GRANT pg_monitor TO monitor;
		GRANT CREATE ON SCHEMA public TO migrator, attacker;
		-- a migration with API versions creates a schema per version
		GRANT CREATE ON DATABASE postgres TO migrator;
	});

	# The migration role creates its tables and gives the app its privileges.
	succeeds(
		$node, 'migrator', q{
		CREATE TABLE t (id int PRIMARY KEY, v int);
		INSERT INTO t VALUES (1, 1);
		CREATE TABLE orders (id bigint PRIMARY KEY, qty text NOT NULL, status text);
		INSERT INTO orders SELECT g, g::text, 'paid' FROM generate_series(1, 2000) g;
		CREATE TABLE items (id bigint PRIMARY KEY, label text);
		INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g;
		GRANT SELECT, UPDATE ON t TO app;
		GRANT SELECT, INSERT, UPDATE ON orders, items TO app;
		-- a function only the migrator owns; it would make its caller's
		-- role superuser if it ran as a superuser
		CREATE FUNCTION public.sneaky(x text) RETURNS text LANGUAGE plpgsql AS $$
		BEGIN
			BEGIN
				EXECUTE 'ALTER ROLE migrator SUPERUSER';
			EXCEPTION WHEN OTHERS THEN NULL;
			END;
			RETURN upper(x);
		END $$;
	}, "$tag: the migration role sets up its tables");

	# ---- 1. installing zdm changes nothing for an application role ----

	succeeds($node, 'app', 'UPDATE t SET v = 2; SELECT v FROM t',
		"$tag: app updates a table with zdm installed (no migration yet)");
	succeeds($node, 'app', "SELECT zdm.differs(1, 2); UPDATE t SET v = 3",
		"$tag: app updates after zdm is loaded in its session");

	# ---- the attacker's trap for the worker's health queries ----
	# An exact-match count(int4) in public would win over pg_catalog's
	# count("any") in any query resolved with public on the search_path.
	succeeds(
		$node, 'attacker', q{
		CREATE FUNCTION public.escalate(int8) RETURNS int8 LANGUAGE plpgsql AS $$
		BEGIN
			BEGIN
				EXECUTE 'ALTER ROLE attacker SUPERUSER';
			EXCEPTION WHEN OTHERS THEN NULL;
			END;
			RETURN $1;
		END $$;
		CREATE AGGREGATE public.count(int4) (sfunc = int8inc_any, stype = int8,
			initcond = '0', finalfunc = public.escalate);
	}, "$tag: the attacker plants count(int4) in public");

	# ---- 2. the migration role, with its one grant ----

	# A role that holds the advisory lock SQL can reach at the migration's
	# key (zdm's key space, the hash of its name) cannot make expand skip.
	my $holder = $node->background_psql('postgres', extra_params => [ '-U', 'nobody' ]);
	$holder->query_safe("SELECT pg_advisory_lock(8021101, hashtext('m_qty'))");

	succeeds(
		$node, 'migrator', q{
		SELECT zdm.expand('m_qty', '{"versions": {"old": "v3", "new": "v4"},
			"operations": [{"alter_column": {"table": "orders", "column": "qty",
				"type": "integer", "up": "qty::integer", "down": "qty::text"}}]}');
	}, "$tag: migrator expands a migration with API versions");
	$holder->quit;
	is($node->safe_psql('postgres', "SELECT phase FROM zdm.migrations WHERE name = 'm_qty'"),
		'expanded', "$tag: another role's advisory lock at the migration's key did not make it skip");
	succeeds(
		$node, 'migrator', q{
		SELECT zdm.expand('m_label', '{"operations": [{"alter_column": {"table": "items",
			"column": "label", "name": "label_up", "up": "sneaky(label)", "down": "lower(label_up)"}}]}');
	}, "$tag: migrator expands a migration whose up calls its own function");
	is( $node->safe_psql('postgres', "SELECT string_agg(author, ',' ORDER BY name) FROM zdm.migrations"),
		'migrator,migrator', "$tag: both record their author by name");

	# ---- the application role through the versions ----
	succeeds($node, 'app', "UPDATE t SET v = 4", "$tag: app updates an unmigrated table, migrations live");
	succeeds($node, 'app', "UPDATE orders SET status = 'shipped' WHERE id = 1",
		"$tag: app updates the migrated table directly");
	# Nor do the hooks depend on the app's privileges on zdm's schema, which
	# a DBA may well revoke.
	$node->safe_psql('postgres', 'REVOKE USAGE ON SCHEMA zdm FROM PUBLIC');
	succeeds(
		$node, 'app', q{
		UPDATE t SET v = 5;
		UPDATE orders SET status = 'delivered' WHERE id = 2;
		UPDATE items SET label = 'renamed' WHERE id = 3;
		INSERT INTO items (id, label) VALUES (9001, 'new');
	}, "$tag: app writes with no USAGE on schema zdm");
	$node->safe_psql('postgres', 'GRANT USAGE ON SCHEMA zdm TO PUBLIC');
	is($node->safe_psql('postgres', 'SELECT label_up FROM items WHERE id IN (3, 9001) ORDER BY id'),
		"RENAMED
NEW", "$tag: and the dual-write converted them");

	my $out = succeeds(
		$node, 'app', q{
		SELECT zdm.use_version('v4');
		INSERT INTO orders (id, qty) VALUES (5001, 17);
		UPDATE orders SET qty = qty + 1 WHERE id = 5001;
		SELECT qty FROM orders WHERE id = 5001;
	}, "$tag: app declares v4 and writes through its view");
	like($out, qr/^18$/m, "$tag: v4 sees qty as an integer");
	$out = succeeds(
		$node, 'app', q{
		SELECT zdm.use_version('v3');
		INSERT INTO orders (id, qty) VALUES (5002, '21');
		SELECT qty || '!' FROM orders WHERE id = 5002;
	}, "$tag: app declares v3 and writes through its view");
	like($out, qr/^21!$/m, "$tag: v3 sees qty as text");
	fails_with($node, 'nobody', 'SELECT count(*) FROM v4.orders', qr/42501: permission denied for table orders/,
		"$tag: a role without the table's privileges gets none through the view");

	# ---- escalations, each attempted and refused ----
	my $before = state_of($node);
	for my $role ('migrator', 'attacker')
	{
		fails_with($node, $role, "UPDATE zdm.migrations SET author = 'postgres'",
			qr/42501: permission denied for table migrations/, "$tag: $role sets an author");
		fails_with($node, $role,
			q{UPDATE zdm.migrations SET plan = jsonb_set(plan, '{contract,0,sql}', '"ALTER ROLE attacker SUPERUSER"')},
			qr/42501: permission denied for table migrations/, "$tag: $role edits a stored plan");
		fails_with($node, $role,
			q{INSERT INTO zdm.migrations (name, definition, plan, phase, author)
			  VALUES ('forged', '{}', '{"search_path": "public", "tables": [], "contract":
			  [{"relation": null, "lock": "none", "sql": "ALTER ROLE attacker SUPERUSER"}], "rollback": []}',
			  'backfilled', 'postgres')},
			qr/42501: permission denied for table migrations/, "$tag: $role forges a backfilled migration");
		fails_with($node, $role, "INSERT INTO zdm.api_traffic VALUES (now(), 'v3', 'external', 1)",
			qr/42501: permission denied for table api_traffic/, "$tag: $role writes traffic counts by hand");
		fails_with($node, $role, "DELETE FROM zdm.api_versions",
			qr/42501: permission denied for table api_versions/, "$tag: $role deletes API versions");
	}
	for my $call (
		[ "SELECT zdm.start_backfill('m_qty')", 'start the backfill of' ],
		[ "SELECT zdm.backfill('m_qty', 10)",    'backfill' ],
		[ "SELECT zdm.verify('m_qty')",          'verify' ],
		[ "SELECT zdm.contract('m_qty', force => true)", 'contract' ],
		[ "SELECT zdm.rollback('m_qty')",        'roll back' ],
		[ "SELECT zdm.tune('m_qty', batch_size => 1)", 'tune' ])
	{
		fails_with($node, 'attacker', $call->[0],
			qr/42501: permission denied to \Q$call->[1]\E migration "m_qty"/,
			"$tag: attacker calls $call->[0]");
	}
	is(succeeds($node, 'attacker', 'SELECT zdm.backfill(100)', "$tag: attacker backfills all"),
		'0', "$tag: backfilling all leaves others' migrations alone");
	fails_with($node, 'attacker',
		q{SELECT zdm.expand('m_evil', '{"operations": [{"add_column": {"table": "orders",
			"column": {"name": "x", "type": "int", "nullable": true}}}]}')},
		qr/42501: must be owner of table orders/, "$tag: attacker expands on the migrator's table");
	is(state_of($node), $before, "$tag: the attempts changed nothing");

	# ---- the worker: batches as the author, its own queries untouchable ----
	succeeds($node, 'migrator', "SELECT zdm.start_backfill('m_qty')", "$tag: migrator starts the background backfill");
	# A superuser starts the other one: the worker still runs it as its author.
	$node->safe_psql('postgres', "SELECT zdm.start_backfill('m_label')");
	$node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM zdm.migrations WHERE phase = 'backfilled'")
	  or die "$tag: the backfills did not finish: "
	  . $node->safe_psql('postgres', 'SELECT name, phase, last_error FROM zdm.status');
	is(is_superuser($node, 'attacker'), 'f', "$tag: the worker's health queries did not run the attacker's count()");
	is(is_superuser($node, 'migrator'), 'f', "$tag: the worker ran the author's up as the author");
	is($node->safe_psql('postgres', "SELECT count(*) FROM items WHERE label_up IS DISTINCT FROM upper(label)"),
		'0', "$tag: the backfill converted every row");

	# ---- a superuser verifies and contracts the migrator's migrations ----
	is($node->safe_psql('postgres', "SELECT zdm.verify('m_label')"), '0', "$tag: superuser verifies");
	is(is_superuser($node, 'migrator'), 'f', "$tag: verify ran the author's up as the author");
	$node->safe_psql('postgres', "SELECT zdm.contract('m_label')");
	is(is_superuser($node, 'migrator'), 'f', "$tag: contract lent the author nothing");
	is( $node->safe_psql('postgres',
			"SELECT string_agg(DISTINCT actor, ',') FROM zdm.migration_log WHERE migration = 'm_label' AND event = 'ddl' AND phase = 'contracted'"),
		'migrator', "$tag: the journal shows contract's DDL ran as the author");

	# ---- monitoring ----
	$out = succeeds(
		$node, 'monitor', q{
		SELECT count(*) FROM zdm.status;
		SELECT count(*) >= 0 FROM zdm.api_version_distribution;
		SELECT zdm.metrics() LIKE '%zdm_migration_phase{migration="m_qty",phase="backfilled"} 1%';
	}, "$tag: pg_monitor reads status, distribution and metrics");
	like($out, qr/^2\nt\nt$/m, "$tag: what pg_monitor reads is complete");
	fails_with($node, 'nobody', 'SELECT * FROM zdm.status', qr/42501: permission denied for view status/,
		"$tag: a role with no grant reads no status");
	fails_with($node, 'nobody', 'SELECT zdm.metrics()', qr/42501: permission denied for function metrics/,
		"$tag: a role with no grant reads no metrics");

	# ---- contract of a versioned migration: the retired version's guards ----
	succeeds($node, 'migrator', "SELECT zdm.record_traffic('v4', 1000)", "$tag: migrator records traffic");
	succeeds($node, 'migrator', "SELECT zdm.contract('m_qty')", "$tag: migrator contracts its versioned migration");
	fails_with($node, 'app', 'SELECT * FROM v3.orders',
		qr/55000: API version "v3" was retired by migration "m_qty"/,
		"$tag: app pinned to v3 reads the guard");
	fails_with($node, 'app', "INSERT INTO v3.orders (id, qty) VALUES (6000, '1')",
		qr/55000: API version "v3" was retired by migration "m_qty"/,
		"$tag: app pinned to v3 writes the guard");
	fails_with($node, 'app', "SELECT zdm.use_version('v3')",
		qr/55000: API version "v3" was retired by migration "m_qty"/, "$tag: app declares v3");
	succeeds($node, 'app', "SELECT zdm.use_version('v4'); UPDATE orders SET qty = qty + 1 WHERE id = 5001",
		"$tag: app on v4 after contract");
	is(is_superuser($node, 'attacker'), 'f', "$tag: the attacker is still not superuser");

	$node->stop;
	return $node;
}

run_suite(0);
my $node = run_suite(1);

# ---- restore into a cluster where the author does not exist ----
$node->start;
$node->safe_psql(
	'postgres', q{
	CREATE TABLE r (id int PRIMARY KEY, a text);
	INSERT INTO r SELECT g, g::text FROM generate_series(1, 100) g;
	ALTER TABLE r OWNER TO migrator;
});
succeeds($node, 'migrator',
	q{SELECT zdm.expand('m_r', '{"operations": [{"add_column": {"table": "r",
		"column": {"name": "b", "type": "int", "nullable": true}, "up": "a::int"}}]}')},
	'restore: migrator expands');
my $dump = $node->basedir . '/roles.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'restore: pg_dump');

my $other = PostgreSQL::Test::Cluster->new('other');
$other->init;
$other->start;
# Roles are created in another order, so OIDs differ; "migrator" is missing.
$other->safe_psql('postgres', 'CREATE ROLE somebody SUPERUSER; CREATE ROLE app; CREATE ROLE attacker;'
	  . ' CREATE ROLE monitor; CREATE ROLE nobody; CREATE DATABASE restored');
$other->command_ok([ 'pg_restore', '--no-owner', '--no-privileges', '-d', $other->connstr('restored'), $dump ],
	'restore: pg_restore');
my ($rc, $stdout, $stderr) = $other->psql('restored', "\\set VERBOSITY verbose\nSELECT zdm.backfill('m_r', 1000)");
isnt($rc, 0, 'restore: the backfill of a migration whose author is missing is refused');
like($stderr, qr/42704: role "migrator", the author of migration "m_r", does not exist/,
	'restore: the error names the author');
is($other->safe_psql('restored', "SELECT count(b) FROM r"), '0', 'restore: no row was converted as anyone else');
# A row with no author at all (a superuser's edit) is refused the same way.
$other->safe_psql('restored', "UPDATE zdm.migrations SET author = NULL WHERE name = 'm_r'");
($rc, $stdout, $stderr) = $other->psql('restored', "\\set VERBOSITY verbose\nSELECT zdm.verify('m_r')");
like($stderr, qr/42704: migration "m_r" has no recorded author/, 'restore: a migration with no author is refused');
$other->safe_psql('restored', "UPDATE zdm.migrations SET author = 'migrator' WHERE name = 'm_r'");
$other->safe_psql('restored', 'CREATE ROLE migrator; ALTER TABLE r OWNER TO migrator');
is($other->safe_psql('restored', "SELECT zdm.backfill('m_r', 1000)"), '100', 'restore: with the author back, it runs');

# Traffic counts of the minute being restored do not collide with a flush.
$node->safe_psql('postgres', "SELECT zdm.record_traffic('v9', 5, date_trunc('minute', now()))");
$node->command_ok([ 'pg_dump', '-Fc', '-a', '-t', 'zdm.api_traffic', '-f', "$dump.traffic", '-d', $node->connstr('postgres') ],
	'restore: dump the traffic counts');
# (The rows the full restore brought are cleared first: each row of zdm's
# state has its own replica_id, so the same rows loaded twice are refused,
# as for zdm's other tables; rows of the same minute written apart are not.)
$other->safe_psql('restored', "DELETE FROM zdm.api_traffic; SELECT zdm.record_traffic('v9', 7, date_trunc('minute', now()))");
$other->command_ok([ 'pg_restore', '-a', '-d', $other->connstr('restored'), "$dump.traffic" ],
	'restore: the counts of the same minute load beside the ones written meanwhile');
is($other->safe_psql('restored', "SELECT requests FROM zdm.api_version_distribution WHERE version = 'v9'"),
	'12', 'restore: and both are counted');

done_testing();
