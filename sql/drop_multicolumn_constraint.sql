--
-- drop_multicolumn_constraint: a constraint of several columns, with
-- "up" and "down" per column, dropped at contract like drop_constraint.
-- As a migration role.
--
CREATE ROLE regress_dm_migrator;
GRANT zdm_migrator TO regress_dm_migrator;
GRANT USAGE ON SCHEMA zt TO regress_dm_migrator;
GRANT CREATE ON SCHEMA public TO regress_dm_migrator;
SET ROLE regress_dm_migrator;

CREATE TABLE dm_sellers (name varchar(255), zip integer, PRIMARY KEY (name, zip));
INSERT INTO dm_sellers VALUES ('alice', 1000);
CREATE TABLE dm_tickets (ticket_id serial PRIMARY KEY, sellers_name varchar(255), sellers_zip integer,
                         CONSTRAINT dm_check_zip_name CHECK (sellers_name = 'alice' OR sellers_zip > 0),
                         CONSTRAINT dm_unique_zip_name UNIQUE (sellers_name, sellers_zip),
                         CONSTRAINT dm_fk_sellers FOREIGN KEY (sellers_name, sellers_zip) REFERENCES dm_sellers (name, zip));
INSERT INTO dm_tickets (sellers_name, sellers_zip) VALUES ('alice', 1000);
SELECT zt.describe('dm_tickets') AS tickets_before \gset

-- pgroll's example 48: expand changes nothing; the check holds until contract.
SELECT zdm.expand('dm_1', '{"operations": [{"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_check_zip_name", "up": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}');
SELECT zt.describe('dm_tickets') = :'tickets_before' AS unchanged_at_expand;
SELECT zt.try($$INSERT INTO dm_tickets (sellers_name, sellers_zip) VALUES ('bob', -1)$$);
SELECT zdm.rollback('dm_1');
SELECT zt.describe('dm_tickets') = :'tickets_before' AS tickets_restored;

-- All three in one migration: the foreign key's drop locks the referenced table too.
SELECT zdm.expand('dm_2', $json${"operations": [{"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_check_zip_name", "down": {"sellers_zip": "greatest(sellers_zip, 1)"}}}, {"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_unique_zip_name", "up": {"sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}, {"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_fk_sellers", "up": {}, "down": {}}}]}$json$);
SELECT jsonb_pretty(plan->'contract') AS contract FROM zdm.migrations WHERE name = 'dm_2';
SELECT zdm.backfill('dm_2');
SELECT zdm.contract('dm_2');
SELECT zt.describe('dm_tickets');
INSERT INTO dm_tickets (sellers_name, sellers_zip) VALUES ('bob', -1), ('bob', -1);

-- Bad input.
ALTER TABLE dm_tickets ADD CONSTRAINT dm_pair CHECK (sellers_zip > ticket_id) NOT VALID;
SELECT zt.describe('dm_tickets') AS tickets_before \gset
CREATE TABLE dm_attempts (label text, migration jsonb);
INSERT INTO dm_attempts VALUES
 ('unknown constraint', '{"operations": [{"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_nope", "down": {}}}]}'),
 ('up of another column', '{"operations": [{"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_pair", "up": {"sellers_name": "sellers_name"}}}]}'),
 ('down of another column', '{"operations": [{"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_pair", "down": {"nope": "1"}}}]}'),
 ('down a string', '{"operations": [{"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_pair", "down": "sellers_zip"}}]}'),
 ('up converts', '{"operations": [{"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_pair", "up": {"sellers_zip": "sellers_zip * 2"}}}]}'),
 ('down wrong type', '{"operations": [{"drop_multicolumn_constraint": {"table": "dm_tickets", "name": "dm_pair", "down": {"sellers_zip": "now()"}}}]}');
SELECT label, zt.try(format('SELECT zdm.expand(%L, %L)', 'dm_bad_' || row_number() OVER (), migration)) AS result
  FROM dm_attempts;
SELECT zt.describe('dm_tickets') = :'tickets_before' AS tickets_unchanged;
SELECT count(*) AS recorded FROM zdm.migrations WHERE name LIKE 'dm\_bad\_%';

RESET ROLE;
DROP TABLE dm_attempts, dm_tickets, dm_sellers;
DELETE FROM zdm.migrations WHERE name LIKE 'dm\_%';
REVOKE CREATE ON SCHEMA public FROM regress_dm_migrator;
REVOKE USAGE ON SCHEMA zt FROM regress_dm_migrator;
DROP ROLE regress_dm_migrator;
