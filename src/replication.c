/*-------------------------------------------------------------------------
 *
 * replication.c
 *	  zdm and PostgreSQL's logical replication: publishers, subscribers,
 *	  and zdm's own state, which stays local to each cluster.
 *
 * PostgreSQL does not replicate DDL, and a subscriber applies each change
 * by column name: it must have every column its publisher sends.  So a
 * column a migration adds must exist on the subscribers before the
 * publisher sends it, and a column the publisher still sends (or may
 * still send: changes already on their way) must not be dropped on a
 * subscriber.  Hence the order the README gives ("Replication"): expand
 * on the subscribers, then on the publisher; contract, and roll back, on
 * the publisher, then on the subscribers.  The catalogs tell zdm which
 * side of that a step is on, and it acts:
 *
 *	- Expand on a publisher: a table the expand adds columns to (or
 *	  creates) is published with all its columns, and logical slots of
 *	  this database stream it.  zdm cannot see the subscribers behind the
 *	  slots, so the expand is refused until zdm.subscribers_expanded names
 *	  every slot: the deployer's word that their subscribers were
 *	  expanded first.  A publisher without slots has no one to break.
 *	- Contract or rollback on a subscriber: a table whose columns the
 *	  step takes away (zdm_plan_removed) is subscribed.  zdm asks the
 *	  publisher itself, over a connection like the subscription's own (its
 *	  conninfo, through libpqwalreceiver, as the apply worker connects),
 *	  whether it still has those columns: refused if so.  Otherwise it
 *	  notes the publisher's WAL position and waits (up to zdm.lock_budget)
 *	  until the subscription has applied everything up to it, so that no
 *	  change still on its way names a column the step drops.
 *	- On a subscriber the publisher's backfill arrives through replication
 *	  and the dual-write trigger, enabled ALWAYS (expand.c), converts what
 *	  the apply worker writes: contract there needs no backfill of its
 *	  own, only zdm.verify() finding no row to convert
 *	  (zdm_repl_converted_upstream).
 *
 * zdm's own state.  A publication FOR ALL TABLES publishes zdm's tables
 * too, and PostgreSQL 15 cannot leave them out, while another cluster's
 * migrations, journal, backfill requests and traffic counts must never
 * become a subscriber's own.  So each state table carries a trigger,
 * zdm.state_guard(), enabled REPLICA: it fires only under
 * session_replication_role = replica, as in the apply and table-sync
 * workers, where it drops every row written by a background worker
 * other than through zdm's own statements (zdm_state_writing, roles.c).
 * And each table's replica identity is a random per-row uuid, so the
 * apply worker, looking up the publisher's row to update or delete (which
 * it does, and locks, before any trigger), never finds one of the
 * subscriber's own.  A TRUNCATE cannot be dropped that way: zdm refuses
 * TRUNCATE of its tables while a publication publishes it.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/xlogdefs.h"
#include "catalog/namespace.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "replication/walreceiver.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/pg_lsn.h"
#include "utils/regproc.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(zdm_state_guard);

/* ---------- reading the catalogs (inside SPI, as zdm's owner) ---------- */

/* The values of the first column of the last SPI result, as strings. */
static List *
spi_strings(void)
{
	List	   *result = NIL;

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (v != NULL)
			result = lappend(result, v);
	}
	return result;
}

/* Names, quoted and joined: "a", "b". */
static char *
quoted_list(List *names)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, names)
		appendStringInfo(&buf, "%s\"%s\"", foreach_current_index(lc) > 0 ? ", " : "",
						 (char *) lfirst(lc));
	return buf.data;
}

/* Names joined for a list-valued setting: a, b. */
static char *
setting_list(List *names)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, names)
		appendStringInfo(&buf, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(lfirst(lc)));
	return buf.data;
}

/*
 * The publications that publish a table with all its columns, so also a
 * column added to it: FOR ALL TABLES, FOR TABLES IN SCHEMA of its schema,
 * or FOR TABLE it (or a partition or ancestor of it) without a column
 * list.  relid InvalidOid: a table to be created in schema nspid.
 */
