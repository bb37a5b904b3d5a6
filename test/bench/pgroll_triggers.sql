-- test/bench/pgroll_triggers.sql: PL/pgSQL trigger functions of the shape
-- pgroll generates for an alter_column (included by pgroll*.sql once
-- public.orders exists, since the %TYPE declarations resolve against it).
--
-- The shape: one local variable per column of the table, declared with the
-- column's %TYPE and initialised from NEW; the session's search_path read
-- with a SELECT ... FROM current_setting(...); the direction chosen by
-- comparing it with the name of the latest version schema; NEW assigned.
-- pgroll also looks the latest version schema up with a query on its state
-- table on every row; here it is a constant, so these triggers cost less
-- than pgroll's own.
--
-- Clients of the old version run with search_path "$user", public, which is
-- not the latest version schema: the up function converts, the down
-- function only compares.

CREATE OR REPLACE FUNCTION bench.pgroll_up() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    "id"            public.orders.id%TYPE := NEW."id";
    "customer"      public.orders.customer%TYPE := NEW."customer";
    "legacy_status" public.orders.legacy_status%TYPE := NEW."legacy_status";
    "status_enum"   public.orders.status_enum%TYPE := NEW."status_enum";
    latest_schema   text := 'public_bench_status_enum';
    search_path     text;
BEGIN
    SELECT current_setting INTO search_path FROM current_setting('search_path');
    IF search_path <> latest_schema THEN
        NEW."status_enum" = "legacy_status"::order_status;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION bench.pgroll_down() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    "id"            public.orders.id%TYPE := NEW."id";
    "customer"      public.orders.customer%TYPE := NEW."customer";
    "legacy_status" public.orders.legacy_status%TYPE := NEW."legacy_status";
    "status_enum"   public.orders.status_enum%TYPE := NEW."status_enum";
    latest_schema   text := 'public_bench_status_enum';
    search_path     text;
BEGIN
    SELECT current_setting INTO search_path FROM current_setting('search_path');
    IF search_path = latest_schema THEN
        NEW."legacy_status" = "status_enum"::text;
    END IF;
    RETURN NEW;
END
$$;
