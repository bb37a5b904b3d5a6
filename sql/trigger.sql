--
-- trigger: the dual-write trigger keeps old and new columns in step.
--
-- Old (v3) clients write legacy_status (upper-case text), new (v4) clients
-- write status_enum (a lower-case enum).  up = lower(legacy_status)::enum,
-- down = upper(status_enum::text), so every value shows which way it was
-- computed.  Covered: INSERT, UPDATE, ON CONFLICT, COPY, partitions with
-- different physical layouts, add_column "up", drop_column "down", and an
-- error inside an up expression.
--
CREATE TYPE tr_status AS ENUM ('active', 'inactive', 'banned');

CREATE TABLE tr_users (
    id            integer PRIMARY KEY,
    name          text,
    legacy_status text NOT NULL
);
INSERT INTO tr_users VALUES (1, 'pre-1', 'INACTIVE'), (2, 'pre-2', 'ACTIVE');

SELECT zdm.expand('tr_status', $${"operations": [{"alter_column": {
    "table": "tr_users", "column": "legacy_status", "name": "status_enum",
    "type": "tr_status",
    "up": "lower(legacy_status)::tr_status",
    "down": "upper(status_enum::text)"}}]}$$);
SELECT zt.shape('tr_users');

-- Rows from before expand are not converted yet.
SELECT * FROM tr_users ORDER BY id;

-- v3 INSERT (new column left out): status_enum := up(row).
INSERT INTO tr_users (id, name, legacy_status) VALUES (3, 'v3', 'BANNED');
-- v4 INSERT leaving out the NOT NULL old column: legacy_status := down(row).
INSERT INTO tr_users (id, name, status_enum) VALUES (4, 'v4', 'inactive');
-- Both supplied (and disagreeing): the new column wins, old := down(new).
INSERT INTO tr_users (id, name, legacy_status, status_enum) VALUES (5, 'both', 'ACTIVE', 'banned');
SELECT * FROM tr_users WHERE id >= 3 ORDER BY id;

-- UPDATE of the old column only: new := up(row).
UPDATE tr_users SET legacy_status = 'ACTIVE' WHERE id = 3;
-- UPDATE of the new column only: old := down(row).
UPDATE tr_users SET status_enum = 'banned' WHERE id = 4;
-- UPDATE of both (disagreeing): the new column wins.
UPDATE tr_users SET legacy_status = 'INACTIVE', status_enum = 'active' WHERE id = 5;
SELECT * FROM tr_users WHERE id >= 3 ORDER BY id;