static List *
publications_of(Oid relid, Oid nspid)
{
	Oid			types[2] = {OIDOID, OIDOID};
	Datum		values[2] = {ObjectIdGetDatum(relid), ObjectIdGetDatum(nspid)};

	zdm_state_exec("SELECT p.pubname::text FROM pg_catalog.pg_publication p"
				   " WHERE (p.pubinsert OR p.pubupdate)"
				   "   AND (p.puballtables"
				   "    OR EXISTS (SELECT FROM pg_catalog.pg_publication_namespace n"
				   "                WHERE n.pnpubid = p.oid AND n.pnnspid = $2)"
				   "    OR ($1 <> 0 AND EXISTS ("
				   "         SELECT FROM pg_catalog.pg_publication_rel r"
				   "          WHERE r.prpubid = p.oid AND r.prattrs IS NULL"
				   "            AND (r.prrelid = $1"
				   "                 OR r.prrelid IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1::pg_catalog.regclass) a)"
				   "                 OR r.prrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t)))))"
				   " ORDER BY p.pubname",
				   2, types, values, NULL, true, 0);
	return spi_strings();
}

/*
 * This database's logical slots that stream through pgoutput, the
 * subscriptions' (a table-sync slot belongs to a subscription's slot
 * already listed).  *active gets the names of the active ones.
 */
static List *
logical_slots(List **active)
{
	List	   *slots = NIL;

	zdm_state_query("SELECT s.slot_name::text, s.active FROM pg_catalog.pg_replication_slots s"
					" WHERE s.slot_type = 'logical' AND s.plugin = 'pgoutput'"
					"   AND s.database = pg_catalog.current_database()"
					"   AND s.slot_name !~ '^pg_[0-9]+_sync_[0-9]+_[0-9]+$'"
					" ORDER BY s.slot_name", true, 0);
	*active = NIL;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *is_active = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		slots = lappend(slots, name);
		if (is_active && strcmp(is_active, "t") == 0)
			*active = lappend(*active, name);
	}
	return slots;
}

/*
 * The subscriptions of this database that feed a table (or a partition
 * or ancestor of it), with the table's state in each: subscription OIDs
 * in *subids, srsubstate in *states (a char each, as a string).
 */
static void
subscriptions_of(Oid relid, List **subids, List **states)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	zdm_state_exec("SELECT DISTINCT ON (s.oid) s.oid, r.srsubstate::text FROM pg_catalog.pg_subscription_rel r"
				   "  JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid"
				   " WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d"
				   "                     WHERE d.datname = pg_catalog.current_database())"
				   "   AND (r.srrelid = $1"
				   "        OR r.srrelid IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1::pg_catalog.regclass) a)"
				   "        OR r.srrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t))"
				   " ORDER BY s.oid, r.srsubstate <> 'r' DESC",
				   1, types, values, NULL, true, 0);
	*subids = NIL;
	*states = NIL;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		*subids = lappend_oid(*subids,
							  DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
															 1, &isnull)));
		*states = lappend(*states, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
	}
}

/* Every subscription of this database. */
static List *
database_subscriptions(void)
{
	List	   *subids = NIL;

	zdm_state_query("SELECT s.oid FROM pg_catalog.pg_subscription s"
					" WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d"
					"                     WHERE d.datname = pg_catalog.current_database())"
					" ORDER BY s.oid", true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		subids = lappend_oid(subids,
							 DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
															1, &isnull)));
	}
	return subids;
}

/* A table for messages: schema-qualified, quoted as needed. */
static char *
table_label(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
}

/* ---------- expand ---------- */

/*
 * Check an expand against logical replication, before any of its DDL
 * runs.  On a publisher (see the file header) refused unless
 * zdm.subscribers_expanded names every slot; on a subscriber a NOTICE
 * saying what comes next.  Returns what to journal, or NULL.
 */
