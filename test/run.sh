#!/usr/bin/env bash
# test/run.sh: build zdm with -Werror, install it, and run every suite on
# temporary instances: pg_regress (the Makefile's REGRESS list), isolation
# (test/isolation/specs/*.spec) and TAP (test/t/*.pl).
#
# Each pg_regress test, isolation spec and TAP file counts as one unit; the
# last line printed is "N passed, N failed".  Exit status is non-zero when
# anything failed, a failed build included.
#
#   bash test/run.sh                 # everything (what `make test` runs)
#   bash test/run.sh regress tap     # only some suites
#   ZDM_TAP='007_*' bash test/run.sh tap   # only some TAP files
#
# Outputs stay under ./tmp/test (results/, regression.diffs, TAP logs), or
# /tmp/zdm-test when the postgres OS user cannot reach ./tmp (a clone in
# /root).  test/deps.sh runs first and installs what is missing.
set -uo pipefail

# A fresh Debian has nothing of what follows, not even make: install it
# first (a fast no-op when everything is there).
if ! bash "$(dirname "${BASH_SOURCE[0]}")/deps.sh"; then
    echo "test/deps.sh FAILED: no suite could run"
    echo
    echo "0 passed, 1 failed"
    exit 1
fi

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ZDM_ROOT" || exit 1

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(regress isolation tap)
want() { local s; for s in "${suites[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

passed=0
failed=0
failures=()
failure_details=""

# What each suite will run, known before building so that a failed build
# can count every unit it prevented.
regress_tests=()
want regress && read -r -a regress_tests <<<"$(zdm_make_var REGRESS)"
isolation_specs=()
if want isolation; then
    for f in test/isolation/specs/*.spec; do
        [ -e "$f" ] && isolation_specs+=("$(basename "$f" .spec)")
    done
fi
tap_files=()
if want tap; then
    for f in test/t/${ZDM_TAP:-*}.pl; do
        [ -e "$f" ] && tap_files+=("$(basename "$f")")
    done
fi
units=$(( ${#regress_tests[@]} + ${#isolation_specs[@]} + ${#tap_files[@]} ))

finish() {
    echo
    if [ ${#failures[@]} -gt 0 ]; then
        # The failed assertions again, last, where a log's tail shows them.
        [ -z "$failure_details" ] || printf '%s\n' "$failure_details"
        echo "failed: ${failures[*]}"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

# Print a file, at most $2 lines of it, under a heading.
show_file() {
    local file=$1 max=${2:-1000}
    [ -s "$file" ] || return 0
    echo "----- $file -----"
    head -n "$max" "$file"
    local n
    n=$(wc -l <"$file")
    [ "$n" -le "$max" ] || echo "... ($((n - max)) more lines in $file)"
    echo "-----"
}

# Count the status lines pg_regress / pg_isolation_regress printed into $1
# for the tests named after it; a test with no status line failed.
count_regress_output() {
    local out=$1 suite=$2 t status
    shift 2
    for t in "$@"; do
        status=$(awk -v t="$t" '
            { line = $0; sub(/^test +/, "", line); sub(/^ +/, "", line) }
            index(line, t " ") == 1 && line ~ /\.\.\. / {
                s = line; sub(/.*\.\.\. +/, "", s); print s; exit }' "$out")
        case "$status" in
            ok*) passed=$((passed + 1)) ;;
            *) failed=$((failed + 1)); failures+=("$suite/$t") ;;
        esac
    done
}

echo "== build (make ZDM_WERROR=1) and install"
t0=$(zdm_now)
if ! zdm_build_install -B ZDM_WERROR=1; then
    echo "build or install FAILED: no suite could run"
    failed=$(( units > 0 ? units : 1 ))
    failures=(build)
    finish
fi
echo "built and installed in $(zdm_elapsed "$t0" "$(zdm_now)") s"

work=$(zdm_workdir test)
export ZDM_PG_HOME=$work
echo "work folder: $work"

# The inputs are copied where the cluster user can read them whatever the
# permissions of the work tree's parents.
mkdir -p "$work/input"
cp -r sql expected "$work/input/"
[ -d test/isolation ] && cp -r test/isolation "$work/input/isolation"
[ -d test/t ] && cp -r test/t "$work/input/t"
[ -d test/monitoring ] && cp -r test/monitoring "$work/input/monitoring"
# The runners' recipes (and their npm packages) beside t/, for the runner tests.
[ -d test/runners ] && cp -r test/runners "$work/input/runners"
# pgroll's example migrations, for t/030.
[ -d test/pgroll-examples ] && cp -r test/pgroll-examples "$work/input/pgroll-examples"
chown -R postgres: "$work" 2>/dev/null || true

# Settings every temporary instance gets.
cat >"$work/temp.conf" <<'CONF'
# zdm test instances
log_min_messages = warning
log_line_prefix = '%m [%p] %q%a '
max_worker_processes = 16
CONF

if [ ${#regress_tests[@]} -gt 0 ]; then
    echo
    echo "== pg_regress: ${regress_tests[*]}"
    t0=$(zdm_now)
    read -r -a regress_opts <<<"$(zdm_make_var REGRESS_OPTS)"
    out=$work/regress
    mkdir -p "$out" && chown postgres: "$out" 2>/dev/null
    (cd "$work" && as_pg env PATH="$ZDM_PG_BINDIR:$PATH" \
        "$PG_REGRESS" "${regress_opts[@]}" \
        --inputdir="$work/input" --outputdir="$out" \
        --temp-instance="$out/instance" --temp-config="$work/temp.conf" \
        --bindir="$ZDM_PG_BINDIR" --no-locale --encoding=UTF8 \
        "${regress_tests[@]}") 2>&1 | tee "$out/output.txt"
    rc=${PIPESTATUS[0]}
    count_regress_output "$out/output.txt" regress "${regress_tests[@]}"
    if [ "$rc" -ne 0 ]; then
        show_file "$out/regression.diffs"
        show_file "$out/log/initdb.log" 50
        [ -s "$out/regression.diffs" ] || show_file "$out/log/postmaster.log" 200
    fi
    echo "pg_regress took $(zdm_elapsed "$t0" "$(zdm_now)") s"
fi

if [ ${#isolation_specs[@]} -gt 0 ]; then
    echo
    echo "== isolation: ${isolation_specs[*]}"
    t0=$(zdm_now)
    out=$work/isolation
    mkdir -p "$out" && chown postgres: "$out" 2>/dev/null
    (cd "$work" && as_pg env PATH="$ZDM_PG_BINDIR:$PATH" \
        "$PG_ISOLATION_REGRESS" \
        --inputdir="$work/input/isolation" --outputdir="$out" \
        --temp-instance="$out/instance" --temp-config="$work/temp.conf" \
        --bindir="$ZDM_PG_BINDIR" --no-locale --encoding=UTF8 \
        --load-extension=zdm --dbname=isolation_regression \
        "${isolation_specs[@]}") 2>&1 | tee "$out/output.txt"
    rc=${PIPESTATUS[0]}
    count_regress_output "$out/output.txt" isolation "${isolation_specs[@]}"
    if [ "$rc" -ne 0 ]; then
        show_file "$out/regression.diffs"
        show_file "$out/log/initdb.log" 50
        [ -s "$out/regression.diffs" ] || show_file "$out/log/postmaster.log" 200
    fi
    echo "isolation took $(zdm_elapsed "$t0" "$(zdm_now)") s"
fi

if [ ${#tap_files[@]} -gt 0 ]; then
    echo
    echo "== TAP: ${tap_files[*]}"
    out=$work/tap
    mkdir -p "$out" && chown postgres: "$out" 2>/dev/null
    for f in "${tap_files[@]}"; do
        t0=$(zdm_now)
        # A TAP file must compile without a Perl warning: a warning printed
        # on every run hides the ones that matter.
        perl_warnings=$(cd "$out" && as_pg env \
                PERL5LIB="$ZDM_PERL_LIB${PERL5LIB:+:$PERL5LIB}" \
                perl -c "$work/input/t/$f" 2>&1 | grep -v ' syntax OK$')
        if [ -n "$perl_warnings" ]; then
            printf '%s: Perl warnings:\n%s\n' "$f" "$perl_warnings"
        fi
        if (cd "$out" && as_pg env \
                PATH="$ZDM_PG_BINDIR:$PATH" \
                PERL5LIB="$ZDM_PERL_LIB${PERL5LIB:+:$PERL5LIB}" \
                PG_REGRESS="$PG_REGRESS" \
                TESTDIR="$out" \
                PG_TEST_PORT_DIR="$out/portlock" \
                PG_TEST_TIMEOUT_DEFAULT="${PG_TEST_TIMEOUT_DEFAULT:-120}" \
                prove "$work/input/t/$f") 2>&1 | tee "$out/prove_${f%.pl}.out"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
            if [ -z "$perl_warnings" ]; then
                passed=$((passed + 1))
            else
                failed=$((failed + 1))
                failures+=("tap/$f")
                failure_details+="tap/$f, Perl warnings:"$'\n'"$perl_warnings"$'\n'
            fi
        else
            failed=$((failed + 1))
            failures+=("tap/$f")
            show_file "$out/tmp_check/log/regress_log_${f%.pl}" 400
            log=$out/tmp_check/log/regress_log_${f%.pl}
            [ -s "$log" ] || log=$out/prove_${f%.pl}.out
            failure_details+="tap/$f, the failed assertions:"$'\n'
            failure_details+=$(grep -E -A6 '^(\[[^]]*\](\([^)]*\))? *)?(not ok|# +Failed test)' "$log" | head -n 16)$'\n'
            [ -z "$perl_warnings" ] || failure_details+="tap/$f, Perl warnings:"$'\n'"$perl_warnings"$'\n'
        fi
        echo "$f took $(zdm_elapsed "$t0" "$(zdm_now)") s"
    done
fi

finish
