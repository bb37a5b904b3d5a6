# The seed's migration through logical replication, publisher and
# subscriber alike (README, "Replication").
#
# Two clusters on one machine: a publisher (wal_level = logical, zdm
# preloaded) and a subscriber (zdm not preloaded: its dual-write trigger
# loads the library in the apply worker).  Two databases on each, both
# with a 3,000-row orders table and zdm:
#
#   shop      publication FOR TABLE orders;
#   shop_all  publication FOR ALL TABLES, zdm's own tables included (zdm
#             installed on the publisher after the publication: a WARNING).
#
# Writers (pgbench, as an application role) run on both publishers
# through the whole migration: v3 clients (legacy_status) until the
# publisher's contract, v4 clients (status_enum) from the publisher's
# expand on.  The migration goes in the documented order, as a migration
# role:
#
#   1. the publisher's expand first is refused, naming the slot and the
#      order (the wrong order);
#   2. the subscriber's expand: replicated v3 rows get status_enum from its
#      trigger, fired by the apply worker;
#   3. the publisher's expand, with zdm.subscribers_expanded naming the
#      slot; the backfill, while the shop subscription is disabled: its
#      slot stops consuming and both backfills pause, with the slot in
#      zdm.status.throttle_reason, until it is enabled again; on the
#      shop_all subscriber a local transaction holds its own row of the
#      migration meanwhile, and replication goes on;
#   4. the subscriber's contract before the publisher's is refused (the
#      publisher still has legacy_status);
#   5. the publisher's contract, then the subscriber's, which needs no
#      backfill of its own there (zdm.verify judges the rows replication
#      converted).
#
# Replication never stops (no apply error, none in the subscriber's log),
# both tables end identical (row count and checksum), and both sides
# record the migration contracted.  With FOR ALL TABLES, no row of one
# cluster's zdm state (migrations, journal, traffic counts) reaches the
# other's, and the publisher's backfill request starts nothing on the
# subscriber.  Last, a second migration in shop shows the order of
# rollback: the subscriber's first is refused, after the publisher's it
# goes through.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

my $rows = 3000;
my $migration = '001_orders_status_enum';
my $definition = '{"operations": [{"alter_column": {'
  . '"table": "orders", "column": "legacy_status", "name": "status_enum",'
  . '"type": "order_status", "nullable": false,'
  . '"up": "legacy_status::order_status", "down": "status_enum::text"}}]}';

my %pairs = (
	shop => { pub => 'pub_orders', sub => 'sub_orders', what => 'FOR TABLE orders' },
	shop_all => { pub => 'pub_all', sub => 'sub_all', what => 'FOR ALL TABLES' },);
my @dbs = sort keys %pairs;

my $publisher = PostgreSQL::Test::Cluster->new('publisher');
$publisher->init(allows_streaming => 'logical');
$publisher->append_conf('postgresql.conf', q{
shared_preload_libraries = 'zdm'
max_worker_processes = 16
log_statement = none
zdm.throttle_interval = '100ms'
zdm.launcher_naptime = '1s'
});
$publisher->start;

my $subscriber = PostgreSQL::Test::Cluster->new('subscriber');
$subscriber->init;
$subscriber->append_conf('postgresql.conf', q{
max_worker_processes = 16
log_statement = none
});
$subscriber->start;

my $schema = qq{
	CREATE ROLE migrator LOGIN;
	GRANT zdm_migrator TO migrator;
	CREATE ROLE app LOGIN;
	CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
	ALTER TYPE order_status OWNER TO migrator;
	CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, legacy_status text NOT NULL);
	ALTER TABLE orders OWNER TO migrator;
	GRANT SELECT, INSERT, UPDATE ON orders TO app;
	GRANT USAGE ON SEQUENCE orders_id_seq TO app;
};

