#!/usr/bin/env bash
# test/bench/backfill.sh: how fast zdm's background worker backfills, next
# to one bulk UPDATE of the same rows and a pgroll-shaped backfill.
#
# The table: orders (id bigint PRIMARY KEY, customer_id bigint, amount
# numeric(12,2), created_at timestamptz, note text, legacy_status text);
# the migration converts legacy_status (text) to status_enum (an enum),
# the README's alter_column with up 'legacy_status::order_status' and
# down 'status_enum::text'.  Variants, each on a freshly loaded table, after
# VACUUM ANALYZE and CHECKPOINT:
#
#   bulk     ALTER TABLE ADD COLUMN status_enum, then one
#            UPDATE orders SET status_enum = legacy_status::order_status
#            (the baseline: what a migration tool that does not care about
#            locks would run)
#   floor    bulk's UPDATE with a built-in C BEFORE UPDATE row trigger
#            (suppress_redundant_updates_trigger) on the table: what firing
#            any row trigger costs an UPDATE (zdm's backfill runs with the
#            dual-write trigger installed; it returns at once for the
#            backfill's own rows, but PostgreSQL first locks each row for it)
#   zdm0     zdm.expand(), then zdm.start_backfill(name, sleep_ratio => 0);
#            timed from the call until zdm.status shows phase 'backfilled'
#            (polled every BACKFILL_POLL seconds by a procedure that commits
#            between polls); the worker's own settings otherwise (batch_time
#            200ms, batches tuned from 1000 rows up)
#   zdm01    the same with the default sleep_ratio (0.1)
#   pgroll   status_enum added by hand with a PL/pgSQL BEFORE UPDATE trigger
#            of pgroll's shape (one %TYPE variable per column, the
#            search_path test), then keyset batches of 1000 rows by primary
#            key, each a no-op UPDATE (SET id = id) that fires the trigger,
#            each committed; driven by a procedure in the server, so there
#            are no client round trips (pgroll's own client has them)
#
# Every run ends with a check that every row has
# status_enum = legacy_status::order_status.  Figures: wall-clock time,
# rows/s and their ratio to bulk; the median over BACKFILL_ROUNDS rounds,
# interleaved (the order rotates each round).  Also the CPU time of the
# process that did the work (the backend; for zdm the worker, sampled at
# each poll).  Then zdm0 (and bulk) once on BACKFILL_BIG_ROWS rows, for the
# "flat with size" goal.
#
#   bash test/bench/backfill.sh                 # also run by make bench
#   BACKFILL_BIG=0 bash test/bench/backfill.sh  # skip the 10M-row run
#   BACKFILL_ROWS=200000 BACKFILL_ROUNDS=1 BACKFILL_BIG=0 bash test/bench/backfill.sh
#   BACKFILL_PERF=1 ...                         # perf profile of bulk and zdm0
#   BACKFILL_CALLGRIND=1 ...                    # instructions of bulk, floor and zdm0
#   BACKFILL_TRAFFIC=0 ...                      # do not run traffic.sh after
#
# traffic.sh runs with shared_preload_libraries = 'zdm' (the worker paces
# itself only then) and 450 s a run (the paced backfill of its 5,000,000
# rows took about 360 s), unless TRAFFIC_PRELOAD / TRAFFIC_DURATION say
# otherwise (TRAFFIC_PRELOAD= for none).
#
# The cluster lives under ./tmp/bench-backfill/backfill (port 5496; logs,
# results.tsv, progress.tsv, report.txt); it is stopped and its data
# directory removed at the end (BACKFILL_KEEP=1 keeps it).  The plot of
# the worker's progress goes to test/bench/plots/backfill-progress.png.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ZDM_ROOT"
export PGUSER=postgres

ROWS=${BACKFILL_ROWS:-1000000}
BIG_ROWS=${BACKFILL_BIG_ROWS:-10000000}
BIG=${BACKFILL_BIG:-1}
ROUNDS=${BACKFILL_ROUNDS:-5}
VARIANTS=(${BACKFILL_VARIANTS:-bulk floor zdm0 zdm01 pgroll})
BIG_VARIANTS=(${BACKFILL_BIG_VARIANTS:-bulk zdm0})
POLL=${BACKFILL_POLL:-0.05}
PORT=${BACKFILL_PORT:-5496}
BENCH=$ZDM_ROOT/test/bench
PLOTS=$BENCH/plots

say() { printf '%s\n' "$*"; }
die() { printf 'backfill bench FAILED: %s\n' "$*" >&2; exit 1; }

