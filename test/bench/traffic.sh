#!/usr/bin/env bash
# test/bench/traffic.sh: what live traffic sees during a migration.
#
# pgbench's TPC-B-like script (8 clients, scale TRAFFIC_SCALE, every
# transaction updates pgbench_accounts.abalance) runs for TRAFFIC_DURATION
# seconds, three times, on identical copies of the same database:
#
#   none   no migration: the reference
#   zdm    after TRAFFIC_MIGRATE_AT seconds, a whole zdm migration of
#          pgbench_accounts: zdm.expand() of an add_column
#          (abalance_cents bigint NOT NULL, up 'abalance::bigint * 100'),
#          zdm.start_backfill() with the default settings (batch_time
#          200ms, sleep_ratio 0.1, throttling on), wait for phase
#          'backfilled', then zdm.contract().  From expand on, the
#          dual-write trigger fires on every pgbench transaction.
#   trigger  (only when asked for in TRAFFIC_RUNS) the zdm run's expand
#          alone: the dual-write trigger fires on every pgbench UPDATE of
#          pgbench_accounts from TRAFFIC_MIGRATE_AT seconds to the end, with
#          no backfill; what the trigger costs the clients by itself
#   alter  after TRAFFIC_MIGRATE_AT seconds, the naive migration:
#          ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint
#          (a rewrite under ACCESS EXCLUSIVE; no lock_timeout)
#
# pgbench writes one log line per transaction (-l); from them come, per
# second and for the whole run, the transactions per second and the 50th,
# 99th percentile and maximum latency (nearest rank over every transaction
# that completed in that second / in the run), and the failed ones.  The
# figures are also given over the migration's window (expand to the end
# of contract; ALTER start to end; for none, the zdm run's window).
# One PNG per run (TPS, latency and what the sessions wait for over time,
# phases marked) and one with the three together go to test/bench/plots/
# (traffic-<run>.png, traffic-overview.png; with TRAFFIC_RATE=N,
# traffic-<run>-rN.png).
#
#   bash test/bench/traffic.sh          # also run by make bench (after backfill.sh)
#   TRAFFIC_DURATION=60 TRAFFIC_SCALE=10 bash test/bench/traffic.sh
#   TRAFFIC_RUNS="none zdm" ...         # a subset, in this order ("trigger" too)
#   TRAFFIC_PRELOAD=1 ...               # shared_preload_libraries = 'zdm'
#   TRAFFIC_CONF="wal_init_zero = off" ...   # more postgresql.conf lines
#   TRAFFIC_RATE=800 ...                # pgbench -R 800 (48,000 transactions a minute)
#   TRAFFIC_BACKFILL_ARGS="sleep_ratio => 1" ...   # settings for zdm.start_backfill
#   TRAFFIC_PLOTS=/some/dir ...         # the PNGs there instead
#
# The cluster lives under ./tmp/bench-backfill/traffic (port 5496; for
# each run: pgbench's logs and output, marks.tsv, per_second.tsv); the data
# directory is removed at the end (TRAFFIC_KEEP=1 keeps it).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ZDM_ROOT"
export PGUSER=postgres

SCALE=${TRAFFIC_SCALE:-50}
CLIENTS=${TRAFFIC_CLIENTS:-8}
THREADS=${TRAFFIC_THREADS:-2}
DURATION=${TRAFFIC_DURATION:-180}
MIGRATE_AT=${TRAFFIC_MIGRATE_AT:-10}
RUNS=(${TRAFFIC_RUNS:-none zdm alter})
RATE=${TRAFFIC_RATE:-}          # pgbench -R: a fixed rate instead of as fast as it can
TAG=${RATE:+-r$RATE}            # in the plots' names
BACKFILL_ARGS=${TRAFFIC_BACKFILL_ARGS:+, $TRAFFIC_BACKFILL_ARGS}   # e.g. "sleep_ratio => 1"
args_re="^[a-z_=> ,0-9.']*$"   # named arguments, numbers and quoted intervals
[[ $BACKFILL_ARGS =~ $args_re ]] || { echo "TRAFFIC_BACKFILL_ARGS: named arguments of zdm.start_backfill only" >&2; exit 1; }
TAG+=${TRAFFIC_BACKFILL_ARGS:+-$(tr -cd 'a-z0-9' <<<"$TRAFFIC_BACKFILL_ARGS")}
PORT=${TRAFFIC_PORT:-5496}
PGBENCH=$ZDM_PG_BINDIR/pgbench
BENCH=$ZDM_ROOT/test/bench
PLOTS=${TRAFFIC_PLOTS:-$BENCH/plots}   # where the PNGs go
MIGRATION='{"operations": [{"add_column": {"table": "pgbench_accounts", "up": "abalance::bigint * 100", "column": {"name": "abalance_cents", "type": "bigint", "nullable": false}}}]}'

say() { printf '%s\n' "$*"; }
die() { printf 'traffic bench FAILED: %s\n' "$*" >&2; exit 1; }

[ -z "$RATE" ] || [[ $RATE =~ ^[1-9][0-9]*$ ]] || die "TRAFFIC_RATE must be a positive whole number"
for v in SCALE CLIENTS THREADS DURATION MIGRATE_AT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "TRAFFIC_$v must be a whole number"
done
[ "$MIGRATE_AT" -lt "$DURATION" ] || die "TRAFFIC_MIGRATE_AT must be less than TRAFFIC_DURATION"
for r in "${RUNS[@]}"; do
    case $r in none|zdm|alter|trigger) ;; *) die "no run $r (none zdm alter trigger)";; esac
