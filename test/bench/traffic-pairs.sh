#!/usr/bin/env bash
# test/bench/traffic-pairs.sh: the live-traffic goal measured as it should
# be on a shared machine: several pairs of runs, in alternating order.
#
# One traffic.sh run of "none" and "zdm" is a pair.  Between two runs the
# machine's own load moves the no-migration p99 by as much as a migration
# does (7.5 to 11.6 ms on the same settings), and whichever run goes second
# has been seen to fare worse.  So this script runs TRAFFIC_PAIRS pairs
# (default 4), "none zdm" and "zdm none" in turn, each on a fresh cluster,
# and reports every pair's p99 ratio (zdm / none, over the whole run and
# over the migration's window), their median and geometric mean, and how
# many pairs met the goal (at most 1.5x, no failed transaction).
#
#   TRAFFIC_PAIRS=4 bash test/bench/traffic-pairs.sh     # about 16 min a pair
#
# Every other TRAFFIC_* setting passes through to traffic.sh, with these
# defaults: TRAFFIC_PRELOAD=1 (the worker paces itself only with
# shared_preload_libraries = 'zdm') and TRAFFIC_DURATION=450 (the paced
# backfill of scale 50's 5,000,000 rows took about 360 s, and must end
# inside the run).  Each pair's report and plots are kept in
# tmp/bench-backfill/traffic-pairs/<n>/; the summary is summary.txt there.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ZDM_ROOT"

PAIRS=${TRAFFIC_PAIRS:-4}
[[ $PAIRS =~ ^[1-9][0-9]*$ ]] || { echo "TRAFFIC_PAIRS must be a positive whole number" >&2; exit 1; }
export TRAFFIC_PRELOAD=${TRAFFIC_PRELOAD-1}
export TRAFFIC_DURATION=${TRAFFIC_DURATION:-450}
OUT=$ZDM_ROOT/tmp/bench-backfill/traffic-pairs
rm -rf "$OUT"
mkdir -p "$OUT"
# traffic.sh clears its own directory on every call: the pairs live here.
TRAFFIC_DIR=$ZDM_ROOT/tmp/bench-backfill/traffic

for i in $(seq 1 "$PAIRS"); do
    if [ $((i % 2)) -eq 1 ]; then order="none zdm"; else order="zdm none"; fi
    echo "== traffic pairs: pair $i of $PAIRS ($order), $(date -u +%H:%M:%S) UTC"
    mkdir -p "$OUT/$i"
    TRAFFIC_RUNS=$order TRAFFIC_PLOTS=$OUT/$i bash "$ZDM_ROOT/test/bench/traffic.sh" >"$OUT/$i/traffic.out" 2>&1 ||
        { tail -n 30 "$OUT/$i/traffic.out"; echo "traffic pairs FAILED: pair $i" >&2; exit 1; }
    cp "$TRAFFIC_DIR/report.txt" "$OUT/$i/report.txt"
    for r in none zdm; do
        mkdir -p "$OUT/$i/$r"
        cp "$TRAFFIC_DIR/$r"/{per_second.tsv,sessions.tsv,marks.tsv,pgbench.out} "$OUT/$i/$r/" 2>/dev/null || true
        [ ! -f "$TRAFFIC_DIR/$r/pace.tsv" ] || cp "$TRAFFIC_DIR/$r/pace.tsv" "$OUT/$i/$r/"
    done
    grep -E '^p99\(zdm\)|^The zdm worker once|^NOTE' "$OUT/$i/report.txt" | sed 's/^/  /' || true
done

# One line a pair: order, none p99, zdm p99 (whole run), ratios, TPS, max,
# failed.  From the reports' tables (whole-run rows) and ratio lines.
{
    echo "pgbench TPC-B-like, scale ${TRAFFIC_SCALE:-50}, ${TRAFFIC_CLIENTS:-8} clients, $TRAFFIC_DURATION s a run; TRAFFIC_PRELOAD=${TRAFFIC_PRELOAD:-}${TRAFFIC_CONF:+; TRAFFIC_CONF: $TRAFFIC_CONF}${TRAFFIC_BACKFILL_ARGS:+; start_backfill: $TRAFFIC_BACKFILL_ARGS}"
    grep -m1 '^zdm built and installed' "$OUT/1/traffic.out" || true
    echo
    printf '%-5s %-9s %9s %9s %12s %12s %10s %10s %8s %8s %7s\n' pair order "none p99" "zdm p99" "ratio whole" "ratio window" "none tps" "zdm tps" "none max" "zdm max" failed
    for i in $(seq 1 "$PAIRS"); do
        rep=$OUT/$i/report.txt
        if [ $((i % 2)) -eq 1 ]; then order="none,zdm"; else order="zdm,none"; fi
        awk -v i="$i" -v o="$order" '
            # (the first table; the sessions table has "whole run" rows too)
            $1 == "none" && $2 == "whole" && !n1++ { nt = $5; np = $7; nm = $9 }
            $1 == "zdm" && $2 == "whole" && !z1++ { zt = $5; zp = $7; zm = $9; zf = $11 }
            /^p99\(zdm\)/ { w = $6; sub(/x,?/, "", w); g = $9; sub(/x/, "", g) }
            END { printf "%-5s %-9s %9s %9s %11sx %11sx %10s %10s %8s %8s %7s\n", i, o, np, zp, w, g, nt, zt, nm, zm, zf }' "$rep"
    done
} >"$OUT/summary.txt"
awk 'NR > 4 && $5 ~ /x$/ { w = $5; g = $6; sub(/x/, "", w); sub(/x/, "", g)
                           n++; a[n] = w; b[n] = g; lw += log(w); lg += log(g)
                           if (w <= 1.5 && g <= 1.5 && $11 == 0) met++ }
     function median(x, k,   i, j, v) {
         for (i = 2; i <= k; i++) { v = x[i]; for (j = i - 1; j > 0 && x[j] > v; j--) x[j + 1] = x[j]; x[j + 1] = v }
         return (k % 2) ? x[(k + 1) / 2] : (x[k / 2] + x[k / 2 + 1]) / 2 }
     END { if (n == 0) exit 1
           printf "\np99 ratio over %d pairs: whole run median %.2fx (geometric mean %.2fx), migration window median %.2fx (%.2fx)\n",
                  n, median(a, n), exp(lw / n), median(b, n), exp(lg / n)
           printf "pairs within the goal (p99 <= 1.5x in both spans, 0 failed): %d of %d\n", met, n }' \
    "$OUT/summary.txt" >>"$OUT/summary.txt"
cat "$OUT/summary.txt"
