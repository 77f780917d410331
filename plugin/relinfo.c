/*
 * relinfo.c
 *		Per-relation cache: is it captured, its columns' names and types, its
 *		key and its Kafka topic.
 *
 * Entries are built on first use and rebuilt after a relcache invalidation,
 * so that decoding pays for catalog lookups once per relation, not per change.
 * A schema rename sends no relcache invalidation, only a syscache one for
 * pg_namespace: it invalidates every entry, since names and capture decisions
 * depend on the schema's name.
 * The cache lives in CacheMemoryContext: a decoding session that ends with an
 * error cannot leave the invalidation callback pointing at freed memory.
 */
#include "engage_decoder.h"

#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

static HTAB *rel_cache = NULL;

static void engage_type_init(EngageType *type, Oid typid, MemoryContext cxt);

/* Relcache invalidation: forget one relation (and its partitions), or all. */
static void
invalidate_rel(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	EngageRel  *erel;

	if (rel_cache == NULL)
		return;
	/* A partition's entry holds its root's fingerprint: forget it with the root. */
	hash_seq_init(&status, rel_cache);
	while ((erel = hash_seq_search(&status)) != NULL)
		if (!OidIsValid(relid) || erel->relid == relid || erel->root == relid)
			erel->valid = false;
}

/* Frees every entry and the table itself. */
static void
destroy_cache(void)
{
	HASH_SEQ_STATUS status;
	EngageRel  *erel;

	hash_seq_init(&status, rel_cache);
	while ((erel = hash_seq_search(&status)) != NULL)
		if (erel->cxt != NULL)
			MemoryContextDelete(erel->cxt);
	hash_destroy(rel_cache);
	rel_cache = NULL;
}

/* Syscache invalidation of pg_namespace (a schema renamed): forget them all. */
static void
invalidate_namespace(Datum arg, int cacheid, uint32 hashvalue)
{
	invalidate_rel(arg, InvalidOid);
}

/* Starts a decoding session with an empty cache (options may have changed). */
void
engage_relcache_init(void)
{
	static bool callback_registered = false;
	HASHCTL		ctl;

	if (rel_cache != NULL)
		destroy_cache();
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(EngageRel);
	ctl.hcxt = CacheMemoryContext;
	rel_cache = hash_create("engage_decoder relations", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(invalidate_rel, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, invalidate_namespace, (Datum) 0);
		callback_registered = true;
	}
}

/* Ends a decoding session: the cache is not needed until the next one. */
void
engage_relcache_reset(void)
{
	if (rel_cache != NULL)
		destroy_cache();
}

/* Chooses how values of the base type typid are written. */
static EngageValueKind
value_kind(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
			return EV_INT;
		case BOOLOID:
			return EV_BOOL;
		case FLOAT4OID:
		case FLOAT8OID:
			return EV_FLOAT;
		case NUMERICOID:
			return EV_NUMERIC;
		case JSONOID:
		case JSONBOID:
			return EV_JSON;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return EV_TEXT;
		case TIMESTAMPTZOID:
			return EV_TIMESTAMPTZ;
		case TIMESTAMPOID:
			return EV_TIMESTAMP;
		case DATEOID:
			return EV_DATE;
		case INTERVALOID:
			return EV_INTERVAL;
		case BYTEAOID:
			return EV_BYTEA;
		default:
			return OidIsValid(get_element_type(typid)) ? EV_ARRAY : EV_STRING;
	}
}

/* Fills type with what writing values of typid (or its base type) needs. */
static void
engage_type_init(EngageType *type, Oid typid, MemoryContext cxt)
{
	Oid			base = getBaseType(typid);
	Oid			outfunc;
	bool		isvarlena;

	type->typid = base;
	type->kind = value_kind(base);
	get_typlenbyvalalign(base, &type->typlen, &type->typbyval, &type->typalign);
	getTypeOutputInfo(base, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &type->out, cxt);
	type->elem = NULL;
	if (type->kind == EV_ARRAY)
	{
		type->elem = MemoryContextAlloc(cxt, sizeof(EngageType));
		engage_type_init(type->elem, get_element_type(base), cxt);
	}
}

/* Returns "schema.name" of relid. */
static char *
qualified_name(Oid relid)
{
	return psprintf("%s.%s", get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));
}

/* Returns ,"field":"name" with name as a JSON string. */
static char *
name_field(const char *field, const char *name)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, ",\"%s\":", field);
	engage_json_string(&buf, name, strlen(name));
	return buf.data;
}

/* Sets the Kafka topic of erel (the root relation root) under prefix. */
static void
build_topic(EngageRel *erel, Oid root, const char *prefix)
{
	StringInfoData buf;

	erel->topic = NULL;
	erel->no_topic_reason = NULL;
	if (prefix == NULL)
		return;
	initStringInfo(&buf);
	erel->no_topic_reason = engage_table_topic(&buf, prefix,
											   get_namespace_name(get_rel_namespace(root)),
											   get_rel_name(root));
	if (erel->no_topic_reason == NULL)
		erel->topic = buf.data;
}

