/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  zdm.dual_write(): the BEFORE ROW trigger that keeps old and new
 *	  columns in step while both versions of a schema are live.
 *
 * Arguments (written by zdm.expand): the migration's name, the search_path
 * its expressions resolve under, then one group of four per rule:
 * old column, new column, up expression, down expression ('' = none).
 *
 *	- alter_column: old and new columns, up (new from the row) and down
 *	  (old from the row);
 *	- add_column with "up": new column and up only;
 *	- drop_column with "down": old column and down only.
 *
 * What a write means is decided from the write itself:
 *
 *	INSERT: a NULL new column means the writer did not supply it (an old
 *	client): new := up(row).  Otherwise the new column decides and
 *	old := down(row), also when the old column holds a value (its default,
 *	say).  For a drop_column rule, old := down(row) when old is NULL.
 *
 *	UPDATE: a column counts as written when the statement's SET list names
 *	it (tg_updatedcols) and its value changed.  New column written: it
 *	wins, old := down(row), even when the statement also wrote the old
 *	one.  Otherwise, when a column up reads was written, or the new column
 *	is NULL (a row the backfill has not reached: any update converts it,
 *	so a NOT NULL promise on the new column never fails an old client's
 *	update of another column): new := up(row).
 *	Otherwise, when a column down reads was written and the old column was
 *	not: old := down(row).
 *
 * A session that declared its API version (zdm.api_version, see
 * zdm.use_version) is believed instead: the migration's old version writes
 * the old side (new := up(row)), its new version the new side
 * (old := down(row)), whatever the statement looks like.  For a column
 * changed in place, down is compiled against the row as the new version
 * sees it: the physically new column under the old name.
 *
 * Expressions are compiled once per trigger and cached in
 * CacheMemoryContext (ExprState, no SPI; one with a sub-select runs as a
 * prepared query: subquery.c), and invalidated by a relcache callback
 * when the table changes.  Every partition's trigger is a clone
 * with its own cache entry and its own attribute numbers, so partitions
 * whose columns are laid out differently work too.
 *
 * A trigger works only for a migration zdm knows as live: a row in
 * zdm.migrations, neither contracted nor rolled back.  A schema-only dump
 * (pg_dump --schema-only, a migration tool's schema.sql) restores the
 * triggers without zdm's state; zdm will not dual-write for a migration
 * it cannot contract or roll back, nor let the two sides drift apart
 * unseen (a write that went through without dual-writing would leave a
 * row that no backfill revisits), so such a trigger refuses the write with
 * an error naming the migration and saying what to do.  The check is made
 * when the trigger's state is built (once per backend and trigger, again
 * after a relcache invalidation), so it costs nothing per row; as soon as
 * zdm's state is back (restored from a full dump) the trigger works.
 * inline.c gets the rules through the same state, so an UPDATE that it
 * would plan the conversion into fails the same way.
 *
 * The backfill computes new values itself, so its UPDATE must not fire
 * the migration's trigger, which would read the write as a new client's
 * and recompute the old column.  Merely returning early is not enough for
 * speed: for any BEFORE UPDATE row trigger PostgreSQL first locks the row
 * (a tuple lock, WAL-logged) before calling it, about a sixth of a bulk
 * UPDATE's cost.  So while zdm_backfill_bypass names a migration, an
 * ExecutorStart hook takes that migration's triggers out of the
 * statement's own copy of each result relation's trigger list; other
 * triggers (the user's, foreign keys) still fire.  The trigger function
 * also returns at once for it, should it be reached some other way.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/htup_details.h"
#include "catalog/partition.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "rewrite/rewriteManip.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(zdm_dual_write);

const char *zdm_backfill_bypass = NULL;

static ExecutorStart_hook_type prev_ExecutorStart = NULL;


typedef struct DualWriteState
{
	MemoryContext cxt;
	int			natts;
	char	   *version_old;	/* API versions of the migration, or NULL */
	char	   *version_new;
	int			nrules;
	ZdmRule    *rules;
	ExprContext *econtext;
	TupleTableSlot *slot;		/* the working row of an outermost call */
	bool	   *written;		/* its columns an UPDATE wrote */
	int			in_use;			/* nesting depth of calls using this state */
	bool		append_up;		/* INSERT fast path: see append_column() */
} DualWriteState;

typedef struct DualWriteEntry
{
	Oid			tgoid;			/* hash key */
	Oid			relid;
	bool		valid;
	DualWriteState *state;
} DualWriteEntry;

static HTAB *dual_write_cache = NULL;
static Oid	dual_write_oid = InvalidOid;
static bool dual_write_oid_known = false;
static DualWriteEntry *last_entry = NULL;	/* the entry used last, if any */

static void
free_state(DualWriteState *state)
{
	if (state != NULL && state->in_use == 0)
		MemoryContextDelete(state->cxt);
	/* else: still used by an outer call; leaked, which is rare and small */
}

static void
dual_write_relcache_cb(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	DualWriteEntry *entry;

	if (dual_write_cache == NULL)
		return;
	hash_seq_init(&status, dual_write_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || entry->relid == relid)
			entry->valid = false;
}

/* Is tg, a dual-write trigger, the one of the migration the backfill bypasses? */
static inline bool
bypassed(Trigger *tg)
{
	return zdm_backfill_bypass != NULL && tg->tgnargs > 0 &&
		strcmp(tg->tgargs[0], zdm_backfill_bypass) == 0;
}

/*
 * Take some triggers out of a result relation's list for one statement:
 * those of zdm.dual_write for which drop() says so.
 */
void
zdm_strip_triggers(ResultRelInfo *rri, bool (*drop) (Trigger *tg, void *arg), void *arg)
{
	TriggerDesc *td = rri->ri_TrigDesc;
	Oid			dual_write = zdm_dual_write_oid();
	int			n = 0;

	if (td == NULL || !OidIsValid(dual_write))
		return;
	for (int i = 0; i < td->numtriggers; i++)
		if (td->triggers[i].tgfoid != dual_write || !drop(&td->triggers[i], arg))
			td->triggers[n++] = td->triggers[i];
	if (n == td->numtriggers)
		return;
	/*
	 * The list is the executor's own copy (InitResultRelInfo), and no trigger
	 * has fired yet, so the per-trigger caches indexed alongside it are still
	 * empty.  Ours are BEFORE INSERT OR UPDATE FOR EACH ROW: only those two
	 * flags can change.
	 */
	td->numtriggers = n;
	td->trig_insert_before_row = false;
	td->trig_update_before_row = false;
	for (int i = 0; i < n; i++)
	{
		int16		type = td->triggers[i].tgtype;

		if (TRIGGER_TYPE_MATCHES(type, TRIGGER_TYPE_ROW, TRIGGER_TYPE_BEFORE, TRIGGER_TYPE_INSERT))
			td->trig_insert_before_row = true;
		if (TRIGGER_TYPE_MATCHES(type, TRIGGER_TYPE_ROW, TRIGGER_TYPE_BEFORE, TRIGGER_TYPE_UPDATE))
			td->trig_update_before_row = true;
	}
}

static bool
drop_bypassed(Trigger *tg, void *arg)
{
	return bypassed(tg);
}

/*
 * The one ExecutorStart hook that edits statements' trigger lists: the
 * backfill's UPDATEs skip their migration's trigger, and UPDATEs planned
 * with the conversion (inline.c) skip the trigger whose work they do.
 */
static void
strip_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);

	if (queryDesc->operation != CMD_UPDATE)
		return;
	if (zdm_backfill_bypass != NULL)
	{
		ListCell   *lc;

		foreach(lc, queryDesc->estate->es_opened_result_relations)
			zdm_strip_triggers(lfirst(lc), drop_bypassed, NULL);
	}
	zdm_inline_strip(queryDesc);
}

