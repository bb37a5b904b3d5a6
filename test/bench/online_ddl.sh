#!/usr/bin/env bash
# test/bench/online_ddl.sh: an index, a unique constraint and a foreign key
# added to a table under live traffic, by the plain statements and by zdm.
#
# pgbench's TPC-B-like script (the default: every transaction updates
# pgbench_accounts, pgbench_tellers and pgbench_branches and inserts into
# pgbench_history), ONLINE_CLIENTS clients (8), scale ONLINE_SCALE (50:
# pgbench_accounts has 5,000,000 rows), ONLINE_DURATION seconds a run,
# as an application role with table privileges only.  Three variants,
# each on its own file copy of the same freshly initialised database:
#
#   none   no DDL: the baseline
#   plain  after ONLINE_DDL_AT seconds, as the tables' owner (a migration
#          role), one after the other in autocommit, as a migration tool
#          that does not care about locks would run them:
#            CREATE INDEX pgbench_accounts_abalance_idx
#                ON pgbench_accounts (abalance)
#            ALTER TABLE pgbench_accounts ADD CONSTRAINT
#                pgbench_accounts_aid_bid_key UNIQUE (aid, bid)
#            ALTER TABLE pgbench_accounts ADD CONSTRAINT
#                pgbench_accounts_bid_fkey FOREIGN KEY (bid)
#                REFERENCES pgbench_branches (bid)
#          (the index and the unique constraint hold SHARE on
#          pgbench_accounts for their build, the foreign key SHARE ROW
#          EXCLUSIVE on both tables for its validation: every client's
#          UPDATE waits for the whole of each)
#   zdm    at the same moment, as the same role: zdm.expand() of one
#          migration in pgroll's format with the same three operations
#          (create_index; create_constraint unique; create_constraint
#          foreign_key), which returns at once; the background worker
#          builds the indexes CONCURRENTLY and validates the constraints;
#          when the migration reaches phase 'backfilled' (ready to
#          contract), zdm.contract()
#
# and, on request (ONLINE_VARIANTS):
#
#   prebuilt  the same three objects created before pgbench starts: what
#          the load costs with the end state alone (each new index is one
#          more to update on every client UPDATE, whose new row can then
#          no longer be a HOT update), so that the DDL's own cost can be
#          told apart from its result's
#
# ONLINE_ROUNDS rounds, the variants interleaved (the order rotates every
# round); the machine is shared, so every figure is also given as the
# median of the per-round ratios against the same round's none run.
#
# pgbench writes one log line per transaction (-l); latency.sh computes
# from them, for the whole run and for the DDL's window (its start to the
# end of the last statement / of contract; for none, the same seconds of
# the same round's plain and zdm runs), the transactions per second, the
# 50th, 99th and 99.9th percentile and the maximum latency (the longest
# client transaction), the transactions over 1 s and the failed ones (a
# client that pgbench aborts counts too: the run's exit status is kept).
# Also: how long the plain statements took, and zdm's time from expand to
# ready-to-contract.  Goals (issue 13): under zdm 0 failed transactions,
# p99 at most 1.5x none's, no transaction over 1 s.  The end state is
# checked (the index valid, both constraints there and validated, no
# INVALID index), so a DDL that did not happen cannot post a good figure.
#
#   bash test/bench/online_ddl.sh          # also run by make bench (last)
#   ONLINE_ROUNDS=5 ONLINE_DURATION=150 bash test/bench/online_ddl.sh
#   ONLINE_VARIANTS="none plain" ...       # a subset (none first)
#   ONLINE_OPS="index fk" ...              # a subset of index unique fk
#   ONLINE_PRELOAD=1 ...                   # shared_preload_libraries = 'zdm'
#   ONLINE_CONF="max_parallel_maintenance_workers = 0" ...   # more postgresql.conf lines
#   ONLINE_SAMPLE=1 ...                    # also sample what the clients wait for (5 a second)
#   ONLINE_SCALE=10 ONLINE_DURATION=40 ONLINE_ROUNDS=1 ...   # a quick look
#   ONLINE_PLOTS=/some/dir ...             # the PNG there instead
#
# Operations the zdm build cannot do yet (refused with feature_not_supported
# by a trial expand, rolled back, on a scratch copy of the tables) are left
# out of both plain and zdm, with a line saying so in the report.
#
# zdm is built in the work tree and installed into a private copy of
# PostgreSQL under ./tmp/bench-online/pg (as run.sh does), from which a
# throwaway cluster runs (port 5495); ./tmp/bench-online keeps, per run,
# pgbench's logs and output, marks.tsv (the DDL's moments), steps.tsv (zdm's
# journal of the statements it ran), and results.tsv and report.txt.  The
# data directory and the copy are removed at the end (ONLINE_KEEP=1 keeps
# them).  The plot goes to test/bench/plots/online-ddl.png.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ZDM_ROOT"
export PGUSER=postgres

SCALE=${ONLINE_SCALE:-50}
CLIENTS=${ONLINE_CLIENTS:-8}
THREADS=${ONLINE_THREADS:-2}
DURATION=${ONLINE_DURATION:-80}
DDL_AT=${ONLINE_DDL_AT:-10}
ROUNDS=${ONLINE_ROUNDS:-3}
PORT=${ONLINE_PORT:-5495}
VARIANTS=(${ONLINE_VARIANTS:-none plain zdm})
OPS=(${ONLINE_OPS:-index unique fk})
BENCH=$ZDM_ROOT/test/bench
PLOTS=${ONLINE_PLOTS:-$BENCH/plots}
LATENCY=$BENCH/latency.sh

