/*-------------------------------------------------------------------------
 *
 * expr.c
 *	  Parsing and analysing the SQL expressions a migration carries.
 *
 * A migration's "up", "down" and "default" are SQL expressions written by
 * the user.  zdm never pastes them into SQL unchecked: each is parsed on
 * its own, as the single target of "SELECT (<expr>\n)", and refused unless
 * that yields exactly one statement with one unnamed target and no FROM,
 * WHERE, set operation or other clause.  That makes "1; DROP TABLE t" or
 * "1) FROM pg_authid --" parse errors, and lets later steps embed the text
 * in parentheses safely.
 *
 * Analysis runs against a row type rather than a table: the expression is
 * resolved over an ephemeral named relation whose tuple descriptor is the
 * table's columns plus the columns the migration will add.  That lets
 * expand check a "down" expression that reads a column which does not
 * exist yet, before any DDL runs; and lets the dual-write trigger compile
 * the same text against the table's real descriptor, so Vars carry the
 * attribute numbers of the row the trigger sees.
 *
 * Names in expressions resolve through the search_path in effect when the
 * migration was expanded; the plan stores it and every later step (the
 * trigger, the backfill, verify) sets it again while it works.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/queryenvironment.h"

/*
 * pgroll writes some expressions as "SELECT CASE ... END": drop a leading
 * SELECT keyword so the rest is the expression itself.
 */
char *
zdm_expr_normalize(const char *text)
{
	const char *p = text;

	while (*p && isspace((unsigned char) *p))
		p++;
	if (pg_strncasecmp(p, "select", 6) == 0 &&
		(isspace((unsigned char) p[6]) || p[6] == '('))
	{
		p += 6;
		while (*p && isspace((unsigned char) *p))
			p++;
	}
	return pstrdup(p);
}

/* Re-raise the current error with the migration and object in front. */
static void
rethrow_with_context(MemoryContext cxt, const char *migration, const char *what)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	ereport(ERROR,
			(errcode(edata->sqlerrcode == ERRCODE_INTERNAL_ERROR ?
					 ERRCODE_INVALID_PARAMETER_VALUE : edata->sqlerrcode),
			 errmsg("migration \"%s\": %s is invalid: %s",
					migration, what, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 errhint("%s", edata->hint ? edata->hint :
					 "Write it as one SQL expression over the table's columns.")));
}

static void
refuse_shape(const char *migration, const char *what, const char *text,
			 const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_SYNTAX_ERROR),
			 errmsg("migration \"%s\": %s must be a single SQL expression, but it %s",
					migration, what, why),
			 errdetail("The text was: %s", text),
			 errhint("Write one expression over the row's columns, such as \"lower(legacy_status)\".")));
}

/*
 * Parse text as one expression; return its raw parse tree.  Everything a
 * SELECT could carry besides one target is refused.
 */
static Node *
expr_parse(const char *migration, const char *what, const char *text)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *sql = psprintf("SELECT (%s\n)", text);
	List	   *stmts = NIL;
	SelectStmt *sel;
	ResTarget  *target;

	PG_TRY();
	{
		stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		rethrow_with_context(cxt, migration, what);
	}
	PG_END_TRY();

	if (list_length(stmts) != 1)
		refuse_shape(migration, what, text, "contains more than one statement");
	sel = (SelectStmt *) linitial_node(RawStmt, stmts)->stmt;
	if (!IsA(sel, SelectStmt) || sel->op != SETOP_NONE)
		refuse_shape(migration, what, text, "is a query, not an expression");
	if (sel->fromClause || sel->whereClause || sel->groupClause ||
		sel->havingClause || sel->windowClause || sel->distinctClause ||
		sel->intoClause || sel->withClause || sel->valuesLists ||
		sel->sortClause || sel->limitCount || sel->limitOffset ||
		sel->lockingClause)
		refuse_shape(migration, what, text, "has clauses of a query");
	if (list_length(sel->targetList) != 1)
		refuse_shape(migration, what, text, "yields more than one value");
	target = linitial_node(ResTarget, sel->targetList);
	if (target->name != NULL || target->indirection != NIL)
		refuse_shape(migration, what, text, "names its result");
	return target->val;
}

/* Check that text is one SQL expression, without resolving any names. */
void
zdm_expr_check_syntax(const char *migration, const char *what, const char *text)
{
	(void) expr_parse(migration, what, text);
}

/*
 * Does the expression read the row whole or a system column of it?  Inside
 * a sub-select the row is the Var of varno 1 one level further up; the
 * sub-select's own whole-row references are its business.
 */
