/*-------------------------------------------------------------------------
 *
 * dependents.c
 *	  What hangs on a column that an alter_column replaces, found at expand.
 *
 * An alter_column that creates a new column drops the old one at contract,
 * and with it everything PostgreSQL records as depending on it.  Some of
 * that the new column must keep, and duplicate.c carries it over: CHECK
 * constraints, the column's foreign keys, its indexes (UNIQUE and PRIMARY
 * KEY constraints too), other foreign keys that reference it, the
 * sequence it owns, and the
 * guard views zdm left for retired API versions (SELECT * of the table,
 * so they name every column; they are dropped and created again around
 * the swap).  The rest zdm cannot carry yet, and expand refuses it here,
 * naming it, so that contract never finds it in the way of its DROP
 * COLUMN or, worse, drops it without a word:
 *
 *	- indexes zdm cannot build again CONCURRENTLY on the new column (the
 *	  others, UNIQUE and PRIMARY KEY constraints' included, are carried
 *	  by duplicate.c, with the foreign keys of other tables that rely on
 *	  them): a partitioned table's, an INVALID one, an exclusion or a
 *	  DEFERRABLE constraint's;
 *	- generated columns computed from it, views and materialized views
 *	  over it (but the version views that expand itself replaces), rules,
 *	  policies, statistics objects, triggers whose WHEN or column list
 *	  names it, publications' column lists, SQL-body functions.
 *
 * All of them are found the same way, as DROP COLUMN would find them: in
 * pg_depend, as objects depending on the column (of the table, and of each
 * partition or inheritance child: what one has of its own, not inherited
 * from the table, would be lost as well).  The column itself must be a
 * plain one: an identity or generated column cannot be carried either.
 *
 * A drop_column is asked to drop the column, and with it what exists for
 * that column alone: an index or a constraint that names no other column,
 * the sequence it owns (zdm_column_dropped lists them, and expand says so
 * in a NOTICE).  What also serves other columns (an index or constraint
 * naming another column too, in its key, expression or predicate), and
 * what would make contract's DROP COLUMN fail (another table's foreign
 * key, views, rules, policies, statistics objects, triggers, publication
 * column lists, generated columns, SQL-body functions) is refused at
 * expand, naming it: zdm never drops an index or constraint it was not
 * asked to drop, and contract never discovers a dependent.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_attrdef.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_rewrite.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "rewrite/rewriteSupport.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "optimizer/optimizer.h"
#include "access/sysattr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* Why an object is refused: each kind has its own hint. */
typedef enum RefusedKind
{
	REFUSED_INDEX,				/* an index, or a constraint or key needing one */
	REFUSED_GENERATED,			/* a generated column */
	REFUSED_VIEW,				/* a view or materialized view */
	REFUSED_OTHER				/* rules, policies, statistics, triggers, ... */
} RefusedKind;

typedef struct DepScan
{
	const char *migration;
	Oid			relid;			/* the table migrated */
	const char *col;
	bool		dropping;		/* drop_column: what goes with it, or refused */
	List	   *replaced_views; /* OIDs of views expand re-creates */
	ZdmColumnAttached *attached;
	List	   *refused;		/* descriptions, in the order found */
	List	   *kinds;			/* the RefusedKind of each */
	List	   *goes;			/* dropping: what goes with the column */
	char	   *default_text;	/* the table's default of the column, or NULL */
} DepScan;

static void
refuse(DepScan *sc, RefusedKind kind, char *what)
{
	ListCell   *lc;

	foreach(lc, sc->refused)
		if (strcmp(lfirst(lc), what) == 0)
			return;				/* a constraint and its index, say */
	sc->refused = lappend(sc->refused, what);
	sc->kinds = lappend_int(sc->kinds, kind);
}

/* What goes with a dropped column, once in the list. */
static void
goes(DepScan *sc, char *what)
{
	ListCell   *lc;

	foreach(lc, sc->goes)
		if (strcmp(lfirst(lc), what) == 0)
			return;
	sc->goes = lappend(sc->goes, what);
}

