#!/usr/bin/env bash
# test/demo/run.sh: the seed's orders migration, live, on a throwaway cluster.
#
# A table of 200,000 orders keeps its text column legacy_status while an
# enum column status_enum replaces it.  An API v3 client (writing only
# legacy_status) runs from before expand until just before contract; an
# API v4 client (writing only status_enum) runs from just after expand
# through contract.  In between, the backfill converts the old rows in
# committed batches and verify checks them.  Every phase prints its
# figures; the clients must see no error at all.
#
#   bash test/demo/run.sh           # or: make demo
#   ZDM_DEMO_ROWS=50000 ZDM_DEMO_BATCH=2000 bash test/demo/run.sh   (BATCH: the worker's first batch)
#
# test/deps.sh runs first and installs what is missing (on a fresh Debian
# 12: make, the compiler, PostgreSQL 15).  The cluster lives under
# ./tmp/demo, or /tmp/zdm-demo when the postgres OS user cannot reach
# ./tmp (a clone in /root); server.log and the clients' output stay there.
# It is stopped at the end, whatever happens.
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/../deps.sh" ||
    { printf 'demo FAILED: test/deps.sh could not install what the demo needs\n' >&2; exit 1; }
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ZDM_ROOT"
export PGUSER=postgres

ROWS=${ZDM_DEMO_ROWS:-200000}
BATCH=${ZDM_DEMO_BATCH:-5000}
PORT=${ZDM_DEMO_PORT:-5499}
CLIENT_PAUSE=${ZDM_DEMO_CLIENT_PAUSE:-0.02}  # seconds between a client's transactions
MIGRATION=001_orders_status_enum
DEFINITION='{"versions":{"old":"v3","new":"v4"},"operations":[{"alter_column":{"table":"orders","column":"legacy_status","name":"status_enum","type":"order_status","nullable":false,"up":"legacy_status::order_status","down":"status_enum::text"}}]}'

say() { printf '%s\n' "$*"; }
phase() { printf '\n== %s\n' "$*"; }
die() { printf 'demo FAILED: %s\n' "$*" >&2; exit 1; }

phase "build and install"
mkdir -p "$ZDM_ROOT/tmp"
zdm_build_install >"$ZDM_ROOT/tmp/demo-build.log" 2>&1 ||
    { cat "$ZDM_ROOT/tmp/demo-build.log"; die "build or install"; }
say "zdm built and installed"

DIR=$(zdm_workdir demo)
export ZDM_PG_HOME=$DIR
DATA=$DIR/data
# A Unix socket path must stay short (107 bytes).
SOCK=$DIR/sock
[ ${#SOCK} -lt 80 ] || SOCK=$(mktemp -d /tmp/zdm-demo-sock.XXXXXX)
mkdir -p "$SOCK" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$SOCK"; }

server_started=
client_pids=()
cleanup() {
    local pid
    touch "$DIR/stop-v3" "$DIR/stop-v4" 2>/dev/null || true
    for pid in "${client_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ -n "$server_started" ]; then
        as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ "$SOCK" = "$DIR/sock" ] || rm -rf "$SOCK"
}
trap cleanup EXIT

phase "cluster"
as_pg "$ZDM_PG_BINDIR/initdb" -D "$DATA" -U postgres -A trust --no-locale -E UTF8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log"; die "initdb"; }
as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w \
    -o "-p $PORT -k $SOCK -c listen_addresses=''" start >/dev/null ||
    { tail -n 50 "$DIR/server.log"; die "the server did not start"; }
server_started=1
say "PostgreSQL $(as_pg "$ZDM_PG_BINDIR/postgres" -V | awk '{print $3}') on socket $SOCK, port $PORT, data in $DATA"

# psql on the demo database: stops at the first error, prints bare values.
sql() {
    as_pg "$ZDM_PG_BINDIR/psql" -X -q -h "$SOCK" -p "$PORT" -d demo \
        -v ON_ERROR_STOP=1 -At "$@"
}
# The same with aligned output, for tables shown to the reader.
show() {
    as_pg "$ZDM_PG_BINDIR/psql" -X -q -h "$SOCK" -p "$PORT" -d demo \
        -v ON_ERROR_STOP=1 -P pager=off "$@"
}
# Evaluate one SQL expression; print "value ms" with the time the server
# took (clock_timestamp around it, without psql's start-up).
timed() {
    sql -F ' ' <<SQL
SELECT clock_timestamp() AS zdm_t0 \gset
SELECT $1 AS zdm_value \gset
SELECT :'zdm_value', round((extract(epoch FROM clock_timestamp() - :'zdm_t0'::timestamptz) * 1000)::numeric, 1);
SQL
}
as_pg "$ZDM_PG_BINDIR/createdb" -h "$SOCK" -p "$PORT" demo

phase "schema and $ROWS orders"
t0=$(zdm_now)
sql <<SQL
CREATE EXTENSION zdm;
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'delivered', 'cancelled');
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    legacy_status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orders (customer, legacy_status, created_at)
SELECT 'customer ' || (g % 20000),
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + g % 5],
       now() - (g || ' minutes')::interval
  FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE orders;
