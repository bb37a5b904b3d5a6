/*-------------------------------------------------------------------------
 *
 * inline.c
 *	  The dual-write conversion planned into UPDATE statements.
 *
 * On PostgreSQL 15 any BEFORE ROW UPDATE trigger costs an UPDATE a row lock
 * per row before the trigger is even called (GetTupleForTrigger locks the
 * old row: a WAL record per row).  A bulk UPDATE pays 14% for a trigger
 * that does nothing, and so does every client UPDATE of a table while a
 * migration of it is live.  So for the usual shape of write zdm puts the
 * conversion into the statement itself, as an application writing both
 * columns would, and takes the trigger out of that statement:
 *
 *	UPDATE t SET legacy_status = $1 WHERE ...
 *
 * is planned as
 *
 *	UPDATE t SET legacy_status = $1,
 *				 status_enum = CASE WHEN status_enum IS NULL
 *									  OR zdm.differs(legacy_status, $1)
 *								   THEN ($1)::order_status
 *								   ELSE status_enum END
 *	  WHERE ...
 *
 * which is what the trigger does with such a statement (trigger.c): the new
 * column is computed again when a column up reads changed, or when the row
 * is not converted yet (NULL); otherwise it is left as it is.  zdm.differs
 * compares the stored bytes, as the trigger does, not the type's equality.
 * A planner hook adds the entry.  The ExecutorStart hook (trigger.c's, which
 * also leaves the backfill's trigger out) recognises it (the
 * plan sets a new column the statement did not name, which only this hook
 * does) and takes that migration's trigger out of the statement's own copy
 * of the table's trigger list.
 *
 * Only where the two are plainly the same; everything else keeps the
 * trigger:
 *	- a plain table without inheritance children (not a partitioned one);
 *	- zdm's trigger the table's only BEFORE ROW UPDATE trigger (another one
 *	  could change the row after the new column was computed), enabled
 *	  (ALWAYS as zdm creates it, or ORIGIN as before 0.6), the session not
 *	  a replica (the trigger still fires there: replication.c);
 *	- a migration without API versions (a session's declared version
 *	  changes which side wins);
 *	- a statement naming no rule's new column and no column a down
 *	  expression reads (those make the trigger write the old column), whose
 *	  SET expressions that up reads are not volatile and not subqueries
 *	  (they are evaluated again inside the new column's expression);
 *	- up expressions that read no rule's new column and hold no sub-select
 *	  (the trigger runs those as queries: subquery.c);
 *	- the statement planned itself (not an UPDATE inside WITH), in a
 *	  session that has loaded zdm.
 * INSERT, COPY, MERGE and INSERT ... ON CONFLICT keep the trigger.
 * zdm.inline_updates = off turns all this off.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/table.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/clauses.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "parser/parse_func.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteManip.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(zdm_differs);

bool		zdm_inline_updates = true;

static planner_hook_type prev_planner = NULL;
static Oid	differs_oid = InvalidOid;
static bool differs_known = false;

/* pg_proc changed: zdm.differs may have a new OID, or none. */
static void
differs_proc_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	differs_known = false;
}

static Oid
lookup_differs(void)
{
	if (!differs_known)
	{
		Oid			args[2] = {ANYELEMENTOID, ANYELEMENTOID};

		/* InvalidOid before ALTER EXTENSION zdm UPDATE to 0.4. */
		differs_oid = zdm_function_oid("differs", 2, args);
		differs_known = true;
	}
	return differs_oid;
}

/* Would evaluating expr twice differ from evaluating it once? */
static bool
not_repeatable_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, SubLink) || IsA(node, SubPlan) || IsA(node, AlternativeSubPlan))
		return true;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_MULTIEXPR)
		return true;
	return expression_tree_walker(node, not_repeatable_walker, context);
}

static bool
repeatable(Expr *expr)
{
	return !not_repeatable_walker((Node *) expr, NULL) &&
		!contain_volatile_functions((Node *) expr);
}

