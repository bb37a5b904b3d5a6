--
-- drop_constraint: a constraint of one column stays through expand (old
-- clients keep every guarantee it gave them) and is dropped at contract,
-- under a brief ACCESS EXCLUSIVE taken with the retrying lock (for a
-- foreign key, on the referenced table too).  Rollback leaves it intact.
-- "up" must be the column itself; a "down" that is not is not applied.
-- What contract could not drop, or would break clients by dropping, is
-- refused at expand.  As a migration role.
--
CREATE ROLE regress_dc_migrator;
GRANT zdm_migrator TO regress_dc_migrator;
GRANT USAGE ON SCHEMA zt TO regress_dc_migrator;
GRANT CREATE ON SCHEMA public TO regress_dc_migrator;
CREATE ROLE regress_dc_app;
GRANT USAGE ON SCHEMA zt TO regress_dc_app;
SET ROLE regress_dc_migrator;

CREATE TABLE dc_users (id integer PRIMARY KEY, email text CONSTRAINT dc_email_unique UNIQUE);
INSERT INTO dc_users VALUES (1, 'ann@x'), (2, 'bob@x');
CREATE TABLE dc_posts (id serial PRIMARY KEY,
                       title varchar(255) NOT NULL CONSTRAINT dc_title_length CHECK (length(title) > 3),
                       user_id integer CONSTRAINT dc_fk_users_id REFERENCES dc_users (id),
                       parent integer CONSTRAINT dc_fk_parent REFERENCES dc_posts (id),
                       rating integer);
INSERT INTO dc_posts (title, user_id, rating) VALUES ('hello', 1, 9), ('world', 2, 3);
ALTER TABLE dc_posts ADD CONSTRAINT dc_rating_range CHECK (rating BETWEEN 0 AND 5) NOT VALID;
GRANT SELECT, INSERT, UPDATE, DELETE ON dc_posts, dc_users TO regress_dc_app;
GRANT USAGE ON SEQUENCE dc_posts_id_seq TO regress_dc_app;
SELECT zt.describe('dc_posts') AS posts_before \gset

