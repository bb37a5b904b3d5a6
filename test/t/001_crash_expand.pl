# A crash in the middle of zdm.expand leaves nothing half-applied.
#
# expand runs its DDL and writes the migration's state row in the caller's
# transaction.  The server is shut down in immediate mode (no shutdown
# checkpoint, crash recovery on restart) while that transaction is open:
# after the restart neither the new column, nor the dual-write trigger, nor
# the migrations row may exist, the advisory lock must be gone with the
# crashed session, and a new expand must apply the migration.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $migration = '001_orders_status_enum';
my $definition = '{"operations":[{"alter_column":{"table":"orders",'
  . '"column":"legacy_status","name":"status_enum","type":"order_status",'
  . '"nullable":false,"up":"legacy_status::order_status",'
  . '"down":"status_enum::text"}}]}';
my $expand = "SELECT zdm.expand('$migration', '$definition')";

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init;
$node->start;

$node->safe_psql(
	'postgres', q{
	CREATE EXTENSION zdm;
	CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
	CREATE TABLE orders (
		id bigserial PRIMARY KEY,
		customer text NOT NULL,
		legacy_status text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now());
	INSERT INTO orders (customer, legacy_status)
		SELECT 'customer ' || g, (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5]
		FROM generate_series(1, 1000) g;
});

# What the schema looks like, for comparing before and after.
my $columns_sql = q{
	SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
	 WHERE attrelid = 'orders'::regclass AND attnum > 0 AND NOT attisdropped};
my $triggers_sql = q{
	SELECT count(*) FROM pg_trigger
	 WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal};
my $columns_before = $node->safe_psql('postgres', $columns_sql);

# Expand in an open transaction, and check it did its work inside it.
my $session = $node->background_psql('postgres');
$session->query_safe('BEGIN');
is($session->query_safe($expand), 't', 'expand applies in the open transaction');
like($session->query_safe($columns_sql), qr/status_enum/,
	'the open transaction sees the new column');
cmp_ok($session->query_safe($triggers_sql), '>', 0,
	'the open transaction sees the dual-write trigger');

# Another instance arriving now skips at once instead of waiting.
my ($ret, $stdout, $stderr) = $node->psql('postgres', $expand,
	extra_params => [ '-v', 'ON_ERROR_STOP=1' ], timeout => 60);
is($ret, 0, 'a second expand during the open transaction succeeds');
is($stdout, 'f', 'a second expand during the open transaction skips');

# Crash before COMMIT.
$node->stop('immediate');
eval { $session->quit; };
$node->start;

is($node->safe_psql('postgres', $columns_sql), $columns_before,
	'no new column after the crash');
is($node->safe_psql('postgres', $triggers_sql), '0',
	'no dual-write trigger after the crash');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM zdm.migrations WHERE name = '$migration'"),
	'0',
	'no migrations row after the crash');
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
	'0',
	'no advisory lock survives the crash');
is($node->safe_psql('postgres', 'SELECT count(*) FROM orders'),
	'1000', 'the rows are intact');

# The migration applies cleanly after the crash, once.
is($node->safe_psql('postgres', $expand), 't', 'expand applies after restart');
is($node->safe_psql('postgres', $expand), 'f', 'and only once');
like($node->safe_psql('postgres', $columns_sql), qr/,status_enum/,
	'the new column exists after expand');
is( $node->safe_psql(
		'postgres', "SELECT phase FROM zdm.migrations WHERE name = '$migration'"),
	'expanded',
	'the migration is expanded');

# Dual-write works on the re-applied migration.
$node->safe_psql('postgres',
	"INSERT INTO orders (customer, legacy_status) VALUES ('after crash', 'paid')");
is( $node->safe_psql(
		'postgres',
		"SELECT status_enum FROM orders WHERE customer = 'after crash'"),
	'paid',
	'the dual-write trigger fills the new column');

$node->stop;
done_testing();
