--
-- constraints_pgroll: pgroll's constraint examples (pgroll-format/examples,
-- its own migration files converted to JSON), verbatim, each on its table as
-- pgroll's earlier examples leave it (built here in plain SQL where those
-- are operations zdm does not run yet; 43 and 55 create theirs).  Each runs
-- its whole lifecycle, as a migration role: expand, clients' writes,
-- the deferred steps in the background worker, verify, contract.
--
-- 23, 24, 27 (drop_constraint), 33 (rename_constraint), 43 + 44 (unique),
-- 47 (foreign_key), 48 (drop_multicolumn_constraint), 55 (create_table and
-- its primary_key): run.  23, 24 and 27 say that their "down" is not
-- applied (zdm keeps the constraint on the one column until contract).
-- 45 (check): refused, its "up" converts sellers_zip (zdm constrains the
-- column itself); with that "up" as the column, run.
--
CREATE ROLE regress_cp_migrator;
GRANT zdm_migrator TO regress_cp_migrator;
GRANT USAGE ON SCHEMA zt TO regress_cp_migrator;
GRANT CREATE ON SCHEMA public TO regress_cp_migrator;
CREATE ROLE regress_cp_app;
GRANT USAGE ON SCHEMA zt TO regress_cp_app;
SET ROLE regress_cp_migrator;

