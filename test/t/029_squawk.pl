# The DDL zdm runs is squawk-clean.
#
# squawk (the npm package squawk-cli, its Linux binary installed by
# test/deps.sh in test/runners) lints SQL for statements that lock out
# client traffic.  A migration role runs one migration of every operation
# kind zdm implements (the kinds are read from src/expand.c, so a new kind
# without a migration here fails this test) through expand, the backfill,
# the deferred steps and contract, and again through expand and rollback.
# Every statement zdm journaled (zdm.migration_log, event "ddl": expand's,
# the worker's, contract's and rollback's) is linted with squawk's safety
# rules: none may fire.  The style rules (prefer-text-field, ...) are not
# zdm's to choose: they judge the migration's author.
#
# Two safety rules fire by design and are excluded, each for its reason:
#   - renaming-column: contract gives the new column the old one's name
#     (an in-place alter_column) only once no client uses the old shape:
#     old clients are gone (the gate) and new ones read the name through
#     their version's view, which contract re-creates in the same
#     transaction;
#   - adding-not-nullable-field: SET NOT NULL at contract comes after a
#     validated CHECK (col IS NOT NULL), so PostgreSQL skips the scan
#     (the statement is immediate; squawk cannot see the check).
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# test/runners is copied beside t/ (test/run.sh).
my $squawk = "$FindBin::RealBin/../runners/node_modules/\@squawk-cli/linux-x64/bin/squawk";
if (!-x $squawk)
{
	# Only in a checkout where deps.sh could not reach the npm registry.
	if ($ENV{CI})
	{
		fail("squawk is not installed at $squawk (test/deps.sh installs it)");
		done_testing();
		exit 0;
	}
	plan skip_all => "squawk is not installed (run test/deps.sh)";
}

# Safety rules that fire by design (see above).
my @by_design = qw(renaming-column adding-not-nullable-field);
# squawk's style rules: the migration's author's choices, not zdm's.
my @style = qw(prefer-bigint-over-int prefer-bigint-over-smallint prefer-identity
  prefer-repack prefer-robust-stmts prefer-text-field prefer-timestamptz ban-char-field
  ban-drop-column ban-drop-table ban-drop-not-null transaction-nesting
  require-timeout-settings require-lock-timeout require-statement-timeout
  require-table-schema identifier-too-long ban-drop-database);