char *
zdm_repl_check_expand(const char *migration, List *tables)
{
	List	   *slots = NIL;
	List	   *active = NIL;
	bool		slots_read = false;
	List	   *attested = NIL;
	bool		all_attested = false;
	char	   *journal = NULL;
	ListCell   *lc;

	if (zdm_subscribers_expanded != NULL && zdm_subscribers_expanded[0] != '\0')
	{
		char	   *copy = pstrdup(zdm_subscribers_expanded);

		if (strcmp(zdm_subscribers_expanded, "*") == 0)
			all_attested = true;
		else if (!SplitIdentifierString(copy, ',', &attested))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": zdm.subscribers_expanded is not a list of replication slot names: \"%s\"",
							migration, zdm_subscribers_expanded),
					 errhint("Give the slots' names separated by commas, e.g. SET zdm.subscribers_expanded = 'shop_replica, reports'; or '*' for every one.")));
	}

	foreach(lc, tables)
	{
		ZdmExpandedTable *t = lfirst(lc);
		List	   *pubs;
		List	   *missing = NIL;
		ListCell   *lc2;
		char	   *what;

		/* A subscriber: say what the trigger does and what comes next. */
		if (OidIsValid(t->relid))
		{
			List	   *subids;
			List	   *states;

			subscriptions_of(t->relid, &subids, &states);
			foreach(lc2, subids)
			{
				Subscription *sub = GetSubscription(lfirst_oid(lc2), false);

				ereport(NOTICE,
						(errmsg("table \"%s\" is subscribed (subscription \"%s\"): the dual-write trigger of migration \"%s\" converts the rows replication writes",
								t->name, sub->name, migration),
						 errhint("Expand the migration on the publisher next, there with SET zdm.subscribers_expanded = '%s' (this subscription's slot).",
								 sub->slotname ? sub->slotname : sub->name)));
			}
		}

		if (t->columns == NIL && OidIsValid(t->relid))
			continue;			/* adds nothing that would be sent */
		pubs = publications_of(t->relid, t->nspid);
		if (pubs == NIL)
			continue;
		if (!slots_read)
		{
			slots = logical_slots(&active);
			slots_read = true;
		}
		if (slots == NIL)
			continue;			/* published, but no one subscribes */

		foreach(lc2, slots)
		{
			ListCell   *lc3;
			bool		found = all_attested;

			foreach(lc3, attested)
				found = found || strcmp(lfirst(lc3), lfirst(lc2)) == 0;
			if (!found)
				missing = lappend(missing, lfirst(lc2));
		}
		what = OidIsValid(t->relid) ?
			psprintf("column%s %s to table \"%s\"", list_length(t->columns) > 1 ? "s" : "",
					 quoted_list(t->columns), t->name) :
			psprintf("table \"%s\"", t->name);
		if (missing == NIL)
		{
			journal = psprintf("%s%sadds %s, published by %s and streamed to slot(s) %s, "
							   "whose subscribers were expanded first (zdm.subscribers_expanded = '%s', set by role \"%s\")",
							   journal ? journal : "", journal ? "; " : "",
							   what, quoted_list(pubs), quoted_list(slots), zdm_subscribers_expanded,
							   zdm_current_role_name());
			continue;
		}
		if (!zdm_replication_check)
		{
			ereport(WARNING,
					(errmsg("migration \"%s\" adds %s, which publication%s %s publish%s to slot(s) %s not known to be expanded",
							migration, what, list_length(pubs) > 1 ? "s" : "", quoted_list(pubs),
							list_length(pubs) > 1 ? "" : "es", quoted_list(missing)),
					 errdetail("zdm.replication_check is off, so the expand goes ahead.")));
			journal = psprintf("%s%sadds %s, published by %s, with slot(s) %s not known to be expanded "
							   "(zdm.replication_check off, set by role \"%s\")",
							   journal ? journal : "", journal ? "; " : "",
							   what, quoted_list(pubs), quoted_list(missing), zdm_current_role_name());
			continue;
		}
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" adds %s, which publication%s %s publish%s to subscribers that may not have been expanded",
						migration, what, list_length(pubs) > 1 ? "s" : "", quoted_list(pubs),
						list_length(pubs) > 1 ? "" : "es"),
				 errdetail("This database streams it through the logical replication slot%s %s (%s active), and zdm.subscribers_expanded does not name %s.  "
						   "A subscriber stops replicating at the first change that carries a column (or table) it lacks, until it has it.",
						   list_length(slots) > 1 ? "s" : "", quoted_list(slots),
						   list_length(active) == 0 ? "none" : quoted_list(active),
						   quoted_list(missing)),
				 errhint("Expand the migration on the subscriber%s of slot%s %s first (there: SELECT zdm.expand('%s', ...)), "
						 "then here: SET zdm.subscribers_expanded = '%s'; and expand again.%s",
						 list_length(missing) > 1 ? "s" : "", list_length(missing) > 1 ? "s" : "",
						 quoted_list(missing), migration, setting_list(slots),
						 OidIsValid(t->relid) ? "" :
						 "  Once it is committed, run ALTER SUBSCRIPTION ... REFRESH PUBLICATION on each subscriber so that it replicates the new table.")));
	}
	return journal;
}

