-- test/bench/stop.sql: stop the clocks.  :bench_ms is the wall-clock time
-- since start.sql in milliseconds, commit included (psql runs each
-- statement in autocommit); :bench_cpu_ms the CPU time the backend used.
-- With perf_dir set, tell run.sh to stop perf and wait until it has; with
-- callgrind set, end the statement's session (see start.sql).
SELECT round(1000 * extract(epoch FROM clock_timestamp() - :'bench_t0'::timestamptz), 1) AS bench_ms,
       round((bench.cpu_ms() - :bench_cpu0)::numeric, 1) AS bench_cpu_ms \gset
\if :{?perf_dir}
\! touch "$BENCH_PERF_DIR/stopped" && while [ -e "$BENCH_PERF_DIR/stopped" ]; do sleep 0.05; done
\endif
\if :{?callgrind}
\connect
\endif
