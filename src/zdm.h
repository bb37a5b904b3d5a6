/*-------------------------------------------------------------------------
 *
 * zdm.h
 *	  Shared declarations of zdm, zero-downtime schema migrations.
 *
 * A migration moves through expand (additive DDL plus a dual-write
 * trigger), backfill (historical rows converted in committed batches) and
 * contract (old columns dropped, constraints enforced), or is rolled back.
 * expand.c turns the migration's definition into a "plan" (jsonb, stored in
 * zdm.migrations), and every later step executes that plan, so nothing is
 * re-derived from a schema that may have moved on.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZDM_H
#define ZDM_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "storage/lockdefs.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* Advisory-lock key space of zdm (the first key of the two-int form). */
#define ZDM_ADVISORY_KEYSPACE	0x7A646D	/* "zdm" */

/*
 * The last key (objsubid in pg_locks) of zdm's advisory locks.  SQL's
 * advisory functions use only 1 and 2, so no role can take or hold one of
 * these: a role that could hold a migration's lock could make every
 * zdm.expand() of it return false ("being expanded by another session").
 */
#define ZDM_ADVISORY_WORKER			3	/* the database's backfill worker; objid 0 */
#define ZDM_ADVISORY_TABLE_CLAIM	4	/* a claim on a table; objid its OID (locks.c) */
#define ZDM_ADVISORY_MIGRATION		5	/* a migration's own lock; objid a hash of its name */
#define ZDM_ADVISORY_STEPS			6	/* the database's deferred-steps worker; objid 0 */

/* GUCs (zdm.c) */
extern int	zdm_lock_timeout_ms;
extern int	zdm_lock_budget_ms;
extern int	zdm_lock_backoff_max_ms;
extern int	zdm_batch_size;
extern int	zdm_batch_size_max;
extern int	zdm_batch_time_ms;
extern double zdm_sleep_ratio;
extern int	zdm_worker_nice;
extern int	zdm_throttle_replica_lag_ms;
extern int	zdm_throttle_xact_age_s;
extern int	zdm_throttle_lock_waiters;
extern double zdm_throttle_commit_latency;
extern char *zdm_throttle_query;
extern int	zdm_throttle_interval_ms;
extern int	zdm_launcher_naptime_s;
extern double zdm_contract_threshold;
extern int	zdm_gate_window_min;
extern int	zdm_gate_undeclared;	/* 0: ignore, 1: count as old */
extern int	zdm_throttle_slot_lag_kb;
extern char *zdm_subscribers_expanded;
extern bool zdm_replication_check;

/* ---- spec.c: reading a migration's JSON ---- */

/* Where in a migration a value was found, for error messages. */
typedef struct ZdmSpecCtx
{
	const char *migration;		/* migration name */
	int			opno;			/* 1-based operation number, 0 = top level */
	const char *opname;			/* "add_column", ... */
} ZdmSpecCtx;

extern JsonbContainer *zdm_json_object(ZdmSpecCtx *ctx, JsonbContainer *obj,
									   const char *key, bool required);
extern JsonbContainer *zdm_json_array(ZdmSpecCtx *ctx, JsonbContainer *obj,
									  const char *key, bool required);
extern char *zdm_json_string(ZdmSpecCtx *ctx, JsonbContainer *obj,
							 const char *key, bool required);
extern bool zdm_json_bool(ZdmSpecCtx *ctx, JsonbContainer *obj,
						  const char *key, bool dflt);
extern bool zdm_json_has(JsonbContainer *obj, const char *key);
extern bool zdm_json_present(JsonbContainer *obj, const char *key);
extern void zdm_json_check_keys(ZdmSpecCtx *ctx, JsonbContainer *obj,
								const char *what, const char *const *known,
								const char *const *unsupported);
extern char *zdm_json_escape(const char *s);
extern const char *zdm_json_type_name(JsonbValue *v);

/* ---- plan.c: the stored plan and checkpoint, read back with checks ---- */

/* One table of a plan, as backfill and verify need it. */
typedef struct ZdmPlanTable
{
	char	   *relation;		/* qualified name, quoted as needed */
	char	   *table;			/* for messages */
	bool		backfill;
	int			nkeys;			/* 0: walked by blocks (ctid) */
	char	  **key;			/* key columns */
	char	  **key_types;		/* their types, as SQL */
	char	   *set;			/* backfill only: "new = up(row), ..." */
	char	   *todo;			/* backfill only: rows still to convert */
	char	   *verify;			/* NULL: nothing to verify */
} ZdmPlanTable;

