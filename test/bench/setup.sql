-- test/bench/setup.sql: run once per benchmark database.  The enum the
-- migration converts to, zdm itself, and the helpers every variant uses.
-- The statements that are timed are in the variant files, written out in
-- full; nothing here runs inside a timed statement.
\set ON_ERROR_STOP 1

CREATE EXTENSION zdm;
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
CREATE SCHEMA bench;

-- CPU time (user + system) this backend has used so far, in milliseconds,
-- from /proc/self/stat (Linux; the psql variable clk_tck is the kernel's
-- tick rate, getconf CLK_TCK).  Other processes on the machine slow the
-- wall clock of a statement but hardly its backend's CPU time.
ALTER DATABASE bench SET bench.clk_tck = :'clk_tck';
CREATE FUNCTION bench.cpu_ms() RETURNS double precision
LANGUAGE sql AS $$
    SELECT (f[12]::bigint + f[13]::bigint) * 1000.0 / current_setting('bench.clk_tck')::int
      FROM (SELECT string_to_array(regexp_replace(pg_read_file('/proc/self/stat'), '^.*\) ', ''), ' ')) AS s(f)
$$;

-- Drop public.orders, rolling back its zdm migration first if it has one.
CREATE FUNCTION bench.reset() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM zdm.rollback(name) FROM zdm.migrations
      WHERE phase NOT IN ('rolled_back', 'contracted');
    DROP TABLE IF EXISTS public.orders;
END
$$;

-- Fail unless every row holds the expected status in both columns: the
-- value the INSERT wrote (shift 0) or the UPDATE wrote (shift 1).  A broken
-- trigger must not produce a good-looking figure.
CREATE FUNCTION bench.check(variant text, what text, nrows bigint, shift int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    bad_old bigint;
    bad_new bigint;
BEGIN
    SELECT count(*),
           count(*) FILTER (WHERE legacy_status IS DISTINCT FROM
               (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + (id + shift) % 5]),
           count(*) FILTER (WHERE status_enum IS DISTINCT FROM
               (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled']::order_status[])[1 + (id + shift) % 5])
      INTO n, bad_old, bad_new
      FROM public.orders;
    IF n <> nrows OR bad_old <> 0 OR bad_new <> 0 THEN
        RAISE EXCEPTION 'bench %: after %, % rows (expected %), % wrong legacy_status, % wrong status_enum',
            variant, what, n, nrows, bad_old, bad_new;
    END IF;
END
$$;