--
-- 1. A check (pgroll's example 23, its "down" pads short titles): nothing at
--    expand; the check holds for every client until contract drops it.
--
SELECT zdm.expand('dc_1', $json${"operations": [{"drop_constraint": {"table": "dc_posts", "name": "dc_title_length", "up": "title", "down": "SELECT CASE WHEN length(title) <= 3 THEN LPAD(title, 4, '-') ELSE title END"}}]}$json$);
SELECT zt.describe('dc_posts') = :'posts_before' AS unchanged_at_expand;
SELECT jsonb_pretty(plan->'deferred') AS deferred, jsonb_pretty(plan->'contract') AS contract,
       jsonb_pretty(plan->'rollback') AS rollback
  FROM zdm.migrations WHERE name = 'dc_1';
SET ROLE regress_dc_app;
SELECT zt.try($$INSERT INTO dc_posts (title) VALUES ('hi')$$);
SET ROLE regress_dc_migrator;
-- rollback leaves it as it was
SELECT zdm.rollback('dc_1');
SELECT zt.describe('dc_posts') = :'posts_before' AS posts_restored;
-- the whole lifecycle
SELECT zdm.expand('dc_1b', '{"operations": [{"drop_constraint": {"table": "dc_posts", "name": "dc_title_length", "up": "title", "down": "title"}}]}');
SELECT zdm.backfill('dc_1b');
SELECT zdm.verify('dc_1b');
SELECT zdm.contract('dc_1b');
SELECT phase, statement, attempts FROM zdm.migration_log WHERE migration = 'dc_1b' AND event = 'ddl' ORDER BY id;
SELECT zt.shape('dc_posts');
SET ROLE regress_dc_app;
INSERT INTO dc_posts (title) VALUES ('hi');
SET ROLE regress_dc_migrator;

--
-- 2. A foreign key to another table (pgroll's example 24, its "down" a
--    sub-select): the drop step names the referenced table, and both are
--    locked with the retrying lock, together.
--
SELECT zdm.expand('dc_2', $json${"operations": [{"drop_constraint": {"table": "dc_posts", "name": "dc_fk_users_id", "up": "user_id", "down": "SELECT CASE WHEN EXISTS (SELECT 1 FROM dc_users WHERE dc_users.id = user_id) THEN user_id ELSE NULL END"}}]}$json$);
SELECT jsonb_pretty(plan->'contract') AS contract FROM zdm.migrations WHERE name = 'dc_2';
SELECT zt.try($$INSERT INTO dc_posts (title, user_id) VALUES ('orphan', 7)$$);
SELECT zdm.backfill('dc_2');
SELECT zdm.contract('dc_2');
SELECT statement, attempts FROM zdm.migration_log WHERE migration = 'dc_2' AND event = 'ddl' ORDER BY id;
SELECT zt.describe('dc_users'), zt.shape('dc_posts');
INSERT INTO dc_posts (title, user_id) VALUES ('orphan', 7);

-- A self-referencing foreign key: one table to lock.
SELECT zdm.expand('dc_2b', '{"operations": [{"drop_constraint": {"table": "dc_posts", "name": "dc_fk_parent"}}]}');
SELECT plan->'contract' AS contract FROM zdm.migrations WHERE name = 'dc_2b';
SELECT zdm.backfill('dc_2b');
SELECT zdm.contract('dc_2b');

--
-- 3. A unique constraint (pgroll's example 27, its "down" makes reviews
--    unique with a random suffix: not applied, a NOTICE says so): its index
--    goes with it at contract.  A NOT VALID check is dropped the same way.
--
SELECT zdm.expand('dc_3', $json${"operations": [{"drop_constraint": {"table": "dc_users", "name": "dc_email_unique", "up": "email", "down": "email || '-' || (random()*1000000)::integer"}}, {"drop_constraint": {"table": "dc_posts", "name": "dc_rating_range", "up": "rating", "down": "rating"}}]}$json$);
SELECT zt.try($$INSERT INTO dc_users VALUES (3, 'ann@x')$$);
SELECT zdm.backfill('dc_3');
SELECT zdm.contract('dc_3');
SELECT zt.describe('dc_users');
INSERT INTO dc_users VALUES (3, 'ann@x');
SELECT zt.shape('dc_posts');

--
-- 4. Refused at expand, naming what stands in the way; nothing changes.
--
CREATE TABLE dc_codes (code text CONSTRAINT dc_code_key UNIQUE CONSTRAINT dc_code_set CHECK (code <> ''),
                       alt text NOT NULL CONSTRAINT dc_alt_key UNIQUE,
                       a int, b int, CONSTRAINT dc_ab CHECK (a < b));
CREATE TABLE dc_uses (code text CONSTRAINT dc_uses_code_fk REFERENCES dc_codes (code));
ALTER TABLE dc_codes REPLICA IDENTITY USING INDEX dc_alt_key;
CREATE TABLE dc_child (extra int) INHERITS (dc_codes);
CREATE TABLE dc_published (id int CONSTRAINT dc_published_pkey PRIMARY KEY, v text);
RESET ROLE;
CREATE PUBLICATION dc_pub FOR TABLE dc_published;
SET ROLE regress_dc_migrator;
CREATE FUNCTION dc_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE CONSTRAINT TRIGGER dc_ctrig AFTER INSERT ON dc_codes DEFERRABLE FOR EACH ROW EXECUTE FUNCTION dc_noop();
ALTER TABLE dc_posts ADD CONSTRAINT dc_rating_known CHECK (rating IS NOT NULL) NOT VALID;
SELECT zt.describe('dc_codes') AS codes_before \gset
SELECT zt.describe('dc_posts') AS posts_before \gset
CREATE TABLE dc_attempts (label text, migration jsonb);
INSERT INTO dc_attempts VALUES
 ('no name', '{"operations": [{"drop_constraint": {"table": "dc_codes"}}]}'),
 ('unknown table', '{"operations": [{"drop_constraint": {"table": "dc_nope", "name": "x"}}]}'),
 ('unknown constraint', '{"operations": [{"drop_constraint": {"table": "dc_codes", "name": "dc_nope"}}]}'),
 ('unknown key', '{"operations": [{"drop_constraint": {"table": "dc_codes", "name": "dc_ab", "column": "a"}}]}'),
 ('multi-column', '{"operations": [{"drop_constraint": {"table": "dc_codes", "name": "dc_ab", "up": "a", "down": "a"}}]}'),
 ('referenced by a foreign key', '{"operations": [{"drop_constraint": {"table": "dc_codes", "name": "dc_code_key"}}]}'),
 ('replica identity index', '{"operations": [{"drop_constraint": {"table": "dc_codes", "name": "dc_alt_key"}}]}'),
 ('published primary key', '{"operations": [{"drop_constraint": {"table": "dc_published", "name": "dc_published_pkey"}}]}'),
 ('inherited', '{"operations": [{"drop_constraint": {"table": "dc_child", "name": "dc_ab"}}]}'),
 ('constraint trigger', '{"operations": [{"drop_constraint": {"table": "dc_codes", "name": "dc_ctrig"}}]}'),
 ('created table', '{"operations": [{"create_table": {"name": "dc_new", "columns": [{"name": "id", "type": "int", "pk": true}]}}, {"drop_constraint": {"table": "dc_new", "name": "dc_new_pkey"}}]}'),
 ('dropped twice', '{"operations": [{"drop_constraint": {"table": "dc_posts", "name": "dc_posts_pkey"}}, {"drop_constraint": {"table": "dc_posts", "name": "dc_posts_pkey"}}]}'),
 ('up converts', '{"operations": [{"drop_constraint": {"table": "dc_posts", "name": "dc_posts_pkey", "up": "id + 1"}}]}'),
 ('up invalid', '{"operations": [{"drop_constraint": {"table": "dc_posts", "name": "dc_posts_pkey", "up": "nope"}}]}'),
 ('down two statements', '{"operations": [{"drop_constraint": {"table": "dc_posts", "name": "dc_posts_pkey", "down": "id; DROP TABLE dc_users"}}]}'),
 ('column replaced before', '{"operations": [{"alter_column": {"table": "dc_posts", "column": "rating", "name": "stars"}}, {"drop_constraint": {"table": "dc_posts", "name": "dc_rating_known"}}]}'),
 ('column dropped after', '{"operations": [{"drop_constraint": {"table": "dc_codes", "name": "dc_code_set"}}, {"drop_column": {"table": "dc_codes", "column": "code"}}]}');
SELECT label, zt.try(format('SELECT zdm.expand(%L, %L)', 'dc_bad_' || row_number() OVER (), migration)) AS result
  FROM dc_attempts;
SELECT zt.describe('dc_codes') = :'codes_before' AS codes_unchanged,
       zt.describe('dc_posts') = :'posts_before' AS posts_unchanged;
SELECT count(*) AS recorded FROM zdm.migrations WHERE name LIKE 'dc\_bad\_%';

RESET ROLE;
DROP PUBLICATION dc_pub;
DROP TABLE dc_attempts, dc_uses, dc_child, dc_codes, dc_published, dc_posts, dc_users;
DROP FUNCTION dc_noop();
DELETE FROM zdm.migrations WHERE name LIKE 'dc\_%';
REVOKE CREATE ON SCHEMA public FROM regress_dc_migrator;
REVOKE USAGE ON SCHEMA zt FROM regress_dc_migrator, regress_dc_app;
DROP ROLE regress_dc_migrator, regress_dc_app;