[[ $ROWS =~ ^[1-9][0-9]*$ ]] || die "BACKFILL_ROWS must be a positive integer"
[[ $BIG_ROWS =~ ^[1-9][0-9]*$ ]] || die "BACKFILL_BIG_ROWS must be a positive integer"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BACKFILL_ROUNDS must be a positive integer"
[ "${VARIANTS[0]}" = bulk ] || die "BACKFILL_VARIANTS must start with bulk, the baseline"
for v in "${VARIANTS[@]}" "${BIG_VARIANTS[@]}"; do
    case $v in bulk|floor|zdm0|zdm01|pgroll) ;; *) die "no variant $v (bulk floor zdm0 zdm01 pgroll)";; esac
done

mkdir -p "$ZDM_ROOT/tmp"
# One backfill or traffic benchmark at a time (they share the port and
# the work dir; make bench may be started while another runs).
exec 9>"$ZDM_ROOT/tmp/bench-backfill.lock"
if ! flock -n 9; then
    say "== backfill: waiting for another backfill.sh or traffic.sh to finish"
    flock 9
fi

say "== backfill: build and install"
zdm_build_install >"$ZDM_ROOT/tmp/bench-backfill-build.log" 2>&1 ||
    { tail -n 50 "$ZDM_ROOT/tmp/bench-backfill-build.log"; die "build or install"; }