typedef struct RowRefs
{
	Index		rti;			/* the result relation */
	int			natts;
	TargetEntry **set;			/* per column: its SET entry, or NULL */
} RowRefs;

/*
 * up reads the row the trigger would see: a column the statement sets is
 * its SET expression, any other the row's current value.
 */
static Node *
row_as_written(Node *node, RowRefs *refs)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Var) && ((Var *) node)->varno == 1 && ((Var *) node)->varlevelsup == 0)
	{
		Var		   *var = (Var *) node;

		if (var->varattno > 0 && var->varattno <= refs->natts && refs->set[var->varattno - 1])
			return copyObject((Node *) refs->set[var->varattno - 1]->expr);
		var = copyObject(var);
		var->varno = refs->rti;
		var->varnosyn = refs->rti;
		return (Node *) var;
	}
	return expression_tree_mutator(node, row_as_written, refs);
}

static Var *
column_var(Relation rel, Index rti, AttrNumber att)
{
	Form_pg_attribute a = TupleDescAttr(RelationGetDescr(rel), att - 1);

	return makeVar(rti, att, a->atttypid, a->atttypmod, a->attcollation, 0);
}

static bool
is_set(RowRefs *refs, AttrNumber att)
{
	return att > 0 && att <= refs->natts && refs->set[att - 1] != NULL;
}

/* Can this statement take the conversion instead of the trigger? */
static bool
can_inline(RowRefs *refs, int nrules, ZdmRule *rules)
{
	bool		any_up = false;

	for (int i = 0; i < nrules; i++)
	{
		ZdmRule    *r = &rules[i];

		if (is_set(refs, r->new_att))
			return false;
		for (int d = 0; r->down && d < r->n_down_deps; d++)
			if (is_set(refs, r->down_deps[d]))
				return false;
		if (!r->up || r->new_att == 0)
			continue;
		/* An up with a sub-select is the trigger's to run (subquery.c). */
		if (r->up_tree == NULL || checkExprHasSubLink(r->up_tree))
			return false;
		any_up = true;
		for (int d = 0; d < r->n_up_deps; d++)
		{
			AttrNumber	dep = r->up_deps[d];

			for (int j = 0; j < nrules; j++)
				if (rules[j].new_att == dep)
					return false;
			if (is_set(refs, dep) &&
				(!OidIsValid(lookup_differs()) || !repeatable(refs->set[dep - 1]->expr)))
				return false;
		}
	}
	return any_up;
}

/* new := CASE WHEN new IS NULL OR <an up input changed> THEN up(row) ELSE new END */
static TargetEntry *
conversion_entry(Relation rel, RowRefs *refs, ZdmRule *r)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), r->new_att - 1);
	Var		   *current = column_var(rel, refs->rti, r->new_att);
	NullTest   *unconverted = makeNode(NullTest);
	List	   *conds;
	CaseWhen   *when = makeNode(CaseWhen);
	CaseExpr   *conv = makeNode(CaseExpr);

	unconverted->arg = (Expr *) copyObject(current);
	unconverted->nulltesttype = IS_NULL;
	unconverted->argisrow = false;
	unconverted->location = -1;
	conds = list_make1(unconverted);
	for (int d = 0; d < r->n_up_deps; d++)
	{
		AttrNumber	dep = r->up_deps[d];
		Var		   *before;

		if (!is_set(refs, dep))
			continue;
		before = column_var(rel, refs->rti, dep);
		conds = lappend(conds,
						makeFuncExpr(lookup_differs(), BOOLOID,
									 list_make2(before, copyObject(refs->set[dep - 1]->expr)),
									 InvalidOid, before->varcollid, COERCE_EXPLICIT_CALL));
	}

	when->expr = list_length(conds) == 1 ? (Expr *) linitial(conds) : makeBoolExpr(OR_EXPR, conds, -1);
	when->result = (Expr *) row_as_written(r->up_tree, refs);
	when->location = -1;
	conv->casetype = att->atttypid;
	conv->casecollid = att->attcollation;
	conv->arg = NULL;
	conv->args = list_make1(when);
	conv->defresult = (Expr *) current;
	conv->location = -1;
	return makeTargetEntry((Expr *) conv, r->new_att, pstrdup(NameStr(att->attname)), false);
}

