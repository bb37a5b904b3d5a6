#!/usr/bin/env bash
# test/bench/run.sh: what a dual-write trigger costs on bulk writes.
#
# Times a bulk INSERT of ROWS orders and a bulk UPDATE of all of them on
# variants of the same table, and prints each as a ratio to the first:
#
#   plain    no trigger; the application writes legacy_status and
#            status_enum itself                            (plain.sql)
#   zdm      zdm.expand() added status_enum and zdm's C trigger; the
#            application writes legacy_status only         (zdm.sql)
#   pgroll   one PL/pgSQL trigger of pgroll's shape        (pgroll.sql)
#
# and, on request (ZDM_BENCH_VARIANTS, plain first):
#
#   pgroll2  both triggers pgroll installs for alter_column (pgroll2.sql)
#   plpgsql  the leanest PL/pgSQL trigger doing the same    (plpgsql.sql)
#   floor    a built-in C BEFORE UPDATE trigger that changes nothing: what
#            PostgreSQL charges for any such trigger       (floor.sql)
#
# Each variant runs in a fresh session on a freshly created table, ROUNDS
# times, interleaved (the order rotates every round), with a CHECKPOINT
# before every timed statement and VACUUM ANALYZE between INSERT and UPDATE.
# Every run checks that both columns hold the expected value in every row,
# so a broken trigger fails the benchmark instead of winning it.  The
# figures are the median of the rounds, and the median of the ratios within
# each round (paired), which other work on the machine disturbs less.
#
#   make bench                          # or: bash test/bench/run.sh
#   ROWS=100000 ROUNDS=1 make bench     # a quick run
#   ZDM_BENCH_VARIANTS="plain floor zdm plpgsql pgroll pgroll2" make bench
#   ZDM_BENCH_PERF=1 make bench         # also profile zdm's INSERT and UPDATE
#   ZDM_BENCH_PRELOAD=1 make bench      # with shared_preload_libraries = 'zdm'
#   ZDM_BENCH_CALLGRIND=1 make bench    # also count instructions under callgrind
#   ZDM_BENCH_TRIGGER_ONLY=1 make bench # skip backfill.sh, traffic.sh and online_ddl.sh (run last)
#   ZDM_BENCH_ONLINE_DDL=0 make bench   # skip online_ddl.sh (online DDL under pgbench)
#   ZDM_BENCH_ONLINE_DDL=only make bench    # online_ddl.sh alone
#
# ZDM_PG_BINDIR (see test/lib.sh) chooses the PostgreSQL installation to
# build against and copy; every script under test/bench honours it.
#
# zdm is built in the work tree and installed into a private copy of
# PostgreSQL under ./tmp/bench/pg, from which a throwaway cluster runs
# (./tmp/bench: server.log, results.tsv, report.txt, the psql output of
# every run).  The cluster is stopped and its data directory and the copy
# removed at the end, whatever happens (ZDM_BENCH_KEEP=1 keeps them).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ZDM_ROOT"
export PGUSER=postgres

[ "${ZDM_BENCH_ONLINE_DDL:-}" != only ] || exec bash "$ZDM_ROOT/test/bench/online_ddl.sh"

ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-5}
PORT=${ZDM_BENCH_PORT:-5498}
VARIANTS=(${ZDM_BENCH_VARIANTS:-plain zdm pgroll})
WARMUP_ROWS=$(( ROWS < 20000 ? ROWS : 20000 ))
CALLGRIND=${ZDM_BENCH_CALLGRIND:-0}
CALLGRIND_ROWS=${CALLGRIND_ROWS:-$(( ROWS < 20000 ? ROWS : 20000 ))}
BENCH=$ZDM_ROOT/test/bench

say() { printf '%s\n' "$*"; }
die() { printf 'bench FAILED: %s\n' "$*" >&2; exit 1; }

