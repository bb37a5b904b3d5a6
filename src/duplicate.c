/*-------------------------------------------------------------------------
 *
 * duplicate.c
 *	  Duplicating a column with its constraints: the new column of an
 *	  alter_column keeps what the old one had.
 *
 * An alter_column that changes a column's type or name creates a new
 * column, and contract drops the old one with everything on it.  What the
 * migration does not restate, the new column takes over, as pgroll's
 * duplicator does, but never silently less: what cannot be carried is
 * refused at expand (here, or in dependents.c), naming it.
 *
 *	- CHECK constraints naming the column, rewritten to name the new one:
 *	  added NOT VALID at expand under a temporary name (the old one still
 *	  holds the name), validated by contract under SHARE UPDATE EXCLUSIVE
 *	  before the swap (unless the old one was NOT VALID itself), renamed to
 *	  the old name once the old column is gone.  One that does not hold
 *	  for the new type (length() of an integer) is refused: restate it.
 *	- The migration's own "check", on the new column (also in place, where
 *	  its text names the column by its old name: the new version's name
 *	  for it).  Under the name of a check of the old column it replaces
 *	  that one, which is then not carried.
 *	- Foreign keys of the column, likewise NOT VALID, validated, renamed.
 *	  Adding one takes SHARE ROW EXCLUSIVE on the table it references
 *	  (expand locks it with the others), and dropping one ACCESS EXCLUSIVE
 *	  (contract's and rollback's steps name that table, so they lock it
 *	  with the others).
 *	- Every index naming the column (in its key, INCLUDE list, expression
 *	  or predicate), UNIQUE and PRIMARY KEY constraints' included, and the
 *	  migration's own "unique": built again on the new column by CREATE
 *	  INDEX CONCURRENTLY in a deferred step (the worker runs it once the
 *	  backfill is done), under a temporary name.  The definition is the
 *	  catalog's, column by column (pg_index, and pg_get_indexdef's text of
 *	  each expression and of the predicate, whose references to the old
 *	  column are renamed on their parse tree: expr.c); an operator class
 *	  or collation that does not fit the new type is refused.  Contract,
 *	  once the old column and its indexes are gone, gives each its old
 *	  name: ALTER INDEX ... RENAME, or for a constraint ADD CONSTRAINT ...
 *	  USING INDEX, which scans nothing (a primary key's column is NOT NULL
 *	  by then).  Rollback drops them with the new column (and again, DROP
 *	  INDEX CONCURRENTLY IF EXISTS, after it).
 *	- Foreign keys of other tables (or of other columns) that reference
 *	  the column: once the new column's unique index is built, a deferred
 *	  step adds the same key on the new column NOT VALID and another
 *	  validates it; contract drops the old one (before the old column) and
 *	  gives the new one its name.  The referencing table must be the
 *	  author's, and not partitioned (PostgreSQL 15 adds no foreign key NOT
 *	  VALID there).
 *	- The default, at contract (the new column has none while both are
 *	  live: trigger.c), unless "default" is given (null: none).  A default
 *	  that is a constant keeps its spelling when its type does not fit the
 *	  new column ('0'::text becomes '0' for an integer).  The sequence the
 *	  old column owns (serial) passes to the new one before the drop.
 *	- The comment, at expand, unless "comment" is given (null: none), on
 *	  the table and on every partition that has its own.
 *	- Retired API versions' guard views (SELECT * of the table) are
 *	  dropped before the old column and created again after the rename.
 *
 * NOT NULL is expand.c's (add_not_null): "nullable" defaults to what the
 * old column was.  Rollback drops the new column, which takes its
 * constraints, comment and foreign keys along; the constraints are also
 * dropped by name first, so that a check naming only other columns does
 * not stay behind.
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/sysattr.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "access/stratnum.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_index.h"
#include "commands/comment.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_opclass.h"
#include "access/amapi.h"
#include "catalog/index.h"
#include "commands/defrem.h"
#include "commands/tablespace.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "parser/parse_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

static char *
qualified_rel(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* A constraint of the table named name, or InvalidOid. */
static Oid
constraint_named(Oid relid, const char *name)
{
	return get_relation_constraint_oid(relid, name, true);
}

/*
 * An ADD CONSTRAINT, its VALIDATE (validated: the old one was), and its
 * rollback (unless the caller makes that a step of its own).
 */
static void
add_constraint(ZdmColumnCopy *c, const char *name, const char *def, bool validated,
			   bool rollback)
{
	char	   *qname = (char *) quote_identifier(name);

	c->expand = lappend(c->expand, psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID",
											c->qualname, qname, def));
	if (validated)
		c->validate = lappend(c->validate, psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s",
													c->qualname, qname));
	if (rollback)
		c->rollback = lappend(c->rollback, psprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s",
													c->qualname, qname));
}