# The roles are the cluster's: created once, with the first database.
for my $node ($publisher, $subscriber)
{
	$node->safe_psql('postgres', 'CREATE DATABASE shop; CREATE DATABASE shop_all');
	$node->safe_psql('shop', "CREATE EXTENSION zdm; $schema");
	(my $again = $schema) =~ s/CREATE ROLE \w+ LOGIN;|GRANT zdm_migrator TO migrator;//g;
	$node->safe_psql('shop_all', $again);
}
# shop_all: zdm on the subscriber first, then the publication FOR ALL
# TABLES, then zdm on the publisher, which warns that zdm's tables are
# published.
$subscriber->safe_psql('shop_all', 'CREATE EXTENSION zdm');
$publisher->safe_psql('shop_all', 'CREATE PUBLICATION pub_all FOR ALL TABLES');
my ($ret, $out, $err) = $publisher->psql('shop_all', 'CREATE EXTENSION zdm');
is($ret, 0, 'zdm installs on a publisher of all tables');
like($err, qr/WARNING:  publication pub_all publishes all tables, zdm's own among them/,
	'... with a warning that its subscribers need zdm too');
$publisher->safe_psql('shop', 'CREATE PUBLICATION pub_orders FOR TABLE orders');
for my $db (@dbs)
{
	$publisher->safe_psql($db, qq{
		INSERT INTO orders (customer, legacy_status)
		SELECT 'customer ' || g, (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5]
		  FROM generate_series(1, $rows) g;
		ANALYZE orders;
	});
	(my $connstr = $publisher->connstr($db)) =~ s/'/''/g;
	$subscriber->safe_psql($db,
		"CREATE SUBSCRIPTION $pairs{$db}{sub} CONNECTION '$connstr' PUBLICATION $pairs{$db}{pub}");
	$subscriber->wait_for_subscription_sync($publisher, $pairs{$db}{sub}, $db);
}
is($subscriber->safe_psql('shop_all', 'SELECT count(*) FROM orders'), $rows,
	'the subscriptions copied the tables');
is($subscriber->safe_psql('shop_all', 'SELECT count(*) FROM zdm.migration_log'), '0',
	"FOR ALL TABLES: the initial copy brought none of the publisher's zdm state");

# ---------- helpers ----------

# Run SQL as a role; returns (exit code, stdout, stderr).
sub psql_as
{
	my ($node, $db, $role, $sql) = @_;
	return $node->psql($db, "\\set VERBOSITY verbose\n$sql", extra_params => [ '-U', $role ]);
}

sub wait_caught_up
{
	my ($db) = @_;
	$publisher->wait_for_catchup($pairs{$db}{sub});
	return;
}

sub checksum
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, q{
		SELECT count(*) || ' ' || md5(string_agg(id || ':' || customer || ':' || status_enum, ',' ORDER BY id))
		  FROM orders});
}

# ---------- the writers ----------

my $statuses = q{(ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[:s]};
my %scripts = (
	v3_insert => qq{\\set s random(1, 5)
INSERT INTO orders (customer, legacy_status) VALUES ('v3 ' || :client_id, $statuses);
},
	v3_update => qq{\\set s random(1, 5)
\\set id random(1, $rows)
UPDATE orders SET legacy_status = $statuses WHERE id = :id;
},
	v4_insert => qq{\\set s random(1, 5)
INSERT INTO orders (customer, status_enum) VALUES ('v4 ' || :client_id, $statuses\::order_status);
},
	v4_update => qq{\\set s random(1, 5)
\\set id random(1, $rows)
UPDATE orders SET status_enum = $statuses\::order_status WHERE id = :id;
},
	other_update => qq{\\set s random(1, 5)
\\set id random(1, $rows)
UPDATE orders SET customer = 'moved ' || :s WHERE id = :id;
},);
for my $name (keys %scripts)
{
	append_to_file("$PostgreSQL::Test::Utils::tmp_check/025_$name.sql", $scripts{$name});
}

my %writers;    # db => { h, out, err, phase }
my $writer_errors = '';

# Start the clients of a phase on a database's publisher: v3 (before the
# publisher's expand), both (until its contract), v4 (after).
sub start_writers
{
	my ($db, $phase) = @_;
	my @names = (
		$phase eq 'v3' ? qw(v3_insert v3_update)
		: $phase eq 'v4' ? qw(v4_insert v4_update)
		:                  qw(v3_insert v3_update v4_insert v4_update), 'other_update');
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'pgbench', '-n', '-h', $publisher->host, '-p', $publisher->port,
			'-U', 'app', '-c', 2, '-j', 1, '-R', 50, '-T', 600,
			(map { ('-f', "$PostgreSQL::Test::Utils::tmp_check/025_$_.sql") } @names), $db
		],
		'>', \$out, '2>', \$err);
	$writers{$db} = { h => $h, out => \$out, err => \$err, phase => $phase };
	return;
}

