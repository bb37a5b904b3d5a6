#!/usr/bin/env bash
# test/bench/alternate.sh: what one thing costs pgbench's clients, measured
# inside a single pgbench run.
#
# Two separate runs differ by as much as the effects sought here (the
# no-migration p99 moved from 7.5 to 11.6 ms between runs on this
# machine).  So one pgbench run (TPC-B-like, 8 clients, scale 50,
# shared_preload_libraries = 'zdm') is cut into phases of ALT_PHASE
# seconds, alternately "off" and "on"; the thing measured runs in the "on"
# phases only.  Each transaction counts in the phase it ended in, the
# first ALT_SKIP seconds of every phase left out (what the last phase
# started may still be ending).  Prints p50, p99, max and TPS per kind of
# phase and the on/off ratios.
#
#   ALT_CASE=poll bash test/bench/alternate.sh     # a new psql session every 0.1 s
#   ALT_CASE=worker ...    # the zdm worker, 1-row batches at 5 rows/s
#   ALT_CASE=locks ...     # the lock-waiter signal's pg_locks query, 5 times a second
#   ALT_ON='shell command' ALT_ON_SQL='...' ALT_OFF_SQL='...' ...   # your own
#
# ALT_ON runs (as the cluster's OS user, PGHOST, PGPORT and PGDATABASE
# set) for each "on" phase and is stopped at its end; ALT_ON_SQL and
# ALT_OFF_SQL run once at the start of each "on" and "off" phase.
# ALT_DURATION (240 s), ALT_PHASE (15 s), ALT_SKIP (2 s), ALT_SCALE (50).
# Output and pgbench's logs: tmp/bench-alternate/.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ZDM_ROOT"

DURATION=${ALT_DURATION:-240}
PHASE=${ALT_PHASE:-15}
SKIP=${ALT_SKIP:-2}
SCALE=${ALT_SCALE:-50}
PORT=${ALT_PORT:-5495}
for v in DURATION PHASE SKIP SCALE PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "ALT_$v must be a whole number" >&2; exit 1; }
done
[ "$SKIP" -lt "$PHASE" ] || { echo "ALT_SKIP must be less than ALT_PHASE" >&2; exit 1; }
[ $((2 * PHASE)) -le "$DURATION" ] || { echo "ALT_DURATION must hold two phases" >&2; exit 1; }

MIGRATION='{"operations": [{"add_column": {"table": "pgbench_accounts", "up": "abalance::bigint * 100", "column": {"name": "abalance_cents", "type": "bigint", "nullable": false}}}]}'
SETUP_SQL=
case ${ALT_CASE:-} in
    poll)
        # What traffic.sh's zdm run did while it waited for the backfill
        # until 3d8df1c.
        ALT_ON="while :; do psql -X -q -At -c \"SELECT phase FROM zdm.status WHERE name = 'm'\" >/dev/null; sleep 0.1; done"
        SETUP_SQL="SELECT zdm.expand('m', '$MIGRATION')" ;;
    worker)
        SETUP_SQL="SELECT zdm.expand('m', '$MIGRATION'); SELECT zdm.start_backfill('m', batch_size => 1, max_rows_per_sec => 5); SELECT pg_sleep(1); SELECT zdm.pause('m')"
        ALT_ON_SQL="SELECT zdm.resume('m')"
        ALT_OFF_SQL="SELECT zdm.pause('m')" ;;
    locks)
        ALT_ON="printf '%s\n' \"SELECT count(DISTINCT l.pid) FROM pg_catalog.pg_locks l WHERE NOT l.granted AND l.locktype = 'relation' AND l.relation IN (SELECT 'pgbench_accounts'::regclass UNION ALL SELECT p.relid FROM pg_catalog.pg_partition_tree('pgbench_accounts') p) \\\\watch 0.2\" | psql -X -q >/dev/null" ;;
    '') [ -n "${ALT_ON:-}${ALT_ON_SQL:-}" ] || { echo "set ALT_CASE (poll, worker, locks) or ALT_ON / ALT_ON_SQL" >&2; exit 1; } ;;
    *) echo "no case ${ALT_CASE} (poll, worker, locks)" >&2; exit 1 ;;