SQL
say "created and filled in $(zdm_elapsed "$t0" "$(zdm_now)") s: $(sql -c 'SELECT count(*) FROM orders') rows, $(sql -c "SELECT pg_size_pretty(pg_table_size('orders'))")"

# A client: one statement per transaction, in turn an insert, an update of
# the status of a random existing order, and an update of its customer;
# it writes only the status column its API version knows.
# Runs until the file stop-NAME appears; psql prints a command tag per
# committed transaction and an ERROR line per failed one.
STATUSES=(pending paid shipped delivered cancelled)
client_loop() {
    local version=$1 column i=0 id s
    case $version in
        v3) column=legacy_status ;;
        v4) column=status_enum ;;
    esac
    # Each client declares its API version, as a pooler's role setting would.
    echo "SET zdm.api_version = '$version';"
    while [ ! -e "$DIR/stop-$version" ]; do
        i=$((i + 1))
        s=${STATUSES[RANDOM % 5]}
        id=$(( (RANDOM * 32768 + RANDOM) % ROWS + 1 ))
        case $((i % 3)) in
            1) echo "INSERT INTO orders (customer, $column) VALUES ('$version client $i', '$s');" ;;
            2) echo "UPDATE orders SET $column = '$s' WHERE id = $id;" ;;
            0) echo "UPDATE orders SET customer = '$version client $i' WHERE id = $id;" ;;
        esac
        sleep "$CLIENT_PAUSE"
    done
}
start_client() {
    local version=$1
    rm -f "$DIR/stop-$version"
    client_loop "$version" |
        as_pg "$ZDM_PG_BINDIR/psql" -X -h "$SOCK" -p "$PORT" -d demo \
            -v ON_ERROR_STOP=0 -v VERBOSITY=terse \
            >"$DIR/client-$version.out" 2>"$DIR/client-$version.err" &
    client_pids+=($!)
    eval "client_${version}_pid=$!"
}
stop_client() {
    local version=$1 pid
    touch "$DIR/stop-$version"
    eval "pid=\$client_${version}_pid"
    wait "$pid" || true
}
# Committed transactions and errors of a client so far.
client_tx() {
    local n
    n=$(grep -cE '^(INSERT|UPDATE) ' "$DIR/client-$1.out" 2>/dev/null) || true
    echo "${n:-0}"
}
client_err() {
    local n
    n=$(grep -c 'ERROR' "$DIR/client-$1.err" 2>/dev/null) || true
    echo "${n:-0}"
}

# Figures of the clients over a phase: call clients_mark before it and
# clients_report after it.
clients_mark() {
    m_t=$(zdm_now)
    m_v3=$(client_tx v3); m_v3e=$(client_err v3)
    m_v4=$(client_tx v4); m_v4e=$(client_err v4)
}
clients_report() {
    local secs v3 v3e v4 v4e
    secs=$(zdm_elapsed "$m_t" "$(zdm_now)")
    v3=$(( $(client_tx v3) - m_v3 )); v3e=$(( $(client_err v3) - m_v3e ))
    v4=$(( $(client_tx v4) - m_v4 )); v4e=$(( $(client_err v4) - m_v4e ))
    say "clients meanwhile ($secs s): v3 $v3 transactions, $v3e errors; v4 $v4 transactions, $v4e errors"
}