/* ---------- contract and rollback ---------- */

/* One table (or column) a step takes away, fed by a subscription. */
typedef struct FedRemoval
{
	Oid			relid;
	char	   *column;			/* NULL: the table */
} FedRemoval;

/* One subscription and what the step takes away from its tables. */
typedef struct FedSubscription
{
	Oid			subid;
	List	   *removals;		/* FedRemoval * */
	char	   *not_ready;		/* a table still being copied, or NULL */
} FedSubscription;

static FedSubscription *
fed_subscription(List **subs, Oid subid)
{
	ListCell   *lc;
	FedSubscription *fs;

	foreach(lc, *subs)
	{
		fs = lfirst(lc);
		if (fs->subid == subid)
			return fs;
	}
	fs = palloc0(sizeof(FedSubscription));
	fs->subid = subid;
	*subs = lappend(*subs, fs);
	return fs;
}

/*
 * Ask a subscription's publisher which of the removals it still has, and
 * its WAL insert position once it has answered.  Connects as the
 * subscription's apply worker does; the connection is closed whatever
 * happens.  Returns the removals the publisher still has.
 */
static List *
ask_publisher(const char *migration, Subscription *sub, List *removals, XLogRecPtr *position)
{
	WalReceiverConn *volatile conn = NULL;
	List	   *volatile still = NIL;
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "SELECT v.nsp, v.rel, v.col FROM (VALUES ");
	foreach(lc, removals)
	{
		FedRemoval *r = lfirst(lc);

		appendStringInfo(&sql, "%s(%s, %s, %s::pg_catalog.text)", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_literal_cstr(get_namespace_name(get_rel_namespace(r->relid))),
						 quote_literal_cstr(get_rel_name(r->relid)),
						 r->column ? quote_literal_cstr(r->column) : "NULL");
	}
	appendStringInfoString(&sql,
						   ") AS v(nsp, rel, col)"
						   " JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) v.nsp"
						   " JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid"
						   "  AND c.relname OPERATOR(pg_catalog.=) v.rel"
						   " WHERE v.col IS NULL OR EXISTS (SELECT FROM pg_catalog.pg_attribute a"
						   "  WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attname OPERATOR(pg_catalog.=) v.col"
						   "    AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)");

	load_file("libpqwalreceiver", false);
	PG_TRY();
	{
		char	   *err = NULL;
		Oid			cols[3] = {TEXTOID, TEXTOID, TEXTOID};
		Oid			lsn_type[1] = {LSNOID};
		WalRcvExecResult *res;
		TupleTableSlot *slot;

		conn = walrcv_connect(sub->conninfo, true, "zdm", &err);
		if (conn == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("migration \"%s\": could not connect to the publisher of subscription \"%s\": %s",
							migration, sub->name, err ? err : "(no message)"),
					 errdetail("zdm asks the publisher whether it still has what this step drops, connecting as the subscription does."),
					 errhint("Make the publisher reachable as the subscription reaches it; or, once it is certain that the publisher has done this step "
							 "and the subscription has applied everything up to it, a superuser may SET zdm.replication_check = off.")));

		res = walrcv_exec(conn, sql.data, 3, cols);
		if (res->status != WALRCV_OK_TUPLES)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_EXCEPTION),
					 errmsg("migration \"%s\": could not read the tables of the publisher of subscription \"%s\": %s",
							migration, sub->name, res->err ? res->err : "(no message)"),
					 errhint("A superuser may SET zdm.replication_check = off once it is certain that the publisher has done this step.")));
		slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
		while (tuplestore_gettupleslot(res->tuplestore, true, false, slot))
		{
			bool		isnull;
			FedRemoval *r = palloc0(sizeof(FedRemoval));
			char	   *nsp = TextDatumGetCString(slot_getattr(slot, 1, &isnull));
			char	   *rel = TextDatumGetCString(slot_getattr(slot, 2, &isnull));
			Datum		col = slot_getattr(slot, 3, &isnull);

			r->relid = get_relname_relid(rel, get_namespace_oid(nsp, false));
			r->column = isnull ? NULL : TextDatumGetCString(col);
			still = lappend(still, r);
			ExecClearTuple(slot);
		}
		ExecDropSingleTupleTableSlot(slot);
		walrcv_clear_result(res);

		/* After the answer: a step it has done committed before this. */
		res = walrcv_exec(conn, "SELECT pg_catalog.pg_current_wal_insert_lsn()", 1, lsn_type);
		if (res->status != WALRCV_OK_TUPLES)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_EXCEPTION),
					 errmsg("migration \"%s\": could not read the WAL position of the publisher of subscription \"%s\": %s",
							migration, sub->name, res->err ? res->err : "(no message)"),
					 errhint("A superuser may SET zdm.replication_check = off once it is certain that the subscription has applied the publisher's step.")));
		slot = MakeSingleTupleTableSlot(res->tupledesc, &TTSOpsMinimalTuple);
		if (!tuplestore_gettupleslot(res->tuplestore, true, false, slot))
			elog(ERROR, "zdm: the publisher returned no WAL position");
		{
			bool		isnull;

			*position = DatumGetLSN(slot_getattr(slot, 1, &isnull));
		}
		ExecDropSingleTupleTableSlot(slot);
		walrcv_clear_result(res);
	}
	PG_FINALLY();
	{
		if (conn != NULL)
			walrcv_disconnect(conn);
	}
	PG_END_TRY();
	return still;
}