done

mkdir -p "$ZDM_ROOT/tmp"
# One backfill or traffic benchmark at a time (they share the port and
# the work dir; make bench may be started while another runs).
exec 9>"$ZDM_ROOT/tmp/bench-backfill.lock"
if ! flock -n 9; then
    say "== traffic: waiting for another backfill.sh or traffic.sh to finish"
    flock 9
fi

say "== traffic: build and install"
zdm_build_install >"$ZDM_ROOT/tmp/bench-traffic-build.log" 2>&1 ||
    { tail -n 50 "$ZDM_ROOT/tmp/bench-traffic-build.log"; die "build or install"; }
ZDM_SO=$("$PG_CONFIG" --pkglibdir)/zdm.so
src=$(git -C "$ZDM_ROOT" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
dirty=$(git -C "$ZDM_ROOT" status --porcelain -- src sql Makefile zdm.control 2>/dev/null | wc -l)
[ "$dirty" -eq 0 ] || src+=" + uncommitted changes to $dirty files (src, sql, Makefile, control)"
say "zdm built and installed: $src, $ZDM_SO md5 $(md5sum "$ZDM_SO" | cut -c1-12)"

mkdir -p "$ZDM_ROOT/tmp/bench-backfill"
DIR=$(zdm_workdir bench-backfill/traffic)
export ZDM_PG_HOME=$DIR
DATA=$DIR/data
SOCK=$DIR/sock
[ ${#SOCK} -lt 80 ] || SOCK=$(mktemp -d /tmp/zdm-bench-traffic-sock.XXXXXX)
mkdir -p "$SOCK" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$SOCK"; }

server_started=
migration_pid=
pgbench_pid=
sampler_pid=
cleanup() {
    [ -z "$pgbench_pid" ] || kill "$pgbench_pid" 2>/dev/null || true
    [ -z "$sampler_pid" ] || kill "$sampler_pid" 2>/dev/null || true
    [ -z "$pacer_pid" ] || kill "$pacer_pid" 2>/dev/null || true
    [ -z "$migration_pid" ] || kill "$migration_pid" 2>/dev/null || true
    if [ -n "$server_started" ]; then
        as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ "$SOCK" = "$DIR/sock" ] || rm -rf "$SOCK"
    [ -n "${TRAFFIC_KEEP:-}" ] || rm -rf "$DATA"
}
trap cleanup EXIT

say "== traffic: cluster"
as_pg "$ZDM_PG_BINDIR/initdb" -D "$DATA" -U postgres -A trust --no-locale -E UTF8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log"; die "initdb"; }
# The database fits in shared buffers; no checkpoint inside a run (each
# starts after a CHECKPOINT), so that none lands in one run and not in
# another.  Autovacuum stays on, as in production.
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
shared_buffers = 2GB
max_wal_size = 20GB
checkpoint_timeout = 1h
CONF
[ -z "${TRAFFIC_PRELOAD:-}" ] || echo "shared_preload_libraries = 'zdm'" >>"$DATA/postgresql.conf"
[ -z "${TRAFFIC_CONF:-}" ] || printf '%s\n' "$TRAFFIC_CONF" >>"$DATA/postgresql.conf"
as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -o "-k $SOCK" start >/dev/null 9>&- ||
    { tail -n 50 "$DIR/server.log"; die "the server did not start"; }
server_started=1

psql_db() {   # database, psql arguments
    local db=$1; shift
    as_pg "$ZDM_PG_BINDIR/psql" -X -q -At -h "$SOCK" -p "$PORT" -d "$db" -v ON_ERROR_STOP=1 "$@"
}

# One database initialised by pgbench; each run gets a file copy of it.
say "== traffic: pgbench -i -s $SCALE (the template)"
t0=$(zdm_now)
as_pg "$ZDM_PG_BINDIR/createdb" -h "$SOCK" -p "$PORT" tpl
as_pg "$PGBENCH" -i -q -s "$SCALE" -h "$SOCK" -p "$PORT" tpl >"$DIR/init.log" 2>&1 ||
    { cat "$DIR/init.log"; die "pgbench -i"; }
psql_db tpl -c 'CREATE EXTENSION zdm' -c 'CREATE EXTENSION pg_prewarm' -c 'VACUUM ANALYZE'
say "initialised in $(zdm_elapsed "$t0" "$(zdm_now)") s: pgbench_accounts $(psql_db tpl -c "SELECT pg_size_pretty(pg_total_relation_size('pgbench_accounts'))"), $(psql_db tpl -c 'SELECT count(*) FROM pgbench_accounts') rows"

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
say "PostgreSQL $(psql_db tpl -c 'SHOW server_version'), $(nproc) cores (${cpu:-unknown cpu}), $(awk '/^MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM; load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "pgbench -c $CLIENTS -j $THREADS -T $DURATION${RATE:+ -R $RATE}, scale $SCALE; migration at ${MIGRATE_AT}s${BACKFILL_ARGS:+ (start_backfill: ${BACKFILL_ARGS#, })}; runs: ${RUNS[*]}; shared_preload_libraries '$(psql_db tpl -c 'SHOW shared_preload_libraries')'"

now() { date +%s.%N; }

# The zdm migration, in the background: marks.tsv gets "event epoch".
zdm_migration() {
    local db=$1 marks=$2 pace=$3
    mark() { printf '%s\t%s\n' "$1" "$(now)" >>"$marks"; }
    mark expand_start
    [ "$(psql_db "$db" -c "SELECT zdm.expand('cents', '$MIGRATION')")" = t ] || { echo "expand did not apply"; return 1; }
    mark expand_end
    mark backfill_start
    psql_db "$db" -c "SELECT zdm.start_backfill('cents'$BACKFILL_ARGS)" >/dev/null
    # Wait for the backfill from the watcher's samples (pace.tsv), not with
    # a connection of its own: a new psql session ten times a second took
    # a sixth of the clients' throughput and half their p99 again on this
    # 2-core machine (alternated in one pgbench run: p99 1.48x, TPS 0.84x),
    # a cost of the bench paid by the zdm run alone.
    # A line being written can be read in part (a write that crosses a
    # page is copied page by page): a line without its five fields is
    # skipped, and a phase that ends the wait is confirmed in the database.
    local phase= last
    while :; do
        last=$(tail -n 1 "$pace" 2>/dev/null)
        phase=
        [ "$(awk -F'\t' '{ print NF }' <<<"$last")" != 5 ] || phase=${last##*$'\t'}
        case $phase in
            ''|expanded|backfilling)
                kill -0 "$pacer_pid" 2>/dev/null || { echo "the watcher (pace.tsv) has stopped"; return 1; }
                sleep 0.2 ;;
            *)
                phase=$(psql_db "$db" -c "SELECT phase FROM zdm.status WHERE name = 'cents'")
                case $phase in
                    backfilled) break ;;
                    expanded|backfilling) sleep 0.2 ;;
                    *) echo "migration is $phase: $(psql_db "$db" -c "SELECT last_error FROM zdm.status WHERE name = 'cents'")"; return 1 ;;
                esac ;;
        esac
    done
    # The exact end, as zdm recorded it.
    printf 'backfill_end\t%s\n' "$(psql_db "$db" -c "SELECT extract(epoch FROM backfilled_at) FROM zdm.migrations WHERE name = 'cents'")" >>"$marks"
    mark contract_start
    [ "$(psql_db "$db" -c "SELECT zdm.contract('cents')")" = t ] || { echo "contract did not apply"; return 1; }
    mark contract_end
}

# The expand alone: the trigger stays for the rest of the run.
trigger_migration() {
    local db=$1 marks=$2
    printf 'expand_start\t%s\n' "$(now)" >>"$marks"
    [ "$(psql_db "$db" -c "SELECT zdm.expand('cents', '$MIGRATION')")" = t ] || { echo "expand did not apply"; return 1; }
    printf 'expand_end\t%s\n' "$(now)" >>"$marks"
}

alter_migration() {
    local db=$1 marks=$2
    printf 'alter_start\t%s\n' "$(now)" >>"$marks"
    psql_db "$db" -c 'ALTER TABLE pgbench_accounts ALTER COLUMN abalance TYPE bigint'
    printf 'alter_end\t%s\n' "$(now)" >>"$marks"
}

# Per-second figures of run $1 from its pgbench logs: "second tps p50_ms
# p99_ms max_ms failed", every second of the run (0 transactions: "-").
per_second() {
    local run=$1 t0
    t0=$(cat "$DIR/$run/t0")
    cat "$DIR/$run"/pgbench_log.* |
        awk -v t0="$t0" '{ end = $5 + $6 / 1e6 - t0; s = int(end); if (s < 0) s = 0
                           if ($3 ~ /^[0-9]+$/) print s, $3 / 1000; else print s, "F" }' |
        sort -k1,1n -k2,2g |
        awk -v d="$DURATION" '
            function flush() {
                if (cur < 0) return
                if (n > 0) {
                    i50 = int(0.50 * n); if (i50 < 0.50 * n) i50++
                    i99 = int(0.99 * n); if (i99 < 0.99 * n) i99++
                    line[cur] = sprintf("%d %d %.3f %.3f %.3f %d", cur, n, x[i50], x[i99], x[n], f)
                } else line[cur] = sprintf("%d 0 - - - %d", cur, f)
            }
            { if ($1 != cur) { flush(); cur = $1; n = 0; f = 0 }
              if ($2 == "F") f++; else x[++n] = $2 }
            BEGIN { cur = -1 }
            END { flush()
                  for (s = 0; s < d || (s in line); s++)
                      print (s in line) ? line[s] : s " 0 - - - 0" }'
}

