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