static int
resno_cmp(const ListCell *a, const ListCell *b)
{
	TargetEntry *x = lfirst(a);
	TargetEntry *y = lfirst(b);

	/* Plain entries by column, then the junk ones, in their order. */
	if (x->resjunk != y->resjunk)
		return x->resjunk ? 1 : -1;
	if (x->resjunk)
		return 0;
	return (x->resno > y->resno) - (x->resno < y->resno);
}

/* Add the conversion to an UPDATE of a table under a dual-write trigger. */
static void
inline_update(Query *parse)
{
	RangeTblEntry *rte = rt_fetch(parse->resultRelation, parse->rtable);
	Oid			dual_write;
	Relation	rel;
	TriggerDesc *trigdesc;
	Trigger    *tg = NULL;
	int			nbefore = 0;

	if (rte->rtekind != RTE_RELATION || rte->relkind != RELKIND_RELATION)
		return;
	dual_write = zdm_dual_write_oid();
	if (!OidIsValid(dual_write))
		return;

	rel = table_open(rte->relid, NoLock);	/* locked by the parser */
	trigdesc = rel->trigdesc;
	for (int i = 0; trigdesc != NULL && i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (TRIGGER_TYPE_MATCHES(t->tgtype, TRIGGER_TYPE_ROW, TRIGGER_TYPE_BEFORE, TRIGGER_TYPE_UPDATE))
		{
			nbefore++;
			if (t->tgfoid == dual_write)
				tg = t;
		}
	}
	if (tg != NULL && nbefore == 1 &&
		(tg->tgenabled == TRIGGER_FIRES_ON_ORIGIN || tg->tgenabled == TRIGGER_FIRES_ALWAYS) &&
		!has_subclass(rte->relid))
	{
		RowRefs		refs;
		ZdmRule    *rules;
		bool		versioned;
		int			nrules = zdm_dual_write_rules(rel, tg, true, &rules, &versioned);
		ListCell   *lc;

		refs.rti = parse->resultRelation;
		refs.natts = RelationGetDescr(rel)->natts;
		refs.set = palloc0(sizeof(TargetEntry *) * refs.natts);
		foreach(lc, parse->targetList)
		{
			TargetEntry *tle = lfirst(lc);

			if (!tle->resjunk && tle->resno > 0 && tle->resno <= refs.natts)
				refs.set[tle->resno - 1] = tle;
		}
		if (!versioned && can_inline(&refs, nrules, rules))
		{
			for (int i = 0; i < nrules; i++)
				if (rules[i].up && rules[i].new_att != 0)
					parse->targetList = lappend(parse->targetList,
												conversion_entry(rel, &refs, &rules[i]));
			list_sort(parse->targetList, resno_cmp);
		}
	}
	table_close(rel, NoLock);
}