# Stop them; what they printed on stderr is kept for the end.
sub stop_writers
{
	my ($db) = @_;
	my $w = delete $writers{$db} or return;
	# SIGTERM: a test run in the background ignores SIGINT, and so would
	# pgbench.
	$w->{h}->kill_kill(grace => 5);
	my $err = ${ $w->{err} };
	$writer_errors .= "$db ($w->{phase}): $err" if $err =~ /ERROR|aborted|error/;
	return;
}

start_writers($_, 'v3') for @dbs;
sleep 1;

# ---------- 1. the publisher first: refused ----------

($ret, $out, $err) = psql_as($publisher, 'shop', 'migrator', "SELECT zdm.expand('$migration', '$definition')");
isnt($ret, 0, "the publisher's expand before its subscriber's is refused");
like($err,
	qr/ERROR:  55000: migration "$migration" adds column "status_enum" to table "orders", which publication "pub_orders" publishes to subscribers that may not have been expanded/,
	'... naming the column, the table and the publication');
like($err, qr/DETAIL:  This database streams it through the logical replication slot "sub_orders" \("sub_orders" active\)/,
	'... and the slot');
like($err,
	qr/HINT:  Expand the migration on the subscriber of slot "sub_orders" first \(there: SELECT zdm.expand\('$migration', ...\)\), then here: SET zdm.subscribers_expanded = 'sub_orders'; and expand again./,
	'... and what to run where');
is($publisher->safe_psql('shop', "SELECT count(*) FROM zdm.migrations"), '0', '... nothing recorded');
is($publisher->safe_psql('shop', "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status_enum'"),
	'0', '... nothing changed');

# ---------- 2. the subscribers ----------

my %expanded_at;    # db => the subscriber's largest id when it expanded
for my $db (@dbs)
{
	($ret, $out, $err) = psql_as($subscriber, $db, 'migrator', "SELECT zdm.expand('$migration', '$definition')");
	is($out, 't', "$db: the subscriber expands first");
	$expanded_at{$db} = $subscriber->safe_psql($db, 'SELECT max(id) FROM orders');
	like($err,
		qr/NOTICE:  00000: table "orders" is subscribed \(subscription "$pairs{$db}{sub}"\): the dual-write trigger of migration "$migration" converts the rows replication writes/,
		"$db: ... and says its trigger converts the replicated rows");
}
is($subscriber->safe_psql('shop', q{
	SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgname LIKE 'zdm\_%'}),
	'A', "the subscriber's dual-write trigger fires for the apply worker (ENABLE ALWAYS)");
is($subscriber->safe_psql('shop', 'SELECT subscriptions FROM zdm.replicated_tables'),
	'{sub_orders}', 'zdm.replicated_tables shows the subscription');
is($publisher->safe_psql('shop', 'SELECT count(*) FROM zdm.replicated_tables'),
	'0', '... and nothing on the publisher yet');
# v3 rows written on the publisher meanwhile arrive converted.
sleep 1;
wait_caught_up($_) for @dbs;
for my $db (@dbs)
{
	is( $subscriber->safe_psql($db, qq{
		SELECT count(*) > 0 AND count(*) = count(status_enum) AND bool_and(status_enum::text = legacy_status)
		  FROM orders WHERE id > $expanded_at{$db}}),
		't', "$db: v3 inserts replicated after the subscriber's expand got status_enum from its trigger");
}

# ---------- 3. the publishers, and the backfill ----------

