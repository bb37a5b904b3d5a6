/*-------------------------------------------------------------------------
 *
 * op_drop_column.c
 *	  drop_column: a column hidden from the new version, dropped at contract.
 *
 *	  "down" fills it for writes of new clients until contract.  What
 *	  depends on the column is found here (dependents.c): what exists for
 *	  it alone (an index or constraint of that column only, the sequence
 *	  it owns) goes with it, and expand says so in a NOTICE; anything else
 *	  (an index or constraint that also covers other columns, another
 *	  table's foreign key, views, generated columns, policies, statistics,
 *	  triggers, publication column lists) is refused, naming it, so that
 *	  contract neither fails on it nor drops it unasked.  Retired
 *	  versions' guard views (SELECT * of the table) are dropped before the
 *	  column and created again after.
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

static void
plan_drop_column(ExpandState *st, JsonbContainer *op)
{
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	char	   *col = zdm_json_string(&st->ctx, op, "column", true);
	char	   *down = zdm_json_string(&st->ctx, op, "down", false);
	TableWork  *tw;
	Form_pg_attribute old;
	ZdmColumnAttached attached;
	List	   *goes = NIL;
	ListCell   *lc;

	tw = expand_table_work(st, table, true);
	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": drop_column on table \"%s\", which this migration creates",
						st->migration, table),
				 errhint("Leave the column out of the create_table operation.")));
	old = expand_existing_column(st, tw, col);
	expand_refuse_key_column(st, tw, col);
	zdm_column_dropped(st->migration, tw->relid, col, expand_replaced_views(st, tw), &attached, &goes);
	if (goes != NIL)
	{
		StringInfoData all;

		initStringInfo(&all);
		foreach(lc, goes)
			appendStringInfo(&all, "%s%s", foreach_current_index(lc) > 0 ? ", " : "", (char *) lfirst(lc));
		ereport(NOTICE,
				(errmsg("migration \"%s\": contract drops column \"%s\" of table \"%s\" with what exists for it alone: %s",
						st->migration, col, tw->name, all.data)));
	}
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
	foreach(lc, attached.guards)
		tw->contract = lappend(tw->contract,
							   psprintf("DROP VIEW %s.%s", quote_identifier(((ZdmGuardView *) lfirst(lc))->version),
										quote_identifier(tw->name)));
	tw->contract = lappend(tw->contract,
						   psprintf("ALTER TABLE %s DROP COLUMN %s", tw->qualname, qcol(col)));
	foreach(lc, attached.guards)
	{
		ZdmGuardView *g = lfirst(lc);

		tw->contract = list_concat(tw->contract,
								   zdm_guard_view_sql(tw->qualname, tw->name, g->version, g->retired_by));
	}
}

static const char *const drop_column_keys[] = {"table", "column", "down", NULL};

const ZdmOpKind zdm_op_drop_column = {
	"drop_column", drop_column_keys, NULL, "table", plan_drop_column
};
