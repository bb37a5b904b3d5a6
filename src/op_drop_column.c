/*-------------------------------------------------------------------------
 *
 * op_drop_column.c
 *	  drop_column: a column hidden from the new version, dropped at contract.
 *
 *	  "down" fills it for writes of new clients until contract.
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

	tw = expand_table_work(st, table, true);
	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": drop_column on table \"%s\", which this migration creates",
						st->migration, table),
				 errhint("Leave the column out of the create_table operation.")));
	old = expand_existing_column(st, tw, col);
	expand_refuse_key_column(st, tw, col);
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

static const char *const drop_column_keys[] = {"table", "column", "down", NULL};

const ZdmOpKind zdm_op_drop_column = {
	"drop_column", drop_column_keys, NULL, "table", plan_drop_column
};
