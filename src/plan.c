/*-------------------------------------------------------------------------
 *
 * plan.c
 *	  Reading a migration's stored plan and backfill checkpoint back.
 *
 * expand.c writes each migration's plan (jsonb) into zdm.migrations, and
 * backfill.c its checkpoint: backfill_table, an index into the plan's
 * tables, and backfill_key, a text[].  Every later step reads them back
 * from there, and a row edited outside zdm may no longer have the shape
 * zdm wrote: a string where an array was, fewer key types than key
 * columns, a checkpoint key with the wrong number of elements.  So
 * nothing here trusts that shape: each value is checked for its type and
 * its bounds before it is used, and a bad one is an error (data_corrupted)
 * naming the migration and what is wrong, raised before the step that
 * reads it has changed anything.  The hint says what still works: a
 * migration whose plan or checkpoint is damaged can still be rolled back,
 * unless the damage is in the rollback steps themselves.
 *
 * The plan (see plan_json() in expand.c) is
 *
 *	{"search_path": "...",
 *	 "tables": [{"relation": qualified name, "table": name, "backfill": bool,
 *				 "key": [column, ...], "key_types": [type, ...],
 *				 "set": sql, "todo": sql, "verify": sql or null, ...}, ...],
 *	 "deferred": [step, ...], "contract": [step, ...], "rollback": [step, ...]}
 *
 * with each step {"relation": qualified name or null, "lock": level,
 * "sql": statement, "runs": where it runs, "index": the index a CREATE
 * INDEX CONCURRENTLY builds}; "runs" and "index" are optional, and
 * "deferred" is absent from plans of format 1.  The steps that do not run
 * in the caller are deferred.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include <math.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "storage/block.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/varlena.h"

/* Which stored state is read, for the error's message and hint. */
typedef enum StoredPart
{
	PART_PLAN,					/* the plan: zdm.rollback() still works */
	PART_ROLLBACK,				/* the plan's rollback steps */
	PART_CHECKPOINT				/* backfill_table and backfill_key */
} StoredPart;

typedef struct Reader
{
	const char *migration;
	StoredPart	part;
} Reader;

static void malformed(Reader *r, const char *fmt,...) pg_attribute_printf(2, 3) pg_attribute_noreturn();

/* Report stored state that does not have the shape zdm wrote. */
static void
malformed(Reader *r, const char *fmt,...)
{
	StringInfoData what;

	initStringInfo(&what);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&what, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&what, needed);
	}
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("migration \"%s\": stored %s is malformed: %s", r->migration,
					r->part == PART_CHECKPOINT ? "backfill checkpoint" : "plan", what.data),
			 r->part == PART_PLAN ?
			 errhint("The row in zdm.migrations was edited outside zdm; roll the migration back "
					 "with zdm.rollback('%s') or restore the row.", r->migration) :
			 r->part == PART_ROLLBACK ?
			 errhint("The row in zdm.migrations was edited outside zdm, and its rollback steps are "
					 "what zdm.rollback() runs: restore the row.") :
			 errhint("The row in zdm.migrations was edited outside zdm; restore the row, roll the "
					 "migration back with zdm.rollback('%s'), or set backfill_table = 0 and "
					 "backfill_key = NULL to walk its tables again from the start (rows already "
					 "converted are skipped).", r->migration)));
}

/* A column of a migration's row that must not be NULL is. */
void
zdm_stored_row_corrupt(const char *migration, const char *column)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("migration \"%s\": stored row is malformed: %s is null", migration, column),
			 errhint("The row in zdm.migrations was edited outside zdm; restore the row.")));
}

/* "\"key\" of table 2", for messages. */
static char *
field(const char *key, const char *of)
{
	return psprintf("\"%s\" of %s", key, of);
}

/* The plan's top-level object.  Without one, rollback cannot work either. */
static JsonbContainer *
plan_root(Reader *r, Jsonb *plan)
{
	if (plan == NULL || !JB_ROOT_IS_OBJECT(plan))
		r->part = PART_ROLLBACK;
	if (plan == NULL)
		malformed(r, "the plan is null");
	if (!JB_ROOT_IS_OBJECT(plan))
	{
		JsonbValue	v;

		if (JB_ROOT_IS_SCALAR(plan) && JsonbExtractScalar(&plan->root, &v))
			malformed(r, "the plan must be an object, not %s", zdm_json_type_name(&v));
		malformed(r, "the plan must be an object, not an array");
	}
	return &plan->root;
}

