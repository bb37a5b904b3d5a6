/*-------------------------------------------------------------------------
 *
 * plan_build.c
 *	  The plan of a migration, as zdm.expand() stores it.
 *
 *	  plan.c reads it back, with checks, for every later phase.
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
		appendStringInfo(buf, "%s{\"relation\": %s, \"lock\": \"%s\", \"runs\": \"%s\", \"sql\": %s}",
						 *first ? "" : ", ", zdm_json_escape(tw->qualname), lock, ZDM_RUNS_CALLER,
						 zdm_json_escape(lfirst(lc)));
		*first = false;
	}
}

/* Steps as ZdmPlanStep: on a table of their own (duplicate.c), or not in the caller. */
static void
append_other_steps(StringInfo buf, bool *first, List *steps)
{
	ListCell   *lc;

	foreach(lc, steps)
	{
		ZdmPlanStep *step = lfirst(lc);

		appendStringInfo(buf, "%s{\"relation\": %s, \"lock\": \"%s\", \"runs\": \"%s\", \"sql\": %s",
						 *first ? "" : ", ", zdm_json_escape(step->relation), step->lock,
						 step->runs ? step->runs : ZDM_RUNS_CALLER, zdm_json_escape(step->sql));
		if (step->index)
			appendStringInfo(buf, ", \"index\": %s", zdm_json_escape(step->index));
		appendStringInfoChar(buf, '}');
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
char *
expand_trigger_name(ExpandState *st, TableWork *tw)
{
	return zdm_made_name("zdm_", st->migration, tw->name);
}

/* CREATE TRIGGER for a table's dual-write rules. */
char *
expand_trigger_sql(ExpandState *st, TableWork *tw)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION zdm.dual_write(%s, %s",
					 quote_identifier(expand_trigger_name(st, tw)), tw->qualname,
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
char *
expand_plan_json(ExpandState *st)
{
	StringInfoData buf;
	ListCell   *lc;
	bool		first;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"format\": %d, \"search_path\": %s, \"tables\": [", ZDM_PLAN_FORMAT,
					 zdm_json_escape(st->search_path));
	foreach(lc, st->tables)
	{
		TableWork  *tw = lfirst(lc);

		appendStringInfo(&buf, "%s{\"relation\": %s, \"table\": %s, \"created\": %s, \"trigger\": %s, "
						 "\"backfill\": %s, \"key\": ",
						 foreach_current_index(lc) > 0 ? ", " : "",
						 zdm_json_escape(tw->qualname), zdm_json_escape(tw->name),
						 OidIsValid(tw->relid) ? "false" : "true",
						 tw->rules ? zdm_json_escape(expand_trigger_name(st, tw)) : "null",
						 tw->sets ? "true" : "false");
		append_json_list(&buf, tw->key);
		appendStringInfoString(&buf, ", \"key_types\": ");
		append_json_list(&buf, tw->key_types);
		appendStringInfo(&buf, ", \"set\": %s, \"todo\": %s, \"verify\": %s}",
						 zdm_json_escape(join_list(tw->sets, ", ")),
						 zdm_json_escape(join_list(tw->todo, " OR ")),
						 tw->verify ? zdm_json_escape(join_list(tw->verify, " OR ")) : "null");
	}

	/* deferred: by the worker, after the expand and the backfill */
	appendStringInfoString(&buf, "], \"deferred\": [");
	first = true;
	foreach(lc, st->tables)
		append_other_steps(&buf, &first, ((TableWork *) lfirst(lc))->deferred);

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
			steps = lcons(psprintf("DROP TRIGGER %s ON %s", quote_identifier(expand_trigger_name(st, tw)),
								   tw->qualname), steps);
		if (expand_has_views(st, tw) && st->version_old)
		{
			/* The retired version's view goes first (it reads the old
			 * columns), and comes back as a guard that raises. */
			char	   *v = expand_view_name(tw, st->version_old);

			steps = lcons(psprintf("DROP VIEW IF EXISTS %s", v), steps);
			steps = list_concat(steps, zdm_guard_view_sql(tw->qualname, tw->name, st->version_old,
														  st->migration));
		}
		append_other_steps(&buf, &first, tw->contract_other);
		append_steps(&buf, &first, tw, "exclusive", steps);
	}
	/* then what the worker runs once the contract has committed */
	foreach(lc, st->tables)
		append_other_steps(&buf, &first, ((TableWork *) lfirst(lc))->contract_after);

	/* rollback: per table, in reverse order of the operations */
	appendStringInfoString(&buf, "], \"rollback\": [");
	first = true;
	for (int i = list_length(st->tables) - 1; i >= 0; i--)
	{
		TableWork  *tw = list_nth(st->tables, i);
		List	   *steps = NIL;

		if (expand_has_views(st, tw))
			steps = lappend(steps, psprintf("DROP VIEW IF EXISTS %s", expand_view_name(tw, st->version_new)));
		if (tw->rules)
			steps = lappend(steps, psprintf("DROP TRIGGER %s ON %s",
											quote_identifier(expand_trigger_name(st, tw)), tw->qualname));
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

		if (expand_has_views(st, tw) && st->version_old &&
			(tw->old_view_created || zdm_str_in_list(st->schemas, st->version_old)))
			append_steps(&buf, &first, tw, "exclusive",
						 list_make1(psprintf("DROP VIEW IF EXISTS %s", expand_view_name(tw, st->version_old))));
	}
	for (int i = list_length(st->tables) - 1; i >= 0; i--)
		append_other_steps(&buf, &first, ((TableWork *) list_nth(st->tables, i))->rollback_after);
	foreach(lc, st->schemas)
	{
		appendStringInfo(&buf, "%s{\"relation\": null, \"lock\": \"none\", \"runs\": \"caller\", \"sql\": %s}",
						 first ? "" : ", ",
						 zdm_json_escape(psprintf("DROP SCHEMA IF EXISTS %s", quote_identifier(lfirst(lc)))));
		first = false;
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}
