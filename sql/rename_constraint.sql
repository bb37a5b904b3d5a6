--
-- rename_constraint: the constraint keeps its name until contract (old
-- clients may name it: ON CONFLICT ON CONSTRAINT), which renames it under
-- a brief ACCESS EXCLUSIVE taken with the retrying lock; a unique or
-- primary key constraint's index is renamed with it.  Rollback has nothing
-- to undo.  As a migration role.
--
CREATE ROLE regress_rc_migrator;
GRANT zdm_migrator TO regress_rc_migrator;
GRANT USAGE ON SCHEMA zt TO regress_rc_migrator;
GRANT CREATE ON SCHEMA public TO regress_rc_migrator;
CREATE ROLE regress_rc_app;
GRANT USAGE ON SCHEMA zt TO regress_rc_app;
SET ROLE regress_rc_migrator;

CREATE TABLE rc_people (id integer PRIMARY KEY, name text CONSTRAINT name_length CHECK (length(name) > 1),
                        email text CONSTRAINT rc_email_key UNIQUE);
INSERT INTO rc_people VALUES (1, 'ann', 'ann@x');
GRANT SELECT, INSERT, UPDATE ON rc_people TO regress_rc_app;
SELECT zt.describe('rc_people') AS people_before \gset

-- pgroll's example 33, and a unique constraint that old clients name in
-- ON CONFLICT: both keep their names until contract.
SELECT zdm.expand('rc_1', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length", "to": "name_length_check"}}, {"rename_constraint": {"table": "rc_people", "from": "rc_email_key", "to": "rc_people_email_unique"}}]}');
SELECT zt.describe('rc_people') = :'people_before' AS unchanged_at_expand;
SELECT jsonb_pretty(plan->'contract') AS contract, plan->'rollback' AS rollback FROM zdm.migrations WHERE name = 'rc_1';
SET ROLE regress_rc_app;
INSERT INTO rc_people VALUES (2, 'bob', 'ann@x') ON CONFLICT ON CONSTRAINT rc_email_key DO NOTHING;
SET ROLE regress_rc_migrator;
SELECT zdm.rollback('rc_1');
SELECT zt.describe('rc_people') = :'people_before' AS people_restored;
SELECT zdm.expand('rc_1b', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length", "to": "name_length_check"}}, {"rename_constraint": {"table": "rc_people", "from": "rc_email_key", "to": "rc_people_email_unique"}}]}');
SELECT zdm.backfill('rc_1b');
SELECT zdm.contract('rc_1b');
SELECT statement, attempts FROM zdm.migration_log WHERE migration = 'rc_1b' AND event = 'ddl' ORDER BY id;
SELECT zt.describe('rc_people');
SET ROLE regress_rc_app;
INSERT INTO rc_people VALUES (2, 'bob', 'ann@x') ON CONFLICT ON CONSTRAINT rc_people_email_unique DO NOTHING;
SELECT zt.try($$INSERT INTO rc_people VALUES (3, 'x', 'x@x')$$);
SET ROLE regress_rc_migrator;

-- Bad input.
CREATE TABLE rc_child (extra int) INHERITS (rc_people);
CREATE TABLE rc_other_name (id int);
SELECT zt.describe('rc_people') AS people_before \gset
CREATE TABLE rc_attempts (label text, migration jsonb);
INSERT INTO rc_attempts VALUES
 ('no to', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length_check"}}]}'),
 ('unknown key', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length_check", "to": "x", "name": "y"}}]}'),
 ('unknown constraint', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "nope", "to": "x"}}]}'),
 ('same name', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length_check", "to": "name_length_check"}}]}'),
 ('name taken', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length_check", "to": "rc_people_pkey"}}]}'),
 ('index name taken', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "rc_people_email_unique", "to": "rc_other_name"}}]}'),
 ('name too long', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length_check", "to": "rc_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}]}'),
 ('inherited', '{"operations": [{"rename_constraint": {"table": "rc_child", "from": "name_length_check", "to": "x"}}]}'),
 ('renamed onto a name renamed from', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length_check", "to": "x"}}, {"rename_constraint": {"table": "rc_people", "from": "rc_people_email_unique", "to": "name_length_check"}}]}'),
 ('renamed and dropped', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length_check", "to": "x"}}, {"drop_constraint": {"table": "rc_people", "name": "name_length_check"}}]}'),
 ('column dropped after', '{"operations": [{"rename_constraint": {"table": "rc_people", "from": "name_length_check", "to": "x"}}, {"drop_column": {"table": "rc_people", "column": "name"}}]}'),
 ('created table', '{"operations": [{"create_table": {"name": "rc_new", "columns": [{"name": "id", "type": "int", "pk": true}]}}, {"rename_constraint": {"table": "rc_new", "from": "rc_new_pkey", "to": "x"}}]}');
SELECT label, zt.try(format('SELECT zdm.expand(%L, %L)', 'rc_bad_' || row_number() OVER (), migration)) AS result
  FROM rc_attempts;
SELECT zt.describe('rc_people') = :'people_before' AS people_unchanged;
SELECT count(*) AS recorded FROM zdm.migrations WHERE name LIKE 'rc\_bad\_%';

RESET ROLE;
DROP TABLE rc_attempts, rc_child, rc_other_name, rc_people;
DELETE FROM zdm.migrations WHERE name LIKE 'rc\_%';
REVOKE CREATE ON SCHEMA public FROM regress_rc_migrator;
REVOKE USAGE ON SCHEMA zt FROM regress_rc_migrator, regress_rc_app;
DROP ROLE regress_rc_migrator, regress_rc_app;