say() { printf '%s\n' "$*"; }
die() { printf 'online DDL bench FAILED: %s\n' "$*" >&2; exit 1; }

for v in SCALE CLIENTS THREADS DURATION DDL_AT ROUNDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "ONLINE_$v must be a whole number"
done
[ "$ROUNDS" -ge 1 ] || die "ONLINE_ROUNDS must be at least 1"
[ "$DDL_AT" -lt "$DURATION" ] || die "ONLINE_DDL_AT must be less than ONLINE_DURATION"
[ "${VARIANTS[0]}" = none ] || die "ONLINE_VARIANTS must start with none, the baseline"
for v in "${VARIANTS[@]}"; do
    case $v in none|plain|zdm|prebuilt) ;; *) die "no variant $v (none plain zdm prebuilt)" ;; esac
done
for o in "${OPS[@]}"; do
    case $o in index|unique|fk) ;; *) die "no operation $o (index unique fk)" ;; esac
done

# The three operations: the plain statement and zdm's operation in
# pgroll's format, with the names plain gives them, so both end the same.
plain_sql() {
    case $1 in
        index) echo 'CREATE INDEX pgbench_accounts_abalance_idx ON pgbench_accounts (abalance)' ;;
        unique) echo 'ALTER TABLE pgbench_accounts ADD CONSTRAINT pgbench_accounts_aid_bid_key UNIQUE (aid, bid)' ;;
        fk) echo 'ALTER TABLE pgbench_accounts ADD CONSTRAINT pgbench_accounts_bid_fkey FOREIGN KEY (bid) REFERENCES pgbench_branches (bid)' ;;
    esac
}
zdm_op() {
    case $1 in
        index) echo '{"create_index": {"name": "pgbench_accounts_abalance_idx", "table": "pgbench_accounts", "columns": [{"column": "abalance"}]}}' ;;
        unique) echo '{"create_constraint": {"type": "unique", "table": "pgbench_accounts", "name": "pgbench_accounts_aid_bid_key", "columns": ["aid", "bid"], "up": {"aid": "aid", "bid": "bid"}, "down": {"aid": "aid", "bid": "bid"}}}' ;;
        fk) echo '{"create_constraint": {"type": "foreign_key", "table": "pgbench_accounts", "name": "pgbench_accounts_bid_fkey", "columns": ["bid"], "references": {"table": "pgbench_branches", "columns": ["bid"]}, "up": {"bid": "bid"}, "down": {"bid": "bid"}}}' ;;
    esac
}
migration_json() {   # the operations given
    local o sep= ops=
    for o in "$@"; do ops+="$sep$(zdm_op "$o")"; sep=', '; done
    echo "{\"operations\": [$ops]}"
}
has_variant() { local v; for v in "${VARIANTS[@]}"; do [ "$v" = "$1" ] && return 0; done; return 1; }

mkdir -p "$ZDM_ROOT/tmp"
exec 9>"$ZDM_ROOT/tmp/bench-online.lock"
if ! flock -n 9; then
    say "== online DDL: waiting for another online_ddl.sh to finish"
    flock 9
fi

