-- Last part of the install script: pg_dump dumps the data of every table and
-- sequence the script created in engage and engage_internal, so a dump and
-- restore keeps the product's data (tables of an extension are otherwise
-- left out).

DO $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN
        SELECT c.oid::regclass
        FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('engage', 'engage_internal') AND c.relkind IN ('r', 'S')
        ORDER BY c.oid
    LOOP
        -- One call per statement: each one updates the pg_extension row.
        PERFORM pg_catalog.pg_extension_config_dump(rel, '');
    END LOOP;
END
$$;
