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

PG_FUNCTION_INFO_V1(zdm_expand);

static const char *const top_keys[] = {"operations", "name", "schema", "versions", "version_schema", NULL};

/* ---------- zdm.expand ---------- */

/*
 * The operation kinds zdm implements (op_*.c): a new kind is one file and
 * one line here.
 */
static const ZdmOpKind *const op_kinds[] = {
	&zdm_op_add_column,
	&zdm_op_alter_column,
	&zdm_op_drop_column,
	&zdm_op_create_table,
	&zdm_op_create_constraint,
	&zdm_op_drop_constraint,
	&zdm_op_drop_multicolumn_constraint,
	&zdm_op_rename_constraint,
	&zdm_op_create_index,
	&zdm_op_drop_index,
	NULL
};

static const ZdmOpKind *
op_kind(const char *name)
{
	for (const ZdmOpKind *const *k = op_kinds; *k != NULL; k++)
		if (strcmp(name, (*k)->name) == 0)
			return *k;
	return NULL;
}

/* pgroll's other operations: known, not implemented yet. */
static const char *const op_unsupported[] = {
	"drop_table", "rename_table", "rename_column", "sql", "set_replica_identity", NULL
};

/*
 * Claim every existing table the operations name (their "table"), all at
 * once, before expand_table_work locks any of them: a migration that claimed its
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
		const ZdmOpKind *kind;
		char	   *opname;
		RangeVar   *rv;
		Oid			relid;

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data) ||
			JsonContainerSize(v->val.binary.data) != 1)
			continue;
		it = JsonbIteratorInit(v->val.binary.data);
		(void) JsonbIteratorNext(&it, &key, true);	/* WJB_BEGIN_OBJECT */
		(void) JsonbIteratorNext(&it, &key, true);	/* WJB_KEY */
		opname = pnstrdup(key.val.string.val, key.val.string.len);
		kind = op_kind(opname);
		if (kind == NULL || kind->table_key == NULL)
			continue;
		body = getKeyJsonValueFromContainer(v->val.binary.data, opname, strlen(opname), NULL);
		if (body->type != jbvBinary || !JsonContainerIsObject(body->val.binary.data))
			continue;
		table = getKeyJsonValueFromContainer(body->val.binary.data, kind->table_key,
											 strlen(kind->table_key), NULL);
		if (table == NULL || table->type != jbvString)
			continue;
		/* Resolved as expand_table_work resolves it. */
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
		const ZdmOpKind *kind;

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

		kind = op_kind(st->ctx.opname);
		if (kind != NULL)
		{
			/* Unknown keys first: a typo must not surface as "missing". */
			zdm_json_check_keys(&st->ctx, op, NULL, kind->keys, kind->unsupported);
			kind->plan(st, op);
			continue;
		}
		for (const char *const *u = op_unsupported; *u != NULL; u++)
			if (strcmp(st->ctx.opname, *u) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("migration \"%s\": operation %d (%s) is not supported by zdm yet",
								st->migration, i + 1, st->ctx.opname),
						 errhint("The README lists the operations zdm runs (Operations); apply this one with plain SQL.")));
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
			if (zdm_str_in_list(tw->hidden_in_new, list_nth(tw->check_refs, i + 1)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("migration \"%s\": check constraint \"%s\" names column \"%s\" of table \"%s\", which the migration replaces or drops",
								st->migration, (char *) list_nth(tw->check_refs, i),
								(char *) list_nth(tw->check_refs, i + 1), tw->name),
						 errhint("Name the new column instead, or leave that column out of the check; contract would drop the check with it.")));

		/* Likewise a constraint a constraint operation creates, drops or renames. */
		for (int i = 0; i + 1 < list_length(tw->constraint_refs); i += 2)
			if (zdm_str_in_list(tw->touched, list_nth(tw->constraint_refs, i + 1)))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("migration \"%s\": constraint \"%s\" names column \"%s\" of table \"%s\", which the migration replaces or drops",
								st->migration, (char *) list_nth(tw->constraint_refs, i),
								(char *) list_nth(tw->constraint_refs, i + 1), tw->name),
						 errhint("Change the constraint in a migration of its own: contract drops the old column with what is on it.")));
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
			steps = lappend(steps, expand_trigger_sql(st, tw));

			/*
			 * It fires under session_replication_role = replica too: a
			 * subscription's apply worker writes rows through it (see
			 * replication.c), as does any tool that writes in replica mode.
			 */
			steps = lappend(steps, psprintf("ALTER TABLE %s ENABLE ALWAYS TRIGGER %s", tw->qualname,
											quote_identifier(expand_trigger_name(st, tw))));
		}
		if (expand_has_views(st, tw))
		{
			/* Each version's view of the table, replacing an older one. */
			if (st->version_old)
			{
				if (expand_view_exists(tw, st->version_old))
					steps = lappend(steps, psprintf("DROP VIEW %s", expand_view_name(tw, st->version_old)));
				else
					tw->old_view_created = true;	/* rollback drops it */
				steps = lappend(steps, expand_view_sql(tw, st->version_old, false));
				steps = lappend(steps, expand_view_grant_sql(tw, st->version_old));
			}
			if (expand_view_exists(tw, st->version_new))
				steps = lappend(steps, psprintf("DROP VIEW %s", expand_view_name(tw, st->version_new)));
			steps = lappend(steps, expand_view_sql(tw, st->version_new, true));
			steps = lappend(steps, expand_view_grant_sql(tw, st->version_new));
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
	values[2] = CStringGetTextDatum(expand_plan_json(st));
	values[3] = st->version_old ? CStringGetTextDatum(st->version_old) : (Datum) 0;
	values[4] = st->version_new ? CStringGetTextDatum(st->version_new) : (Datum) 0;
	/* The author: every later step of the migration runs as this role. */
	values[5] = CStringGetTextDatum(zdm_current_role_name());
	expand_save_versions(st);
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
	ZdmMigration existing = {0};
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
	if (zdm_migration_fetch(name, false, &existing) && strcmp(existing.phase, "rolled_back") == 0)
	{
		/* Its rollback's own background steps first (deferred.c). */
		char	   *owed = zdm_deferred_owed(name, "rollback");

		if (owed != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" is still being rolled back: %s", name, owed),
					 errdetail("Its rollback left steps to the background worker, which has not finished them."),
					 errhint("Expand it again once zdm.status shows no deferred step for it; "
							 "SELECT zdm.rollback('%s') starts the worker again if none runs.", name)));
	}
	else if (existing.phase != NULL)
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
	expand_resolve_versions(&st, &definition->root);
	ops = zdm_json_array(&st.ctx, &definition->root, "operations", true);
	expand_check_operations(&st, ops);

	/* On a publisher, its subscribers come first (replication.c). */
	replication = expand_check_replication(&st);

	/* 3. applying: all of it, with the state row, or none of it */
	expand_apply(&st);
	expand_save_state(&st, definition);
	/* what the worker runs once this transaction commits (deferred.c) */
	{
		int			ndeferred = 0;
		ListCell   *lc;

		foreach(lc, st.tables)
			ndeferred += list_length(((TableWork *) lfirst(lc))->deferred);
		zdm_deferred_owe(name, "deferred", ndeferred);
	}
	if (replication != NULL)
		zdm_log_event(name, "replication", "expanded", NULL, NULL, -1, replication);

	SPI_finish();
	PG_RETURN_BOOL(true);
}