ZDM_SO=$("$PG_CONFIG" --pkglibdir)/zdm.so
so_sum() { md5sum "$ZDM_SO" 2>/dev/null | cut -c1-12; }
so_at_start=$(so_sum)
src=$(git -C "$ZDM_ROOT" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$ZDM_ROOT" status --porcelain -- src sql Makefile zdm.control 2>/dev/null | wc -l)
[ "$dirty" -eq 0 ] || src+=" + uncommitted changes to $dirty files (src, sql, Makefile, control)"
say "zdm built and installed: $src, $ZDM_SO md5 $so_at_start"

mkdir -p "$ZDM_ROOT/tmp/bench-backfill"
DIR=$(zdm_workdir bench-backfill/backfill)
export ZDM_PG_HOME=$DIR
DATA=$DIR/data
SOCK=$DIR/sock
[ ${#SOCK} -lt 80 ] || SOCK=$(mktemp -d /tmp/zdm-bench-backfill-sock.XXXXXX)
mkdir -p "$SOCK" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$SOCK"; }

server_started=
cleanup() {
    if [ -n "$server_started" ]; then
        as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ "$SOCK" = "$DIR/sock" ] || rm -rf "$SOCK"
    [ -n "${BACKFILL_KEEP:-}" ] || rm -rf "$DATA"
}
trap cleanup EXIT

say "== backfill: cluster"
as_pg "$ZDM_PG_BINDIR/initdb" -D "$DATA" -U postgres -A trust --no-locale -E UTF8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log"; die "initdb"; }
# The 10M-row table and its updated copy fit in shared buffers; no
# checkpoint or autovacuum inside a timed run (the script runs VACUUM
# ANALYZE and CHECKPOINT before each).  fsync, synchronous_commit and the
# rest are PostgreSQL's defaults.
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
shared_buffers = 4GB
max_wal_size = 20GB
checkpoint_timeout = 1h
autovacuum = off
CONF
as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -o "-k $SOCK" start >/dev/null 9>&- ||
    { tail -n 50 "$DIR/server.log"; die "the server did not start"; }
server_started=1
as_pg "$ZDM_PG_BINDIR/createdb" -h "$SOCK" -p "$PORT" bench

psql_bench() {
    as_pg "$ZDM_PG_BINDIR/psql" -X -q -At -h "$SOCK" -p "$PORT" -d bench -v ON_ERROR_STOP=1 "$@"
}

# ---------- SQL: run once ----------
cat >"$DIR/setup.sql" <<'SQL'
\set ON_ERROR_STOP 1
CREATE EXTENSION zdm;
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
CREATE SCHEMA bench;

-- CPU time (user + system) of process pid so far, in ms (NULL if gone).
ALTER DATABASE bench SET bench.clk_tck = :'clk_tck';
CREATE FUNCTION bench.cpu_ms(pid int DEFAULT pg_backend_pid()) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE f text[];
BEGIN
    f := string_to_array(regexp_replace(pg_read_file('/proc/' || pid || '/stat'), '^.*\) ', ''), ' ');
    RETURN (f[12]::bigint + f[13]::bigint) * 1000.0 / current_setting('bench.clk_tck')::int;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- Samples of the worker's progress (for the plot).
CREATE TABLE bench.progress (run text, t double precision, rows_done bigint, batch_size int);

-- A fresh orders table of n rows, the primary key built after the load.
-- The previous table's migration is rolled back first.
CREATE FUNCTION bench.load(n bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM zdm.rollback(name) FROM zdm.migrations
      WHERE phase NOT IN ('rolled_back', 'contracted');
    DROP TABLE IF EXISTS public.orders;
    CREATE TABLE public.orders (
        id            bigint NOT NULL,
        customer_id   bigint NOT NULL,
        amount        numeric(12,2) NOT NULL,
        created_at    timestamptz NOT NULL,
        note          text,
        legacy_status text NOT NULL
    );
    INSERT INTO public.orders
    SELECT g, 1 + abs(hashint8(g)) % 100000, (abs(hashint8(g + 1)) % 100000) / 100.0,
           timestamptz '2024-01-01' + g * interval '3 s',
           CASE WHEN g % 4 = 0 THEN 'leave at the door, order ' || g END,
           (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + abs(hashint8(g + 2)) % 5]
      FROM generate_series(1, n) g;
    ALTER TABLE public.orders ADD PRIMARY KEY (id);
END
$$;

-- Fail unless every row is converted.
CREATE FUNCTION bench.check(variant text, n bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE total bigint; bad bigint;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE status_enum IS DISTINCT FROM legacy_status::order_status)
      INTO total, bad FROM public.orders;
    IF total <> n OR bad <> 0 THEN
        RAISE EXCEPTION 'backfill bench %: % rows (expected %), % not converted', variant, total, n, bad;
    END IF;
END
$$;

-- Poll zdm.status every poll seconds until migration m is backfilled;
-- commit between polls (no snapshot held across them).  Returns when it
-- saw the phase, how many polls, and the worker's CPU ms at the last poll
-- it was alive.
CREATE PROCEDURE bench.wait_backfilled(m text, run text, poll double precision, timeout_s double precision,
                                       INOUT seen_at timestamptz DEFAULT NULL, INOUT polls int DEFAULT 0,
                                       INOUT worker_cpu_ms double precision DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz := clock_timestamp();
    ph text; pid int; done bigint; bsize int; err text; c double precision;
BEGIN
    LOOP
        SELECT phase, worker_pid, rows_done, batch_size, last_error
          INTO ph, pid, done, bsize, err FROM zdm.status WHERE name = m;
        polls := polls + 1;
        IF ph = 'backfilled' THEN
            seen_at := clock_timestamp();
            RETURN;
        END IF;
        IF ph IS DISTINCT FROM 'expanded' AND ph IS DISTINCT FROM 'backfilling' THEN
            RAISE EXCEPTION 'migration % is %: %', m, ph, err;
        END IF;
        IF clock_timestamp() - t0 > timeout_s * interval '1 s' THEN
            RAISE EXCEPTION 'migration % not backfilled after % s (phase %, % rows)', m, timeout_s, ph, done;
        END IF;
        IF pid IS NOT NULL THEN
            c := bench.cpu_ms(pid);
            IF c IS NOT NULL THEN worker_cpu_ms := c; END IF;
        END IF;
        INSERT INTO bench.progress VALUES (run, extract(epoch FROM clock_timestamp() - t0), done, bsize);
        COMMIT;
        PERFORM pg_sleep(poll);
        COMMIT;
    END LOOP;
END
$$;

-- pgroll's backfill, server-side: keyset batches by primary key, each a
-- no-op UPDATE that fires the trigger, each committed.
CREATE PROCEDURE bench.pgroll_backfill(batch int, INOUT batches int DEFAULT 0, INOUT n bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE lo bigint; hi bigint; k bigint;
BEGIN
    SELECT min(id) - 1 INTO lo FROM public.orders;
    LOOP
        SELECT max(id), count(*) INTO hi, k
          FROM (SELECT id FROM public.orders WHERE id > lo ORDER BY id LIMIT batch) s;
        EXIT WHEN hi IS NULL;
        UPDATE public.orders SET id = id WHERE id > lo AND id <= hi;
        batches := batches + 1;
        n := n + k;
        lo := hi;
        COMMIT;
    END LOOP;
END
$$;
SQL

# ---------- SQL: one variant on a fresh table ----------
# psql variables: variant, rows, run, poll.  Prints
# "RESULT <variant> <rows> <ms> <cpu_ms> <extra>".
cat >"$DIR/variant.sql" <<'SQL'
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT bench.load(:rows);
SELECT :'variant' IN ('bulk', 'floor') AS is_bulk, :'variant' IN ('zdm0', 'zdm01') AS is_zdm,
       :'variant' = 'pgroll' AS is_pgroll \gset
\if :is_bulk
ALTER TABLE orders ADD COLUMN status_enum order_status;
SELECT :'variant' = 'floor' AS is_floor \gset
\if :is_floor
CREATE TRIGGER floor_before_update BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
\endif
\elif :is_zdm
SELECT zdm.expand(:'run', '{"operations": [{"alter_column": {
    "table": "orders", "column": "legacy_status", "name": "status_enum",
    "type": "order_status", "nullable": false,
    "up": "legacy_status::order_status", "down": "status_enum::text"}}]}') AS expanded \gset
\if :expanded
\else
SELECT 1/0 AS expand_did_not_apply;
\endif
\elif :is_pgroll
ALTER TABLE orders ADD COLUMN status_enum order_status;
-- pgroll's up trigger: one variable per column of the table, the
-- search_path compared with the latest version schema's name.
CREATE OR REPLACE FUNCTION bench.pgroll_up() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    "id"            public.orders.id%TYPE := NEW."id";
    "customer_id"   public.orders.customer_id%TYPE := NEW."customer_id";
    "amount"        public.orders.amount%TYPE := NEW."amount";
    "created_at"    public.orders.created_at%TYPE := NEW."created_at";
    "note"          public.orders.note%TYPE := NEW."note";
    "legacy_status" public.orders.legacy_status%TYPE := NEW."legacy_status";
    "status_enum"   public.orders.status_enum%TYPE := NEW."status_enum";
    latest_schema   text := 'public_02_status_enum';
    search_path     text;
BEGIN
    SELECT current_setting INTO search_path FROM current_setting('search_path');
    IF search_path <> latest_schema THEN
        NEW."status_enum" = "legacy_status"::order_status;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER _pgroll_trigger_orders_legacy_status
    BEFORE INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION bench.pgroll_up();
\endif
VACUUM ANALYZE orders;
CHECKPOINT;
-- Under callgrind the statement runs in a session of its own (below).
\if :{?prep_only}
\quit
\endif

SELECT clock_timestamp() AS t0 \gset
\if :is_bulk
SELECT bench.cpu_ms() AS cpu0 \gset
UPDATE orders SET status_enum = legacy_status::order_status;
SELECT round(1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz), 1) AS ms,
       round((bench.cpu_ms() - :cpu0)::numeric, 1) AS cpu_ms, 'statements=1' AS extra \gset
\elif :is_zdm
SELECT CASE :'variant' WHEN 'zdm0' THEN zdm.start_backfill(:'run', sleep_ratio => 0)
                       ELSE zdm.start_backfill(:'run') END AS started \gset
CALL bench.wait_backfilled(:'run', :'run', :poll, 7200) \gset w_
SELECT round(1000 * extract(epoch FROM :'w_seen_at'::timestamptz - :'t0'::timestamptz), 1) AS ms,
       round(:'w_worker_cpu_ms'::numeric, 1) AS cpu_ms,
       'exact_ms=' || round(1000 * extract(epoch FROM m.backfilled_at - :'t0'::timestamptz), 1)
       || ',batches=' || m.batches || ',last_batch=' || m.batch_size || ',polls=' || :w_polls AS extra
  FROM zdm.migrations m WHERE m.name = :'run' \gset
\elif :is_pgroll
SELECT bench.cpu_ms() AS cpu0 \gset
CALL bench.pgroll_backfill(1000) \gset p_
SELECT round(1000 * extract(epoch FROM clock_timestamp() - :'t0'::timestamptz), 1) AS ms,
       round((bench.cpu_ms() - :cpu0)::numeric, 1) AS cpu_ms,
       'batches=' || :p_batches AS extra \gset
\endif
SELECT bench.check(:'variant', :rows);
\echo RESULT :variant :rows :ms :cpu_ms :extra
SQL

psql_bench -v clk_tck="$(getconf CLK_TCK)" -f "$DIR/setup.sql" >"$DIR/setup.out" 2>&1 ||
    { cat "$DIR/setup.out"; die "setup.sql"; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
say "PostgreSQL $(psql_bench -c 'SHOW server_version'), $(nproc) cores (${cpu:-unknown cpu}), $(awk '/^MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM; load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "$ROWS rows x $ROUNDS rounds (${VARIANTS[*]}); then $( [ "$BIG" = 0 ] && echo "no big run (BACKFILL_BIG=0)" || echo "$BIG_ROWS rows once (${BIG_VARIANTS[*]})"); work dir $DIR"

# The worker of the previous run must be gone before the next starts (it
# would serve the new migration and its CPU time would count twice).
wait_no_worker() {
    local i
    for ((i = 0; i < 600; i++)); do
        [ "$(psql_bench -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'zdm backfill'")" = 0 ] && return 0
        sleep 0.1
    done
    die "a zdm backfill worker is still running"
}

# Run variant $1 on $2 rows as run $3; set ms, cpu and extra.
run_variant() {
    local variant=$1 rows=$2 run=$3 out=$DIR/$3.out load0
    wait_no_worker
    load0=$(cut -d' ' -f1 /proc/loadavg)
    psql_bench -v variant="$variant" -v rows="$rows" -v run="$run" -v poll="$POLL" \
        -f "$DIR/variant.sql" >"$out" 2>&1 || { cat "$out"; die "$variant on $rows rows ($run)"; }
    read -r ms cpu extra <<<"$(awk '$1 == "RESULT" { print $4, $5, $6 }' "$out")"
    [ -n "$extra" ] || { cat "$out"; die "$variant printed no RESULT line"; }
    extra+=",load=$load0-$(cut -d' ' -f1 /proc/loadavg)"
}

printf 'rows\tround\tvariant\tms\tcpu_ms\textra\n' >"$DIR/results.tsv"

say "== backfill: warm-up (bulk on $ROWS rows, not counted)"
run_variant bulk "$ROWS" warmup

say "== backfill: $ROUNDS rounds of $ROWS rows"
t0=$(zdm_now)
n=${#VARIANTS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    line="round $r:"
    for ((i = 0; i < n; i++)); do
        v=${VARIANTS[(i + r - 1) % n]}
        run_variant "$v" "$ROWS" "${v}_${ROWS}_r$r"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$ROWS" "$r" "$v" "$ms" "$cpu" "$extra" >>"$DIR/results.tsv"
        line+=" $v $ms ms"
    done
    say "$line"
done
say "rounds took $(zdm_elapsed "$t0" "$(zdm_now)") s"

if [ "$BIG" != 0 ]; then
    say "== backfill: $BIG_ROWS rows, once each"
    t0=$(zdm_now)
    for v in "${BIG_VARIANTS[@]}"; do
        run_variant "$v" "$BIG_ROWS" "${v}_${BIG_ROWS}_r1"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$BIG_ROWS" 1 "$v" "$ms" "$cpu" "$extra" >>"$DIR/results.tsv"
        say "$v on $BIG_ROWS rows: $ms ms ($extra)"
    done
    say "big runs took $(zdm_elapsed "$t0" "$(zdm_now)") s"
fi
[ "$(so_sum)" = "$so_at_start" ] ||
    say "WARNING: $ZDM_SO changed during the runs (someone installed another build): the figures mix two builds"

# Median (or min) of column $3 (4 ms, 5 cpu_ms) of variant $1 at $2 rows.
figure() {
    awk -F'\t' -v v="$1" -v n="$2" -v c="$3" 'NR > 1 && $3 == v && $1 == n { print $c }' "$DIR/results.tsv" |
        sort -g |
        awk -v how="${4:-median}" '{ x[NR] = $1 }
            END { if (NR == 0) print ""
                  else if (how == "min") print x[1]
                  else if (NR % 2) print x[(NR + 1) / 2]
                  else print (x[NR / 2] + x[NR / 2 + 1]) / 2 }'
}

# The median over the rounds of bulk's time / variant $1's time in the
# same round (column $3: 4 wall, 5 cpu) at $2 rows: the paired ratio.
paired() {
    awk -F'\t' -v v="$1" -v n="$2" -v c="$3" 'NR > 1 && $1 == n && $3 == "bulk" { b[$2] = $c }
        NR > 1 && $1 == n && $3 == v { x[$2] = $c }
        END { for (r in x) if ((r in b) && x[r] > 0) print b[r] / x[r] }' "$DIR/results.tsv" |
        sort -g |
        awk '{ x[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print x[(NR + 1) / 2]; else print (x[NR / 2] + x[NR / 2 + 1]) / 2 }'
}

table() {
    local rows=$1 v; shift
    printf '%-8s %10s %10s %7s %7s   %10s %10s %7s %7s\n' variant "wall ms" "rows/s" ratio paired "cpu ms" "rows/cpu-s" ratio paired
    for v in "$@"; do
        awk -v v="$v" -v n="$rows" \
            -v ms="$(figure "$v" "$rows" 4)" -v bms="$(figure bulk "$rows" 4)" \
            -v pw="$(paired "$v" "$rows" 4)" -v pc="$(paired "$v" "$rows" 5)" \
            -v cpu="$(figure "$v" "$rows" 5)" -v bcpu="$(figure bulk "$rows" 5)" \
            'BEGIN { if (ms == "") exit
                     r = (bms != "") ? sprintf("%6.2fx", bms / ms) : "      -"
                     rm = (pw != "") ? sprintf("%6.2fx", pw) : "      -"
                     rpc = (pc != "") ? sprintf("%6.2fx", pc) : "      -"
                     rc = (bcpu != "" && cpu > 0) ? sprintf("%6.2fx", bcpu / cpu) : "      -"
                     printf "%-8s %10.0f %10.0f %s %s   %10.0f %10.0f %s %s\n",
                            v, ms, n / ms * 1000, r, rm, cpu, (cpu > 0 ? n / cpu * 1000 : 0), rc, rpc }'
    done
}

{
    echo
    echo "Backfill of $ROWS rows (median of $ROUNDS rounds; ratio = rows/s over bulk's rows/s;"
    echo "paired: the median of the per-round ratios; cpu: of the process that did the work)"
    echo
    table "$ROWS" "${VARIANTS[@]}"
    if [ "$BIG" != 0 ]; then
        echo
        echo "Backfill of $BIG_ROWS rows (one run each)"
        echo
        table "$BIG_ROWS" "${BIG_VARIANTS[@]}"
    fi
    echo
    echo "Goals"
    z1=$(figure zdm0 "$ROWS" 4); b1=$(figure bulk "$ROWS" 4); p1=$(paired zdm0 "$ROWS" 4)
    if [ -n "$z1" ] && [ -n "$b1" ]; then
        awk -v z="$z1" -v b="$b1" -v p="$p1" 'BEGIN { r = b / z; printf "  zdm worker (sleep_ratio 0) / bulk UPDATE, %s rows: %.2fx, paired %.2fx (goal >= 0.90x): %s\n",
               "'"$ROWS"'", r, p, (r >= 0.9 && p >= 0.9 ? "met" : (r >= 0.9 || p >= 0.9 ? "met by one measure only" : "MISSED")) }'
    fi
    if [ "$BIG" != 0 ]; then
        zb=$(figure zdm0 "$BIG_ROWS" 4)
        if [ -n "$z1" ] && [ -n "$zb" ]; then
            awk -v z1="$z1" -v zb="$zb" -v n1="$ROWS" -v nb="$BIG_ROWS" 'BEGIN {
                r = (nb / zb) / (n1 / z1)
                printf "  zdm worker rows/s at %d rows / at %d rows: %.2fx (goal >= 0.90x): %s\n",
                       nb, n1, r, (r >= 0.9 ? "met" : "MISSED") }'
        fi
    fi
    echo
    echo "Each run (extra: exact_ms = zdm.migrations.backfilled_at - start; batches; last batch size;"
    echo "polls of zdm.status; load = the 1-minute load average before and after the run)"
    column -t -s $'\t' "$DIR/results.tsv"
} | tee "$DIR/report.txt"

