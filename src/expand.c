/*-------------------------------------------------------------------------
 *
 * expand.c
 *	  zdm.expand(): check a migration whole, then apply its additive part.
 *
 * Expand works in three passes, all in the caller's transaction:
 *
 *	1. Coordination: the migration's advisory lock (never waited for), then
 *	   its state row: already expanded with the same definition means a
 *	   NOTICE and false, another definition under the same name an ERROR.
 *
 *	2. Checking: first zdm's claim on every existing table the operations
 *	   name, all at once (locks.c): another migration's expand, contract or
 *	   rollback of one of them is waited for here, while this one holds no
 *	   lock on the tables, and the checks then see what it did.  Then
 *	   every operation is validated against the catalogs, under
 *	   ACCESS SHARE locks (which block no client query): tables, columns and
 *	   types exist, names do not clash, up/down/default expressions parse,
 *	   resolve and yield the column's type.  Each operation contributes
 *	   statements to three lists per table (expand, contract, rollback) and
 *	   dual-write rules for its table's trigger.  Nothing is changed yet.
 *
 *	3. Applying: ACCESS EXCLUSIVE on every existing table involved, taken
 *	   with the retrying lock of locks.c, then the expand statements, the
 *	   triggers and the state row.  An error anywhere rolls all of it back.
 *
 * The lists of step 2 become the migration's plan (jsonb): contract,
 * rollback, backfill and verify later execute it as written.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(zdm_expand);

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
	List	   *carried;		/* OIDs of constraints an alter_column carries */
	bool		old_view_created;	/* expand created the old version's view */
	List	   *check_refs;		/* alter_column "check": pairs of constraint
								 * and a column it names */
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
} ExpandState;

static const char *const top_keys[] = {"operations", "name", "schema", "versions", "version_schema", NULL};

/* ---------- small helpers ---------- */

static char *
qcol(const char *col)
{
	return (char *) quote_identifier(col);
}

static bool
str_in_list(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
		if (strcmp((char *) lfirst(lc), s) == 0)
			return true;
	return false;
}

/* A name zdm makes up, clipped to NAMEDATALEN and made unique by a hash. */
static char *
made_name(const char *prefix, const char *a, const char *b)
{
	char	   *full = psprintf("%s%s_%s", prefix, a, b ? b : "");
	uint32		h = hash_bytes((const unsigned char *) full, strlen(full));
	char	   *base = psprintf("%s%s%s%s", prefix, a, b ? "_" : "", b ? b : "");
	int			keep = pg_mbcliplen(base, strlen(base), NAMEDATALEN - 1 - 9);

	return psprintf("%.*s_%08x", keep, base, h);
}

/* The same, for the helpers of expand (duplicate.c). */
char *
zdm_made_name(const char *prefix, const char *a, const char *b)
{
	return made_name(prefix, a, b);
}

/* Attribute number of col in desc, or 0. */
static AttrNumber
desc_attnum(TupleDesc desc, const char *col)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), col) == 0)
			return i + 1;
	}
	return 0;
}

/* desc with one more column. */
static TupleDesc
desc_add_column(TupleDesc desc, const char *col, Oid typid, int32 typmod)
{
	TupleDesc	d = CreateTemplateTupleDesc(desc->natts + 1);

	for (int i = 1; i <= desc->natts; i++)
		TupleDescCopyEntry(d, i, desc, i);
	TupleDescInitEntry(d, desc->natts + 1, col, typid, typmod, 0);
	TupleDescAttr(d, desc->natts)->attcollation = get_typcollation(typid);
	return d;
}

/* Resolve a type name; the qualified spelling goes to *typname_out. */
static void
resolve_type(ExpandState *st, const char *typname, const char *colname,
			 Oid *typid, int32 *typmod, char **typname_out)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		parseTypeString(typname, typid, typmod, false);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode == ERRCODE_SYNTAX_ERROR ?
						 ERRCODE_SYNTAX_ERROR : ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\": type \"%s\" of column \"%s\" is invalid: %s",
						st->migration, typname, colname, edata->message),
				 errhint("Create the type before expanding, or correct its name.")));
	}
	PG_END_TRY();
	if (get_typtype(*typid) == TYPTYPE_PSEUDO)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": column \"%s\" cannot be of pseudo-type %s",
						st->migration, colname, format_type_be(*typid)),
				 errhint("Choose a real data type.")));
	*typname_out = format_type_extended(*typid, *typmod,
										FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
}

/* Find or open the TableWork of an existing table named in an operation. */
static TableWork *
table_work(ExpandState *st, const char *table, bool must_exist)
{
	RangeVar   *rv = makeRangeVar(st->schema ? pstrdup(st->schema) : NULL,
								  pstrdup(table), -1);
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);
	TableWork  *tw;
	Relation	rel;
	ListCell   *lc;
	ZdmLockStats stats;

	foreach(lc, st->tables)
	{
		tw = lfirst(lc);
		if ((OidIsValid(relid) && tw->relid == relid) ||
			(!OidIsValid(tw->relid) && strcmp(tw->name, table) == 0 &&
			 (st->schema == NULL || strcmp(tw->schema, st->schema) == 0)))
			return tw;
	}
	if (!OidIsValid(relid))
	{
		if (!must_exist)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("migration \"%s\": %s: table \"%s\" does not exist",
						st->migration, st->ctx.opname, table),
				 errhint("Create it first (with a create_table operation), or correct the name; "
						 "unqualified names are looked up through search_path or the migration's \"schema\".")));
	}

	/*
	 * The claim first, then ACCESS SHARE, which keeps the definition still
	 * while we check and blocks no DML.  The claim is normally held already
	 * (expand_claim_tables); this one covers a table renamed in between.
	 */
	zdm_claim_relations(st->migration, list_make1_oid(relid), &stats);
	zdm_lock_stats_add(&st->claim, &stats);
	zdm_lock_relations(st->migration, list_make1_oid(relid), AccessShareLock, &stats);
	rel = try_relation_open(relid, NoLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("migration \"%s\": table \"%s\" was dropped concurrently",
						st->migration, table),
				 errhint("Run the migration again.")));
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\": \"%s\" is not a table", st->migration, table),
				 errhint("zdm migrates ordinary and partitioned tables only.")));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\": \"%s\" is a temporary table", st->migration, table),
				 errhint("Temporary tables need no zero-downtime migration; alter them directly.")));
	if (rel->rd_rel->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\": \"%s\" is a partition", st->migration, table),
				 errhint("Migrate the partitioned table \"%s\"; zdm applies it to every partition.",
						 get_rel_name(get_partition_parent(relid, false)))));

	tw = palloc0(sizeof(TableWork));
	tw->relid = relid;
	tw->schema = get_namespace_name(RelationGetNamespace(rel));
	tw->name = pstrdup(RelationGetRelationName(rel));
	tw->qualname = quote_qualified_identifier(tw->schema, tw->name);
	tw->reldesc = CreateTupleDescCopyConstr(RelationGetDescr(rel));
	tw->desc = CreateTupleDescCopy(RelationGetDescr(rel));
	relation_close(rel, NoLock);
	st->tables = lappend(st->tables, tw);
	return tw;
}

/* An existing column of the table, or a clear error. */
static Form_pg_attribute
existing_column(ExpandState *st, TableWork *tw, const char *col)
{
	AttrNumber	attnum = OidIsValid(tw->relid) ? desc_attnum(tw->desc, col) : 0;

	if (attnum == 0 || str_in_list(tw->claimed, col))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("migration \"%s\": %s: column \"%s\" of table \"%s\" does not exist",
						st->migration, st->ctx.opname, col, tw->name),
				 errhint("Correct the column's name.")));
	if (str_in_list(tw->touched, col))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" is changed by more than one operation",
						st->migration, col, tw->name),
				 errhint("Change each column once per migration; split the rest into a later migration.")));
	tw->touched = lappend(tw->touched, pstrdup(col));
	return TupleDescAttr(tw->reldesc, attnum - 1);
}