/* pg_proc changed: zdm.dual_write may have a new OID (extension re-created). */
static void
dual_write_proc_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	dual_write_oid = InvalidOid;
	dual_write_oid_known = false;
}

/* The OID of zdm.dual_write(), or InvalidOid when zdm is not installed. */
Oid
zdm_dual_write_oid(void)
{
	if (!dual_write_oid_known)
	{
		dual_write_oid = zdm_function_oid("dual_write", 0, NULL);
		dual_write_oid_known = true;
	}
	return dual_write_oid;
}

void
zdm_trigger_init(void)
{
	CacheRegisterRelcacheCallback(dual_write_relcache_cb, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, dual_write_proc_cb, (Datum) 0);
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = strip_ExecutorStart;
}

static AttrNumber
rule_column(Relation rel, const char *migration, const char *col)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (col[0] == '\0')
		return 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), col) == 0)
			return i + 1;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("dual-write trigger of migration \"%s\": column \"%s\" of table \"%s\" does not exist",
					migration, col, RelationGetRelationName(rel)),
			 errhint("The table was altered outside zdm; roll the migration back with zdm.rollback('%s').",
					 migration)));
	return 0;					/* keep compiler quiet */
}

/*
 * Compile one expression computing column att; *deps gets what it reads,
 * *tree (if not NULL) the analysed expression before planning.
 */