/*
 * The plan's format: 2 added "deferred" and each step's "runs" (a plan
 * without "format" is 1; it has neither).
 */
#define ZDM_PLAN_FORMAT		2

/* Where a step of a plan runs. */
#define ZDM_RUNS_CALLER		"caller"	/* the transaction of zdm.expand(), contract(), rollback() */
#define ZDM_RUNS_WORKER		"worker"	/* a transaction of its own, in the background worker */
#define ZDM_RUNS_OUTSIDE	"outside"	/* no transaction block, in the worker: CONCURRENTLY */

/*
 * One step of a plan's "deferred", "contract" or "rollback" section.  The
 * caller runs its section's "caller" steps; the worker the others, in
 * order, once the caller's transaction has committed (and, for "deferred",
 * once the backfill is done).
 */
typedef struct ZdmPlanStep
{
	char	   *relation;		/* NULL: a step on no table (a schema) */
	char	   *lock;			/* "exclusive", "validate", "share_row", "none" */
	char	   *sql;
	char	   *runs;			/* ZDM_RUNS_*; "caller" when absent (format 1) */
	char	   *index;			/* a step building an index CONCURRENTLY: the
								 * index (qualified), dropped if it is left
								 * INVALID; else NULL */
} ZdmPlanStep;

extern List *zdm_plan_tables(const char *migration, Jsonb *plan);
extern char *zdm_plan_search_path(const char *migration, Jsonb *plan);
extern List *zdm_plan_steps(const char *migration, Jsonb *plan, const char *section);
extern void zdm_plan_checkpoint(const char *migration, List *tables,
								Datum table, bool table_null, Datum key, bool key_null,
								int *idx, char ***keyv, int *nkey);
extern void zdm_stored_row_corrupt(const char *migration, const char *column) pg_attribute_noreturn();

/* What a plan section takes away for good: a column of a table, or the table. */
typedef struct ZdmRemoved
{
	Oid			relid;
	char	   *column;			/* NULL: the whole table */
} ZdmRemoved;

extern List *zdm_plan_removed(const char *migration, Jsonb *plan, const char *section);

/* ---- expr.c: up/down/default expressions ---- */

extern char *zdm_expr_normalize(const char *text);
extern void zdm_expr_check_syntax(const char *migration, const char *what,
								  const char *text);
extern Node *zdm_expr_analyze(const char *migration, const char *what,
							  TupleDesc desc, const char *relname,
							  const char *text, Oid typid, int32 typmod);
extern Node *zdm_expr_analyze_row(const char *migration, const char *what,
								  TupleDesc desc, const char *relname,
								  const char *text, Oid typid, int32 typmod);
extern char *zdm_expr_rename_column(const char *migration, const char *what,
									const char *text, const char *from, const char *to);
extern TupleDesc zdm_desc_as_seen(TupleDesc desc, const char *col, const char *physical);
extern int	zdm_search_path_push(const char *search_path);
extern void zdm_guc_pop(int nestlevel);

/* ---- locks.c: lock acquisition that never blocks traffic for long ---- */

typedef struct ZdmLockStats
{
	int			attempts;
	double		wait_ms;
} ZdmLockStats;

extern void zdm_lock_relations(const char *migration, List *relids,
							   LOCKMODE mode, ZdmLockStats *stats);
extern void zdm_lock_relations_modes(const char *migration, List *relids,
									 List *modes, ZdmLockStats *stats);
extern void zdm_claim_relations(const char *migration, List *relids,
								ZdmLockStats *stats);
extern void zdm_lock_stats_add(ZdmLockStats *into, const ZdmLockStats *earlier);
extern bool zdm_try_migration_lock(const char *migration);
extern bool zdm_try_in_subtransaction(bool (*attempt) (void *arg), void *arg);
struct LOCKTAG;
extern void zdm_migration_locktag(const char *migration, struct LOCKTAG *tag);
extern int	zdm_lock_timeout_push(void);

/* ---- dependents.c: what depends on a column an alter_column replaces or a drop_column drops ---- */

/* A retired API version's guard view of a table (versions.c). */
typedef struct ZdmGuardView
{
	char	   *version;
	char	   *retired_by;		/* the migration that retired it */
} ZdmGuardView;