# Figures of run $1 over [from, to) seconds since its start: "n tps p50
# p99 p999 max mean failed".
# With $4 = outside: over the rest of the run instead.
stats() {
    local run=$1 from=$2 to=$3 outside=${4:-} t0 span
    t0=$(cat "$DIR/$run/t0")
    if [ -n "$outside" ]; then
        span=$(awk -v a="$from" -v b="$to" -v d="$DURATION" 'BEGIN { print d - (b - a) }')
    else
        span=$(awk -v a="$from" -v b="$to" 'BEGIN { print b - a }')
    fi
    cat "$DIR/$run"/pgbench_log.* |
        awk -v t0="$t0" -v a="$from" -v b="$to" -v o="$outside" -v d="$DURATION" '{ end = $5 + $6 / 1e6 - t0
                    inside = (end >= a && end < b)
                    if (o != "") inside = !inside && end >= 0 && end < d
                    if (inside) { if ($3 ~ /^[0-9]+$/) print $3 / 1000; else print "F" } }' |
        sort -g |
        awk -v span="$span" '
            function at(p,  i) { i = int(p * n); if (i < p * n) i++; if (i < 1) i = 1; return x[i] }
            $1 == "F" { f++; next }
            { x[++n] = $1; sum += $1 }
            END { if (n == 0) { printf "0 0 - - - - - %d\n", f; exit }
                  printf "%d %.1f %.2f %.2f %.2f %.2f %.2f %d\n", n, n / span, at(0.5), at(0.99), at(0.999), x[n], sum / n, f }'
}