static ExprState *
rule_compile(Relation rel, const char *migration, const char *what,
			 const char *text, AttrNumber att, int *ndeps, AttrNumber **deps,
			 const char *in_place_physical, Node **tree)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleDesc	seen = desc;
	Form_pg_attribute target = TupleDescAttr(desc, att - 1);
	Node	   *expr;
	Bitmapset  *vars = NULL;
	int			x = -1;
	ExprState  *state;

	if (in_place_physical)
		seen = zdm_desc_as_seen(desc, NameStr(target->attname), in_place_physical);
	expr = zdm_expr_analyze_row(migration, what, seen, RelationGetRelationName(rel),
								text, target->atttypid, target->atttypmod);
	if (tree)
		*tree = copyObject(expr);
	if (checkExprHasSubLink(expr))
	{
		/* a sub-select: run as a query over the row (subquery.c) */
		vars = zdm_row_columns(expr);
		state = zdm_subquery_compile(seen, RelationGetRelationName(rel), text,
									 target->atttypid, target->atttypmod);
	}
	else
	{
		expr = (Node *) expression_planner((Expr *) expr);
		pull_varattnos(expr, 1, &vars);
		state = ExecInitExpr((Expr *) expr, NULL);
	}
	*ndeps = 0;
	*deps = palloc(sizeof(AttrNumber) * (bms_num_members(vars) + 1));
	while ((x = bms_next_member(vars, x)) >= 0)
		(*deps)[(*ndeps)++] = x + FirstLowInvalidHeapAttributeNumber;
	return state;
}

/* Rules, then (zdm 0.3 on) the marker, the versions and visible names. */
static pg_noinline int
count_rules(Trigger *tg)
{
	int			n = 0;

	while (2 + 4 * n < tg->tgnargs &&
		   strcmp(tg->tgargs[2 + 4 * n], ZDM_TRIGGER_VERSIONS_MARKER) != 0)
		n++;
	return n;
}

/*
 * Refuse a write through a trigger whose migration zdm does not know as
 * live (see the file header).
 */
static void
refuse_unknown_migration(Relation rel, Trigger *tg)
{
	Oid			owner = RelationGetRelid(rel);	/* the table the trigger is created on */

	/* A partition's clone goes with the trigger of its partitioned root. */
	if (tg->tgisclone)
		owner = llast_oid(get_partition_ancestors(owner));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("dual-write trigger \"%s\" on table \"%s\" belongs to migration \"%s\", which zdm does not know",
					tg->tgname, RelationGetRelationName(rel), tg->tgargs[0]),
			 errdetail("zdm.migrations has no live row for it: the database was probably restored from a schema-only dump "
					   "(pg_dump --schema-only), which leaves zdm's state out.  zdm does not dual-write for a migration "
					   "it cannot contract or roll back, so writes to \"%s\" are refused.",
					   RelationGetRelationName(rel)),
			 errhint("Restore zdm's state with the database (a full pg_dump keeps it; pg_dump --data-only --schema=zdm dumps it alone), "
					 "or give the migration up here: DROP TRIGGER %s ON %s; and drop what else it added.",
					 quote_identifier(tg->tgname),
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(owner)),
												get_rel_name(owner)))));
}

