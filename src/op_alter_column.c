/*-------------------------------------------------------------------------
 *
 * op_alter_column.c
 *	  alter_column: a column replaced by a new one, kept in step by "up"/"down".
 *
 *	  The new column (renamed, or in place under an API version) keeps what
 *	  the old one had (duplicate.c); what depends on the old column and
 *	  cannot be carried is refused here (dependents.c).
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

static void
plan_alter_column(ExpandState *st, JsonbContainer *op)
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
	bool		up_volatile;
	ZdmColumnCopy copy;
	ListCell   *lc;

	memset(&copy, 0, sizeof(copy));
	tw = expand_table_work(st, table, true);
	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": alter_column on table \"%s\", which this migration creates",
						st->migration, table),
				 errhint("Define the column as it should be in the create_table operation.")));
	old = expand_existing_column(st, tw, col);
	/* (a key column is fine: the backfill walks the old one, which stays until contract) */
	/* What depends on the old column: kept by the new one, or refused. */
	zdm_column_attached(st->migration, tw->relid, col, expand_replaced_views(st, tw), &copy.attached);
	refuse_carried_twice(st, tw, col, list_concat_copy(copy.attached.checks, copy.attached.fkeys));
	visible = newname ? newname : col;
	in_place = strcmp(visible, col) == 0;
	if (in_place)
	{
		/*
		 * The same name, another shape: a physically new column that only
		 * the new version's views show under the old name; contract renames
		 * it into place.  A migration that declares no versions has them
		 * implicitly by now (expand_resolve_versions).
		 */
		if (st->version_new == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration \"%s\": alter_column changes column \"%s\" of table \"%s\" in place, which needs API versions",
							st->migration, col, table),
					 errhint("Declare \"versions\": {\"old\": ..., \"new\": ...}: each version then sees its own \"%s\" through its schema of views; "
							 "or give the new column a new \"name\".", col)));
		newname = zdm_made_name("zdm_new_", col, NULL);
	}
	expand_claim_column(st, tw, newname);
	tw->hidden_in_new = lappend(tw->hidden_in_new, col);
	tw->new_physical = lappend(tw->new_physical, newname);
	tw->new_visible = lappend(tw->new_visible, visible);

	oldtypname = format_type_extended(old->atttypid, old->atttypmod,
									  FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
	if (type)
		expand_resolve_type(st, type, newname, &typid, &typmod, &typname);
	else
	{
		typid = old->atttypid;
		typmod = old->atttypmod;
		typname = oldtypname;
	}
	nullable = zdm_json_bool(&st->ctx, op, "nullable", !old->attnotnull);
	tw->desc = expand_desc_add_column(tw->desc, newname, typid, typmod);

	/* Without up/down, the value is carried over as it is (a rename). */
	uptext = up ? zdm_expr_normalize(up) : pstrdup(qcol(col));
	downtext = down ? zdm_expr_normalize(down) : pstrdup(qcol(visible));
	up_volatile = contain_volatile_functions(zdm_expr_analyze_row(st->migration,
																  psprintf("up expression of column \"%s\"", visible),
																  tw->desc, tw->name, uptext, typid, typmod));
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
	copy.unique = zdm_json_object(&st->ctx, op, "unique", false);
	copy.nullable = nullable;
	copy.keep_default = !zdm_json_present(op, "default");
	copy.keep_comment = !zdm_json_present(op, "comment");
	zdm_duplicate_column(&copy);

	/* The new column has no default while both are live: see trigger.c. */
	tw->expand = lappend(tw->expand,
						 psprintf("ALTER TABLE %s ADD COLUMN %s %s", tw->qualname, qcol(newname), typname));
	if (!nullable)
		expand_add_not_null(tw, newname);
	tw->expand = list_concat(tw->expand, copy.expand);
	tw->validate = list_concat(tw->validate, copy.validate);
	expand_add_comment(tw, newname, comment);
	if (dflt)
		tw->contract = lappend(tw->contract,
							   psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", tw->qualname,
										qcol(newname),
										expand_check_default(st, tw, newname, dflt, typid, typmod, false)));
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
	tw->deferred = list_concat(tw->deferred, copy.deferred);
	tw->rollback_after = list_concat(tw->rollback_after, copy.rollback_after);
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

	expand_find_backfill_key(st, tw);
	tw->sets = lappend(tw->sets, psprintf("%s = (%s\n)", qcol(newname), uptext));
	tw->todo = lappend(tw->todo, psprintf("%s IS NULL", qcol(newname)));
	/*
	 * Consistent when either direction reproduces the stored value.  (In
	 * place, down names the new column by the old name, which SQL over the
	 * table cannot say: up alone decides.)  A volatile up (random(),
	 * clock_timestamp()) gives another value each time: only a row it has
	 * not converted yet can be told (pgroll's example 15).
	 */
	if (up_volatile)
		tw->verify = lappend(tw->verify,
							 psprintf("(%s IS NULL AND (%s\n) IS NOT NULL)", qcol(newname), uptext));
	else if (in_place)
		tw->verify = lappend(tw->verify,
							 psprintf("%s IS DISTINCT FROM CAST((%s\n) AS %s)", qcol(newname), uptext, typname));
	else
		tw->verify = lappend(tw->verify,
							 psprintf("NOT (%s IS NOT DISTINCT FROM CAST((%s\n) AS %s) OR %s IS NOT DISTINCT FROM CAST((%s\n) AS %s))",
									  qcol(newname), uptext, typname, qcol(col), downtext, oldtypname));
}

static const char *const alter_column_keys[] = {"table", "column", "name", "type", "up", "down",
"nullable", "check", "comment", "default", "references", "unique", NULL};

const ZdmOpKind zdm_op_alter_column = {
	"alter_column", alter_column_keys, NULL, "table", plan_alter_column
};
