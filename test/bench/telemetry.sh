#!/usr/bin/env bash
# test/bench/telemetry.sh: what counting requests per API version costs.
#
# pgbench's select-only workload (pgbench -S: one primary-key SELECT per
# transaction, the cheapest statement there is, so the per-statement cost
# of counting weighs the most) on a throwaway cluster with
# shared_preload_libraries = 'zdm', every session declaring version v4
# (PGOPTIONS='-c zdm.api_version=v4': all of them count into the same
# slot, the worst case for the shared counter).  Variants:
#
#   off    zdm.count_traffic = off (ALTER SYSTEM + reload): the hooks run,
#          nothing is counted: the baseline the target is measured against
#   on     zdm.count_traffic = on, the default: every statement counted,
#          the worker flushing to zdm.api_traffic every 10 s (the default
#          zdm.launcher_naptime)
#   none   (TELEMETRY_NONE=1, the default) the server restarted without
#          shared_preload_libraries: no hooks at all
#
# Each run is preceded by an unmeasured warm-up run of WARMUP seconds
# (shared buffers after a restart, the plan cache of new sessions).  The
# variants run ROUNDS times, interleaved, the order rotating each round;
# the figures are the median TPS of each variant, its ratio to off, and
# the median of the per-round ratios to off (runs next to each other in
# time, so slow drifts of the machine cancel out).  The target: TPS with
# counting on at least 0.98x off.  Beside TPS, the CPU time the server's
# backends spent per transaction (the postmaster's cutime + cstime, which
# gathers its children's CPU once they exit): on a machine shared with
# other work, TPS moves with the neighbours' load, CPU per transaction
# much less.  At the end the requests counted under v4 are checked
# against the transactions pgbench reported for the runs with counting
# on, so that a benchmark that counts nothing cannot pass.
#
# Then (TELEMETRY_CALLGRIND=1, the default when valgrind is installed) the
# same statement counted in instructions, which other work on the machine
# does not disturb: the server runs under valgrind --tool=callgrind, and a
# session runs 1,000 and then another 3,000 pgbench -S SELECTs; the
# difference of the two sessions' instruction counts over 2,000 is the
# cost of one statement, connection and exit cancelled out.  Variants off,
# on and none again, CALLGRIND_REPS times each (median).
#
#   bash test/bench/telemetry.sh
#   DURATION=10 ROUNDS=3 TELEMETRY_NONE=0 TELEMETRY_CALLGRIND=0 bash test/bench/telemetry.sh   # quick
#   SCALE=10 CLIENTS=8 THREADS=2 DURATION=20 ROUNDS=9 ...                 # the defaults
#
# zdm is built in the work tree and installed into a private copy of
# PostgreSQL under ./tmp/bench-telemetry/pg (as run.sh does), from which
# the cluster runs on port 5497 (TELEMETRY_PORT).  Logs, results.tsv and
# report.txt stay in ./tmp/bench-telemetry; the data directory and the
# copy are removed at the end (TELEMETRY_KEEP=1 keeps them).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ZDM_ROOT"
export PGUSER=postgres

SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
ROUNDS=${ROUNDS:-9}
PORT=${TELEMETRY_PORT:-5497}
VARIANTS=(off on)
[ "${TELEMETRY_NONE:-1}" = 0 ] || VARIANTS+=(none)
CALLGRIND=${TELEMETRY_CALLGRIND:-$(command -v valgrind >/dev/null && echo 1 || echo 0)}
CALLGRIND_REPS=${CALLGRIND_REPS:-3}

say() { printf '%s\n' "$*"; }
die() { printf 'bench FAILED: %s\n' "$*" >&2; exit 1; }

for v in SCALE CLIENTS THREADS DURATION WARMUP ROUNDS CALLGRIND_REPS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done