/* Build the compiled state of a trigger from its arguments. */
static pg_noinline DualWriteState *
build_state(Relation rel, Trigger *tg)
{
	MemoryContext cxt;
	MemoryContext old;
	DualWriteState *state;
	int			level;
	volatile int nrules;
	volatile int tail;
	bool		has_tail;

	nrules = count_rules(tg);
	tail = 2 + 4 * nrules;
	if (tg->tgnargs < 2 || tail > tg->tgnargs ||
		(tail < tg->tgnargs && tg->tgnargs != tail + 3 + nrules))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 tg->tgnargs > 0 ?
				 errmsg("dual-write trigger of migration \"%s\": trigger \"%s\" on table \"%s\" has malformed arguments",
						tg->tgargs[0], tg->tgname, RelationGetRelationName(rel)) :
				 errmsg("trigger \"%s\" on table \"%s\" has malformed arguments for zdm.dual_write()",
						tg->tgname, RelationGetRelationName(rel)),
				 errdetail("It has %d argument(s): the migration, the search_path and four per column pair, "
						   "then optionally a marker, two API versions and one name per pair.", tg->tgnargs),
				 errhint("zdm.dual_write() triggers are created by zdm.expand(), not by hand.")));

	cxt = AllocSetContextCreate(CacheMemoryContext, "zdm dual-write trigger",
								ALLOCSET_SMALL_SIZES);
	state = MemoryContextAllocZero(cxt, sizeof(DualWriteState));
	state->cxt = cxt;
	old = MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		const char *migration = tg->tgargs[0];

		state->natts = RelationGetDescr(rel)->natts;
		has_tail = tail < tg->tgnargs;
		state->nrules = nrules;
		state->rules = palloc0(sizeof(ZdmRule) * state->nrules);
		if (has_tail && tg->tgargs[tail + 1][0] != '\0')
			state->version_old = pstrdup(tg->tgargs[tail + 1]);
		if (has_tail && tg->tgargs[tail + 2][0] != '\0')
			state->version_new = pstrdup(tg->tgargs[tail + 2]);
		level = zdm_search_path_push(tg->tgargs[1]);
		for (int i = 0; i < state->nrules; i++)
		{
			ZdmRule    *r = &state->rules[i];
			char	  **a = &tg->tgargs[2 + 4 * i];

			r->old_att = rule_column(rel, migration, a[0]);
			r->new_att = rule_column(rel, migration, a[1]);
			if (a[2][0] != '\0' && r->new_att != 0)
				r->up = rule_compile(rel, migration, psprintf("up expression of column \"%s\"", a[1]),
									 a[2], r->new_att, &r->n_up_deps, &r->up_deps, NULL,
									 &r->up_tree);
			if (a[3][0] != '\0' && r->old_att != 0)
			{
				const char *visible = has_tail ? tg->tgargs[tail + 3 + i] : "";

				/* Changed in place: down reads the row as the new version sees it. */
				r->down = rule_compile(rel, migration, psprintf("down expression of column \"%s\"", a[0]),
									   a[3], r->old_att, &r->n_down_deps, &r->down_deps,
									   (r->new_att != 0 && strcmp(visible, a[0]) == 0) ? a[1] : NULL,
									   NULL);
			}
		}
		zdm_guc_pop(level);
		state->written = palloc0(sizeof(bool) * state->natts);
		/* One up rule filling the last column, of fixed width: see append_column(). */
		if (state->nrules == 1 && state->rules[0].up != NULL &&
			state->rules[0].new_att == state->natts &&
			TupleDescAttr(RelationGetDescr(rel), state->natts - 1)->attlen > 0 &&
			state->version_old == NULL && state->version_new == NULL)
			state->append_up = true;
		state->econtext = CreateStandaloneExprContext();
		state->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
											   &TTSOpsVirtual);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	return state;
}