# The worker's progress over time (rows done against seconds since
# start_backfill), for the plot.
psql_bench -F $'\t' -c "SELECT run, t, rows_done, batch_size FROM bench.progress ORDER BY run, t" >"$DIR/progress.tsv"
if command -v gnuplot >/dev/null; then
    mkdir -p "$PLOTS"
    # One data block per run (gnuplot's index), blank-line separated.
    runs=()
    for v in zdm0 zdm01; do
        for n in "$ROWS" "$BIG_ROWS"; do
            run="${v}_${n}_r1"
            grep -q "^$run"$'\t' "$DIR/progress.tsv" && runs+=("$run")
        done
    done
    : >"$DIR/progress.dat"
    plot=""
    idx=0
    for run in "${runs[@]}"; do
        awk -F'\t' -v r="$run" '$1 == r { print $2, $3 / 1e6, $4 }' "$DIR/progress.tsv" >>"$DIR/progress.dat"
        printf '\n\n' >>"$DIR/progress.dat"
        label=$(awk -v r="$run" 'BEGIN { split(r, p, "_"); s = (p[1] == "zdm0") ? "sleep\\_ratio 0" : "sleep\\_ratio 0.1";
                                         printf "%s rows, %s", (p[2] >= 1e6 ? p[2] / 1e6 "M" : p[2]), s }')
        plot+="${plot:+, }'$DIR/progress.dat' index $idx using 1:2 with lines lw 2 title '$label'"
        idx=$((idx + 1))
    done
    if [ -n "$plot" ]; then
        gnuplot <<GP || say "WARNING: gnuplot failed; no progress plot"