/* What the new column keeps of what depends on the old one. */
typedef struct ZdmColumnAttached
{
	List	   *checks;			/* OIDs of CHECK constraints naming it */
	List	   *fkeys;			/* OIDs of its FOREIGN KEY constraints */
	List	   *sequences;		/* OIDs of the sequences it owns */
	List	   *indexes;		/* OIDs of the indexes naming it (UNIQUE and
								 * PRIMARY KEY constraints' included) */
	List	   *referencing;	/* OIDs of other foreign keys that reference it */
	List	   *guards;			/* ZdmGuardView * of the table */
} ZdmColumnAttached;

extern void zdm_column_attached(const char *migration, Oid relid, const char *col,
								List *replaced_views, ZdmColumnAttached *attached);
extern char *zdm_column_default(Oid relid, AttrNumber attnum, Node **expr);
extern void zdm_column_dropped(const char *migration, Oid relid, const char *col,
							   List *replaced_views, ZdmColumnAttached *attached,
							   List **goes_with);
extern struct Bitmapset *zdm_index_columns(Oid indexoid);

/* ---- duplicate.c: the new column of an alter_column keeps what the old had ---- */

typedef struct ZdmColumnCopy
{
	/* in: the columns and what the migration says */
	const char *migration;
	ZdmSpecCtx *ctx;
	Oid			relid;
	const char *table;			/* for messages */
	const char *qualname;		/* quoted, schema-qualified */
	const char *old_col;
	const char *new_col;		/* the new column's physical name */
	Oid			typid;			/* its type */
	int32		typmod;
	TupleDesc	desc;			/* the table's columns after expand */
	TupleDesc	seen;			/* in place: the same, as the new version sees
								 * them; otherwise NULL */
	const char *schema;			/* the migration's "schema", or NULL */
	JsonbContainer *check;		/* the migration's "check", or NULL */
	JsonbContainer *references; /* its "references", or NULL */
	JsonbContainer *unique;		/* its "unique", or NULL */
	bool		nullable;		/* the new column may be NULL */
	bool		keep_default;	/* the migration says nothing of "default" */
	bool		keep_comment;	/* nor of "comment" */
	ZdmColumnAttached attached; /* zdm_column_attached */
	/* out: statements on the table, per phase */
	List	   *expand;
	List	   *validate;		/* contract, SHARE UPDATE EXCLUSIVE */
	List	   *before_drop;	/* contract, before the old column is dropped */
	List	   *after_drop;		/* contract, once the new column has its name */
	List	   *rollback;		/* rollback, before the new column is dropped */
	List	   *deferred;		/* ZdmPlanStep *: after the backfill, by the worker */
	List	   *deferred_fkeys; /* (the foreign keys' among them, which go last) */
	List	   *rollback_after; /* ZdmPlanStep *: after rollback, by the worker */
	/* out: other tables */
	List	   *referenced;		/* OIDs: SHARE ROW EXCLUSIVE at expand */
	List	   *contract_other; /* ZdmPlanStep *: steps locking other tables */
	List	   *rollback_other;
	ZdmLockStats claim;			/* waits for the claim on a referenced table */
	List	   *check_columns;	/* the columns the migration's "check" names */
} ZdmColumnCopy;

extern void zdm_duplicate_column(ZdmColumnCopy *copy);
extern Node *zdm_dup_analyse(ZdmColumnCopy *c, TupleDesc desc, const char *what,
							 const char *text, Oid typid, const char *hint);
extern void zdm_dup_constraint_comment(ZdmColumnCopy *c, List **into, Oid conoid,
									   const char *qualname, const char *name);

/* ---- duplicate_index.c: the new column's indexes, built by the worker ---- */
extern void zdm_dup_index(ZdmColumnCopy *c, Oid indexoid);
extern void zdm_dup_unique(ZdmColumnCopy *c);
extern char *zdm_made_name(const char *prefix, const char *a, const char *b);	/* expand.c */

/* ---- ddl.c: running and journaling DDL ---- */

extern void zdm_run_ddl(const char *migration, const char *phase,
						const char *sql, const ZdmLockStats *lock);
extern LOCKMODE zdm_lockmode_from_name(const char *name);
extern Oid	zdm_plan_relation(const char *migration, const char *relation);
extern void zdm_claim_plan(const char *migration, Jsonb *plan,
						   const char *section, ZdmLockStats *stats);