for my $db (@dbs)
{
	($ret, $out, $err) = psql_as($publisher, $db, 'migrator',
		"SET zdm.subscribers_expanded = '$pairs{$db}{sub}'; SELECT zdm.expand('$migration', '$definition')");
	is($out, 't', "$db: the publisher expands once zdm.subscribers_expanded names the slot");
	is( $publisher->safe_psql($db, qq{
		SELECT detail FROM zdm.migration_log WHERE migration = '$migration' AND event = 'replication'}),
		qq{adds column "status_enum" to table "orders", published by "$pairs{$db}{pub}" and streamed to slot(s) "$pairs{$db}{sub}", }
		  . qq{whose subscribers were expanded first (zdm.subscribers_expanded = '$pairs{$db}{sub}', set by role "migrator")},
		"$db: ... which the journal records");
	stop_writers($db);
	start_writers($db, 'both');
}
is($publisher->safe_psql('shop', 'SELECT publications FROM zdm.replicated_tables'),
	'{pub_orders}', "zdm.replicated_tables shows the publisher's publication");

# The shop subscription stops consuming: its slot falls behind.
$publisher->safe_psql('postgres', q{
	ALTER SYSTEM SET zdm.throttle_slot_lag = '1MB';
	SELECT pg_reload_conf();
});
$subscriber->safe_psql('shop', 'ALTER SUBSCRIPTION sub_orders DISABLE');
$publisher->poll_query_until('postgres',
	"SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'sub_orders'")
  or die 'the slot of the disabled subscription stayed active';
$publisher->safe_psql('shop', q{
	CREATE TABLE ballast (id int, pad text);
	INSERT INTO ballast SELECT g, repeat('x', 600) FROM generate_series(1, 4000) g;
});
for my $db (@dbs)
{
	is( $publisher->safe_psql($db, "SELECT zdm.start_backfill('$migration', batch_size => 500)",
			extra_params => [ '-U', 'migrator' ]),
		't', "$db: the backfill is handed to the worker");
}
for my $db (@dbs)
{
	$publisher->poll_query_until($db, qq{
		SELECT throttle_reason LIKE 'replication slot "sub_orders" (logical, inactive) retains % of WAL, over zdm.throttle_slot_lag (1024 kB)'
		  FROM zdm.status WHERE name = '$migration'})
	  or diag $publisher->safe_psql($db, 'SELECT * FROM zdm.status');
	is( $publisher->safe_psql($db, "SELECT phase || ' ' || rows_done FROM zdm.status WHERE name = '$migration'"),
		'expanded 0', "$db: a slot that stops consuming pauses the backfill, zdm.status says which");
}
note 'throttled: ' . $publisher->safe_psql('shop', "SELECT throttle_reason FROM zdm.status");

# A local step on the shop_all subscriber holds its own row of the
# migration (as its contract does while it verifies).  The publisher's
# backfill updates the publisher's row of the same name with every batch,
# and still replicates: the apply worker looks rows of zdm's state up by
# their random replica identity, so it never finds (nor waits for) one of
# the subscriber's.
my $holder = $subscriber->background_psql('shop_all');
$holder->query_safe("BEGIN; SELECT 1 FROM zdm.migrations WHERE name = '$migration' FOR UPDATE;");

$subscriber->safe_psql('shop', 'ALTER SUBSCRIPTION sub_orders ENABLE');
for my $db (@dbs)
{
	$publisher->poll_query_until($db, "SELECT phase = 'backfilled' FROM zdm.status WHERE name = '$migration'")
	  or die "$db: the backfill did not finish once the slot caught up: "
	  . $publisher->safe_psql($db, 'SELECT phase, rows_done, throttle_reason, last_error FROM zdm.status');
	is($publisher->safe_psql($db, "SELECT zdm.verify('$migration')"), '0', "$db: the publisher is backfilled and verified");
}
my $target = $publisher->lsn('write');
ok( $publisher->poll_query_until('postgres', qq{
	SELECT '$target' <= replay_lsn FROM pg_stat_replication WHERE application_name = 'sub_all'}),
	"shop_all: the publisher's backfill replicated while the subscriber held its own row of the migration");
$holder->query_safe('COMMIT');
$holder->quit;
$publisher->safe_psql('postgres', q{
	ALTER SYSTEM RESET zdm.throttle_slot_lag;
	SELECT pg_reload_conf();
});
wait_caught_up($_) for @dbs;