/* Claim a new column name, refusing a clash. */
static void
claim_column(ExpandState *st, TableWork *tw, const char *col)
{
	if (strlen(col) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": column name \"%s\" is too long", st->migration, col),
				 errhint("Column names are at most %d bytes.", NAMEDATALEN - 1)));
	if (desc_attnum(tw->desc, col) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("migration \"%s\": %s: column \"%s\" of table \"%s\" already exists",
						st->migration, st->ctx.opname, col, tw->name),
				 errhint("Choose a column name the table does not have yet.")));
	tw->claimed = lappend(tw->claimed, pstrdup(col));
}

/*
 * The primary key, or a unique NOT NULL key, of a table needing backfill.
 * A table with neither keeps an empty key: its backfill walks ranges of
 * blocks (ctid) instead.
 */
static void
find_backfill_key(ExpandState *st, TableWork *tw)
{
	Relation	rel;
	List	   *indexes;
	ListCell   *lc;
	Oid			best = InvalidOid;

	if (tw->key_searched)
		return;
	tw->key_searched = true;
	rel = relation_open(tw->relid, NoLock);
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		Form_pg_index idx;
		bool		usable;

		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);
		usable = idx->indisunique && idx->indimmediate && idx->indisvalid &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL);
		for (int i = 0; usable && i < idx->indnkeyatts; i++)
			usable = TupleDescAttr(tw->reldesc, idx->indkey.values[i] - 1)->attnotnull;
		if (usable && (idx->indisprimary || !OidIsValid(best)))
		{
			best = indexoid;
			list_free(tw->key);
			list_free(tw->key_types);
			tw->key = NIL;
			tw->key_types = NIL;
			for (int i = 0; i < idx->indnkeyatts; i++)
			{
				Form_pg_attribute att = TupleDescAttr(tw->reldesc, idx->indkey.values[i] - 1);

				tw->key = lappend(tw->key, pstrdup(NameStr(att->attname)));
				tw->key_types = lappend(tw->key_types,
										format_type_extended(att->atttypid, att->atttypmod,
															 FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY));
			}
		}
		ReleaseSysCache(tup);
		if (OidIsValid(best) && usable && idx->indisprimary)
			break;
	}
	relation_close(rel, NoLock);
}

/* A key column may not be altered or dropped: the backfill walks it. */
static void
refuse_key_column(ExpandState *st, TableWork *tw, const char *col)
{
	ListCell   *lc;

	find_backfill_key(st, tw);
	foreach(lc, tw->key)
		if (strcmp((char *) lfirst(lc), col) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration \"%s\": column \"%s\" of table \"%s\" is part of its key",
							st->migration, col, tw->name),
					 errhint("zdm cannot alter or drop a primary key column in place; add a new key first.")));
}

/* "default": checked, refused when it would rewrite the table. */
static char *
check_default(ExpandState *st, TableWork *tw, const char *col, const char *text,
			  Oid typid, int32 typmod, bool existing_rows)
{
	char	   *what = psprintf("default of column \"%s\"", col);
	Node	   *expr;

	expr = zdm_expr_analyze(st->migration, what, CreateTemplateTupleDesc(0),
							tw->name, text, typid, typmod);
	if (existing_rows && contain_volatile_functions(expr))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": volatile default of new column \"%s\" would rewrite table \"%s\" under ACCESS EXCLUSIVE",
						st->migration, col, tw->name),
				 errhint("Leave \"default\" out and give \"up\" instead: zdm fills existing rows in batches and new ones by trigger.")));
	return psprintf("(%s\n)", text);
}

/* A named CHECK constraint on a column: NOT VALID now, VALIDATE at contract. */
static void
add_check(ExpandState *st, TableWork *tw, JsonbContainer *check, bool existing_rows)
{
	static const char *const keys[] = {"name", "constraint", NULL};
	static const char *const unsupported[] = {"no_inherit", NULL};
	char	   *name = zdm_json_string(&st->ctx, check, "name", true);
	char	   *text = zdm_json_string(&st->ctx, check, "constraint", true);
	char	   *what = psprintf("check constraint \"%s\"", name);
	char	   *cname = (char *) quote_identifier(name);

	zdm_json_check_keys(&st->ctx, check, "\"check\"", keys, unsupported);
	/* PostgreSQL would truncate it with a NOTICE: contract would then name another */
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": constraint name \"%s\" of table \"%s\" is too long",
						st->migration, name, tw->name),
				 errhint("Constraint names are at most %d bytes.", NAMEDATALEN - 1)));
	if (existing_rows)
		(void) zdm_expr_analyze(st->migration, what, tw->desc, tw->name, text, BOOLOID, -1);
	else
		zdm_expr_check_syntax(st->migration, what, text);

	tw->expand = lappend(tw->expand,
						 psprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s\n)%s",
								  tw->qualname, cname, text,
								  existing_rows ? " NOT VALID" : ""));
	if (existing_rows)
		tw->validate = lappend(tw->validate,
							   psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", tw->qualname, cname));
}

/*
 * NOT NULL on a column of a live table: a NOT VALID check enforces it for
 * new writes at once; contract validates it (no exclusive lock), then SET
 * NOT NULL finds the valid check and skips its scan, then drops the check.
 */
static void
add_not_null(TableWork *tw, const char *col)
{
	char	   *cname = (char *) quote_identifier(made_name("zdm_nn_", tw->name, col));

	tw->expand = lappend(tw->expand,
						 psprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID",
								  tw->qualname, cname, qcol(col)));
	tw->validate = lappend(tw->validate,
						   psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", tw->qualname, cname));
	tw->contract = lappend(tw->contract,
						   psprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL", tw->qualname, qcol(col)));
	tw->contract = lappend(tw->contract,
						   psprintf("ALTER TABLE %s DROP CONSTRAINT %s", tw->qualname, cname));
	tw->verify = lappend(tw->verify, psprintf("%s IS NULL", qcol(col)));
}

static void
add_comment(TableWork *tw, const char *col, const char *comment)
{
	if (comment)
		tw->expand = lappend(tw->expand,
							 psprintf("COMMENT ON COLUMN %s.%s IS %s", tw->qualname, qcol(col),
									  quote_literal_cstr(comment)));
}

static void
refuse_flag(ExpandState *st, JsonbContainer *obj, const char *key, const char *hint)
{
	if (zdm_json_bool(&st->ctx, obj, key, false))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": \"%s\" in %s is not supported by zdm yet",
						st->migration, key, st->ctx.opname),
				 errhint("%s", hint)));
}

static const char *const column_keys[] = {"name", "type", "nullable", "default", "check", "comment", "pk", "unique", NULL};
static const char *const column_unsupported[] = {"references", "generated", NULL};

/* ---------- operations ---------- */

