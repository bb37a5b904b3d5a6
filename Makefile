# zdm: PGXS build, plus the project's own entry points (demo, test, bench).

EXTENSION   = zdm
MODULE_big  = zdm
OBJS        = src/zdm.o src/spec.o src/plan.o src/expr.o src/locks.o src/ddl.o \
              src/catalog.o src/expand.o src/expand_util.o src/expand_versions.o \
              src/plan_build.o src/op_add_column.o src/op_alter_column.o \
              src/op_drop_column.o src/op_create_table.o src/op_create_constraint.o \
              src/op_create_index.o src/op_drop_index.o \
              src/op_drop_constraint.o src/op_drop_multicolumn_constraint.o \
              src/op_rename_constraint.o src/table_constraints.o src/trigger.o src/backfill.o \
              src/contract.o src/control.o src/worker.o src/pace.o src/delay.o src/throttle.o \
              src/telemetry.o src/versions.o src/gate.o src/inline.o src/roles.o \
              src/wait.o src/subquery.o src/dependents.o src/duplicate.o src/duplicate_index.o \
              src/replication.o src/deferred.o src/steps_worker.o

# The install script and every upgrade script live in sql/, beside the
# regression inputs: DATA lists them all.
DATA        = $(wildcard sql/zdm--*.sql)

# pg_regress suites (sql/NAME.sql -> expected/NAME.out), in order.
REGRESS     = setup upgrade expand add_column alter_column alter_keep alter_pgroll drop_column create_table \
              create_constraint drop_constraint drop_multicolumn_constraint rename_constraint constraints_pgroll \
              create_index drop_index index_pgroll deferred \
              trigger backfill worker contract rollback versions gate errors corrupt inline \
              schema_only wait replication
REGRESS_OPTS = --inputdir=. --load-extension=zdm

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wextra -Wno-unused-parameter \
              -Wno-missing-field-initializers -Wno-sign-compare
ifdef ZDM_WERROR
PG_CPPFLAGS += -Werror
endif

# On a fresh machine pg_config is not there yet: the entry points below
# install it (test/deps.sh), so only the build itself needs it now.
PGXS := $(shell command -v $(PG_CONFIG) >/dev/null 2>&1 && $(PG_CONFIG) --pgxs)
ifneq ($(PGXS),)
include $(PGXS)
else ifneq ($(filter-out deps demo test bench,$(or $(MAKECMDGOALS),all)),)
$(error $(PG_CONFIG) not found: run "bash test/deps.sh" (it installs postgresql-server-dev-15), or set PG_CONFIG)
endif

# Every C file includes the shared header: rebuild them all when it changes.
$(OBJS): src/zdm.h src/expand.h

.PHONY: demo test bench deps

# Install what a fresh Debian machine lacks (needs root or sudo).
deps:
	bash test/deps.sh

# A throwaway cluster running the seed's orders migration (the script
# installs what is missing itself, as the README's set-up says).
demo:
	bash test/demo/run.sh

# Every suite (pg_regress, isolation, TAP); last line "N passed, N failed".
# The script installs what is missing itself.
test:
	bash test/run.sh

bench: deps
	bash test/bench/run.sh
