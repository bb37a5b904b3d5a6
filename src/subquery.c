/*-------------------------------------------------------------------------
 *
 * subquery.c
 *	  up/down expressions with sub-selects, in the dual-write trigger.
 *
 * The trigger compiles each up/down into an ExprState evaluated over the
 * row (trigger.c).  An ExprState cannot hold a sub-select: a SubLink must
 * be planned into a SubPlan, which needs an executor state of its own.  So
 * an expression with one (pgroll's example 21: "CASE WHEN EXISTS (SELECT 1
 * FROM users WHERE users.id = user_id) THEN user_id END") runs as a query,
 * "SELECT (<expression>)", prepared once through SPI with a parser hook
 * that turns each name of a column of the row into a parameter ($n for
 * the row's n-th attribute), and executed for every row with the row's
 * values as those parameters.  A name the sub-select's own tables have is
 * theirs, as in SQL, and so as in the backfill's UPDATE, which evaluates
 * the same text over the table.
 *
 * The plan is a plan cache entry kept for the trigger's life (SPI_keepplan;
 * a callback on the trigger state's memory frees it with the state).  It is
 * generic, so no row pays for planning, and PostgreSQL replans it when a
 * table the sub-select reads changes.  Names in it resolve under the
 * search_path the migration was expanded with: the trigger compiles under
 * it, and each execution pushes it again, so a replan resolves them the
 * same way.  It runs read-only on the snapshot of the statement that fired
 * the trigger, as a subquery of that statement would.
 *
 * The query's value is coerced to the column's type as an assignment, as
 * the ExprState path does.  All of it is wrapped into an ExprState whose
 * one input is a parameter computed by the query (an EEOP_PARAM_CALLBACK
 * step), so the trigger evaluates the rule like any other.  This is the
 * slow path (an executor start per row and rule); expressions without a
 * sub-select never take it.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "executor/execExpr.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_node.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"

/* One compiled expression with a sub-select. */
typedef struct RowQuery
{
	TupleDesc	desc;			/* the row as the expression sees it */
	char	   *relname;		/* the table's name, for qualified references */
	SPIPlanPtr	plan;			/* SELECT (<expression>) */
	OverrideSearchPath *path;	/* the migration's search_path */
	int16		reslen;			/* the query's result type */
	bool		resbyval;
} RowQuery;

/*
 * The parser's hook for names no table of the query has: a column of the
 * row ("col", or "table.col") becomes parameter $attnum.
 */
static Node *
row_column_ref(ParseState *pstate, ColumnRef *cref, Node *var)
{
	RowQuery   *q = (RowQuery *) pstate->p_ref_hook_state;
	const char *col = NULL;

	if (var != NULL)
		return NULL;			/* a column of a table the sub-select reads */
	if (list_length(cref->fields) == 1 && IsA(linitial(cref->fields), String))
		col = strVal(linitial(cref->fields));
	else if (list_length(cref->fields) == 2 && IsA(linitial(cref->fields), String) &&
			 IsA(lsecond(cref->fields), String) &&
			 strcmp(strVal(linitial(cref->fields)), q->relname) == 0)
		col = strVal(lsecond(cref->fields));
	if (col == NULL)
		return NULL;
	for (int i = 0; i < q->desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(q->desc, i);
		Param	   *param;

		if (att->attisdropped || strcmp(NameStr(att->attname), col) != 0)
			continue;
		param = makeNode(Param);
		param->paramkind = PARAM_EXTERN;
		param->paramid = i + 1;
		param->paramtype = att->atttypid;
		param->paramtypmod = att->atttypmod;
		param->paramcollid = att->attcollation;
		param->location = cref->location;
		return (Node *) param;
	}
	return NULL;
}

static void
row_parser_setup(ParseState *pstate, void *arg)
{
	pstate->p_post_columnref_hook = row_column_ref;
	pstate->p_ref_hook_state = arg;
}

/* The EEOP_PARAM_CALLBACK step: run the query over the row being written. */
static void
row_query_eval(ExprState *state, ExprEvalStep *op, ExprContext *econtext)
{
	RowQuery   *q = (RowQuery *) op->d.cparam.paramarg;
	TupleTableSlot *slot = econtext->ecxt_scantuple;
	int			natts = q->desc->natts;
	ParamListInfo params = makeParamList(natts);
	Datum		value = (Datum) 0;
	bool		isnull = true;

	slot_getallattrs(slot);
	for (int i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(q->desc, i);
		ParamExternData *p = &params->params[i];

		p->value = i < slot->tts_nvalid ? slot->tts_values[i] : (Datum) 0;
		p->isnull = i < slot->tts_nvalid ? slot->tts_isnull[i] : true;
		p->pflags = PARAM_FLAG_CONST;
		p->ptype = att->attisdropped ? InvalidOid : att->atttypid;
	}

	PushOverrideSearchPath(q->path);
	PG_TRY();
	{
		int			rc;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "zdm: SPI_connect failed");
		rc = SPI_execute_plan_with_paramlist(q->plan, params, true, 2);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "zdm: an up/down expression's query returned %s",
				 rc == SPI_OK_SELECT ? "other than one row" : SPI_result_code_string(rc));
		value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		/* into the caller's memory (the row's), before SPI's goes */
		if (!isnull)
			value = SPI_datumTransfer(value, q->resbyval, q->reslen);
		SPI_finish();
	}
	PG_FINALLY();
	{
		PopOverrideSearchPath();
	}
	PG_END_TRY();

	*op->resvalue = value;
	*op->resnull = isnull;
}

