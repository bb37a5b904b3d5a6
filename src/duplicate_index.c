/*-------------------------------------------------------------------------
 *
 * duplicate_index.c
 *	  The new column of an alter_column gets the old one's indexes: each
 *	  built again on it, CONCURRENTLY, by the background worker.
 *
 * Every index naming the old column (in its key, its INCLUDE list, an
 * expression or the predicate), a UNIQUE or PRIMARY KEY constraint's
 * included, and the migration's own "unique", is built again on the new
 * column by CREATE INDEX CONCURRENTLY, a deferred step that the worker
 * runs once the backfill is done (a build during the expand's transaction
 * would scan the table under ACCESS EXCLUSIVE), under a temporary name.
 *
 * The definition is the catalog's, element by element: pg_index's columns,
 * operator classes, collations and orderings, the index's access method,
 * storage parameters and tablespace, and for each expression and the
 * predicate pg_get_indexdef's (pg_get_expr's) text, whose references to
 * the old column are renamed on their parse tree (expr.c), never by
 * replacing strings.  What follows the column's type (its own collation,
 * its type's default operator class) follows the new type; what was
 * chosen explicitly must fit the new type, or the index is refused, as is
 * an expression or predicate that no longer holds, or is not immutable,
 * on the new type.
 *
 * Contract, once the old column (and so its indexes) is gone, gives each
 * its old name: ALTER INDEX ... RENAME, or for a constraint ADD CONSTRAINT
 * ... USING INDEX, which scans nothing (a primary key's column is NOT NULL
 * by then, through its validated check), and again its comment, CLUSTER,
 * REPLICA IDENTITY and statistics targets.  Rollback drops the new column,
 * and its indexes with it; DROP INDEX CONCURRENTLY IF EXISTS follows, for
 * a build the worker may leave.
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/amapi.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_index.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_type.h"
#include "commands/comment.h"
#include "commands/defrem.h"
#include "commands/tablespace.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/* A name in the table's schema that zdm takes for a while must be free. */
static void
refuse_taken_name(ZdmColumnCopy *c, const char *name)
{
	if (OidIsValid(get_relname_relid(name, get_rel_namespace(c->relid))))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\": relation \"%s\" already exists in the schema of table \"%s\"",
						c->migration, name, c->table),
				 errhint("zdm builds the new column's index under that name until contract; it may be left over "
						 "from an earlier attempt: drop it (DROP INDEX CONCURRENTLY) and expand again.")));
}

/*
 * CREATE INDEX takes CREATE on the table's schema besides its ownership:
 * the worker builds the new column's indexes as the author, so say it now.
 */
static void
refuse_no_create(ZdmColumnCopy *c)
{
	Oid			nsp = get_rel_namespace(c->relid);

	if (pg_namespace_aclcheck(nsp, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("migration \"%s\": role \"%s\" may not create indexes in schema \"%s\", and column \"%s\" of table \"%s\" needs its indexes built again",
						c->migration, GetUserNameFromId(GetUserId(), false), get_namespace_name(nsp),
						c->old_col, c->table),
				 errdetail("CREATE INDEX takes CREATE on the table's schema as well as owning the table; the background worker builds them as the migration's author."),
				 errhint("GRANT CREATE ON SCHEMA %s TO %s, or run the migration as a role that has it.",
						 quote_identifier(get_namespace_name(nsp)),
						 quote_identifier(GetUserNameFromId(GetUserId(), false)))));
}

static char *
qualified_object(Oid nsp, const char *name)
{
	return quote_qualified_identifier(get_namespace_name(nsp), name);
}

/* COLLATE's argument, qualified. */
static char *
collation_name(Oid coll)
{
	HeapTuple	tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(coll));
	char	   *name;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for collation %u", coll);
	name = qualified_object(((Form_pg_collation) GETSTRUCT(tup))->collnamespace,
							NameStr(((Form_pg_collation) GETSTRUCT(tup))->collname));
	ReleaseSysCache(tup);
	return name;
}

