/*
 * relnames.c
 *		engage_internal.relation_names: what the schema-change triggers last
 *		saw of every table, so that a DDL statement can be told apart.
 *
 * One row per ordinary or partitioned table (temporary and system tables
 * aside): its schema and name, its root (itself, or the topmost partitioned
 * table above a partition) and, for a root, the fingerprint of its
 * description (schemadesc.c).  A rename knows the previous name from it, a
 * statement that changed nothing the stream shows (GRANT, COMMENT, a CHECK
 * constraint) writes no schema message, and a partition attached or
 * detached is noticed.  The OIDs mean nothing in another cluster: the table
 * is not dumped; CREATE EXTENSION seeds it (engage.register_relations) and a
 * restore's CREATE TABLE statements fill it again through the triggers.
 *
 * Only the extension's owner may write it: the trigger functions run as the
 * owner (SECURITY DEFINER), and every query here is qualified, so the
 * caller's search_path plays no part.
 */
#include "engage.h"

#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

/* Is engage_internal.relation_names there (not while the extension is dropped)? */
bool
relnames_present(void)
{
	Oid			nsp = get_namespace_oid("engage_internal", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("relation_names", nsp));
}

/* Runs a statement of the registry with one to five parameters; errors on failure. */
static void
run(const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "pg_engage: registry statement failed (%d): %s", rc, sql);
}

/* Reads the row of relid into row; false when there is none. */
bool
relnames_get(Oid relid, EngageRelName *row)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	run("SELECT r.nspname, r.relname, r.root, r.fingerprint"
		"  FROM engage_internal.relation_names AS r"
		" WHERE r.relid OPERATOR(pg_catalog.=) $1",
		1, types, values, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row->relid = relid;
	row->nspname = SPI_getvalue(tup, desc, 1);
	row->relname = SPI_getvalue(tup, desc, 2);
	row->root = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
	row->fingerprint = SPI_getvalue(tup, desc, 4);
	return true;
}

/* Writes (inserts or replaces) the row of row->relid. */
void
relnames_put(const EngageRelName *row)
{
	Oid			types[5] = {OIDOID, TEXTOID, TEXTOID, OIDOID, TEXTOID};
	Datum		values[5] = {
		ObjectIdGetDatum(row->relid),
		CStringGetTextDatum(row->nspname),
		CStringGetTextDatum(row->relname),
		ObjectIdGetDatum(row->root),
		CStringGetTextDatum(row->fingerprint)
	};

	run("INSERT INTO engage_internal.relation_names AS r (relid, nspname, relname, root, fingerprint)"
		" VALUES ($1, $2, $3, $4, $5)"
		" ON CONFLICT (relid) DO UPDATE"
		" SET nspname = excluded.nspname, relname = excluded.relname,"
		"     root = excluded.root, fingerprint = excluded.fingerprint",
		5, types, values, SPI_OK_INSERT);
}

/* Removes the row of relid, if any. */
void
relnames_delete(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	run("DELETE FROM engage_internal.relation_names AS r"
		" WHERE r.relid OPERATOR(pg_catalog.=) $1",
		1, types, values, SPI_OK_DELETE);
}

/*
 * The OIDs the query (with one OID parameter, or none when arg is invalid)
 * returns in its first column.
 */
List *
relnames_oids(const char *sql, Oid arg)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(arg)};
	List	   *oids = NIL;
	bool		isnull;

	run(sql, OidIsValid(arg) ? 1 : 0, types, values, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
		oids = lappend_oid(oids, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																 SPI_tuptable->tupdesc,
																 1, &isnull)));
	return oids;
}