static char *
qualified_rel(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * The default of a column, deparsed, or NULL; *expr (if not NULL) gets it
 * as an expression tree.
 */
char *
zdm_column_default(Oid relid, AttrNumber attnum, Node **expr)
{
	Relation	rel = table_open(AttrDefaultRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *deparsed = NULL;

	if (expr)
		*expr = NULL;
	ScanKeyInit(&key[0], Anum_pg_attrdef_adrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&key[1], Anum_pg_attrdef_adnum, BTEqualStrategyNumber, F_INT2EQ,
				Int16GetDatum(attnum));
	scan = systable_beginscan(rel, AttrDefaultIndexId, true, NULL, 2, key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		bin = heap_getattr(tup, Anum_pg_attrdef_adbin, RelationGetDescr(rel), &isnull);

		if (!isnull)
		{
			deparsed = TextDatumGetCString(DirectFunctionCall2(pg_get_expr, bin, ObjectIdGetDatum(relid)));
			if (expr)
				*expr = stringToNode(TextDatumGetCString(bin));
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return deparsed;
}

/* "index public.t_idx", "policy p on public.t": an object for messages. */
static char *
described(Oid classid, Oid objid)
{
	ObjectAddress obj = {classid, objid, 0};

	return psprintf("%s %s", getObjectTypeDescription(&obj, false), getObjectIdentity(&obj, false));
}

static Oid
rel_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner = InvalidOid;

	if (HeapTupleIsValid(tup))
	{
		owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
		ReleaseSysCache(tup);
	}
	return owner;
}

/*
 * The columns of its table an index names: its key and INCLUDE columns and
 * the columns of its expressions and predicate (attribute numbers).
 */
Bitmapset *
zdm_index_columns(Oid indexoid)
{
	HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	Form_pg_index index;
	Bitmapset  *cols = NULL;
	Bitmapset  *vars = NULL;
	Datum		d;
	bool		isnull;
	int			x = -1;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for index %u", indexoid);
	index = (Form_pg_index) GETSTRUCT(tup);
	for (int i = 0; i < index->indnatts; i++)
		if (index->indkey.values[i] != 0)
			cols = bms_add_member(cols, index->indkey.values[i]);
	d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indexprs, &isnull);
	if (!isnull)
		pull_varattnos(stringToNode(TextDatumGetCString(d)), 1, &vars);
	d = SysCacheGetAttr(INDEXRELID, tup, Anum_pg_index_indpred, &isnull);
	if (!isnull)
		pull_varattnos(stringToNode(TextDatumGetCString(d)), 1, &vars);
	ReleaseSysCache(tup);
	while ((x = bms_next_member(vars, x)) >= 0)
		if (x + FirstLowInvalidHeapAttributeNumber > 0)
			cols = bms_add_member(cols, x + FirstLowInvalidHeapAttributeNumber);
	return cols;
}

/* The attribute numbers of a constraint's conkey (or confkey). */
static Bitmapset *
constraint_columns(HeapTuple tup, AttrNumber which)
{
	bool		isnull;
	Datum		keys = SysCacheGetAttr(CONSTROID, tup, which, &isnull);
	Bitmapset  *cols = NULL;

	if (!isnull)
	{
		ArrayType  *arr = DatumGetArrayTypeP(keys);
		int16	   *k = (int16 *) ARR_DATA_PTR(arr);

		for (int i = 0; i < (ARR_NDIM(arr) > 0 ? ARR_DIMS(arr)[0] : 0); i++)
			cols = bms_add_member(cols, k[i]);
	}
	return cols;
}

/* " (also covering column \"a\")" for an index or constraint of relid. */
static char *
also_covers(Oid relid, Bitmapset *cols, AttrNumber attnum)
{
	StringInfoData buf;
	int			x = -1;
	int			n = 0;

	initStringInfo(&buf);
	while ((x = bms_next_member(cols, x)) >= 0)
		if (x != attnum)
		{
			appendStringInfo(&buf, "%s\"%s\"", n > 0 ? ", " : "", get_attname(relid, x, false));
			n++;
		}
	return psprintf(" (also covering column%s %s)", n > 1 ? "s" : "", buf.data);
}

/*
 * A view on the column: one expand re-creates (a version view of this
 * migration), a guard of a retired API version (kept: duplicate.c), or
 * refused.
 */
static void
classify_view(DepScan *sc, Oid view)
{
	char	   *schema = get_namespace_name(get_rel_namespace(view));
	char	   *name = get_rel_name(view);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	if (list_member_oid(sc->replaced_views, view))
		return;
	if (get_rel_relkind(view) == RELKIND_VIEW &&
		strcmp(name, get_rel_name(sc->relid)) == 0)
	{
		/* zdm names a version's schema after the version */
		values[0] = CStringGetTextDatum(schema);
		zdm_state_exec("SELECT version, retired_by FROM zdm.api_versions"
					   " WHERE schema_name = $1",
					   1, types, values, NULL, true, 1);
		if (SPI_processed == 1 && SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2) == NULL)
		{
			/* a live version's view, which this migration does not replace */
			refuse(sc, REFUSED_VIEW,
				   psprintf("view %s (of live API version \"%s\")", quote_qualified_identifier(schema, name),
							SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1)));
			return;
		}
		if (SPI_processed == 1)
		{
			ZdmGuardView *g = palloc0(sizeof(ZdmGuardView));

			g->version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
			g->retired_by = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
			/* contract drops it and creates it again: as its owner */
			if (pg_class_ownercheck(view, GetUserId()))
			{
				sc->attached->guards = lappend(sc->attached->guards, g);
				return;
			}
			refuse(sc, REFUSED_VIEW,
				   psprintf("view %s (the guard of retired API version \"%s\"), owned by role \"%s\"",
							quote_qualified_identifier(schema, name), g->version,
							GetUserNameFromId(rel_owner(view), false)));
			return;
		}
	}
	refuse(sc, REFUSED_VIEW,
		   psprintf("%s %s", get_rel_relkind(view) == RELKIND_MATVIEW ? "materialized view" : "view",
					quote_qualified_identifier(schema, name)));
}