# The subscriber did no backfill of its own; replication converted its rows.
for my $db (@dbs)
{
	is( $subscriber->safe_psql($db, "SELECT phase || ' ' || rows_done || ' ' || worker FROM zdm.status"),
		'expanded 0 false', "$db: the subscriber ran no backfill (the publisher's request did not reach it)");
	is($subscriber->safe_psql($db, "SELECT zdm.verify('$migration')"), '0',
		"$db: ... and zdm.verify finds every row converted through replication");
}

# ---------- 4. the subscriber's contract first: refused ----------

($ret, $out, $err) = psql_as($subscriber, 'shop', 'migrator', "SELECT zdm.contract('$migration')");
isnt($ret, 0, "the subscriber's contract before its publisher's is refused");
like($err,
	qr/ERROR:  55000: cannot contract migration "$migration" on this subscriber before its publisher: the publisher of subscription "sub_orders" still has column "legacy_status" of table public.orders/,
	'... naming the subscription and the column');
like($err, qr/HINT:  Contract the migration on the publisher first \(there: SELECT zdm.contract\('$migration'\)\), then here/,
	'... and the order');
is($subscriber->safe_psql('shop', "SELECT phase FROM zdm.status"), 'expanded', '... nothing changed');
# (The writers go on: had it contracted, the next change would stop the
# subscription.)
sleep 1;

# ---------- 5. the publishers' contracts, then the subscribers' ----------

for my $db (@dbs)
{
	stop_writers($db);    # the v3 clients are gone
	start_writers($db, 'v4');
	($ret, $out, $err) = psql_as($publisher, $db, 'migrator', "SELECT zdm.contract('$migration')");
	is($out, 't', "$db: the publisher contracts");
	like($err,
		qr/NOTICE:  00000: table public.orders is published \("$pairs{$db}{pub}"\) to logical replication slot "$pairs{$db}{sub}": contract migration "$migration" on each subscriber next/,
		"$db: ... and says the subscribers come next");
}
for my $db (@dbs)
{
	# (shop_all: zdm.contract() contracts every migration ready, those
	# converted through replication included.)
	my $call = $db eq 'shop_all' ? 'zdm.contract()' : "zdm.contract('$migration')";
	($ret, $out, $err) = psql_as($subscriber, $db, 'migrator', "SELECT $call");
	is($out, 't', "$db: then the subscriber contracts ($call), without a backfill of its own")
	  or diag $err;
	is( $subscriber->safe_psql($db, qq{
		SELECT string_agg(coalesce(phase, '-') || ': ' || detail, E'\n' ORDER BY id) FROM zdm.migration_log
		 WHERE migration = '$migration' AND event = 'replication'}),
		qq{-: the publisher of subscription "$pairs{$db}{sub}" no longer has column "legacy_status" of table public.orders; applied up to }
		  . $subscriber->safe_psql($db, qq{
			SELECT substring(detail FROM 'applied up to (.*)\$') FROM zdm.migration_log
			 WHERE migration = '$migration' AND event = 'replication' AND phase IS NULL})
		  . "\nbackfilled: converted through logical replication: zdm.verify found no row to convert",
		"$db: ... and journals why it could");
}
sleep 1;
stop_writers($_) for @dbs;
wait_caught_up($_) for @dbs;

# ---------- the end state ----------

is($writer_errors, '', 'no client failed at any point');
for my $db (@dbs)
{
	is($subscriber->safe_psql($db, qq{SELECT apply_error_count || ' ' || sync_error_count FROM pg_stat_subscription_stats WHERE subname = '$pairs{$db}{sub}'}),
		'0 0', "$db: the subscription never failed to apply a change");
	is(checksum($subscriber, $db), checksum($publisher, $db), "$db: both tables are identical (count and checksum)");
	for my $node ($publisher, $subscriber)
	{
		is($node->safe_psql($db, "SELECT phase FROM zdm.status WHERE name = '$migration'"),
			'contracted', "$db: contracted on the " . $node->name);
		is($node->safe_psql($db, q{
			SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
			 WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped}),
			'id,customer,status_enum', "$db: the " . $node->name . "'s table has its final columns");
	}
	is( $publisher->safe_psql($db, q{
		SELECT count(*) FILTER (WHERE customer LIKE 'v3 %') > 0 AND count(*) FILTER (WHERE customer LIKE 'v4 %') > 0
		  FROM orders}),
		't', "$db: v3 and v4 clients both wrote");
}
# Errors of background processes (the apply and table-sync workers): the
# lines without the test's application name.
my @worker_errors = grep { /^\S+ \S+ \S+ \[\d+\] (?:ERROR|FATAL):/ || /exited with exit code 1/ }
  split /\n/, slurp_file($subscriber->logfile);
