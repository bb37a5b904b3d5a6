# An alter_column keeps everything the column had, and rollback restores
# the schema byte for byte, as pg_dump -s shows it.
#
# A migration role changes, in place and as pgroll writes it (no
# "versions"), a column that has NOT NULL, a default, a UNIQUE constraint
# (with a comment), a CHECK, a partial index with another column, a
# foreign key to another table, a foreign key of another table referencing
# it, and a comment.  Application roles write through both versions while
# it is live; the backfill runs, the background worker builds the new
# column's indexes and foreign keys (the deferred steps), verify finds
# nothing, and contract swaps the columns.  Then:
#
#   - pg_dump -s of schema public after contract is the one before expand,
#     but for the column's place in its table (the dump's lines of that
#     CREATE TABLE are compared as a set);
#   - every constraint is validated and every index valid;
#   - a second migration of the same column, expanded, backfilled and
#     built by the worker, then rolled back, leaves pg_dump -s of the whole
#     database as it was before its expand, byte for byte (the worker drops
#     the indexes it built: rollback's deferred steps).
#
# The first migration retires no named API version (the database has no
# other): with zdm.gate_undeclared = old its contract waits for the clients
# that declare no version, which read the table directly, and says why.
#
# With and without shared_preload_libraries: the worker is started
# dynamically without it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $alter = '{"operations": [{"alter_column": {"table": "accounts", "column": "email", '
  . '"type": "text", "up": "lower(email)", "down": "email"}}]}';

