# The background worker and migrations whose row in zdm.migrations was
# edited outside zdm.
#
# With shared_preload_libraries = 'zdm', so that the launcher starts a
# worker every second, four backfills are handed to the worker in one
# database: one healthy, two with a malformed plan (fewer key types than
# key columns; "tables" an object, which the throttle's lock-waiter query
# would otherwise be the first to read) and one with a malformed
# checkpoint (a NULL element in backfill_key):
#
#   - the healthy one is backfilled;
#   - each malformed one goes to phase failed at once with the clear error
#     (data_corrupted): no bisecting of batches, no failed key, no longer
#     requested;
#   - the server never crashes, and the worker does not come back to them
#     (no restart loop): several launcher rounds later each still has
#     exactly one "failed" event;
#   - restored and started again, each is backfilled, and zdm.verify finds
#     nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'zdm'
zdm.launcher_naptime = 1
max_worker_processes = 16
});
$node->start;

my %bad = (
	m_types => qq{plan = jsonb_set(plan, '{tables,0,key_types}', '[]')},
	m_tables => qq{plan = jsonb_set(plan, '{tables}', '{"relation": "t_tables"}')},
	m_ckpt => qq{backfill_key = ARRAY[backfill_key[1], NULL]},);
my %error = (
	m_types => qr/^migration "m_types": stored plan is malformed: table 1 has 1 key column but 0 key types$/,
	m_tables => qr/^migration "m_tables": stored plan is malformed: "tables" must be an array, not an object$/,
	m_ckpt => qr/^migration "m_ckpt": stored backfill checkpoint is malformed: element 2 of backfill_key is null$/,);
my @names = ('m_ok', sort keys %bad);

$node->safe_psql('postgres', 'CREATE EXTENSION zdm');
for my $name (@names)
{
	(my $table = $name) =~ s/^m_/t_/;
	$node->safe_psql(
		'postgres', qq{
		CREATE TABLE $table (id bigint PRIMARY KEY, qty integer NOT NULL);
		INSERT INTO $table SELECT g, g % 97 FROM generate_series(1, 2000) g;
		SELECT zdm.expand('$name', '{"operations":[{"alter_column":{"table":"$table",'
		  '"column":"qty","name":"qty_text","type":"text","nullable":false,'
		  '"up":"qty::text","down":"qty_text::integer"}}]}');
	});
}
# A checkpoint to damage: one batch by hand.
is($node->safe_psql('postgres', "SELECT zdm.backfill('m_ckpt', 100)"), '100', 'm_ckpt: one batch by hand');
$node->safe_psql('postgres',
	'CREATE TABLE saved AS SELECT name, plan, backfill_table, backfill_key FROM zdm.migrations');
for my $name (sort keys %bad)
{
	$node->safe_psql('postgres', "UPDATE zdm.migrations SET $bad{$name} WHERE name = '$name'");
}

my $offset = -s $node->logfile;
$node->safe_psql('postgres', "SELECT zdm.start_backfill(name) FROM unnest('{" . join(',', @names) . "}'::text[]) name");

$node->poll_query_until('postgres', "SELECT phase = 'backfilled' FROM zdm.migrations WHERE name = 'm_ok'")
  or die 'm_ok was not backfilled';
pass('the healthy migration is backfilled');
$node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM zdm.migrations WHERE name <> 'm_ok' AND phase = 'failed'")
  or die 'the malformed migrations did not fail';
pass('each malformed migration is in phase failed');

for my $name (sort keys %bad)
{
	my ($error, $key, $requested) = split /\|/, $node->safe_psql('postgres',
		"SELECT last_error, coalesce(failed_key, '(none)'), worker_requested FROM zdm.migrations WHERE name = '$name'");
	like($error, $error{$name}, "$name: last_error says what is wrong");
	is($key, '(none)', "$name: no failed key");
	is($requested, 'f', "$name: no longer requested");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM zdm.migration_log WHERE migration = '$name' AND event = 'bisect'"),
		'0', "$name: no batch was bisected");
	$node->wait_for_log(qr/LOG:  zdm: migration "$name" failed: /, $offset);
	pass("$name: the worker logged the failure");
}

# Several launcher rounds later: no new attempt, no crash.
sleep 4;
for my $name (sort keys %bad)
{
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM zdm.migration_log WHERE migration = '$name' AND event = 'phase' AND phase = 'failed'"),
		'1', "$name: failed once, not retried");
}
my $log = slurp_file($node->logfile, $offset);
unlike($log, qr/terminated by signal|exited with exit code [1-9]/, 'no process crashed or died');
unlike($log, qr/ERROR:  zdm: /, 'no internal error');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is up');

# Restored and started again, each completes.
$node->safe_psql(
	'postgres', q{
	UPDATE zdm.migrations m SET plan = s.plan, backfill_table = s.backfill_table, backfill_key = s.backfill_key
	  FROM saved s WHERE m.name = s.name AND m.name <> 'm_ok';
	SELECT zdm.start_backfill(name) FROM zdm.migrations WHERE phase = 'failed';
});
$node->poll_query_until('postgres', "SELECT count(*) = 4 FROM zdm.migrations WHERE phase = 'backfilled'")
  or die 'the restored migrations were not backfilled';
pass('restored, every migration is backfilled');
for my $name (@names)
{
	is($node->safe_psql('postgres', "SELECT zdm.verify('$name')"), '0', "$name: verify finds nothing");
}

$node->stop;
done_testing();