mark_offset() {   # run, event: seconds since the run's start, or empty
    local run=$1 ev=$2
    [ -f "$DIR/$run/marks.tsv" ] || return 0
    awk -F'\t' -v e="$ev" -v t0="$(cat "$DIR/$run/t0")" '$1 == e { printf "%.2f\n", $2 - t0 }' "$DIR/$run/marks.tsv"
}

# ---------- the runs ----------
for run in "${RUNS[@]}"; do
    say "== traffic: run $run"
    RUN=$DIR/$run
    mkdir -p "$RUN"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$RUN"
    db=run_$run
    psql_db postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db TEMPLATE tpl STRATEGY file_copy"
    psql_db "$db" -c "SELECT sum(pg_prewarm(c)) FROM unnest(ARRAY['pgbench_accounts', 'pgbench_accounts_pkey', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history']::regclass[]) c" >/dev/null
    psql_db "$db" -c CHECKPOINT
    : >"$RUN/marks.tsv"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$RUN/marks.tsv"
    now >"$RUN/t0"
    ( cd "$RUN" && as_pg "$PGBENCH" -n -c "$CLIENTS" -j "$THREADS" -T "$DURATION" ${RATE:+-R "$RATE"} \
        -P 1 -l --log-prefix="$RUN/pgbench_log" -h "$SOCK" -p "$PORT" "$db" ) >"$RUN/pgbench.out" 2>&1 &
    pgbench_pid=$!
    # What the pgbench sessions are doing, 20 times a second (samples.txt):
    # t, running (active, no wait event), waiting for a row lock the zdm
    # worker holds, waiting for another lock, for a WAL LWLock (WALWrite,
    # WALInsert, WALBufMapping), another LWLock, IO; autovacuum workers;
    # the zdm worker's wait event (CPU: none; -: no worker).
    # pg_blocking_pids() takes the lock manager's shared state for a moment
    # (its documentation warns of frequent calls), so it is called for
    # every lock-waiting session in every run, worker or not: a sampler
    # that cost only the zdm run would bias the comparison.
    sample_sql="SELECT round((extract(epoch FROM clock_timestamp()) - $(cat "$RUN/t0"))::numeric, 3),
       count(*) FILTER (WHERE a.application_name = 'pgbench' AND a.state = 'active' AND a.wait_event IS NULL),
       count(*) FILTER (WHERE a.application_name = 'pgbench' AND a.wait_event_type = 'Lock'
                          AND coalesce(w.pid = ANY (pg_blocking_pids(a.pid)), false)),
       count(*) FILTER (WHERE a.application_name = 'pgbench' AND a.wait_event_type = 'Lock'
                          AND NOT coalesce(w.pid = ANY (pg_blocking_pids(a.pid)), false)),
       count(*) FILTER (WHERE a.application_name = 'pgbench' AND a.wait_event_type = 'LWLock'
                          AND a.wait_event IN ('WALWrite', 'WALInsert', 'WALBufMapping')),
       count(*) FILTER (WHERE a.application_name = 'pgbench' AND a.wait_event_type = 'LWLock'
                          AND a.wait_event NOT IN ('WALWrite', 'WALInsert', 'WALBufMapping')),
       count(*) FILTER (WHERE a.application_name = 'pgbench' AND a.wait_event_type = 'IO'),
       count(*) FILTER (WHERE a.backend_type = 'autovacuum worker'),
       coalesce(max(CASE WHEN a.backend_type = 'zdm backfill' THEN coalesce(a.wait_event, 'CPU') END), '-')
  FROM pg_stat_activity a
  LEFT JOIN (SELECT pid FROM pg_stat_activity WHERE backend_type = 'zdm backfill' LIMIT 1) w ON true"
    printf '%s \\watch 0.05\n' "$sample_sql" |
        PGAPPNAME=zdm-bench-sampler as_pg "$ZDM_PG_BINDIR/psql" -X -q -At -F ' ' -h "$SOCK" -p "$PORT" -d "$db" \
        >"$RUN/samples.txt" 2>"$RUN/sampler.err" &
    sampler_pid=$!
    # The migration, once a second (pace.tsv), in every run so that the
    # runs pay for it alike (no rows in the others): t, rows converted so
    # far, the batch size, why the worker is throttled or paced ("-": it is
    # not), and the phase, which zdm_migration waits on.
    printf '%s \\watch 1\n' "SELECT round((extract(epoch FROM clock_timestamp()) - $(cat "$RUN/t0"))::numeric, 3),
       rows_done, batch_size, coalesce(throttle_reason, '-'), phase FROM zdm.status WHERE name = 'cents'" |
        PGAPPNAME=zdm-bench-sampler as_pg "$ZDM_PG_BINDIR/psql" -X -q -At -F $'\t' -h "$SOCK" -p "$PORT" -d "$db" \
        >"$RUN/pace.tsv" 2>"$RUN/pacer.err" &
    pacer_pid=$!
    migration_rc=0
    if [ "$run" != none ]; then
        sleep "$MIGRATE_AT"
        if [ "$run" = zdm ]; then
            zdm_migration "$db" "$RUN/marks.tsv" "$RUN/pace.tsv" >"$RUN/migration.out" 2>&1 &
        elif [ "$run" = trigger ]; then
            trigger_migration "$db" "$RUN/marks.tsv" >"$RUN/migration.out" 2>&1 &
        else
            alter_migration "$db" "$RUN/marks.tsv" >"$RUN/migration.out" 2>&1 &
        fi
        migration_pid=$!
    fi
    pgbench_rc=0
    wait "$pgbench_pid" || pgbench_rc=$?
    pgbench_pid=
    if [ -n "$migration_pid" ]; then
        if kill -0 "$migration_pid" 2>/dev/null; then
            say "the migration was still running when pgbench ended; waiting for it"
        fi
        wait "$migration_pid" || migration_rc=$?
        migration_pid=
        [ "$migration_rc" -eq 0 ] || { cat "$RUN/migration.out"; die "the $run migration failed"; }
    fi
    psql_db "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'zdm-bench-sampler'" >/dev/null
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
    [ -z "$pacer_pid" ] || wait "$pacer_pid" 2>/dev/null || true
    pacer_pid=
    echo "$pgbench_rc" >"$RUN/pgbench.rc"
    grep -E '^(number of (transactions actually processed|failed transactions)|latency average|tps)' "$RUN/pgbench.out" | sed 's/^/  /' || true
    [ "$pgbench_rc" -eq 0 ] || say "  pgbench exit status $pgbench_rc (errors during the run; see $RUN/pgbench.out)"
    if [ -s "$RUN/marks.tsv" ]; then
        say "  marks (s since start): $(awk -F'\t' -v t0="$(cat "$RUN/t0")" '{ printf "%s %.2f  ", $1, $2 - t0 }' "$RUN/marks.tsv")"
    fi
    if [ "$run" = zdm ]; then
        # (After contract the trigger is gone: abalance_cents is the new
        # version's column, and pgbench's later updates of abalance leave it.)
        psql_db "$db" -c "SELECT '  after contract: abalance_cents NOT NULL ' || (SELECT attnotnull FROM pg_attribute WHERE attrelid = 'pgbench_accounts'::regclass AND attname = 'abalance_cents') || ', triggers on pgbench_accounts: ' || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pgbench_accounts'::regclass)"
        psql_db "$db" -c "SELECT '  backfill: ' || rows_done || ' rows in ' || batches || ' batches, last batch ' || batch_size || ' rows, ' || round(extract(epoch FROM backfilled_at - (SELECT min(logged_at) FROM zdm.migration_log WHERE migration = 'cents' AND event = 'start_backfill'))::numeric, 1) || ' s' FROM zdm.status WHERE name = 'cents'"
        psql_db "$db" -c "SELECT '  journal: ' || string_agg(event || coalesce(' ' || phase, '') || coalesce(' lock_wait_ms=' || round(lock_wait_ms::numeric, 1), '') || coalesce(' attempts=' || attempts, '') || coalesce(' ms=' || round(duration_ms::numeric, 1), ''), '; ' ORDER BY id) FROM zdm.migration_log WHERE migration = 'cents' AND event <> 'ddl'"
        psql_db "$db" -c "SELECT '  throttled: ' || count(*) || ' journal entries' FROM zdm.migration_log WHERE migration = 'cents' AND event = 'retry'"
    fi
    per_second "$run" >"$RUN/per_second.tsv"
    # Per second: the mean of the samples' counts.
    awk 'NF >= 9 && $1 ~ /^[0-9.]+$/ { s = int($1); n[s]++; for (i = 2; i <= 8; i++) c[s, i] += $i }
         END { for (s in n) { printf "%d", s; for (i = 2; i <= 8; i++) printf " %.2f", c[s, i] / n[s]; printf "\n" } }' \
        "$RUN/samples.txt" | sort -n >"$RUN/sessions.tsv"
    # Its dead rows would otherwise be vacuumed during the next run.
    [ -n "${TRAFFIC_KEEP:-}" ] || psql_db postgres -c "DROP DATABASE $db"