set terminal pngcairo size 1000,500 font 'DejaVu Sans,10'
set output '$PLOTS/backfill-progress.png'
set title "zdm background worker: rows converted since zdm.start_backfill (first round of each)" noenhanced
set xlabel 'seconds since zdm.start\_backfill'
set ylabel 'million rows converted'
set key left top
set grid
plot $plot
GP
        say "plot: $PLOTS/backfill-progress.png"
    fi
fi

# BACKFILL_PERF=1: profile the bulk UPDATE's backend and the worker, one
# run each on ROWS rows; the top symbols (inclusive) of each.
if [ -n "${BACKFILL_PERF:-}" ]; then
    command -v perf >/dev/null || die "BACKFILL_PERF is set but perf is not installed"
    for v in bulk zdm0; do
        say
        say "== perf: $v on $ROWS rows"
        wait_no_worker
        out=$DIR/perf-$v.out
        psql_bench -v variant="$v" -v rows="$ROWS" -v run="perf_$v" -v poll="$POLL" \
            -f "$DIR/variant.sql" >"$out" 2>&1 &
        psql_pid=$!
        pid=
        for ((i = 0; i < 6000; i++)); do
            if [ "$v" = bulk ]; then
                pid=$(psql_bench -c "SELECT pid FROM pg_stat_activity WHERE query LIKE 'UPDATE orders SET status_enum%' AND state = 'active'")
            else
                pid=$(psql_bench -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'zdm backfill'")
            fi
            [ -z "$pid" ] || break
            sleep 0.01
        done
        [ -n "$pid" ] || die "perf: no process to profile for $v"
        perf record -q -g -p "$pid" -o "$DIR/perf-$v.data" >"$DIR/perf-$v.log" 2>&1 &
        perf_pid=$!
        wait "$psql_pid" || { cat "$out"; die "$v under perf"; }
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" || true
        grep RESULT "$out" || true
        perf report -i "$DIR/perf-$v.data" --children --sort symbol --stdio -g none 2>/dev/null |
            awk '$1 ~ /%$/ && $4 !~ /^0x/ { printf "  %7s %7s  %s\n", $1, $2, $4 }' | head -45 |
            tee "$DIR/perf-$v.txt" || true
    done
    say "(full profiles: perf report -i $DIR/perf-bulk.data, and perf-zdm0.data)"
fi

# BACKFILL_CALLGRIND=1: the same work counted in instructions, which the
# machine's other load does not disturb (wall-clock figures on a shared
# 2-core machine vary by a third between rounds).  The server restarts
# under valgrind --tool=callgrind; for bulk, floor and zdm0 on
# BACKFILL_CALLGRIND_ROWS rows the table is prepared as above, then the
# work runs in a process of its own whose callgrind file holds all of it:
# for bulk and floor a session that runs the UPDATE; for zdm0 the
# background worker, from its start to its exit (every batch's planning,
# commit, checkpoint write and throttle checks included), with batches of
# BACKFILL_CALLGRIND_BATCH rows (25,000) throughout.
if [ -n "${BACKFILL_CALLGRIND:-}" ]; then
    command -v valgrind >/dev/null || die "BACKFILL_CALLGRIND is set but valgrind is not installed"
    CG_ROWS=${BACKFILL_CALLGRIND_ROWS:-200000}
    CG_BATCH=${BACKFILL_CALLGRIND_BATCH:-25000}
    [[ $CG_ROWS =~ ^[1-9][0-9]*$ ]] || die "BACKFILL_CALLGRIND_ROWS must be a positive integer"
    [[ $CG_BATCH =~ ^[1-9][0-9]*$ ]] || die "BACKFILL_CALLGRIND_BATCH must be a positive integer"
    say
    say "== callgrind: bulk, floor and zdm0 on $CG_ROWS rows"
    t0=$(zdm_now)
    as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    server_started=
    CG_DIR=$DIR/callgrind
    rm -rf "$CG_DIR" && mkdir -p "$CG_DIR" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$CG_DIR"; }
    as_pg bash -c "nohup valgrind --tool=callgrind --trace-children=yes \
        --callgrind-out-file='$CG_DIR/callgrind.%p' \
        '$ZDM_PG_BINDIR/postgres' -D '$DATA' -k '$SOCK' >>'$DIR/valgrind.log' 2>&1 </dev/null &"
    server_started=1
    for ((i = 0; i < 300; i++)); do
        as_pg "$ZDM_PG_BINDIR/pg_isready" -q -h "$SOCK" -p "$PORT" && break
        sleep 1
    done
    as_pg "$ZDM_PG_BINDIR/pg_isready" -q -h "$SOCK" -p "$PORT" ||
        { tail -n 50 "$DIR/valgrind.log"; die "the server did not start under valgrind"; }
    # Instructions in process $1's callgrind file, once it has exited.
    cg_total() {
        local file=$CG_DIR/callgrind.$1 i
        for ((i = 0; i < 1200; i++)); do
            grep -q '^totals:' "$file" 2>/dev/null && break
            sleep 0.1
        done
        awk '$1 == "totals:" { print $2 }' "$file" 2>/dev/null
    }
    printf 'variant\tinstructions\n' >"$DIR/callgrind.tsv"
    for v in bulk floor zdm0; do
        run=cg_$v
        out=$DIR/$run.out
        psql_bench -v variant="$v" -v rows="$CG_ROWS" -v run="$run" -v poll="$POLL" -v prep_only=1 \
            -f "$DIR/variant.sql" >"$out" 2>&1 || { cat "$out"; die "preparing $v under callgrind"; }
        if [ "$v" = zdm0 ]; then
            # Batches of CG_BATCH rows from the first: under valgrind every
            # batch runs some 50 times slower, and the tuning towards
            # zdm.batch_time would answer with batches of a few hundred rows,
            # which the native worker never runs (it tunes up to 30,000 to
            # 48,000 rows; see the table above).
            psql_bench -c "ALTER DATABASE bench SET zdm.batch_size_max = $CG_BATCH" >>"$out" 2>&1
            psql_bench -c "SELECT zdm.start_backfill('$run', sleep_ratio => 0, batch_size => $CG_BATCH, batch_time => '60s')" >>"$out" 2>&1 ||
                { cat "$out"; die "start_backfill under callgrind"; }
            pid= phase=
            for ((i = 0; i < 36000; i++)); do
                read -r phase wpid <<<"$(psql_bench -F ' ' -c "SELECT phase, coalesce(worker_pid, 0) FROM zdm.status WHERE name = '$run'")"
                [ "$wpid" = 0 ] || pid=$wpid
                [ "$phase" = backfilled ] && break
                case $phase in expanded|backfilling) ;; *) die "zdm0 under callgrind: phase $phase";; esac
                sleep 0.5
            done
            [ "$phase" = backfilled ] || die "zdm0 under callgrind did not finish"
            [ -n "$pid" ] || die "zdm0 under callgrind: never saw the worker's pid"
        else
            pid=$(psql_bench -c "SELECT pg_backend_pid()" -c "UPDATE orders SET status_enum = legacy_status::order_status" | head -n 1)
        fi
        psql_bench -c "SELECT bench.check('$v', $CG_ROWS)" >>"$out" 2>&1 || { cat "$out"; die "$v under callgrind: not every row converted"; }
        n=$(cg_total "$pid")
        [ -n "$n" ] || die "no callgrind totals for $v (process $pid)"
        printf '%s\t%s\n' "$v" "$n" >>"$DIR/callgrind.tsv"
        say "$v: $n instructions (process $pid)"
    done
    {
        echo
        echo "Instructions under callgrind, $CG_ROWS rows (the whole process that did the work;"
        echo "ratio = bulk's instructions / the variant's, as rows/s would be; zdm0 in batches of $CG_BATCH)"
        echo
        printf '%-8s %15s %12s %7s\n' variant instructions "instr/row" ratio
        awk -F'\t' -v rows="$CG_ROWS" 'NR == 2 { b = $2 }
            NR > 1 { printf "%-8s %15.0f %12.0f %6.2fx\n", $1, $2, $2 / rows, b / $2 }' "$DIR/callgrind.tsv"
        awk -F'\t' 'NR == 2 { b = $2 } $1 == "zdm0" { r = b / $2
            printf "\n  zdm worker / bulk UPDATE in instructions: %.2fx (goal >= 0.90x): %s\n", r, (r >= 0.9 ? "met" : "MISSED") }' \
            "$DIR/callgrind.tsv"
    } | tee -a "$DIR/report.txt"
    as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    server_started=
    say "callgrind took $(zdm_elapsed "$t0" "$(zdm_now)") s"
fi

if [ "${BACKFILL_TRAFFIC:-1}" != 0 ] && [ -f "$BENCH/traffic.sh" ]; then
    trap - EXIT
    cleanup
    flock -u 9
    exec 9>&-
    TRAFFIC_PRELOAD=${TRAFFIC_PRELOAD-1} TRAFFIC_DURATION=${TRAFFIC_DURATION:-450} bash "$BENCH/traffic.sh"
fi