DIR=$(zdm_workdir bench-telemetry)
export ZDM_PG_HOME=$DIR
DATA=$DIR/data
SOCK=$DIR/sock
[ ${#SOCK} -lt 80 ] || SOCK=$(mktemp -d /tmp/zdm-telemetry-sock.XXXXXX)
mkdir -p "$SOCK" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$SOCK"; }

STAGE=$DIR/pg
server_started=
cleanup() {
    if [ -n "$server_started" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 300 stop >/dev/null 2>&1 || true
    fi
    [ "$SOCK" = "$DIR/sock" ] || rm -rf "$SOCK"
    [ -n "${TELEMETRY_KEEP:-}" ] || rm -rf "$DATA" "$STAGE"
}
trap cleanup EXIT

# A private copy of PostgreSQL with zdm installed into it: a system-wide
# install by someone else meanwhile does not change what is measured.
say "== build and install (load average $(cut -d' ' -f1-3 /proc/loadavg))"
for d in "$("$PG_CONFIG" --bindir)" "$("$PG_CONFIG" --pkglibdir)" "$("$PG_CONFIG" --sharedir)"; do
    mkdir -p "$STAGE$d"
    cp -a "$d/." "$STAGE$d/"
done
PGBIN=$STAGE$("$PG_CONFIG" --bindir)
{ make -C "$ZDM_ROOT" PG_CONFIG="$PG_CONFIG" &&
  make -C "$ZDM_ROOT" PG_CONFIG="$PG_CONFIG" DESTDIR="$STAGE" install; } >"$DIR/build.log" 2>&1 ||
    { tail -n 50 "$DIR/build.log"; die "build or install (log: $DIR/build.log)"; }
src=$(git -C "$ZDM_ROOT" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$ZDM_ROOT" status --porcelain -- src sql Makefile zdm.control 2>/dev/null | wc -l)
[ "$dirty" -eq 0 ] || src+=" + uncommitted changes to $dirty files (src, sql, Makefile, control)"
say "zdm built and installed into $STAGE: $src"

say "== cluster"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres -A trust --no-locale -E UTF8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log"; die "initdb"; }
# The whole data set in shared buffers; no autovacuum or checkpoint in
# the middle of a run.  Everything else is PostgreSQL's default.
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
shared_buffers = 512MB
checkpoint_timeout = 1h
max_wal_size = 4GB
autovacuum = off
shared_preload_libraries = 'zdm'
CONF

mode=
# Start the server with ($1 = preload) or without ($1 = none) zdm
# preloaded; $2 = callgrind: under valgrind --tool=callgrind.
server() {
    local want="$1${2:+ $2}" opts i
    [ "$mode" != "$want" ] || return 0
    if [ -n "$server_started" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 300 stop >/dev/null
        server_started=
    fi
    opts="-k $SOCK"
    [ "$1" = preload ] || opts+=" -c shared_preload_libraries="
    if [ "${2:-}" = callgrind ]; then
        # pg_ctl cannot start postgres under valgrind; forked backends
        # stay under it, each writing callgrind.<pid> when it exits.
        mkdir -p "$DIR/callgrind" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$DIR/callgrind"; }
        as_pg bash -c "nohup valgrind --tool=callgrind --trace-children=yes \
            --callgrind-out-file='$DIR/callgrind/callgrind.%p' \
            '$PGBIN/postgres' -D '$DATA' $opts >>'$DIR/valgrind.log' 2>&1 </dev/null &"
        for ((i = 0; i < 300; i++)); do
            as_pg "$PGBIN/pg_isready" -q -h "$SOCK" -p "$PORT" && break
            sleep 1
        done
        as_pg "$PGBIN/pg_isready" -q -h "$SOCK" -p "$PORT" ||
            { tail -n 50 "$DIR/valgrind.log"; die "the server did not start under valgrind"; }
    else
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -o "$opts" start >/dev/null ||
            { tail -n 50 "$DIR/server.log"; die "the server did not start"; }
    fi
    server_started=1
    mode=$want
}

psql_bench() {
    as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PORT" -d bench -v ON_ERROR_STOP=1 "$@"
}

server preload
as_pg "$PGBIN/createdb" -h "$SOCK" -p "$PORT" bench
libdir=$(psql_bench -c "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")
[[ $libdir == "$STAGE"/* ]] || die "the server loads extensions from $libdir, not from the copy under $STAGE"
psql_bench -c 'CREATE EXTENSION zdm'
as_pg "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" -i -q -s "$SCALE" bench >"$DIR/pgbench-init.log" 2>&1 ||
    { cat "$DIR/pgbench-init.log"; die "pgbench -i"; }
psql_bench -c 'VACUUM ANALYZE' -c 'CHECKPOINT'

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
say "PostgreSQL $(psql_bench -c 'SHOW server_version'), $(nproc) cores (${cpu:-unknown cpu})"
say "pgbench -S -s $SCALE -c $CLIENTS -j $THREADS -T $DURATION (warm-up $WARMUP s), $ROUNDS rounds: ${VARIANTS[*]}"

# Set up variant $1: the server mode and zdm.count_traffic ($2 =
# callgrind: the server under callgrind).
prepare() {
    case $1 in
        none) server none ${2:-} ;;
        off | on)
            server preload ${2:-}
            psql_bench -c "ALTER SYSTEM SET zdm.count_traffic = $1" -c 'SELECT pg_reload_conf()' >/dev/null
            [ "$(psql_bench -c 'SHOW zdm.count_traffic')" = "$1" ] ||
                die "zdm.count_traffic did not become $1"
            ;;
    esac
}

# CPU time (ms) of the postmaster's children that have exited so far:
# every backend of a finished pgbench run, reaped by the postmaster.
children_cpu_ms() {
    local pid
    pid=$(head -n 1 "$DATA/postmaster.pid")
    awk -v hz="$(getconf CLK_TCK)" '{ print ($16 + $17) * 1000 / hz }' "/proc/$pid/stat"
}
# Wait until the backends of the last pgbench run have exited.
wait_reaped() {
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(psql_bench -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" = 0 ] &&
            { sleep 0.2; return 0; }
        sleep 0.1
    done
    die "pgbench's sessions did not end"
}

# Run pgbench for $2 seconds as variant $1, output to $3; append "tps
# transactions cpu_ms" to $4.  pgbench also reads the scale and the
# partitioning of pgbench_accounts: two more statements per run.
run_pgbench() {
    local variant=$1 seconds=$2 out=$3 result=$4 tps tx cpu0 cpu1
    wait_reaped
    cpu0=$(children_cpu_ms)
    as_pg env PGOPTIONS='-c zdm.api_version=v4' "$PGBIN/pgbench" -h "$SOCK" -p "$PORT" \
        -n -S -c "$CLIENTS" -j "$THREADS" -T "$seconds" bench >"$out" 2>&1 ||
        { cat "$out"; die "pgbench ($variant)"; }
    wait_reaped
    cpu1=$(children_cpu_ms)
    tps=$(awk '/^tps = / { print $3; exit }' "$out")
    tx=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$out")
    [ -n "$tps" ] && [ -n "$tx" ] || { cat "$out"; die "no tps in pgbench's output ($variant)"; }
    [ "$variant" != on ] || echo $((tx + 2)) >>"$DIR/counted.txt"
    echo "$tps $tx $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" >>"$result"
}

say "== $ROUNDS rounds"
printf 'round\tvariant\ttps\ttransactions\tcpu_us_per_tx\n' >"$DIR/results.tsv"
: >"$DIR/counted.txt"
t0=$(zdm_now)
n=${#VARIANTS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    line="round $r:"
    for ((i = 0; i < n; i++)); do
        v=${VARIANTS[(i + r - 1) % n]}
        prepare "$v"
        run_pgbench "$v" "$WARMUP" "$DIR/$v-$r-warmup.out" /dev/null
        : >"$DIR/run.txt"
        run_pgbench "$v" "$DURATION" "$DIR/$v-$r.out" "$DIR/run.txt"
        read -r tps tx cpu <"$DIR/run.txt"
        cpu_tx=$(awk -v c="$cpu" -v t="$tx" 'BEGIN { printf "%.2f", c * 1000 / t }')
        printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$tps" "$tx" "$cpu_tx" >>"$DIR/results.tsv"
        line+=" $v $(printf '%.0f' "$tps") tps ${cpu_tx} us/tx;"
    done
    say "$line"
done
say "rounds took $(zdm_elapsed "$t0" "$(zdm_now)") s (load average $(cut -d' ' -f1-3 /proc/loadavg))"

# The requests counted under v4, flushed or not, against pgbench's own count.
prepare on
counted_tx=$(awk '{ s += $1 } END { print s + 0 }' "$DIR/counted.txt")
counted=$(psql_bench -c "SELECT coalesce(sum(requests), 0) FROM zdm.api_version_distribution WHERE version = 'v4'")
say "requests counted under v4: $counted; statements pgbench ran with counting on: $counted_tx"
[ "$counted" = "$counted_tx" ] || die "the counts do not match pgbench's transactions"

median() {
    sort -g | awk '{ x[NR] = $1 }
        END { if (NR % 2) print x[(NR + 1) / 2]; else print (x[NR / 2] + x[NR / 2 + 1]) / 2 }'
}
# Median over the rounds of column $2 (3 = tps, 5 = cpu per tx) of variant $1.
col_of() { awk -F'\t' -v v="$1" -v c="$2" 'NR > 1 && $2 == v { print $c }' "$DIR/results.tsv" | median; }
# Median over the rounds of the ratio of column $2 of variant $1 to off's
# in the same round.
paired() {
    awk -F'\t' -v v="$1" -v c="$2" 'NR > 1 { t[$1, $2] = $c; r[$1] = 1 }
        END { for (k in r) if (t[k, "off"] > 0 && t[k, v] != "") print t[k, v] / t[k, "off"] }' \
        "$DIR/results.tsv" | median
}

# Instructions of one session of the server under callgrind running the
# first $2 statements of the script (variant $1): the backend reports its
# pid first, and its callgrind file is complete once it has exited.
session_ir() {
    local variant=$1 n=$2 pid file i
    head -n $((n + 1)) "$DIR/statements.sql" >"$DIR/statements-$n.sql"
    as_pg env PGOPTIONS='-c zdm.api_version=v4' "$PGBIN/psql" -X -q -At \
        -h "$SOCK" -p "$PORT" -d bench -v ON_ERROR_STOP=1 -f "$DIR/statements-$n.sql" \
        >"$DIR/statements.out" 2>&1 ||
        { tail -n 20 "$DIR/statements.out"; die "the statements failed under callgrind ($variant)"; }
    pid=$(head -n 1 "$DIR/statements.out")
    file=$DIR/callgrind/callgrind.$pid
    for ((i = 0; i < 600; i++)); do
        grep -q '^totals:' "$file" 2>/dev/null && break
        sleep 0.5
    done
    awk '/^totals:/ { print $2; exit }' "$file" | grep . ||
        die "no callgrind totals for backend $pid ($variant)"
}

cg_variants=()
if [ "$CALLGRIND" = 1 ]; then
    command -v valgrind >/dev/null || die "TELEMETRY_CALLGRIND=1 but valgrind is not installed"
    say "== instructions per statement under callgrind ($CALLGRIND_REPS repetitions)"
    awk -v s="$SCALE" 'BEGIN { print "SELECT pg_backend_pid();"
        for (k = 1; k <= 3000; k++)
            printf "SELECT abalance FROM pgbench_accounts WHERE aid = %d;\n", (k * 7919) % (100000 * s) + 1 }' \
        >"$DIR/statements.sql"
    chmod a+r "$DIR/statements.sql"
    printf 'rep\tvariant\tinstructions_per_statement\n' >"$DIR/callgrind.tsv"
    cg_variants=(off on)
    [ "${TELEMETRY_NONE:-1}" = 0 ] || cg_variants=(none off on)
    t0=$(zdm_now)
    for v in "${cg_variants[@]}"; do
        prepare "$v" callgrind
        # one unmeasured session: every page and catalog entry cached
        session_ir "$v" 3000 >/dev/null
        for ((r = 1; r <= CALLGRIND_REPS; r++)); do
            a=$(session_ir "$v" 1000)
            b=$(session_ir "$v" 3000)
            per=$(( (b - a) / 2000 ))
            printf '%s\t%s\t%s\n' "$r" "$v" "$per" >>"$DIR/callgrind.tsv"
            say "$v, repetition $r: $per instructions per statement"
        done
    done
    server preload
    say "callgrind took $(zdm_elapsed "$t0" "$(zdm_now)") s"
fi
ir_of() { awk -F'\t' -v v="$1" 'NR > 1 && $2 == v { print $3 }' "$DIR/callgrind.tsv" | median; }

{
    echo
    echo "pgbench -S (scale $SCALE, $CLIENTS clients, $THREADS threads, ${DURATION} s runs), median of $ROUNDS rounds;"
    echo "CPU: time of the server's backends per transaction; paired: median of the per-round ratios to off"
    echo
    printf '%-7s %9s %9s %9s   %12s %9s %9s\n' variant tps ratio paired "CPU us/tx" ratio paired
    for v in "${VARIANTS[@]}"; do
        awk -v v="$v" -v t="$(col_of "$v" 3)" -v bt="$(col_of off 3)" -v pt="$(paired "$v" 3)" \
            -v c="$(col_of "$v" 5)" -v bc="$(col_of off 5)" -v pc="$(paired "$v" 5)" \
            'BEGIN { printf "%-7s %9.0f %8.4fx %8.4fx   %12.2f %8.4fx %8.4fx\n", v, t, t / bt, pt, c, c / bc, pc }'
    done
    if [ ${#cg_variants[@]} -gt 0 ]; then
        echo
        echo "Instructions per pgbench -S statement in its backend (callgrind), median of $CALLGRIND_REPS"
        echo
        printf '%-7s %14s %9s\n' variant instructions ratio
        for v in "${cg_variants[@]}"; do
            awk -v v="$v" -v i="$(ir_of "$v")" -v b="$(ir_of off)" \
                'BEGIN { printf "%-7s %14d %8.4fx\n", v, i, i / b }'
        done
    fi
    echo
    ratio=$(paired on 3)
    if awk -v r="$ratio" 'BEGIN { exit !(r >= 0.98) }'; then
        echo "TPS with counting on / off: ${ratio}x (target >= 0.98x): met"
    else
        echo "TPS with counting on / off: ${ratio}x (target >= 0.98x): NOT met"
    fi
} | tee "$DIR/report.txt"
