/*-------------------------------------------------------------------------
 *
 * expand.h
 *	  What zdm.expand() builds, shared by expand.c and the operation kinds.
 *
 * Each operation kind (op_*.c) is one ZdmOpKind: its name, the keys pgroll's
 * format gives it, and a "plan" function.  expand.c claims the tables the
 * operations name, calls each operation's plan function in order, and then
 * applies and stores what they planned.  A plan function checks its
 * operation against the catalogs (changing nothing) and adds, to the
 * TableWork of every table it touches:
 *
 *	- the names it claims (expand_claim_column) and the columns it changes
 *	  (expand_existing_column), so that two operations cannot collide;
 *	- expand steps (run in the caller's transaction, under ACCESS EXCLUSIVE
 *	  taken with the retrying lock of locks.c, so each must be quick);
 *	- deferred steps (run by the background worker after the expand has
 *	  committed and the backfill is done: CREATE INDEX CONCURRENTLY,
 *	  VALIDATE CONSTRAINT), each a ZdmPlanStep saying where it runs;
 *	- dual-write rules and the names the new API version sees (views);
 *	- what to backfill and how to verify it;
 *	- contract steps (caller's transaction; or "after": by the worker once
 *	  the contract has committed, e.g. DROP INDEX CONCURRENTLY);
 *	- rollback steps, likewise, undoing everything expand and the deferred
 *	  steps may have done, in reverse order.
 *
 * Every later phase executes the stored plan as written, with no code of
 * the operation kind: a plan expanded by one zdm release is contracted by
 * the next.  A new operation kind is one new file and one line in
 * expand.c's table.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZDM_EXPAND_H
#define ZDM_EXPAND_H

#include "zdm.h"

#include "access/attnum.h"
#include "catalog/pg_attribute.h"
#include "utils/builtins.h"

/* One dual-write rule: see trigger.c for what it does on each write. */
typedef struct DualRule
{
	char	   *old_col;		/* column old clients write, or NULL */
	char	   *new_col;		/* column new clients write, or NULL */
	char	   *up;				/* computes new_col from the row, or NULL */
	char	   *down;			/* computes old_col from the row, or NULL */
	char	   *visible;		/* new_col's name in the new version (in place: old_col) */
} DualRule;

/* Everything one migration does to one table. */
typedef struct TableWork
{
	Oid			relid;			/* InvalidOid: created by this migration */
	char	   *schema;
	char	   *name;
	char	   *qualname;		/* quoted, schema-qualified */
	TupleDesc	reldesc;		/* the table as it is, NOT NULL flags included */
	TupleDesc	desc;			/* columns after expand, for analysis */
	List	   *claimed;		/* column names added by the migration */
	List	   *touched;		/* existing columns altered or dropped */
	List	   *rules;			/* DualRule * */
	List	   *sets;			/* backfill: "col = expr" */
	List	   *todo;			/* backfill: "col IS NULL" */
	List	   *verify;			/* predicates true for an inconsistent row */
	List	   *expand;			/* SQL */
	List	   *validate;		/* SQL, contract, under SHARE UPDATE EXCLUSIVE */
	List	   *contract;		/* SQL, contract, under ACCESS EXCLUSIVE */
	List	   *rollback;		/* SQL, rollback, in reverse order */
	List	   *referenced;		/* OIDs of tables to lock SHARE ROW EXCLUSIVE */
	List	   *contract_other; /* ZdmPlanStep *: contract steps locking other tables */
	List	   *rollback_other; /* ZdmPlanStep *: rollback's, likewise */
	List	   *deferred;		/* ZdmPlanStep *: run by the worker once the
								 * expand has committed and the backfill is
								 * done (ZDM_RUNS_WORKER or ZDM_RUNS_OUTSIDE) */
	List	   *contract_after; /* ZdmPlanStep *: run by the worker once the
								 * contract has committed */
	List	   *rollback_after; /* ZdmPlanStep *: likewise after rollback */
	List	   *carried;		/* OIDs of constraints an alter_column carries */
	bool		old_view_created;	/* expand created the old version's view */
	List	   *check_refs;		/* alter_column "check": pairs of constraint
								 * and a column it names */
	List	   *constraint_names;	/* constraints a constraint operation
									 * creates, drops or renames (each once) */
	List	   *constraint_refs;	/* pairs: such a constraint and a column
									 * it names (not to be replaced or dropped) */
	bool		adds_primary_key;	/* a create_constraint adds one */
	List	   *hidden_in_new;	/* old columns the new version no longer sees */
	List	   *new_physical;	/* new columns, physical names ... */
	List	   *new_visible;	/* ... and the names the new version sees */
	bool		key_searched;
	List	   *key;			/* backfill key column names; NIL: by ctid */
	List	   *key_types;		/* their types, qualified */
} TableWork;