done
trap - EXIT
cleanup
server_started=

# ---------- the report ----------
window() {   # run: "from to" in seconds since its start (to: at most the run's end)
    local w
    case $1 in
        zdm) w="$(mark_offset zdm expand_start) $(mark_offset zdm contract_end)" ;;
        alter) w="$(mark_offset alter alter_start) $(mark_offset alter alter_end)" ;;
        trigger) w="$(mark_offset trigger expand_start) $DURATION" ;;
        none) if [ -f "$DIR/zdm/marks.tsv" ]; then w=$(window zdm); else w="$MIGRATE_AT $DURATION"; fi ;;
    esac
    awk -v d="$DURATION" '{ if (NF == 2) printf "%s %s\n", $1, ($2 > d ? d : $2) }' <<<"$w"
}

has_run() { [ -f "$DIR/$1/per_second.tsv" ]; }

report() {
    local run w from to
    echo
    echo "pgbench TPC-B-like, -c $CLIENTS -j $THREADS, scale $SCALE, $DURATION s per run; migration at ${MIGRATE_AT} s"
    echo "(latency in ms, nearest rank over every transaction completed in the span)"
    echo
    printf '%-6s %-22s %8s %8s %8s %8s %8s %9s %8s %7s\n' run span xacts tps p50 p99 p99.9 max mean failed
    for run in "${RUNS[@]}"; do
        has_run "$run" || continue
        read -r from to <<<"$(window "$run")"
        printf '%-6s %-22s %s\n' "$run" "whole run" "$(stats "$run" 0 "$DURATION" | awk '{ printf "%8s %8s %8s %8s %8s %9s %8s %7s", $1, $2, $3, $4, $5, $6, $7, $8 }')"
        if [ -n "$from" ] && [ -n "$to" ]; then
            printf '%-6s %-22s %s\n' "" "$(printf 'in %.1f-%.1f s' "$from" "$to")" "$(stats "$run" "$from" "$to" | awk '{ printf "%8s %8s %8s %8s %8s %9s %8s %7s", $1, $2, $3, $4, $5, $6, $7, $8 }')"
            printf '%-6s %-22s %s\n' "" "outside it" "$(stats "$run" "$from" "$to" outside | awk '{ printf "%8s %8s %8s %8s %8s %9s %8s %7s", $1, $2, $3, $4, $5, $6, $7, $8 }')"
        fi
    done
    echo
    echo "What the $CLIENTS pgbench sessions were doing (mean number of sessions, sampled every 50 ms; same spans):"
    echo "running = active with no wait event (on CPU or waiting for one); worker-lock = waiting for a lock"
    echo "the zdm worker holds; other-lock = waiting for any other lock (pgbench's own row contention, the ALTER)"
    echo
    printf '%-6s %-22s %8s %12s %11s %9s %13s %5s %9s\n' run span running worker-lock other-lock "WAL-LWLock" "other-LWLock" IO autovac
    for run in "${RUNS[@]}"; do
        [ -s "$DIR/$run/samples.txt" ] || continue
        read -r from to <<<"$(window "$run")"
        for span in whole in out; do
            awk -v a="${from:-0}" -v b="${to:-$DURATION}" -v m="$span" -v d="$DURATION" -v r="$run" '
                NF >= 9 && $1 ~ /^[0-9.]+$/ {
                    t = $1; if (t < 0 || t >= d) next
                    inside = (t >= a && t < b)
                    if (m == "in" && !inside) next
                    if (m == "out" && inside) next
                    n++; for (i = 2; i <= 8; i++) c[i] += $i }
                END { if (n == 0) exit
                      label = (m == "whole") ? "whole run" : (m == "in") ? sprintf("in %.1f-%.1f s", a, b) : "outside it"
                      printf "%-6s %-22s %8.2f %12.2f %11.2f %9.2f %13.2f %5.2f %9.2f\n", (m == "whole") ? r : "", label,
                             c[2] / n, c[3] / n, c[4] / n, c[5] / n, c[6] / n, c[7] / n, c[8] / n }' "$DIR/$run/samples.txt"
        done
    done
    if [ -s "$DIR/zdm/samples.txt" ]; then
        echo
        printf 'The zdm worker, share of the samples while it ran: '
        awk 'NF >= 9 && $9 != "-" { n++; c[$9]++ }
             END { for (e in c) printf "%s %.1f%%\n", e, 100 * c[e] / n }' "$DIR/zdm/samples.txt" |
            sort -k2 -g -r | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 } END { print "" }'
        echo "(CPU: no wait event; Extension: its sleep between batches; WALWrite/WALSync/...: waiting for WAL)"
    fi
    if [ -s "$DIR/zdm/pace.tsv" ]; then
        echo
        awk -F'\t' -v d="$DURATION" 'NF == 5 {
                 n++
                 if (n == 1) t1 = $1
                 if ($1 <= d) { td = $1; rd = $2 }
                 if ($4 ~ /paced to/) { p++; r = $4; sub(/.*paced to /, "", r); sub(/ rows.*/, "", r); rate[p] = r + 0
                                        x = $4; sub(/.*took /, "", x); sub(/x .*/, "", x); ratio += x }
                 else if ($4 ~ /^measuring/) m++
                 else if ($4 != "-") o++
                 b = $3 }
             function median(a, k,   i, j, v) {
                 for (i = 2; i <= k; i++) { v = a[i]; for (j = i - 1; j > 0 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
                 return k ? a[int((k + 1) / 2)] : 0 }
             END { if (n == 0) exit
                   printf "The zdm worker once a second (zdm.status, %d samples): paced %.0f%%", n, 100 * p / n
                   if (p) printf " (rate limit median %.0f rows/s, clients'\'' commit time %.2fx on average)", median(rate, p), ratio / p
                   printf ", measuring %.0f%%, other throttles %.0f%%; %d rows converted while pgbench ran (%.0f rows/s); last batch size %d\n",
                          100 * m / n, 100 * o / n, rd, (td > t1) ? rd / (td - t1) : 0, b }' "$DIR/zdm/pace.tsv"
    fi
    if has_run none; then
        echo
        local p99none p99nonew r
        p99none=$(stats none 0 "$DURATION" | awk '{ print $4 }')
        read -r from to <<<"$(window none)"
        p99nonew=$(stats none "$from" "$to" | awk '{ print $4 }')
        for r in zdm alter trigger; do
            has_run "$r" || continue
            local p99 p99w
            p99=$(stats "$r" 0 "$DURATION" | awk '{ print $4 }')
            read -r from to <<<"$(window "$r")"
            p99w=$(stats "$r" "$from" "$to" | awk '{ print $4 }')
            awk -v r="$r" -v a="$p99" -v b="$p99none" -v aw="$p99w" -v bw="$p99nonew" 'BEGIN {
                printf "p99(%s) / p99(none): whole run %.2fx, migration window %.2fx", r, a / b, aw / bw
                if (r == "zdm") printf "  (goal <= 1.5x: %s)", (a / b <= 1.5 && aw / bw <= 1.5) ? "met" : "MISSED"
                printf "\n" }'
        done
        for r in zdm; do
            has_run "$r" || continue
            awk -v f="$(stats zdm 0 "$DURATION" | awk '{ print $8 }')" -v rc="$(cat "$DIR/zdm/pgbench.rc")" 'BEGIN {
                printf "failed transactions during the zdm run: %d, pgbench exit status %d (goal: 0 failed): %s\n", f, rc, (f == 0 && rc == 0) ? "met" : "MISSED" }'
        done
    fi
    local end
    end=$(mark_offset zdm contract_end)
    [ -z "$end" ] || awk -v e="$end" -v d="$DURATION" 'BEGIN { if (e > d) printf "NOTE: the zdm migration ended at %.1f s, after the end of the run (%d s); its window is cut at %d s\n", e, d, d }'
    for run in "${RUNS[@]}"; do
        [ -s "$DIR/$run/marks.tsv" ] || continue
        echo "marks of $run (s since start): $(awk -F'\t' -v t0="$(cat "$DIR/$run/t0")" '{ printf "%s %.2f  ", $1, $2 - t0 }' "$DIR/$run/marks.tsv")"
    done
}
report | tee "$DIR/report.txt"