-- UPDATE of an unrelated column changes neither.  To see that nothing is
-- recomputed in either direction, row 5 is first made inconsistent behind
-- the trigger's back (old BANNED, new active).  The trigger fires in
-- replica mode too (a subscription's apply worker writes through it), so
-- it is disabled for that one statement.
SELECT format('ALTER TABLE tr_users DISABLE TRIGGER %I', tgname) AS trigger_off,
       format('ALTER TABLE tr_users ENABLE ALWAYS TRIGGER %I', tgname) AS trigger_on
  FROM pg_trigger WHERE tgrelid = 'tr_users'::regclass AND tgname LIKE 'zdm\_%' \gset
:trigger_off;
UPDATE tr_users SET legacy_status = 'BANNED' WHERE id = 5;
:trigger_on;
UPDATE tr_users SET name = name || '!' WHERE id BETWEEN 3 AND 5;
SELECT * FROM tr_users WHERE id >= 3 ORDER BY id;
-- verify counts it (with the two rows from before expand), ...
SELECT zdm.verify('tr_status');
-- ... and a write of the new column repairs it.
UPDATE tr_users SET status_enum = 'inactive' WHERE id = 5;
SELECT * FROM tr_users WHERE id = 5;

-- An unrelated UPDATE of a row from before expand (not backfilled yet) must
-- not fail on the new column's NOT NULL check: the row gets converted.
UPDATE tr_users SET name = 'pre-1 renamed' WHERE id = 1;
SELECT * FROM tr_users WHERE id = 1;

-- Multi-row UPDATE, old column: every row's new column follows.
UPDATE tr_users SET legacy_status = 'BANNED' WHERE id BETWEEN 3 AND 5;
SELECT * FROM tr_users WHERE id >= 3 ORDER BY id;
-- Multi-row UPDATE, new column: every row's old column follows.
UPDATE tr_users SET status_enum = 'inactive' WHERE id BETWEEN 3 AND 5;
SELECT * FROM tr_users WHERE id >= 3 ORDER BY id;

-- INSERT ... ON CONFLICT DO UPDATE setting the old column.
INSERT INTO tr_users (id, name, legacy_status) VALUES (3, 'ignored', 'ACTIVE')
    ON CONFLICT (id) DO UPDATE SET legacy_status = EXCLUDED.legacy_status;
-- ... setting the new column.
INSERT INTO tr_users (id, name, status_enum) VALUES (4, 'ignored', 'banned')
    ON CONFLICT (id) DO UPDATE SET status_enum = EXCLUDED.status_enum;
-- ... no conflict: a plain v4 insert.
INSERT INTO tr_users (id, name, status_enum) VALUES (6, 'upsert', 'active')
    ON CONFLICT (id) DO UPDATE SET status_enum = EXCLUDED.status_enum;
SELECT * FROM tr_users WHERE id >= 3 ORDER BY id;

-- COPY from a v3 client and from a v4 client.
COPY tr_users (id, name, legacy_status) FROM STDIN;
10	copy-v3-a	BANNED
11	copy-v3-b	INACTIVE
\.
COPY tr_users (id, name, status_enum) FROM STDIN;
12	copy-v4	active
\.
SELECT * FROM tr_users WHERE id >= 10 ORDER BY id;

-- An error inside up for one row fails the whole statement with the cast's
-- error; nothing of it is kept.
SELECT zt.try($$INSERT INTO tr_users (id, name, legacy_status)
                VALUES (20, 'ok', 'ACTIVE'), (21, 'bad', 'bogus')$$);
SELECT zt.try($$UPDATE tr_users SET legacy_status = CASE id WHEN 11 THEN 'bogus' ELSE 'ACTIVE' END
                WHERE id >= 10$$);
SELECT zt.try($$COPY tr_users (id, name, legacy_status) FROM PROGRAM 'printf "30\tx\tACTIVE\n31\ty\tbogus\n"'$$);
SELECT count(*) FILTER (WHERE id >= 20) AS new_rows,
       string_agg(legacy_status || '/' || status_enum, ' ' ORDER BY id) FILTER (WHERE id >= 10) AS copied
  FROM tr_users;

--
-- A partitioned table: PRIMARY KEY (region, id), one partition with the
-- parent's layout, one attached with its columns in another order and a
-- dropped column, one created after expand.
--
CREATE TABLE tr_events (
    region        text NOT NULL,
    id            integer NOT NULL,
    legacy_status text NOT NULL,
    payload       text,
    PRIMARY KEY (region, id)
) PARTITION BY LIST (region);
CREATE TABLE tr_events_us PARTITION OF tr_events FOR VALUES IN ('us');
CREATE TABLE tr_events_eu (payload text, junk integer, legacy_status text NOT NULL,
                           id integer NOT NULL, region text NOT NULL);
ALTER TABLE tr_events_eu DROP COLUMN junk;
ALTER TABLE tr_events ATTACH PARTITION tr_events_eu FOR VALUES IN ('eu');
INSERT INTO tr_events VALUES ('us', 1, 'ACTIVE', 'pre'), ('eu', 1, 'BANNED', 'pre');

SELECT zdm.expand('tr_events_status', $${"operations": [{"alter_column": {
    "table": "tr_events", "column": "legacy_status", "name": "status_enum",
    "type": "tr_status",
    "up": "lower(legacy_status)::tr_status",
    "down": "upper(status_enum::text)"}}]}$$);
CREATE TABLE tr_events_ap PARTITION OF tr_events FOR VALUES IN ('ap');

-- The physical layouts differ; every partition has the trigger.
SELECT attrelid::regclass AS rel, string_agg(attname || ':' || attnum, ' ' ORDER BY attnum) AS columns
  FROM pg_attribute
 WHERE attrelid IN ('tr_events_us'::regclass, 'tr_events_eu'::regclass, 'tr_events_ap'::regclass)
   AND attnum > 0 AND NOT attisdropped
 GROUP BY attrelid ORDER BY attrelid::regclass::text;
SELECT tgrelid::regclass AS rel, count(*) AS dual_write_triggers
  FROM pg_trigger
 WHERE tgfoid = 'zdm.dual_write'::regproc
   AND tgrelid IN ('tr_events_us'::regclass, 'tr_events_eu'::regclass, 'tr_events_ap'::regclass)
 GROUP BY tgrelid ORDER BY tgrelid::regclass::text;

-- v3 and v4 inserts routed to each partition, and one straight into a partition.
INSERT INTO tr_events (region, id, legacy_status)
     VALUES ('us', 2, 'INACTIVE'), ('eu', 2, 'INACTIVE'), ('ap', 2, 'INACTIVE');
INSERT INTO tr_events (region, id, status_enum)
     VALUES ('us', 3, 'banned'), ('eu', 3, 'banned'), ('ap', 3, 'banned');
INSERT INTO tr_events_eu (region, id, status_enum) VALUES ('eu', 4, 'active');
-- Updates of the old, then the new column in every partition.
UPDATE tr_events SET legacy_status = 'ACTIVE' WHERE id = 2;
UPDATE tr_events SET status_enum = 'inactive' WHERE id = 3;
SELECT tableoid::regclass AS part, region, id, legacy_status, status_enum
  FROM tr_events ORDER BY region, id;

-- Rows moving between partitions (eu and us have different layouts).
UPDATE tr_events SET region = 'eu', id = 5, status_enum = 'banned' WHERE region = 'us' AND id = 2;
UPDATE tr_events SET region = 'us', id = 6, legacy_status = 'INACTIVE' WHERE region = 'eu' AND id = 2;
COPY tr_events (region, id, legacy_status) FROM STDIN;
eu	7	BANNED
us	7	ACTIVE
ap	7	INACTIVE
\.
SELECT tableoid::regclass AS part, region, id, legacy_status, status_enum
  FROM tr_events WHERE id >= 5 ORDER BY region, id;
SELECT zdm.verify('tr_events_status');

--
-- add_column with an "up" reading another column.
--
CREATE TABLE tr_docs (id integer PRIMARY KEY, title text NOT NULL, body text);
INSERT INTO tr_docs VALUES (1, 'Hello', 'pre');
SELECT zdm.expand('tr_docs_slug', $${"operations": [{"add_column": {
    "table": "tr_docs",
    "column": {"name": "slug", "type": "text", "nullable": true},
    "up": "lower(title) || '-' || id"}}]}$$);
INSERT INTO tr_docs (id, title) VALUES (2, 'World'), (3, 'Third');
INSERT INTO tr_docs (id, title, slug) VALUES (4, 'Mine', 'custom');
SELECT * FROM tr_docs ORDER BY id;
-- UPDATE of the column up reads recomputes it (also over an explicit value).
UPDATE tr_docs SET title = 'Renamed' WHERE id IN (2, 4);
-- UPDATE of the new column keeps the explicit value.
UPDATE tr_docs SET slug = 'explicit' WHERE id = 2;
-- Both: the explicit value wins.
UPDATE tr_docs SET title = 'Both', slug = 'both-explicit' WHERE id = 3;
-- Unrelated column: nothing recomputed.
UPDATE tr_docs SET body = 'new body' WHERE id IN (2, 3, 4);
SELECT * FROM tr_docs ORDER BY id;

--
-- drop_column with "down": inserts leaving the column out get down's value.
--
CREATE TABLE tr_legacy (id integer PRIMARY KEY, code text NOT NULL, legacy_code text NOT NULL);
INSERT INTO tr_legacy VALUES (1, 'a', 'OLD-1');
SELECT zdm.expand('tr_legacy_drop', $${"operations": [{"drop_column": {
    "table": "tr_legacy", "column": "legacy_code", "down": "'L-' || upper(code)"}}]}$$);
INSERT INTO tr_legacy (id, code) VALUES (2, 'b');
INSERT INTO tr_legacy (id, code, legacy_code) VALUES (3, 'c', 'GIVEN-3');
COPY tr_legacy (id, code) FROM STDIN;
4	d
\.
SELECT * FROM tr_legacy ORDER BY id;

--
-- An up expression whose function writes the same table: the nested call
-- of the trigger gets a working row of its own and leaves the outer row be.
--
CREATE TABLE tr_nest (id int PRIMARY KEY, note text);
CREATE FUNCTION tr_nest_up(id int, note text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    IF note = 'outer' THEN
        INSERT INTO tr_nest (id, note) VALUES (id + 100, 'inner');
    END IF;
    RETURN upper(note);
END $f$;
SELECT zdm.expand('tr_nest', $${"operations":[{"alter_column":{"table":"tr_nest","column":"note",
  "name":"note_upper","up":"tr_nest_up(id, note)","down":"lower(note_upper)"}}]}$$);
INSERT INTO tr_nest (id, note) VALUES (1, 'outer');
UPDATE tr_nest SET note = 'outer' WHERE id = 1;
SELECT id, note, note_upper FROM tr_nest ORDER BY id;
SELECT zdm.rollback('tr_nest');

--
-- The end: tr_status and tr_docs_slug are backfilled and contracted,
-- tr_events_status and tr_legacy_drop rolled back.
--
SELECT zdm.verify('tr_status');
SELECT zdm.backfill('tr_status');
SELECT zdm.backfill('tr_status');
SELECT zdm.verify('tr_status');
SELECT zdm.contract('tr_status');
SELECT zt.shape('tr_users');
SELECT * FROM tr_users ORDER BY id;
-- The trigger is gone: writes are plain again.
INSERT INTO tr_users (id, name, status_enum) VALUES (40, 'after', 'banned');
SELECT * FROM tr_users WHERE id = 40;

SELECT zdm.backfill('tr_docs_slug');
SELECT zdm.backfill('tr_docs_slug');
SELECT zdm.contract('tr_docs_slug');
SELECT zt.shape('tr_docs');
SELECT * FROM tr_docs ORDER BY id;

SELECT zdm.rollback('tr_events_status');
SELECT zt.shape('tr_events');
SELECT zt.shape('tr_events_eu');
SELECT zt.shape('tr_events_ap');
SELECT tableoid::regclass AS part, * FROM tr_events ORDER BY region, id;

SELECT zdm.rollback('tr_legacy_drop');
SELECT zt.shape('tr_legacy');
SELECT * FROM tr_legacy ORDER BY id;

SELECT name, phase FROM zdm.status WHERE name LIKE 'tr\_%' ORDER BY name;