DIR=$(zdm_workdir bench-online)
export ZDM_PG_HOME=$DIR
DATA=$DIR/data
SOCK=$DIR/sock
[ ${#SOCK} -lt 80 ] || SOCK=$(mktemp -d /tmp/zdm-bench-online-sock.XXXXXX)
mkdir -p "$SOCK" && { [ "$(id -u)" -ne 0 ] || chown postgres: "$SOCK"; }

server_started=
pgbench_pid=
ddl_pid=
watch_pid=
sample_pid=
cleanup() {
    local p
    for p in "$pgbench_pid" "$ddl_pid" "$watch_pid" "$sample_pid"; do
        [ -z "$p" ] || kill "$p" 2>/dev/null || true
    done
    if [ -n "$server_started" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    [ "$SOCK" = "$DIR/sock" ] || rm -rf "$SOCK"
    [ -n "${ONLINE_KEEP:-}" ] || rm -rf "$DATA" "$STAGE"
}
trap cleanup EXIT

# A private copy of PostgreSQL's installation with zdm installed into it
# (see run.sh): nothing outside $DIR changes, and whoever installs another
# zdm build meanwhile does not change the code under measurement.
say "== online DDL: build and install"
STAGE=$DIR/pg
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
say "zdm built and installed into $STAGE: $src, zdm.so md5 $(md5sum "$STAGE$("$PG_CONFIG" --pkglibdir)/zdm.so" | cut -c1-12)"

say "== online DDL: cluster"
as_pg "$PGBIN/initdb" -D "$DATA" -U postgres -A trust --no-locale -E UTF8 \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log"; die "initdb"; }
# The database fits in shared buffers; no timed checkpoint inside a run
# (each starts after a CHECKPOINT). Autovacuum stays on, as in production.
cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
shared_buffers = 2GB
max_wal_size = 20GB
checkpoint_timeout = 1h
CONF
[ -z "${ONLINE_PRELOAD:-}" ] || echo "shared_preload_libraries = 'zdm'" >>"$DATA/postgresql.conf"
[ -z "${ONLINE_CONF:-}" ] || printf '%s\n' "$ONLINE_CONF" >>"$DATA/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -o "-k $SOCK" start >/dev/null 9>&- ||
    { tail -n 50 "$DIR/server.log"; die "the server did not start"; }
server_started=1

psql_as() {   # role, database, psql arguments
    local role=$1 db=$2; shift 2
    as_pg "$PGBIN/psql" -X -q -At -h "$SOCK" -p "$PORT" -U "$role" -d "$db" -v ON_ERROR_STOP=1 "$@"
}
psql_db() { psql_as postgres "$@"; }
libdir=$(psql_db postgres -c "SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'")
[[ $libdir == "$STAGE"/* ]] || die "the server loads extensions from $libdir, not from the copy under $STAGE"

# Roles as users have them: the migration role owns the tables, has
# zdm_migrator and CREATE on their schema (PostgreSQL asks for it to create
# an index); pgbench's clients have table privileges only.
psql_db postgres -c 'CREATE ROLE migrator LOGIN' -c 'CREATE ROLE app LOGIN'

say "== online DDL: pgbench -i -s $SCALE (the template)"
t0=$(zdm_now)
as_pg "$PGBIN/createdb" -h "$SOCK" -p "$PORT" tpl
as_pg "$PGBIN/pgbench" -i -q -s "$SCALE" -h "$SOCK" -p "$PORT" tpl >"$DIR/init.log" 2>&1 ||
    { cat "$DIR/init.log"; die "pgbench -i"; }
psql_db tpl -c 'CREATE EXTENSION zdm' -c 'CREATE EXTENSION pg_prewarm' \
    -c 'GRANT zdm_migrator TO migrator' -c 'GRANT CREATE ON SCHEMA public TO migrator' \
    -c 'ALTER TABLE pgbench_accounts OWNER TO migrator' -c 'ALTER TABLE pgbench_branches OWNER TO migrator' \
    -c 'ALTER TABLE pgbench_tellers OWNER TO migrator' -c 'ALTER TABLE pgbench_history OWNER TO migrator' \
    -c 'GRANT SELECT, UPDATE ON pgbench_accounts, pgbench_branches, pgbench_tellers TO app' \
    -c 'GRANT INSERT ON pgbench_history TO app' \
    -c 'VACUUM ANALYZE'
say "initialised in $(zdm_elapsed "$t0" "$(zdm_now)") s: pgbench_accounts $(psql_db tpl -c "SELECT pg_size_pretty(pg_total_relation_size('pgbench_accounts'))"), $(psql_db tpl -c 'SELECT count(*) FROM pgbench_accounts') rows"

# Which of the operations this zdm has: each expanded alone on a scratch
# copy of the tables' shape and rolled back (a rolled-back expand starts no
# worker). Refused as not supported: left out of plain and zdm alike.
SKIPPED=()
if has_variant zdm; then
    psql_db postgres -c 'CREATE DATABASE probe OWNER migrator'
    psql_db probe -c 'CREATE EXTENSION zdm'
    psql_as migrator probe -c 'CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88))' \
        -c 'CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84))'
    kept=()
    for o in "${OPS[@]}"; do
        if out=$(psql_as migrator probe -c 'BEGIN' -c "SELECT zdm.expand('probe', '$(migration_json "$o")')" -c 'ROLLBACK' 2>&1); then
            kept+=("$o")
        elif grep -qiE 'not supported|feature_not_supported|0A000' <<<"$out"; then
            SKIPPED+=("$o")
            say "zdm refuses the $o operation ($(head -n 1 <<<"$out")): left out of plain and zdm"
        else
            die "a trial expand of the $o operation failed: $out"
        fi
    done
    psql_db postgres -c 'DROP DATABASE probe'
    OPS=("${kept[@]}")
    [ ${#OPS[@]} -gt 0 ] || die "zdm has none of the operations (${SKIPPED[*]}); run with ONLINE_VARIANTS=\"none plain\""
fi
MIGRATION=$(migration_json "${OPS[@]}")

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
say "PostgreSQL $(psql_db tpl -c 'SHOW server_version'), $(nproc) cores (${cpu:-unknown cpu}), $(awk '/^MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM; load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "pgbench -c $CLIENTS -j $THREADS -T $DURATION, scale $SCALE; DDL at ${DDL_AT} s; $ROUNDS rounds of: ${VARIANTS[*]}; operations: ${OPS[*]}; shared_preload_libraries '$(psql_db tpl -c 'SHOW shared_preload_libraries')'${ONLINE_CONF:+; postgresql.conf also: $(tr '\n' ';' <<<"$ONLINE_CONF")}"

now() { date +%s.%N; }

# The plain statements, one after the other; marks.tsv gets "event epoch".
plain_ddl() {
    local db=$1 marks=$2 o
    for o in "${OPS[@]}"; do
        printf '%s_start\t%s\n' "$o" "$(now)" >>"$marks"
        psql_as migrator "$db" -c "$(plain_sql "$o")"
        printf '%s_end\t%s\n' "$o" "$(now)" >>"$marks"
    done
}

# zdm: expand, wait (on watch.tsv, which a session of its own writes
# twice a second in every variant) until the migration is ready to
# contract, then contract.
zdm_ddl() {
    local db=$1 marks=$2 watch=$3 phase last
    printf 'expand_start\t%s\n' "$(now)" >>"$marks"
    [ "$(psql_as migrator "$db" -c "SELECT zdm.expand('online', '$MIGRATION')")" = t ] ||
        { echo "expand did not apply"; return 1; }
    printf 'expand_end\t%s\n' "$(now)" >>"$marks"
    while :; do
        last=$(tail -n 1 "$watch" 2>/dev/null)
        phase=
        [ "$(awk -F'\t' '{ print NF }' <<<"$last")" != 2 ] || phase=${last##*$'\t'}
        case $phase in
            ''|-|expanded|backfilling)
                kill -0 "$watch_pid" 2>/dev/null || { echo "the watcher (watch.tsv) has stopped"; return 1; }
                sleep 0.2 ;;
            *)
                # A line can be read half written: confirm in the database.
                phase=$(psql_db "$db" -c "SELECT phase FROM zdm.migrations WHERE name = 'online'")
                case $phase in
                    backfilled) break ;;
                    expanded|backfilling) sleep 0.2 ;;
                    *) echo "migration is $phase: $(psql_db "$db" -c "SELECT last_error FROM zdm.migrations WHERE name = 'online'")"; return 1 ;;
                esac ;;
        esac
    done
    printf 'ready\t%s\n' "$(psql_db "$db" -c "SELECT extract(epoch FROM backfilled_at) FROM zdm.migrations WHERE name = 'online'")" >>"$marks"
    printf 'contract_start\t%s\n' "$(now)" >>"$marks"
    [ "$(psql_as migrator "$db" -c "SELECT zdm.contract('online')")" = t ] ||
        { echo "contract did not apply"; return 1; }
    printf 'contract_end\t%s\n' "$(now)" >>"$marks"
}

# The end state both DDL variants must reach: "index unique fk invalid"
# (1 when present and valid; invalid = INVALID indexes on the table).
end_state() {
    psql_db "$1" -F ' ' -c "SELECT
        (SELECT count(*) FROM pg_index i WHERE i.indrelid = 'pgbench_accounts'::regclass AND i.indisvalid
            AND i.indexrelid = to_regclass('pgbench_accounts_abalance_idx')),
        (SELECT count(*) FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid
            WHERE c.conrelid = 'pgbench_accounts'::regclass AND c.conname = 'pgbench_accounts_aid_bid_key'
              AND c.contype = 'u' AND c.convalidated AND i.indisvalid),
        (SELECT count(*) FROM pg_constraint c WHERE c.conrelid = 'pgbench_accounts'::regclass
            AND c.conname = 'pgbench_accounts_bid_fkey' AND c.contype = 'f' AND c.convalidated
            AND c.confrelid = 'pgbench_branches'::regclass),
        (SELECT count(*) FROM pg_index i WHERE i.indrelid = 'pgbench_accounts'::regclass AND NOT i.indisvalid)"
}

mark_at() {   # run dir, event: seconds since the run's start, or empty
    [ -f "$1/marks.tsv" ] || return 0
    awk -F'\t' -v e="$2" -v t0="$(cat "$1/t0")" '$1 == e { printf "%.2f\n", $2 - t0 }' "$1/marks.tsv"
}

# The DDL's window in run dir $1, "from to" in seconds since its start
# (plain: the first statement's start to the last one's end; zdm: expand
# to the end of contract), cut at the end of the run unless $2 = raw;
# empty for none.
ddl_window() {
    local run=$1 raw=${2:-} v from to
    v=$(basename "$run"); v=${v#*-}
    case $v in
        plain) from=$(mark_at "$run" "${OPS[0]}_start"); to=$(mark_at "$run" "${OPS[${#OPS[@]} - 1]}_end") ;;
        zdm) from=$(mark_at "$run" expand_start); to=$(mark_at "$run" contract_end) ;;
        *) return 0 ;;
    esac
    [ -n "$from" ] && [ -n "$to" ] || return 0
    awk -v a="$from" -v b="$to" -v d="$DURATION" -v raw="$raw" 'BEGIN { printf "%s %s\n", a, (b > d && raw == "" ? d : b) }'
}

# ---------- the runs ----------
printf 'round\tvariant\txacts\ttps\tp50\tp99\tp999\tmax\tmean\tover1s\tfailed\taborted\tstalled_s\tfrom\tto\tw_xacts\tw_tps\tw_p50\tw_p99\tw_p999\tw_max\tw_mean\tw_over1s\tw_failed\tddl_s\tready_s\tcontract_s\n' >"$DIR/results.tsv"
t_rounds=$(zdm_now)
n=${#VARIANTS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    for ((i = 0; i < n; i++)); do
        v=${VARIANTS[(i + r - 1) % n]}
        RUN=$DIR/r$r-$v
        mkdir -p "$RUN"
        [ "$(id -u)" -ne 0 ] || chown postgres: "$RUN"
        db=run_$v
        psql_db postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db TEMPLATE tpl STRATEGY file_copy"
        psql_db "$db" -c "SELECT sum(pg_prewarm(c)) FROM unnest(ARRAY['pgbench_accounts', 'pgbench_accounts_pkey', 'pgbench_branches', 'pgbench_branches_pkey', 'pgbench_tellers', 'pgbench_tellers_pkey', 'pgbench_history']::regclass[]) c" >/dev/null
        if [ "$v" = prebuilt ]; then
            plain_ddl "$db" "$RUN/prebuilt.tsv" >"$RUN/ddl.out" 2>&1 || { cat "$RUN/ddl.out"; die "prebuilt: the statements failed"; }
            psql_db "$db" -c 'VACUUM ANALYZE pgbench_accounts'
        fi
        psql_db "$db" -c CHECKPOINT
        : >"$RUN/marks.tsv"
        [ "$(id -u)" -ne 0 ] || chown postgres: "$RUN/marks.tsv"
        now >"$RUN/t0"
        ( cd "$RUN" && as_pg "$PGBIN/pgbench" -n -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -P 1 \
            --random-seed=$((1000 + r)) -l --log-prefix="$RUN/pgbench_log" \
            -h "$SOCK" -p "$PORT" -U app "$db" ) >"$RUN/pgbench.out" 2>&1 &
        pgbench_pid=$!
        # The migration's phase twice a second, in every run alike (one
        # session; a new connection per look would cost the clients).
        printf '%s \\watch 0.5\n' "SELECT round((extract(epoch FROM clock_timestamp()) - $(cat "$RUN/t0"))::numeric, 2),
            coalesce((SELECT phase FROM zdm.migrations WHERE name = 'online'), '-')" |
            PGAPPNAME=zdm-bench-watch as_pg "$PGBIN/psql" -X -q -At -F $'\t' -h "$SOCK" -p "$PORT" -d "$db" \
            >"$RUN/watch.tsv" 2>"$RUN/watch.err" &
        watch_pid=$!
        # ONLINE_SAMPLE=1: what pgbench's sessions are doing, 5 times a
        # second (samples.txt), in every run alike: t, on CPU (active, no
        # wait event), waiting for a lock, for WAL (the WALWrite and
        # WALInsert LWLocks, WAL write and sync I/O), for other I/O, for
        # anything else; and the other active backends (the zdm worker, the
        # parallel workers of an index build, autovacuum).
        if [ -n "${ONLINE_SAMPLE:-}" ]; then
            printf '%s \\watch 0.2\n' "SELECT round((extract(epoch FROM clock_timestamp()) - $(cat "$RUN/t0"))::numeric, 2),
                count(*) FILTER (WHERE application_name = 'pgbench' AND state = 'active' AND wait_event IS NULL),
                count(*) FILTER (WHERE application_name = 'pgbench' AND wait_event_type = 'Lock'),
                count(*) FILTER (WHERE application_name = 'pgbench' AND (wait_event IN ('WALWrite', 'WALInsert', 'WALBufMapping', 'WALSync', 'WALInitSync', 'WALInitWrite'))),
                count(*) FILTER (WHERE application_name = 'pgbench' AND wait_event_type = 'IO' AND wait_event NOT LIKE 'WAL%'),
                count(*) FILTER (WHERE application_name = 'pgbench' AND state = 'active' AND wait_event_type NOT IN ('Lock', 'IO')
                                   AND wait_event NOT IN ('WALWrite', 'WALInsert', 'WALBufMapping')),
                count(*) FILTER (WHERE application_name IS DISTINCT FROM 'pgbench' AND backend_type <> 'client backend'
                                   AND state = 'active' AND pid <> pg_backend_pid())
              FROM pg_stat_activity" |
                PGAPPNAME=zdm-bench-watch as_pg "$PGBIN/psql" -X -q -At -F ' ' -h "$SOCK" -p "$PORT" -d "$db" \
                >"$RUN/samples.txt" 2>"$RUN/sampler.err" &
            sample_pid=$!
        fi
        if [ "$v" = plain ] || [ "$v" = zdm ]; then
            sleep "$DDL_AT"
            if [ "$v" = plain ]; then
                plain_ddl "$db" "$RUN/marks.tsv" >"$RUN/ddl.out" 2>&1 &
            else
                zdm_ddl "$db" "$RUN/marks.tsv" "$RUN/watch.tsv" >"$RUN/ddl.out" 2>&1 &
            fi
            ddl_pid=$!
        fi
        pgbench_rc=0
        wait "$pgbench_pid" || pgbench_rc=$?
        pgbench_pid=
        echo "$pgbench_rc" >"$RUN/pgbench.rc"
        late=
        if [ -n "$ddl_pid" ]; then
            ! kill -0 "$ddl_pid" 2>/dev/null || late=" (the DDL outlasted pgbench's $DURATION s; waited for it)"
            ddl_rc=0
            wait "$ddl_pid" || ddl_rc=$?
            ddl_pid=
            [ "$ddl_rc" -eq 0 ] || { cat "$RUN/ddl.out"; die "the $v DDL failed in round $r"; }
        fi
        psql_db "$db" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'zdm-bench-watch'" >/dev/null
        wait "$watch_pid" 2>/dev/null || true
        watch_pid=
        [ -z "$sample_pid" ] || wait "$sample_pid" 2>/dev/null || true
        sample_pid=
        if [ "$v" != none ]; then
            read -r has_index has_unique has_fk invalid <<<"$(end_state "$db")"
            for o in "${OPS[@]}"; do
                case $o in index) ok=$has_index ;; unique) ok=$has_unique ;; fk) ok=$has_fk ;; esac
                [ "$ok" = 1 ] || die "round $r, $v: the $o is not there (or not valid) at the end"
            done
            [ "$invalid" = 0 ] || die "round $r, $v: $invalid INVALID indexes on pgbench_accounts at the end"
        fi
        if [ "$v" = zdm ]; then
            # What zdm ran, when and for how long (its journal).
            psql_db "$db" -F $'\t' -c "SELECT round((extract(epoch FROM logged_at) - $(cat "$RUN/t0"))::numeric, 2),
                    event, coalesce(phase, '-'), round(coalesce(duration_ms, 0)::numeric, 1),
                    round(coalesce(lock_wait_ms, 0)::numeric, 1), coalesce(attempts, 0),
                    coalesce(regexp_replace(statement, '\s+', ' ', 'g'), '-')
                FROM zdm.migration_log WHERE migration = 'online' ORDER BY id" >"$RUN/steps.tsv"
        fi
        [ -n "${ONLINE_KEEP:-}" ] || psql_db postgres -c "DROP DATABASE $db"

        t0=$(cat "$RUN/t0")
        bash "$LATENCY" per-second "$t0" "$DURATION" "$RUN"/pgbench_log.* >"$RUN/per_second.tsv"
        read -r xacts tps p50 p99 p999 mx mean over failed <<<"$(bash "$LATENCY" summary "$t0" 0 "$DURATION" "$RUN"/pgbench_log.*)"
        aborted=$(grep -c 'aborted in command' "$RUN/pgbench.out" || true)
        stalled=$(awk -v d="$DURATION" '$1 < d && $2 == 0' "$RUN/per_second.tsv" | wc -l)
        w="- - - - - - - - - - -"
        ddl_s=- ready_s=- contract_s=-
        win=$(ddl_window "$RUN" || true)
        if [ -n "$win" ]; then
            read -r from to <<<"$win"
            w="$from $to $(bash "$LATENCY" summary "$t0" "$from" "$to" "$RUN"/pgbench_log.*)"
            ddl_s=$(ddl_window "$RUN" raw | awk '{ printf "%.2f", $2 - $1 }')
            if [ "$v" = zdm ]; then
                ready_s=$(awk -v a="$from" -v b="$(mark_at "$RUN" ready)" 'BEGIN { printf "%.2f", b - a }')
                contract_s=$(awk -v a="$(mark_at "$RUN" contract_start)" -v b="$(mark_at "$RUN" contract_end)" 'BEGIN { printf "%.2f", b - a }')
            fi
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$v" \
            "$xacts" "$tps" "$p50" "$p99" "$p999" "$mx" "$mean" "$over" "$failed" "$aborted" "$stalled" \
            "$(tr ' ' '\t' <<<"$w" | cut -f1-11)" "$ddl_s" "$ready_s" "$contract_s" >>"$DIR/results.tsv"
        line="round $r $(printf '%-5s' "$v"): $tps tps, p50 $p50 ms, p99 $p99 ms, max $mx ms, $over over 1 s, $failed failed"
        [ "$aborted" -eq 0 ] || line+=", $aborted clients aborted"
        [ "$pgbench_rc" -eq 0 ] || line+=", pgbench exit status $pgbench_rc"
        [ "$stalled" -eq 0 ] || line+=", $stalled s with no transaction"
        case $v in
            plain) line+="; statements $(for o in "${OPS[@]}"; do
                        awk -v a="$(mark_at "$RUN" "${o}_start")" -v b="$(mark_at "$RUN" "${o}_end")" -v o="$o" 'BEGIN { printf "%s %.1f s ", o, b - a }'
                    done)(total $ddl_s s)" ;;
            zdm) line+="; expand to ready $ready_s s, contract $contract_s s" ;;
        esac
        say "$line$late"
    done
done
say "rounds took $(zdm_elapsed "$t_rounds" "$(zdm_now)") s (load average after: $(cut -d' ' -f1-3 /proc/loadavg))"
trap - EXIT
cleanup
server_started=

# ---------- the report ----------
col() {   # results.tsv column number of a name
    head -n 1 "$DIR/results.tsv" | tr '\t' '\n' | awk -v c="$1" '$0 == c { print NR; exit }'
}
median() { sort -g | awk '{ x[NR] = $1 } END { if (NR == 0) print "-"; else printf "%.2f\n", (NR % 2) ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2 }'; }
values() {   # variant, column name: one value per round
    awk -F'\t' -v v="$1" -v c="$(col "$2")" 'NR > 1 && $2 == v && $c != "-" { print $c }' "$DIR/results.tsv"
}
# Per round: variant's column a over none's column b (the same round).
ratios() {
    awk -F'\t' -v v="$1" -v a="$(col "$2")" -v b="$(col "$3")" '
        NR > 1 { x[$1, $2] = $0; r[$1] = 1 }
        END { for (k in r) {
                  if (!((k, v) in x) || !((k, "none") in x)) continue
                  split(x[k, v], p, "\t"); split(x[k, "none"], q, "\t")
                  if (p[a] != "-" && q[b] != "-" && q[b] > 0) print p[a] / q[b] } }' "$DIR/results.tsv"
}
# none's figures over the seconds of variant $2's DDL window in round $1.
none_in_window() {
    local r=$1 v=$2 win
    win=$(ddl_window "$DIR/r$r-$v" || true)
    [ -n "$win" ] || return 0
    bash "$LATENCY" summary "$(cat "$DIR/r$r-none/t0")" $win "$DIR/r$r-none"/pgbench_log.*
}
# Per round: the variant's p99 / max in its window over none's in the same seconds.
window_ratios() {
    local v=$1 field=$2 r mine theirs
    for ((r = 1; r <= ROUNDS; r++)); do
        [ -d "$DIR/r$r-$v" ] && [ -d "$DIR/r$r-none" ] || continue
        mine=$(awk -F'\t' -v r="$r" -v v="$v" -v c="$(col "w_$field")" 'NR > 1 && $1 == r && $2 == v { print $c }' "$DIR/results.tsv")
        case $field in p99) f=4 ;; max) f=6 ;; tps) f=2 ;; esac
        theirs=$(none_in_window "$r" "$v" | awk -v f="$f" '{ print $f }')
        [ -n "$mine" ] && [ "$mine" != - ] && [ -n "$theirs" ] && [ "$theirs" != - ] || continue
        awk -v a="$mine" -v b="$theirs" 'BEGIN { if (b > 0) print a / b }'
    done
}
sum() { awk '{ s += $1 } END { print s + 0 }'; }
maxof() { awk 'NR == 1 || $1 > m { m = $1 } END { print (NR ? m : "-") }'; }

report() {
    local v
    echo
    echo "Online DDL under pgbench TPC-B-like, -c $CLIENTS -j $THREADS, scale $SCALE, $DURATION s runs, DDL at $DDL_AT s; $ROUNDS rounds"
    echo "operations: ${OPS[*]}${SKIPPED[*]:+ (not in this zdm, left out of plain and zdm: ${SKIPPED[*]})}"
    echo "(latency in ms, nearest rank; medians over the rounds; paired = median of the per-round ratios to none)"
    echo
    echo "Whole run:"
    printf '%-8s %8s %7s %8s %8s %7s %9s %7s %9s %9s %8s %7s %8s\n' variant tps paired p50 p99 paired "max" paired "over 1 s" "failed" aborted stalled "max max"
    for v in "${VARIANTS[@]}"; do
        printf '%-8s %8s %6sx %8s %8s %6sx %9s %6sx %9s %9s %8s %7s %8s\n' "$v" \
            "$(values "$v" tps | median)" "$(ratios "$v" tps tps | median | awk '{ printf "%.2f", $1 }')" \
            "$(values "$v" p50 | median)" "$(values "$v" p99 | median)" "$(ratios "$v" p99 p99 | median | awk '{ printf "%.2f", $1 }')" \
            "$(values "$v" max | median)" "$(ratios "$v" max max | median | awk '{ printf "%.1f", $1 }')" \
            "$(values "$v" over1s | sum)" "$(values "$v" failed | sum)" "$(values "$v" aborted | sum)" \
            "$(values "$v" stalled_s | sum)" "$(values "$v" max | maxof)"
    done
    echo "(over 1 s, failed, aborted clients and stalled seconds (no transaction completed): summed over the rounds; max max: the longest transaction of any round)"
    echo
    echo "In the DDL's window (plain: first statement to last; zdm: expand to the end of contract), against none over the same seconds:"
    printf '%-6s %9s %8s %7s %8s %7s %9s %7s %9s %7s\n' variant "window s" tps paired p99 paired "max" paired "over 1 s" failed
    for v in "${VARIANTS[@]}"; do
        [ "$v" = plain ] || [ "$v" = zdm ] || continue
        printf '%-6s %9s %8s %6sx %8s %6sx %9s %6sx %9s %7s\n' "$v" \
            "$(values "$v" ddl_s | median)" "$(values "$v" w_tps | median)" "$(window_ratios "$v" tps | median | awk '{ printf "%.2f", $1 }')" \
            "$(values "$v" w_p99 | median)" "$(window_ratios "$v" p99 | median | awk '{ printf "%.2f", $1 }')" \
            "$(values "$v" w_max | median)" "$(window_ratios "$v" max | median | awk '{ printf "%.1f", $1 }')" \
            "$(values "$v" w_over1s | sum)" "$(values "$v" w_failed | sum)"
    done
    if [ -n "${ONLINE_SAMPLE:-}" ]; then
        echo
        echo "What the $CLIENTS pgbench sessions were doing in the DDL's window (mean sessions over the samples, all rounds;"
        echo "none: over the seconds of the same round's zdm window, or plain's; other active: the zdm worker, parallel workers, autovacuum):"
        printf '%-8s %7s %7s %7s %7s %7s %13s\n' variant CPU lock WAL "I/O" other "other active"
        for v in "${VARIANTS[@]}"; do
            for ((r = 1; r <= ROUNDS; r++)); do
                [ -s "$DIR/r$r-$v/samples.txt" ] || continue
                win=$(ddl_window "$DIR/r$r-$v" || true)
                [ -n "$win" ] || [ ! -d "$DIR/r$r-zdm" ] || win=$(ddl_window "$DIR/r$r-zdm")
                [ -n "$win" ] || [ ! -d "$DIR/r$r-plain" ] || win=$(ddl_window "$DIR/r$r-plain")
                [ -n "$win" ] || continue
                awk -v w="$win" 'BEGIN { split(w, x, " ") } NF == 7 && $1 >= x[1] && $1 < x[2]' "$DIR/r$r-$v/samples.txt"
            done | awk -v v="$v" '{ n++; for (i = 2; i <= 7; i++) c[i] += $i }
                END { if (n) printf "%-8s %7.2f %7.2f %7.2f %7.2f %7.2f %13.2f\n", v, c[2] / n, c[3] / n, c[4] / n, c[5] / n, c[6] / n, c[7] / n }'
        done
    fi
    if has_variant plain; then
        echo
        echo "The plain statements' own time (median over the rounds, under the load):"
        local o
        for o in "${OPS[@]}"; do
            printf '  %-7s %s s\n' "$o" "$(for ((r = 1; r <= ROUNDS; r++)); do
                [ -d "$DIR/r$r-plain" ] || continue
                awk -v a="$(mark_at "$DIR/r$r-plain" "${o}_start")" -v b="$(mark_at "$DIR/r$r-plain" "${o}_end")" 'BEGIN { printf "%.2f\n", b - a }'
            done | median)"
        done
        printf '  %-7s %s s\n' total "$(values plain ddl_s | median)"
    fi
    if has_variant zdm; then
        echo
        echo "zdm (median over the rounds): expand to ready-to-contract (phase backfilled) $(values zdm ready_s | median) s, contract $(values zdm contract_s | median) s, expand to the end of contract $(values zdm ddl_s | median) s"
        if has_variant plain; then
            echo "  ready / the plain statements' time, per round: $(for ((r = 1; r <= ROUNDS; r++)); do
                awk -F'\t' -v r="$r" 'NR > 1 && $1 == r { x[$2] = $0 } END {
                    if (!("zdm" in x) || !("plain" in x)) exit
                    split(x["zdm"], z, "\t"); split(x["plain"], p, "\t")
                    printf "%.2fx ", z[26] / p[25] }' "$DIR/results.tsv"
            done)"
        fi
        echo "  the statements zdm ran in the last round (s since pgbench started, ms, lock wait ms):"
        awk -F'\t' '{ printf "    %7s  %-10s %-11s %9s %9s  %s\n", $1, $2, $3, $4, $5, substr($7, 1, 110) }' \
            "$DIR/r$ROUNDS-zdm/steps.tsv" 2>/dev/null || true
        echo
        local f over fails ab p99r p99w
        fails=$(( $(values zdm failed | sum) + $(values zdm aborted | sum) ))
        over=$(values zdm over1s | sum)
        p99r=$(ratios zdm p99 p99 | median)
        p99w=$(window_ratios zdm p99 | median)
        awk -v f="$fails" -v o="$over" -v a="$p99r" -v w="$p99w" -v m="$(values zdm max | maxof)" 'BEGIN {
            printf "Goals under zdm: 0 failed transactions: %d (%s); p99 <= 1.5x none: %.2fx whole run, %.2fx in the window (%s); no transaction over 1 s: %d, the longest %s ms (%s)\n",
                f, (f == 0 ? "met" : "MISSED"), a, w, ((a <= 1.5 && w <= 1.5) ? "met" : "MISSED"), o, m, (o == 0 ? "met" : "MISSED") }'
    fi
}
report | tee "$DIR/report.txt"

# ---------- the plot ----------
command -v gnuplot >/dev/null || { say "no gnuplot: no plot"; exit 0; }
mkdir -p "$PLOTS"
# The round whose zdm run had the median p99 (or the last round).
pr=$(awk -F'\t' 'NR > 1 && $2 == "zdm" { print $6, $1 }' "$DIR/results.tsv" | sort -g | awk '{ r[NR] = $2 } END { print (NR ? r[int((NR + 1) / 2)] : "") }')
[ -n "$pr" ] || pr=$ROUNDS
objs=
k=1
for v in plain zdm; do
    [ -d "$DIR/r$pr-$v" ] || continue
    win=$(ddl_window "$DIR/r$pr-$v" || true)
    [ -n "$win" ] || continue
    read -r a b <<<"$win"
    c=$([ "$v" = plain ] && echo '#f5d0d0' || echo '#dde8f5')
    objs+="set object $k rect from $a, graph 0 to $b, graph 1 fc rgb '$c' fs transparent solid 0.5 noborder behind"$'\n'
    k=$((k + 1))
done
# zdm's moment of ready-to-contract, a dashed line.
ready=$( [ -d "$DIR/r$pr-zdm" ] && mark_at "$DIR/r$pr-zdm" ready || true)
[ -z "$ready" ] || objs+="set arrow 1 from $ready, graph 0 to $ready, graph 1 nohead dt 2 lc rgb '#1f5fa8'"$'\n'"set label 1 'zdm ready' at $ready, graph 0.97 rotate by 90 right offset -0.6,0 font ',8' tc rgb '#1f5fa8'"$'\n'

plot_tps=
plot_p99=
plot_max=
for v in "${VARIANTS[@]}"; do
    f=$DIR/r$pr-$v/per_second.tsv
    [ -f "$f" ] || continue
    case $v in none) c='#2ca02c' ;; plain) c='#d62728' ;; zdm) c='#1f5fa8' ;; *) c='#9467bd' ;; esac
    plot_tps+="${plot_tps:+, }'$f' using (\$1 + 0.5):2 with steps lw 1.5 lc rgb '$c' title '$v'"
    plot_p99+="${plot_p99:+, }'$f' using (\$1 + 0.5):4 with steps lw 1.5 lc rgb '$c' title '$v'"
    plot_max+="${plot_max:+, }'$f' using (\$1 + 0.5):5 with points pt 7 ps 0.5 lc rgb '$c' title '$v'"
done
tps_max=$(cat "$DIR"/r"$pr"-*/per_second.tsv | awk '$2 > m { m = $2 } END { print int(m * 1.15 / 100 + 1) * 100 }')
lat_max=$(cat "$DIR"/r"$pr"-*/per_second.tsv | awk '$5 != "-" && $5 > m { m = $5 } END { print m * 2 }')
opsdesc=$(for o in "${OPS[@]}"; do case $o in index) printf 'an index; ' ;; unique) printf 'a unique constraint; ' ;; fk) printf 'a foreign key; ' ;; esac; done)
gnuplot <<GP || say "WARNING: gnuplot failed"
set terminal pngcairo size 1100,1000 font 'DejaVu Sans,10'
set output '$PLOTS/online-ddl.png'
set datafile missing '-'
set multiplot layout 3,1 title "pgbench TPC-B-like, $CLIENTS clients, scale $SCALE, round $pr of $ROUNDS: ${opsdesc%; } on pgbench\\\\_accounts at ${DDL_AT} s\nplain statements (red) and zdm (blue), windows shaded to the end of the last statement / of contract; none: no DDL" font ',11'
set xrange [0:$DURATION]
set grid
set lmargin 10
set rmargin 4
$objs
set key top right opaque
set ylabel 'transactions per second'
set yrange [0:$tps_max]
plot $plot_tps
set ylabel 'p99 latency per second, ms (log)'
set logscale y
set yrange [0.5:$lat_max]
plot $plot_p99
set ylabel 'slowest transaction per second, ms (log)'
set xlabel 'seconds since pgbench started (each transaction counted in the second it ended)'
plot $plot_max
unset multiplot
GP
say "plot: $PLOTS/online-ddl.png"