/*
 * Why an index on a column an alter_column replaces cannot be built again
 * on the new column (duplicate.c builds it CONCURRENTLY in a deferred
 * step), or NULL.  con is the constraint it backs, if any.
 */
static char *
index_not_carried(Oid indexoid, Oid con)
{
	HeapTuple	tup;
	bool		valid;
	char		contype = 0;
	bool		deferrable = false;

	if (get_rel_relkind(indexoid) == RELKIND_PARTITIONED_INDEX)
		return "on a partitioned table, where PostgreSQL 15 builds no index CONCURRENTLY";
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for index %u", indexoid);
	valid = ((Form_pg_index) GETSTRUCT(tup))->indisvalid;
	ReleaseSysCache(tup);
	if (!valid)
		return "INVALID: drop it, or build it again with REINDEX INDEX CONCURRENTLY, first";
	if (OidIsValid(con))
	{
		tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(con));
		if (HeapTupleIsValid(tup))
		{
			contype = ((Form_pg_constraint) GETSTRUCT(tup))->contype;
			deferrable = ((Form_pg_constraint) GETSTRUCT(tup))->condeferrable;
			ReleaseSysCache(tup);
		}
		if (contype == CONSTRAINT_EXCLUSION)
			return "an exclusion constraint, which cannot be attached to an index built beforehand";
		if (deferrable)
			return "DEFERRABLE: the index built beforehand would check each row at once";
	}
	return NULL;
}

/* Does foreign key conoid reference column attnum of relid? */
static bool
con_references(Oid conoid, Oid relid, AttrNumber attnum)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	bool		refs = false;

	if (HeapTupleIsValid(tup))
	{
		refs = ((Form_pg_constraint) GETSTRUCT(tup))->confrelid == relid &&
			bms_is_member(attnum, constraint_columns(tup, Anum_pg_constraint_confkey));
		ReleaseSysCache(tup);
	}
	return refs;
}

