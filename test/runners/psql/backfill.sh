#!/bin/sh
# Backfill a migration from the shell: one committed batch per psql call
# (each call is its own transaction) until zdm.backfill() returns 0.
# Stops at the first error (set -e).  Connection: libpq's PG* variables.
#
#   sh backfill.sh 001_orders_status_enum [batch]
set -eu
name=$1
batch=${2:-5000}
while :; do
    rows=$(echo "SELECT zdm.backfill(:'name', :batch)" |
        psql -X -At -q -v ON_ERROR_STOP=1 -v name="$name" -v batch="$batch")
    [ "$rows" = 0 ] && break
done