static PlannedStmt *
inline_planner(Query *parse, const char *query_string, int cursorOptions,
			   ParamListInfo boundParams)
{
	if (zdm_inline_updates && parse->commandType == CMD_UPDATE && parse->resultRelation > 0 &&
		SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA)
		inline_update(parse);
	if (prev_planner)
		return prev_planner(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

typedef struct PlannedUpdate
{
	List	   *colnos;			/* the columns the plan sets */
	Bitmapset  *named;			/* the columns the statement named */
	Relation	rel;
} PlannedUpdate;

/*
 * Did inline_update convert for this trigger?  Then the plan sets every new
 * column the trigger would compute, none of which the statement named.
 */
static bool
drop_inlined(Trigger *tg, void *arg)
{
	PlannedUpdate *pu = arg;
	ZdmRule    *rules;
	bool		versioned;
	int			nrules = zdm_dual_write_rules(pu->rel, tg, false, &rules, &versioned);
	bool		any = false;

	if (versioned)
		return false;
	for (int i = 0; i < nrules; i++)
	{
		AttrNumber	att = rules[i].new_att;

		if (!rules[i].up || att == 0)
			continue;
		if (!list_member_int(pu->colnos, att) ||
			bms_is_member(att - FirstLowInvalidHeapAttributeNumber, pu->named))
			return false;
		any = true;
	}
	return any;
}

/*
 * Called by trigger.c's ExecutorStart hook once the executor has opened the
 * result relations: leave out the triggers whose work the plan does.
 */
void
zdm_inline_strip(QueryDesc *queryDesc)
{
	Plan	   *plan = queryDesc->plannedstmt->planTree;

	if (queryDesc->operation == CMD_UPDATE && plan != NULL && IsA(plan, ModifyTable) &&
		((ModifyTable *) plan)->operation == CMD_UPDATE)
	{
		ModifyTable *mt = (ModifyTable *) plan;
		EState	   *estate = queryDesc->estate;
		ListCell   *lc;

		foreach(lc, estate->es_opened_result_relations)
		{
			ResultRelInfo *rri = lfirst(lc);
			int			i = 0;
			ListCell   *rl;
			PlannedUpdate pu;

			if (rri->ri_TrigDesc == NULL || !rri->ri_TrigDesc->trig_update_before_row)
				continue;
			foreach(rl, mt->resultRelations)
			{
				if (lfirst_int(rl) == rri->ri_RangeTableIndex)
					break;
				i++;
			}
			if (i >= list_length(mt->resultRelations))
				continue;
			pu.colnos = list_nth(mt->updateColnosLists, i);
			pu.named = exec_rt_fetch(rri->ri_RangeTableIndex, estate)->updatedCols;
			pu.rel = rri->ri_RelationDesc;
			zdm_strip_triggers(rri, drop_inlined, &pu);
		}
	}
}

void
zdm_inline_init(void)
{
	CacheRegisterSyscacheCallback(PROCOID, differs_proc_cb, (Datum) 0);
	prev_planner = planner_hook;
	planner_hook = inline_planner;
}

/*
 * zdm.differs(a, b): do two values of a type differ in their bytes?
 * NULL differs from any value, not from NULL.  Varlena values are compared
 * detoasted, so a value and its compressed or out-of-line copy do not
 * differ.
 */
typedef struct DiffersType
{
	int16		len;
	bool		byval;
} DiffersType;

Datum
zdm_differs(PG_FUNCTION_ARGS)
{
	bool		null_a = PG_ARGISNULL(0);
	bool		null_b = PG_ARGISNULL(1);
	DiffersType *type = fcinfo->flinfo->fn_extra;

	if (null_a || null_b)
		PG_RETURN_BOOL(null_a != null_b);
	if (type == NULL)
	{
		Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, 0);

		if (!OidIsValid(typid))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("zdm.differs() could not determine the type of its arguments"),
					 errhint("zdm plans it into UPDATE statements; it is not meant to be called by hand.")));
		type = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(DiffersType));
		get_typlenbyval(typid, &type->len, &type->byval);
		fcinfo->flinfo->fn_extra = type;
	}
	if (type->len == -1)
	{
		struct varlena *a = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(0));
		struct varlena *b = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(1));
		Size		len = VARSIZE_ANY_EXHDR(a);

		PG_RETURN_BOOL(len != VARSIZE_ANY_EXHDR(b) ||
					   memcmp(VARDATA_ANY(a), VARDATA_ANY(b), len) != 0);
	}
	PG_RETURN_BOOL(!datumIsEqual(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), type->byval, type->len));
}