is(join("\n", @worker_errors), '', "no apply worker failed in the subscriber's log");

# FOR ALL TABLES: each cluster's zdm state is its own.
for my $table (qw(migrations migration_log api_traffic api_versions))
{
	my $pub_ids = $publisher->safe_psql('shop_all', "SELECT string_agg(replica_id::text, ',') FROM zdm.$table");
	my $foreign = $pub_ids eq '' ? 0 : $subscriber->safe_psql('shop_all',
		"SELECT count(*) FROM zdm.$table WHERE replica_id::text = ANY (string_to_array('$pub_ids', ','))");
	is($foreign, 0, "FOR ALL TABLES: no row of the publisher's zdm.$table reached the subscriber's");
}
cmp_ok($publisher->safe_psql('shop_all', 'SELECT count(*) FROM zdm.migration_log'), '>', 0,
	"... though the publisher's journal has rows");
$publisher->safe_psql('shop_all', "SELECT zdm.record_traffic('v3', 100); SELECT zdm.record_traffic('v3', 5)");
wait_caught_up('shop_all');
is($subscriber->safe_psql('shop_all', "SELECT count(*) FROM zdm.api_traffic WHERE version = 'v3'"), '0',
	"... and the publisher's traffic counts (added to with UPDATEs) stay there");
is($subscriber->safe_psql('shop_all', "SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'sub_all'"), '0',
	'... with no apply error');
is( $subscriber->safe_psql('shop_all', q{
	SELECT string_agg(event || ':' || coalesce(phase, '-'), ',' ORDER BY id) FROM zdm.migration_log WHERE event = 'phase'}),
	'phase:expanded,phase:backfilled,phase:contracted',
	"the subscriber's journal has its own phases, and only those");

# ---------- rollback: the publisher first too ----------

my $note = '{"operations": [{"add_column": {"table": "orders", "column": {"name": "note", "type": "text", "nullable": true}}}]}';
($ret, $out, $err) = psql_as($subscriber, 'shop', 'migrator', "SELECT zdm.expand('002_orders_note', '$note')");
is($out, 't', 'a second migration: the subscriber expands');
($ret, $out, $err) = psql_as($publisher, 'shop', 'migrator',
	"SET zdm.subscribers_expanded = '*'; SELECT zdm.expand('002_orders_note', '$note')");
is($out, 't', '... the publisher expands (every slot named by *)');
$publisher->safe_psql('shop', "UPDATE orders SET note = 'noted' WHERE id <= 10");
wait_caught_up('shop');
($ret, $out, $err) = psql_as($subscriber, 'shop', 'migrator', "SELECT zdm.rollback('002_orders_note')");
isnt($ret, 0, "the subscriber's rollback before its publisher's is refused");
like($err,
	qr/ERROR:  55000: cannot roll back migration "002_orders_note" on this subscriber before its publisher: the publisher of subscription "sub_orders" still has column "note" of table public.orders/,
	'... naming the column the publisher still sends');
$publisher->safe_psql('shop', "UPDATE orders SET note = 'still noted' WHERE id <= 10");
wait_caught_up('shop');
($ret, $out, $err) = psql_as($publisher, 'shop', 'migrator', "SELECT zdm.rollback('002_orders_note')");
is($out, 't', 'the publisher rolls back');
# Nothing is written after it: the subscriber learns that it has applied
# everything up to the publisher's rollback from the publisher's keepalive.
($ret, $out, $err) = psql_as($subscriber, 'shop', 'migrator', "SELECT zdm.rollback('002_orders_note')");
is($out, 't', 'then the subscriber, the publisher idle') or diag $err;
wait_caught_up('shop');
is($subscriber->safe_psql('shop', "SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 'sub_orders'"), '0',
	'... and replication goes on');
is(checksum($subscriber, 'shop'), checksum($publisher, 'shop'), '... the tables still identical');

done_testing();
