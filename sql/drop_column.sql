--
-- drop_column: the column stays until contract; "down" fills it for new
-- clients that no longer write it.
--
CREATE TABLE fruits (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL);
INSERT INTO fruits VALUES (1, 'apple', 1.5), (2, 'pear', 2.0);

SELECT zdm.expand('drop_1', '{"operations": [{"drop_column": {"table": "fruits", "column": "price", "down": "0"}}]}');
SELECT zt.shape('fruits');

-- v4 leaves price out; v3 still writes it.
INSERT INTO fruits (id, name) VALUES (3, 'plum');
INSERT INTO fruits (id, name, price) VALUES (4, 'fig', 3.25);
-- An update that leaves price alone keeps it.
UPDATE fruits SET name = 'green apple' WHERE id = 1;
SELECT * FROM fruits ORDER BY id;

SELECT zdm.backfill('drop_1');
SELECT zdm.verify('drop_1');
SELECT zdm.contract('drop_1');
SELECT zt.shape('fruits');

-- Without down, a NOT NULL column without default would break new clients.
ALTER TABLE fruits ADD COLUMN origin text NOT NULL DEFAULT 'unknown';
ALTER TABLE fruits ADD COLUMN grade text;
UPDATE fruits SET grade = 'A';
ALTER TABLE fruits ALTER COLUMN grade SET NOT NULL;
SELECT zt.try($$SELECT zdm.expand('drop_2', '{"operations": [{"drop_column": {"table": "fruits", "column": "grade"}}]}')$$);
-- With a default it is fine; rollback keeps the column and its data.
SELECT zdm.expand('drop_2', '{"operations": [{"drop_column": {"table": "fruits", "column": "origin"}}]}');
INSERT INTO fruits (id, name, grade) VALUES (5, 'kiwi', 'B');
SELECT zdm.rollback('drop_2');
SELECT id, origin FROM fruits ORDER BY id;
-- A key column cannot be dropped this way.
SELECT zt.try($$SELECT zdm.expand('drop_3', '{"operations": [{"drop_column": {"table": "fruits", "column": "id", "down": "0"}}]}')$$);
DROP TABLE fruits;

--
-- What depends on the dropped column, as a migration role (who owns the
-- tables) would meet it.  What exists for the column alone goes with it,
-- and expand says so; what also serves other columns, or would stop
-- contract's DROP COLUMN, is refused at expand, named, changing nothing.
--
CREATE ROLE regress_dc_migrator;
GRANT zdm_migrator TO regress_dc_migrator;
GRANT USAGE ON SCHEMA zt TO regress_dc_migrator;
GRANT CREATE ON SCHEMA public TO regress_dc_migrator;
SELECT format('GRANT CREATE ON DATABASE %I TO regress_dc_migrator', current_database()) \gexec
SET ROLE regress_dc_migrator;
CREATE TABLE dc_makers (code text PRIMARY KEY);
INSERT INTO dc_makers VALUES ('acme'), ('zeta');
CREATE TABLE dc_parts (
    id int PRIMARY KEY,
    serial_no serial,
    maker text REFERENCES dc_makers (code),
    sku text CONSTRAINT dc_parts_sku_key UNIQUE CONSTRAINT dc_sku_length CHECK (length(sku) > 2),
    weight numeric,
    label text,
    note text);
CREATE INDEX dc_parts_lower_label ON dc_parts (lower(label));
CREATE INDEX dc_parts_maker_partial ON dc_parts (maker) WHERE maker <> 'none';
INSERT INTO dc_parts (id, maker, sku, weight, label) VALUES (1, 'acme', 'a-1', 1.5, 'Bolt'), (2, 'zeta', 'z-2', 2.5, 'Nut');
SELECT zt.describe('dc_parts') AS parts_before \gset

-- Each of these exists for its column alone: dropped with it, and said so.
SELECT zdm.expand('dc_1', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "sku"}},
                                           {"drop_column": {"table": "dc_parts", "column": "maker"}},
                                           {"drop_column": {"table": "dc_parts", "column": "serial_no"}},
                                           {"drop_column": {"table": "dc_parts", "column": "label"}}]}');
SELECT zdm.rollback('dc_1');
SELECT zt.describe('dc_parts') = :'parts_before' AS unchanged;

