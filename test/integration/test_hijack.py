"""The shipper runs as the bootstrap superuser: nothing a role puts on a search_path is ever run by it
(the slot is created through the C API, the one SQL query it runs is qualified, its search_path pinned)."""
import psycopg
import pytest

ROLE = "mallory_hijack"

# Functions and an operator named like what the shipper might call, in a schema every role can
# write and that comes first on the default search_path.  Each, if run by a superuser, makes
# mallory one and leaves a trace.  The first is what 0.1.0 fell for: it called
# pg_create_logical_replication_slot($1, ...) unqualified with a text $1, and a (text, text)
# function matches better than pg_catalog's (name, name, ...).
TRAPS = [
    "pg_create_logical_replication_slot(text, text)",
    "starts_with(text, text)",
    "pg_show_all_file_settings()",
    "pg_reload_conf()",
]


@pytest.fixture
def mallory(cluster):
    """mallory with CREATE on public (the pre-15 default) and traps for every name in TRAPS."""
    cluster.query(f"DROP OWNED BY {ROLE}") if cluster.one(
        "SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)) else None
    cluster.query(f"DROP ROLE IF EXISTS {ROLE}")
    cluster.query(f"CREATE ROLE {ROLE} LOGIN")
    cluster.query(f"GRANT CREATE ON SCHEMA public TO {ROLE}")
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user=ROLE, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute("CREATE TABLE public.trap_calls (name text, by_role text)")
        conn.execute("GRANT INSERT ON public.trap_calls TO PUBLIC")
        for sig in TRAPS:
            name, args = sig.split("(", 1)
            params = ", ".join(f"a{i} {t.strip()}" for i, t in enumerate(args.rstrip(")").split(",")) if t.strip())
            try:
                conn.execute(f"""
                    CREATE FUNCTION public.{name}({params}) RETURNS record LANGUAGE plpgsql AS $$
                    BEGIN
                        INSERT INTO public.trap_calls VALUES ('{sig}', current_user);
                        EXECUTE 'ALTER ROLE {ROLE} SUPERUSER';
                        RETURN NULL;
                    END $$""")
            except psycopg.errors.DuplicateFunction:
                pass
        conn.execute(f"""
            CREATE FUNCTION public.trap_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO public.trap_calls VALUES ('=', current_user);
                EXECUTE 'ALTER ROLE {ROLE} SUPERUSER';
                RETURN $1 OPERATOR(pg_catalog.=) $2;
            END $$""")
        conn.execute("CREATE OPERATOR public.= (FUNCTION = public.trap_eq, LEFTARG = text, RIGHTARG = text)")
    yield ROLE
    cluster.query(f"DROP OWNED BY {ROLE}")
    cluster.query(f"DROP ROLE {ROLE}")


def test_new_slot_and_reloads_run_no_trap(cluster, mallory):
    """A new slot (created at session start), reloads and configuration checks call no trap."""
    try:
        cluster.restart_session(slot_name="engage_hijack_check")
        cluster.query("INSERT INTO engage.members (name) VALUES ('after the traps')")
        cluster.wait_shipped(slot="engage_hijack_check")
        assert cluster.one("SELECT plugin FROM pg_replication_slots WHERE slot_name = 'engage_hijack_check'") \
            == "engage_decoder"
    finally:
        cluster.restart_session(slot_name=None)
        cluster.query("SELECT pg_drop_replication_slot('engage_hijack_check')")
    assert cluster.query("SELECT * FROM public.trap_calls") == []
    assert cluster.one("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (mallory,)) is False