/* An operator class's name, qualified. */
static char *
opclass_name(Oid opclass)
{
	HeapTuple	tup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclass));
	char	   *name;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for operator class %u", opclass);
	name = qualified_object(((Form_pg_opclass) GETSTRUCT(tup))->opcnamespace,
							NameStr(((Form_pg_opclass) GETSTRUCT(tup))->opcname));
	ReleaseSysCache(tup);
	return name;
}

/* Refuse an index that cannot be built again on the new column. */
static void
refuse_index(ZdmColumnCopy *c, const char *index, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("migration \"%s\": index \"%s\" of column \"%s\" of table \"%s\" cannot be built again on the new column: %s",
					c->migration, index, c->old_col, c->table, why),
			 errhint("Drop the index before the migration (DROP INDEX CONCURRENTLY, or ALTER TABLE ... DROP CONSTRAINT) "
					 "and create it again on the column after contract, or choose a type it fits.")));
}

/*
 * Key element i of an index, for the new column: its column or expression
 * (renamed), COLLATE, operator class, ordering.  A column's or expression's
 * natural collation and default operator class are left out, so that they
 * follow the new type; an explicit one must fit it.
 */
static void
index_element(ZdmColumnCopy *c, StringInfo buf, Oid indexoid, Form_pg_index index, int i,
			  oidvector *indclass, oidvector *indcollation, int2vector *indoption,
			  List *exprs, int *exprno, Oid amoid, bool amcanorder)
{
	char	   *index_name = get_rel_name(indexoid);
	AttrNumber	oldatt = get_attnum(c->relid, c->old_col);
	AttrNumber	att = index->indkey.values[i];
	Oid			oldtype,
				newtype,
				natural,
				old_natural;
	bool		swapped;
	Oid			opclass = indclass->values[i];
	Oid			coll = indcollation->values[i];
	int16		opt = indoption->values[i];

	if (att != 0)
	{
		swapped = att == oldatt;
		oldtype = get_atttype(c->relid, att);
		newtype = swapped ? c->typid : oldtype;
		{
			Oid			typ;
			int32		typmod;

			get_atttypetypmodcoll(c->relid, att, &typ, &typmod, &old_natural);
		}
		natural = swapped ? get_typcollation(c->typid) : old_natural;
		appendStringInfoString(buf, quote_identifier(swapped ? c->new_col : get_attname(c->relid, att, false)));
	}
	else
	{
		Node	   *old_expr = list_nth(exprs, (*exprno)++);
		Bitmapset  *vars = NULL;
		char	   *exprtext = TextDatumGetCString(DirectFunctionCall3(pg_get_indexdef_ext,
																   ObjectIdGetDatum(indexoid),
																   Int32GetDatum(i + 1),
																   BoolGetDatum(false)));
		char	   *what = psprintf("expression %d of index \"%s\", on the new column", i + 1, index_name);
		Node	   *expr;

		pull_varattnos(old_expr, 1, &vars);
		swapped = bms_is_member(oldatt - FirstLowInvalidHeapAttributeNumber, vars);
		oldtype = exprType(old_expr);
		old_natural = exprCollation(old_expr);
		if (swapped)
			exprtext = zdm_expr_rename_column(c->migration, what, exprtext, c->old_col, c->new_col);
		expr = zdm_dup_analyse(c, c->desc, what, exprtext, InvalidOid,
							 "Drop the index before the migration and create one that fits the new type after contract.");
		if (contain_mutable_functions(expr))
			refuse_index(c, index_name, psprintf("its expression %s is not immutable on the new column", exprtext));
		newtype = exprType(expr);
		natural = exprCollation(expr);
		appendStringInfo(buf, "(%s)", exprtext);
	}

	/* the old column's (or expression's) own collation follows the new type */
	if (OidIsValid(coll) && coll != natural && coll != old_natural)
	{
		if (!type_is_collatable(newtype))
			refuse_index(c, index_name, psprintf("its collation does not apply to type %s", format_type_be(newtype)));
		appendStringInfo(buf, " COLLATE %s", collation_name(coll));
	}
	if (swapped && opclass == GetDefaultOpClass(oldtype, amoid))
	{
		if (!OidIsValid(GetDefaultOpClass(newtype, amoid)))
			refuse_index(c, index_name, psprintf("type %s has no default operator class for access method \"%s\"",
												 format_type_be(newtype), get_am_name(amoid)));
	}
	else if (opclass != GetDefaultOpClass(newtype, amoid))
	{
		if (!IsBinaryCoercible(newtype, get_opclass_input_type(opclass)))
			refuse_index(c, index_name, psprintf("its operator class %s does not apply to type %s",
												 opclass_name(opclass), format_type_be(newtype)));
		appendStringInfo(buf, " %s", opclass_name(opclass));
	}
	{
		HeapTuple	att = SearchSysCache2(ATTNUM, ObjectIdGetDatum(indexoid), Int16GetDatum(i + 1));
		bool		options = HeapTupleIsValid(att) &&
			!heap_attisnull(att, Anum_pg_attribute_attoptions, NULL);

		if (HeapTupleIsValid(att))
			ReleaseSysCache(att);
		if (options)
			refuse_index(c, index_name, "its operator class has options");
	}
	if (amcanorder)
	{
		if (opt & INDOPTION_DESC)
		{
			appendStringInfoString(buf, " DESC");
			if (!(opt & INDOPTION_NULLS_FIRST))
				appendStringInfoString(buf, " NULLS LAST");
		}
		else if (opt & INDOPTION_NULLS_FIRST)
			appendStringInfoString(buf, " NULLS FIRST");
	}
}

