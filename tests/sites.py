"""Site keys for tests, issued and committed as `identity sites create` does."""

import psycopg

from identity.services.sites import issue_site_key
from identity.store.transactions import UnitOfWork


def site_key_for(conn: psycopg.Connection, name: str, scopes: list[str] | None = None) -> str:
    """A new key of site `name`, written in its own unit of work on `conn` (a savepoint
    inside a test's transaction, committed on a committing connection)."""
    uow = UnitOfWork.of(conn)
    return uow.run(lambda: issue_site_key(uow, name, scopes))