[[ $ROWS =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, not '$ROWS'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $CALLGRIND_ROWS =~ ^[1-9][0-9]*$ ]] || die "CALLGRIND_ROWS must be a positive integer, not '$CALLGRIND_ROWS'"
[ "${VARIANTS[0]}" = plain ] || die "ZDM_BENCH_VARIANTS must start with plain, the baseline"
for v in "${VARIANTS[@]}"; do
    [ -f "$ZDM_ROOT/test/bench/$v.sql" ] || die "no variant $v (test/bench/$v.sql)"
done

DIR=$(zdm_workdir bench)
export ZDM_PG_HOME=$DIR
DATA=$DIR/data
# A Unix socket path must stay short (107 bytes).
SOCK=$DIR/sock
[ ${#SOCK} -lt 80 ] || SOCK=$(mktemp -d /tmp/zdm-bench-sock.XXXXXX)
mkdir -p "$SOCK" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$SOCK"; }

server_started=
cleanup() {
    if [ -n "$server_started" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ "$SOCK" = "$DIR/sock" ] || rm -rf "$SOCK"
    [ -n "${ZDM_BENCH_KEEP:-}" ] || rm -rf "$DATA" "$STAGE"
}
trap cleanup EXIT

# The cluster runs from a private copy of PostgreSQL's installation under
# $DIR/pg, with zdm installed into it (make install DESTDIR=...): whoever
# installs another zdm build system-wide meanwhile (a test run, say) does
# not change the code under measurement, and the benchmark changes nothing
# outside $DIR.  PostgreSQL finds its lib and share directories relative to
# the binary, so the copy works as it is.
say "== build and install"
STAGE=$DIR/pg
for d in "$("$PG_CONFIG" --bindir)" "$("$PG_CONFIG" --pkglibdir)" "$("$PG_CONFIG" --sharedir)"; do
    mkdir -p "$STAGE$d"
    cp -a "$d/." "$STAGE$d/"
done
PGBIN=$STAGE$("$PG_CONFIG" --bindir)
{ make -C "$ZDM_ROOT" PG_CONFIG="$PG_CONFIG" &&
  make -C "$ZDM_ROOT" PG_CONFIG="$PG_CONFIG" DESTDIR="$STAGE" install; } >"$DIR/build.log" 2>&1 ||
    { tail -n 50 "$DIR/build.log"; die "build or install (log: $DIR/build.log)"; }
# What is measured: the commit, and whether the tree had uncommitted changes.
src=$(git -C "$ZDM_ROOT" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$ZDM_ROOT" status --porcelain -- src sql Makefile zdm.control 2>/dev/null | wc -l)
[ "$dirty" -eq 0 ] || src+=" + uncommitted changes to $dirty files (src, sql, Makefile, control)"
say "zdm built and installed into $STAGE: $src, zdm.so md5 $(md5sum "$STAGE$("$PG_CONFIG" --pkglibdir)/zdm.so" | cut -c1-12)"


say "== cluster"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres -A trust --no-locale -E UTF8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log"; die "initdb"; }
# Room for the whole table in shared buffers, no checkpoint or autovacuum
# in the middle of a timed statement (the script runs both between them).
# Everything else is PostgreSQL's default, fsync and synchronous_commit too.
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 1h
autovacuum = off
CONF
# ZDM_BENCH_PRELOAD=1: zdm in shared_preload_libraries (its telemetry
# hooks then run in every session, the plain variant's too).
[ -z "${ZDM_BENCH_PRELOAD:-}" ] || echo "shared_preload_libraries = 'zdm'" >>"$DATA/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -o "-k $SOCK" start >/dev/null ||
    { tail -n 50 "$DIR/server.log"; die "the server did not start"; }
server_started=1
as_pg "$PGBIN/createdb" -h "$SOCK" -p "$PORT" bench
libdir=$(as_pg "$PGBIN/psql" -X -At -h "$SOCK" -p "$PORT" -d bench -c "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")
[[ $libdir == "$STAGE"/* ]] || die "the server loads extensions from $libdir, not from the copy under $STAGE"

psql_bench() {
    as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PORT" -d bench -v ON_ERROR_STOP=1 "$@"
}
psql_bench -v clk_tck="$(getconf CLK_TCK)" -f "$BENCH/setup.sql" >"$DIR/setup.out" 2>&1 || { cat "$DIR/setup.out"; die "setup.sql"; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
say "PostgreSQL $(psql_bench -c 'SHOW server_version'), $(nproc) cores (${cpu:-unknown cpu}), $(awk '/^MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM"
say "$ROWS rows, $ROUNDS rounds, variants: ${VARIANTS[*]}; shared_preload_libraries '$(psql_bench -c 'SHOW shared_preload_libraries')'; work dir $DIR"

# Run variant $1 on $2 rows (run $3); print "insert_ms update_ms
# insert_cpu_ms update_cpu_ms".
# The previous table goes in a session of its own, so that only the zdm
# variant's session loads zdm (rolling a migration back loads it too).
run_variant() {
    local variant=$1 rows=$2 out=$DIR/$1-$3.out result
    psql_bench -c 'SELECT bench.reset()' >"$out" 2>&1 || { cat "$out"; die "bench.reset()"; }
    psql_bench -v rows="$rows" -f "$BENCH/$variant.sql" >>"$out" 2>&1 ||
        { cat "$out"; die "$variant.sql (round $3)"; }
    result=$(awk '$1 == "RESULT" { print $3, $4, $5, $6 }' "$out")
    [ -n "$result" ] || { cat "$out"; die "$variant.sql printed no RESULT line"; }
    echo "$result"
}

# Warm-up: plain at full size, so that the WAL segments the rounds need
# exist already and are recycled rather than created (zero-filled) in the
# first round; every other variant on a few rows.
say "== warm-up (plain on $ROWS rows, the others on $WARMUP_ROWS; not counted)"
for v in "${VARIANTS[@]}"; do
    if [ "$v" = plain ]; then
        run_variant "$v" "$ROWS" warmup >/dev/null
    else
        run_variant "$v" "$WARMUP_ROWS" warmup >/dev/null
    fi
done

say "== $ROUNDS rounds (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
printf 'round\tvariant\tinsert_ms\tupdate_ms\tinsert_cpu_ms\tupdate_cpu_ms\n' >"$DIR/results.tsv"
t0=$(zdm_now)
n=${#VARIANTS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    line="round $r:"
    for ((i = 0; i < n; i++)); do
        v=${VARIANTS[(i + r - 1) % n]}
        read -r ins upd ins_cpu upd_cpu <<<"$(run_variant "$v" "$ROWS" "$r")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$ins" "$upd" "$ins_cpu" "$upd_cpu" >>"$DIR/results.tsv"
        line+=" $v $ins/$upd ms"
    done
    say "$line"
done
say "rounds took $(zdm_elapsed "$t0" "$(zdm_now)") s (load average after: $(cut -d' ' -f1-3 /proc/loadavg);" \
    "other work on the machine slows the rounds it overlaps)"

# Median of column $2 of results.tsv (3 = insert ms, 4 = update ms, 5 and
# 6 the same in backend CPU ms) over the rounds of variant $1; with $3 =
# paired, the median of the per-round ratios of variant $1 to plain.
figure() {
    awk -F'\t' -v v="$1" -v c="$2" -v how="${3:-median}" '
        NR > 1 { x[$1, $2] = $c; r[$1] = 1 }
        END { for (k in r) print (how == "paired" ? x[k, v] / x[k, "plain"] : x[k, v]) }' \
        "$DIR/results.tsv" |
        sort -g |
        awk '{ x[NR] = $1 } END { if (NR % 2) print x[(NR + 1) / 2]; else print (x[NR / 2] + x[NR / 2 + 1]) / 2 }'
}

# Print the table of columns $2 (insert) and $3 (update) under the title
# $1: the median, its ratio to plain's median, and the median of the
# ratios within each round (paired: both ran minutes apart, not hours).
table() {
    local title=$1 ci=$2 cu=$3 v
    echo
    echo "$title"
    echo
    printf '%-9s %11s %7s %7s   %11s %7s %7s\n' variant "insert ms" ratio paired "update ms" ratio paired
    for v in "${VARIANTS[@]}"; do
        awk -v v="$v" \
            -v i="$(figure "$v" "$ci")" -v bi="$(figure plain "$ci")" -v ip="$(figure "$v" "$ci" paired)" \
            -v u="$(figure "$v" "$cu")" -v bu="$(figure plain "$cu")" -v up="$(figure "$v" "$cu" paired)" \
            'BEGIN { printf "%-9s %11.1f %6.2fx %6.2fx   %11.1f %6.2fx %6.2fx\n", v, i, i / bi, ip, u, u / bu, up }'
    done
}

{
    table "Bulk INSERT and UPDATE of $ROWS rows: wall clock, median of $ROUNDS rounds" 3 4
    table "The same in CPU time of the backend" 5 6
} | tee "$DIR/report.txt"

# With ZDM_BENCH_PERF=1: one more zdm run whose INSERT and UPDATE are each
# recorded by perf, attached to the backend for just that statement
# (start.sql and stop.sql hand over through files in $PERF_DIR); then the
# share of the statement's time spent in the trigger and its main parts.
perf_wait() {   # wait for file $1 while psql ($2) runs
    while [ ! -e "$1" ]; do
        kill -0 "$2" 2>/dev/null || { cat "$DIR/zdm-perf.out"; die "zdm.sql under perf ended early"; }
        sleep 0.05
    done
}
if [ -n "${ZDM_BENCH_PERF:-}" ]; then
    command -v perf >/dev/null || die "ZDM_BENCH_PERF is set but perf is not installed"
    say
    say "== perf: zdm, $ROWS rows"
    PERF_DIR=$DIR/perf
    mkdir -p "$PERF_DIR"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$PERF_DIR"
    psql_bench -v rows="$ROWS" -v perf_dir="$PERF_DIR" -f "$BENCH/zdm.sql" >"$DIR/zdm-perf.out" 2>&1 &
    psql_pid=$!
    for stmt in insert update; do
        perf_wait "$PERF_DIR/pid" "$psql_pid"
        backend=$(cat "$PERF_DIR/pid")
        rm -f "$PERF_DIR/pid"
        perf record -q -g -p "$backend" -o "$DIR/perf-zdm-$stmt.data" >"$DIR/perf-zdm-$stmt.log" 2>&1 &
        perf_pid=$!
        sleep 1     # let perf attach before the statement starts
        touch "$PERF_DIR/recording"
        perf_wait "$PERF_DIR/stopped" "$psql_pid"
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        rm -f "$PERF_DIR/stopped"
    done
    wait "$psql_pid" || { cat "$DIR/zdm-perf.out"; die "zdm.sql under perf"; }
    for stmt in insert update; do
        say
        say "zdm $stmt: share of the statement's samples in ... (inclusive)"
        perf report -i "$DIR/perf-zdm-$stmt.data" --children --sort symbol --stdio -g none 2>/dev/null |
            awk '$1 ~ /%$/ && $4 ~ /^(ExecBR(Insert|Update)Triggers(New)?|zdm_dual_write|heap_lock_tuple|heap_modify_tuple_by_cols|heap_deform_tuple|heap_form_tuple|enum_in|get_state|written|apply|ExecFetchSlotHeapTuple|ExecForceStoreHeapTuple|ExecUpdateLockMode|ExecInsertIndexTuples|heap_insert|heap_update|XLogInsert)$/ {
                     printf "  %7s  %s\n", $1, $4 }' | tee -a "$DIR/perf-zdm.txt"
    done
    say "(full profiles: perf report -i $DIR/perf-zdm-insert.data, and -update)"
fi

# Instructions per row, which the machine's other load does not disturb
# (ZDM_BENCH_CALLGRIND=1; 1.5 to 2.5 minutes more, most of it valgrind
# translating the code afresh in each new backend): the server restarts under valgrind --tool=callgrind, collecting only
# inside standard_ExecutorRun, and every variant runs once more on
# CALLGRIND_ROWS rows with each timed statement in a session of its own
# (start.sql, stop.sql), whose callgrind file then holds just that
# statement's instructions: parse, plan and commit excluded, the scan, the
# triggers, the heap, the index and building WAL records included.
if [ "$CALLGRIND" = 1 ]; then
    command -v valgrind >/dev/null || die "ZDM_BENCH_CALLGRIND=1 but valgrind is not installed"
    say
    say "== instructions under callgrind ($CALLGRIND_ROWS rows)"
    t0=$(zdm_now)
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    CG_DIR=$DIR/callgrind
    mkdir -p "$CG_DIR" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$CG_DIR"; }
    # pg_ctl cannot start postgres under valgrind; forked backends stay
    # under it, each writing callgrind.<pid> when it exits.
    as_pg bash -c "nohup valgrind --tool=callgrind --trace-children=yes \
        --collect-atstart=no --toggle-collect=standard_ExecutorRun \
        --callgrind-out-file='$CG_DIR/callgrind.%p' \
        '$PGBIN/postgres' -D '$DATA' -k '$SOCK' >>'$DIR/valgrind.log' 2>&1 </dev/null &"
    for ((i = 0; i < 120; i++)); do
        as_pg "$PGBIN/pg_isready" -q -h "$SOCK" -p "$PORT" && break
        sleep 1
    done
    as_pg "$PGBIN/pg_isready" -q -h "$SOCK" -p "$PORT" ||
        { tail -n 50 "$DIR/valgrind.log"; die "the server did not start under valgrind"; }
    printf 'variant\tinsert_instructions\tupdate_instructions\n' >"$DIR/callgrind.tsv"
    for v in "${VARIANTS[@]}"; do
        out=$DIR/$v-callgrind.out
        psql_bench -c 'SELECT bench.reset()' >"$out" 2>&1 || { cat "$out"; die "bench.reset()"; }
        psql_bench -v rows="$CALLGRIND_ROWS" -v callgrind=1 -f "$BENCH/$v.sql" >>"$out" 2>&1 ||
            { cat "$out"; die "$v.sql under callgrind"; }
        counts=()
        for pid in $(awk '$1 == "CALLGRIND" { print $2 }' "$out"); do
            file=$CG_DIR/callgrind.$pid
            for ((i = 0; i < 600; i++)); do
                grep -q '^totals:' "$file" 2>/dev/null && break
                sleep 0.1
            done
            n=$(awk '$1 == "totals:" { print $2 }' "$file" 2>/dev/null)
            [ -n "$n" ] || die "no callgrind totals for backend $pid ($v)"
            counts+=("$n")
        done
        [ ${#counts[@]} -eq 2 ] || { cat "$out"; die "$v.sql under callgrind: expected 2 statements, saw ${#counts[@]}"; }
        printf '%s\t%s\t%s\n' "$v" "${counts[0]}" "${counts[1]}" >>"$DIR/callgrind.tsv"
    done
    {
        echo
        echo "Instructions per row under callgrind ($CALLGRIND_ROWS rows; statement only)"
        echo
        printf '%-9s %11s %7s   %11s %7s\n' variant "insert" ratio "update" ratio
        awk -F'\t' -v rows="$CALLGRIND_ROWS" 'NR == 2 { bi = $2; bu = $3 }
            NR > 1 { printf "%-9s %11.0f %6.2fx   %11.0f %6.2fx\n", $1, $2 / rows, $2 / bi, $3 / rows, $3 / bu }' \
            "$DIR/callgrind.tsv"
    } | tee -a "$DIR/report.txt"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    server_started=
    say "callgrind took $(zdm_elapsed "$t0" "$(zdm_now)") s"
fi

# The backfill and live-traffic benchmarks (test/bench/backfill.sh runs traffic.sh after it);
# ZDM_BENCH_TRIGGER_ONLY=1 stops after the trigger benchmark above.
if [ -z "${ZDM_BENCH_TRIGGER_ONLY:-}" ]; then
    bash "$ZDM_ROOT/test/bench/backfill.sh"
    # An index, a unique constraint and a foreign key under pgbench: the
    # plain statements against zdm's online DDL (online_ddl.sh).
    [ "${ZDM_BENCH_ONLINE_DDL:-1}" = 0 ] || bash "$ZDM_ROOT/test/bench/online_ddl.sh"
fi