/* The value of key in an object, or NULL when absent. */
static JsonbValue *
member(JsonbContainer *obj, const char *key)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
}

/*
 * A string; what names it in messages.  NULL when it is absent or JSON
 * null and not required; empty only where allow_empty says so.
 */
static char *
text_value(Reader *r, JsonbValue *v, const char *what, bool required, bool allow_empty)
{
	char	   *s;

	if (v == NULL || (v->type == jbvNull && !required))
	{
		if (required)
			malformed(r, "%s is missing", what);
		return NULL;
	}
	if (v->type != jbvString)
		malformed(r, "%s must be a string, not %s", what, zdm_json_type_name(v));
	s = pnstrdup(v->val.string.val, v->val.string.len);
	if (strlen(s) != (size_t) v->val.string.len)
		malformed(r, "%s contains a NUL character", what);
	if (s[0] == '\0' && !allow_empty)
		malformed(r, "%s is empty", what);
	return s;
}

static bool
bool_value(Reader *r, JsonbValue *v, const char *what)
{
	if (v == NULL)
		malformed(r, "%s is missing", what);
	if (v->type != jbvBool)
		malformed(r, "%s must be a boolean, not %s", what, zdm_json_type_name(v));
	return v->val.boolean;
}

static JsonbContainer *
array_value(Reader *r, JsonbValue *v, const char *what)
{
	if (v == NULL)
		malformed(r, "%s is missing", what);
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		malformed(r, "%s must be an array, not %s", what, zdm_json_type_name(v));
	return v->val.binary.data;
}

static JsonbContainer *
object_value(Reader *r, JsonbValue *v, const char *what)
{
	if (v == NULL)
		malformed(r, "%s is missing", what);
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		malformed(r, "%s must be an object, not %s", what, zdm_json_type_name(v));
	return v->val.binary.data;
}

/*
 * A table's name as expand stored it, qualified and quoted: one to three
 * dotted identifiers, so it can go into a statement as it is.
 */
static char *
relation_value(Reader *r, JsonbValue *v, const char *what, bool required)
{
	char	   *s = text_value(r, v, what, required, false);
	List	   *names;

	if (s != NULL &&
		(!SplitIdentifierString(pstrdup(s), '.', &names) ||
		 list_length(names) < 1 || list_length(names) > 3))
		malformed(r, "%s is not a table name: \"%s\"", what, s);
	return s;
}

/* An array of n non-empty strings (n + 1 pointers allocated). */
static char **
string_array(Reader *r, JsonbContainer *array, const char *what)
{
	int			n = JsonContainerSize(array);
	char	  **result = palloc(sizeof(char *) * (n + 1));

	for (int i = 0; i < n; i++)
		result[i] = text_value(r, getIthJsonbValueFromContainer(array, i),
							   psprintf("element %d of %s", i + 1, what), true, false);
	return result;
}

