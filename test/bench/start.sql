-- test/bench/start.sql: start the clocks (included before a timed statement).
-- With the psql variable perf_dir set (ZDM_BENCH_PERF=1), first hand this
-- backend's pid to run.sh and wait until perf is recording it.
\if :{?perf_dir}
SELECT pg_backend_pid() AS bench_pid \gset
\setenv BENCH_PERF_DIR :perf_dir
\setenv BENCH_PID :bench_pid
\! echo "$BENCH_PID" >"$BENCH_PERF_DIR/pid.tmp" && mv "$BENCH_PERF_DIR/pid.tmp" "$BENCH_PERF_DIR/pid" && while [ ! -e "$BENCH_PERF_DIR/recording" ]; do sleep 0.05; done; rm -f "$BENCH_PERF_DIR/recording"
\endif
-- With the psql variable callgrind set (the server runs under callgrind,
-- collecting inside standard_ExecutorRun only), run the statement in a
-- session of its own and print its backend's pid: the instructions of
-- that session are the statement's (and the two tiny SELECTs around it).
\if :{?callgrind}
\connect
-- Load the trigger languages now: a library's first load (some 4 million
-- instructions for zdm) is the session's, not the statement's.
LOAD 'zdm';
LOAD 'plpgsql';
SELECT pg_backend_pid() AS bench_pid \gset
\echo CALLGRIND :bench_pid
\endif
SELECT bench.cpu_ms() AS bench_cpu0, clock_timestamp() AS bench_t0 \gset