/*
 * CREATE INDEX CONCURRENTLY of index indexoid again, named temp, on the
 * new column instead of the old one: the catalog's definition, element by
 * element (see index_element).
 */
static char *
index_on_new_column(ZdmColumnCopy *c, Oid indexoid, const char *temp)
{
	HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	HeapTuple	reltup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
	Form_pg_index index;
	Form_pg_class rel;
	StringInfoData buf;
	Datum		d;
	bool		isnull;
	oidvector  *indclass;
	oidvector  *indcollation;
	int2vector *indoption;
	List	   *exprs = NIL;
	int			exprno = 0;
	IndexAmRoutine *am;

	if (!HeapTupleIsValid(tup) || !HeapTupleIsValid(reltup))
		elog(ERROR, "zdm: cache lookup failed for index %u", indexoid);
	index = (Form_pg_index) GETSTRUCT(tup);
	rel = (Form_pg_class) GETSTRUCT(reltup);
	am = GetIndexAmRoutineByAmId(rel->relam, false);
	indclass = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indclass, &isnull));
	indcollation = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indcollation, &isnull));
	indoption = (int2vector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indoption, &isnull));
	d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indexprs, &isnull);
	if (!isnull)
		exprs = (List *) stringToNode(TextDatumGetCString(d));

	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE %sINDEX CONCURRENTLY %s ON %s USING %s (",
					 index->indisunique ? "UNIQUE " : "", quote_identifier(temp), c->qualname,
					 quote_identifier(get_am_name(rel->relam)));
	for (int i = 0; i < index->indnkeyatts; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		index_element(c, &buf, indexoid, index, i, indclass, indcollation, indoption,
					  exprs, &exprno, rel->relam, am->amcanorder);
	}
	appendStringInfoChar(&buf, ')');
	if (index->indnatts > index->indnkeyatts)
	{
		appendStringInfoString(&buf, " INCLUDE (");
		for (int i = index->indnkeyatts; i < index->indnatts; i++)
		{
			char	   *col = get_attname(c->relid, index->indkey.values[i], false);

			appendStringInfo(&buf, "%s%s", i > index->indnkeyatts ? ", " : "",
							 quote_identifier(strcmp(col, c->old_col) == 0 ? c->new_col : col));
		}
		appendStringInfoChar(&buf, ')');
	}
	if (index->indisunique && index->indnullsnotdistinct)
		appendStringInfoString(&buf, " NULLS NOT DISTINCT");
	d = SysCacheGetAttr(RELOID, reltup, Anum_pg_class_reloptions, &isnull);
	if (!isnull)
	{
		Datum	   *opts;
		int			nopts;

		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT, &opts, NULL, &nopts);
		appendStringInfoString(&buf, " WITH (");
		for (int i = 0; i < nopts; i++)
		{
			char	   *opt = TextDatumGetCString(opts[i]);
			char	   *eq = strchr(opt, '=');

			if (eq == NULL)
				elog(ERROR, "zdm: malformed option \"%s\" of index %u", opt, indexoid);
			*eq = '\0';
			appendStringInfo(&buf, "%s%s = %s", i > 0 ? ", " : "", quote_identifier(opt),
							 quote_literal_cstr(eq + 1));
		}
		appendStringInfoChar(&buf, ')');
	}
	if (OidIsValid(rel->reltablespace))
		appendStringInfo(&buf, " TABLESPACE %s", quote_identifier(get_tablespace_name(rel->reltablespace)));
	d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indpred, &isnull);
	if (!isnull)
	{
		char	   *what = psprintf("predicate of index \"%s\", on the new column", get_rel_name(indexoid));
		char	   *pred = TextDatumGetCString(DirectFunctionCall2(pg_get_expr, d, ObjectIdGetDatum(c->relid)));
		Bitmapset  *vars = NULL;

		pull_varattnos(stringToNode(TextDatumGetCString(d)), 1, &vars);
		if (bms_is_member(get_attnum(c->relid, c->old_col) - FirstLowInvalidHeapAttributeNumber, vars))
			pred = zdm_expr_rename_column(c->migration, what, pred, c->old_col, c->new_col);
		(void) zdm_dup_analyse(c, c->desc, what, pred, BOOLOID,
							 "Drop the index before the migration and create one that fits the new type after contract.");
		appendStringInfo(&buf, " WHERE (%s)", pred);
	}
	ReleaseSysCache(tup);
	ReleaseSysCache(reltup);
	return buf.data;
}

