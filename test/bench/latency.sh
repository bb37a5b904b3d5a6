#!/usr/bin/env bash
# test/bench/latency.sh: what the clients saw, from pgbench's per-transaction
# logs (pgbench -l, one line per transaction: client, transaction number,
# latency in microseconds or "failed" / "skipped", script, and the epoch
# second and microsecond at which the transaction ended).
#
#   latency.sh summary T0 FROM TO LOG...
#       one line over the transactions that ended in [FROM, TO) seconds
#       since T0 (an epoch, with fractions; FROM and TO may be fractions):
#       "xacts tps p50 p99 p99.9 max mean over1s failed" (latencies in ms,
#       nearest rank over every transaction that completed in the span;
#       over1s: transactions that took more than 1 s; failed: lines whose
#       latency is "failed"; "-" for the latencies when none completed)
#   latency.sh per-second T0 DURATION LOG...
#       one line per second from 0 to DURATION - 1 (and any later second
#       a transaction ended in): "second xacts p50 p99 max over1s failed"
#       ("-" for the latencies of a second with no transaction: the plots
#       leave it blank)
#
# online_ddl.sh uses it; it reads pgbench 15's raw logs (not
# --aggregate-interval ones, which keep no percentiles).
set -euo pipefail

usage() { echo "usage: $0 summary T0 FROM TO LOG... | per-second T0 DURATION LOG..." >&2; exit 2; }
[ $# -ge 1 ] || usage
mode=$1; shift

# "second latency_ms" or "second F" for every logged transaction, sorted by
# latency within the second.
events() {
    local t0=$1; shift
    cat "$@" |
        awk -v t0="$t0" 'NF >= 6 {
            end = $5 + $6 / 1e6 - t0
            if ($3 ~ /^[0-9]+$/) printf "%.6f %.3f\n", end, $3 / 1000
            else if ($3 == "failed") printf "%.6f F\n", end }'
}

case $mode in
    summary)
        [ $# -ge 4 ] || usage
        t0=$1 from=$2 to=$3; shift 3
        events "$t0" "$@" |
            awk -v a="$from" -v b="$to" '$1 >= a && $1 < b { print $2 }' |
            sort -g |
            awk -v span="$(awk -v a="$from" -v b="$to" 'BEGIN { print b - a }')" '
                function at(p,  i) { i = int(p * n); if (i < p * n) i++; if (i < 1) i = 1; return x[i] }
                $1 == "F" { f++; next }
                { x[++n] = $1; sum += $1; if ($1 > 1000) slow++ }
                END { if (n == 0) { printf "0 0 - - - - - 0 %d\n", f; exit }
                      printf "%d %.1f %.2f %.2f %.2f %.2f %.2f %d %d\n", n, (span > 0 ? n / span : 0),
                             at(0.5), at(0.99), at(0.999), x[n], sum / n, slow, f }'
        ;;
    per-second)
        [ $# -ge 3 ] || usage
        t0=$1 d=$2; shift 2
        events "$t0" "$@" |
            awk '{ s = int($1); if ($1 < 0) s = 0; print s, $2 }' |
            sort -k1,1n -k2,2g |
            awk -v d="$d" '
                function flush(  i50, i99) {
                    if (cur < 0) return
                    if (n > 0) {
                        i50 = int(0.50 * n); if (i50 < 0.50 * n) i50++
                        i99 = int(0.99 * n); if (i99 < 0.99 * n) i99++
                        line[cur] = sprintf("%d %d %.3f %.3f %.3f %d %d", cur, n, x[i50], x[i99], x[n], slow, f)
                    } else line[cur] = sprintf("%d 0 - - - 0 %d", cur, f)
                }
                BEGIN { cur = -1 }
                { if ($1 != cur) { flush(); cur = $1; n = 0; f = 0; slow = 0 }
                  if ($2 == "F") f++; else { x[++n] = $2; if ($2 > 1000) slow++ } }
                END { flush()
                      for (s = 0; s < d || (s in line); s++)
                          print (s in line) ? line[s] : s " 0 - - - 0 0" }'
        ;;
    *) usage ;;
esac