static bool
has_whole_row_var(Node *node, int *depth)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		Var		   *var = (Var *) node;

		return var->varlevelsup == *depth && var->varno == 1 && var->varattno <= 0;
	}
	if (IsA(node, Query))
	{
		bool		found;

		(*depth)++;
		found = query_tree_walker((Query *) node, has_whole_row_var, depth, 0);
		(*depth)--;
		return found;
	}
	return expression_tree_walker(node, has_whole_row_var, depth);
}

/*
 * Analyse text as an expression over a row of type desc (named relname),
 * coerced to typid/typmod as an assignment would be (InvalidOid: left as
 * it is).  Returns the analysed tree; Vars have varno 1 and the attribute
 * numbers of desc (varlevelsup 1 or more inside a sub-select).  Only up
 * and down may hold sub-selects (zdm_expr_analyze_row): a default or a
 * check cannot.
 */
static Node *
expr_analyze(const char *migration, const char *what, TupleDesc desc,
			 const char *relname, const char *text, Oid typid, int32 typmod,
			 bool sublinks)
{
	MemoryContext cxt = CurrentMemoryContext;
	Node	   *raw = expr_parse(migration, what, text);
	Node	   *expr = NULL;
	ParseState *pstate;
	int			depth = 0;

	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = text;

	PG_TRY();
	{
		QueryEnvironment *env = create_queryEnv();
		EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));
		ParseNamespaceItem *nsitem;

		enr->md.name = pstrdup(relname);
		enr->md.reliddesc = InvalidOid;
		enr->md.tupdesc = desc;
		enr->md.enrtype = ENR_NAMED_TUPLESTORE;
		enr->md.enrtuples = 0;
		register_ENR(env, enr);
		pstate->p_queryEnv = env;

		nsitem = addRangeTableEntryForENR(pstate, makeRangeVar(NULL, enr->md.name, -1), true);
		addNSItemToQuery(pstate, nsitem, true, true, true);

		expr = transformExpr(pstate, raw, EXPR_KIND_SELECT_TARGET);
	}
	PG_CATCH();
	{
		rethrow_with_context(cxt, migration, what);
	}
	PG_END_TRY();

	if (pstate->p_hasSubLinks && !sublinks)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": %s must not contain a subquery", migration, what),
				 errhint("A default or a check constraint is computed from the row's own columns; "
						 "only \"up\" and \"down\" may read other rows.")));
	if (pstate->p_hasAggs || pstate->p_hasWindowFuncs)
		ereport(ERROR,
				(errcode(ERRCODE_GROUPING_ERROR),
				 errmsg("migration \"%s\": %s must not use aggregate or window functions",
						migration, what),
				 errhint("Compute the value from the row's own columns.")));
	if (pstate->p_hasTargetSRFs || expression_returns_set(expr))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": %s must not return a set", migration, what),
				 errhint("Compute one value per row.")));
	if (has_whole_row_var(expr, &depth))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": %s must not refer to the whole row or a system column",
						migration, what),
				 errhint("Name the columns it reads.")));

	if (OidIsValid(typid))
	{
		Oid			exprtype = exprType(expr);
		Node	   *coerced;

		coerced = coerce_to_target_type(pstate, expr, exprtype, typid, typmod,
										COERCION_ASSIGNMENT,
										COERCE_IMPLICIT_CAST, -1);
		if (coerced == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("migration \"%s\": %s yields type %s, but the column is of type %s",
							migration, what, format_type_be(exprtype),
							format_type_with_typemod(typid, typmod)),
					 errhint("Cast the expression, e.g. \"(%s)::%s\".",
							 text, format_type_with_typemod(typid, typmod))));
		expr = coerced;
	}
	assign_expr_collations(pstate, expr);
	free_parsestate(pstate);
	return expr;
}

/* A default or a check: an expression over the row's own columns. */
Node *
zdm_expr_analyze(const char *migration, const char *what, TupleDesc desc,
				 const char *relname, const char *text, Oid typid, int32 typmod)
{
	return expr_analyze(migration, what, desc, relname, text, typid, typmod, false);
}

/*
 * An up or down expression: it may also read other rows through
 * sub-selects (the dual-write trigger runs those as queries: subquery.c).
 */
Node *
zdm_expr_analyze_row(const char *migration, const char *what, TupleDesc desc,
					 const char *relname, const char *text, Oid typid, int32 typmod)
{
	return expr_analyze(migration, what, desc, relname, text, typid, typmod, true);
}

