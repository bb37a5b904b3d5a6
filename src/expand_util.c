/*-------------------------------------------------------------------------
 *
 * expand_util.c
 *	  What zdm.expand()'s operation kinds share.
 *
 *	  Opening the tables an operation names (claimed, then ACCESS SHARE: no
 *	  DML is blocked while the migration is checked), claiming new column
 *	  names, resolving types, finding the backfill's key, and the steps
 *	  several kinds add (NOT NULL through a NOT VALID check, CHECK, comments).
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

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


bool
zdm_str_in_list(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
		if (strcmp((char *) lfirst(lc), s) == 0)
			return true;
	return false;
}

/* A name zdm makes up, clipped to NAMEDATALEN and made unique by a hash. */
char *
zdm_made_name(const char *prefix, const char *a, const char *b)
{
	char	   *full = psprintf("%s%s_%s", prefix, a, b ? b : "");
	uint32		h = hash_bytes((const unsigned char *) full, strlen(full));
	char	   *base = psprintf("%s%s%s%s", prefix, a, b ? "_" : "", b ? b : "");
	int			keep = pg_mbcliplen(base, strlen(base), NAMEDATALEN - 1 - 9);

	return psprintf("%.*s_%08x", keep, base, h);
}

/* Attribute number of col in desc, or 0. */
AttrNumber
expand_desc_attnum(TupleDesc desc, const char *col)
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
TupleDesc
expand_desc_add_column(TupleDesc desc, const char *col, Oid typid, int32 typmod)
{
	TupleDesc	d = CreateTemplateTupleDesc(desc->natts + 1);

	for (int i = 1; i <= desc->natts; i++)
		TupleDescCopyEntry(d, i, desc, i);
	TupleDescInitEntry(d, desc->natts + 1, col, typid, typmod, 0);
	TupleDescAttr(d, desc->natts)->attcollation = get_typcollation(typid);
	return d;
}

/* Resolve a type name; the qualified spelling goes to *typname_out. */
void
expand_resolve_type(ExpandState *st, const char *typname, const char *colname,
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
TableWork *
expand_table_work(ExpandState *st, const char *table, bool must_exist)
{
	RangeVar   *rv = makeRangeVar(st->schema ? pstrdup(st->schema) : NULL,
								  pstrdup(table), -1);

	return expand_table_work_relid(st, RangeVarGetRelid(rv, NoLock, true), table, must_exist);
}

/*
 * Find or open the TableWork of a table known by its OID (InvalidOid: not
 * found), named table in the operation: an operation that names an index
 * finds its table so.
 */
TableWork *
expand_table_work_relid(ExpandState *st, Oid relid, const char *table, bool must_exist)
{
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
Form_pg_attribute
expand_existing_column(ExpandState *st, TableWork *tw, const char *col)
{
	AttrNumber	attnum = OidIsValid(tw->relid) ? expand_desc_attnum(tw->desc, col) : 0;

	if (attnum == 0 || zdm_str_in_list(tw->claimed, col))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("migration \"%s\": %s: column \"%s\" of table \"%s\" does not exist",
						st->migration, st->ctx.opname, col, tw->name),
				 errhint("Correct the column's name.")));
	if (zdm_str_in_list(tw->touched, col))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_COLUMN),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" is changed by more than one operation",
						st->migration, col, tw->name),
				 errhint("Change each column once per migration; split the rest into a later migration.")));
	tw->touched = lappend(tw->touched, pstrdup(col));
	return TupleDescAttr(tw->reldesc, attnum - 1);
}

/*
 * Claim the name of a relation the migration creates in a schema (an
 * index), refusing one that is too long or taken, by a relation there or
 * by another operation of the migration; what: "index", for messages.
 */
void
expand_claim_relname(ExpandState *st, const char *schema, const char *name, const char *what)
{
	char	   *full = psprintf("%s.%s", schema, name);

	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("migration \"%s\": %s: %s name must not be empty", st->migration, st->ctx.opname, what),
				 errhint("Name the %s.", what)));
	/* PostgreSQL would truncate it with a NOTICE: later steps would name another */
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": %s name \"%s\" is too long", st->migration, what, name),
				 errhint("Names are at most %d bytes.", NAMEDATALEN - 1)));
	if (zdm_str_in_list(st->relnames, full) ||
		OidIsValid(get_relname_relid(name, get_namespace_oid(schema, false))))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("migration \"%s\": %s: relation \"%s\" already exists in schema \"%s\"",
						st->migration, st->ctx.opname, name, schema),
				 errhint("Choose another name for the %s; an index shares its names with the schema's tables, views and sequences.",
						 what)));
	st->relnames = lappend(st->relnames, full);
}

/* Claim a new column name, refusing a clash. */
void
expand_claim_column(ExpandState *st, TableWork *tw, const char *col)
{
	if (strlen(col) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": column name \"%s\" is too long", st->migration, col),
				 errhint("Column names are at most %d bytes.", NAMEDATALEN - 1)));
	if (expand_desc_attnum(tw->desc, col) != 0)
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
void
expand_find_backfill_key(ExpandState *st, TableWork *tw)
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
void
expand_refuse_key_column(ExpandState *st, TableWork *tw, const char *col)
{
	ListCell   *lc;

	expand_find_backfill_key(st, tw);
	foreach(lc, tw->key)
		if (strcmp((char *) lfirst(lc), col) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration \"%s\": column \"%s\" of table \"%s\" is part of its key",
							st->migration, col, tw->name),
					 errhint("zdm cannot alter or drop a primary key column in place; add a new key first.")));
}

/* "default": checked, refused when it would rewrite the table. */
char *
expand_check_default(ExpandState *st, TableWork *tw, const char *col, const char *text,
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
void
expand_add_check(ExpandState *st, TableWork *tw, JsonbContainer *check, bool existing_rows)
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
void
expand_add_not_null(TableWork *tw, const char *col)
{
	char	   *cname = (char *) quote_identifier(zdm_made_name("zdm_nn_", tw->name, col));

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

void
expand_add_comment(TableWork *tw, const char *col, const char *comment)
{
	if (comment)
		tw->expand = lappend(tw->expand,
							 psprintf("COMMENT ON COLUMN %s.%s IS %s", tw->qualname, qcol(col),
									  quote_literal_cstr(comment)));
}

void
expand_refuse_flag(ExpandState *st, JsonbContainer *obj, const char *key, const char *hint)
{
	if (zdm_json_bool(&st->ctx, obj, key, false))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": \"%s\" in %s is not supported by zdm yet",
						st->migration, key, st->ctx.opname),
				 errhint("%s", hint)));
}

const char *const expand_column_keys[] = {"name", "type", "nullable", "default", "check", "comment", "pk", "unique", NULL};
const char *const expand_column_unsupported[] = {"references", "generated", NULL};

/* A step of a plan section (zdm.h): where it runs, on which table. */
ZdmPlanStep *
expand_step(const char *relation, const char *lock, const char *runs, const char *sql)
{
	ZdmPlanStep *step = palloc0(sizeof(ZdmPlanStep));

	step->relation = relation ? pstrdup(relation) : NULL;
	step->lock = pstrdup(lock);
	step->runs = pstrdup(runs);
	step->sql = pstrdup(sql);
	return step;
}