/* One object depending on column attnum of relid (the table or a partition). */
static void
classify(DepScan *sc, Oid relid, AttrNumber attnum, bool partition, ObjectAddress *obj)
{
	HeapTuple	tup;

	switch (obj->classId)
	{
		case RelationRelationId:
			if (obj->objectId == relid && obj->objectSubId != 0)
			{
				/* another column of the table: generated from this one */
				HeapTuple	att = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid),
												  Int16GetDatum(obj->objectSubId));
				bool		inherited = HeapTupleIsValid(att) &&
					((Form_pg_attribute) GETSTRUCT(att))->attinhcount > 0;

				if (HeapTupleIsValid(att))
					ReleaseSysCache(att);
				if (!(partition && inherited))
					refuse(sc, REFUSED_GENERATED,
						   psprintf("generated column %s", getObjectIdentity(obj, false)));
				return;
			}
			switch (get_rel_relkind(obj->objectId))
			{
				case RELKIND_SEQUENCE:
					if (!partition)
					{
						sc->attached->sequences = list_append_unique_oid(sc->attached->sequences, obj->objectId);
						return;
					}
					break;
				case RELKIND_INDEX:
				case RELKIND_PARTITIONED_INDEX:
					{
						Oid			con = get_index_constraint(obj->objectId);
						char	   *what = OidIsValid(con) ? described(ConstraintRelationId, con) :
							described(RelationRelationId, obj->objectId);
						char	   *why = index_not_carried(obj->objectId, con);

						if (partition && has_superclass(obj->objectId))
							return; /* a partition of the table's index */
						if (partition)
							refuse(sc, REFUSED_INDEX, psprintf("%s (of a partition or child of its own)", what));
						else if (why)
							refuse(sc, REFUSED_INDEX, psprintf("%s (%s)", what, why));
						else
							sc->attached->indexes = list_append_unique_oid(sc->attached->indexes, obj->objectId);
						return;
					}
				default:
					break;
			}
			break;

		case AttrDefaultRelationId:
			{
				ObjectAddress col = GetAttrDefaultColumnAddress(obj->objectId);

				if (col.objectId == relid && col.objectSubId == attnum)
				{
					/* the column's own default: a partition's must be the table's */
					char	   *def = zdm_column_default(relid, attnum, NULL);

					if (!partition ||
						(def && sc->default_text && strcmp(def, sc->default_text) == 0))
						return;
					refuse(sc, REFUSED_OTHER,
						   psprintf("a default of its own on %s, which inherits the column (%s)",
									qualified_rel(relid), def ? def : "?"));
					return;
				}
				if (OidIsValid(col.objectId) && col.objectSubId != 0)
				{
					HeapTuple	att = SearchSysCache2(ATTNUM, ObjectIdGetDatum(col.objectId),
													  Int16GetDatum(col.objectSubId));
					bool		inherited = HeapTupleIsValid(att) &&
						((Form_pg_attribute) GETSTRUCT(att))->attinhcount > 0;

					if (HeapTupleIsValid(att))
						ReleaseSysCache(att);
					if (!(partition && inherited))
						refuse(sc, REFUSED_GENERATED,
							   psprintf("generated column %s", getObjectIdentity(&col, false)));
					return;
				}
				break;
			}

		case ConstraintRelationId:
			tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(obj->objectId));
			if (HeapTupleIsValid(tup))
			{
				Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
				char		contype = con->contype;
				bool		own = con->conrelid == relid;
				bool		inherited = con->coninhcount > 0 || OidIsValid(con->conparentid);
				bool		referencing = false;
				bool		isnull;
				Datum		keys = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull);

				if (!isnull)
				{
					ArrayType  *arr = DatumGetArrayTypeP(keys);
					int16	   *k = (int16 *) ARR_DATA_PTR(arr);

					for (int i = 0; i < ARR_DIMS(arr)[0]; i++)
						referencing = referencing || k[i] == attnum;
				}
				ReleaseSysCache(tup);
				if (partition && inherited)
					return;		/* the table's own is carried or refused */
				if (own && !partition && contype == CONSTRAINT_CHECK)
				{
					sc->attached->checks = list_append_unique_oid(sc->attached->checks, obj->objectId);
					return;
				}
				if (own && !partition && contype == CONSTRAINT_FOREIGN && referencing)
				{
					if (con_references(obj->objectId, sc->relid, attnum))
						refuse(sc, REFUSED_INDEX,
							   psprintf("foreign key %s (referencing the column from itself)",
										getObjectIdentity(obj, false)));
					else
						sc->attached->fkeys = list_append_unique_oid(sc->attached->fkeys, obj->objectId);
					return;
				}
				if (contype == CONSTRAINT_FOREIGN && !partition)
				{
					/* another table's, or another column's: moved with the unique index it relies on */
					sc->attached->referencing = list_append_unique_oid(sc->attached->referencing, obj->objectId);
					return;
				}
				if (contype == CONSTRAINT_FOREIGN)
					refuse(sc, REFUSED_INDEX,
						   psprintf("foreign key %s, which references it",
									getObjectIdentity(obj, false)));
				else if (own && !partition && (contype == CONSTRAINT_UNIQUE || contype == CONSTRAINT_PRIMARY))
				{
					/* its index depends on it, not on the column: carried with it, or refused */
					Oid			index = get_constraint_index(obj->objectId);
					char	   *why = OidIsValid(index) ? index_not_carried(index, obj->objectId) : "it has no index";

					if (why)
						refuse(sc, REFUSED_INDEX,
							   psprintf("%s (%s)", described(ConstraintRelationId, obj->objectId), why));
					else
						sc->attached->indexes = list_append_unique_oid(sc->attached->indexes, index);
				}
				else
					refuse(sc, contype == CONSTRAINT_CHECK ? REFUSED_OTHER : REFUSED_INDEX,
						   described(ConstraintRelationId, obj->objectId));
				return;
			}
			break;

		case RewriteRelationId:
			{
				Relation	rewrite = table_open(RewriteRelationId, AccessShareLock);
				Oid			ev_class = InvalidOid;
				char	   *name = NULL;

				tup = get_catalog_object_by_oid(rewrite, Anum_pg_rewrite_oid, obj->objectId);
				if (HeapTupleIsValid(tup))
				{
					ev_class = ((Form_pg_rewrite) GETSTRUCT(tup))->ev_class;
					name = pstrdup(NameStr(((Form_pg_rewrite) GETSTRUCT(tup))->rulename));
				}
				table_close(rewrite, AccessShareLock);
				if (name == NULL)
					break;
				if (strcmp(name, ViewSelectRuleName) == 0)
					classify_view(sc, ev_class);
				else
					refuse(sc, REFUSED_OTHER,
						   described(RewriteRelationId, obj->objectId));
				return;
			}

		case TriggerRelationId:
			{
				Relation	trigger = table_open(TriggerRelationId, AccessShareLock);
				bool		found = false;
				bool		clone = false;

				tup = get_catalog_object_by_oid(trigger, Anum_pg_trigger_oid, obj->objectId);
				if (HeapTupleIsValid(tup))
				{
					Form_pg_trigger tg = (Form_pg_trigger) GETSTRUCT(tup);

					clone = OidIsValid(tg->tgparentid);
					found = true;
				}
				table_close(trigger, AccessShareLock);
				if (!found)
					break;
				if (partition && clone)
					return;
				refuse(sc, REFUSED_OTHER,
					   described(TriggerRelationId, obj->objectId));
				return;
			}

		default:
			break;
	}
	/* policies, statistics objects, publications, functions, ... */
	refuse(sc, REFUSED_OTHER, described(obj->classId, obj->objectId));
}

