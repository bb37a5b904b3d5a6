# The deferred-step engine with create_index and drop_index, as a migration
# role (not a superuser), on two servers: one without
# shared_preload_libraries, one with it (the launcher).  On each:
#
#   - an expand rolled back starts nothing: no index, nothing owed;
#   - the whole lifecycle: expand returns at once while the worker builds
#     the index CONCURRENTLY (seen in pg_stat_activity and zdm.status),
#     the migration becomes "backfilled" once it is built, contract; then
#     a drop_index, contracted: the worker drops the index afterwards;
#   - the deferred-steps worker killed with SIGKILL in the middle of CREATE
#     INDEX CONCURRENTLY (the build is slowed by its predicate, an
#     immutable function that sleeps): the postmaster restarts every
#     backend, the INVALID index the build left is there, the step is
#     still owed; with the launcher it resumes with no call, without it
#     zdm.backfill(name) resumes it; the INVALID index is dropped first
#     (journaled), the build runs again, the migration becomes
#     "backfilled", no INVALID index is left;
#   - an immediate shutdown in the middle of a build: the same, resumed by
#     the launcher or by zdm.start_backfill(name);
#   - a unique index over duplicate rows: phase "failed" with 23505 in
#     last_error, no INVALID index left, rollback works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $rows = 4000;

# How long the slow predicate sleeps per row (0: not at all), for the
# workers that connect from now on (a database setting).
sub set_delay
{
	my ($node, $seconds) = @_;
	$node->safe_psql('postgres', "ALTER DATABASE shop SET zdm_test.delay = '$seconds'");
}

sub start_node
{
	my ($name, $preload) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	# restart_after_crash: the test framework turns it off; the SIGKILL of
	# the worker relies on it.
	$node->append_conf('postgresql.conf', qq{
restart_after_crash = on
max_worker_processes = 16
});
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'zdm'
zdm.launcher_naptime = 1
}) if $preload;
	$node->start;
	$node->safe_psql(
		'postgres', q{
		CREATE ROLE migrator LOGIN;
		CREATE DATABASE shop OWNER migrator;
	});
	$node->safe_psql('shop', q{
		CREATE EXTENSION zdm;
		GRANT zdm_migrator TO migrator;
		GRANT CREATE ON SCHEMA public TO migrator;
	});
	set_delay($node, 0);
	$node->safe_psql(
		'shop', qq{
		CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, code text);
		INSERT INTO items SELECT g, g % 1000, 'c' || g FROM generate_series(1, $rows) g;
		ANALYZE items;
		-- An immutable predicate that sleeps zdm_test.delay seconds a row.
		CREATE FUNCTION slow_pos(x bigint) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS \$\$
		BEGIN
		    PERFORM pg_sleep(coalesce(nullif(current_setting('zdm_test.delay', true), ''), '0')::float8);
		    RETURN x > 0;
		END
		\$\$;
	}, extra_params => [ '-U', 'migrator' ]);
	return $node;
}

# As the migration role.
sub mig
{
	my ($node, $sql) = @_;
	return $node->safe_psql('shop', $sql, extra_params => [ '-U', 'migrator' ]);
}

sub status
{
	my ($node, $name, $columns) = @_;
	return mig($node, "SELECT $columns FROM zdm.status WHERE name = '$name'");
}

# The indexes of items other than its primary key, with their validity.
sub indexes
{
	my ($node) = @_;
	return $node->safe_psql(
		'shop', q{
		SELECT coalesce(string_agg(indexrelid::regclass || CASE WHEN indisvalid THEN '' ELSE ' INVALID' END,
		                           ', ' ORDER BY indexrelid::regclass::text), '')
		  FROM pg_index WHERE indrelid = 'items'::regclass AND NOT indisprimary});
}

# Wait until the worker owes the migration nothing (or a step failed).
sub settle
{
	my ($node, $name, $what) = @_;
	$node->poll_query_until('shop',
		"SELECT deferred IS NULL OR phase = 'failed' OR last_error IS NOT NULL FROM zdm.status WHERE name = '$name'")
	  or die "$name: the worker did not finish its steps $what";
}