typedef struct ExpandState
{
	const char *migration;
	const char *schema;			/* top-level "schema", or NULL */
	char	   *search_path;
	List	   *tables;			/* TableWork * */
	char	   *version_old;	/* API version retired, or NULL */
	char	   *version_new;	/* API version introduced, or NULL */
	List	   *schemas;		/* version schemas to create */
	ZdmLockStats claim;			/* waits for the tables' claims */
	ZdmSpecCtx	ctx;
	List	   *relnames;		/* "schema.name" of the relations (indexes)
								 * the operations create */
} ExpandState;

/* An operation kind. */
typedef struct ZdmOpKind
{
	const char *name;			/* as in pgroll's format: "add_column", ... */
	const char *const *keys;	/* the keys it accepts */
	const char *const *unsupported; /* pgroll's keys zdm refuses, by name */
	const char *table_key;		/* the key naming an existing table it
								 * changes (claimed before any check), or NULL */
	void		(*plan) (ExpandState *st, JsonbContainer *op);
} ZdmOpKind;

extern const ZdmOpKind zdm_op_add_column;
extern const ZdmOpKind zdm_op_alter_column;
extern const ZdmOpKind zdm_op_drop_column;
extern const ZdmOpKind zdm_op_create_table;
extern const ZdmOpKind zdm_op_create_constraint;
extern const ZdmOpKind zdm_op_drop_constraint;
extern const ZdmOpKind zdm_op_drop_multicolumn_constraint;
extern const ZdmOpKind zdm_op_rename_constraint;
extern const ZdmOpKind zdm_op_create_index;
extern const ZdmOpKind zdm_op_drop_index;

static inline char *
qcol(const char *col)
{
	return (char *) quote_identifier(col);
}

/* expand_util.c: what the operation kinds share */
extern bool zdm_str_in_list(List *list, const char *s);
extern AttrNumber expand_desc_attnum(TupleDesc desc, const char *col);
extern TupleDesc expand_desc_add_column(TupleDesc desc, const char *col, Oid typid, int32 typmod);
extern void expand_resolve_type(ExpandState *st, const char *typname, const char *colname,
								Oid *typid, int32 *typmod, char **typname_out);
extern TableWork *expand_table_work(ExpandState *st, const char *table, bool must_exist);
extern TableWork *expand_table_work_relid(ExpandState *st, Oid relid, const char *table, bool must_exist);
extern void expand_claim_relname(ExpandState *st, const char *schema, const char *name, const char *what);
extern Form_pg_attribute expand_existing_column(ExpandState *st, TableWork *tw, const char *col);
extern void expand_claim_column(ExpandState *st, TableWork *tw, const char *col);
extern void expand_find_backfill_key(ExpandState *st, TableWork *tw);
extern void expand_refuse_key_column(ExpandState *st, TableWork *tw, const char *col);
extern char *expand_check_default(ExpandState *st, TableWork *tw, const char *col, const char *text,
								  Oid typid, int32 typmod, bool existing_rows);
extern void expand_add_check(ExpandState *st, TableWork *tw, JsonbContainer *check, bool existing_rows);
extern void expand_add_not_null(TableWork *tw, const char *col);
extern void expand_add_comment(TableWork *tw, const char *col, const char *comment);
extern void expand_refuse_flag(ExpandState *st, JsonbContainer *obj, const char *key, const char *hint);
extern ZdmPlanStep *expand_step(const char *relation, const char *lock, const char *runs,
								const char *sql);
extern const char *const expand_column_keys[];
extern const char *const expand_column_unsupported[];

/* table_constraints.c: what the constraint operations share */
extern char *expand_qualified_rel(Oid relid);
extern Oid	expand_constraint_oid(ExpandState *st, TableWork *tw, const char *name, bool must_exist);
extern List *expand_constraint_columns(Oid conoid);
extern void expand_claim_constraint(ExpandState *st, TableWork *tw, const char *name,
									List *columns);
extern void expand_check_constraint_name(ExpandState *st, TableWork *tw, const char *name,
										 bool index_backed);
extern void expand_constraint_up_down(ExpandState *st, TableWork *tw, const char *constraint,
									  List *columns, JsonbContainer *op, bool maps);
extern ZdmPlanStep *expand_fkey_drop_step(TableWork *tw, Oid confrelid, const char *constraint);
extern bool expand_json_set(JsonbContainer *obj, const char *key);
extern void expand_plan_constraint_drop(ExpandState *st, JsonbContainer *op, bool multi);	/* op_drop_constraint.c */

/* expand_versions.c: the API versions' schemas and views */
extern bool expand_has_views(ExpandState *st, TableWork *tw);
extern bool expand_view_exists(TableWork *tw, const char *version);
extern char *expand_view_name(TableWork *tw, const char *version);
extern char *expand_view_grant_sql(TableWork *tw, const char *version);
extern char *expand_view_sql(TableWork *tw, const char *version, bool newer);
extern void expand_resolve_versions(ExpandState *st, JsonbContainer *root);
extern void expand_save_versions(ExpandState *st);

/* plan_build.c: the plan, as stored */
extern char *expand_trigger_name(ExpandState *st, TableWork *tw);
extern char *expand_trigger_sql(ExpandState *st, TableWork *tw);
extern char *expand_plan_json(ExpandState *st);

#endif							/* ZDM_EXPAND_H */