static pg_noinline DualWriteState *
get_state(Relation rel, Trigger *tg)
{
	Oid			tgoid = tg->tgoid;
	DualWriteEntry *entry;
	bool		found;

	/* A bulk statement fires the same trigger for every row: skip the hash. */
	if (last_entry != NULL && last_entry->tgoid == tgoid && last_entry->valid &&
		last_entry->state->natts == RelationGetDescr(rel)->natts)
		return last_entry->state;

	if (dual_write_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(DualWriteEntry);
		ctl.hcxt = CacheMemoryContext;
		dual_write_cache = hash_create("zdm dual-write triggers", 16, &ctl,
									   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(dual_write_cache, &tgoid, HASH_ENTER, &found);
	if (!found)
	{
		entry->state = NULL;
		entry->valid = false;
	}
	if (!entry->valid || entry->state == NULL ||
		entry->state->natts != RelationGetDescr(rel)->natts)
	{
		DualWriteState *fresh;

		/* Build first: on error the old entry stays invalid, not half-built. */
		entry->valid = false;
		if (tg->tgnargs >= 1 && !zdm_migration_live(tg->tgargs[0]))
			refuse_unknown_migration(rel, tg);
		fresh = build_state(rel, tg);
		free_state(entry->state);
		entry->state = fresh;
		entry->relid = RelationGetRelid(rel);
		entry->valid = true;
	}
	last_entry = entry;
	return entry->state;
}

/*
 * The rules of a dual-write trigger of rel, copied into the current memory
 * context (the cached state may go with the next invalidation): the
 * columns, the dependencies and (with_trees) up_tree; up and down only
 * tell whether there is such an expression.  *versioned: the migration declared API
 * versions, so a session may say which side it writes.
 */
int
zdm_dual_write_rules(Relation rel, Trigger *tg, bool with_trees, ZdmRule **rules,
					 bool *versioned)
{
	DualWriteState *state = get_state(rel, tg);
	ZdmRule    *copy = palloc(sizeof(ZdmRule) * (state->nrules + 1));

	for (int i = 0; i < state->nrules; i++)
	{
		ZdmRule    *r = &state->rules[i];

		copy[i] = *r;
		copy[i].up_tree = with_trees ? copyObject(r->up_tree) : NULL;
		copy[i].up_deps = palloc(sizeof(AttrNumber) * (r->n_up_deps + 1));
		if (r->n_up_deps > 0)
			memcpy(copy[i].up_deps, r->up_deps, sizeof(AttrNumber) * r->n_up_deps);
		copy[i].down_deps = palloc(sizeof(AttrNumber) * (r->n_down_deps + 1));
		if (r->n_down_deps > 0)
			memcpy(copy[i].down_deps, r->down_deps, sizeof(AttrNumber) * r->n_down_deps);
	}
	*rules = copy;
	*versioned = state->version_old != NULL || state->version_new != NULL;
	return state->nrules;
}

/*
 * One call's working row.  Normally the state's own slot and array; a call
 * nested inside another on the same trigger (an up expression whose
 * function writes the same table) gets its own, so that it cannot
 * overwrite the outer call's row.
 */
typedef struct WorkRow
{
	DualWriteState *state;
	TupleTableSlot *slot;
	bool	   *written;		/* UPDATE: columns the statement wrote */
	MemoryContext cxt;			/* the caller's per-tuple memory */
	bool		changed;		/* did a rule set a column? */
} WorkRow;

/*
 * Which columns an UPDATE wrote: named in its SET list (tg_updatedcols) and
 * changed.  Read once per row, before any rule sets a column: the new
 * values from the working slot, the old ones from the trigger manager's
 * slot of the old row, deformed only as far as the last SET column.
 */
static void
find_written(TriggerData *td, WorkRow *row)
{
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	int			natts = row->state->natts;
	TupleTableSlot *new = row->slot;
	TupleTableSlot *old = td->tg_trigslot;
	AttrNumber	last = 0;
	int			x = -1;

	memset(row->written, 0, sizeof(bool) * natts);
	while ((x = bms_next_member(td->tg_updatedcols, x)) >= 0)
	{
		AttrNumber	att = x + FirstLowInvalidHeapAttributeNumber;

		if (att > 0 && att <= natts)
			last = att;
	}
	if (last == 0)
		return;
	if (old == NULL)			/* not from the executor's trigger manager */
		elog(ERROR, "zdm: dual-write trigger fired for an UPDATE without the old row's slot");
	slot_getsomeattrs(old, last);
	x = -1;
	while ((x = bms_next_member(td->tg_updatedcols, x)) >= 0)
	{
		AttrNumber	att = x + FirstLowInvalidHeapAttributeNumber;
		Form_pg_attribute a;
		bool		oldnull,
					newnull;

		if (att <= 0 || att > last)
			continue;
		a = TupleDescAttr(desc, att - 1);
		oldnull = old->tts_isnull[att - 1];
		newnull = new->tts_isnull[att - 1];
		if (oldnull || newnull)
			row->written[att - 1] = (oldnull != newnull);
		else
			row->written[att - 1] = !datumIsEqual(old->tts_values[att - 1], new->tts_values[att - 1],
												   a->attbyval, a->attlen);
	}
}

/* (A whole-row or system column in an expression's inputs is never "written".) */
static inline bool
written(WorkRow *row, AttrNumber att)
{
	return att > 0 && att <= row->state->natts && row->written[att - 1];
}

static bool
any_written(WorkRow *row, int n, AttrNumber *atts)
{
	for (int i = 0; i < n; i++)
		if (written(row, atts[i]))
			return true;
	return false;
}

/* Evaluate expr over the working row and store it into att. */
static void
apply(WorkRow *row, ExprState *expr, AttrNumber att)
{
	ExprContext *econtext = row->state->econtext;
	bool		isnull;
	Datum		value;

	/* Set for every evaluation: a nested call may have changed them. */
	econtext->ecxt_scantuple = row->slot;
	econtext->ecxt_per_tuple_memory = row->cxt;
	value = ExecEvalExprSwitchContext(expr, econtext, &isnull);
	row->slot->tts_values[att - 1] = value;
	row->slot->tts_isnull[att - 1] = isnull;
	row->changed = true;
}

/*
 * The INSERT fast path.  The usual case is one rule whose new column, added
 * by expand, is the table's last, and an old client's INSERT that leaves it
 * NULL: then the stored tuple needs only the value appended.  Deforming the
 * whole row and forming a new tuple from it costs more than the rest of the
 * trigger together, so the new tuple is the old one's bytes with the value
 * appended at its aligned offset (trailing NULLs take no space, so the data
 * of a tuple whose last column is NULL ends where that column would start)
 * and its null bit set.  Fixed-width types only: a varlena would need the
 * short-header and TOAST handling heap_fill_tuple does.
 */
static HeapTuple
append_column(HeapTuple tuple, TupleDesc desc, AttrNumber att, Datum value)
{
	Form_pg_attribute a = TupleDescAttr(desc, att - 1);
	uint32		hoff = tuple->t_data->t_hoff;
	uint32		off = att_align_nominal(tuple->t_len - hoff, a->attalign);
	uint32		len = hoff + off + a->attlen;
	HeapTuple	result = (HeapTuple) palloc0(HEAPTUPLESIZE + len);
	HeapTupleHeader td = (HeapTupleHeader) ((char *) result + HEAPTUPLESIZE);
	char	   *dst = (char *) td + hoff + off;

	result->t_len = len;
	result->t_self = tuple->t_self;
	result->t_tableOid = tuple->t_tableOid;
	result->t_data = td;
	memcpy(td, tuple->t_data, tuple->t_len);
	HeapTupleHeaderSetDatumLength(td, len);
	td->t_bits[(att - 1) >> 3] |= 1 << ((att - 1) & 7);
	if (a->attbyval)
		store_att_byval(dst, value, a->attlen);
	else
		memcpy(dst, DatumGetPointer(value), a->attlen);
	return result;
}

/* Can this INSERT take the fast path?  The tuple's last column is NULL. */
static inline bool
can_append(DualWriteState *state, TriggerData *td, HeapTuple tuple)
{
	return state->append_up && td->tg_trigslot != NULL &&
		HeapTupleHasNulls(tuple) &&
		HeapTupleHeaderGetNatts(tuple->t_data) == state->natts &&
		att_isnull(state->natts - 1, tuple->t_data->t_bits);
}

/* Apply the rules to the working row. */
static void
convert(WorkRow *row, bool is_update)
{
	DualWriteState *state = row->state;
	TupleTableSlot *slot = row->slot;

	/* A session that declared its version says which side it writes. */
	int			side = 0;		/* 0: judge by the write, 1: old, 2: new */

	if (zdm_api_version != NULL && zdm_api_version[0] != '\0')
	{
		if (state->version_new && strcmp(zdm_api_version, state->version_new) == 0)
			side = 2;
		else if (state->version_old && strcmp(zdm_api_version, state->version_old) == 0)
			side = 1;
	}

	for (int i = 0; i < state->nrules; i++)
	{
		ZdmRule    *r = &state->rules[i];

		if (side != 0 && r->up && r->down)
		{
			bool		unconverted = slot->tts_isnull[r->new_att - 1];

			/*
			 * Both directions known: follow the declared version.  A new
			 * client's write that leaves the new column NULL (an update of a
			 * row the backfill has not reached, an insert relying on the old
			 * column's default) is converted like an old one's.
			 */
			if (side == 1 && (!is_update || unconverted || written(row, r->old_att) ||
							  any_written(row, r->n_up_deps, r->up_deps)))
				apply(row, r->up, r->new_att);
			else if (side == 2 && !unconverted &&
					 (!is_update || written(row, r->new_att) ||
					  any_written(row, r->n_down_deps, r->down_deps)))
				apply(row, r->down, r->old_att);
			else if (side == 2 && unconverted && !written(row, r->new_att))
				apply(row, r->up, r->new_att);
			continue;
		}
		if (!is_update)
		{
			if (r->up && slot->tts_isnull[r->new_att - 1])
				apply(row, r->up, r->new_att);
			else if (r->down && (r->new_att != 0 || slot->tts_isnull[r->old_att - 1]))
				apply(row, r->down, r->old_att);
		}
		else
		{
			bool		new_written = r->new_att != 0 && written(row, r->new_att);

			if (new_written && r->down)
				apply(row, r->down, r->old_att);
			else if (r->up && !new_written &&
					 (slot->tts_isnull[r->new_att - 1] ||
					  any_written(row, r->n_up_deps, r->up_deps)))
				apply(row, r->up, r->new_att);
			else if (r->down && !written(row, r->old_att) &&
					 any_written(row, r->n_down_deps, r->down_deps))
				apply(row, r->down, r->old_att);
		}
	}
}

Datum
zdm_dual_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	DualWriteState *state;
	HeapTuple	tuple;
	bool		is_update;
	WorkRow		row;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("zdm.dual_write() was not called by the trigger manager"),
				 errhint("It is a trigger function; zdm.expand() installs it.")));
	if (!TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("zdm.dual_write() must be fired BEFORE INSERT OR UPDATE FOR EACH ROW"),
				 errhint("zdm.expand() installs it that way; do not create it by hand.")));

	is_update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	tuple = is_update ? td->tg_newtuple : td->tg_trigtuple;
	if (bypassed(td->tg_trigger))
		return PointerGetDatum(tuple);

	state = get_state(td->tg_relation, td->tg_trigger);
	if (!is_update && can_append(state, td, tuple))
	{
		ExprContext *econtext = state->econtext;
		ZdmRule    *r = &state->rules[0];
		Datum		value;
		bool		isnull;

		/* up reads the row from the trigger manager's slot, as far as it needs. */
		state->in_use++;
		PG_TRY();
		{
			econtext->ecxt_scantuple = td->tg_trigslot;
			econtext->ecxt_per_tuple_memory = CurrentMemoryContext;
			value = ExecEvalExprSwitchContext(r->up, econtext, &isnull);
		}
		PG_FINALLY();
		{
			state->in_use--;
		}
		PG_END_TRY();
		if (isnull)
			return PointerGetDatum(tuple);
		return PointerGetDatum(append_column(tuple, RelationGetDescr(td->tg_relation),
											 r->new_att, value));
	}
	row.state = state;
	row.changed = false;

	/*
	 * The trigger manager calls us in the executor's per-tuple memory
	 * context, reset for every row: evaluate there rather than resetting a
	 * context of our own for each row.  A nested call's row lives there too.
	 */
	row.cxt = CurrentMemoryContext;
	if (state->in_use == 0)
	{
		row.slot = state->slot;
		row.written = state->written;
	}
	else
	{
		row.slot = MakeSingleTupleTableSlot(state->slot->tts_tupleDescriptor, &TTSOpsVirtual);
		row.written = palloc0(sizeof(bool) * state->natts);
	}
	ExecClearTuple(row.slot);
	heap_deform_tuple(tuple, RelationGetDescr(td->tg_relation), row.slot->tts_values, row.slot->tts_isnull);
	ExecStoreVirtualTuple(row.slot);
	if (is_update)
		find_written(td, &row);

	state->in_use++;
	PG_TRY();
	{
		convert(&row, is_update);
	}
	PG_FINALLY();
	{
		state->in_use--;
	}
	PG_END_TRY();

	/*
	 * The result, formed from the working slot, which holds the whole row
	 * already: cheaper than heap_modify_tuple, which would deform it again.
	 */
	if (row.changed)
	{
		HeapTuple	result = heap_form_tuple(RelationGetDescr(td->tg_relation),
											 row.slot->tts_values, row.slot->tts_isnull);

		/* What heap_modify_tuple would have kept of the original. */
		result->t_data->t_ctid = tuple->t_data->t_ctid;
		result->t_self = tuple->t_self;
		result->t_tableOid = tuple->t_tableOid;
		tuple = result;
	}
	if (row.slot != state->slot)
		ExecDropSingleTupleTableSlot(row.slot);
	return PointerGetDatum(tuple);
}