# One migration per operation kind: [kind, name, definition].
my @migrations = (
	[ 'create_table', 'sq_create',
		'{"operations": [{"create_table": {"name": "sq_new", "columns": ['
		  . '{"name": "id", "type": "bigint", "pk": true}, '
		  . '{"name": "label", "type": "text", "nullable": false, "default": "\'x\'", '
		  . '"check": {"name": "sq_new_label_len", "constraint": "length(label) < 50"}}]}}]}' ],
	[ 'add_column', 'sq_add',
		'{"operations": [{"add_column": {"table": "sq_items", "column": {"name": "price_cents", '
		  . '"type": "bigint", "nullable": false, '
		  . '"check": {"name": "sq_items_price_pos", "constraint": "price_cents >= 0"}}, '
		  . '"up": "(price * 100)::bigint"}}]}' ],
	[ 'alter_column', 'sq_alter',
		'{"versions": {"old": "sq1", "new": "sq2"}, "operations": [{"alter_column": {"table": "sq_items", '
		  . '"column": "qty", "type": "bigint", "nullable": false, '
		  . '"check": {"name": "sq_items_qty_pos", "constraint": "qty >= 0"}, '
		  . '"up": "qty::bigint", "down": "qty::integer"}}]}' ],
	[ 'create_index', 'sq_index',
		'{"operations": [{"create_index": {"name": "sq_items_qty_idx", "table": "sq_items", '
		  . '"columns": ["qty"], "predicate": "qty > 0"}}]}' ],
	[ 'drop_index', 'sq_unindex',
		'{"operations": [{"drop_index": {"name": "sq_items_price_idx"}}]}' ],
	[ 'create_constraint', 'sq_check',
		'{"operations": [{"create_constraint": {"type": "check", "table": "sq_items", '
		  . '"name": "sq_items_price_nonneg", "columns": ["price"], "check": "price >= 0"}}]}' ],
	[ 'create_constraint', 'sq_fk',
		'{"operations": [{"create_constraint": {"type": "foreign_key", "table": "sq_items", '
		  . '"name": "sq_items_group_fk", "columns": ["group_id"], '
		  . '"references": {"table": "sq_groups", "columns": ["id"], "on_delete": "SET NULL"}}}]}' ],
	[ 'create_constraint', 'sq_unique',
		'{"operations": [{"create_constraint": {"type": "unique", "table": "sq_items", '
		  . '"name": "sq_items_code_key", "columns": ["code"]}}]}' ],
	[ 'create_constraint', 'sq_pk',
		'{"operations": [{"create_constraint": {"type": "primary_key", "table": "sq_notes", '
		  . '"name": "sq_notes_pkey", "columns": ["id"]}}]}' ],
	[ 'drop_constraint', 'sq_uncheck',
		'{"operations": [{"drop_constraint": {"table": "sq_items", "name": "sq_items_qty_small", '
		  . '"up": "qty", "down": "qty"}}]}' ],
	[ 'drop_multicolumn_constraint', 'sq_unpair',
		'{"operations": [{"drop_multicolumn_constraint": {"table": "sq_items", "name": "sq_items_pair", '
		  . '"up": {"qty": "qty", "price": "price"}, "down": {"qty": "qty", "price": "price"}}}]}' ],
	[ 'rename_constraint', 'sq_rename',
		'{"operations": [{"rename_constraint": {"table": "sq_items", "from": "sq_items_note_len", '
		  . '"to": "sq_items_note_length"}}]}' ],
	[ 'drop_column', 'sq_drop',
		'{"operations": [{"drop_column": {"table": "sq_notes", "column": "note", '
		  . '"down": "\'\'"}}]}' ],
);

my $node = PostgreSQL::Test::Cluster->new('squawk');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'zdm'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE ROLE migrator LOGIN;
	CREATE DATABASE shop OWNER migrator;
});
$node->safe_psql('shop', q{
	CREATE EXTENSION zdm;
	GRANT zdm_migrator TO migrator;
});

sub as_migrator
{
	my ($sql) = @_;
	return $node->safe_psql('shop', $sql, extra_params => [ '-U', 'migrator' ]);
}

# The kinds zdm implements: of pgroll's fifteen, those zdm.expand() does
# not refuse as "not supported by zdm yet".
my @pgroll_kinds = qw(create_table rename_table rename_column drop_table add_column
  drop_column alter_column create_index drop_index rename_constraint drop_constraint
  set_replica_identity drop_multicolumn_constraint sql create_constraint);
my %covered = map { $_->[0] => 1 } @migrations;
my $implemented = 0;
for my $k (@pgroll_kinds)
{
	my ($out, $err);
	$node->psql('shop', "SELECT zdm.expand('probe', '{\"operations\": [{\"$k\": {}}]}')",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'migrator' ]);
	next if $err =~ /is not supported by zdm yet/;
	$implemented++;
	ok($covered{$k}, "operation kind $k has a migration here");
}
ok($implemented >= 4, "zdm implements $implemented operation kinds");

sub fresh_tables
{
	as_migrator(q{
		DROP TABLE IF EXISTS sq_items, sq_notes, sq_new, sq_groups CASCADE;
		DROP SCHEMA IF EXISTS sq1_contract, sq2_contract CASCADE;
		CREATE TABLE sq_groups (id bigint PRIMARY KEY);
		INSERT INTO sq_groups SELECT generate_series(1, 10);
		CREATE TABLE sq_items (id bigint PRIMARY KEY, price numeric NOT NULL,
			qty integer NOT NULL DEFAULT 1, note text, group_id bigint, code text,
			CONSTRAINT sq_items_qty_small CHECK (qty < 1000),
			CONSTRAINT sq_items_pair CHECK (qty >= 0 OR price >= 0),
			CONSTRAINT sq_items_note_len CHECK (length(note) < 100));
		CREATE INDEX sq_items_price_idx ON sq_items (price);
		INSERT INTO sq_items SELECT g, g / 10.0, g % 7, 'n' || g, g % 10 + 1, 'c' || g
		  FROM generate_series(1, 2000) g;
		CREATE TABLE sq_notes (id bigint NOT NULL, note text NOT NULL);
		INSERT INTO sq_notes SELECT g, 'n' || g FROM generate_series(1, 2000) g;
	});
}