/*
 * One object depending on column attnum of relid, which a drop_column
 * drops: it goes with the column when it exists for that column alone,
 * else it is refused (see the file header).
 */
static void
classify_dropped(DepScan *sc, Oid relid, AttrNumber attnum, bool partition, ObjectAddress *obj)
{
	HeapTuple	tup;

	switch (obj->classId)
	{
		case RelationRelationId:
			if (obj->objectId == relid && obj->objectSubId != 0)
				break;			/* a generated column: as for alter_column */
			switch (get_rel_relkind(obj->objectId))
			{
				case RELKIND_SEQUENCE:
					if (!partition)
						goes(sc, psprintf("sequence %s (owned by the column)", qualified_rel(obj->objectId)));
					return;
				case RELKIND_INDEX:
				case RELKIND_PARTITIONED_INDEX:
					{
						Oid			con = get_index_constraint(obj->objectId);
						Bitmapset  *cols = zdm_index_columns(obj->objectId);
						char	   *what = OidIsValid(con) ? described(ConstraintRelationId, con) :
							described(RelationRelationId, obj->objectId);

						if (partition && has_superclass(obj->objectId))
							return; /* a partition of the table's index */
						if (bms_membership(cols) == BMS_SINGLETON)
							goes(sc, what);
						else
							refuse(sc, REFUSED_INDEX, psprintf("%s%s", what, also_covers(relid, cols, attnum)));
						return;
					}
				default:
					break;
			}
			break;

		case AttrDefaultRelationId:
			{
				ObjectAddress col = GetAttrDefaultColumnAddress(obj->objectId);

				if (col.objectId == relid && col.objectSubId == attnum)
					return;		/* the column's own default */
				break;			/* a generated column: as for alter_column */
			}

		case ConstraintRelationId:
			tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(obj->objectId));
			if (HeapTupleIsValid(tup))
			{
				Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
				bool		inherited = con->coninhcount > 0 || OidIsValid(con->conparentid);
				Bitmapset  *keys = constraint_columns(tup, Anum_pg_constraint_conkey);
				bool		own = con->conrelid == relid && bms_is_member(attnum, keys);
				char	   *what = described(ConstraintRelationId, obj->objectId);

				if (partition && inherited)
				{
					ReleaseSysCache(tup);
					return;		/* the table's own decides */
				}
				if (!own)
					refuse(sc, REFUSED_INDEX,
						   psprintf("foreign key %s (referencing the column)", getObjectIdentity(obj, false)));
				else if (bms_membership(keys) == BMS_SINGLETON)
					goes(sc, what);
				else
					refuse(sc, REFUSED_INDEX, psprintf("%s%s", what, also_covers(relid, keys, attnum)));
				ReleaseSysCache(tup);
				return;
			}
			break;

		default:
			break;
	}
	/* views, rules, triggers, policies, statistics, ...: as for alter_column */
	classify(sc, relid, attnum, partition, obj);
}