# ---------- the plots ----------
command -v gnuplot >/dev/null || { say "no gnuplot: no plots"; exit 0; }
mkdir -p "$PLOTS"
# Shared axes, so the three plots compare at a glance.
tps_max=$(cat "$DIR"/*/per_second.tsv | awk '$2 > m { m = $2 } END { print int(m * 1.15 / 100 + 1) * 100 }')
lat_max=$(cat "$DIR"/*/per_second.tsv | awk '$5 != "-" && $5 > m { m = $5 } END { print m * 2 }')

phase_objects() {   # gnuplot commands that mark run $1's phases
    local run=$1 a b
    case $run in
        zdm)
            a=$(mark_offset zdm backfill_start); b=$(mark_offset zdm backfill_end)
            [ -z "$a" ] || [ -z "$b" ] || echo "set object 1 rect from $a, graph 0 to $b, graph 1 fc rgb '#dde8f5' fs solid 1.0 noborder behind"
            a=$(mark_offset zdm contract_start); b=$(mark_offset zdm contract_end)
            [ -z "$a" ] || [ -z "$b" ] || echo "set object 2 rect from $a, graph 0 to $b, graph 1 fc rgb '#f5e3c8' fs solid 1.0 noborder behind"
            # A mark closer than 2% of the run to the previous one shares
            # its label ("expand, backfill start").
            local ev x label marks=""
            for ev in expand_start backfill_start backfill_end contract_start contract_end; do
                x=$(mark_offset zdm "$ev")
                [ -n "$x" ] || continue
                case $ev in
                    expand_start) label="expand" ;;
                    backfill_start) label="backfill start" ;;
                    backfill_end) label="backfill end" ;;
                    contract_start) label="contract start" ;;
                    contract_end) label="contract end" ;;
                esac
                marks+="$x"$'\t'"$label"$'\n'
            done
            printf '%s' "$marks" | awk -F'\t' -v gap="$(awk -v d="$DURATION" 'BEGIN { print d * 0.02 }')" '
                { if (n > 0 && $1 - x[n] < gap) l[n] = l[n] ", " $2; else { n++; x[n] = $1; l[n] = $2 } }
                END { for (i = 1; i <= n; i++) {
                          printf "set arrow %d from %s, graph 0 to %s, graph 1 nohead dt 2 lc rgb \"#555555\"\n", i, x[i], x[i]
                          printf "set label %d \"%s\" at %s, graph 0.97 rotate by 90 right offset -0.6,0 font \",8\" tc rgb \"#333333\"\n", i, l[i], x[i] } }' ;;
        alter)
            a=$(mark_offset alter alter_start); b=$(mark_offset alter alter_end)
            [ -z "$a" ] || [ -z "$b" ] || {
                echo "set object 1 rect from $a, graph 0 to $b, graph 1 fc rgb '#f5d0d0' fs solid 1.0 noborder behind"
                echo "set arrow 1 from $a, graph 0 to $a, graph 1 nohead dt 2 lc rgb '#555555'"
                echo "set label 1 'ALTER start' at $a, graph 0.97 rotate by 90 right offset -0.6,0 font ',8' tc rgb '#333333'"
                echo "set arrow 2 from $b, graph 0 to $b, graph 1 nohead dt 2 lc rgb '#555555'"
                echo "set label 2 'ALTER end' at $b, graph 0.97 rotate by 90 right offset -0.6,0 font ',8' tc rgb '#333333'"
            } ;;
    esac
}