/* Set search_path for the duration of one step; undo with zdm_guc_pop. */
int
zdm_search_path_push(const char *search_path)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", search_path,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* Restore the GUCs set since nestlevel. */
void
zdm_guc_pop(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * desc as a version sees it when a column changed in place: the old column
 * hidden, the physically new one under the old name.  Attribute numbers
 * stay those of the table, so Vars still address the real row.
 */
TupleDesc
zdm_desc_as_seen(TupleDesc desc, const char *col, const char *physical)
{
	TupleDesc	d = CreateTupleDescCopy(desc);

	for (int i = 0; i < d->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(d, i);

		if (att->attisdropped)
			continue;
		if (strcmp(NameStr(att->attname), col) == 0)
			att->attisdropped = true;
		else if (strcmp(NameStr(att->attname), physical) == 0)
			namestrcpy(&att->attname, col);
	}
	return d;
}

/* A column reference naming a column to rename, found in the parse tree. */
typedef struct RenameRefs
{
	const char *from;
	List	   *locations;		/* of each reference, in the SELECT's text */
} RenameRefs;

static bool
collect_column_refs(Node *node, RenameRefs *refs)
{
	if (node == NULL)
		return false;
	if (IsA(node, ColumnRef))
	{
		ColumnRef  *cref = (ColumnRef *) node;
		Node	   *last = llast(cref->fields);

		if (IsA(last, String) && strcmp(strVal(last), refs->from) == 0)
			refs->locations = lappend_int(refs->locations, cref->location);
		return false;
	}
	return raw_expression_tree_walker(node, collect_column_refs, (void *) refs);
}

/* Where the identifier starting at p ends, or NULL if none starts there. */
static const char *
identifier_end(const char *p)
{
	if ((p[0] == 'U' || p[0] == 'u') && p[1] == '&' && p[2] == '"')
		p += 2;
	if (*p == '"')
	{
		for (p++; *p; p++)
			if (*p == '"')
			{
				if (p[1] != '"')
					return p + 1;
				p++;
			}
		return NULL;
	}
	if (!(isalpha((unsigned char) *p) || *p == '_' || IS_HIGHBIT_SET(*p)))
		return NULL;
	while (isalnum((unsigned char) *p) || *p == '_' || *p == '$' || IS_HIGHBIT_SET(*p))
		p++;
	return p;
}

/* Is the identifier from start to end (as identifier_end found it) name? */
static bool
identifier_is(const char *start, const char *end, const char *name)
{
	StringInfoData id;

	if ((*start == 'U' || *start == 'u') && start[1] == '&')
		return true;			/* U&"...": taken on trust */
	if (*start != '"')
		return strcmp(downcase_truncate_identifier(start, end - start, false), name) == 0;
	initStringInfo(&id);
	for (const char *p = start + 1; p < end - 1; p++)
	{
		appendStringInfoChar(&id, *p);
		if (*p == '"')
			p++;
	}
	return strcmp(id.data, name) == 0;
}

/*
 * text, an expression over one table's row (a check constraint), with every
 * reference to column "from" made to name column "to" instead: the
 * constraint the old column had, or a migration's check written with the
 * column's visible name, put on a physically new column.  The references
 * are found by parsing, so a string literal or a function of that name is
 * left alone; the qualification of a reference (t.col) is kept.  Not for
 * text with sub-selects, whose columns may belong to other tables.
 */
char *
zdm_expr_rename_column(const char *migration, const char *what, const char *text,
					   const char *from, const char *to)
{
	const char *prefix = "SELECT (";
	char	   *sql = psprintf("%s%s\n)", prefix, text);
	RenameRefs	refs = {from, NIL};
	StringInfoData out;
	int			done = 0;
	ListCell   *lc;

	(void) collect_column_refs(expr_parse(migration, what, text), &refs);
	list_sort(refs.locations, list_int_cmp);
	initStringInfo(&out);
	foreach(lc, refs.locations)
	{
		int			loc = lfirst_int(lc) - (int) strlen(prefix);
		const char *p = text + loc;
		const char *start = p;
		const char *end = identifier_end(p);

		/* the last of the dotted names is the column */
		while (end != NULL)
		{
			const char *q = end;

			while (isspace((unsigned char) *q))
				q++;
			if (*q != '.')
				break;
			q++;
			while (isspace((unsigned char) *q))
				q++;
			start = q;
			end = identifier_end(q);
		}
		if (loc < done || end == NULL || !identifier_is(start, end, from))
			elog(ERROR, "zdm: could not find column reference \"%s\" at offset %d of \"%s\"",
				 from, loc, sql);
		appendBinaryStringInfo(&out, text + done, start - (text + done));
		appendStringInfoString(&out, quote_identifier(to));
		done = end - text;
	}
	appendStringInfoString(&out, text + done);
	return out.data;
}