/* Fills the live columns of rel into erel. */
static void
build_columns(EngageRel *erel, TupleDesc desc)
{
	erel->cols = palloc0(sizeof(EngageColumn) * desc->natts);
	erel->ncols = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		EngageColumn *col = &erel->cols[erel->ncols];
		StringInfoData buf;

		if (att->attisdropped)
			continue;
		initStringInfo(&buf);
		engage_json_string(&buf, NameStr(att->attname), strlen(NameStr(att->attname)));
		col->bare = pstrdup(buf.data);
		appendStringInfoChar(&buf, ':');
		col->name = buf.data;
		col->namelen = buf.len;
		col->attnum = att->attnum;
		engage_type_init(&col->type, att->atttypid, erel->cxt);
		erel->ncols++;
	}
}

/*
 * Finds the attribute numbers of the row key of rel: its replica identity
 * index (by default the primary key), else its primary key (as under
 * REPLICA IDENTITY FULL).  Done for every table, captured or not.
 */
static void
build_key_attnums(EngageRel *erel, Relation rel)
{
	Oid			indexoid = engage_key_index(rel);
	Relation	index;

	erel->nkeyatts = 0;
	if (!OidIsValid(indexoid))
		return;
	index = RelationIdGetRelation(indexoid);
	erel->keyatts = palloc(sizeof(AttrNumber) * index->rd_index->indnkeyatts);
	for (int k = 0; k < index->rd_index->indnkeyatts; k++)
		if (index->rd_index->indkey.values[k] > 0)
			erel->keyatts[erel->nkeyatts++] = index->rd_index->indkey.values[k];
	RelationClose(index);
}

/* Finds the key columns of a captured relation among its live columns. */
static void
build_keys(EngageRel *erel)
{
	erel->nkeys = 0;
	erel->keys = palloc(sizeof(int) * Max(erel->nkeyatts, 1));
	for (int k = 0; k < erel->nkeyatts; k++)
		for (int c = 0; c < erel->ncols; c++)
			if (erel->cols[c].attnum == erel->keyatts[k])
				erel->keys[erel->nkeys++] = c;
}

/*
 * Sets ,"schema":"<fingerprint>" of erel: that of the root (a partition's
 * rows are the root's table), described with the catalog as of the change.
 */
static void
build_schema(EngageRel *erel, Relation rel, Oid root)
{
	Relation	described = root == RelationGetRelid(rel) ? rel : RelationIdGetRelation(root);
	StringInfoData desc;
	char		fingerprint[ENGAGE_SCHEMA_FINGERPRINT_CHARS + 1];

	initStringInfo(&desc);
	engage_describe_rel(&desc, described);
	if (described != rel)
		RelationClose(described);
	engage_schema_fingerprint(desc.data, desc.len, fingerprint);
	erel->schema = psprintf(",\"schema\":\"%s\"", fingerprint);
	pfree(desc.data);
}

/* The topmost partitioned table above a partition, or relid itself. */
static Oid
root_of(Relation rel)
{
	List	   *ancestors;

	if (!rel->rd_rel->relispartition)
		return RelationGetRelid(rel);
	ancestors = get_partition_ancestors(RelationGetRelid(rel));
	return llast_oid(ancestors);
}

/* (Re)builds the entry of rel. */
static void
build_rel(EngageRel *erel, Relation rel, const EngageOptions *opts)
{
	Oid			relid = RelationGetRelid(rel);
	Oid			root = root_of(rel);
	MemoryContext old;

	if (erel->cxt != NULL)
		MemoryContextDelete(erel->cxt);
	erel->cxt = AllocSetContextCreate(CacheMemoryContext, "engage_decoder relation",
									  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(erel->cxt);
	erel->root = root;
	erel->captured = engage_table_list_matches(&opts->tables,
											   get_namespace_name(get_rel_namespace(root)),
											   get_rel_name(root));
	erel->partition = NULL;
	erel->nkeys = 0;
	build_key_attnums(erel, rel);
	if (erel->captured)
	{
		erel->qualname = qualified_name(root);
		erel->table = name_field("table", erel->qualname);
		if (root != relid)
			erel->partition = name_field("partition", qualified_name(relid));
		build_topic(erel, root, opts->topic_prefix);
		build_columns(erel, RelationGetDescr(rel));
		build_keys(erel);
		build_schema(erel, rel, root);
	}
	MemoryContextSwitchTo(old);
	erel->valid = true;
}

/* Returns the cache entry of rel, building it when missing or invalidated. */
EngageRel *
engage_rel_get(Relation rel, const EngageOptions *opts)
{
	Oid			relid = RelationGetRelid(rel);
	bool		found;
	EngageRel  *erel = hash_search(rel_cache, &relid, HASH_ENTER, &found);

	if (!found)
	{
		erel->cxt = NULL;
		erel->valid = false;
	}
	if (!erel->valid)
		build_rel(erel, rel, opts);
	return erel;
}

/*
 * Builds an entry for rel outside the cache, from the catalog as it is now
 * (for a snapshot's rows); free it with engage_rel_free().
 */
EngageRel *
engage_rel_build(Relation rel, const EngageOptions *opts)
{
	EngageRel  *erel = palloc0(sizeof(EngageRel));

	erel->relid = RelationGetRelid(rel);
	build_rel(erel, rel, opts);
	erel->desc = CreateTupleDescCopy(RelationGetDescr(rel));
	return erel;
}

/* Frees an entry made by engage_rel_build(). */
void
engage_rel_free(EngageRel *erel)
{
	MemoryContextDelete(erel->cxt);
	FreeTupleDesc(erel->desc);
	pfree(erel);
}