static void
op_add_column(ExpandState *st, JsonbContainer *op)
{
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	JsonbContainer *column = zdm_json_object(&st->ctx, op, "column", true);
	char	   *up = zdm_json_string(&st->ctx, op, "up", false);
	char	   *col,
			   *type,
			   *typname,
			   *dflt,
			   *comment,
			   *def_sql = NULL;
	bool		nullable;
	Oid			typid;
	int32		typmod;
	TableWork  *tw;

	zdm_json_check_keys(&st->ctx, column, "\"column\"", column_keys, column_unsupported);
	col = zdm_json_string(&st->ctx, column, "name", true);
	type = zdm_json_string(&st->ctx, column, "type", true);
	nullable = zdm_json_bool(&st->ctx, column, "nullable", false);
	dflt = zdm_json_string(&st->ctx, column, "default", false);
	comment = zdm_json_string(&st->ctx, column, "comment", false);
	refuse_flag(st, column, "pk", "Add the key with CREATE UNIQUE INDEX CONCURRENTLY and ALTER TABLE ... ADD PRIMARY KEY USING INDEX.");
	refuse_flag(st, column, "unique", "Add the column first, then CREATE UNIQUE INDEX CONCURRENTLY in a later step.");

	tw = table_work(st, table, true);
	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": add_column on table \"%s\", which this migration creates",
						st->migration, table),
				 errhint("List the column in the create_table operation instead.")));
	claim_column(st, tw, col);
	resolve_type(st, type, col, &typid, &typmod, &typname);
	if (dflt)
		def_sql = check_default(st, tw, col, dflt, typid, typmod, true);
	tw->desc = desc_add_column(tw->desc, col, typid, typmod);
	if (up)
	{
		up = zdm_expr_normalize(up);
		(void) zdm_expr_analyze_row(st->migration, psprintf("up expression of column \"%s\"", col),
									tw->desc, tw->name, up, typid, typmod);
	}
	if (!nullable && !dflt && !up)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": new column \"%s\" of table \"%s\" is NOT NULL but has neither \"default\" nor \"up\"",
						st->migration, col, tw->name),
				 errhint("Give \"up\" to compute it for existing and new rows, or a \"default\", or set \"nullable\": true.")));

	tw->expand = lappend(tw->expand,
						 psprintf("ALTER TABLE %s ADD COLUMN %s %s%s%s", tw->qualname, qcol(col), typname,
								  def_sql ? " DEFAULT " : "", def_sql ? def_sql : ""));
	if (!nullable)
		add_not_null(tw, col);
	if (zdm_json_has(column, "check"))
		add_check(st, tw, zdm_json_object(&st->ctx, column, "check", true), true);
	add_comment(tw, col, comment);
	tw->rollback = lappend(tw->rollback,
						   psprintf("ALTER TABLE %s DROP COLUMN %s", tw->qualname, qcol(col)));
	tw->new_physical = lappend(tw->new_physical, col);
	tw->new_visible = lappend(tw->new_visible, col);

	if (up)
	{
		DualRule   *r = palloc0(sizeof(DualRule));

		r->new_col = col;
		r->visible = col;
		r->up = up;
		tw->rules = lappend(tw->rules, r);
		/* With a default, existing rows already hold it: nothing to backfill. */
		if (!dflt)
		{
			find_backfill_key(st, tw);
			tw->sets = lappend(tw->sets, psprintf("%s = (%s\n)", qcol(col), up));
			tw->todo = lappend(tw->todo, psprintf("%s IS NULL", qcol(col)));
			tw->verify = lappend(tw->verify,
								 psprintf("(%s IS NULL AND (%s\n) IS NOT NULL)", qcol(col), up));
		}
	}
}

static bool view_exists(TableWork *tw, const char *version);

/*
 * A constraint naming two columns that this migration both replaces would
 * have to be rewritten for both at once: refused rather than carried twice.
 */
static void
refuse_carried_twice(ExpandState *st, TableWork *tw, const char *col, List *constraints)
{
	ListCell   *lc;

	foreach(lc, constraints)
	{
		Oid			con = lfirst_oid(lc);

		if (list_member_oid(tw->carried, con))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" names column \"%s\" and another column this migration replaces",
							st->migration, get_constraint_name(con), tw->name, col),
					 errhint("Replace one of the two columns per migration, or drop the constraint before the migration and add it again after contract.")));
		tw->carried = lappend_oid(tw->carried, con);
	}
}

/*
 * The views of the table that expand drops and creates again: the
 * versions' views of a table whose columns the new version sees changed.
 */
static List *
replaced_views(ExpandState *st, TableWork *tw)
{
	List	   *views = NIL;
	const char *versions[2] = {st->version_old, st->version_new};

	if (st->version_new == NULL)
		return NIL;
	for (int i = 0; i < 2; i++)
		if (versions[i] && view_exists(tw, versions[i]))
			views = lappend_oid(views, get_relname_relid(tw->name, get_namespace_oid(versions[i], false)));
	return views;
}

static void
op_alter_column(ExpandState *st, JsonbContainer *op)
{
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	char	   *col = zdm_json_string(&st->ctx, op, "column", true);
	char	   *newname = zdm_json_string(&st->ctx, op, "name", false);
	char	   *type = zdm_json_string(&st->ctx, op, "type", false);
	char	   *up = zdm_json_string(&st->ctx, op, "up", false);
	char	   *down = zdm_json_string(&st->ctx, op, "down", false);
	char	   *dflt = zdm_json_string(&st->ctx, op, "default", false);
	char	   *comment = zdm_json_string(&st->ctx, op, "comment", false);
	char	   *typname,
			   *oldtypname,
			   *uptext,
			   *downtext;
	bool		nullable;
	Oid			typid;
	int32		typmod;
	TableWork  *tw;
	Form_pg_attribute old;
	DualRule   *r;
	char	   *visible;
	bool		in_place;
	ZdmColumnCopy copy;
	ListCell   *lc;

	memset(&copy, 0, sizeof(copy));
	tw = table_work(st, table, true);
	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": alter_column on table \"%s\", which this migration creates",
						st->migration, table),
				 errhint("Define the column as it should be in the create_table operation.")));
	old = existing_column(st, tw, col);
	refuse_key_column(st, tw, col);
	/* What depends on the old column: kept by the new one, or refused. */
	zdm_column_attached(st->migration, tw->relid, col, replaced_views(st, tw), &copy.attached);
	refuse_carried_twice(st, tw, col, list_concat_copy(copy.attached.checks, copy.attached.fkeys));
	visible = newname ? newname : col;
	in_place = strcmp(visible, col) == 0;
	if (in_place)
	{
		/*
		 * The same name, another shape: a physically new column that only
		 * the new version's views show under the old name; contract renames
		 * it into place.
		 */
		if (st->version_new == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration \"%s\": alter_column changes column \"%s\" of table \"%s\" in place, which needs API versions",
							st->migration, col, table),
					 errhint("Declare \"versions\": {\"old\": ..., \"new\": ...}: each version then sees its own \"%s\" through its schema of views; "
							 "or give the new column a new \"name\".", col)));
		newname = made_name("zdm_new_", col, NULL);
	}
	claim_column(st, tw, newname);
	tw->hidden_in_new = lappend(tw->hidden_in_new, col);
	tw->new_physical = lappend(tw->new_physical, newname);
	tw->new_visible = lappend(tw->new_visible, visible);

	oldtypname = format_type_extended(old->atttypid, old->atttypmod,
									  FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
	if (type)
		resolve_type(st, type, newname, &typid, &typmod, &typname);
	else
	{
		typid = old->atttypid;
		typmod = old->atttypmod;
		typname = oldtypname;
	}
	nullable = zdm_json_bool(&st->ctx, op, "nullable", !old->attnotnull);
	tw->desc = desc_add_column(tw->desc, newname, typid, typmod);

	/* Without up/down, the value is carried over as it is (a rename). */
	uptext = up ? zdm_expr_normalize(up) : pstrdup(qcol(col));
	downtext = down ? zdm_expr_normalize(down) : pstrdup(qcol(visible));
	(void) zdm_expr_analyze_row(st->migration, psprintf("up expression of column \"%s\"", visible),
								tw->desc, tw->name, uptext, typid, typmod);
	/* down reads the row as the new version sees it */
	(void) zdm_expr_analyze_row(st->migration, psprintf("down expression of column \"%s\"", col),
								in_place ? zdm_desc_as_seen(tw->desc, col, newname) : tw->desc,
								tw->name, downtext, old->atttypid, old->atttypmod);

	/*
	 * The new column keeps what the old one has and the migration does not
	 * restate (duplicate.c): checks, foreign keys, default, comment.
	 */
	copy.migration = st->migration;
	copy.ctx = &st->ctx;
	copy.relid = tw->relid;
	copy.table = tw->name;
	copy.qualname = tw->qualname;
	copy.old_col = col;
	copy.new_col = newname;
	copy.typid = typid;
	copy.typmod = typmod;
	copy.desc = tw->desc;
	copy.seen = in_place ? zdm_desc_as_seen(tw->desc, col, newname) : NULL;
	copy.schema = st->schema;
	copy.check = zdm_json_object(&st->ctx, op, "check", false);
	copy.references = zdm_json_object(&st->ctx, op, "references", false);
	copy.keep_default = !zdm_json_present(op, "default");
	copy.keep_comment = !zdm_json_present(op, "comment");
	zdm_duplicate_column(&copy);

	/* The new column has no default while both are live: see trigger.c. */
	tw->expand = lappend(tw->expand,
						 psprintf("ALTER TABLE %s ADD COLUMN %s %s", tw->qualname, qcol(newname), typname));
	if (!nullable)
		add_not_null(tw, newname);
	tw->expand = list_concat(tw->expand, copy.expand);
	tw->validate = list_concat(tw->validate, copy.validate);
	add_comment(tw, newname, comment);
	if (dflt)
		tw->contract = lappend(tw->contract,
							   psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", tw->qualname,
										qcol(newname),
										check_default(st, tw, newname, dflt, typid, typmod, false)));
	tw->contract = list_concat(tw->contract, copy.before_drop);
	tw->contract = lappend(tw->contract,
						   psprintf("ALTER TABLE %s DROP COLUMN %s", tw->qualname, qcol(col)));
	if (in_place)
		tw->contract = lappend(tw->contract,
							   psprintf("ALTER TABLE %s RENAME COLUMN %s TO %s", tw->qualname,
										qcol(newname), qcol(col)));
	tw->contract = list_concat(tw->contract, copy.after_drop);
	/* (rollback runs its list backwards: the constraints go first) */
	tw->rollback = lappend(tw->rollback,
						   psprintf("ALTER TABLE %s DROP COLUMN %s", tw->qualname, qcol(newname)));
	tw->rollback = list_concat(tw->rollback, copy.rollback);
	tw->contract_other = list_concat(tw->contract_other, copy.contract_other);
	tw->rollback_other = list_concat(tw->rollback_other, copy.rollback_other);
	zdm_lock_stats_add(&st->claim, &copy.claim);
	foreach(lc, copy.check_columns)
		tw->check_refs = lappend(lappend(tw->check_refs, zdm_json_string(&st->ctx, copy.check, "name", true)),
								 lfirst(lc));
	if (copy.referenced != NIL)
	{
		ZdmLockStats stats;

		/* Claimed like the tables the operations name (expand_claim_tables). */
		zdm_claim_relations(st->migration, copy.referenced, &stats);
		zdm_lock_stats_add(&st->claim, &stats);
		tw->referenced = list_concat(tw->referenced, copy.referenced);
	}

	r = palloc0(sizeof(DualRule));
	r->old_col = col;
	r->new_col = newname;
	r->up = uptext;
	r->down = downtext;
	r->visible = visible;
	tw->rules = lappend(tw->rules, r);

	find_backfill_key(st, tw);
	tw->sets = lappend(tw->sets, psprintf("%s = (%s\n)", qcol(newname), uptext));
	tw->todo = lappend(tw->todo, psprintf("%s IS NULL", qcol(newname)));
	/*
	 * Consistent when either direction reproduces the stored value.  (In
	 * place, down names the new column by the old name, which SQL over the
	 * table cannot say: up alone decides.)
	 */
	if (in_place)
		tw->verify = lappend(tw->verify,
							 psprintf("%s IS DISTINCT FROM CAST((%s\n) AS %s)", qcol(newname), uptext, typname));
	else
		tw->verify = lappend(tw->verify,
							 psprintf("NOT (%s IS NOT DISTINCT FROM CAST((%s\n) AS %s) OR %s IS NOT DISTINCT FROM CAST((%s\n) AS %s))",
									  qcol(newname), uptext, typname, qcol(col), downtext, oldtypname));
}