/* Back to the old constraint's name once the old column is gone. */
static void
rename_constraint(ZdmColumnCopy *c, const char *temp, const char *name)
{
	c->after_drop = lappend(c->after_drop,
							psprintf("ALTER TABLE %s RENAME CONSTRAINT %s TO %s", c->qualname,
									 quote_identifier(temp), quote_identifier(name)));
}

/*
 * Analyse an expression over the table (with the new column) as type
 * typid (InvalidOid: its own); what went wrong re-raised with hint (NULL:
 * as it is).  Returns the analysed expression.
 */
static Node *
analyse_expr(ZdmColumnCopy *c, TupleDesc desc, const char *what, const char *text,
			 Oid typid, const char *hint)
{
	MemoryContext cxt = CurrentMemoryContext;
	Node	   *volatile expr = NULL;

	PG_TRY();
	{
		expr = zdm_expr_analyze(c->migration, what, desc, c->table, text, typid, -1);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		if (hint == NULL)
			PG_RE_THROW();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s", edata->message),
				 errhint("%s", hint)));
	}
	PG_END_TRY();
	return expr;
}

/* Analyse a check for the new column (see analyse_expr). */
static Node *
analyse_check(ZdmColumnCopy *c, TupleDesc desc, const char *what, const char *text,
			  const char *hint)
{
	return analyse_expr(c, desc, what, text, BOOLOID, hint);
}

/* Analyse a carried default for the new column's type, or say what to do. */
static void
analyse_default(ZdmColumnCopy *c, const char *what, const char *text)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		(void) zdm_expr_analyze(c->migration, what, CreateTemplateTupleDesc(0), c->table,
								text, c->typid, c->typmod);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s", edata->message),
				 errhint("Give the alter_column a \"default\" for the new column, or \"default\": null for none.")));
	}
	PG_END_TRY();
}

/* The migration's own "check": on the new column, whatever name it uses. */
static void
own_check(ZdmColumnCopy *c)
{
	static const char *const keys[] = {"name", "constraint", NULL};
	static const char *const unsupported[] = {"no_inherit", NULL};
	char	   *name = zdm_json_string(c->ctx, c->check, "name", true);
	char	   *text = zdm_json_string(c->ctx, c->check, "constraint", true);
	char	   *what = psprintf("check constraint \"%s\"", name);
	Oid			existing;
	char	   *temp = NULL;
	Node	   *expr = NULL;
	Bitmapset  *atts = NULL;
	int			x = -1;

	zdm_json_check_keys(c->ctx, c->check, "\"check\"", keys, unsupported);
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": constraint name \"%s\" of table \"%s\" is too long",
						c->migration, name, c->table),
				 errhint("Constraint names are at most %d bytes.", NAMEDATALEN - 1)));
	/* in place, the new version calls the new column by the old name */
	if (c->seen)
		expr = analyse_check(c, c->seen, what, text, NULL);
	text = zdm_expr_rename_column(c->migration, what, text, c->old_col, c->new_col);
	if (!c->seen)
		expr = analyse_check(c, c->desc, what, text, NULL);
	/* the columns it names, by their physical names: expand.c checks them */
	pull_varattnos(expr, 1, &atts);
	while ((x = bms_next_member(atts, x)) >= 0)
		c->check_columns = lappend(c->check_columns,
								   pstrdup(NameStr(TupleDescAttr(c->desc, x + FirstLowInvalidHeapAttributeNumber - 1)->attname)));

	existing = constraint_named(c->relid, name);
	if (OidIsValid(existing))
	{
		/* a check of the old column: replaced, under its name after contract */
		if (!list_member_oid(c->attached.checks, existing))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" already exists",
							c->migration, name, c->table),
					 errhint("Choose another name; a check of column \"%s\" itself may be restated under its own name, "
							 "and then replaces it.", c->old_col)));
		c->attached.checks = list_delete_oid(c->attached.checks, existing);
		temp = zdm_made_name("zdm_dup_", name, NULL);
		rename_constraint(c, temp, name);
	}
	add_constraint(c, temp ? temp : name, psprintf("CHECK (%s\n)", text), true, true);
}