extern void zdm_run_plan_steps(const char *migration, const char *phase,
							   Jsonb *plan, const char *section,
							   const ZdmLockStats *claimed);

/* ---- catalog.c: zdm.migrations and zdm.migration_log ---- */

typedef struct ZdmMigration
{
	char	   *name;
	char	   *phase;
	Jsonb	   *definition;
	Jsonb	   *plan;
	bool		expanded_here;	/* expanded in the current transaction */
	char	   *version_old;	/* API version it retires, or NULL */
	char	   *version_new;	/* API version it introduces, or NULL */
	char	   *author;			/* role that expanded it (by name), or NULL */
} ZdmMigration;

extern bool zdm_migration_fetch(const char *name, bool for_update,
								ZdmMigration *m);
extern void zdm_migration_set_phase(const char *name, const char *phase,
									const char *error);
extern void zdm_log_event(const char *migration, const char *event,
						  const char *phase, const char *statement,
						  const ZdmLockStats *lock, double duration_ms,
						  const char *detail);
extern void zdm_check_name(const char *name, const char *func);
extern void zdm_worker_flags(const char *name, bool *requested, bool *paused);
extern void zdm_require_migration(const char *name, ZdmMigration *m,
								  bool for_update);
extern bool zdm_migration_live(const char *name);
extern void zdm_refuse_leftovers(const char *name);

/* ---- roles.c: whose rights zdm acts with ---- */

typedef struct ZdmAs
{
	Oid			user;
	int			sec;
	int			level;
} ZdmAs;

extern int	zdm_state_writing;
extern Oid	zdm_state_owner(void);
extern int	zdm_state_exec(const char *sql, int nargs, Oid *types, Datum *values,
						   const char *nulls, bool read_only, long count);
extern int	zdm_state_query(const char *sql, bool read_only, long count);
extern void zdm_pin_search_path(void);
extern Oid	zdm_author_oid(const ZdmMigration *m);
extern void zdm_as_author_push(ZdmAs *as, const ZdmMigration *m, const char *search_path);
extern void zdm_as_pop(ZdmAs *as);
extern bool zdm_may_act(const ZdmMigration *m);
extern void zdm_require_actor(const ZdmMigration *m, const char *action);
extern char *zdm_current_role_name(void);
extern Oid	zdm_function_oid(const char *name, int nargs, const Oid *argtypes);

/* ---- versions.c ---- */

/*
 * Dual-write trigger arguments after the rules: this marker (longer than
 * any column name, so it cannot be one), the old and new API versions and
 * each rule's visible name.  Triggers of zdm 0.1 and 0.2 lack them.
 */
#define ZDM_TRIGGER_VERSIONS_MARKER "--zdm-versions-------------------------------------------------------"

extern char *zdm_previous_version(void);
extern List *zdm_guard_view_sql(const char *qualname, const char *table,
								const char *version, const char *migration);
extern bool zdm_version_lookup(const char *version, char **schema, char **retired_by);

/* ---- gate.c ---- */

/*
 * The version traffic that declared none is counted under, by telemetry.c,
 * in zdm.api_traffic and by every reader; zdm.record_traffic() accepts it
 * for undeclared requests counted outside.
 */
#define ZDM_UNDECLARED_VERSION "(undeclared)"

extern void zdm_gate_check(const char *name, const char *version_old,
						   const char *version_new, bool force);

/* ---- backfill.c ---- */

extern const char *zdm_backfill_bypass;	/* trigger.c */
extern char *zdm_backfill_failed_key;
extern int64 zdm_backfill_batch(const char *name, int32 batch);
extern int64 zdm_verify_migration(const ZdmMigration *m);

/* ---- worker.c: the background worker and its launcher ---- */

extern void zdm_worker_register_launcher(void);
extern bool zdm_worker_start(Oid dboid, TransactionId wait_xid, bool report);
extern void zdm_worker_sleep(long ms);
extern bool zdm_steps_worker_start(Oid dboid, TransactionId wait_xid, bool report);
extern void zdm_worker_apply_nice(const char *what);

/*
 * ---- deferred.c (the worker: steps_worker.c): the steps that run in the
 * background worker once a phase has committed (a plan's "deferred"
 * section, and the steps of "contract" and "rollback" that do not run in
 * the caller) ----
 *
 * Steps that run "outside" a transaction block must be CREATE INDEX
 * CONCURRENTLY or DROP INDEX CONCURRENTLY (steps_worker.c refuses any
 * other statement there); "worker" steps may be any statement.
 */
