#!/usr/bin/env bash
# test/deps.sh: install the Debian packages that building zdm, its tests,
# the demo and the benchmarks need.  A fast no-op when all are present.
# test/run.sh and test/demo/run.sh call it first, so on a fresh Debian 12
# (no make yet) they are the whole set-up; `make deps` runs it too.
#
# apt's own output goes to ./tmp/deps-apt.log (shown only if apt fails).
#
# postgresql-contrib-15 is not a package of its own on Debian 12: the
# postgresql-15 package provides it.  Installing postgresql-15 also makes
# Debian create (and, under systemd, start) a system cluster "15 main" on
# port 5432; zdm's demo and tests never use it.
set -euo pipefail

packages=(
    make gcc                    # the build (PGXS)
    postgresql-15               # server binaries for the temporary instances
    postgresql-client-15        # psql, pg_regress, pg_isolation_regress, TAP modules
    postgresql-server-dev-15    # PGXS and the server headers
    perl libipc-run-perl        # prove, PostgreSQL::Test::Cluster (TAP)
    gnuplot-nox                 # benchmark plots
    prometheus                  # promtool checks zdm.metrics() and the alerting rules
    prometheus-postgres-exporter    # t/016_monitoring scrapes zdm's series with it
    pgbouncer                   # t/015_poolers: zdm behind a pooler in transaction mode
    postgresql-15-cron          # pg_cron: the scheduled-backfill recipe (t/024)
    sqitch libdbd-pg-perl       # the sqitch recipe (t/020)
    alembic python3-psycopg2    # the Alembic recipe (t/023)
)                               # (the tests run their own instances, not the packages' services)
# node-pg-migrate and dbmate come from npm (test/runners/package.json);
# node and npm from Debian unless the machine has them already (a node
# from elsewhere keeps its own npm).
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

# Packages whose service Debian starts on installation; the tests run their
# own instances (the exporter on 127.0.0.1 only) and need the binaries alone.
services=(prometheus prometheus-postgres-exporter)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null ||
            { echo "deps: ${missing[*]} missing; run this as root (there is no sudo)" >&2; exit 1; }
        sudo=(sudo)
    fi

    log_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tmp
    mkdir -p "$log_dir"
    log=$log_dir/deps-apt.log
    : >"$log"
    run_apt() {
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q \
            -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 "$@" </dev/null >>"$log" 2>&1 || {
            echo "deps: apt-get $1 FAILED; the end of $log:" >&2
            tail -n 30 "$log" >&2
            exit 1
        }
    }
    t0=$(date +%s)
    echo "deps: installing ${missing[*]} (apt's output: $log)"
    run_apt update
    run_apt install -y --no-install-recommends "${missing[@]}"
    echo "deps: installed in $(( $(date +%s) - t0 )) s"

    # Stop and disable the services of the packages installed just now (not of
    # ones installed before): a Prometheus server and an exporter listening on
    # every interface are no part of zdm's tests.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        for p in "${missing[@]}"; do
            for s in "${services[@]}"; do
                [ "$p" = "$s" ] && "${sudo[@]}" systemctl disable --now "$s.service" || true
            done
        done
    fi
fi

# The npm packages of the runner tests, installed in test/runners exactly
# as package-lock.json says; again only when the lock file changed.
runners=$(cd "$(dirname "${BASH_SOURCE[0]}")/runners" && pwd)
# A failure here (the npm registry out of reach, say) is reported and
# leaves the rest alone: only the tests of those runners and squawk need them, and
# they fail (or, outside CI, skip) on their own.
if ! cmp -s "$runners/package-lock.json" "$runners/node_modules/.zdm-installed-lock"; then
    echo "deps: npm ci in $runners"
    # node trusts the system's certificate authorities too (a NodeSource
    # node has only its own bundle; a TLS-inspecting proxy's CA is in the
    # system's).
    ca=/etc/ssl/certs/ca-certificates.crt
    if (cd "$runners" && NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-$([ -r $ca ] && echo $ca)} \
            npm ci --no-audit --no-fund --loglevel=error); then
        cp "$runners/package-lock.json" "$runners/node_modules/.zdm-installed-lock"
    else
        echo "deps: npm ci FAILED in $runners: the node-pg-migrate, dbmate and squawk tests cannot run" >&2
    fi
fi