static void
op_drop_column(ExpandState *st, JsonbContainer *op)
{
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	char	   *col = zdm_json_string(&st->ctx, op, "column", true);
	char	   *down = zdm_json_string(&st->ctx, op, "down", false);
	TableWork  *tw;
	Form_pg_attribute old;

	tw = table_work(st, table, true);
	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": drop_column on table \"%s\", which this migration creates",
						st->migration, table),
				 errhint("Leave the column out of the create_table operation.")));
	old = existing_column(st, tw, col);
	refuse_key_column(st, tw, col);
	tw->hidden_in_new = lappend(tw->hidden_in_new, col);
	if (down)
	{
		DualRule   *r = palloc0(sizeof(DualRule));

		down = zdm_expr_normalize(down);
		(void) zdm_expr_analyze_row(st->migration, psprintf("down expression of column \"%s\"", col),
									tw->desc, tw->name, down, old->atttypid, old->atttypmod);
		r->old_col = col;
		r->down = down;
		tw->rules = lappend(tw->rules, r);
	}
	else if (old->attnotnull && !old->atthasdef)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" is NOT NULL without a default, and drop_column has no \"down\"",
						st->migration, col, tw->name),
				 errhint("Give \"down\" so that inserts from new clients, which leave the column out, still succeed until contract.")));
	tw->contract = lappend(tw->contract,
						   psprintf("ALTER TABLE %s DROP COLUMN %s", tw->qualname, qcol(col)));
}

static void
op_create_table(ExpandState *st, JsonbContainer *op)
{
	char	   *table = zdm_json_string(&st->ctx, op, "name", true);
	JsonbContainer *columns = zdm_json_array(&st->ctx, op, "columns", true);
	char	   *comment = zdm_json_string(&st->ctx, op, "comment", false);
	StringInfoData sql;
	List	   *pk = NIL;
	List	   *checks = NIL;
	List	   *comments = NIL;
	TableWork  *tw;
	Oid			nspid;
	int			ncols = JsonContainerSize(columns);
	ListCell   *lc;

	if (table_work(st, table, false) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("migration \"%s\": create_table: table \"%s\" already exists",
						st->migration, table),
				 errhint("Choose another name, or drop the existing table first.")));
	if (strlen(table) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": table name \"%s\" is too long", st->migration, table),
				 errhint("Table names are at most %d bytes.", NAMEDATALEN - 1)));
	if (ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": create_table \"%s\" has no columns", st->migration, table),
				 errhint("List the table's columns in \"columns\".")));

	nspid = RangeVarGetCreationNamespace(makeRangeVar(st->schema ? pstrdup(st->schema) : NULL,
													  pstrdup(table), -1));
	tw = palloc0(sizeof(TableWork));
	tw->relid = InvalidOid;
	tw->schema = get_namespace_name(nspid);
	tw->name = table;
	tw->qualname = quote_qualified_identifier(tw->schema, table);
	tw->desc = CreateTemplateTupleDesc(0);
	st->tables = lappend(st->tables, tw);

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (", tw->qualname);
	for (int i = 0; i < ncols; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(columns, i);
		JsonbContainer *c;
		char	   *col,
				   *type,
				   *dflt,
				   *typname;
		bool		is_pk,
					serial;
		Oid			typid = InvalidOid;
		int32		typmod = -1;

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": column %d of create_table \"%s\" is not an object",
							st->migration, i + 1, table),
					 errhint("Each column is an object such as {\"name\": \"id\", \"type\": \"bigint\", \"pk\": true}.")));
		c = v->val.binary.data;
		zdm_json_check_keys(&st->ctx, c, "a column", column_keys, column_unsupported);
		col = zdm_json_string(&st->ctx, c, "name", true);
		type = zdm_json_string(&st->ctx, c, "type", true);
		dflt = zdm_json_string(&st->ctx, c, "default", false);
		is_pk = zdm_json_bool(&st->ctx, c, "pk", false);
		claim_column(st, tw, col);

		/* serial and friends are not types, but CREATE TABLE knows them. */
		serial = (pg_strcasecmp(type, "serial") == 0 || pg_strcasecmp(type, "bigserial") == 0 ||
				  pg_strcasecmp(type, "smallserial") == 0 || pg_strcasecmp(type, "serial2") == 0 ||
				  pg_strcasecmp(type, "serial4") == 0 || pg_strcasecmp(type, "serial8") == 0);
		if (serial)
		{
			typname = str_tolower(type, strlen(type), DEFAULT_COLLATION_OID);
			typid = (pg_strcasecmp(type, "bigserial") == 0 || pg_strcasecmp(type, "serial8") == 0) ? INT8OID :
				(pg_strcasecmp(type, "smallserial") == 0 || pg_strcasecmp(type, "serial2") == 0) ? INT2OID : INT4OID;
			if (dflt)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("migration \"%s\": serial column \"%s\" cannot have a default",
								st->migration, col),
						 errhint("Remove \"default\": serial columns take their values from a sequence.")));
		}
		else
			resolve_type(st, type, col, &typid, &typmod, &typname);

		appendStringInfo(&sql, "%s%s %s", i > 0 ? ", " : "", qcol(col), typname);
		if (dflt)
			appendStringInfo(&sql, " DEFAULT %s",
							 check_default(st, tw, col, dflt, typid, typmod, false));
		if (is_pk)
			pk = lappend(pk, col);
		else if (!zdm_json_bool(&st->ctx, c, "nullable", false))
			appendStringInfoString(&sql, " NOT NULL");
		if (zdm_json_bool(&st->ctx, c, "unique", false))
			appendStringInfoString(&sql, " UNIQUE");
		if (zdm_json_has(c, "check"))
			checks = lappend(checks, zdm_json_object(&st->ctx, c, "check", true));
		if (zdm_json_has(c, "comment"))
			comments = lappend(comments,
							   psprintf("COMMENT ON COLUMN %s.%s IS %s", tw->qualname, qcol(col),
										quote_literal_cstr(zdm_json_string(&st->ctx, c, "comment", true))));
		tw->desc = desc_add_column(tw->desc, col, typid, typmod);
	}
	if (pk != NIL)
	{
		appendStringInfoString(&sql, ", PRIMARY KEY (");
		foreach(lc, pk)
			appendStringInfo(&sql, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
							 qcol(lfirst(lc)));
		appendStringInfoChar(&sql, ')');
	}
	appendStringInfoChar(&sql, ')');
	tw->expand = lappend(tw->expand, sql.data);
	foreach(lc, checks)
		add_check(st, tw, lfirst(lc), false);
	tw->expand = list_concat(tw->expand, comments);
	if (comment)
		tw->expand = lappend(tw->expand, psprintf("COMMENT ON TABLE %s IS %s", tw->qualname,
												  quote_literal_cstr(comment)));
	tw->rollback = lappend(tw->rollback, psprintf("DROP TABLE %s", tw->qualname));
}