# Run sql as role; returns (exit code, stdout, stderr).
sub as_role
{
	my ($node, $role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', $sql,
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

# pg_dump -s, without the lines that differ from one run to the next.
sub dump_schema
{
	my ($node, @args) = @_;
	my ($out, $err);
	IPC::Run::run([ 'pg_dump', '-s', @args, '-d', $node->connstr('postgres') ], '>', \$out, '2>', \$err)
	  or die "pg_dump failed: $err";
	$out =~ s/^\\(un)?restrict .*\n//mg;
	return $out;
}

# A dump with the lines of each CREATE TABLE's body sorted (a column's
# place in its table set aside) and their trailing commas dropped.
sub without_column_order
{
	my ($dump) = @_;
	$dump =~ s{(CREATE TABLE [^\n]+ \(\n)(.*?)(\n\);)}{
		my ($head, $body, $tail) = ($1, $2, $3);
		$head . join("\n", sort map { s/,$//r } split /\n/, $body) . $tail
	}gse;
	return $dump;
}

# Backfill a migration to the end, as its author.
sub backfill
{
	my ($node, $migration) = @_;
	for (1 .. 100)
	{
		my ($rc, $rows, $err) = as_role($node, 'migrator', "SELECT zdm.backfill('$migration', 1000)");
		if ($rc != 0)
		{
			fail("$migration: backfill");
			diag($err);
			return;
		}
		return if $rows eq '0';
	}
	fail("$migration: backfill ends");
}

# Wait until the worker owes the migration nothing; its phase then.
sub settle
{
	my ($node, $migration) = @_;
	$node->poll_query_until('postgres',
		"SELECT deferred IS NULL AND phase <> 'backfilling' FROM zdm.status WHERE name = '$migration'")
	  or diag($node->safe_psql('postgres',
		"SELECT phase, deferred, deferred_step, last_error FROM zdm.status WHERE name = '$migration'"));
	return $node->safe_psql('postgres', "SELECT phase FROM zdm.status WHERE name = '$migration'");
}

for my $preload (0, 1)
{
	my $tag = $preload ? 'preloaded' : 'not preloaded';
	my $node = PostgreSQL::Test::Cluster->new($preload ? 'preload' : 'plain');
	$node->init;
	# (the gate below counts what the test records, not the test's own statements)
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'zdm'\nzdm.count_traffic = off")
	  if $preload;
	$node->start;

	$node->safe_psql('postgres', q{
		CREATE EXTENSION zdm;
		CREATE ROLE migrator LOGIN;
		GRANT zdm_migrator TO migrator;
		GRANT CREATE ON SCHEMA public TO migrator;
		GRANT CREATE ON DATABASE postgres TO migrator;
		CREATE ROLE app LOGIN;
	});
	succeeds($node, 'migrator', q{
		CREATE TABLE mailboxes (address text PRIMARY KEY);
		CREATE TABLE accounts (
			id int PRIMARY KEY,
			email text NOT NULL DEFAULT 'nobody@example.com'
				CONSTRAINT accounts_email_key UNIQUE
				CONSTRAINT accounts_email_check CHECK (email LIKE '%@%')
				CONSTRAINT accounts_email_fkey REFERENCES mailboxes (address),
			plan text);
		CREATE INDEX accounts_plan_email ON accounts (plan, email) WHERE plan IS NOT NULL;
		COMMENT ON COLUMN accounts.email IS 'where the invoices go';
		COMMENT ON CONSTRAINT accounts_email_key ON accounts IS 'one account per address';
		CREATE TABLE invoices (id int PRIMARY KEY,
			email text CONSTRAINT invoices_email_fkey REFERENCES accounts (email) ON DELETE CASCADE);
		INSERT INTO mailboxes SELECT 'u' || g || '@example.com' FROM generate_series(1, 300) g;
		INSERT INTO mailboxes VALUES ('nobody@example.com');
		INSERT INTO accounts SELECT g, 'u' || g || '@example.com', CASE WHEN g % 3 = 0 THEN 'pro' END
		  FROM generate_series(1, 200) g;
		INSERT INTO invoices SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 100) g;
		GRANT SELECT, INSERT, UPDATE, DELETE ON accounts, invoices TO app;
		GRANT SELECT ON mailboxes TO app;
	}, "$tag: the tables");

	my $before = without_column_order(dump_schema($node, '-n', 'public'));

	# 1. Through contract.
	succeeds($node, 'migrator', "SELECT zdm.expand('keep_1', '$alter')", "$tag: expand, as pgroll writes it");
	is($node->safe_psql('postgres', "SELECT introduces FROM zdm.status WHERE name = 'keep_1'"),
		'keep_1', "$tag: its new API version is named after it");
	succeeds($node, 'app', q{
		INSERT INTO accounts (id, email, plan) VALUES (201, 'u201@example.com', 'pro');
		SELECT zdm.use_version('keep_1');
		INSERT INTO accounts (id, email) VALUES (202, 'u202@example.com');
		INSERT INTO invoices VALUES (101, 'u202@example.com');
	}, "$tag: old and new clients write");
	backfill($node, 'keep_1');
	is(settle($node, 'keep_1'), 'backfilled', "$tag: the worker built the new column's indexes and keys");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE c.relname LIKE 'zdm_dup_%') || ' built, '
		    || count(*) FILTER (WHERE NOT i.indisvalid) || ' invalid'
		  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		 WHERE i.indrelid = 'accounts'::regclass}),
		'2 built, 0 invalid', "$tag: two indexes built CONCURRENTLY under temporary names");
	is(succeeds($node, 'migrator', "SELECT zdm.verify('keep_1')", "$tag: verify"), '0', "$tag: verify finds nothing");

	# Retiring no named version, the gate waits for undeclared clients when told to.
	$node->safe_psql('postgres', "LOAD 'zdm'; ALTER SYSTEM SET zdm.gate_undeclared = 'old'; SELECT pg_reload_conf();");
	my ($rc, $out, $err) = as_role($node, 'migrator', "SELECT zdm.contract('keep_1')");
	isnt($rc, 0, "$tag: no telemetry, no contract");
	like($err, qr/no client-version telemetry.*API version "\(undeclared\)" is unknown/s,
		"$tag: the gate names the undeclared clients");
	succeeds($node, 'migrator',
		"SELECT zdm.record_traffic('(undeclared)', 50), zdm.record_traffic('keep_1', 950)",
		"$tag: traffic recorded");
	($rc, $out, $err) = as_role($node, 'migrator', "SELECT zdm.contract('keep_1')");
	isnt($rc, 0, "$tag: 5% undeclared, no contract");
	like($err, qr/API version "\(undeclared\)" carries 5\.00% of requests \(50 of 1000\)/,
		"$tag: the gate gives the undeclared share");
	succeeds($node, 'migrator', "SELECT zdm.record_traffic('keep_1', 99000)", "$tag: more traffic");
	succeeds($node, 'migrator', "SELECT zdm.contract('keep_1')", "$tag: contract, 0.05% undeclared");
	$node->safe_psql('postgres', "LOAD 'zdm'; ALTER SYSTEM RESET zdm.gate_undeclared; SELECT pg_reload_conf();");
	is(settle($node, 'keep_1'), 'contracted', "$tag: contracted");

	my $after = without_column_order(dump_schema($node, '-n', 'public'));
	is($after, $before, "$tag: pg_dump -s after contract is the one before expand, but for the column's place");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE NOT convalidated) FROM pg_constraint
		 WHERE conrelid IN ('accounts'::regclass, 'invoices'::regclass)}), '0',
		"$tag: every constraint validated");
	is($node->safe_psql('postgres', q{SELECT attnum FROM pg_attribute
		WHERE attrelid = 'accounts'::regclass AND attname = 'email'}), '4',
		"$tag: the column is a new one (its place: after the others)");
	($rc, $out, $err) = as_role($node, 'app', q{INSERT INTO accounts (id, email) VALUES (300, 'u1@example.com')});
	like($err, qr/violates unique constraint "accounts_email_key"/, "$tag: UNIQUE holds after contract");
	($rc, $out, $err) = as_role($node, 'app', q{INSERT INTO invoices VALUES (300, 'nobody@nowhere')});
	like($err, qr/violates foreign key constraint "invoices_email_fkey"/, "$tag: the referencing key holds");
	($rc, $out, $err) = as_role($node, 'app', q{INSERT INTO accounts (id, email) VALUES (301, 'u300@nowhere')});
	like($err, qr/violates foreign key constraint "accounts_email_fkey"/, "$tag: the column's own key holds");
	is($node->safe_psql('postgres', q{SELECT email FROM accounts WHERE id = 301 OR id = 202 ORDER BY id}),
		'u202@example.com', "$tag: rows written through both versions are there");

	# 2. Rolled back once the worker has built everything: byte for byte.
	my $before_all = dump_schema($node);
	succeeds($node, 'migrator', "SELECT zdm.expand('keep_2', '"
		  . ($alter =~ s/lower\(email\)/email/r) . "')", "$tag: expand again");
	succeeds($node, 'app', q{
		INSERT INTO accounts (id, email) VALUES (400, 'u250@example.com');
		SELECT zdm.use_version('keep_2');
		INSERT INTO accounts (id, email) VALUES (401, 'u251@example.com');
	}, "$tag: writes while it is live");
	backfill($node, 'keep_2');
	is(settle($node, 'keep_2'), 'backfilled', "$tag: built by the worker");
	isnt(dump_schema($node), $before_all, "$tag: the schema has changed");
	succeeds($node, 'migrator', "SELECT zdm.rollback('keep_2')", "$tag: rollback");
	is(settle($node, 'keep_2'), 'rolled_back', "$tag: rolled back, and the worker's steps done");
	my $after_all = dump_schema($node);
	is($after_all, $before_all, "$tag: pg_dump -s after rollback is the one before expand, byte for byte");
	if ($after_all ne $before_all)
	{
		my $dir = PostgreSQL::Test::Utils::tempdir;
		PostgreSQL::Test::Utils::append_to_file("$dir/before.sql", $before_all);
		PostgreSQL::Test::Utils::append_to_file("$dir/after.sql", $after_all);
		diag(`diff -u $dir/before.sql $dir/after.sql`);
	}
	is($node->safe_psql('postgres', "SELECT count(*) FROM accounts WHERE id IN (400, 401)"), '2',
		"$tag: the rows written meanwhile stay");

	$node->stop;
}

done_testing();