CREATE PROCEDURE cp_wait(m text, INOUT phase text DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR i IN 1..12000 LOOP
        SELECT z.phase, z.deferred_section, z.last_error INTO r FROM zdm.migrations z WHERE z.name = m;
        COMMIT;
        IF r.deferred_section IS NULL OR r.phase = 'failed' OR r.last_error IS NOT NULL THEN
            phase := r.phase;
            RETURN;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    phase := format('still %s, owing %s steps', r.phase, r.deferred_section);
END
$$;

-- 01: sellers.  05, 06: users.  20, 21, 22: posts with fk_users_id and
-- title_length.  14, 15: reviews with reviews_review_unique.  25: people
-- with name_length.
CREATE TABLE sellers (name varchar(255), zip integer, description varchar(255), PRIMARY KEY (name, zip));
INSERT INTO sellers VALUES ('alice', 1000, NULL), ('bob', 2000, NULL);
CREATE TABLE users (id integer PRIMARY KEY, name text, description varchar(255));
INSERT INTO users VALUES (1, 'ann', NULL), (2, 'bob', NULL);
CREATE TABLE posts (id serial PRIMARY KEY,
                    title varchar(255) NOT NULL CONSTRAINT title_length CHECK (length(title) > 3),
                    user_id integer CONSTRAINT fk_users_id REFERENCES users (id) ON DELETE CASCADE);
INSERT INTO posts (title, user_id) VALUES ('hello', 1), ('a long title', 2);
CREATE TABLE reviews (id serial PRIMARY KEY, username text NOT NULL, product text NOT NULL, review text,
                      CONSTRAINT reviews_review_unique UNIQUE (review));
INSERT INTO reviews (username, product, review) VALUES ('ann', 'tea', 'good'), ('bob', 'cake', NULL);
CREATE TABLE people (id integer PRIMARY KEY, name varchar(255) NOT NULL CONSTRAINT name_length CHECK (length(name) > 3));
INSERT INTO people VALUES (1, 'alice');
GRANT SELECT, INSERT, UPDATE, DELETE ON sellers, users, posts, reviews, people TO regress_cp_app;
GRANT USAGE ON SEQUENCE posts_id_seq, reviews_id_seq TO regress_cp_app;

-- 23_drop_check_constraint.json
SELECT zdm.expand('23_drop_check_constraint', $json${"operations": [{"drop_constraint": {"table": "posts", "name": "title_length", "up": "title", "down": "SELECT CASE WHEN length(title) <= 3 THEN LPAD(title, 4, '-') ELSE title END"}}]}$json$);
SET ROLE regress_cp_app;
SELECT zt.try($$INSERT INTO posts (title, user_id) VALUES ('hey', 1)$$);
SET ROLE regress_cp_migrator;
SELECT zdm.backfill('23_drop_check_constraint');
CALL cp_wait('23_drop_check_constraint');
SELECT zdm.verify('23_drop_check_constraint');
SELECT zdm.contract('23_drop_check_constraint');
SET ROLE regress_cp_app;
INSERT INTO posts (title, user_id) VALUES ('hey', 1);
SET ROLE regress_cp_migrator;

-- 24_drop_foreign_key_constraint.json
SELECT zdm.expand('24_drop_foreign_key_constraint', $json${"operations": [{"drop_constraint": {"table": "posts", "name": "fk_users_id", "up": "user_id", "down": "SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE users.id = user_id) THEN user_id ELSE NULL END"}}]}$json$);
SET ROLE regress_cp_app;
SELECT zt.try($$INSERT INTO posts (title, user_id) VALUES ('orphan', 7)$$);
SET ROLE regress_cp_migrator;
SELECT zdm.backfill('24_drop_foreign_key_constraint');
CALL cp_wait('24_drop_foreign_key_constraint');
SELECT zdm.contract('24_drop_foreign_key_constraint');
SET ROLE regress_cp_app;
INSERT INTO posts (title, user_id) VALUES ('orphan', 7);
SET ROLE regress_cp_migrator;
SELECT zt.describe('posts');
SELECT zt.describe('users');

-- 27_drop_unique_constraint.json
SELECT zdm.expand('27_drop_unique_constraint', $json${"operations": [{"drop_constraint": {"table": "reviews", "name": "reviews_review_unique", "up": "review", "down": "review || '-' || (random()*1000000)::integer"}}]}$json$);
SET ROLE regress_cp_app;
SELECT zt.try($$INSERT INTO reviews (username, product, review) VALUES ('cid', 'pie', 'good')$$);
SET ROLE regress_cp_migrator;
SELECT zdm.backfill('27_drop_unique_constraint');
CALL cp_wait('27_drop_unique_constraint');
SELECT zdm.contract('27_drop_unique_constraint');
SET ROLE regress_cp_app;
INSERT INTO reviews (username, product, review) VALUES ('cid', 'pie', 'good');
SET ROLE regress_cp_migrator;
SELECT zt.describe('reviews');

-- 33_rename_check_constraint.json
SELECT zdm.expand('33_rename_check_constraint', $json${"operations": [{"rename_constraint": {"table": "people", "from": "name_length", "to": "name_length_check"}}]}$json$);
SELECT zdm.backfill('33_rename_check_constraint');
CALL cp_wait('33_rename_check_constraint');
SELECT zdm.contract('33_rename_check_constraint');
SELECT zt.describe('people');

-- 43_create_tickets_table.json
SELECT zdm.expand('43_create_tickets_table', $json${"operations": [{"create_table": {"name": "tickets", "columns": [{"name": "ticket_id", "type": "serial", "pk": true}, {"name": "sellers_name", "type": "varchar(255)"}, {"name": "sellers_zip", "type": "integer"}, {"name": "ticket_type", "type": "varchar(255)", "default": "'paper'"}]}}]}$json$);
SELECT zdm.backfill('43_create_tickets_table');
CALL cp_wait('43_create_tickets_table');
SELECT zdm.contract('43_create_tickets_table');
GRANT SELECT, INSERT, UPDATE, DELETE ON tickets TO regress_cp_app;
GRANT USAGE ON SEQUENCE tickets_ticket_id_seq TO regress_cp_app;
INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('alice', 1000), ('bob', 2000);

-- 44_add_table_unique_constraint.json
SELECT zdm.expand('44_add_table_unique_constraint', $json${"operations": [{"create_constraint": {"type": "unique", "table": "tickets", "name": "unique_zip_name", "columns": ["sellers_name", "sellers_zip"], "up": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}$json$);
SELECT zdm.backfill('44_add_table_unique_constraint');
CALL cp_wait('44_add_table_unique_constraint');
SET ROLE regress_cp_app;
SELECT zt.try($$INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('alice', 1000)$$);
SET ROLE regress_cp_migrator;
SELECT zdm.verify('44_add_table_unique_constraint');
SELECT zdm.contract('44_add_table_unique_constraint');

-- 45_add_table_check_constraint.json: refused ("up" converts sellers_zip).
SELECT zt.describe('tickets') AS tickets_before \gset
SELECT zt.try($try$SELECT zdm.expand('45_add_table_check_constraint', $json${"operations": [{"create_constraint": {"type": "check", "table": "tickets", "name": "check_zip_name", "columns": ["sellers_name", "sellers_zip"], "check": "sellers_name = 'alice' OR sellers_zip > 0", "up": {"sellers_name": "sellers_name", "sellers_zip": "SELECT CASE WHEN sellers_name != 'alice' AND sellers_zip <= 0 THEN 123 WHEN sellers_name != 'alice' THEN sellers_zip ELSE sellers_zip END"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}$json$)$try$);
SELECT zt.describe('tickets') = :'tickets_before' AS unchanged;
-- With its "up" as the column itself: run.
SELECT zdm.expand('45_add_table_check_constraint', $json${"operations": [{"create_constraint": {"type": "check", "table": "tickets", "name": "check_zip_name", "columns": ["sellers_name", "sellers_zip"], "check": "sellers_name = 'alice' OR sellers_zip > 0", "up": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}$json$);
SET ROLE regress_cp_app;
SELECT zt.try($$INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 0)$$);
SET ROLE regress_cp_migrator;
SELECT zdm.backfill('45_add_table_check_constraint');
CALL cp_wait('45_add_table_check_constraint');
SELECT zdm.contract('45_add_table_check_constraint');

-- 47_add_table_foreign_key_constraint.json
SELECT zdm.expand('47_add_table_foreign_key_constraint', $json${"operations": [{"create_constraint": {"type": "foreign_key", "table": "tickets", "name": "fk_sellers", "columns": ["sellers_name", "sellers_zip"], "references": {"table": "sellers", "columns": ["name", "zip"]}, "up": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}$json$);
SET ROLE regress_cp_app;
SELECT zt.try($$INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('carol', 3000)$$);
SET ROLE regress_cp_migrator;
SELECT zdm.backfill('47_add_table_foreign_key_constraint');
CALL cp_wait('47_add_table_foreign_key_constraint');
SELECT zdm.contract('47_add_table_foreign_key_constraint');
SELECT zt.describe('tickets');

-- 48_drop_tickets_check.json
SELECT zdm.expand('48_drop_tickets_check', $json${"operations": [{"drop_multicolumn_constraint": {"table": "tickets", "name": "check_zip_name", "up": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}$json$);
SELECT zdm.backfill('48_drop_tickets_check');
CALL cp_wait('48_drop_tickets_check');
SELECT zdm.contract('48_drop_tickets_check');
SELECT zt.describe('tickets');

-- 55_add_primary_key_constraint_to_table.json
SELECT zdm.expand('55_add_primary_key_constraint_to_table', $json${"operations": [{"create_table": {"name": "tasks", "columns": [{"name": "id", "type": "serial"}, {"name": "title", "type": "varchar(255)", "nullable": false}, {"name": "description", "type": "varchar(255)"}, {"name": "deadline", "type": "time with time zone"}]}}, {"create_constraint": {"name": "tasks_pkey", "table": "tasks", "columns": ["id"], "type": "primary_key", "up": {"id": "id"}, "down": {"id": "id"}}}]}$json$);
SELECT zdm.backfill('55_add_primary_key_constraint_to_table');
CALL cp_wait('55_add_primary_key_constraint_to_table');
SELECT zdm.contract('55_add_primary_key_constraint_to_table');
SELECT zt.describe('tasks');

SELECT name, phase FROM zdm.status WHERE name ~ '^[0-9][0-9]_' ORDER BY name;

RESET ROLE;
DROP TABLE tasks, tickets, people, reviews, posts, users, sellers;
DROP PROCEDURE cp_wait(text, text);
DELETE FROM zdm.migrations WHERE name ~ '^[0-9][0-9]_';
REVOKE CREATE ON SCHEMA public FROM regress_cp_migrator;
REVOKE USAGE ON SCHEMA zt FROM regress_cp_migrator, regress_cp_app;
DROP ROLE regress_cp_migrator, regress_cp_app;