extern List *zdm_worker_steps(const char *migration, Jsonb *plan, const char *section);
extern void zdm_deferred_owe(const char *migration, const char *section, int nsteps);
extern char *zdm_deferred_owed(const char *migration, const char *section);
extern void zdm_deferred_wake(const char *migration, bool report);
extern bool zdm_deferred_state_exists(void);
extern char *zdm_index_short_name(const char *index);

/* ---- throttle.c: health signals read between batches ---- */

extern char *zdm_throttle_reason(const char *name, Jsonb *plan);

/* ---- replication.c: logical replication, publishers and subscribers ---- */

/* A table an expand changes, as the publisher's check needs it. */
typedef struct ZdmExpandedTable
{
	Oid			relid;			/* InvalidOid: created by the expand */
	Oid			nspid;			/* its schema */
	const char *name;
	List	   *columns;		/* the columns it adds (char *) */
} ZdmExpandedTable;

extern char *zdm_repl_check_expand(const char *migration, List *tables);
extern void zdm_repl_check_removal(const ZdmMigration *m, const char *section,
								   const char *action);
extern bool zdm_repl_converted_upstream(const char *migration, Jsonb *plan);
extern void zdm_repl_notice_published(const char *migration, Jsonb *plan,
									  const char *section);

/* ---- pace.c: the backfill's rate from the clients' commit latency ---- */

extern void zdm_pace_init(void);
extern bool zdm_pace_counters(uint64 *commits, uint64 *us);
extern long zdm_pace_before_batch(char **reason);
extern double zdm_pace_after_batch(int64 rows, char **reason);
extern double zdm_pace_rate(void);

/* ---- delay.c: a batch's rows spread over its time ---- */

extern void zdm_delay_begin(double rows_per_sec);
extern double zdm_delay_end(void);
extern bool zdm_delay_active(void);

/* ---- trigger.c ---- */

/*
 * trigger.c: the dual-write trigger's compiled rules (one per column pair),
 * cached per trigger; inline.c plans the same rules into UPDATE statements.
 */
struct ExprState;
struct RelationData;
struct Trigger;
struct ResultRelInfo;

typedef struct ZdmRule
{
	AttrNumber	old_att;		/* 0 = none */
	AttrNumber	new_att;		/* 0 = none */
	struct ExprState *up;		/* new column from the row, or NULL */
	struct ExprState *down;		/* old column from the row, or NULL */
	Node	   *up_tree;		/* up analysed, not planned; Vars have varno 1 */
	int			n_up_deps;
	AttrNumber *up_deps;		/* columns up reads */
	int			n_down_deps;
	AttrNumber *down_deps;		/* columns down reads */
} ZdmRule;

extern void zdm_trigger_init(void);
extern Oid	zdm_dual_write_oid(void);
extern int	zdm_dual_write_rules(struct RelationData *rel, struct Trigger *tg,
								 bool with_trees, ZdmRule **rules, bool *versioned);
extern void zdm_strip_triggers(struct ResultRelInfo *rri,
							   bool (*drop) (struct Trigger *tg, void *arg), void *arg);

/* subquery.c: up/down with sub-selects, run as queries by the trigger */
extern struct ExprState *zdm_subquery_compile(TupleDesc desc, const char *relname,
											  const char *text, Oid typid, int32 typmod);
extern struct Bitmapset *zdm_row_columns(Node *expr);

extern bool zdm_inline_updates;	/* GUC zdm.inline_updates */
extern void zdm_inline_init(void);
struct QueryDesc;
extern void zdm_inline_strip(struct QueryDesc *queryDesc);

/* ---- telemetry.c: requests per API version ---- */

extern char *zdm_api_version;	/* GUC zdm.api_version: the session's declared version */
extern void zdm_telemetry_init(void);
extern void zdm_telemetry_flush(void);
extern void zdm_telemetry_declared(void);
extern void zdm_traffic_add(Datum versions, Datum requests, TimestampTz at, const char *source);

/* ---- zdm.c ---- */
extern List *zdm_expanded_in_xact;
extern void zdm_note_expanded(const char *name);
extern bool zdm_expanded_here(const char *name);

/* ---- timing ---- */
extern double zdm_ms_since(TimestampTz start);

#endif							/* ZDM_H */