esac
ALT_ON=${ALT_ON:-}
ALT_ON_SQL=${ALT_ON_SQL:-}
ALT_OFF_SQL=${ALT_OFF_SQL:-}

say() { printf '%s\n' "$*"; }
die() { printf 'alternate bench FAILED: %s\n' "$*" >&2; exit 1; }

mkdir -p "$ZDM_ROOT/tmp"
exec 9>"$ZDM_ROOT/tmp/bench-backfill.lock"
if ! flock -n 9; then
    say "== alternate: waiting for another backfill, traffic or alternate bench to finish"
    flock 9
fi
zdm_build_install >"$ZDM_ROOT/tmp/bench-alternate-build.log" 2>&1 ||
    { tail -n 50 "$ZDM_ROOT/tmp/bench-alternate-build.log"; die "build or install"; }

DIR=$(zdm_workdir bench-alternate)
export ZDM_PG_HOME=$DIR
DATA=$DIR/data
SOCK=$(mktemp -d /tmp/zdm-bench-alt-sock.XXXXXX)
[ "$(id -u)" -ne 0 ] || chown postgres: "$SOCK"
on_pid=
pgbench_pid=
cleanup() {
    [ -z "$on_pid" ] || kill -- "-$on_pid" 2>/dev/null || true
    [ -z "$pgbench_pid" ] || kill "$pgbench_pid" 2>/dev/null || true
    as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DATA" "$SOCK"
}
trap cleanup EXIT

as_pg "$ZDM_PG_BINDIR/initdb" -D "$DATA" -U postgres -A trust --no-locale -E UTF8 >"$DIR/initdb.log" 2>&1 ||
    { cat "$DIR/initdb.log"; die "initdb"; }
# As traffic.sh: the database fits in shared buffers, no checkpoint in the run.
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
shared_buffers = 2GB
max_wal_size = 20GB
checkpoint_timeout = 1h
shared_preload_libraries = 'zdm'
CONF
as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w start >/dev/null ||
    { tail -n 50 "$DIR/server.log"; die "the server did not start"; }
psql_db() { as_pg "$ZDM_PG_BINDIR/psql" -X -q -At -h "$SOCK" -p "$PORT" -d bench -v ON_ERROR_STOP=1 "$@"; }
as_pg "$ZDM_PG_BINDIR/createdb" -h "$SOCK" -p "$PORT" bench
as_pg "$ZDM_PG_BINDIR/pgbench" -i -q -s "$SCALE" -h "$SOCK" -p "$PORT" bench >"$DIR/init.log" 2>&1 ||
    { cat "$DIR/init.log"; die "pgbench -i"; }
psql_db -c 'CREATE EXTENSION zdm' -c 'CREATE EXTENSION pg_prewarm' -c 'VACUUM ANALYZE' \
    -c "SELECT sum(pg_prewarm(c)) FROM unnest(ARRAY['pgbench_accounts', 'pgbench_accounts_pkey', 'pgbench_branches', 'pgbench_tellers']::regclass[]) c" >/dev/null
[ -z "$SETUP_SQL" ] || psql_db -c "$SETUP_SQL" >/dev/null 2>"$DIR/setup.err" || { cat "$DIR/setup.err"; die "set-up SQL"; }
psql_db -c CHECKPOINT

say "== alternate: pgbench -c 8 -j 2 -T $DURATION, scale $SCALE; phases of $PHASE s (first $SKIP s left out); case ${ALT_CASE:-custom}"
: >"$DIR/phases"
( cd "$DIR" && as_pg "$ZDM_PG_BINDIR/pgbench" -n -c 8 -j 2 -T "$DURATION" -l -h "$SOCK" -p "$PORT" bench ) \
    >"$DIR/pgbench.out" 2>&1 &
