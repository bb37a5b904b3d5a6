#!/usr/bin/env bash
# test/deps.sh: install the Debian packages that building zdm, its tests,
# the demo and the benchmarks need.  A fast no-op when all are present.
#
# postgresql-contrib-15 is not a package of its own on Debian 12: the
# postgresql-15 package provides it.
set -euo pipefail

packages=(
    make gcc                    # the build (PGXS)
    postgresql-15               # server binaries for the temporary instances
    postgresql-client-15        # psql, pg_regress, pg_isolation_regress, TAP modules
    postgresql-server-dev-15    # PGXS and the server headers
    libipc-run-perl             # PostgreSQL::Test::Cluster (TAP)
    gnuplot-nox                 # benchmark plots
    prometheus                  # promtool checks zdm.metrics()
    postgresql-15-cron          # pg_cron: the scheduled-backfill recipe (t/020)
    sqitch libdbd-pg-perl       # the sqitch recipe (t/016)
    alembic python3-psycopg2    # the Alembic recipe (t/019)
)
# node-pg-migrate and dbmate come from npm (test/runners/package.json);
# node and npm from Debian unless the machine has them already (a node
# from elsewhere keeps its own npm).
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The npm packages of the runner tests, installed in test/runners exactly
# as package-lock.json says; again only when the lock file changed.
runners=$(cd "$(dirname "${BASH_SOURCE[0]}")/runners" && pwd)
if ! cmp -s "$runners/package-lock.json" "$runners/node_modules/.zdm-installed-lock"; then
    echo "deps: npm ci in $runners"
    (cd "$runners" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$runners/package-lock.json" "$runners/node_modules/.zdm-installed-lock"
fi