/* Every object depending on column attnum of relid. */
static void
scan_column(DepScan *sc, Oid relid, AttrNumber attnum, bool partition)
{
	Relation	depRel = table_open(DependRelationId, AccessShareLock);
	ScanKeyData key[3];
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *objects = NIL;
	ListCell   *lc;

	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(RelationRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	ScanKeyInit(&key[2], Anum_pg_depend_refobjsubid, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum((int32) attnum));
	scan = systable_beginscan(depRel, DependReferenceIndexId, true, NULL, 3, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);
		ObjectAddress *obj = palloc(sizeof(ObjectAddress));

		obj->classId = dep->classid;
		obj->objectId = dep->objid;
		obj->objectSubId = dep->objsubid;
		objects = lappend(objects, obj);
	}
	systable_endscan(scan);
	table_close(depRel, AccessShareLock);

	/* classified after the scan: classify_view runs queries */
	foreach(lc, objects)
	{
		if (sc->dropping)
			classify_dropped(sc, relid, attnum, partition, lfirst(lc));
		else
			classify(sc, relid, attnum, partition, lfirst(lc));
	}
}

static const char *
refused_hint(RefusedKind kind, bool dropping)
{
	if (dropping)
		switch (kind)
		{
			case REFUSED_INDEX:
				return "Contract's DROP COLUMN would drop it too, or fail on it, and zdm never drops an index or constraint "
					"it was not asked to drop: drop it first (DROP INDEX CONCURRENTLY, ALTER TABLE ... DROP CONSTRAINT), "
					"creating one without the column before if the other columns still need it, then expand.";
			case REFUSED_GENERATED:
				return "Drop the generated column first (a drop_column of its own, contracted before this one), or leave this column.";
			case REFUSED_VIEW:
				return "Drop the view, or create it again without the column, before expanding; a live API version's view "
					"is replaced by a migration that declares \"versions\" (its old version defaults to the latest one), "
					"and goes when its contract retires that version.";
			case REFUSED_OTHER:
				return "Drop it, or change it not to use the column, before expanding.";
		}
	switch (kind)
	{
		case REFUSED_INDEX:
			return "zdm builds the new column's indexes CONCURRENTLY, but cannot carry this one over: drop it before the "
				"migration (DROP INDEX CONCURRENTLY, ALTER TABLE ... DROP CONSTRAINT) and create it again on the column "
				"after contract, or leave the column as it is.";
		case REFUSED_GENERATED:
			return "zdm cannot compute a generated column from the new column: drop the generated column first "
				"(and add it again after contract), or leave this column as it is.";
		case REFUSED_VIEW:
			return "Drop the view before expanding and create it again over the column after contract; views that "
				"clients read through both API versions are the versions' schemas of views (declare \"versions\": "
				"a live version's view is then replaced by expand, and goes when contract retires that version).";
		case REFUSED_OTHER:
			break;
	}
	return "zdm cannot move it to the new column: drop it before expanding and create it again on the column "
		"after contract.";
}