title_of() {
    case $1 in
        none) echo "no migration" ;;
        zdm) echo "zdm: expand, background backfill (default settings), contract" ;;
        alter) echo "ALTER TABLE pgbench\\\\_accounts ALTER COLUMN abalance TYPE bigint" ;;
        trigger) echo "zdm: expand only (the dual-write trigger on every update, no backfill)" ;;
    esac
}

for run in "${RUNS[@]}"; do
    has_run "$run" || continue
    s=$(stats "$run" 0 "$DURATION")
    read -r _ tps _ p99 _ mx _ failed <<<"$s"
    objs=$(phase_objects "$run")
    gnuplot <<GP || say "WARNING: gnuplot failed for $run"
set terminal pngcairo size 1100,950 font 'DejaVu Sans,10'
set output '$PLOTS/traffic-$run$TAG.png'
set datafile missing '-'
set multiplot layout 3,1 title "pgbench TPC-B-like, $CLIENTS clients, scale $SCALE${RATE:+, -R $RATE}: $(title_of "$run")\nwhole run: $tps tps, p99 $p99 ms, max $mx ms, $failed failed" font ',11'
set xrange [0:$DURATION]
set grid
set lmargin 10
set rmargin 4
$objs
set ylabel 'transactions per second'
set yrange [0:$tps_max]
set key top right opaque
plot '$DIR/$run/per_second.tsv' using (\$1 + 0.5):2 with steps lw 1.5 lc rgb '#1f5fa8' title 'tps (per second)'
unset label
unset arrow
set ylabel 'latency, ms (log scale)'
set logscale y
set yrange [0.5:$lat_max]
plot '$DIR/$run/per_second.tsv' using (\$1 + 0.5):3 with steps lc rgb '#7f7f7f' title 'p50', \
     '' using (\$1 + 0.5):4 with steps lw 1.5 lc rgb '#d62728' title 'p99', \
     '' using (\$1 + 0.5):5 with points pt 7 ps 0.4 lc rgb '#000000' title 'max'
