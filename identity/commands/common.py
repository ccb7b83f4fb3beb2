"""What every command of `identity` shares: the settings, the database's URLs (or the
embedded PostgreSQL's), a connection and a unit of work of the command's own, and one
`Error:` line for a refusal of the service."""

from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import click
import psycopg
from psycopg.rows import dict_row

from identity.config import load_config
from identity.errors import ConfigurationError, IdentityError
from identity.store.transactions import UnitOfWork

EMBEDDED_DATABASE = "identity"


class DatabaseUrls(NamedTuple):
    """Where the service connects: as the serving role (rights to rows only) and as the
    role that owns the schema and migrates it (docs/serving.md, "Database roles")."""

    serving: str
    migration: str


@contextmanager
def database_urls():
    """IDENTITY_DATABASE_URL and IDENTITY_MIGRATION_DATABASE_URL (unset: the first), or
    the embedded PostgreSQL under .data/ with a role of each kind (stopped on exit)."""
    config = _config()
    if config["DATABASE_URL"]:
        yield DatabaseUrls(
            config["DATABASE_URL"], config["MIGRATION_DATABASE_URL"] or config["DATABASE_URL"]
        )
        return
    from identity.embedded import (
        OWNER_ROLE,
        SERVING_ROLE,
        ensure_database,
        ensure_role,
        start_embedded,
        with_database,
    )

    server = _run(start_embedded, Path(config["DATA_DIR"]).resolve() / "pg")
    try:
        server_url = server.get_uri()
        owner, serving = ensure_role(server_url, OWNER_ROLE), ensure_role(server_url, SERVING_ROLE)
        ensure_database(server_url, EMBEDDED_DATABASE, owner=OWNER_ROLE)
        yield DatabaseUrls(
            with_database(serving, EMBEDDED_DATABASE), with_database(owner, EMBEDDED_DATABASE)
        )
    finally:
        server.cleanup()


@contextmanager
def database_url():
    """The serving role's URL: every command but the migration's connects as it."""
    with database_urls() as urls:
        yield urls.serving


@contextmanager
def connection():
    with database_url() as url, psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@contextmanager
def unit_of_work():
    """A unit of work on a connection of the command's own."""
    with connection() as conn:
        yield UnitOfWork.of(conn)


def _config() -> dict:
    try:
        return load_config()
    except ConfigurationError as exc:
        raise click.ClickException(exc.detail) from None


def _run(action, *args):
    try:
        return action(*args)
    except IdentityError as exc:
        reasons = [reason for messages in (exc.errors or {}).values() for reason in messages]
        raise click.ClickException("; ".join([exc.detail, *reasons])) from None
