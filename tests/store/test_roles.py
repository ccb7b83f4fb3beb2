"""The serving role (every test's connection) may read and write rows and nothing more:
no DDL, no TRUNCATE, no trigger changes, and the ledgers only grow. Erasing a person still
takes their ledger rows with them."""

import psycopg
import pytest
from click.testing import CliRunner

from identity.cli import main
from identity.embedded import ensure_role, with_database
from identity.store import roles


@pytest.mark.parametrize(
    "statement",
    [
        "create table intruder (n int)",
        "alter table users add column intruder text",
        "alter table consent_events disable trigger consent_events_append_only",
        "drop trigger consent_events_append_only on consent_events",
        "create or replace function consent_events_append_only() returns trigger"
        " language plpgsql as $$ begin return new; end $$",
        "update consent_events set state = 'subscribed'",
        "delete from consent_events",
        "truncate consent_events",
        "truncate users cascade",
        "delete from schema_migrations",
        "create index intruder on users (first_name)",
    ],
)
def test_the_serving_role_is_refused(conn, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute(statement)


def _rights(conn) -> dict[str, set[str]]:
    """Of every table in the schema, what the connection's role may do to it."""
    rows = conn.execute(
        """
        select c.relname as table, array_remove(array[
            case when has_table_privilege(c.oid, 'select') then 'select' end,
            case when has_table_privilege(c.oid, 'insert') then 'insert' end,
            case when has_table_privilege(c.oid, 'update') then 'update' end,
            case when has_table_privilege(c.oid, 'delete') then 'delete' end,
            case when has_table_privilege(c.oid, 'truncate') then 'truncate' end,
            case when has_table_privilege(c.oid, 'references') then 'references' end,
            case when has_table_privilege(c.oid, 'trigger') then 'trigger' end,
            case when pg_has_role(c.relowner, 'member') then 'owner' end
        ], null) as rights
        from pg_class c
        where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
        """
    ).fetchall()
    return {row["table"]: set(row["rights"]) for row in rows}


def test_every_table_is_rows_only_and_the_ledgers_insert_only(conn):
    """Every table the migrations made, whichever migration: a table added later gets
    the same at its upgrade, without a line in identity.store.roles."""
    rights = _rights(conn)
    assert "consent_events" in rights
    for table, has in rights.items():
        if table in roles.INSERT_ONLY:
            expected = {"select", "insert"}
        elif table in roles.READ_ONLY:
            expected = {"select"}
        else:
            expected = {"select", "insert", "update", "delete"}
        assert has == expected, table


def test_the_serving_role_makes_nothing_in_the_schema(conn):
    row = conn.execute(
        "select has_schema_privilege('public', 'create') as can_create,"
        " (select rolsuper or rolcreaterole or rolcreatedb from pg_roles"
        "  where rolname = current_user) as can_more"
    ).fetchone()
    assert row == {"can_create": False, "can_more": False}


def test_erasing_a_person_removes_their_ledger_rows_through_the_cascade(conn):
    """PostgreSQL runs `on delete cascade` as the owner of the table it deletes from, so
    the serving role, which may not delete a consent event, still erases a person whole."""
    user = conn.execute(
        "insert into users (email, email_key) values ('erase@example.com', 'erase@example.com')"
        " returning id"
    ).fetchone()["id"]
    conn.execute(
        "insert into consent_events (user_id, newsletter, action, state, channel)"
        " values (%s, 1, 'subscribe', 'subscribed', 'api')",
        (user,),
    )
    conn.execute(
        "insert into audit_events (event, actor, actor_id, subject_id)"
        " values ('x', 'person', %(user)s, %(user)s)",
        {"user": user},
    )
    conn.execute("delete from users where id = %s", (user,))
    left = conn.execute(
        "select (select count(*) from consent_events where user_id = %(user)s)"
        " + (select count(*) from audit_events where %(user)s in (subject_id, actor_id)) as n",
        {"user": user},
    )
    assert left.fetchone()["n"] == 0


def test_every_insert_only_table_lets_go_of_an_erased_person(conn):
    """Each of the ledgers' references to a person is removed (or emptied) with the
    person, by PostgreSQL as the owner: erasure is never blocked by a row the serving role
    may not delete."""
    rows = conn.execute(
        """
        select conrelid::regclass::text as ledger, conname, confdeltype
        from pg_constraint
        where contype = 'f' and confrelid = 'users'::regclass
          and conrelid::regclass::text = any(%(ledgers)s)
        """,
        {"ledgers": list(roles.INSERT_ONLY)},
    ).fetchall()
    assert "consent_events" in {row["ledger"] for row in rows}
    # c: on delete cascade; n: on delete set null (run as the owner too).
    blocking = [row["conname"] for row in rows if row["confdeltype"] not in ("c", "n")]
    assert blocking == []


def test_db_upgrade_grants_the_serving_urls_role_rows_only(
    server_url, owner_url, owner_db, worker_id
):
    """`identity db upgrade` as the owner gives the role IDENTITY_DATABASE_URL logs in as
    its rights, taken from the URL: a new serving role works after one upgrade."""
    name = f"identity_test_fresh_{worker_id}"
    fresh = with_database(ensure_role(server_url, name), owner_db.info.dbname)
    env = {"IDENTITY_DATABASE_URL": fresh, "IDENTITY_MIGRATION_DATABASE_URL": owner_url}
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    with psycopg.connect(fresh, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        assert conn.execute("select current_user as me").fetchone()["me"] == name
        assert _rights(conn)["users"] == {"select", "insert", "update", "delete"}
        assert _rights(conn)["consent_events"] == {"select", "insert"}