/* ---------- version schemas ---------- */

/* Does this table get views in the version schemas? */
static bool
has_views(ExpandState *st, TableWork *tw)
{
	return st->version_new != NULL && OidIsValid(tw->relid) &&
		(tw->hidden_in_new != NIL || tw->new_physical != NIL);
}

/* Is there a view of the table in the version's schema already? */
static bool
view_exists(TableWork *tw, const char *version)
{
	Oid			nsp = get_namespace_oid(version, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid(tw->name, nsp));
}

static char *
view_name(TableWork *tw, const char *version)
{
	return psprintf("%s.%s", quote_identifier(version), quote_identifier(tw->name));
}

/*
 * The privileges of a version's view.  The views are security_invoker, so
 * reading or writing through one checks the caller's rights on the table
 * (and its row-level security), column by column: granting the view itself
 * to PUBLIC makes its privileges exactly the table's, now and after any
 * later GRANT or REVOKE on the table, with nothing to keep in step.
 */
static char *
view_grant_sql(TableWork *tw, const char *version)
{
	return psprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO PUBLIC", view_name(tw, version));
}

/*
 * CREATE VIEW of a table as one version sees it: the old version, the
 * table as it was; the new one, without the columns the migration retires
 * and with the new ones under their visible names, in the old one's place
 * when a column changed in place.
 */
static char *
view_sql(TableWork *tw, const char *version, bool newer)
{
	StringInfoData buf;
	bool		first = true;
	ListCell   *lc,
			   *lc2;

	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE VIEW %s WITH (security_invoker = true) AS SELECT ",
					 view_name(tw, version));
	for (int i = 0; i < tw->reldesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tw->reldesc, i);
		char	   *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		if (newer && str_in_list(tw->hidden_in_new, name))
		{
			/* changed in place: the new column takes the old one's place */
			forboth(lc, tw->new_physical, lc2, tw->new_visible)
				if (strcmp(lfirst(lc2), name) == 0)
				{
					appendStringInfo(&buf, "%s%s AS %s", first ? "" : ", ",
									 qcol(lfirst(lc)), qcol(name));
					first = false;
				}
			continue;
		}
		appendStringInfo(&buf, "%s%s", first ? "" : ", ", qcol(name));
		first = false;
	}
	if (newer)
		forboth(lc, tw->new_physical, lc2, tw->new_visible)
		{
			if (str_in_list(tw->hidden_in_new, lfirst(lc2)))
				continue;		/* placed above */
			appendStringInfo(&buf, "%s%s", first ? "" : ", ", qcol(lfirst(lc)));
			if (strcmp(lfirst(lc), lfirst(lc2)) != 0)
				appendStringInfo(&buf, " AS %s", qcol(lfirst(lc2)));
			first = false;
		}
	appendStringInfo(&buf, " FROM %s", tw->qualname);
	return buf.data;
}

/*
 * Resolve the migration's API versions (see versions.c) and the schemas of
 * views they need, refusing names that clash with schemas not zdm's.
 */
static void
resolve_versions(ExpandState *st, JsonbContainer *root)
{
	static const char *const keys[] = {"old", "new", NULL};
	JsonbContainer *vers = zdm_json_object(&st->ctx, root, "versions", false);
	char	   *vschema = zdm_json_string(&st->ctx, root, "version_schema", false);
	char	   *both[2];

	if (vers == NULL && vschema == NULL)
		return;
	if (vers)
	{
		zdm_json_check_keys(&st->ctx, vers, "\"versions\"", keys, NULL);
		st->version_new = zdm_json_string(&st->ctx, vers, "new", false);
		st->version_old = zdm_json_string(&st->ctx, vers, "old", false);
	}
	if (st->version_new == NULL)
		st->version_new = vschema ? vschema : pstrdup(st->migration);
	if (st->version_old && strcmp(st->version_old, st->version_new) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": \"versions\" names \"%s\" as both the old and the new API version",
						st->migration, st->version_old),
				 errhint("\"old\" is the version the migration retires and \"new\" the one it introduces; "
						 "give the new one another name, or leave \"old\" out.")));
	if (st->version_old == NULL)
		st->version_old = zdm_previous_version();
	if (st->version_old && strcmp(st->version_old, st->version_new) == 0)
		st->version_old = NULL;

	both[0] = st->version_old;
	both[1] = st->version_new;
	for (int i = 0; i < 2; i++)
	{
		char	   *v = both[i];
		char	   *schema = NULL;
		char	   *retired_by = NULL;

		if (v == NULL)
			continue;
		if (strlen(v) >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("migration \"%s\": API version name \"%s\" is too long", st->migration, v),
					 errhint("Version names are at most %d bytes; they name schemas.", NAMEDATALEN - 1)));
		if (zdm_version_lookup(v, &schema, &retired_by) && retired_by != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\": API version \"%s\" was already retired by migration \"%s\"",
							st->migration, v, retired_by),
					 errhint("Name a live version as \"old\", and a new name as \"new\".")));
		if (schema == NULL && OidIsValid(get_namespace_oid(v, true)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_SCHEMA),
					 errmsg("migration \"%s\": API version \"%s\" needs a schema of that name, and schema \"%s\" exists already",
							st->migration, v, v),
					 errhint("zdm keeps each version's views in a schema named after it; choose another version name.")));
		if (schema == NULL)
			st->schemas = lappend(st->schemas, v);
	}
}

/* Record the versions in zdm.api_versions (in the expand's transaction). */
static void
save_versions(ExpandState *st)
{
	bool		views = false;
	ListCell   *lc;
	char	   *both[2] = {st->version_old, st->version_new};

	foreach(lc, st->tables)
		views = views || has_views(st, lfirst(lc));
	for (int i = 0; i < 2; i++)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		values[3];
		char		nulls[3] = {' ', views ? ' ' : 'n', i == 1 ? ' ' : 'n'};

		if (both[i] == NULL)
			continue;
		values[0] = CStringGetTextDatum(both[i]);
		values[1] = CStringGetTextDatum(both[i]);
		values[2] = CStringGetTextDatum(st->migration);
		zdm_state_exec("INSERT INTO zdm.api_versions AS v (version, schema_name, introduced_by)"
					   " VALUES ($1, $2, $3) ON CONFLICT (version) DO UPDATE"
					   " SET schema_name = coalesce(v.schema_name, EXCLUDED.schema_name)",
					   3, types, values, nulls, false, 0);
	}
}

