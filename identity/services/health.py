"""Whether this replica can do its work."""

from identity.errors import DatabaseUnavailable
from identity.store import migrations
from identity.store.transactions import UnitOfWork


def check_ready(uow: UnitOfWork) -> None:
    """Raise DatabaseUnavailable unless the database answers and no migration is pending."""
    conn = uow.one_statement
    if migrations.read_only(conn):
        raise DatabaseUnavailable("the database takes no changes right now (read-only)")
    waiting = migrations.pending(conn)
    if waiting:
        raise DatabaseUnavailable(f"migrations not applied yet: {', '.join(waiting)}")
