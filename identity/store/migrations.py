"""Forward-only migrations: identity/migrations/NNNN_name.sql (shipped inside the package),
applied in order, each in a transaction. A change SQL cannot make (a value computed in
Python) is NNNN_name.py with `upgrade(conn)`, run in its transaction the same way.

Written here rather than taken from yoyo-migrations: the whole job is an advisory lock, a
table of applied ids and a loop, and a PostgreSQL advisory lock is released by the server
when its holder dies, where yoyo's lock is a row in a table that a crashed replica leaves
behind until a timeout. It also takes the same libpq URL as the rest of the service.
"""

import importlib.util
import re
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row

from identity.store import roles

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"

# Any fixed number; every replica takes the same one, so only one migrates at a time.
_LOCK_KEY = 0x1D_E117_17

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.(sql|py)$")


def available(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migration files, in the order they are applied."""
    files = sorted(p for p in directory.iterdir() if p.suffix in (".sql", ".py"))
    for path in files:
        if not _FILE_NAME.match(path.name):
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
    stems = [path.stem for path in files]
    if len(set(stems)) != len(stems):
        raise ValueError("two migration files share a number and name")
    return files


def applied(conn: psycopg.Connection) -> set[str] | None:
    """Ids of the applied migrations, or None when the database has never been migrated."""
    exists = conn.execute("select to_regclass('schema_migrations') is not null as e").fetchone()
    if not _value(exists):
        return None
    return {_value(row) for row in conn.execute("select id from schema_migrations")}


def pending(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Ids of the migrations not yet applied."""
    done = applied(conn) or set()
    return [path.stem for path in available(directory) if path.stem not in done]


def upgrade(
    conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR, *, serving_role: str | None = None
) -> list[str]:
    """Apply what is pending; two replicas starting at once apply each file exactly once.
    Then give `serving_role` (unless it owns the schema) the rights to rows of every table
    there is now (identity.store.roles), so a new table is served at once."""
    conn.autocommit = True
    conn.execute("select pg_advisory_lock(%(key)s)", {"key": _LOCK_KEY})
    try:
        # Made once, by the owner; looked for first, so a role with rights to rows only
        # (a replica's `identity serve`, with nothing pending) finds the schema current.
        with conn.cursor(row_factory=tuple_row) as cur:
            present = cur.execute("select to_regclass('schema_migrations')").fetchone()[0]
        if present is None:
            conn.execute(
                "create table schema_migrations ("
                " id text primary key, applied_at timestamptz not null default now())"
            )
        done = applied(conn) or set()
        applied_now = []
        for path in available(directory):
            if path.stem in done:
                continue
            with conn.transaction():
                _apply(conn, path)
                conn.execute(
                    "insert into schema_migrations (id) values (%(id)s)", {"id": path.stem}
                )
            applied_now.append(path.stem)
        if serving_role is not None and not roles.owns_the_schema(conn, serving_role):
            roles.grant_serving(conn, serving_role)
        return applied_now
    finally:
        conn.execute("select pg_advisory_unlock(%(key)s)", {"key": _LOCK_KEY})


def _apply(conn: psycopg.Connection, path: Path) -> None:
    if path.suffix == ".sql":
        conn.execute(path.read_text(encoding="utf-8"))
        return
    spec = importlib.util.spec_from_file_location(f"identity_migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.upgrade(conn)


def _value(row):
    """The first column of a row, whatever the connection's row factory."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def read_only(conn: psycopg.Connection) -> bool:
    """Whether this session may not write: a standby, or a database set read-only."""
    row = conn.execute("select current_setting('transaction_read_only') as value").fetchone()
    value = row["value"] if isinstance(row, dict) else row[0]
    return value == "on"