phase "v3 client alone (before the migration)"
start_client v3
clients_mark
sleep 2
clients_report

phase "expand"
clients_mark
read -r applied expand_ms <<<"$(timed "zdm.expand('$MIGRATION', '$DEFINITION')")" || die "expand"
[ "$applied" = t ] || die "expand returned '$applied' on a fresh database"
say "zdm.expand('$MIGRATION') = $applied in $expand_ms ms"
show -c "SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' ORDER BY ordinal_position"
# A second instance starting up with the same migration skips it.
again=$(sql -c "SELECT zdm.expand('$MIGRATION', '$DEFINITION')" 2>&1 | tr '\n' ' ')
say "a second zdm.expand of the same migration: $again"
start_client v4
sleep 1
clients_report

phase "backfill by the background worker (zdm.start_backfill)"
clients_mark
t0=$(zdm_now)
started=$(sql -c "SELECT zdm.start_backfill('$MIGRATION', batch_size => $BATCH)") || die "start_backfill"
say "zdm.start_backfill('$MIGRATION') = $started; the worker tunes its batches towards zdm.batch_time"
polls=0
while :; do
    state=$(sql -F ' ' -c "SELECT phase, rows_done, coalesce(rows_total::text, '?'), coalesce(percent::text, '?') || '%', coalesce(rows_per_sec::text, '?') || ' rows/s', 'eta ' || coalesce(eta::text, '?'), 'batch ' || coalesce(batch_size::text, '?'), 'worker ' || coalesce(worker_pid::text, '-'), coalesce('throttled: ' || throttle_reason, ''), coalesce('error: ' || last_error, '') FROM zdm.status WHERE name = '$MIGRATION'") || die "status"
    echo "  $state"
    case "$state" in
        backfilled*) break ;;
        failed*) die "the backfill failed: $state" ;;
    esac
    polls=$((polls + 1))
    [ "$polls" -lt 600 ] || die "the backfill does not finish"
    sleep 0.5
done
read -r backfilled batches <<<"$(sql -F ' ' -c "SELECT rows_backfilled, batches FROM zdm.migrations WHERE name = '$MIGRATION'")"
backfill_s=$(zdm_elapsed "$t0" "$(zdm_now)" 3)
backfill_rate=$(awk -v r="$backfilled" -v s="$backfill_s" 'BEGIN { printf "%.0f", (s > 0 ? r / s : 0) }')
say "backfilled $backfilled rows in $batches batches, $backfill_s s, $backfill_rate rows/s"
show -c "SELECT name, phase, tables, rows_done, rows_total, percent, batches, rows_per_sec FROM zdm.status"
clients_report

phase "verify"
clients_mark
read -r mismatches verify_ms <<<"$(timed "zdm.verify('$MIGRATION')")" || die "verify"
read -r total unconverted differ v3rows v4rows v4filled <<<"$(sql -F ' ' -c "
    SELECT count(*),
           count(*) FILTER (WHERE status_enum IS NULL),
           count(*) FILTER (WHERE status_enum::text IS DISTINCT FROM legacy_status),
           count(*) FILTER (WHERE customer LIKE 'v3 client %'),
           count(*) FILTER (WHERE customer LIKE 'v4 client %'),
           count(*) FILTER (WHERE customer LIKE 'v4 client %' AND legacy_status IS NOT NULL)
      FROM orders")"
say "zdm.verify('$MIGRATION') = $mismatches mismatching rows, in $verify_ms ms"
say "$total rows: $unconverted without status_enum, $differ where status_enum and legacy_status differ"
say "rows inserted by the v3 client: $v3rows; by the v4 client: $v4rows, $v4filled of them with legacy_status filled in"
clients_report
[ "$mismatches" = 0 ] || die "zdm.verify found $mismatches mismatching rows"
[ "$unconverted" = 0 ] || die "$unconverted rows were not converted"
[ "$differ" = 0 ] || die "$differ rows differ"
[ "$v4filled" = "$v4rows" ] || die "rows of the v4 client lack legacy_status"

