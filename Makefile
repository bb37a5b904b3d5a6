# zdm: PGXS build, plus the project's own entry points (demo, test, bench).

EXTENSION   = zdm
MODULE_big  = zdm
OBJS        = src/zdm.o src/spec.o src/expr.o src/locks.o src/ddl.o \
              src/catalog.o src/expand.o src/trigger.o src/backfill.o \
              src/contract.o src/control.o src/worker.o src/pace.o src/delay.o src/throttle.o \
              src/telemetry.o src/versions.o src/gate.o src/inline.o src/roles.o \
              src/wait.o

# The install script and every upgrade script live in sql/, beside the
# regression inputs: DATA lists them all.
DATA        = $(wildcard sql/zdm--*.sql)

# pg_regress suites (sql/NAME.sql -> expected/NAME.out), in order.
REGRESS     = setup upgrade expand add_column alter_column drop_column create_table \
              trigger backfill worker contract rollback versions gate errors inline wait
REGRESS_OPTS = --inputdir=. --load-extension=zdm

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wextra -Wno-unused-parameter \
              -Wno-missing-field-initializers -Wno-sign-compare
ifdef ZDM_WERROR
PG_CPPFLAGS += -Werror
endif

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every C file includes the shared header: rebuild them all when it changes.
$(OBJS): src/zdm.h

.PHONY: demo test bench deps

# Install what a fresh Debian machine lacks (needs root or sudo).
deps:
	bash test/deps.sh

# A throwaway cluster under ./tmp running the seed's orders migration.
demo: deps
	bash test/demo/run.sh

# Every suite (pg_regress, isolation, TAP); last line "N passed, N failed".
test: deps
	bash test/run.sh

bench: deps
	bash test/bench/run.sh