/* ExecInitExprWithParams' hook: the query computes the one parameter. */
static void
row_query_param(ParamListInfo params, Param *param, ExprState *state,
				Datum *resv, bool *resnull)
{
	ExprEvalStep scratch;

	memset(&scratch, 0, sizeof(scratch));
	scratch.opcode = EEOP_PARAM_CALLBACK;
	scratch.resvalue = resv;
	scratch.resnull = resnull;
	scratch.d.cparam.paramfunc = row_query_eval;
	scratch.d.cparam.paramarg = params->paramCompileArg;
	scratch.d.cparam.paramid = param->paramid;
	scratch.d.cparam.paramtype = param->paramtype;
	ExprEvalPushStep(state, &scratch);
}

/* The state's memory is going: so is the kept plan. */
static void
row_query_free(void *arg)
{
	RowQuery   *q = (RowQuery *) arg;

	if (q->plan != NULL)
		SPI_freeplan(q->plan);
	q->plan = NULL;
}

/*
 * Compile text, an up/down expression with a sub-select, over rows of desc
 * (as the expression sees them: for a column changed in place, the new
 * column under the old name) of table relname, yielding typid/typmod.
 * Call under the migration's search_path, in the memory context the
 * result is to live in: the plan is freed with it.
 */
ExprState *
zdm_subquery_compile(TupleDesc desc, const char *relname, const char *text,
					 Oid typid, int32 typmod)
{
	RowQuery   *q = palloc0(sizeof(RowQuery));
	MemoryContextCallback *cb = palloc0(sizeof(MemoryContextCallback));
	CachedPlanSource *source;
	Form_pg_attribute res;
	Param	   *param;
	Node	   *expr;
	ParamListInfo compile;

	q->desc = CreateTupleDescCopy(desc);
	q->relname = pstrdup(relname);
	q->path = GetOverrideSearchPath(CurrentMemoryContext);
	cb->func = row_query_free;
	cb->arg = q;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "zdm: SPI_connect failed");
	q->plan = SPI_prepare_params(psprintf("SELECT (%s\n)", text), row_parser_setup, q,
								 CURSOR_OPT_GENERIC_PLAN);
	if (q->plan == NULL)
		elog(ERROR, "zdm: could not prepare an up/down expression (%s): %s",
			 SPI_result_code_string(SPI_result), text);
	if (SPI_keepplan(q->plan) != 0)
		elog(ERROR, "zdm: SPI_keepplan failed");
	source = linitial(SPI_plan_get_plan_sources(q->plan));
	res = TupleDescAttr(source->resultDesc, 0);
	SPI_finish();

	q->reslen = res->attlen;
	q->resbyval = res->attbyval;
	param = makeNode(Param);
	param->paramkind = PARAM_EXTERN;
	param->paramid = 1;
	param->paramtype = res->atttypid;
	param->paramtypmod = res->atttypmod;
	param->paramcollid = res->attcollation;
	param->location = -1;
	expr = coerce_to_target_type(NULL, (Node *) param, res->atttypid, typid, typmod,
								 COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
	if (expr == NULL)			/* expand checked it */
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("expression yields type %s, but the column is of type %s",
						format_type_be(res->atttypid), format_type_with_typemod(typid, typmod)),
				 errhint("Cast the expression to the column's type.")));
	expr = (Node *) expression_planner((Expr *) expr);
	compile = makeParamList(0);
	compile->paramCompile = row_query_param;
	compile->paramCompileArg = q;
	return ExecInitExprWithParams((Expr *) expr, compile);
}

/* The walk of zdm_row_columns: the depth of sub-select it is at. */
typedef struct RowColumns
{
	int			depth;
	Bitmapset  *atts;
} RowColumns;

static bool
row_columns_walker(Node *node, RowColumns *cx)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		Var		   *var = (Var *) node;

		if (var->varno == 1 && var->varlevelsup == cx->depth)
			cx->atts = bms_add_member(cx->atts, var->varattno - FirstLowInvalidHeapAttributeNumber);
		return false;
	}
	if (IsA(node, Query))
	{
		bool		result;

		cx->depth++;
		result = query_tree_walker((Query *) node, row_columns_walker, cx, 0);
		cx->depth--;
		return result;
	}
	return expression_tree_walker(node, row_columns_walker, cx);
}

/*
 * The columns of the row an analysed expression reads (zdm_expr_analyze_row:
 * varno 1), sub-selects included, numbered as pull_varattnos numbers them.
 */
Bitmapset *
zdm_row_columns(Node *expr)
{
	RowColumns	cx = {0, NULL};

	(void) row_columns_walker(expr, &cx);
	return cx.atts;
}
