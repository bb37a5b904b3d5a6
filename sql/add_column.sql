--
-- add_column: nullable, constant default, up, NOT NULL via a NOT VALID check.
--
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO products SELECT g, 'product ' || g FROM generate_series(1, 30) g;

-- pgroll's example 03: up, a NOT NULL column with a constant default, and
-- a NOT NULL column filled by up.
SELECT zdm.expand('add_1', '{"operations": [
  {"add_column": {"table": "products", "up": "UPPER(name)", "column": {"name": "description", "type": "varchar(255)", "nullable": true}}},
  {"add_column": {"table": "products", "column": {"name": "stock", "type": "int", "nullable": false, "default": "100"}}},
  {"add_column": {"table": "products", "up": "name || ''-category''", "column": {"name": "category", "type": "varchar(255)", "nullable": false, "check": {"name": "category_length", "constraint": "length(category) < 100"}, "comment": "where it is shelved"}}}
]}');
SELECT zt.shape('products');

-- An old client knows none of the new columns.
INSERT INTO products (id, name) VALUES (101, 'widget');
-- A new client sets its own values, which up does not overwrite.
INSERT INTO products (id, name, description, category) VALUES (102, 'gadget', 'a gadget', 'tools');
SELECT * FROM products WHERE id > 100 ORDER BY id;

-- The NOT VALID check already holds new writes to its promise.
SELECT zt.try($$UPDATE products SET category = NULL WHERE id = 101$$);

-- An update of a column up reads recomputes the new column; an explicit
-- write of the new column is kept.
UPDATE products SET name = 'widget v2' WHERE id = 101;
UPDATE products SET description = 'hand-written' WHERE id = 102;
SELECT id, name, description, category FROM products WHERE id > 100 ORDER BY id;

SELECT zdm.verify('add_1');
SELECT zdm.backfill('add_1', 1000);
SELECT zdm.backfill('add_1', 1000);
SELECT zdm.verify('add_1');
SELECT count(*) FILTER (WHERE description = upper(name)) AS described,
       count(*) FILTER (WHERE stock = 100) AS stocked,
       count(*) FILTER (WHERE category = name || '-category') AS categorised
  FROM products WHERE id <= 30;

SELECT zdm.contract('add_1');
SELECT zt.shape('products');
SELECT col_description('products'::regclass, 5);

-- expand -> rollback restores the table exactly.
SELECT zt.shape('products') AS before \gset
SELECT zdm.expand('add_2', '{"operations": [{"add_column": {"table": "products", "column": {"name": "weight", "type": "numeric(8,2)", "nullable": false, "default": "0"}}}]}');
SELECT zt.shape('products');
SELECT zdm.rollback('add_2');
SELECT zt.shape('products') = :'before' AS restored;

-- A volatile default would rewrite the table under ACCESS EXCLUSIVE.
SELECT zt.try($$SELECT zdm.expand('add_3', '{"operations": [{"add_column": {"table": "products", "column": {"name": "r", "type": "int", "default": "(random() * 1000)::int"}}}]}')$$);
-- NOT NULL with neither default nor up would fail every old client's insert.
SELECT zt.try($$SELECT zdm.expand('add_3', '{"operations": [{"add_column": {"table": "products", "column": {"name": "r", "type": "int"}}}]}')$$);
SELECT zt.shape('products') = :'before' AS unchanged;
DROP TABLE products;
