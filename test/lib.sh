# test/lib.sh: shell helpers shared by test/run.sh, test/demo/run.sh and
# test/bench/run.sh.  Source it; it defines no side effects but variables.
#
# PostgreSQL refuses to run as root, so every server, pg_regress and TAP run
# goes through as_pg: the postgres OS user when we are root, ourselves
# otherwise.  Building and installing goes through as_root.

ZDM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ZDM_PG_BINDIR=${ZDM_PG_BINDIR:-/usr/lib/postgresql/15/bin}
PG_CONFIG=${PG_CONFIG:-$ZDM_PG_BINDIR/pg_config}
ZDM_PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs 2>/dev/null || echo /usr/lib/postgresql/15/lib/pgxs/src/makefiles/pgxs.mk)")/..
ZDM_PGXS_DIR=$(cd "$ZDM_PGXS_DIR" 2>/dev/null && pwd || echo "$ZDM_PGXS_DIR")
PG_REGRESS=$ZDM_PGXS_DIR/test/regress/pg_regress
PG_ISOLATION_REGRESS=$ZDM_PGXS_DIR/test/isolation/pg_isolation_regress
ZDM_PERL_LIB=$ZDM_PGXS_DIR/test/perl

# Connection settings of the caller must not leak into temporary instances.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGSERVICE \
      PGOPTIONS PGDATA PGSSLMODE PGCONNECT_TIMEOUT PGAPPNAME

# Run a command as the OS user that owns the test clusters.  HOME points at
# a folder that user can read, so psql and perl find no root-only dotfiles.
# The command runs in the current folder when it lies in $ZDM_PG_HOME (the
# work folder, which that user owns), else in $ZDM_PG_HOME itself: from a
# folder it cannot enter (a clone under /root) every PostgreSQL program
# prints 'could not change directory to "...": Permission denied'.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        local home=${ZDM_PG_HOME:-/tmp}
        case "$PWD/" in
            "$home"/*) runuser -u postgres -- env HOME="$home" "$@" ;;
            *) (cd "$home" && exec runuser -u postgres -- env HOME="$home" "$@") ;;
        esac
    else
        "$@"
    fi
}

# Run a command with the rights to install into PostgreSQL's directories.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# Print the path of a fresh, empty folder NAME that the cluster user can
# write: ./tmp/NAME in the work tree when that user can reach it, else a
# folder under /tmp (a clone under /root is not reachable by postgres).
zdm_workdir() {
    local name=$1 dir=$ZDM_ROOT/tmp/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        if ! as_pg test -w "$dir"; then
            rm -rf "$dir"
            dir=/tmp/zdm-$name
            rm -rf "$dir"
            mkdir -p "$dir"
            chown postgres: "$dir"
        fi
    fi
    echo "$dir"
}

# Build the extension (extra make arguments pass through) and install it.
zdm_build_install() {
    make -C "$ZDM_ROOT" PG_CONFIG="$PG_CONFIG" "$@" &&
    as_root make -C "$ZDM_ROOT" PG_CONFIG="$PG_CONFIG" install
}

# Print the value of a variable of the project's Makefile (e.g. REGRESS).
zdm_make_var() {
    make -s -C "$ZDM_ROOT" PG_CONFIG="$PG_CONFIG" -f Makefile -f - \
        zdm-print-var VAR="$1" <<'MK'
zdm-print-var:
	@echo $($(VAR))
MK
}

# Seconds since the epoch with milliseconds, for timings.
zdm_now() { date +%s.%N; }

# Print B - A in seconds, with one decimal or DIGITS of them.
zdm_elapsed() { awk -v a="$1" -v b="$2" -v d="${3:-1}" 'BEGIN { printf "%.*f", d, b - a }'; }
