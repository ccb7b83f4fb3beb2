"""The serving role's rights: rows only, and only added to the ledgers. Granted by
`identity db upgrade` after every migration, to every table there is then, so a table a
later migration adds is covered without a line here.

The owning role (IDENTITY_MIGRATION_DATABASE_URL) owns the schema; the serving role
(IDENTITY_DATABASE_URL: the web workers, the courier, the operator's commands) may read,
add, change and remove rows, nothing more: no DDL, no TRUNCATE, no trigger changes, and
no UPDATE or DELETE of the tables in INSERT_ONLY. Erasing a person still removes their rows
there: `on delete cascade` runs as the owner of the table it deletes from.
"""

import psycopg
from psycopg import sql

# Proof that must outlive any bug or intruder in the service: rows are added, never
# changed or removed by it (their triggers refuse an UPDATE even to the owner).
INSERT_ONLY = ("consent_events", "audit_events")

# What the service reads of the migrations' own bookkeeping (/health/ready: pending ones).
READ_ONLY = ("schema_migrations",)


def grant_serving(conn: psycopg.Connection, role: str) -> None:
    """Give `role` exactly the serving rights on the schema as it is now, taking back
    any it had beyond them (so moving a table into INSERT_ONLY takes effect at the next
    upgrade). One transaction: the role never sees a moment without its rights."""
    who = sql.Identifier(role)
    with conn.transaction():
        for statement in (
            "revoke all on all tables in schema public from {who}",
            "revoke all on all sequences in schema public from {who}",
            "grant usage on schema public to {who}",
            "grant select, insert, update, delete on all tables in schema public to {who}",
            "grant usage, select on all sequences in schema public to {who}",
            # Functions are the owner's narrow doors (security definer, docs/serving.md).
            "grant execute on all functions in schema public to {who}",
        ):
            conn.execute(sql.SQL(statement).format(who=who))
        for table in _existing(conn, INSERT_ONLY):
            conn.execute(
                sql.SQL("revoke update, delete on {} from {}").format(sql.Identifier(table), who)
            )
        for table in _existing(conn, READ_ONLY):
            conn.execute(
                sql.SQL("revoke insert, update, delete on {} from {}").format(
                    sql.Identifier(table), who
                )
            )


def _existing(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    """Those of `tables` the schema has (a ledger named before its migration is merged)."""
    rows = conn.execute(
        "select relname from pg_class"
        " where relnamespace = 'public'::regnamespace and relname = any(%(names)s)"
        " and relkind in ('r', 'p')",
        {"names": list(tables)},
    ).fetchall()
    return [next(iter(row.values())) if isinstance(row, dict) else row[0] for row in rows]


def current_role(url: str) -> str:
    """The role a URL logs in as (libpq's defaults included: PGUSER, the system user)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("select current_user").fetchone()[0]


def owns_the_schema(conn: psycopg.Connection, role: str) -> bool:
    """Whether `role` is (or may act as) the owner of the migrated tables, or a superuser:
    then it has every right whatever is granted, and granting to it would take some of
    the owner's own away."""
    row = conn.execute(
        """
        select r.rolsuper or pg_has_role(r.oid, t.relowner, 'MEMBER')
        from pg_roles r, pg_class t
        where r.rolname = %(role)s and t.oid = 'schema_migrations'::regclass
        """,
        {"role": role},
    ).fetchone()
    return row is not None and bool(next(iter(row.values())) if isinstance(row, dict) else row[0])