/* The tables of a plan, each checked. */
List *
zdm_plan_tables(const char *migration, Jsonb *plan)
{
	Reader		r = {migration, PART_PLAN};
	JsonbContainer *tables = array_value(&r, member(plan_root(&r, plan), "tables"), "\"tables\"");
	int			n = JsonContainerSize(tables);
	List	   *result = NIL;

	for (int i = 0; i < n; i++)
	{
		char	   *of = psprintf("table %d", i + 1);
		JsonbContainer *t = object_value(&r, getIthJsonbValueFromContainer(tables, i), of);
		ZdmPlanTable *pt = palloc0(sizeof(ZdmPlanTable));
		JsonbContainer *key;
		JsonbContainer *types;
		int			ntypes;

		pt->relation = relation_value(&r, member(t, "relation"), field("relation", of), true);
		pt->table = text_value(&r, member(t, "table"), field("table", of), true, false);
		pt->backfill = bool_value(&r, member(t, "backfill"), field("backfill", of));
		key = array_value(&r, member(t, "key"), field("key", of));
		types = array_value(&r, member(t, "key_types"), field("key_types", of));
		pt->nkeys = JsonContainerSize(key);
		ntypes = JsonContainerSize(types);
		if (ntypes != pt->nkeys)
			malformed(&r, "%s has %d key column%s but %d key type%s", of,
					  pt->nkeys, pt->nkeys == 1 ? "" : "s", ntypes, ntypes == 1 ? "" : "s");
		pt->key = string_array(&r, key, field("key", of));
		pt->key_types = string_array(&r, types, field("key_types", of));
		if (pt->backfill)
		{
			pt->set = text_value(&r, member(t, "set"), field("set", of), true, false);
			pt->todo = text_value(&r, member(t, "todo"), field("todo", of), true, false);
		}
		pt->verify = text_value(&r, member(t, "verify"), field("verify", of), false, false);
		result = lappend(result, pt);
	}
	return result;
}

/* The search_path the plan's expressions resolve under ('' is one). */
char *
zdm_plan_search_path(const char *migration, Jsonb *plan)
{
	Reader		r = {migration, PART_PLAN};
	char	   *path = text_value(&r, member(plan_root(&r, plan), "search_path"),
								  "\"search_path\"", true, true);
	List	   *names;

	if (!SplitIdentifierString(pstrdup(path), ',', &names))
		malformed(&r, "\"search_path\" is not a list of schema names: \"%s\"", path);
	return path;
}

/*
 * The steps of a plan's "contract" or "rollback" section, each checked,
 * all of them before the first runs.
 */
List *
zdm_plan_steps(const char *migration, Jsonb *plan, const char *section)
{
	Reader		r = {migration, strcmp(section, "rollback") == 0 ? PART_ROLLBACK : PART_PLAN};
	char	   *name = psprintf("\"%s\"", section);
	JsonbContainer *root = plan_root(&r, plan);
	JsonbValue *format = member(root, "format");
	JsonbContainer *steps;
	int			n;
	List	   *result = NIL;

	/* A plan of a newer zdm may hold steps this one would misread. */
	if (format != NULL &&
		(format->type != jbvNumeric ||
		 DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(format->val.numeric))) < 1))
		malformed(&r, "\"format\" must be a positive number");
	if (format != NULL &&
		DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(format->val.numeric))) > ZDM_PLAN_FORMAT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": its plan has format %s, newer than this zdm's (%d)", migration,
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(format->val.numeric))),
						ZDM_PLAN_FORMAT),
				 errhint("Install the zdm release that expanded it (ALTER EXTENSION zdm UPDATE) and load it.")));
	/* Format 1 plans have no deferred steps. */
	if (member(root, section) == NULL && strcmp(section, "deferred") == 0)
		return NIL;
	steps = array_value(&r, member(root, section), name);
	n = JsonContainerSize(steps);

	for (int i = 0; i < n; i++)
	{
		char	   *of = psprintf("%s step %d", name, i + 1);
		JsonbContainer *s = object_value(&r, getIthJsonbValueFromContainer(steps, i), of);
		ZdmPlanStep *step = palloc0(sizeof(ZdmPlanStep));

		step->relation = relation_value(&r, member(s, "relation"), field("relation", of), false);
		step->lock = text_value(&r, member(s, "lock"), field("lock", of), true, false);
		step->sql = text_value(&r, member(s, "sql"), field("sql", of), true, false);
		step->runs = text_value(&r, member(s, "runs"), field("runs", of), false, false);
		if (step->runs == NULL)
			step->runs = ZDM_RUNS_CALLER;
		else if (strcmp(step->runs, ZDM_RUNS_CALLER) != 0 && strcmp(step->runs, ZDM_RUNS_WORKER) != 0 &&
				 strcmp(step->runs, ZDM_RUNS_OUTSIDE) != 0)
			malformed(&r, "%s must be \"%s\", \"%s\" or \"%s\", not \"%s\"", field("runs", of),
					  ZDM_RUNS_CALLER, ZDM_RUNS_WORKER, ZDM_RUNS_OUTSIDE, step->runs);
		/* The worker runs a deferred section whole: none of it in a caller. */
		if (strcmp(section, "deferred") == 0 && strcmp(step->runs, ZDM_RUNS_CALLER) == 0)
			malformed(&r, "%s must be \"%s\" or \"%s\" in the deferred steps", field("runs", of),
					  ZDM_RUNS_WORKER, ZDM_RUNS_OUTSIDE);
		step->index = relation_value(&r, member(s, "index"), field("index", of), false);
		/* A step on a table takes a lock on it (ddl.c); a step on none, "none". */
		if (strcmp(step->lock, "exclusive") != 0 && strcmp(step->lock, "validate") != 0 &&
			strcmp(step->lock, "share_row") != 0 &&
			(step->relation != NULL || strcmp(step->lock, "none") != 0))
			malformed(&r, "%s must be %s, not \"%s\"", field("lock", of),
					  step->relation ? "\"exclusive\", \"validate\" or \"share_row\" for a step on a table" :
					  "\"exclusive\", \"validate\", \"share_row\" or \"none\"",
					  step->lock);
		result = lappend(result, step);
	}
	return result;
}