/* ---------- the plan ---------- */

static void
append_json_list(StringInfo buf, List *list)
{
	ListCell   *lc;

	appendStringInfoChar(buf, '[');
	foreach(lc, list)
		appendStringInfo(buf, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 zdm_json_escape(lfirst(lc)));
	appendStringInfoChar(buf, ']');
}

static void
append_steps(StringInfo buf, bool *first, TableWork *tw, const char *lock, List *sqls)
{
	ListCell   *lc;

	foreach(lc, sqls)
	{
		appendStringInfo(buf, "%s{\"relation\": %s, \"lock\": \"%s\", \"sql\": %s}",
						 *first ? "" : ", ", zdm_json_escape(tw->qualname), lock,
						 zdm_json_escape(lfirst(lc)));
		*first = false;
	}
}

/* Steps that lock a table of their own (ZdmPlanStep *): see duplicate.c. */
static void
append_other_steps(StringInfo buf, bool *first, List *steps)
{
	ListCell   *lc;

	foreach(lc, steps)
	{
		ZdmPlanStep *step = lfirst(lc);

		appendStringInfo(buf, "%s{\"relation\": %s, \"lock\": \"%s\", \"sql\": %s}",
						 *first ? "" : ", ", zdm_json_escape(step->relation), step->lock,
						 zdm_json_escape(step->sql));
		*first = false;
	}
}

static char *
join_list(List *list, const char *sep)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, list)
		appendStringInfo(&buf, "%s%s", foreach_current_index(lc) > 0 ? sep : "",
						 (char *) lfirst(lc));
	return buf.data;
}

/* The trigger's name on a table: one per migration and table. */
static char *
trigger_name(ExpandState *st, TableWork *tw)
{
	return made_name("zdm_", st->migration, tw->name);
}

/* CREATE TRIGGER for a table's dual-write rules. */
static char *
trigger_sql(ExpandState *st, TableWork *tw)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION zdm.dual_write(%s, %s",
					 quote_identifier(trigger_name(st, tw)), tw->qualname,
					 quote_literal_cstr(st->migration), quote_literal_cstr(st->search_path));
	foreach(lc, tw->rules)
	{
		DualRule   *r = lfirst(lc);

		appendStringInfo(&buf, ", %s, %s, %s, %s",
						 quote_literal_cstr(r->old_col ? r->old_col : ""),
						 quote_literal_cstr(r->new_col ? r->new_col : ""),
						 quote_literal_cstr(r->up ? r->up : ""),
						 quote_literal_cstr(r->down ? r->down : ""));
	}
	appendStringInfo(&buf, ", %s, %s, %s", quote_literal_cstr(ZDM_TRIGGER_VERSIONS_MARKER),
					 quote_literal_cstr(st->version_old ? st->version_old : ""),
					 quote_literal_cstr(st->version_new ? st->version_new : ""));
	foreach(lc, tw->rules)
	{
		DualRule   *r = lfirst(lc);

		appendStringInfo(&buf, ", %s", quote_literal_cstr(r->visible ? r->visible : ""));
	}
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/* Serialise the plan (see sql/zdm--*.sql for how zdm.status reads it). */
static char *
plan_json(ExpandState *st)
{
	StringInfoData buf;
	ListCell   *lc;
	bool		first;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"search_path\": %s, \"tables\": [", zdm_json_escape(st->search_path));
	foreach(lc, st->tables)
	{
		TableWork  *tw = lfirst(lc);

		appendStringInfo(&buf, "%s{\"relation\": %s, \"table\": %s, \"created\": %s, \"trigger\": %s, "
						 "\"backfill\": %s, \"key\": ",
						 foreach_current_index(lc) > 0 ? ", " : "",
						 zdm_json_escape(tw->qualname), zdm_json_escape(tw->name),
						 OidIsValid(tw->relid) ? "false" : "true",
						 tw->rules ? zdm_json_escape(trigger_name(st, tw)) : "null",
						 tw->sets ? "true" : "false");
		append_json_list(&buf, tw->key);
		appendStringInfoString(&buf, ", \"key_types\": ");
		append_json_list(&buf, tw->key_types);
		appendStringInfo(&buf, ", \"set\": %s, \"todo\": %s, \"verify\": %s}",
						 zdm_json_escape(join_list(tw->sets, ", ")),
						 zdm_json_escape(join_list(tw->todo, " OR ")),
						 tw->verify ? zdm_json_escape(join_list(tw->verify, " OR ")) : "null");
	}

	/* contract: every validation first (no exclusive lock), then per table */
	appendStringInfoString(&buf, "], \"contract\": [");
	first = true;
	foreach(lc, st->tables)
		append_steps(&buf, &first, lfirst(lc), "validate", ((TableWork *) lfirst(lc))->validate);
	foreach(lc, st->tables)
	{
		TableWork  *tw = lfirst(lc);
		List	   *steps = list_copy(tw->contract);

		if (tw->rules)
			steps = lcons(psprintf("DROP TRIGGER %s ON %s", quote_identifier(trigger_name(st, tw)),
								   tw->qualname), steps);
		if (has_views(st, tw) && st->version_old)
		{
			/* The retired version's view goes first (it reads the old
			 * columns), and comes back as a guard that raises. */
			char	   *v = view_name(tw, st->version_old);

			steps = lcons(psprintf("DROP VIEW IF EXISTS %s", v), steps);
			steps = list_concat(steps, zdm_guard_view_sql(tw->qualname, tw->name, st->version_old,
														  st->migration));
		}
		append_other_steps(&buf, &first, tw->contract_other);
		append_steps(&buf, &first, tw, "exclusive", steps);
	}

	/* rollback: per table, in reverse order of the operations */
	appendStringInfoString(&buf, "], \"rollback\": [");
	first = true;
	for (int i = list_length(st->tables) - 1; i >= 0; i--)
	{
		TableWork  *tw = list_nth(st->tables, i);
		List	   *steps = NIL;

		if (has_views(st, tw))
			steps = lappend(steps, psprintf("DROP VIEW IF EXISTS %s", view_name(tw, st->version_new)));
		if (tw->rules)
			steps = lappend(steps, psprintf("DROP TRIGGER %s ON %s",
											quote_identifier(trigger_name(st, tw)), tw->qualname));
		for (int j = list_length(tw->rollback) - 1; j >= 0; j--)
			steps = lappend(steps, list_nth(tw->rollback, j));
		append_other_steps(&buf, &first, tw->rollback_other);
		append_steps(&buf, &first, tw, "exclusive", steps);
	}
	/*
	 * The old version's views this migration created (a view that was
	 * there before it is left as expand re-created it, the same), then the
	 * schemas it created, once their views are gone.
	 */
	foreach(lc, st->tables)
	{
		TableWork  *tw = lfirst(lc);

		if (has_views(st, tw) && st->version_old &&
			(tw->old_view_created || str_in_list(st->schemas, st->version_old)))
			append_steps(&buf, &first, tw, "exclusive",
						 list_make1(psprintf("DROP VIEW IF EXISTS %s", view_name(tw, st->version_old))));
	}
	foreach(lc, st->schemas)
	{
		appendStringInfo(&buf, "%s{\"relation\": null, \"lock\": \"none\", \"sql\": %s}",
						 first ? "" : ", ",
						 zdm_json_escape(psprintf("DROP SCHEMA IF EXISTS %s", quote_identifier(lfirst(lc)))));
		first = false;
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/* ---------- zdm.expand ---------- */

/* The operations zdm implements, and the keys each accepts. */
typedef struct OpKind
{
	const char *name;
	void		(*check) (ExpandState *st, JsonbContainer *op);
	const char *const *keys;
	const char *const *unsupported;
} OpKind;

static const char *const add_column_keys[] = {"table", "column", "up", NULL};
static const char *const alter_column_keys[] = {"table", "column", "name", "type", "up", "down",
"nullable", "check", "comment", "default", "references", NULL};
static const char *const alter_column_unsupported[] = {"unique", NULL};
static const char *const drop_column_keys[] = {"table", "column", "down", NULL};
static const char *const create_table_keys[] = {"name", "columns", "comment", NULL};
static const char *const create_table_unsupported[] = {"constraints", NULL};

static const OpKind op_kinds[] = {
	{"add_column", op_add_column, add_column_keys, NULL},
	{"alter_column", op_alter_column, alter_column_keys, alter_column_unsupported},
	{"drop_column", op_drop_column, drop_column_keys, NULL},
	{"create_table", op_create_table, create_table_keys, create_table_unsupported},
	{NULL}
};

/* pgroll's other operations: known, not implemented yet. */
static const char *const op_unsupported[] = {
	"drop_table", "rename_table", "rename_column", "create_index", "drop_index",
	"create_constraint", "drop_constraint", "drop_multicolumn_constraint",
	"rename_constraint", "sql", "set_replica_identity", NULL
};

/*
 * Claim every existing table the operations name (their "table"), all at
 * once, before table_work locks any of them: a migration that claimed its
 * tables one by one could hold one while waiting for another's, and two
 * such migrations would wait for each other.  Malformed operations are
 * skipped here; expand_check_operations reports them.
 */
static void
expand_claim_tables(ExpandState *st, JsonbContainer *root)
{
	JsonbValue *ops = getKeyJsonValueFromContainer(root, "operations", strlen("operations"), NULL);
	List	   *relids = NIL;
	ZdmLockStats stats;

	if (ops == NULL || ops->type != jbvBinary || !JsonContainerIsArray(ops->val.binary.data))
		return;
	for (int i = 0; i < JsonContainerSize(ops->val.binary.data); i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(ops->val.binary.data, i);
		JsonbIterator *it;
		JsonbValue	key;
		JsonbValue *body;
		JsonbValue *table;
		const OpKind *kind = NULL;
		char	   *opname;
		bool		names_table = false;
		RangeVar   *rv;
		Oid			relid;

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data) ||
			JsonContainerSize(v->val.binary.data) != 1)
			continue;
		it = JsonbIteratorInit(v->val.binary.data);
		(void) JsonbIteratorNext(&it, &key, true);	/* WJB_BEGIN_OBJECT */
		(void) JsonbIteratorNext(&it, &key, true);	/* WJB_KEY */
		opname = pnstrdup(key.val.string.val, key.val.string.len);
		for (const OpKind *k = op_kinds; k->name != NULL; k++)
			if (strcmp(opname, k->name) == 0)
				kind = k;
		/* The kinds that work on an existing table name it "table". */
		for (const char *const *k = kind ? kind->keys : NULL; k && *k; k++)
			names_table = names_table || strcmp(*k, "table") == 0;
		if (!names_table)
			continue;
		body = getKeyJsonValueFromContainer(v->val.binary.data, opname, strlen(opname), NULL);
		if (body->type != jbvBinary || !JsonContainerIsObject(body->val.binary.data))
			continue;
		table = getKeyJsonValueFromContainer(body->val.binary.data, "table", strlen("table"), NULL);
		if (table == NULL || table->type != jbvString)
			continue;
		/* Resolved as table_work resolves it. */
		rv = makeRangeVar(st->schema ? pstrdup(st->schema) : NULL,
						  pnstrdup(table->val.string.val, table->val.string.len), -1);
		relid = RangeVarGetRelid(rv, NoLock, true);
		if (OidIsValid(relid))
			relids = list_append_unique_oid(relids, relid);
	}
	zdm_claim_relations(st->migration, relids, &stats);
	zdm_lock_stats_add(&st->claim, &stats);
}

