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
    prometheus                  # promtool checks zdm.metrics() and the alerting rules
    prometheus-postgres-exporter    # test/t/015_monitoring.pl scrapes zdm's series with it
)

# Packages whose service Debian starts on installation; the tests run their
# own instances (the exporter on 127.0.0.1 only) and need the binaries alone.
services=(prometheus prometheus-postgres-exporter)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"

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