/* A CHECK constraint of the old column, onto the new one. */
static void
carry_check(ZdmColumnCopy *c, Oid conoid)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	char	   *name;
	char	   *sql_text;
	char	   *temp;
	bool		isnull;
	Datum		bin;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);
	name = pstrdup(NameStr(con->conname));
	bin = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conbin, &isnull);
	if (isnull)
		elog(ERROR, "zdm: null conbin for constraint %u", conoid);
	sql_text = TextDatumGetCString(DirectFunctionCall2(pg_get_expr, bin, ObjectIdGetDatum(c->relid)));
	sql_text = zdm_expr_rename_column(c->migration, psprintf("check constraint \"%s\"", name), sql_text,
								  c->old_col, c->new_col);
	analyse_check(c, c->desc,
				  psprintf("check constraint \"%s\" of column \"%s\", carried over to the new column (%s)",
						   name, c->old_col, format_type_with_typemod(c->typid, c->typmod)),
				  sql_text,
				  psprintf("Restate it for the new column in the alter_column's \"check\", under the name \"%s\" "
						   "(it then replaces the old one), or drop it before the migration.", name));
	temp = zdm_made_name("zdm_dup_", name, NULL);
	add_constraint(c, temp, psprintf("CHECK (%s)%s", sql_text, con->connoinherit ? " NO INHERIT" : ""),
				   con->convalidated, true);
	rename_constraint(c, temp, name);
	ReleaseSysCache(tup);
}

/* The columns of a constraint key, by name, the old column made the new one. */
static char *
key_columns(ZdmColumnCopy *c, Oid relid, HeapTuple tup, AttrNumber attr, bool swap)
{
	bool		isnull;
	Datum		d = SysCacheGetAttr(CONSTROID, tup, attr, &isnull);
	ArrayType  *arr;
	int16	   *k;
	StringInfoData buf;

	if (isnull)
		return NULL;
	arr = DatumGetArrayTypeP(d);
	k = (int16 *) ARR_DATA_PTR(arr);
	initStringInfo(&buf);
	for (int i = 0; i < (ARR_NDIM(arr) > 0 ? ARR_DIMS(arr)[0] : 0); i++)
	{
		char	   *col = get_attname(relid, k[i], false);

		if (swap && strcmp(col, c->old_col) == 0)
			col = (char *) c->new_col;
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", quote_identifier(col));
	}
	return buf.data;
}

static const char *
fk_action(char action)
{
	switch (action)
	{
		case FKCONSTR_ACTION_RESTRICT:
			return "RESTRICT";
		case FKCONSTR_ACTION_CASCADE:
			return "CASCADE";
		case FKCONSTR_ACTION_SETNULL:
			return "SET NULL";
		case FKCONSTR_ACTION_SETDEFAULT:
			return "SET DEFAULT";
		default:
			return "NO ACTION";
	}
}

/*
 * Can a foreign key from a column of type fktype reference column pkatt
 * of pkrel through unique index pkindex?  As ATAddForeignKeyConstraint
 * decides it: the index's operator family compares fktype with the key's
 * type, or fktype casts to it implicitly.
 */
static bool
type_compares(Oid fktype, Oid pkrel, AttrNumber pkatt, Oid pkindex)
{
	HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkindex));
	Oid			pktype = get_atttype(pkrel, pkatt);
	Oid			opclass = InvalidOid;
	bool		isnull;

	fktype = getBaseType(fktype);
	if (HeapTupleIsValid(itup))
	{
		Form_pg_index index = (Form_pg_index) GETSTRUCT(itup);
		oidvector  *indclass = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, itup,
																			  Anum_pg_index_indclass,
																			  &isnull));

		for (int i = 0; i < index->indnkeyatts; i++)
			if (index->indkey.values[i] == pkatt)
				opclass = indclass->values[i];
		ReleaseSysCache(itup);
	}
	if (OidIsValid(opclass))
	{
		Oid			family = get_opclass_family(opclass);

		pktype = get_opclass_input_type(opclass);
		if (OidIsValid(get_opfamily_member(family, pktype, fktype, BTEqualStrategyNumber)) &&
			OidIsValid(get_opfamily_member(family, fktype, fktype, BTEqualStrategyNumber)))
			return true;
	}
	return can_coerce_type(1, &fktype, &pktype, COERCION_IMPLICIT);
}

/* The referenced column a foreign key pairs the old column with. */
static AttrNumber
referenced_column(ZdmColumnCopy *c, HeapTuple tup)
{
	bool		isnull;
	ArrayType  *keys = DatumGetArrayTypeP(SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull));
	ArrayType  *fkeys = DatumGetArrayTypeP(SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_confkey, &isnull));
	int16	   *k = (int16 *) ARR_DATA_PTR(keys);
	int16	   *fk = (int16 *) ARR_DATA_PTR(fkeys);
	AttrNumber	old = get_attnum(c->relid, c->old_col);

	for (int i = 0; i < ARR_DIMS(keys)[0]; i++)
		if (k[i] == old)
			return fk[i];
	return InvalidAttrNumber;
}