/* Add a removed column (or table) to a list, once. */
static List *
removed_add(List *list, Oid relid, const char *column)
{
	ListCell   *lc;
	ZdmRemoved *r;

	if (!OidIsValid(relid))
		return list;
	foreach(lc, list)
	{
		r = lfirst(lc);
		if (r->relid == relid &&
			(r->column == NULL ? column == NULL : column != NULL && strcmp(r->column, column) == 0))
			return list;
	}
	r = palloc0(sizeof(ZdmRemoved));
	r->relid = relid;
	r->column = column ? pstrdup(column) : NULL;
	return lappend(list, r);
}

/* Take a column (renamed onto again) back off the list. */
static List *
removed_forget(List *list, Oid relid, const char *column)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		ZdmRemoved *r = lfirst(lc);

		if (r->relid == relid && r->column != NULL && strcmp(r->column, column) == 0)
			return foreach_delete_current(list, lc);
	}
	return list;
}

/*
 * What the steps of a plan section take away from the tables that exist
 * now: the columns its DDL drops or renames away (a column renamed onto
 * again, as an in-place alter_column's contract does, is not taken away),
 * and the tables it drops.  Read from the statements themselves, so any
 * plan, of any version, says it.  Logical replication needs it: a
 * subscriber must not lose a column its publisher still sends
 * (replication.c).
 */
List *
zdm_plan_removed(const char *migration, Jsonb *plan, const char *section)
{
	List	   *removed = NIL;
	List	   *renamed_onto = NIL;
	ListCell   *lc;

	foreach(lc, zdm_plan_steps(migration, plan, section))
	{
		ZdmPlanStep *step = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, raw_parser(step->sql, RAW_PARSE_DEFAULT))
		{
			Node	   *stmt = ((RawStmt *) lfirst(lc2))->stmt;

			if (IsA(stmt, AlterTableStmt) && ((AlterTableStmt *) stmt)->objtype == OBJECT_TABLE)
			{
				AlterTableStmt *a = (AlterTableStmt *) stmt;
				Oid			relid = RangeVarGetRelid(a->relation, NoLock, true);
				ListCell   *lc3;

				foreach(lc3, a->cmds)
				{
					AlterTableCmd *cmd = lfirst(lc3);

					if (cmd->subtype == AT_DropColumn)
						removed = removed_add(removed, relid, cmd->name);
				}
			}
			else if (IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_COLUMN)
			{
				RenameStmt *r = (RenameStmt *) stmt;
				Oid			relid = RangeVarGetRelid(r->relation, NoLock, true);

				removed = removed_add(removed, relid, r->subname);
				renamed_onto = removed_add(renamed_onto, relid, r->newname);
			}
			else if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_TABLE)
			{
				ListCell   *lc3;

				foreach(lc3, ((DropStmt *) stmt)->objects)
					removed = removed_add(removed,
										  RangeVarGetRelid(makeRangeVarFromNameList(lfirst(lc3)),
														   NoLock, true),
										  NULL);
			}
		}
	}
	foreach(lc, renamed_onto)
	{
		ZdmRemoved *r = lfirst(lc);

		removed = removed_forget(removed, r->relid, r->column);
	}
	return removed;
}