/* The deferred build of an index on the new column, and its undoing. */
static void
build_index_later(ZdmColumnCopy *c, const char *temp, const char *sql)
{
	char	   *qtemp = qualified_object(get_rel_namespace(c->relid), temp);
	ZdmPlanStep *build = expand_step(c->qualname, "validate", ZDM_RUNS_OUTSIDE, sql);

	refuse_taken_name(c, temp);
	refuse_no_create(c);
	build->index = qtemp;
	c->deferred = lappend(c->deferred, build);
	c->rollback_after = lappend(c->rollback_after,
								expand_step(c->qualname, "validate", ZDM_RUNS_OUTSIDE,
											psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", qtemp)));
}

/*
 * An index of the old column (a UNIQUE or PRIMARY KEY constraint's too),
 * built again on the new one later, named as the old one at contract.
 */
void
zdm_dup_index(ZdmColumnCopy *c, Oid indexoid)
{
	char	   *name = get_rel_name(indexoid);
	char	   *temp = zdm_made_name("zdm_dup_", name, NULL);
	char	   *final = qualified_object(get_rel_namespace(indexoid), name);
	Oid			con = get_index_constraint(indexoid);
	HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	Form_pg_index index;
	char	   *comment;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for index %u", indexoid);
	index = (Form_pg_index) GETSTRUCT(tup);
	build_index_later(c, temp, index_on_new_column(c, indexoid, temp));
	if (OidIsValid(con))
	{
		/* (ADD CONSTRAINT ... USING INDEX gives the index the constraint's name) */
		c->after_drop = lappend(c->after_drop,
								psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s USING INDEX %s", c->qualname,
										 quote_identifier(get_constraint_name(con)),
										 index->indisprimary ? "PRIMARY KEY" : "UNIQUE", quote_identifier(temp)));
		zdm_dup_constraint_comment(c, &c->after_drop, con, c->qualname, get_constraint_name(con));
		if (index->indisprimary && c->nullable)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("migration \"%s\": column \"%s\" of table \"%s\" is in its primary key \"%s\" and cannot become nullable",
							c->migration, c->old_col, c->table, get_constraint_name(con)),
					 errhint("Leave \"nullable\" out, or drop the primary key first.")));
	}
	else
		c->after_drop = lappend(c->after_drop,
								psprintf("ALTER INDEX %s RENAME TO %s",
										 qualified_object(get_rel_namespace(indexoid), temp),
										 quote_identifier(name)));
	comment = GetComment(indexoid, RelationRelationId, 0);
	if (comment != NULL && !OidIsValid(con))
		c->after_drop = lappend(c->after_drop,
								psprintf("COMMENT ON INDEX %s IS %s", final, quote_literal_cstr(comment)));
	for (int i = 1; i <= index->indnatts; i++)
	{
		HeapTuple	att = SearchSysCache2(ATTNUM, ObjectIdGetDatum(indexoid), Int16GetDatum(i));

		if (HeapTupleIsValid(att))
		{
			int			target = ((Form_pg_attribute) GETSTRUCT(att))->attstattarget;

			if (target >= 0)
				c->after_drop = lappend(c->after_drop,
										psprintf("ALTER INDEX %s ALTER COLUMN %d SET STATISTICS %d", final, i, target));
			ReleaseSysCache(att);
		}
	}
	if (index->indisclustered)
		c->after_drop = lappend(c->after_drop,
								psprintf("ALTER TABLE %s CLUSTER ON %s", c->qualname, quote_identifier(name)));
	if (index->indisreplident)
		c->after_drop = lappend(c->after_drop,
								psprintf("ALTER TABLE %s REPLICA IDENTITY USING INDEX %s", c->qualname,
										 quote_identifier(name)));
	ReleaseSysCache(tup);
}