static void
expand_check_operations(ExpandState *st, JsonbContainer *ops)
{
	int			nops = JsonContainerSize(ops);
	ListCell   *lc;

	if (nops == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\" has no operations", st->migration),
				 errhint("Give at least one operation, e.g. {\"operations\": [{\"add_column\": {...}}]}.")));

	for (int i = 0; i < nops; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(ops, i);
		JsonbIterator *it;
		JsonbValue	key;
		JsonbContainer *op;
		JsonbValue *body;
		const OpKind *kind;

		st->ctx.opno = i + 1;
		st->ctx.opname = NULL;
		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data) ||
			JsonContainerSize(v->val.binary.data) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": operation %d is not an object with exactly one key",
							st->migration, i + 1),
					 errhint("Write each operation as {\"<kind>\": {...}}, e.g. {\"add_column\": {...}}.")));

		it = JsonbIteratorInit(v->val.binary.data);
		(void) JsonbIteratorNext(&it, &key, true);	/* WJB_BEGIN_OBJECT */
		(void) JsonbIteratorNext(&it, &key, true);	/* WJB_KEY */
		st->ctx.opname = pnstrdup(key.val.string.val, key.val.string.len);
		body = getKeyJsonValueFromContainer(v->val.binary.data, st->ctx.opname,
											strlen(st->ctx.opname), NULL);
		if (body->type != jbvBinary || !JsonContainerIsObject(body->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": operation %d (%s) must be an object",
							st->migration, i + 1, st->ctx.opname),
					 errhint("Write the operation as {\"%s\": {...}}.", st->ctx.opname)));
		op = body->val.binary.data;

		kind = NULL;
		for (const OpKind *k = op_kinds; k->name != NULL; k++)
			if (strcmp(st->ctx.opname, k->name) == 0)
				kind = k;
		if (kind != NULL)
		{
			/* Unknown keys first: a typo must not surface as "missing". */
			zdm_json_check_keys(&st->ctx, op, NULL, kind->keys, kind->unsupported);
			kind->check(st, op);
			continue;
		}
		for (const char *const *u = op_unsupported; *u != NULL; u++)
			if (strcmp(st->ctx.opname, *u) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("migration \"%s\": operation %d (%s) is not supported by zdm yet",
								st->migration, i + 1, st->ctx.opname),
						 errhint("zdm supports create_table, add_column, alter_column with a new \"name\", and drop_column.")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": operation %d has unknown kind \"%s\"",
						st->migration, i + 1, st->ctx.opname),
				 errhint("Known kinds are those of pgroll's format: create_table, add_column, alter_column, drop_column, ...")));
	}
	st->ctx.opno = 0;
	st->ctx.opname = NULL;

	/*
	 * A check an alter_column adds must not name a column that the
	 * migration replaces or drops: contract would drop the check with it.
	 */
	foreach(lc, st->tables)
	{
		TableWork  *tw = lfirst(lc);

		for (int i = 0; i + 1 < list_length(tw->check_refs); i += 2)
			if (str_in_list(tw->hidden_in_new, list_nth(tw->check_refs, i + 1)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("migration \"%s\": check constraint \"%s\" names column \"%s\" of table \"%s\", which the migration replaces or drops",
								st->migration, (char *) list_nth(tw->check_refs, i),
								(char *) list_nth(tw->check_refs, i + 1), tw->name),
						 errhint("Name the new column instead, or leave that column out of the check; contract would drop the check with it.")));
	}
}

/*
 * What the expand adds to each table, for the checks against logical
 * replication; what to journal, or NULL.
 */
static char *
expand_check_replication(ExpandState *st)
{
	List	   *tables = NIL;
	ListCell   *lc;

	foreach(lc, st->tables)
	{
		TableWork  *tw = lfirst(lc);
		ZdmExpandedTable *t = palloc0(sizeof(ZdmExpandedTable));

		t->relid = tw->relid;
		t->nspid = get_namespace_oid(tw->schema, false);
		t->name = tw->name;
		t->columns = OidIsValid(tw->relid) ? tw->claimed : NIL;
		tables = lappend(tables, t);
	}
	return zdm_repl_check_expand(st->migration, tables);
}