/* A block number of the ctid walk's checkpoint. */
static bool
is_block_number(const char *s)
{
	char	   *end;
	int64		v;

	errno = 0;
	v = strtoi64(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && v >= 0 && v <= (int64) MaxBlockNumber + 1;
}

/*
 * The backfill checkpoint, as read from zdm.migrations, checked against
 * the plan's tables: *idx is the table the walk is at (the number of
 * tables once it is done), *keyv and *nkey its state there (NULL: the
 * walk of that table has not started).  A table walked by its key has a
 * state of 2 * nkeys elements (the end key, then the last key converted)
 * or, as zdm 0.2 wrote it, nkeys (the last key); one walked by blocks,
 * 3 (next block, end block, rows per block).
 */
void
zdm_plan_checkpoint(const char *migration, List *tables,
					Datum table, bool table_null, Datum key, bool key_null,
					int *idx, char ***keyv, int *nkey)
{
	Reader		r = {migration, PART_CHECKPOINT};
	int			ntables = list_length(tables);
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	ZdmPlanTable *pt;

	if (table_null)
		malformed(&r, "backfill_table is null");
	*idx = DatumGetInt32(table);
	if (*idx < 0 || *idx > ntables)
		malformed(&r, "backfill_table must be between 0 and %d (the plan has %d table%s), not %d",
				  ntables, ntables, ntables == 1 ? "" : "s", *idx);
	*keyv = NULL;
	*nkey = 0;
	if (key_null)
		return;

	arr = DatumGetArrayTypeP(key);
	if (ARR_ELEMTYPE(arr) != TEXTOID)
		malformed(&r, "backfill_key must be an array of text");
	if (ARR_NDIM(arr) > 1)
		malformed(&r, "backfill_key must be a one-dimensional array, not %d-dimensional",
				  ARR_NDIM(arr));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (nulls[i])
			malformed(&r, "element %d of backfill_key is null", i + 1);
	if (*idx == ntables)
		malformed(&r, "backfill_key is set, but backfill_table %d is past the plan's last table",
				  *idx);
	pt = list_nth(tables, *idx);
	if (!pt->backfill)
		malformed(&r, "backfill_key is set, but table \"%s\" (backfill_table %d) has nothing to backfill",
				  pt->table, *idx);
	if (pt->nkeys > 0 && n != pt->nkeys && n != 2 * pt->nkeys)
		malformed(&r, "backfill_key has %d element%s, but table \"%s\" has %d key column%s "
				  "(%d or %d elements expected)", n, n == 1 ? "" : "s", pt->table,
				  pt->nkeys, pt->nkeys == 1 ? "" : "s", pt->nkeys, 2 * pt->nkeys);
	if (pt->nkeys == 0 && n != 3)
		malformed(&r, "backfill_key has %d element%s, but table \"%s\" has no key and is walked "
				  "by blocks (3 elements expected)", n, n == 1 ? "" : "s", pt->table);

	*nkey = n;
	*keyv = palloc(sizeof(char *) * (n + 1));
	for (int i = 0; i < n; i++)
		(*keyv)[i] = TextDatumGetCString(elems[i]);

	if (pt->nkeys == 0)
	{
		char	   *end;
		double		per_block;

		for (int i = 0; i < 2; i++)
			if (!is_block_number((*keyv)[i]))
				malformed(&r, "element %d of backfill_key must be a block number, not \"%s\"",
						  i + 1, (*keyv)[i]);
		errno = 0;
		per_block = strtod((*keyv)[2], &end);
		if (errno != 0 || end == (*keyv)[2] || *end != '\0' || !isfinite(per_block) || per_block <= 0)
			malformed(&r, "element 3 of backfill_key must be a positive number of rows per block, not \"%s\"",
					  (*keyv)[2]);
	}
}