pgbench_pid=$!
sleep 1
end=$(($(date +%s) + DURATION - 2))
kind=off
while [ $(($(date +%s) + PHASE)) -le "$end" ]; do
    start=$(zdm_now)
    if [ $kind = on ]; then
        [ -z "$ALT_ON_SQL" ] || psql_db -c "SET client_min_messages = warning; $ALT_ON_SQL" >/dev/null 2>>"$DIR/phase-sql.err"
        if [ -n "$ALT_ON" ]; then
            # In a session of its own, so that the whole of it can be stopped.
            if [ "$(id -u)" -eq 0 ]; then as=(runuser -u postgres --); else as=(); fi
            setsid "${as[@]}" env HOME="$DIR" PGHOST="$SOCK" PGPORT="$PORT" PGDATABASE=bench \
                bash -c "$ALT_ON" >/dev/null 2>>"$DIR/on.err" &
            on_pid=$!
        fi
    else
        [ -z "$ALT_OFF_SQL" ] || psql_db -c "SET client_min_messages = warning; $ALT_OFF_SQL" >/dev/null 2>>"$DIR/phase-sql.err"
    fi
    sleep "$PHASE"
    if [ -n "$on_pid" ]; then
        kill -- "-$on_pid" 2>/dev/null || true
        wait "$on_pid" 2>/dev/null || true
        on_pid=
    fi
    echo "$start $(zdm_now) $kind" >>"$DIR/phases"
    if [ $kind = on ]; then kind=off; else kind=on; fi
done
wait "$pgbench_pid" || die "pgbench: $(tail -n 5 "$DIR/pgbench.out")"
pgbench_pid=

# Each transaction (pgbench -l: client, number, latency us, script, epoch
# s, us) under the phase it ended in; then per kind p50, p99, max, TPS.
awk -v skip="$SKIP" 'FNR == NR { a[NR] = $1 + skip; b[NR] = $2; k[NR] = $3; n = NR
                                 if ($2 > a[NR]) secs[$3] += $2 - a[NR]; next }
     $3 ~ /^[0-9]+$/ { t = $5 + $6 / 1e6
                       for (i = 1; i <= n; i++) if (t >= a[i] && t < b[i]) { print k[i], $3 / 1000; break } }
     END { for (x in secs) print x, "secs", secs[x] > "/dev/stderr" }' \
    "$DIR/phases" "$DIR"/pgbench_log.* 2>"$DIR/secs" >"$DIR/latencies"
for kind in off on; do
    secs=$(awk -v k=$kind '$1 == k { print $3 }' "$DIR/secs")
    awk -v k=$kind '$1 == k { print $2 }' "$DIR/latencies" | sort -g |
        awk -v k=$kind -v s="$secs" '{ v[NR] = $1 }
             END { if (NR == 0) { print k, "no transactions"; exit }
                   i50 = int(NR * 0.5 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
                   printf "%s %d %.1f %.2f %.2f %.1f\n", k, NR, NR / s, v[i50], v[i99], v[NR] }'
done >"$DIR/summary"
awk 'BEGIN { printf "%-4s %10s %8s %8s %8s %8s\n", "kind", "xacts", "tps", "p50 ms", "p99 ms", "max ms" }
     { printf "%-4s %10d %8.1f %8.2f %8.2f %8.1f\n", $1, $2, $3, $4, $5, $6; tps[$1] = $3; p99[$1] = $5 }
     END { if (tps["off"] > 0 && p99["off"] > 0)
               printf "on / off: p99 %.2fx, TPS %.2fx\n", p99["on"] / p99["off"], tps["on"] / tps["off"] }' "$DIR/summary"
grep -q 'number of failed transactions: 0 ' "$DIR/pgbench.out" || say "NOTE: $(grep 'failed transactions' "$DIR/pgbench.out")"
[ ! -s "$DIR/phase-sql.err" ] || say "NOTE: phase SQL said: $(sort -u "$DIR/phase-sql.err" | head -n 3)"