-- Objects that also serve other columns are refused, named; nothing changes.
CREATE INDEX dc_parts_weight_label ON dc_parts (weight, label);
CREATE INDEX dc_parts_id_heavy ON dc_parts (id) WHERE weight > 2;
CREATE INDEX dc_parts_expr ON dc_parts ((weight * id));
ALTER TABLE dc_parts ADD CONSTRAINT dc_weight_vs_id CHECK (weight < id * 100);
SELECT zt.describe('dc_parts') AS parts_before \gset
SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}]}');
SELECT zt.describe('dc_parts') = :'parts_before' AS unchanged;
DROP INDEX dc_parts_weight_label, dc_parts_id_heavy, dc_parts_expr;
ALTER TABLE dc_parts DROP CONSTRAINT dc_weight_vs_id;
SELECT zt.describe('dc_parts') AS parts_before \gset

-- Another table's foreign key on the column: contract's DROP COLUMN would fail on it.
CREATE TABLE dc_orders (id int PRIMARY KEY, sku text REFERENCES dc_parts (sku));
SELECT zt.try($$SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "sku"}}]}')$$);
DROP TABLE dc_orders;

-- Objects that use the column, each refused with what to do.
CREATE VIEW dc_light AS SELECT id FROM dc_parts WHERE weight < 2;
SELECT zt.try($$SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}]}')$$);
DROP VIEW dc_light;
ALTER TABLE dc_parts ADD COLUMN weight_g numeric GENERATED ALWAYS AS (weight * 1000) STORED;
SELECT zt.try($$SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}]}')$$);
ALTER TABLE dc_parts DROP COLUMN weight_g;
CREATE POLICY dc_light_only ON dc_parts USING (weight < 10);
SELECT zt.try($$SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}]}')$$);
DROP POLICY dc_light_only ON dc_parts;
CREATE STATISTICS dc_stats ON weight, label FROM dc_parts;
SELECT zt.try($$SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}]}')$$);
DROP STATISTICS dc_stats;
CREATE FUNCTION dc_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER dc_heavy BEFORE UPDATE ON dc_parts FOR EACH ROW WHEN (NEW.weight > 100) EXECUTE FUNCTION dc_noop();
SELECT zt.try($$SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}]}')$$);
DROP TRIGGER dc_heavy ON dc_parts;
CREATE TRIGGER dc_reweigh BEFORE UPDATE OF weight ON dc_parts FOR EACH ROW EXECUTE FUNCTION dc_noop();
SELECT zt.try($$SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}]}')$$);
DROP TRIGGER dc_reweigh ON dc_parts;
RESET ROLE;
CREATE PUBLICATION dc_pub FOR TABLE dc_parts (id, weight);
SET ROLE regress_dc_migrator;
SELECT zt.try($$SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}]}')$$);
RESET ROLE;
DROP PUBLICATION dc_pub;
SET ROLE regress_dc_migrator;
SELECT zt.describe('dc_parts') = :'parts_before' AS unchanged;

-- Free of them, the drop runs its lifecycle; what went with the columns is gone.
SELECT zdm.expand('dc_2', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "weight"}}, {"drop_column": {"table": "dc_parts", "column": "sku"}}]}');
SELECT zdm.backfill('dc_2');
SELECT zdm.contract('dc_2');
SELECT zt.describe('dc_parts');

-- A retired API version's guard (SELECT * of the table) is dropped before
-- the column goes and made again after.
SELECT zdm.expand('dc_3', '{"versions": {"old": "dc_v1", "new": "dc_v2"}, "operations": [{"alter_column": {"table": "dc_parts", "column": "note", "name": "remark"}}]}');
SELECT zdm.backfill('dc_3');
SELECT zdm.backfill('dc_3');
SELECT zdm.contract('dc_3', force => true);
-- (dc_v2, live, shows the column: a migration without versions is refused)
SELECT zdm.expand('dc_4', '{"operations": [{"drop_column": {"table": "dc_parts", "column": "remark"}}]}');
SELECT zdm.expand('dc_4', '{"versions": {"new": "dc_v3"}, "operations": [{"drop_column": {"table": "dc_parts", "column": "remark"}}]}');
SELECT zdm.backfill('dc_4');
SELECT zdm.contract('dc_4', force => true);
SELECT zt.try($$SELECT * FROM dc_v1.dc_parts$$);
SELECT zt.describe('dc_parts');
RESET ROLE;
DROP SCHEMA dc_v1, dc_v2, dc_v3 CASCADE;
DROP TABLE dc_parts, dc_makers;
DROP FUNCTION dc_noop();
DELETE FROM zdm.api_versions WHERE version LIKE 'dc\_v%';
DELETE FROM zdm.migrations WHERE name LIKE 'dc\_%';
REVOKE USAGE ON SCHEMA zt FROM regress_dc_migrator;
REVOKE CREATE ON SCHEMA public FROM regress_dc_migrator;
SELECT format('REVOKE CREATE ON DATABASE %I FROM regress_dc_migrator', current_database()) \gexec
DROP ROLE regress_dc_migrator;
