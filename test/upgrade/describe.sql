-- Everything the pg_engage extension consists of, one line per object with
-- its definition (security attributes and settings of functions included),
-- its privileges and the initial privileges pg_dump compares them with, in a
-- stable order: an updated database must print exactly what a fresh install
-- prints, and a restored one what its source prints.
WITH members AS (
    SELECT d.classid, d.objid
      FROM pg_catalog.pg_depend AS d
      JOIN pg_catalog.pg_extension AS e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
       AND d.deptype = 'e' AND e.extname = 'pg_engage'
), described AS (
    SELECT pg_catalog.pg_describe_object(m.classid, m.objid, 0) AS object,
           CASE m.classid
           WHEN 'pg_catalog.pg_proc'::regclass THEN
               pg_catalog.pg_get_functiondef(m.objid)
               || ' acl=' || coalesce((SELECT p.proacl::text FROM pg_catalog.pg_proc AS p WHERE p.oid = m.objid), 'default')
           WHEN 'pg_catalog.pg_class'::regclass THEN
               (SELECT c.relkind::text || ' acl=' || coalesce(c.relacl::text, 'default')
                       || ' options=' || coalesce(c.reloptions::text, '')
                       || coalesce(' view=' || pg_catalog.pg_get_viewdef(c.oid), '')
                       || ' columns=' || coalesce((SELECT string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                                                   || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                                   || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
                                                   || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END,
                                                   ', ' ORDER BY a.attnum)
                                                    FROM pg_catalog.pg_attribute AS a
                                                    LEFT JOIN pg_catalog.pg_attrdef AS ad
                                                      ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                       || ' constraints=' || coalesce((SELECT string_agg(pg_catalog.pg_get_constraintdef(k.oid), '; ' ORDER BY pg_catalog.pg_get_constraintdef(k.oid))
                                                        FROM pg_catalog.pg_constraint AS k WHERE k.conrelid = c.oid), '')
                       || ' indexes=' || coalesce((SELECT string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), '; ' ORDER BY pg_catalog.pg_get_indexdef(i.indexrelid))
                                                    FROM pg_catalog.pg_index AS i WHERE i.indrelid = c.oid), '')
                       || ' triggers=' || coalesce((SELECT string_agg(pg_catalog.pg_get_triggerdef(t.oid), '; ' ORDER BY t.tgname)
                                                     FROM pg_catalog.pg_trigger AS t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '')
                  FROM pg_catalog.pg_class AS c WHERE c.oid = m.objid)
           WHEN 'pg_catalog.pg_event_trigger'::regclass THEN
               (SELECT t.evtevent || ' enabled=' || t.evtenabled::text || ' function=' || t.evtfoid::regproc::text
                       || ' tags=' || coalesce(t.evttags::text, '')
                  FROM pg_catalog.pg_event_trigger AS t WHERE t.oid = m.objid)
           WHEN 'pg_catalog.pg_namespace'::regclass THEN
               (SELECT 'acl=' || coalesce(n.nspacl::text, 'default')
                  FROM pg_catalog.pg_namespace AS n WHERE n.oid = m.objid)
           ELSE '' END
           || coalesce(' column acls=' || (SELECT string_agg(a.attname || ' ' || a.attacl::text, ', ' ORDER BY a.attnum)
                                             FROM pg_catalog.pg_attribute AS a
                                            WHERE m.classid = 'pg_catalog.pg_class'::regclass
                                              AND a.attrelid = m.objid AND a.attacl IS NOT NULL), '')
           || coalesce(' initial privileges=' || (SELECT string_agg(coalesce(nullif(i.objsubid, 0)::text || ' ', '')
                                                                    || i.privtype::text || ' ' || i.initprivs::text,
                                                                    ', ' ORDER BY i.objsubid)
                                                    FROM pg_catalog.pg_init_privs AS i
                                                   WHERE i.classoid = m.classid AND i.objoid = m.objid), '')
           AS definition,
           coalesce(pg_catalog.obj_description(m.objid, (SELECT relname FROM pg_catalog.pg_class WHERE oid = m.classid)), '') AS comment
      FROM members AS m
)
SELECT object || E'\n  ' || replace(definition, E'\n', E'\n  ') || E'\n  comment: ' || comment
  FROM described
 ORDER BY object;

-- What pg_dump dumps the data of.
SELECT 'config dump: ' || string_agg(c::regclass::text || coalesce(' where ' || nullif(f, ''), ''), ', ' ORDER BY c::regclass::text)
  FROM pg_catalog.pg_extension AS e, unnest(e.extconfig, e.extcondition) AS u(c, f)
 WHERE e.extname = 'pg_engage';

-- The extension's schema, which CREATE EXTENSION creates but does not make a
-- member (pg_dump dumps it, and its privileges, like any schema).
SELECT 'extension schema ' || n.nspname || ' acl=' || coalesce(n.nspacl::text, 'default')
  FROM pg_catalog.pg_extension AS e JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
 WHERE e.extname = 'pg_engage';

-- The roles the extension creates (they belong to the cluster).
SELECT 'role ' || r.rolname || ' login=' || r.rolcanlogin || ' super=' || r.rolsuper
       || ' inherit=' || r.rolinherit || ' createrole=' || r.rolcreaterole || ' createdb=' || r.rolcreatedb
       || ' replication=' || r.rolreplication || ' bypassrls=' || r.rolbypassrls
       || ' comment: ' || coalesce(pg_catalog.shobj_description(r.oid, 'pg_authid'), '')
  FROM pg_catalog.pg_roles AS r
 WHERE r.rolname IN ('engage_reader', 'engage_writer', 'engage_monitor')
 ORDER BY r.rolname;