/* PostgreSQL 15 adds no foreign key NOT VALID to a partitioned table. */
static void
refuse_partitioned_fkey(ZdmColumnCopy *c, const char *name)
{
	if (get_rel_relkind(c->relid) == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": foreign key \"%s\" cannot be put on the new column of partitioned table \"%s\"",
						c->migration, name, c->table),
				 errdetail("PostgreSQL 15 cannot add a foreign key NOT VALID to a partitioned table, and adding it valid would scan the table under lock."),
				 errhint("Drop the foreign key before the migration and add it again after contract, or leave column \"%s\" as it is.",
						 c->old_col)));
}

/*
 * A new foreign key on another table: contract and rollback drop keys
 * there (the old one, the new one), which takes that table's ACCESS
 * EXCLUSIVE lock too; steps naming it make them lock it with the others
 * (ddl.c).  Expand takes SHARE ROW EXCLUSIVE on it.
 */
static void
fkey_on_other_table(ZdmColumnCopy *c, Oid confrelid, const char *old_name, const char *new_name)
{
	ZdmPlanStep *undo = palloc0(sizeof(ZdmPlanStep));

	if (old_name)
	{
		ZdmPlanStep *drop = palloc0(sizeof(ZdmPlanStep));

		drop->relation = qualified_rel(confrelid);
		drop->lock = "exclusive";
		drop->sql = psprintf("ALTER TABLE %s DROP CONSTRAINT %s", c->qualname, quote_identifier(old_name));
		c->contract_other = lappend(c->contract_other, drop);
	}
	undo->relation = qualified_rel(confrelid);
	undo->lock = "exclusive";
	undo->sql = psprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", c->qualname,
						 quote_identifier(new_name));
	c->rollback_other = lappend(c->rollback_other, undo);
	c->referenced = list_append_unique_oid(c->referenced, confrelid);
}

/* A foreign key of the old column, onto the new one. */
static void
carry_fkey(ZdmColumnCopy *c, Oid conoid)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	char	   *name;
	char	   *temp;
	char	   *setcols;
	AttrNumber	pkatt;
	StringInfoData def;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);
	name = pstrdup(NameStr(con->conname));
	refuse_partitioned_fkey(c, name);
	pkatt = referenced_column(c, tup);
	if (!type_compares(c->typid, con->confrelid, pkatt, con->conindid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("migration \"%s\": foreign key \"%s\" of column \"%s\" of table \"%s\" cannot be carried over to type %s",
						c->migration, name, c->old_col, c->table, format_type_with_typemod(c->typid, c->typmod)),
				 errdetail("The column it references is of type %s.",
						   format_type_be(get_atttype(con->confrelid, pkatt))),
				 errhint("Drop the foreign key before the migration and add one that fits after contract, or choose a type that compares with %s.",
						 format_type_be(get_atttype(con->confrelid, pkatt)))));

	initStringInfo(&def);
	appendStringInfo(&def, "FOREIGN KEY (%s) REFERENCES %s (%s)",
					 key_columns(c, c->relid, tup, Anum_pg_constraint_conkey, true),
					 qualified_rel(con->confrelid),
					 key_columns(c, con->confrelid, tup, Anum_pg_constraint_confkey, false));
	if (con->confmatchtype == FKCONSTR_MATCH_FULL)
		appendStringInfoString(&def, " MATCH FULL");
	appendStringInfo(&def, " ON UPDATE %s ON DELETE %s", fk_action(con->confupdtype),
					 fk_action(con->confdeltype));
	setcols = key_columns(c, c->relid, tup, Anum_pg_constraint_confdelsetcols, true);
	if (setcols && setcols[0] != '\0')
		appendStringInfo(&def, " (%s)", setcols);
	if (con->condeferrable)
		appendStringInfoString(&def, " DEFERRABLE");
	if (con->condeferred)
		appendStringInfoString(&def, " INITIALLY DEFERRED");

	temp = zdm_made_name("zdm_dup_", name, NULL);
	add_constraint(c, temp, def.data, con->convalidated, con->confrelid == c->relid);
	rename_constraint(c, temp, name);
	if (con->confrelid != c->relid)
		fkey_on_other_table(c, con->confrelid, name, temp);
	ReleaseSysCache(tup);
}