/*
 * How far a subscription has applied its publisher's WAL: the end of the
 * last transaction it committed (its replication origin), or the position
 * of the last keepalive it processed, which comes after every change sent
 * before it.
 */
static XLogRecPtr
subscription_applied(Oid subid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(subid)};
	bool		isnull;
	Datum		d;

	zdm_state_exec("SELECT GREATEST("
				   "  (SELECT s.latest_end_lsn FROM pg_catalog.pg_stat_subscription s"
				   "    WHERE s.subid = $1 AND s.relid IS NULL),"
				   "  pg_catalog.pg_replication_origin_progress('pg_' || $1::pg_catalog.text, true))",
				   1, types, values, NULL, true, 1);
	if (SPI_processed == 0)
		return InvalidXLogRecPtr;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? InvalidXLogRecPtr : DatumGetLSN(d);
}

/* "column "c" of table "t"", or "table "t"". */
static char *
removal_label(FedRemoval *r)
{
	return r->column ? psprintf("column \"%s\" of table %s", r->column, table_label(r->relid)) :
		psprintf("table %s", table_label(r->relid));
}

/*
 * Before a contract or rollback on a subscriber: see the file header.
 * section is the plan's ("contract", "rollback"), action the words for
 * messages ("contract", "roll back").
 */
void
zdm_repl_check_removal(const ZdmMigration *m, const char *section, const char *action)
{
	List	   *removed;
	List	   *subs = NIL;
	List	   *all_subs = NIL;
	bool		all_read = false;
	StringInfoData journal;
	ListCell   *lc;

	if (CountDBSubscriptions(MyDatabaseId) == 0)
		return;					/* not a subscriber */
	removed = zdm_plan_removed(m->name, m->plan, section);
	foreach(lc, removed)
	{
		ZdmRemoved *r = lfirst(lc);
		FedRemoval *fr = palloc0(sizeof(FedRemoval));
		List	   *subids;
		List	   *states;
		ListCell   *lc2;
		ListCell   *lc3;

		fr->relid = r->relid;
		fr->column = r->column;
		subscriptions_of(r->relid, &subids, &states);
		forboth(lc2, subids, lc3, states)
		{
			FedSubscription *fs = fed_subscription(&subs, lfirst_oid(lc2));

			fs->removals = lappend(fs->removals, fr);
			if (strcmp(lfirst(lc3), "r") != 0 && fs->not_ready == NULL)
				fs->not_ready = table_label(r->relid);
		}

		/*
		 * A dropped table matters to every subscription of the database: a
		 * publication FOR ALL TABLES sends its changes whether or not the
		 * subscription has refreshed it in yet, and the apply worker fails on
		 * a table that does not exist.
		 */
		if (r->column == NULL)
		{
			if (!all_read)
			{
				all_subs = database_subscriptions();
				all_read = true;
			}
			foreach(lc2, all_subs)
			{
				FedSubscription *fs = fed_subscription(&subs, lfirst_oid(lc2));

				if (!list_member_ptr(fs->removals, fr))
					fs->removals = lappend(fs->removals, fr);
			}
		}
	}
	if (subs == NIL)
		return;

	initStringInfo(&journal);
	foreach(lc, subs)
	{
		FedSubscription *fs = lfirst(lc);
		Subscription *sub = GetSubscription(fs->subid, false);
		FedRemoval *first = linitial(fs->removals);
		List	   *still;
		XLogRecPtr	position = InvalidXLogRecPtr;
		XLogRecPtr	applied;
		TimestampTz start;

		if (!zdm_replication_check)
		{
			ereport(WARNING,
					(errmsg("migration \"%s\": not checking that the publisher of subscription \"%s\" no longer sends %s",
							m->name, sub->name, removal_label(first)),
					 errdetail("zdm.replication_check is off.")));
			appendStringInfo(&journal, "%ssubscription \"%s\" not checked (zdm.replication_check off, set by role \"%s\")",
							 journal.len > 0 ? "; " : "", sub->name, zdm_current_role_name());
			continue;
		}
		if (!sub->enabled)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot %s migration \"%s\" while subscription \"%s\", which feeds table %s, is disabled",
							action, m->name, sub->name, table_label(first->relid)),
					 errdetail("Changes it has not applied yet may still carry %s, which this step drops; "
							   "the subscription would stop at the first of them.", removal_label(first)),
					 errhint("Enable it (ALTER SUBSCRIPTION %s ENABLE) and %s again once it has caught up; "
							 "or, for a subscription that will be dropped, a superuser may SET zdm.replication_check = off.",
							 quote_identifier(sub->name), action)));
		if (fs->not_ready != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot %s migration \"%s\" while subscription \"%s\" is still copying table %s",
							action, m->name, sub->name, fs->not_ready),
					 errhint("Wait until pg_subscription_rel shows the table ready (srsubstate 'r'), then %s again.",
							 action)));

		still = ask_publisher(m->name, sub, fs->removals, &position);
		if (still != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot %s migration \"%s\" on this subscriber before its publisher: the publisher of subscription \"%s\" still has %s",
							action, m->name, sub->name, removal_label(linitial(still))),
					 errdetail("The subscription would stop at the next change of that table the publisher sends (\"missing replicated column\"), "
							   "and stay stopped: the changes already sent still name it."),
					 errhint("%s the migration on the publisher first (there: SELECT zdm.%s('%s')), then here: "
							 "zdm then waits for this subscription to apply the publisher's changes up to that point.",
							 strcmp(section, "contract") == 0 ? "Contract" : "Roll back", section, m->name)));

		/* Everything sent before the publisher's step must be applied here. */
		start = GetCurrentTimestamp();
		for (;;)
		{
			applied = subscription_applied(fs->subid);
			if (applied >= position)
				break;
			if (zdm_ms_since(start) >= zdm_lock_budget_ms)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("cannot %s migration \"%s\" yet: subscription \"%s\" has applied its publisher's changes up to %X/%X, not yet up to %X/%X",
								action, m->name, sub->name, LSN_FORMAT_ARGS(applied), LSN_FORMAT_ARGS(position)),
						 errdetail("Changes sent before the publisher's own %s may still carry %s, which this step drops.",
								   section, removal_label(first)),
						 errhint("Try again once the subscription has caught up (pg_stat_subscription); "
								 "if it does not move, its apply worker is failing: see this server's log.")));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 50, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		appendStringInfo(&journal, "%sthe publisher of subscription \"%s\" no longer has %s%s; applied up to %X/%X",
						 journal.len > 0 ? "; " : "", sub->name, removal_label(first),
						 list_length(fs->removals) > 1 ? " (nor the rest this step drops)" : "",
						 LSN_FORMAT_ARGS(applied));
	}
	zdm_log_event(m->name, "replication", NULL, NULL, NULL, -1, journal.data);
}