phase "v3 client retired"
stop_client v3
v3_total=$(client_tx v3); v3_errors=$(client_err v3)
say "v3 client stopped: $v3_total transactions, $v3_errors errors in all"

phase "the gate: contract waits for v3 traffic to fall below 1%"
show -c "SELECT zdm.routing_map()"
# The load balancer reports what it routed (zdm.record_traffic); with
# shared_preload_libraries zdm would also count the clients' statements.
sql -c "SELECT zdm.record_traffic('v3', 3000), zdm.record_traffic('v4', 7000)" >/dev/null || die "record_traffic"
show -c "SELECT version, requests, share, sources FROM zdm.api_version_distribution"
refusal=$(sql -c "SELECT zdm.contract('$MIGRATION')" 2>&1) && die "contract was not refused at 30% v3 traffic"
say "refused: ${refusal#ERROR:  }"
sql -c "SELECT zdm.record_traffic('v4', 990000)" >/dev/null || die "record_traffic"
show -c "SELECT version, requests, share, sources FROM zdm.api_version_distribution"

phase "contract (the v4 client keeps writing)"
clients_mark
read -r contracted contract_ms <<<"$(timed "zdm.contract('$MIGRATION')")" || die "contract"
say "zdm.contract('$MIGRATION') = $contracted in $contract_ms ms"
[ "$contracted" = t ] || die "contract returned '$contracted'"
show -c "SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' ORDER BY ordinal_position"
show -c "SELECT tgname FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal"
sleep 2
clients_report

phase "v4 client retired"
stop_client v4
v4_total=$(client_tx v4); v4_errors=$(client_err v4)
say "v4 client stopped: $v4_total transactions, $v4_errors errors in all"
final_rows=$(sql -c "SELECT count(*) FROM orders")
final_null=$(sql -c "SELECT count(*) FROM orders WHERE status_enum IS NULL")
say "orders now: $final_rows rows, $final_null without status_enum"

phase "zdm.migration_log"
show -c "SELECT id, migration, to_char(logged_at, 'HH24:MI:SS.MS') AS at, event, phase, left(statement, 70) AS statement, round(lock_wait_ms::numeric, 1) AS lock_wait_ms, round(duration_ms::numeric, 1) AS duration_ms, attempts FROM zdm.migration_log ORDER BY id"
show -c "SELECT name, phase, rows_backfilled, batches, expanded_at, backfilled_at, contracted_at FROM zdm.migrations"

phase "summary"
backfill_ms=$(awk -v s="$backfill_s" 'BEGIN { printf "%.1f", s * 1000 }')
printf '%-10s %12s %12s %12s\n' phase ms rows rows/s
printf '%-10s %12s %12s %12s\n' expand "$expand_ms" - -
printf '%-10s %12s %12s %12s\n' backfill "$backfill_ms" "$backfilled" "$backfill_rate"
printf '%-10s %12s %12s %12s\n' verify "$verify_ms" "$total" -
printf '%-10s %12s %12s %12s\n' contract "$contract_ms" "$final_rows" -
say "v3 client: $v3_total transactions, $v3_errors errors"
say "v4 client: $v4_total transactions, $v4_errors errors"
if [ "$v3_errors" != 0 ] || [ "$v4_errors" != 0 ]; then
    say "client errors:"
    cat "$DIR/client-v3.err" "$DIR/client-v4.err" | sort | uniq -c | sort -rn | head -n 20
    die "the clients saw errors"
fi
[ "$final_null" = 0 ] || die "$final_null rows without status_enum after contract"
[ "$v3_total" -gt 0 ] && [ "$v4_total" -gt 0 ] || die "a client committed nothing"
as_pg "$ZDM_PG_BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
server_started=
say "cluster stopped (its log: $DIR/server.log)"
say "demo passed"