/* An action of "references" ("CASCADE", ...), checked. */
static const char *
fk_action_value(ZdmColumnCopy *c, const char *key)
{
	static const char *const actions[] = {"NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT", NULL};
	char	   *v = zdm_json_string(c->ctx, c->references, key, false);

	if (v == NULL)
		return "NO ACTION";
	for (const char *const *a = actions; *a; a++)
		if (pg_strcasecmp(v, *a) == 0)
			return *a;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("migration \"%s\": \"%s\" of \"references\" must be NO ACTION, RESTRICT, CASCADE, SET NULL or SET DEFAULT, not \"%s\"",
					c->migration, key, v),
			 errhint("Correct the migration's JSON and run it again.")));
	return NULL;				/* keep compiler quiet */
}

/* A unique index of relid on exactly column att, usable by a foreign key. */
static Oid
unique_index_on(Oid relid, AttrNumber att)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	Oid			found = InvalidOid;
	ListCell   *lc;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tup))
			continue;
		index = (Form_pg_index) GETSTRUCT(tup);
		if (index->indisunique && index->indimmediate && index->indisvalid &&
			index->indnkeyatts == 1 && index->indkey.values[0] == att &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL))
			found = lfirst_oid(lc);
		ReleaseSysCache(tup);
		if (OidIsValid(found))
			break;
	}
	relation_close(rel, AccessShareLock);
	return found;
}

/* The migration's "references": a foreign key on the new column. */
static void
own_fkey(ZdmColumnCopy *c)
{
	static const char *const keys[] = {"name", "table", "column", "on_delete", "on_update",
	"match_type", "deferrable", "initially_deferred", NULL};
	char	   *name = zdm_json_string(c->ctx, c->references, "name", true);
	char	   *table = zdm_json_string(c->ctx, c->references, "table", true);
	char	   *column = zdm_json_string(c->ctx, c->references, "column", true);
	char	   *match = zdm_json_string(c->ctx, c->references, "match_type", false);
	const char *on_delete = fk_action_value(c, "on_delete");
	const char *on_update = fk_action_value(c, "on_update");
	bool		deferrable = zdm_json_bool(c->ctx, c->references, "deferrable", false);
	bool		deferred = zdm_json_bool(c->ctx, c->references, "initially_deferred", false);
	Oid			confrelid;
	AttrNumber	pkatt;
	Oid			pkindex;
	Oid			existing;
	char	   *temp = NULL;

	zdm_json_check_keys(c->ctx, c->references, "\"references\"", keys, NULL);
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": constraint name \"%s\" of table \"%s\" is too long",
						c->migration, name, c->table),
				 errhint("Constraint names are at most %d bytes.", NAMEDATALEN - 1)));
	if (match && pg_strcasecmp(match, "SIMPLE") != 0 && pg_strcasecmp(match, "FULL") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": \"match_type\" of \"references\" must be SIMPLE or FULL, not \"%s\"",
						c->migration, match),
				 errhint("PostgreSQL does not implement MATCH PARTIAL.")));
	confrelid = RangeVarGetRelid(makeRangeVar(c->schema ? pstrdup(c->schema) : NULL, table, -1),
								 NoLock, true);
	if (!OidIsValid(confrelid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("migration \"%s\": table \"%s\" that \"references\" names does not exist",
						c->migration, table),
				 errhint("Create it first, or correct the name.")));
	/* claimed before it is read, like the tables the operations name */
	zdm_claim_relations(c->migration, list_make1_oid(confrelid), &c->claim);
	pkatt = get_attnum(confrelid, column);
	if (pkatt == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" that \"references\" names does not exist",
						c->migration, column, table),
				 errhint("Correct the column's name.")));
	pkindex = unique_index_on(confrelid, pkatt);
	if (!OidIsValid(pkindex))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FOREIGN_KEY),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" has no unique constraint for a foreign key to reference",
						c->migration, column, table),
				 errhint("Reference a primary key or a column with a unique constraint.")));
	if (!type_compares(c->typid, confrelid, pkatt, pkindex))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("migration \"%s\": foreign key \"%s\" cannot reference column \"%s\" of table \"%s\" (type %s) from type %s",
						c->migration, name, column, table, format_type_be(get_atttype(confrelid, pkatt)),
						format_type_with_typemod(c->typid, c->typmod)),
				 errhint("Give the column a type that compares with the one it references.")));
	refuse_partitioned_fkey(c, name);

	existing = constraint_named(c->relid, name);
	if (OidIsValid(existing))
	{
		/* a foreign key of the old column: replaced, its name taken after contract */
		if (!list_member_oid(c->attached.fkeys, existing))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" already exists",
							c->migration, name, c->table),
					 errhint("Choose another name; a foreign key of column \"%s\" itself may be restated under its own name, "
							 "and then replaces it.", c->old_col)));
		c->attached.fkeys = list_delete_oid(c->attached.fkeys, existing);
		temp = zdm_made_name("zdm_dup_", name, NULL);
		rename_constraint(c, temp, name);
	}
	add_constraint(c, temp ? temp : name,
				   psprintf("FOREIGN KEY (%s) REFERENCES %s (%s)%s ON UPDATE %s ON DELETE %s%s%s",
							quote_identifier(c->new_col), qualified_rel(confrelid), quote_identifier(column),
							match && pg_strcasecmp(match, "FULL") == 0 ? " MATCH FULL" : "",
							on_update, on_delete, deferrable ? " DEFERRABLE" : "",
							deferred ? " INITIALLY DEFERRED" : ""),
				   true, confrelid == c->relid);
	if (confrelid != c->relid)
		fkey_on_other_table(c, confrelid,
							OidIsValid(existing) ? name : NULL, temp ? temp : name);
}