# Every kind through contract, then again through rollback.
for my $end ('contract', 'rollback')
{
	fresh_tables();
	for my $m (@migrations)
	{
		my ($kind, $name, $def) = @$m;
		$name .= "_$end";
		$def =~ s/"sq1"/"sq1_$end"/; $def =~ s/"sq2"/"sq2_$end"/;
		as_migrator("SELECT zdm.expand('$name', \$j\$$def\$j\$)");
		as_migrator("SELECT zdm.start_backfill('$name')");
		ok($node->poll_query_until('shop',
				"SELECT phase IN ('backfilled', 'failed') FROM zdm.migrations WHERE name = '$name'"),
			"$name: the backfill and the deferred steps end");
		is($node->safe_psql('shop', "SELECT phase || coalesce(': ' || last_error, '') FROM zdm.migrations WHERE name = '$name'"),
			'backfilled', "$name: ready to $end");
		if ($end eq 'contract')
		{
			as_migrator("SELECT zdm.contract('$name', force => true)");
		}
		else
		{
			as_migrator("SELECT zdm.rollback('$name')");
		}
		ok($node->poll_query_until('shop',
				"SELECT phase IN ('contracted', 'rolled_back') FROM zdm.migrations WHERE name = '$name'"),
			"$name: ${end}ed");
	}
}

# What zdm ran, one statement per line group, each ended by ";".
my $ddl = $node->safe_psql('shop', q{
	SELECT string_agg(statement || E';\n', '' ORDER BY id)
	  FROM zdm.migration_log WHERE event = 'ddl'});
my $count = $node->safe_psql('shop',
	"SELECT count(*) FROM zdm.migration_log WHERE event = 'ddl'");
ok($count > 20, "zdm journaled its DDL ($count statements)");
# The worker's steps are among them.
like($ddl, qr/CREATE INDEX CONCURRENTLY/, "the deferred index builds are linted");
like($ddl, qr/DROP INDEX CONCURRENTLY/, "the drops after contract and rollback too");
like($ddl, qr/VALIDATE CONSTRAINT/, "and the validations");
like($ddl, qr/USING INDEX/, "and the unique and primary keys attached at contract");
my $file = $node->basedir . '/zdm_ddl.sql';
PostgreSQL::Test::Utils::append_to_file($file, $ddl);

my ($stdout, $stderr);
my $exclude = join(',', @by_design, @style);
IPC::Run::run([ $squawk, '--pg-version=15.0', "--exclude=$exclude", $file ],
	'>', \$stdout, '2>', \$stderr);
my $rc = $? >> 8;
is($rc, 0, "squawk's safety rules find nothing in zdm's DDL") or diag("$stdout$stderr");

# The lint can fail: the same rules on the plain statements zdm replaces.
my $plain = $node->basedir . '/plain.sql';
PostgreSQL::Test::Utils::append_to_file($plain,
	"CREATE INDEX sq_items_qty ON sq_items (qty);\n"
	  . "ALTER TABLE sq_items ADD CONSTRAINT sq_items_qty_pos CHECK (qty >= 0);\n"
	  . "ALTER TABLE sq_items ALTER COLUMN qty TYPE bigint;\n");
IPC::Run::run([ $squawk, '--pg-version=15.0', "--exclude=$exclude", $plain ],
	'>', \$stdout, '2>', \$stderr);
isnt($? >> 8, 0, 'and the same squawk flags the plain statements');
like($stdout, qr/require-concurrent-index-creation/, 'a non-concurrent CREATE INDEX');
like($stdout, qr/constraint-missing-not-valid/, 'a CHECK without NOT VALID');
like($stdout, qr/changing-column-type/, 'a column type changed in place');

$node->stop;
done_testing();