/*
 * Are the rows of every table a migration backfills written by a
 * subscription here?  Then the publisher's backfill converts them through
 * replication (the dual-write trigger fires for the apply worker), and
 * zdm.verify() judges whether it has arrived.
 */
bool
zdm_repl_converted_upstream(const char *migration, Jsonb *plan)
{
	ListCell   *lc;
	bool		any = false;

	if (CountDBSubscriptions(MyDatabaseId) == 0)
		return false;			/* not a subscriber */
	foreach(lc, zdm_plan_tables(migration, plan))
	{
		ZdmPlanTable *t = lfirst(lc);
		Oid			relid;
		List	   *subids;
		List	   *states;

		if (!t->backfill)
			continue;
		relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(t->relation)),
								 NoLock, true);
		if (!OidIsValid(relid))
			return false;
		subscriptions_of(relid, &subids, &states);
		if (subids == NIL)
			return false;
		any = true;
	}
	return any;
}

/*
 * Before a contract or rollback on a publisher: a NOTICE saying that the
 * subscribers come next, when the step drops something from a table this
 * database publishes to slots.
 */
void
zdm_repl_notice_published(const char *migration, Jsonb *plan, const char *section)
{
	List	   *active;
	List	   *slots = logical_slots(&active);
	ListCell   *lc;

	if (slots == NIL)
		return;					/* no one subscribes */
	foreach(lc, zdm_plan_removed(migration, plan, section))
	{
		ZdmRemoved *r = lfirst(lc);
		List	   *pubs = publications_of(r->relid, get_rel_namespace(r->relid));

		if (pubs == NIL)
			continue;
		ereport(NOTICE,
				(errmsg("table %s is published (%s) to logical replication slot%s %s: %s migration \"%s\" on each subscriber next",
						table_label(r->relid), quoted_list(pubs), list_length(slots) > 1 ? "s" : "",
						quoted_list(slots), strcmp(section, "contract") == 0 ? "contract" : "roll back", migration),
				 errhint("There, zdm.%s('%s') checks with this publisher and waits until this step has reached the subscriber.",
						 section, migration)));
		return;
	}
}