/* The default of the old column, for the new one: set at contract. */
static void
carry_default(ZdmColumnCopy *c)
{
	Node	   *expr;
	char	   *deftext = zdm_column_default(c->relid, get_attnum(c->relid, c->old_col), &expr);
	char	   *what;
	char	   *use = NULL;
	Oid			type;

	if (deftext == NULL)
		return;
	what = psprintf("default %s of column \"%s\", carried over to the new column (%s)",
					deftext, c->old_col, format_type_with_typemod(c->typid, c->typmod));
	type = exprType(zdm_expr_analyze(c->migration, what, CreateTemplateTupleDesc(0), c->table,
									 deftext, InvalidOid, -1));
	if (can_coerce_type(1, &type, &c->typid, COERCION_ASSIGNMENT))
		use = deftext;
	else
	{
		/* a constant of the old type: its spelling, for the new type */
		Node	   *e = strip_implicit_coercions(expr);

		if (e != NULL && IsA(e, Const) && !((Const *) e)->constisnull)
		{
			Oid			out;
			bool		varlena;

			getTypeOutputInfo(((Const *) e)->consttype, &out, &varlena);
			use = quote_literal_cstr(OidOutputFunctionCall(out, ((Const *) e)->constvalue));
		}
	}
	if (use == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("migration \"%s\": the default %s of column \"%s\" of table \"%s\" cannot be carried over to type %s",
						c->migration, deftext, c->old_col, c->table, format_type_with_typemod(c->typid, c->typmod)),
				 errhint("Give the alter_column a \"default\" for the new column, or \"default\": null for none.")));
	/* the constant's spelling may still not be a value of the new type */
	analyse_default(c, what, use);
	c->before_drop = lappend(c->before_drop,
							 psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", c->qualname,
									  quote_identifier(c->new_col), use));
}