unset logscale y
set ylabel 'pgbench sessions (mean per second)'
set xlabel 'seconds since pgbench started'
set yrange [0:$CLIENTS]
plot '$DIR/$run/sessions.tsv' using (\$1 + 0.5):2 with steps lc rgb '#7f7f7f' title 'running', \
     '' using (\$1 + 0.5):3 with steps lw 1.5 lc rgb '#1f5fa8' title 'waiting for a lock the zdm worker holds', \
     '' using (\$1 + 0.5):4 with steps lw 1.5 lc rgb '#d62728' title 'waiting for another lock', \
     '' using (\$1 + 0.5):5 with steps lc rgb '#ff7f0e' title 'waiting for WAL (WALWrite, WALInsert LWLocks)', \
     '' using (\$1 + 0.5):(\$6 + \$7) with steps lc rgb '#9467bd' title 'other LWLock or IO'
unset multiplot
GP
    say "plot: $PLOTS/traffic-$run$TAG.png"
done

# The three runs together: tps and p99 per second.
plot_tps=""
plot_p99=""
for run in "${RUNS[@]}"; do
    has_run "$run" || continue
    case $run in none) c='#2ca02c' ;; zdm) c='#1f5fa8' ;; alter) c='#d62728' ;; *) c='#9467bd' ;; esac
    plot_tps+="${plot_tps:+, }'$DIR/$run/per_second.tsv' using (\$1 + 0.5):2 with steps lw 1.5 lc rgb '$c' title '$run'"
    plot_p99+="${plot_p99:+, }'$DIR/$run/per_second.tsv' using (\$1 + 0.5):4 with steps lw 1.5 lc rgb '$c' title '$run p99'"
done
gnuplot <<GP || say "WARNING: gnuplot failed for the overview"
set terminal pngcairo size 1100,700 font 'DejaVu Sans,10'
set output '$PLOTS/traffic-overview$TAG.png'
set datafile missing '-'
set multiplot layout 2,1 title "pgbench TPC-B-like, $CLIENTS clients, scale $SCALE: the three runs (migration started at ${MIGRATE_AT} s)" font ',11'
set xrange [0:$DURATION]
set grid
set lmargin 10
set rmargin 4
set key top right opaque
set ylabel 'transactions per second'
set yrange [0:$tps_max]
plot $plot_tps
set ylabel 'p99 latency per second, ms (log)'
set xlabel 'seconds since pgbench started'
set logscale y
set yrange [0.5:$lat_max]
plot $plot_p99
unset multiplot
GP
say "plot: $PLOTS/traffic-overview$TAG.png"