/* ---------- zdm's own state ---------- */

/* Refuse TRUNCATE of a table of zdm's state while it is published. */
static void
refuse_published_truncate(Relation rel)
{
	List	   *pubids = GetRelationPublications(RelationGetRelid(rel));
	List	   *names = NIL;
	ListCell   *lc;

	pubids = list_concat_unique_oid(pubids, GetAllTablesPublications());
	pubids = list_concat_unique_oid(pubids, GetSchemaPublications(RelationGetNamespace(rel)));
	foreach(lc, pubids)
	{
		Publication *pub = GetPublication(lfirst_oid(lc));

		if (pub->pubactions.pubtruncate)
			names = lappend(names, pub->name);
	}
	if (names == NIL)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot truncate zdm.%s while publication%s %s publish%s it",
					RelationGetRelationName(rel), list_length(names) > 1 ? "s" : "",
					quoted_list(names), list_length(names) > 1 ? "" : "es"),
			 errdetail("Every subscriber would apply the TRUNCATE to its own zdm.%s: zdm's state is each cluster's own, "
					   "and subscribers do not apply the rows of another cluster's, but a TRUNCATE cannot be left out that way.",
					   RelationGetRelationName(rel)),
			 errhint("DELETE the rows instead (subscribers leave deletes of zdm's state out).")));
}

/*
 * zdm.state_guard(): the trigger on zdm's state tables (see the file
 * header).  BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW, enabled
 * REPLICA: drops a row a background worker (the apply or table-sync
 * worker of a subscription) writes there, unless zdm itself writes it.
 * BEFORE TRUNCATE: refuses while the table is published.
 */
Datum
zdm_state_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("zdm.state_guard() was not called by the trigger manager"),
				 errhint("It is the trigger of zdm's own tables; the extension installs it.")));
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		refuse_published_truncate(td->tg_relation);
		return PointerGetDatum(NULL);
	}
	if (!TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("zdm.state_guard() must be fired BEFORE ... FOR EACH ROW, or BEFORE TRUNCATE"),
				 errhint("It is the trigger of zdm's own tables; the extension installs it.")));

	/* Another cluster's state, written here by replication: leave it out. */
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA &&
		IsBackgroundWorker && zdm_state_writing == 0)
		return PointerGetDatum(NULL);

	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);
}