/* COMMENT ON COLUMN rel.new_col, with the comment rel's old column has. */
static void
carry_comment(ZdmColumnCopy *c, Oid relid)
{
	char	   *comment = GetComment(relid, RelationRelationId, get_attnum(relid, c->old_col));

	if (comment != NULL)
		c->expand = lappend(c->expand,
							psprintf("COMMENT ON COLUMN %s.%s IS %s", qualified_rel(relid),
									 quote_identifier(c->new_col), quote_literal_cstr(comment)));
}

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
		expr = analyse_expr(c, c->desc, what, exprtext, InvalidOid,
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
		(void) analyse_expr(c, c->desc, what, pred, BOOLOID,
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

/* COMMENT ON CONSTRAINT, once contract has given it its name, when it has one. */
static void
carry_constraint_comment(ZdmColumnCopy *c, List **into, Oid conoid, const char *qualname, const char *name)
{
	char	   *comment = GetComment(conoid, ConstraintRelationId, 0);

	if (comment != NULL)
		*into = lappend(*into, psprintf("COMMENT ON CONSTRAINT %s ON %s IS %s", quote_identifier(name),
										qualname, quote_literal_cstr(comment)));
}

/*
 * An index of the old column (a UNIQUE or PRIMARY KEY constraint's too),
 * built again on the new one later, named as the old one at contract.
 */
static void
carry_index(ZdmColumnCopy *c, Oid indexoid)
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
		carry_constraint_comment(c, &c->after_drop, con, c->qualname, get_constraint_name(con));
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
static void
own_unique(ZdmColumnCopy *c)
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
	existing = constraint_named(c->relid, name);
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
		carry_constraint_comment(c, &c->after_drop, existing, c->qualname, name);
}

/*
 * Can a foreign key from a column of type fktype reference the new column
 * (type pktype) through a btree index of its default operator class?  As
 * type_compares decides it for an existing index.
 */
static bool
new_type_compares(Oid fktype, Oid pktype)
{
	Oid			opclass = GetDefaultOpClass(pktype, BTREE_AM_OID);

	fktype = getBaseType(fktype);
	if (OidIsValid(opclass))
	{
		Oid			family = get_opclass_family(opclass);

		pktype = get_opclass_input_type(opclass);
		if (OidIsValid(get_opfamily_member(family, pktype, fktype, BTEqualStrategyNumber)) &&
			OidIsValid(get_opfamily_member(family, fktype, fktype, BTEqualStrategyNumber)))
			return true;
	}
	return can_coerce_type(1, &fktype, &pktype, COERCION_IMPLICIT);
}

/*
 * A foreign key of another table (or another column) that references the
 * old column: the same key on the new column, added NOT VALID and
 * validated by the worker once the new column's unique index is built;
 * contract drops the old one and gives the new one its name.
 */
static void
carry_referencing(ZdmColumnCopy *c, Oid conoid)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	char	   *name;
	char	   *temp;
	char	   *other;
	char	   *setcols;
	bool		self;
	StringInfoData def;
	bool		isnull;
	ArrayType  *keys;
	ArrayType  *fkeys;
	AttrNumber	oldatt = get_attnum(c->relid, c->old_col);

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);
	name = pstrdup(NameStr(con->conname));
	other = qualified_rel(con->conrelid);
	self = con->conrelid == c->relid;
	if (get_rel_relkind(con->conrelid) == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": foreign key \"%s\" of partitioned table \"%s\" references column \"%s\" of table \"%s\", and cannot be moved to the new column",
						c->migration, name, get_rel_name(con->conrelid), c->old_col, c->table),
				 errdetail("PostgreSQL 15 cannot add a foreign key NOT VALID to a partitioned table, and adding it valid would scan the table under lock."),
				 errhint("Drop the foreign key before the migration and add it again after contract, or leave column \"%s\" as it is.",
						 c->old_col)));
	if (!pg_class_ownercheck(con->conrelid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("migration \"%s\": foreign key \"%s\" of table \"%s\" references column \"%s\" of table \"%s\", and role \"%s\" does not own table \"%s\"",
						c->migration, name, get_rel_name(con->conrelid), c->old_col, c->table,
						GetUserNameFromId(GetUserId(), false), get_rel_name(con->conrelid)),
				 errdetail("zdm moves the foreign key to the new column, which takes ALTER TABLE on its table."),
				 errhint("Run the migration as the owner of both tables (or a member of their owning role), or drop the foreign key first.")));
	keys = DatumGetArrayTypeP(SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull));
	fkeys = DatumGetArrayTypeP(SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_confkey, &isnull));
	for (int i = 0; i < ARR_DIMS(fkeys)[0]; i++)
	{
		AttrNumber	fkatt = ((int16 *) ARR_DATA_PTR(keys))[i];

		if (((int16 *) ARR_DATA_PTR(fkeys))[i] == oldatt &&
			!new_type_compares(get_atttype(con->conrelid, fkatt), c->typid))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("migration \"%s\": foreign key \"%s\" of table \"%s\" cannot reference column \"%s\" of table \"%s\" as type %s",
							c->migration, name, get_rel_name(con->conrelid), c->old_col, c->table,
							format_type_with_typemod(c->typid, c->typmod)),
					 errdetail("Its column \"%s\" is of type %s.", get_attname(con->conrelid, fkatt, false),
							   format_type_be(get_atttype(con->conrelid, fkatt))),
					 errhint("Choose a type that compares with %s, or drop the foreign key first.",
							 format_type_be(get_atttype(con->conrelid, fkatt)))));
	}

	initStringInfo(&def);
	appendStringInfo(&def, "FOREIGN KEY (%s) REFERENCES %s (%s)",
					 key_columns(c, con->conrelid, tup, Anum_pg_constraint_conkey, false),
					 c->qualname, key_columns(c, c->relid, tup, Anum_pg_constraint_confkey, true));
	if (con->confmatchtype == FKCONSTR_MATCH_FULL)
		appendStringInfoString(&def, " MATCH FULL");
	appendStringInfo(&def, " ON UPDATE %s ON DELETE %s", fk_action(con->confupdtype),
					 fk_action(con->confdeltype));
	setcols = key_columns(c, con->conrelid, tup, Anum_pg_constraint_confdelsetcols, false);
	if (setcols && setcols[0] != '\0')
		appendStringInfo(&def, " (%s)", setcols);
	if (con->condeferrable)
		appendStringInfoString(&def, " DEFERRABLE");
	if (con->condeferred)
		appendStringInfoString(&def, " INITIALLY DEFERRED");

	temp = zdm_made_name("zdm_dup_", name, NULL);
	if (OidIsValid(get_relation_constraint_oid(con->conrelid, temp, true)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" already exists",
						c->migration, temp, get_rel_name(con->conrelid)),
				 errhint("It may be left over from an earlier attempt: drop it and expand again.")));
	/* after the unique index it relies on (the deferred steps run in order) */
	c->deferred_fkeys = lappend(c->deferred_fkeys,
								expand_step(other, "share_row", ZDM_RUNS_WORKER,
											psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID", other,
													 quote_identifier(temp), def.data)));
	if (con->convalidated)
		c->deferred_fkeys = lappend(c->deferred_fkeys,
									expand_step(other, "validate", ZDM_RUNS_WORKER,
												psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", other,
														 quote_identifier(temp))));
	if (self)
	{
		c->before_drop = lappend(c->before_drop, psprintf("ALTER TABLE %s DROP CONSTRAINT %s", other,
														  quote_identifier(name)));
		rename_constraint(c, temp, name);
		carry_constraint_comment(c, &c->after_drop, conoid, other, name);
		c->rollback = lappend(c->rollback, psprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", other,
													quote_identifier(temp)));
	}
	else
	{
		List	   *renamed = NIL;

		c->contract_other = lappend(c->contract_other,
									expand_step(other, "exclusive", ZDM_RUNS_CALLER,
												psprintf("ALTER TABLE %s DROP CONSTRAINT %s", other,
														 quote_identifier(name))));
		c->contract_other = lappend(c->contract_other,
									expand_step(other, "exclusive", ZDM_RUNS_CALLER,
												psprintf("ALTER TABLE %s RENAME CONSTRAINT %s TO %s", other,
														 quote_identifier(temp), quote_identifier(name))));
		carry_constraint_comment(c, &renamed, conoid, other, name);
		if (renamed != NIL)
			c->contract_other = lappend(c->contract_other,
										expand_step(other, "exclusive", ZDM_RUNS_CALLER, linitial(renamed)));
		c->rollback_other = lappend(c->rollback_other,
									expand_step(other, "exclusive", ZDM_RUNS_CALLER,
												psprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", other,
														 quote_identifier(temp))));
	}
	ReleaseSysCache(tup);
}