/* The migration's "unique": a UNIQUE constraint on the new column. */
void
zdm_dup_unique(ZdmColumnCopy *c)
{
	static const char *const keys[] = {"name", NULL};
	char	   *name = zdm_json_string(c->ctx, c->unique, "name", true);
	char	   *temp;
	Oid			existing;

	zdm_json_check_keys(c->ctx, c->unique, "\"unique\"", keys, NULL);
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": constraint name \"%s\" of table \"%s\" is too long",
						c->migration, name, c->table),
				 errhint("Constraint names are at most %d bytes.", NAMEDATALEN - 1)));
	if (!OidIsValid(GetDefaultOpClass(c->typid, BTREE_AM_OID)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" cannot be unique: type %s has no default operator class for btree",
						c->migration, c->old_col, c->table, format_type_be(c->typid)),
				 errhint("Leave \"unique\" out, or choose a type that has one.")));
	existing = get_relation_constraint_oid(c->relid, name, true);
	if (OidIsValid(existing))
	{
		/* a UNIQUE constraint of the old column alone: replaced, its name taken after contract */
		Oid			index = get_constraint_index(existing);
		Bitmapset  *cols = OidIsValid(index) ? zdm_index_columns(index) : NULL;

		bool		primary = false;

		if (OidIsValid(index))
		{
			HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(index));

			if (HeapTupleIsValid(itup))
			{
				primary = ((Form_pg_index) GETSTRUCT(itup))->indisprimary;
				ReleaseSysCache(itup);
			}
		}
		if (!OidIsValid(index) || !list_member_oid(c->attached.indexes, index) ||
			bms_membership(cols) != BMS_SINGLETON || get_index_constraint(index) != existing || primary)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" already exists",
							c->migration, name, c->table),
					 errhint("Choose another name; a UNIQUE constraint of column \"%s\" alone may be restated under its own name, "
							 "and then replaces it.", c->old_col)));
		c->attached.indexes = list_delete_oid(c->attached.indexes, index);
	}
	else if (OidIsValid(get_relname_relid(name, get_rel_namespace(c->relid))))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\": relation \"%s\" already exists in the schema of table \"%s\"",
						c->migration, name, c->table),
				 errhint("A UNIQUE constraint's index takes the constraint's name: choose another name.")));
	temp = zdm_made_name("zdm_dup_", name, NULL);
	build_index_later(c, temp, psprintf("CREATE UNIQUE INDEX CONCURRENTLY %s ON %s USING btree (%s)",
										quote_identifier(temp), c->qualname, quote_identifier(c->new_col)));
	c->after_drop = lappend(c->after_drop,
							psprintf("ALTER TABLE %s ADD CONSTRAINT %s UNIQUE USING INDEX %s", c->qualname,
									 quote_identifier(name), quote_identifier(temp)));
	if (OidIsValid(existing))
		zdm_dup_constraint_comment(c, &c->after_drop, existing, c->qualname, name);
}