/* Lock every existing table for DDL, then run the expand statements. */
static void
expand_apply(ExpandState *st)
{
	List	   *relids = NIL;
	List	   *modes = NIL;
	ZdmLockStats stats;
	ListCell   *lc;
	bool		charged = false;

	foreach(lc, st->tables)
	{
		TableWork  *tw = lfirst(lc);
		ListCell   *lc2;

		if (OidIsValid(tw->relid) && (tw->expand || tw->rules))
		{
			relids = lappend_oid(relids, tw->relid);
			modes = lappend_int(modes, AccessExclusiveLock);
		}
		/* the tables new foreign keys reference: ADD FOREIGN KEY's lock */
		foreach(lc2, tw->referenced)
		{
			relids = lappend_oid(relids, lfirst_oid(lc2));
			modes = lappend_int(modes, ShareRowExclusiveLock);
		}
	}
	zdm_lock_relations_modes(st->migration, relids, modes, &stats);
	/* The first statement on a table is charged with the claims' wait too. */
	zdm_lock_stats_add(&stats, &st->claim);

	foreach(lc, st->schemas)
	{
		ZdmLockStats none = {0, 0};

		zdm_run_ddl(st->migration, "expanded",
					psprintf("CREATE SCHEMA %s", quote_identifier(lfirst(lc))), &none);
		/* Clients need nothing new: the views in it check their table rights. */
		zdm_run_ddl(st->migration, "expanded",
					psprintf("GRANT USAGE ON SCHEMA %s TO PUBLIC", quote_identifier(lfirst(lc))), &none);
	}
	foreach(lc, st->tables)
	{
		TableWork  *tw = lfirst(lc);
		ListCell   *lc2;
		List	   *steps = list_copy(tw->expand);

		if (tw->rules)
		{
			steps = lappend(steps, trigger_sql(st, tw));

			/*
			 * It fires under session_replication_role = replica too: a
			 * subscription's apply worker writes rows through it (see
			 * replication.c), as does any tool that writes in replica mode.
			 */
			steps = lappend(steps, psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER %s", tw->qualname,
											quote_identifier(trigger_name(st, tw))));
		}
		if (has_views(st, tw))
		{
			/* Each version's view of the table, replacing an older one. */
			if (st->version_old)
			{
				if (view_exists(tw, st->version_old))
					steps = lappend(steps, psprintf("DROP VIEW %s", view_name(tw, st->version_old)));
				else
					tw->old_view_created = true;	/* rollback drops it */
				steps = lappend(steps, view_sql(tw, st->version_old, false));
				steps = lappend(steps, view_grant_sql(tw, st->version_old));
			}
			if (view_exists(tw, st->version_new))
				steps = lappend(steps, psprintf("DROP VIEW %s", view_name(tw, st->version_new)));
			steps = lappend(steps, view_sql(tw, st->version_new, true));
			steps = lappend(steps, view_grant_sql(tw, st->version_new));
		}
		foreach(lc2, steps)
		{
			ZdmLockStats none = {0, 0};

			zdm_run_ddl(st->migration, "expanded", lfirst(lc2),
						OidIsValid(tw->relid) && !charged ? &stats : &none);
			if (OidIsValid(tw->relid))
				charged = true;
		}
	}
}

static void
expand_save_state(ExpandState *st, Jsonb *definition)
{
	Oid			types[6] = {TEXTOID, JSONBOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', st->version_old ? ' ' : 'n', st->version_new ? ' ' : 'n', ' '};
	int			rc;

	values[0] = CStringGetTextDatum(st->migration);
	values[1] = JsonbPGetDatum(definition);
	values[2] = CStringGetTextDatum(plan_json(st));
	values[3] = st->version_old ? CStringGetTextDatum(st->version_old) : (Datum) 0;
	values[4] = st->version_new ? CStringGetTextDatum(st->version_new) : (Datum) 0;
	/* The author: every later step of the migration runs as this role. */
	values[5] = CStringGetTextDatum(zdm_current_role_name());
	save_versions(st);
	rc = zdm_state_exec("INSERT INTO zdm.migrations AS m (name, definition, plan, phase, expand_xid, expanded_at,"
						"   version_old, version_new, author)"
						" VALUES ($1, $2, $3::jsonb, 'expanded', pg_catalog.pg_current_xact_id(), now(), $4, $5, $6)"
						" ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, author = EXCLUDED.author,"
						"   version_old = EXCLUDED.version_old, version_new = EXCLUDED.version_new,"
						"   plan = EXCLUDED.plan, phase = 'expanded', expand_xid = EXCLUDED.expand_xid,"
						"   backfill_key = NULL, backfill_table = 0, rows_backfilled = 0, batches = 0,"
						"   created_at = now(), updated_at = now(), expanded_at = now(),"
						"   backfill_started_at = NULL, backfilled_at = NULL, contracted_at = NULL,"
						"   rolled_back_at = NULL, last_error = NULL",
						6, types, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "zdm: could not record migration \"%s\": %s", st->migration,
			 SPI_result_code_string(rc));
	zdm_log_event(st->migration, "phase", "expanded", NULL, NULL, -1, NULL);
	zdm_note_expanded(st->migration);
}

Datum
zdm_expand(PG_FUNCTION_ARGS)
{
	ExpandState st;
	Jsonb	   *definition;
	JsonbContainer *ops;
	ZdmMigration existing;
	char	   *name;
	char	   *replication;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null"),
				 errhint("Call zdm.expand('<name>', '<migration json>').")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zdm_check_name(name, "zdm.expand");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration \"%s\": definition must not be null", name),
				 errhint("Pass the migration as jsonb: {\"operations\": [...]}.")));
	definition = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(definition))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": definition must be a JSON object", name),
				 errhint("Pass the migration as {\"operations\": [...]}.")));

	memset(&st, 0, sizeof(st));
	st.migration = name;
	st.ctx.migration = name;

	SPI_connect();

	/* 1. coordination: never wait for another session applying this migration */
	if (!zdm_try_migration_lock(name))
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is being expanded by another session, skipping", name)));
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	if (zdm_migration_fetch(name, false, &existing) && strcmp(existing.phase, "rolled_back") != 0)
	{
		bool		same = DatumGetBool(DirectFunctionCall2(jsonb_eq,
														   JsonbPGetDatum(existing.definition),
														   JsonbPGetDatum(definition)));

		if (!same)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\" already exists with a different definition", name),
					 errdetail("It is in phase \"%s\".", existing.phase),
					 errhint("Give the changed migration a new name, or roll \"%s\" back first.", name)));
		ereport(NOTICE,
				(errmsg("migration \"%s\" is already expanded (phase \"%s\"), skipping",
						name, existing.phase)));
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	/* Its triggers restored without its state (a schema-only dump)? */
	zdm_refuse_leftovers(name);

	/* 2. checking: the whole migration, before any change */
	zdm_json_check_keys(&st.ctx, &definition->root, NULL, top_keys, NULL);
	st.schema = zdm_json_string(&st.ctx, &definition->root, "schema", false);
	if (st.schema && !OidIsValid(get_namespace_oid(st.schema, true)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_SCHEMA),
				 errmsg("migration \"%s\": schema \"%s\" does not exist", name, st.schema),
				 errhint("Create the schema first, or correct \"schema\".")));
	st.search_path = GetConfigOptionByName("search_path", NULL, false);
	/* before the versions: a migration waited for may have added one */
	expand_claim_tables(&st, &definition->root);
	resolve_versions(&st, &definition->root);
	ops = zdm_json_array(&st.ctx, &definition->root, "operations", true);
	expand_check_operations(&st, ops);

	/* On a publisher, its subscribers come first (replication.c). */
	replication = expand_check_replication(&st);

	/* 3. applying: all of it, with the state row, or none of it */
	expand_apply(&st);
	expand_save_state(&st, definition);
	if (replication != NULL)
		zdm_log_event(name, "replication", "expanded", NULL, NULL, -1, replication);

	SPI_finish();
	PG_RETURN_BOOL(true);
}