# Wait until the deferred-steps worker runs a statement matching $like; its pid.
sub wait_running
{
	my ($node, $like, $what) = @_;
	$node->poll_query_until('shop',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'zdm deferred steps' AND query LIKE '$like'")
	  or die "the worker does not run $like $what";
	return $node->safe_psql('shop',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'zdm deferred steps' AND query LIKE '$like'");
}

sub index_op
{
	my ($index, $extra) = @_;
	return qq('{"operations": [{"create_index": {"name": "$index", "table": "items", "columns": [{"column": "qty"}]$extra}}]}');
}

for my $preload (0, 1)
{
	my $label = $preload ? 'preload' : 'no preload';
	my $node = start_node($preload ? 'preload' : 'plain', $preload);
	is($node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = 'migrator'"),
		'f', "$label: the migration role is not a superuser");
	if ($preload)
	{
		$node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'zdm launcher'")
		  or die 'the zdm launcher does not run';
	}

	# ---------- an expand rolled back starts nothing ----------

	my ($ret, $out, $err) = $node->psql('shop',
		"BEGIN; SELECT zdm.expand('m_gone', " . index_op('items_gone') . "); ROLLBACK;",
		extra_params => [ '-U', 'migrator' ]);
	is($ret, 0, "$label: an expand rolled back");
	# A worker started for it waits for the expand's transaction, then finds nothing.
	$node->poll_query_until('shop',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'zdm deferred steps'")
	  or die 'a deferred-steps worker stays';
	is(indexes($node), '', "$label: the rolled-back expand built no index");
	is(mig($node, "SELECT count(*) FROM zdm.migrations WHERE name = 'm_gone'"), '0',
		"$label: and recorded nothing");

	# ---------- the whole lifecycle ----------

	set_delay($node, 0.002);
	is(mig($node, "SELECT zdm.expand('m_life', "
		  . index_op('items_qty', ', "predicate": "slow_pos(id)"') . ")"),
		't', "$label: expand returns while the index is to be built");
	wait_running($node, 'CREATE INDEX CONCURRENTLY items_qty %', 'for m_life');
	is(status($node, 'm_life', "phase || ' ' || deferred || ' ' || deferred_done || '/' || deferred_total"),
		'backfilling deferred 0/1', "$label: zdm.status shows the build in progress");
	like(status($node, 'm_life', 'deferred_step'), qr/^CREATE INDEX CONCURRENTLY items_qty ON public\.items/,
		"$label: and its statement");
	($ret, $out, $err) = $node->psql('shop', "SELECT zdm.contract('m_life', force => true)",
		extra_params => [ '-U', 'migrator' ]);
	like($err, qr/ERROR:  migration "m_life" cannot be contracted yet: index "items_qty" is still being built/,
		"$label: contract is refused while the index is built");
	settle($node, 'm_life', 'in the lifecycle');
	is(status($node, 'm_life', 'phase'), 'backfilled', "$label: backfilled once the index is built");
	is(indexes($node), 'items_qty', "$label: the index is valid");
	is(mig($node, "SELECT zdm.contract('m_life', force => true)"), 't', "$label: contracted");
	is(status($node, 'm_life', "phase || coalesce(deferred, '-')"), 'contracted-',
		"$label: nothing owed after contract");

	set_delay($node, 0);
	is(mig($node, q{SELECT zdm.expand('m_drop', '{"operations": [{"drop_index": {"name": "items_qty"}}]}')}),
		't', "$label: drop_index expanded");
	is(indexes($node), 'items_qty', "$label: the index stays until contract");
	mig($node, "SELECT zdm.backfill('m_drop')");
	is(mig($node, "SELECT zdm.contract('m_drop', force => true)"), 't', "$label: drop_index contracted");
	settle($node, 'm_drop', 'after contract');
	is(indexes($node), '', "$label: the worker dropped the index after contract");
	is(status($node, 'm_drop', "phase || coalesce(last_error, '')"), 'contracted',
		"$label: contracted, no error");
	is( mig($node,
			"SELECT statement FROM zdm.migration_log WHERE migration = 'm_drop' AND event = 'ddl'"),
		'DROP INDEX CONCURRENTLY IF EXISTS public.items_qty',
		"$label: journaled");

	# ---------- the worker killed in the middle of a build ----------

	set_delay($node, 0.002);
	mig($node, "SELECT zdm.expand('m_kill', " . index_op('items_kill', ', "predicate": "slow_pos(id)"') . ")");
	my $pid = wait_running($node, 'CREATE INDEX CONCURRENTLY items_kill %', 'before the SIGKILL');
	is(indexes($node), 'items_kill INVALID', "$label: the build's index is INVALID while it runs");
	# Whoever builds after the crash builds fast.
	set_delay($node, 0);
	my $offset = -s $node->logfile;
	kill 'KILL', $pid;
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset);
	$node->wait_for_log(qr/database system is ready to accept connections/, $offset);
	$node->poll_query_until('shop', 'SELECT 1', '1')
	  or die 'the server did not come back after the worker was killed';
	if (!$preload)
	{
		# Nothing runs it by itself: the step is owed, the INVALID index there.
		is(status($node, 'm_kill', "phase || ' ' || deferred"), 'backfilling deferred',
			"$label: after the SIGKILL the step is still owed");
		is(indexes($node), 'items_kill INVALID', "$label: the killed build left an INVALID index");
		is(mig($node, "SELECT zdm.backfill('m_kill')"), '0', "$label: zdm.backfill() resumes it");
	}
	settle($node, 'm_kill', 'after the SIGKILL');
	is(status($node, 'm_kill', "phase || coalesce(last_error, '')"), 'backfilled',
		"$label: backfilled after the SIGKILL" . ($preload ? ', with no call' : ''));
	is(indexes($node), 'items_kill', "$label: the index is valid, no INVALID one is left");
	is( mig($node,
			"SELECT count(*) FROM zdm.migration_log WHERE migration = 'm_kill' AND event = 'ddl'"
			  . " AND statement = 'DROP INDEX CONCURRENTLY IF EXISTS public.items_kill'"
			  . " AND detail LIKE 'the INVALID index left by an interrupted%'"),
		'1', "$label: the INVALID index was dropped before the build ran again");
	is(mig($node, "SELECT zdm.contract('m_kill', force => true)"), 't', "$label: m_kill contracted");

	# ---------- an immediate shutdown in the middle of a build ----------

	set_delay($node, 0.002);
	mig($node, "SELECT zdm.expand('m_imm', " . index_op('items_imm', ', "predicate": "slow_pos(id)"') . ")");
	wait_running($node, 'CREATE INDEX CONCURRENTLY items_imm %', 'before the immediate shutdown');
	set_delay($node, 0);
	$node->stop('immediate');
	$node->start;
	if (!$preload)
	{
		is(status($node, 'm_imm', "phase || ' ' || deferred"), 'backfilling deferred',
			"$label: after the immediate shutdown the step is still owed");
		is(indexes($node), 'items_imm INVALID, items_kill', "$label: the interrupted build left an INVALID index");
		is(mig($node, "SELECT zdm.start_backfill('m_imm')"), 't', "$label: zdm.start_backfill() resumes it");
	}
	settle($node, 'm_imm', 'after the immediate shutdown');
	is(status($node, 'm_imm', "phase || coalesce(last_error, '')"), 'backfilled',
		"$label: backfilled after the immediate shutdown" . ($preload ? ', with no call' : ''));
	is(indexes($node), 'items_imm, items_kill', "$label: valid, no INVALID index left");

	# ---------- a unique index over duplicates ----------

	mig($node, "SELECT zdm.expand('m_dup', " . index_op('items_qty_unique', ', "unique": true') . ")");
	settle($node, 'm_dup', 'for the unique index');
	is(status($node, 'm_dup', 'phase'), 'failed', "$label: a unique index over duplicates fails the migration");
	like(status($node, 'm_dup', 'last_error'),
		qr/could not create unique index "items_qty_unique" \(SQLSTATE 23505\): Key \(qty\)=\(\d+\) is duplicated/,
		"$label: with 23505 in last_error");
	is(indexes($node), 'items_imm, items_kill', "$label: no INVALID index left by the failed build");
	is(mig($node, "SELECT zdm.rollback('m_dup')"), 't', "$label: the failed migration rolls back");
	settle($node, 'm_dup', 'after its rollback');
	is(status($node, 'm_dup', "phase || coalesce(deferred, '-') || coalesce(last_error, '')"), 'rolled_back-',
		"$label: rolled back, nothing owed");
	is(indexes($node), 'items_imm, items_kill', "$label: the table is as it was");

	# Every worker leaves once nothing is owed.
	$node->poll_query_until('shop',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'zdm deferred steps'")
	  or die 'a deferred-steps worker stays';
	pass("$label: no deferred-steps worker is left");
	$node->stop;
}

done_testing();