/* Refuse what a scan found that cannot stay (feature_not_supported), naming all of it. */
static void
report_refused(DepScan *sc)
{
	StringInfoData all;
	ListCell   *lc,
			   *lc2;
	char	   *first = NULL;
	int			kind = REFUSED_OTHER + 1;

	if (sc->refused == NIL)
		return;
	/* The message names the worst: an index before anything else. */
	initStringInfo(&all);
	forboth(lc, sc->refused, lc2, sc->kinds)
	{
		appendStringInfo(&all, "%s%s", foreach_current_index(lc) > 0 ? "; " : "",
						 (char *) lfirst(lc));
		if (lfirst_int(lc2) < kind)
		{
			kind = lfirst_int(lc2);
			first = lfirst(lc);
		}
	}
	if (sc->dropping)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": drop_column cannot drop column \"%s\" of table \"%s\": %s %s on it",
						sc->migration, sc->col, get_rel_name(sc->relid), first,
						list_length(sc->refused) > 1 ? "and more depend" : "depends"),
				 errdetail("Contract's DROP COLUMN would drop it with the column, or fail on it: %s.", all.data),
				 errhint("%s", refused_hint((RefusedKind) kind, true))));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("migration \"%s\": alter_column cannot replace column \"%s\" of table \"%s\": %s %s on it",
					sc->migration, sc->col, get_rel_name(sc->relid), first,
					list_length(sc->refused) > 1 ? "and more depend" : "depends"),
			 errdetail("Contract drops the old column, and with it what depends on it: %s.", all.data),
			 errhint("%s", refused_hint((RefusedKind) kind, false))));
}

/*
 * What depends on column col of table relid, which an alter_column
 * replaces: what duplicate.c carries goes into *attached; anything else is
 * refused (feature_not_supported, naming all of it).  replaced_views are
 * the version views this expand drops and creates again.
 */
void
zdm_column_attached(const char *migration, Oid relid, const char *col,
					List *replaced_views, ZdmColumnAttached *attached)
{
	DepScan		sc;
	AttrNumber	attnum = get_attnum(relid, col);
	HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(attnum));
	Form_pg_attribute att;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for column \"%s\" of relation %u", col, relid);
	att = (Form_pg_attribute) GETSTRUCT(tup);
	if (att->attidentity || att->attgenerated)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" is %s column, which alter_column cannot replace",
						migration, col, get_rel_name(relid),
						att->attidentity ? "an identity" : "a generated"),
				 errhint("zdm creates the new column as a plain column; leave this column as it is.")));
	ReleaseSysCache(tup);

	memset(attached, 0, sizeof(ZdmColumnAttached));
	memset(&sc, 0, sizeof(sc));
	sc.migration = migration;
	sc.relid = relid;
	sc.col = col;
	sc.replaced_views = replaced_views;
	sc.attached = attached;
	sc.default_text = zdm_column_default(relid, attnum, NULL);

	scan_column(&sc, relid, attnum, false);
	if (has_subclass(relid))
	{
		ListCell   *lc;

		foreach(lc, find_all_inheritors(relid, NoLock, NULL))
		{
			Oid			part = lfirst_oid(lc);

			if (part != relid && get_rel_relkind(part) != RELKIND_FOREIGN_TABLE)
				scan_column(&sc, part, get_attnum(part, col), true);
		}
	}

	report_refused(&sc);
}

/*
 * What depends on column col of table relid, which a drop_column drops:
 * *goes gets the descriptions of what contract drops with it (an index or
 * constraint of that column alone, the sequence it owns), attached->guards
 * the retired versions' guard views (dropped and created again around the
 * DROP COLUMN); anything else is refused, naming all of it.
 */
void
zdm_column_dropped(const char *migration, Oid relid, const char *col,
				   List *replaced_views, ZdmColumnAttached *attached, List **goes_with)
{
	DepScan		sc;
	AttrNumber	attnum = get_attnum(relid, col);

	memset(attached, 0, sizeof(ZdmColumnAttached));
	memset(&sc, 0, sizeof(sc));
	sc.migration = migration;
	sc.relid = relid;
	sc.col = col;
	sc.dropping = true;
	sc.replaced_views = replaced_views;
	sc.attached = attached;
	sc.default_text = zdm_column_default(relid, attnum, NULL);

	scan_column(&sc, relid, attnum, false);
	if (has_subclass(relid))
	{
		ListCell   *lc;

		foreach(lc, find_all_inheritors(relid, NoLock, NULL))
		{
			Oid			part = lfirst_oid(lc);

			if (part != relid && get_rel_relkind(part) != RELKIND_FOREIGN_TABLE)
				scan_column(&sc, part, get_attnum(part, col), true);
		}
	}
	report_refused(&sc);
	*goes_with = sc.goes;
}