/*
 * Give the new column what the old one has (c->attached, from
 * zdm_column_attached) and the migration does not restate: the statements
 * go into c's lists, in the order each phase runs them.
 */
void
zdm_duplicate_column(ZdmColumnCopy *c)
{
	ListCell   *lc;

	if (c->check)
		own_check(c);
	if (c->references)
		own_fkey(c);
	if (c->unique)
		own_unique(c);
	foreach(lc, c->attached.checks)
		carry_check(c, lfirst_oid(lc));
	foreach(lc, c->attached.fkeys)
		carry_fkey(c, lfirst_oid(lc));
	/* (the keys' deferred steps go after the indexes': deferred_fkeys) */
	foreach(lc, c->attached.referencing)
		carry_referencing(c, lfirst_oid(lc));
	foreach(lc, c->attached.indexes)
		carry_index(c, lfirst_oid(lc));
	c->deferred = list_concat(c->deferred, c->deferred_fkeys);
	if (c->keep_default)
		carry_default(c);
	foreach(lc, c->attached.sequences)
		c->before_drop = lappend(c->before_drop,
								 psprintf("ALTER SEQUENCE %s OWNED BY %s.%s", qualified_rel(lfirst_oid(lc)),
										  c->qualname, quote_identifier(c->new_col)));
	if (c->keep_comment)
	{
		carry_comment(c, c->relid);
		if (has_subclass(c->relid))
			foreach(lc, find_all_inheritors(c->relid, NoLock, NULL))
				if (lfirst_oid(lc) != c->relid)
					carry_comment(c, lfirst_oid(lc));
	}
	foreach(lc, c->attached.guards)
	{
		ZdmGuardView *g = lfirst(lc);

		c->before_drop = lappend(c->before_drop,
								 psprintf("DROP VIEW %s.%s", quote_identifier(g->version),
										  quote_identifier(c->table)));
		c->after_drop = list_concat(c->after_drop,
									zdm_guard_view_sql(c->qualname, c->table, g->version, g->retired_by));
	}
}
